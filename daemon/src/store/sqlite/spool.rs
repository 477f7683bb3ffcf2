//! The spool: run-record writes bound for MongoDB, kept durably in the state
//! dir's SQLite file until the shipper has applied them (DESIGN §3).
//!
//! Guarantees:
//! - a write is in the spool, committed with `synchronous = FULL`, before
//!   [`SqliteStore::spool_push`] returns; a claim puts its first record in
//!   the spool in the same transaction that moves the watermark
//!   ([`SqliteStore::claim_spooled`]);
//! - writes of one record enter in `seq` order: a write whose `seq` is not
//!   greater than the newest one seen for its record is refused (answer
//!   `false`), as the run table does; `spool_seq` remembers the newest seq
//!   and status of every record for a while after it was shipped;
//! - entries leave in position order, only when acknowledged;
//! - past its bound the spool sheds, oldest first: the output of records
//!   (metadata kept, output replaced by its SHA-256 digest), then whole
//!   successful records of `all` jobs whose `running` write is still
//!   spooled; never a failure, a `running` write or a `lost` write. Every
//!   drop is counted by reason in `spool_drops`. If shedding cannot get
//!   under the bound, the write is still accepted (nothing the bound allows
//!   to drop is left) and the excess shows in the depth metrics.

use cronsun_proto::{RunRecord, RunStatus};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};

use super::schema::backend;
use super::{jobs, SqliteStore};
use crate::store::{ClaimOutcome, ClaimRequest, Result, StoreError};

/// Schema migration 2.
pub(super) const MIGRATION: &str = r#"
    -- Writes waiting to be shipped, in arrival order. `body` is the record's
    -- JSON; `digest` is set when its output was shed.
    CREATE TABLE spool (
        pos       INTEGER PRIMARY KEY AUTOINCREMENT,
        record_id TEXT NOT NULL,
        seq       INTEGER NOT NULL,
        status    TEXT NOT NULL,
        is_all    INTEGER NOT NULL,
        bytes     INTEGER NOT NULL,
        out_bytes INTEGER NOT NULL,
        digest    TEXT,
        body      TEXT NOT NULL
    );
    CREATE INDEX spool_by_record ON spool (record_id, seq);
    CREATE INDEX spool_by_status ON spool (status, is_all, pos);
    CREATE INDEX spool_with_output ON spool (out_bytes, pos);

    -- Newest seq and status per record (the local answer to "applied?" and
    -- to "what was running here?"); `body` is kept while it is running.
    CREATE TABLE spool_seq (
        record_id TEXT PRIMARY KEY,
        seq       INTEGER NOT NULL,
        status    TEXT NOT NULL,
        node_id   TEXT NOT NULL,
        at_ms     INTEGER NOT NULL,
        body      TEXT
    ) WITHOUT ROWID;
    CREATE INDEX spool_seq_running ON spool_seq (status, node_id);
    CREATE INDEX spool_seq_by_age ON spool_seq (at_ms);

    CREATE TABLE spool_totals (
        id    INTEGER PRIMARY KEY CHECK (id = 1),
        rows  INTEGER NOT NULL,
        bytes INTEGER NOT NULL
    );
    INSERT INTO spool_totals (id, rows, bytes) VALUES (1, 0, 0);

    CREATE TABLE spool_drops (
        reason TEXT PRIMARY KEY,
        n      INTEGER NOT NULL
    ) WITHOUT ROWID;
"#;

/// How long the newest seq of a finished record is remembered after it was
/// written (late or replayed writes older than this are refused by
/// MongoDB's own seq guard instead).
const REMEMBER_MS: i64 = 3_600_000;
/// Rows examined per shedding step.
const SHED_STEP: u32 = 64;

/// When the spool sheds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpoolBound {
    pub max_bytes: u64,
    pub max_records: u64,
}

/// Why a spooled write lost something (metric label `reason`).
pub const DROP_OUTPUT: &str = "output";
pub const DROP_SUCCESS_ALL: &str = "success_all";

/// One spooled write.
#[derive(Clone, Debug, PartialEq)]
pub struct SpoolEntry {
    pub pos: i64,
    pub record: RunRecord,
    /// SHA-256 (hex) of the output that was shed, if it was.
    pub output_digest: Option<String>,
}

/// Depth and drop counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpoolStats {
    pub rows: u64,
    pub bytes: u64,
    pub dropped_output: u64,
    pub dropped_success_all: u64,
}

fn encode(rec: &RunRecord) -> Result<String> {
    serde_json::to_string(rec)
        .map_err(|e| StoreError::Backend(format!("encode spooled record {}: {e}", rec.record_id())))
}

fn decode(pos: i64, body: &str) -> Result<RunRecord> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Backend(format!("spool entry {pos} is unreadable: {e}")))
}

/// `all` jobs carry the node in the run id: `<job>~<instant>~<node>`.
fn is_all(run_id: &str) -> bool {
    let mut parts = run_id.split('~');
    let (_, second, third) = (parts.next(), parts.next(), parts.next());
    third.is_some() && second != Some("manual")
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn add_totals(conn: &Connection, rows: i64, bytes: i64) -> Result<()> {
    conn.prepare_cached(
        "UPDATE spool_totals SET rows = rows + ?1, bytes = bytes + ?2 WHERE id = 1",
    )
    .and_then(|mut s| s.execute(params![rows, bytes]))
    .map_err(backend("spool: update totals"))?;
    Ok(())
}

fn count_drop(conn: &Connection, reason: &str, n: i64) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO spool_drops (reason, n) VALUES (?1, ?2)
         ON CONFLICT(reason) DO UPDATE SET n = n + excluded.n",
    )
    .and_then(|mut s| s.execute(params![reason, n]))
    .map_err(backend("spool: count drops"))?;
    Ok(())
}

/// Appends `rec` if its seq is newer than any seen for its record; sheds if
/// the spool is past `bound`. Returns whether it was accepted.
pub(super) fn push(conn: &Connection, rec: RunRecord, bound: SpoolBound) -> Result<bool> {
    if crate::faults::fails("spool_write") {
        return Err(StoreError::Backend(
            "spool: append: disk I/O error (fault point spool_write)".into(),
        ));
    }
    let id = rec.record_id();
    let stored: Option<i64> = conn
        .prepare_cached("SELECT seq FROM spool_seq WHERE record_id = ?1")
        .and_then(|mut s| s.query_row([&id], |r| r.get(0)).optional())
        .map_err(backend("spool: read seq"))?;
    if stored.is_some_and(|s| s >= i64::from(rec.seq)) {
        return Ok(false);
    }
    let body = encode(&rec)?;
    let running_body = (rec.status == RunStatus::Running).then_some(body.as_str());
    conn.prepare_cached(
        "INSERT INTO spool_seq (record_id, seq, status, node_id, at_ms, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(record_id) DO UPDATE SET seq = excluded.seq, status = excluded.status,
             node_id = excluded.node_id, at_ms = excluded.at_ms, body = excluded.body",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            rec.seq,
            rec.status.as_str(),
            rec.node_id,
            now_ms(),
            running_body
        ])
    })
    .map_err(backend("spool: remember seq"))?;
    let out_bytes = (rec.output_head.len() + rec.output_tail.len()) as i64;
    conn.prepare_cached(
        "INSERT INTO spool (record_id, seq, status, is_all, bytes, out_bytes, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![
            id,
            rec.seq,
            rec.status.as_str(),
            is_all(&rec.run_id),
            body.len() as i64,
            out_bytes,
            body
        ])
    })
    .map_err(backend("spool: append"))?;
    add_totals(conn, 1, body.len() as i64)?;
    shed(conn, bound)?;
    Ok(true)
}

fn totals(conn: &Connection) -> Result<(u64, u64)> {
    conn.prepare_cached("SELECT rows, bytes FROM spool_totals WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))))
        .map(|(r, b)| (r.max(0) as u64, b.max(0) as u64))
        .map_err(backend("spool: read totals"))
}

fn over(conn: &Connection, bound: SpoolBound) -> Result<bool> {
    let (rows, bytes) = totals(conn)?;
    Ok(rows > bound.max_records || bytes > bound.max_bytes)
}

/// Sheds as the module documentation says until under `bound` or nothing
/// sheddable is left.
fn shed(conn: &Connection, bound: SpoolBound) -> Result<()> {
    while over(conn, bound)? {
        if shed_output(conn)? == 0 {
            break;
        }
    }
    while over(conn, bound)? {
        if shed_success_all(conn)? == 0 {
            break;
        }
    }
    Ok(())
}

/// Replaces the output of the oldest records that still have some by its
/// digest; returns how many were shed.
fn shed_output(conn: &Connection) -> Result<u64> {
    let rows: Vec<(i64, String)> = conn
        .prepare_cached("SELECT pos, body FROM spool WHERE out_bytes > 0 ORDER BY pos LIMIT ?1")
        .and_then(|mut s| {
            s.query_map([SHED_STEP], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend("spool: find output to shed"))?;
    for (pos, body) in &rows {
        let mut rec = decode(*pos, body)?;
        let mut h = Sha256::new();
        h.update(rec.output_head.as_bytes());
        h.update(rec.output_tail.as_bytes());
        let digest = hex::encode(h.finalize());
        rec.output_head.clear();
        rec.output_tail.clear();
        let new_body = encode(&rec)?;
        conn.prepare_cached(
            "UPDATE spool SET body = ?2, bytes = ?3, out_bytes = 0, digest = ?4 WHERE pos = ?1",
        )
        .and_then(|mut s| s.execute(params![pos, new_body, new_body.len() as i64, digest]))
        .map_err(backend("spool: shed output"))?;
        add_totals(conn, 0, new_body.len() as i64 - body.len() as i64)?;
    }
    if !rows.is_empty() {
        count_drop(conn, DROP_OUTPUT, rows.len() as i64)?;
    }
    Ok(rows.len() as u64)
}

/// Drops the oldest successful records of `all` jobs whose `running` write
/// is still spooled (so no stale `running` is left behind in MongoDB);
/// returns how many records were dropped.
fn shed_success_all(conn: &Connection) -> Result<u64> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "SELECT s.record_id FROM spool s
             WHERE s.status = 'success' AND s.is_all = 1
               AND EXISTS (SELECT 1 FROM spool r WHERE r.record_id = s.record_id AND r.seq = 1)
             ORDER BY s.pos LIMIT ?1",
        )
        .and_then(|mut s| {
            s.query_map([SHED_STEP], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend("spool: find records to shed"))?;
    for id in &ids {
        let (n, bytes): (i64, i64) = conn
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM spool WHERE record_id = ?1",
            )
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))))
            .map_err(backend("spool: measure record to shed"))?;
        conn.prepare_cached("DELETE FROM spool WHERE record_id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(backend("spool: shed record"))?;
        add_totals(conn, -n, -bytes)?;
    }
    if !ids.is_empty() {
        count_drop(conn, DROP_SUCCESS_ALL, ids.len() as i64)?;
    }
    Ok(ids.len() as u64)
}

/// The oldest `limit` entries.
pub(super) fn peek(conn: &Connection, limit: u32) -> Result<Vec<SpoolEntry>> {
    let rows: Vec<(i64, String, Option<String>)> = conn
        .prepare_cached("SELECT pos, body, digest FROM spool ORDER BY pos LIMIT ?1")
        .and_then(|mut s| {
            s.query_map([limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend("spool: read"))?;
    rows.into_iter()
        .map(|(pos, body, output_digest)| {
            Ok(SpoolEntry {
                pos,
                record: decode(pos, &body)?,
                output_digest,
            })
        })
        .collect()
}

/// Removes shipped entries (ones shed meanwhile are simply gone) and forgets
/// seqs of records finished long ago.
pub(super) fn ack(conn: &Connection, positions: &[i64]) -> Result<()> {
    let mut rows = 0i64;
    let mut bytes = 0i64;
    let mut stmt = conn
        .prepare_cached("DELETE FROM spool WHERE pos = ?1 RETURNING bytes")
        .map_err(backend("spool: acknowledge"))?;
    for pos in positions {
        if let Some(b) = stmt
            .query_row([pos], |r| r.get::<_, i64>(0))
            .optional()
            .map_err(backend("spool: acknowledge"))?
        {
            rows += 1;
            bytes += b;
        }
    }
    add_totals(conn, -rows, -bytes)?;
    conn.prepare_cached(
        "DELETE FROM spool_seq WHERE record_id IN (
            SELECT q.record_id FROM spool_seq q
            WHERE q.at_ms < ?1 AND q.status != 'running'
              AND NOT EXISTS (SELECT 1 FROM spool s WHERE s.record_id = q.record_id)
            ORDER BY q.at_ms LIMIT 1000)",
    )
    .and_then(|mut s| s.execute([now_ms() - REMEMBER_MS]))
    .map_err(backend("spool: forget old seqs"))?;
    Ok(())
}

pub(super) fn stats(conn: &Connection) -> Result<SpoolStats> {
    let (rows, bytes) = totals(conn)?;
    let drop_of = |reason: &str| -> Result<u64> {
        conn.prepare_cached("SELECT n FROM spool_drops WHERE reason = ?1")
            .and_then(|mut s| s.query_row([reason], |r| r.get::<_, i64>(0)).optional())
            .map(|n| n.unwrap_or(0).max(0) as u64)
            .map_err(backend("spool: read drops"))
    };
    Ok(SpoolStats {
        rows,
        bytes,
        dropped_output: drop_of(DROP_OUTPUT)?,
        dropped_success_all: drop_of(DROP_SUCCESS_ALL)?,
    })
}

/// Records this node wrote as `running` and has not finished (in standalone
/// mode this node is the only writer of its records, so this is complete).
pub(super) fn running_on(conn: &Connection, node: &str) -> Result<Vec<RunRecord>> {
    let rows: Vec<(String, Option<String>)> = conn
        .prepare_cached(
            "SELECT record_id, body FROM spool_seq WHERE status = 'running' AND node_id = ?1",
        )
        .and_then(|mut s| {
            s.query_map([node], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend("spool: list running"))?;
    rows.into_iter()
        .filter_map(|(id, body)| body.map(|b| (id, b)))
        .map(|(id, body)| {
            serde_json::from_str(&body).map_err(|e| {
                StoreError::Backend(format!("spooled running record {id:?} is unreadable: {e}"))
            })
        })
        .collect()
}

/// The newest spooled (not yet shipped) write of a record; `id` may also be
/// a bare run id (then its latest attempt).
pub(super) fn newest(conn: &Connection, id: &str) -> Result<Option<RunRecord>> {
    let rows: Vec<(i64, String)> = conn
        .prepare_cached(
            "SELECT pos, body FROM spool
             WHERE record_id = ?1 OR (record_id > ?1 || '#' AND record_id < ?1 || '$')",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(backend("spool: read record"))?;
    let mut best: Option<RunRecord> = None;
    for (pos, body) in rows {
        let rec = decode(pos, &body)?;
        if best
            .as_ref()
            .is_none_or(|b| (rec.attempt, rec.seq) > (b.attempt, b.seq))
        {
            best = Some(rec);
        }
    }
    Ok(best)
}

impl SqliteStore {
    /// Spools one write durably; see the module documentation.
    pub async fn spool_push(&self, record: RunRecord, bound: SpoolBound) -> Result<bool> {
        self.writer
            .run(move |c| Ok((push(c, record, bound)?, vec![])))
            .await
    }

    /// [`crate::store::CoordStore::claim`] with the record going to the spool.
    pub async fn claim_spooled(
        &self,
        req: ClaimRequest,
        bound: SpoolBound,
    ) -> Result<ClaimOutcome> {
        self.writer
            .run(move |c| {
                let out = jobs::claim_into(c, req, |c, r| push(c, r, bound).map(drop))?;
                Ok((out, vec![]))
            })
            .await
    }

    /// The oldest `limit` entries, not removed.
    pub async fn spool_peek(&self, limit: u32) -> Result<Vec<SpoolEntry>> {
        self.read(move |c| peek(c, limit)).await
    }

    /// Removes entries that were shipped.
    pub async fn spool_ack(&self, positions: Vec<i64>) -> Result<()> {
        self.writer
            .run(move |c| Ok((ack(c, &positions)?, vec![])))
            .await
    }

    pub async fn spool_stats(&self) -> Result<SpoolStats> {
        self.read(stats).await
    }

    pub async fn spool_running_on(&self, node: &str) -> Result<Vec<RunRecord>> {
        let node = node.to_owned();
        self.read(move |c| running_on(c, &node)).await
    }

    pub async fn spool_newest(&self, record_id: &str) -> Result<Option<RunRecord>> {
        let id = record_id.to_owned();
        self.read(move |c| newest(c, &id)).await
    }
}
