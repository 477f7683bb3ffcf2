//! Jobs, their claim watermarks, the global pause and the `meta` table, as
//! statements on one connection. Writers run inside the writer's transaction,
//! so each function is atomic with whatever else its request does.

use cronsun_proto::api::GlobalPause;
use cronsun_proto::Job;
use jiff::Timestamp;
use rusqlite::{params, Connection, OptionalExtension};

use super::schema::backend;
use super::{from_ns, runs, to_ns};
use crate::store::{ClaimOutcome, ClaimRequest, Expect, Result, StoreError};

/// Takes the next store revision (strictly increasing, never reused).
pub(super) fn next_revision(conn: &Connection) -> Result<u64> {
    let v: i64 = conn
        .prepare_cached("UPDATE store_revision SET value = value + 1 WHERE id = 1 RETURNING value")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(backend("next revision"))?;
    Ok(v as u64)
}

fn parse_job(id: &str, body: &str) -> Result<Job> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Backend(format!("stored job {id:?} is unreadable: {e}")))
}

pub(super) fn list_jobs(conn: &Connection) -> Result<Vec<Job>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, body FROM jobs ORDER BY id")
        .map_err(backend("list jobs"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(backend("list jobs"))?;
    let mut jobs = Vec::new();
    for row in rows {
        let (id, body) = row.map_err(backend("list jobs"))?;
        jobs.push(parse_job(&id, &body)?);
    }
    Ok(jobs)
}

pub(super) fn get_job(conn: &Connection, id: &str) -> Result<Option<Job>> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(backend("get job"))?;
    body.map(|b| parse_job(id, &b)).transpose()
}

/// The stored revision and creation time (ns) of a job, if it exists.
fn current(conn: &Connection, id: &str) -> Result<Option<(u64, i64)>> {
    conn.prepare_cached("SELECT revision, created_ns FROM jobs WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([id], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
                .optional()
        })
        .map_err(backend("read job revision"))
}

/// Checks `expect` against what is stored; returns the stored state.
fn check_expect(conn: &Connection, id: &str, expect: Expect) -> Result<Option<(u64, i64)>> {
    let cur = current(conn, id)?;
    match (expect, cur) {
        (Expect::Absent, Some(_)) => Err(StoreError::Exists(id.to_owned())),
        (Expect::Revision(_), None) => Err(StoreError::NotFound(format!("job {id:?}"))),
        (Expect::Revision(want), Some((have, _))) if want != have => Err(StoreError::Conflict {
            id: id.to_owned(),
            current: have,
        }),
        _ => Ok(cur),
    }
}

/// Writes a job under `expect`, giving it the next store revision. A new job's
/// watermark starts at `now`; an update keeps the watermark and `created_at`.
pub(super) fn put_job(
    conn: &Connection,
    mut job: Job,
    expect: Expect,
    now: Timestamp,
) -> Result<Job> {
    let cur = check_expect(conn, &job.id, expect)?;
    let revision = next_revision(conn)?;
    let now_ns = to_ns(now)?;
    let created_ns = cur.map_or(now_ns, |(_, c)| c);
    job.revision = revision;
    job.created_at = Some(from_ns(created_ns)?);
    job.updated_at = Some(now);
    let body = serde_json::to_string(&job)
        .map_err(|e| StoreError::Backend(format!("encode job {:?}: {e}", job.id)))?;
    let rev = revision as i64;
    if cur.is_some() {
        conn.prepare_cached(
            "UPDATE jobs SET revision = ?2, updated_ns = ?3, body = ?4 WHERE id = ?1",
        )
        .and_then(|mut s| s.execute(params![job.id, rev, now_ns, body]))
        .map_err(backend("update job"))?;
    } else {
        conn.prepare_cached(
            "INSERT INTO jobs (id, revision, watermark_ns, created_ns, updated_ns, body)
             VALUES (?1, ?2, ?3, ?3, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![job.id, rev, now_ns, body]))
        .map_err(backend("insert job"))?;
    }
    Ok(job)
}

/// Deletes a job and its watermark under `expect` (a missing job is `NotFound`).
pub(super) fn delete_job(conn: &Connection, id: &str, expect: Expect) -> Result<()> {
    if check_expect(conn, id, expect)?.is_none() {
        return Err(StoreError::NotFound(format!("job {id:?}")));
    }
    // Deletion is a change too: it takes a revision, as in etcd.
    next_revision(conn)?;
    conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(backend("delete job"))?;
    Ok(())
}

pub(super) fn watermark(conn: &Connection, id: &str) -> Result<Option<Timestamp>> {
    let ns: Option<Option<i64>> = conn
        .prepare_cached("SELECT watermark_ns FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional())
        .map_err(backend("read watermark"))?;
    ns.flatten().map(from_ns).transpose()
}

pub(super) fn watermarks(
    conn: &Connection,
) -> Result<std::collections::HashMap<String, Timestamp>> {
    let mut stmt = conn
        .prepare_cached("SELECT id, watermark_ns FROM jobs WHERE watermark_ns IS NOT NULL")
        .map_err(backend("read watermarks"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(backend("read watermarks"))?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (id, ns) = row.map_err(backend("read watermarks"))?;
        out.insert(id, from_ns(ns)?);
    }
    Ok(out)
}

/// Moves the watermark unconditionally; a missing job is `NotFound`.
pub(super) fn set_watermark(conn: &Connection, id: &str, t: Timestamp) -> Result<()> {
    let mark = to_ns(t)?;
    let n = conn
        .prepare_cached("UPDATE jobs SET watermark_ns = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, mark]))
        .map_err(backend("set watermark"))?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("job {id:?}")));
    }
    Ok(())
}

/// The claim of DESIGN §3 (standalone): compare revision and watermark, move
/// the watermark and write the first record, all in the caller's transaction.
pub(super) fn claim(conn: &Connection, req: ClaimRequest) -> Result<ClaimOutcome> {
    claim_into(conn, req, |c, r| runs::write(c, r).map(drop))
}

/// [`claim`] with the first record written by `write` (the run table, or the
/// spool when runs live in MongoDB), in the same transaction.
pub(super) fn claim_into(
    conn: &Connection,
    req: ClaimRequest,
    write: impl FnOnce(&Connection, cronsun_proto::RunRecord) -> Result<()>,
) -> Result<ClaimOutcome> {
    let row: Option<(i64, Option<i64>)> = conn
        .prepare_cached("SELECT revision, watermark_ns FROM jobs WHERE id = ?1")
        .and_then(|mut s| {
            s.query_row([&req.job_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(backend("claim: read job"))?;
    let Some((revision, mark)) = row else {
        return Ok(ClaimOutcome::JobChanged);
    };
    if revision as u64 != req.job_revision {
        return Ok(ClaimOutcome::JobChanged);
    }
    let instant = to_ns(req.instant)?;
    if let Some(mark) = mark {
        if mark >= instant {
            return Ok(ClaimOutcome::Decided {
                watermark: from_ns(mark)?,
            });
        }
    }
    let fence = next_revision(conn)?;
    conn.prepare_cached("UPDATE jobs SET watermark_ns = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![req.job_id, instant]))
        .map_err(backend("claim: move watermark"))?;
    let mut record = req.record;
    record.fence = Some(fence);
    write(conn, record)?;
    Ok(ClaimOutcome::Won {
        fence,
        previous: mark.map(from_ns).transpose()?,
    })
}

pub(super) fn global_pause(conn: &Connection) -> Result<GlobalPause> {
    let body: Option<String> = conn
        .prepare_cached("SELECT body FROM global_pause WHERE id = 1")
        .and_then(|mut s| s.query_row([], |r| r.get(0)).optional())
        .map_err(backend("read global pause"))?;
    match body {
        None => Ok(GlobalPause::default()),
        Some(b) => serde_json::from_str(&b)
            .map_err(|e| StoreError::Backend(format!("stored global pause is unreadable: {e}"))),
    }
}

pub(super) fn set_global_pause(conn: &Connection, p: &GlobalPause) -> Result<()> {
    let body = serde_json::to_string(p)
        .map_err(|e| StoreError::Backend(format!("encode global pause: {e}")))?;
    conn.prepare_cached(
        "INSERT INTO global_pause (id, body) VALUES (1, ?1)
         ON CONFLICT(id) DO UPDATE SET body = excluded.body",
    )
    .and_then(|mut s| s.execute([body]))
    .map_err(backend("set global pause"))?;
    Ok(())
}

pub(super) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")
        .and_then(|mut s| s.query_row([key], |r| r.get(0)).optional())
        .map_err(backend("read meta"))
}

pub(super) fn meta_put(conn: &Connection, key: &str, value: &str) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT(key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute([key, value]))
    .map_err(backend("write meta"))?;
    Ok(())
}

/// Writes jobs as another store holds them (cluster mode keeps the last
/// known job set here): the given revision is kept, an existing row keeps
/// its watermark, a new row has none (its first instant is after now).
pub(super) fn mirror_put(conn: &Connection, job: &Job) -> Result<()> {
    let body = serde_json::to_string(job)
        .map_err(|e| StoreError::Backend(format!("encode job {:?}: {e}", job.id)))?;
    let created = to_ns(job.created_at.unwrap_or_else(Timestamp::now))?;
    let updated = to_ns(job.updated_at.unwrap_or_else(Timestamp::now))?;
    conn.prepare_cached(
        "INSERT INTO jobs (id, revision, watermark_ns, created_ns, updated_ns, body)
         VALUES (?1, ?2, NULL, ?3, ?4, ?5)
         ON CONFLICT(id) DO UPDATE SET revision = excluded.revision,
           updated_ns = excluded.updated_ns, body = excluded.body",
    )
    .and_then(|mut s| s.execute(params![job.id, job.revision as i64, created, updated, body]))
    .map_err(backend("mirror job"))?;
    Ok(())
}

/// Removes a mirrored job (and its local watermark).
pub(super) fn mirror_delete(conn: &Connection, id: &str) -> Result<()> {
    conn.prepare_cached("DELETE FROM jobs WHERE id = ?1")
        .and_then(|mut s| s.execute([id]))
        .map_err(backend("mirror delete"))?;
    Ok(())
}
