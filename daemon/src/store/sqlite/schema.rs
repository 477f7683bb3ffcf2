//! The store file's schema, its numbered migrations and how a connection is
//! opened. The schema version lives in `PRAGMA user_version`; migration `n`
//! (1-based) moves the file from version `n - 1` to `n` in one transaction,
//! so a crash mid-migration leaves the file at the previous version.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use crate::store::{Result, StoreError};

/// How long a connection waits for a lock before giving up with `busy`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Migration `i` takes the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: jobs, watermarks, pause, meta, runs and the latest-run table.
    r#"
    -- Store-wide revision counter, like etcd's: every job write and every
    -- claim takes the next value (job revisions, fences).
    CREATE TABLE store_revision (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    );
    INSERT INTO store_revision (id, value) VALUES (1, 0);

    CREATE TABLE jobs (
        id           TEXT PRIMARY KEY,
        revision     INTEGER NOT NULL,
        -- Last decided instant (ns since the epoch); the job's claim watermark.
        watermark_ns INTEGER,
        created_ns   INTEGER NOT NULL,
        updated_ns   INTEGER NOT NULL,
        body         TEXT NOT NULL
    );

    CREATE TABLE global_pause (
        id   INTEGER PRIMARY KEY CHECK (id = 1),
        body TEXT NOT NULL
    );

    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) WITHOUT ROWID;

    -- One row per attempt. Output lives in its own columns, last, so that
    -- searches never read it; `body` is the record's JSON without output.
    CREATE TABLE runs (
        id           TEXT NOT NULL UNIQUE,
        run_id       TEXT NOT NULL,
        attempt      INTEGER NOT NULL,
        job_id       TEXT NOT NULL,
        node_id      TEXT NOT NULL,
        status       TEXT NOT NULL,
        scheduled_ms INTEGER NOT NULL,
        started_ms   INTEGER,
        seq          INTEGER NOT NULL,
        body         TEXT NOT NULL,
        output_head  TEXT NOT NULL,
        output_tail  TEXT NOT NULL
    );
    -- Every search shape is equalities + order by (scheduled_ms, id); each
    -- common combination has an index whose prefix is exactly its equalities,
    -- so a page never scans records it does not return. (job + node uses
    -- runs_by_job and filters: a job has few nodes.)
    CREATE INDEX runs_by_time        ON runs (scheduled_ms, id);
    CREATE INDEX runs_by_job         ON runs (job_id, scheduled_ms, id);
    CREATE INDEX runs_by_node        ON runs (node_id, scheduled_ms, id);
    CREATE INDEX runs_by_status      ON runs (status, scheduled_ms, id);
    CREATE INDEX runs_by_job_status  ON runs (job_id, status, scheduled_ms, id);
    CREATE INDEX runs_by_node_status ON runs (node_id, status, scheduled_ms, id);

    -- Newest record per job by (scheduled_ms, attempt, record_id); only moves forward.
    CREATE TABLE latest (
        job_id       TEXT PRIMARY KEY,
        scheduled_ms INTEGER NOT NULL,
        attempt      INTEGER NOT NULL,
        record_id    TEXT NOT NULL,
        body         TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // 2: the spool of run-record writes bound for MongoDB (see spool.rs).
    super::spool::MIGRATION,
    // 3: accounts, API tokens, the audit log, shared secrets (see auth.rs).
    super::auth::MIGRATION,
    // 4: daily run statistics per job (see stats.rs).
    super::stats::MIGRATION,
];

/// The schema version this build writes.
pub(super) fn current_version() -> u32 {
    MIGRATIONS.len() as u32
}

/// Opens (creating if needed) the file for writing, in WAL mode with
/// `synchronous = FULL`, and migrates it to the current schema.
pub(super) fn open_writer(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, &e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| open_error(path, &e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Backend(format!(
            "store {}: cannot switch to WAL mode (journal mode is {mode}); \
             is the file on a network file system?",
            path.display()
        )));
    }
    conn.execute_batch(
        "PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = OFF;
         PRAGMA temp_store = MEMORY;
         PRAGMA cache_size = -65536;",
    )
    .map_err(|e| open_error(path, &e))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens a read-only connection; the file must already have been created by
/// [`open_writer`].
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| open_error(path, &e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| open_error(path, &e))?;
    conn.execute_batch("PRAGMA query_only = ON; PRAGMA cache_size = -16384;")
        .map_err(|e| open_error(path, &e))?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| open_error(path, &e))?;
    let target = current_version();
    if version > target {
        return Err(StoreError::Backend(format!(
            "store {}: schema version {version} was written by a newer cronsun \
             (this build knows up to {target}); upgrade cronsun or restore a backup",
            path.display()
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let next = i as u32 + 1;
        let fail = |e: rusqlite::Error| {
            StoreError::Backend(format!(
                "store {}: migration to schema version {next} failed: {e}",
                path.display()
            ))
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", next).map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

/// An error opening the file, naming it and what the operator can do.
pub(super) fn open_error(path: &Path, e: &rusqlite::Error) -> StoreError {
    let hint = match e.sqlite_error_code() {
        Some(ErrorCode::CannotOpen) | Some(ErrorCode::PermissionDenied) => {
            "check that the state directory exists and that the daemon's user may read and write it"
        }
        Some(ErrorCode::ReadOnly) => {
            "the file or its directory is read-only for the daemon's user"
        }
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => {
            "the file is not a cronsun store or is corrupt; restore a backup, or move it \
             aside to start empty (its jobs and run records are then lost)"
        }
        Some(ErrorCode::DiskFull) => "the disk is full; free space and restart",
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            "another process holds the store locked; is a second cronsund running on this state dir?"
        }
        _ => "see the SQLite error above",
    };
    StoreError::Backend(format!(
        "cannot open store {}: {e} ({hint})",
        path.display()
    ))
}

/// Maps a SQLite error during `op` to a backend error naming the operation.
pub(super) fn backend(op: &'static str) -> impl Fn(rusqlite::Error) -> StoreError {
    move |e| {
        let hint = match e.sqlite_error_code() {
            Some(ErrorCode::DiskFull) => " (the disk is full)",
            Some(ErrorCode::DatabaseCorrupt) => " (the store file is corrupt)",
            Some(ErrorCode::ReadOnly) => " (the store file became read-only)",
            _ => "",
        };
        StoreError::Backend(format!("{op}: {e}{hint}"))
    }
}
