//! Run records as statements on one connection: seq-ordered upsert, lookup,
//! keyset-paginated search, the latest-run table and bounded retention.
//!
//! Output (`output_head`, `output_tail`) is kept in its own columns, stored
//! last in the row, so searches never read (or parse) it.

use cronsun_proto::api::{LastRun, RunPage, RunQuery};
use cronsun_proto::{RunRecord, RunStatus};
use jiff::Timestamp;
use rusqlite::types::Value;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row};

use super::cursor::Cursor;
use super::schema::backend;
use crate::store::{Result, StoreError};

/// Page size when the query names none, and the most a page may hold.
pub(super) const DEFAULT_LIMIT: u32 = 50;
pub(super) const MAX_LIMIT: u32 = 1000;

const UPSERT: &str = "
    INSERT INTO runs (id, run_id, attempt, job_id, node_id, status, scheduled_ms,
                      started_ms, seq, body, output_head, output_tail)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
    ON CONFLICT(id) DO UPDATE SET
        run_id = excluded.run_id, attempt = excluded.attempt, job_id = excluded.job_id,
        node_id = excluded.node_id, status = excluded.status,
        scheduled_ms = excluded.scheduled_ms, started_ms = excluded.started_ms,
        seq = excluded.seq, body = excluded.body,
        output_head = excluded.output_head, output_tail = excluded.output_tail
    WHERE excluded.seq > runs.seq";

const UPSERT_LATEST: &str = "
    INSERT INTO latest (job_id, scheduled_ms, attempt, record_id, body)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT(job_id) DO UPDATE SET
        scheduled_ms = excluded.scheduled_ms, attempt = excluded.attempt,
        record_id = excluded.record_id, body = excluded.body
    WHERE (excluded.scheduled_ms, excluded.attempt, excluded.record_id)
       >= (latest.scheduled_ms, latest.attempt, latest.record_id)";

/// Applies the write if its `seq` is newer than the stored one (or nothing is
/// stored) and moves the job's latest run forward; returns whether applied.
pub(super) fn write(conn: &Connection, mut record: RunRecord) -> Result<bool> {
    let id = record.record_id();
    let head = std::mem::take(&mut record.output_head);
    let tail = std::mem::take(&mut record.output_tail);
    let body = serde_json::to_string(&record)
        .map_err(|e| StoreError::Backend(format!("encode run record {id:?}: {e}")))?;
    let scheduled_ms = record.scheduled_at.as_millisecond();
    let prev: Option<String> = conn
        .prepare_cached("SELECT status FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([&id], |r| r.get(0)).optional())
        .map_err(backend("read run record status"))?;
    let applied = conn
        .prepare_cached(UPSERT)
        .and_then(|mut s| {
            s.execute(params![
                id,
                record.run_id,
                record.attempt,
                record.job_id,
                record.node_id,
                record.status.as_str(),
                scheduled_ms,
                record.started_at.map(Timestamp::as_millisecond),
                record.seq,
                body,
                head,
                tail,
            ])
        })
        .map_err(backend("write run record"))?
        > 0;
    if applied {
        let prev = prev.as_deref().and_then(crate::store::stats::parse_status);
        super::stats::count(conn, &record, prev)?;
        let last = LastRun {
            run_id: record.run_id.clone(),
            attempt: record.attempt,
            status: record.status,
            scheduled_at: record.scheduled_at,
            finished_at: record.finished_at,
        };
        let last = serde_json::to_string(&last)
            .map_err(|e| StoreError::Backend(format!("encode latest run {id:?}: {e}")))?;
        conn.prepare_cached(UPSERT_LATEST)
            .and_then(|mut s| {
                s.execute(params![
                    record.job_id,
                    scheduled_ms,
                    record.attempt,
                    id,
                    last
                ])
            })
            .map_err(backend("update latest run"))?;
    }
    Ok(applied)
}

fn parse_record(id: &str, body: &str) -> Result<RunRecord> {
    serde_json::from_str(body)
        .map_err(|e| StoreError::Backend(format!("stored run record {id:?} is unreadable: {e}")))
}

/// A full record (with output) from columns `id, body, output_head, output_tail`.
fn full_record(r: &Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn assemble((id, body, head, tail): (String, String, String, String)) -> Result<RunRecord> {
    let mut rec = parse_record(&id, &body)?;
    rec.output_head = head;
    rec.output_tail = tail;
    Ok(rec)
}

/// `id` is a record id `<run_id>#<attempt>`; failing that, a run id whose
/// latest attempt is returned.
pub(super) fn get(conn: &Connection, id: &str) -> Result<Option<RunRecord>> {
    if let Some(rec) = get_exact(conn, id)? {
        return Ok(Some(rec));
    }
    // Record ids of a run share the prefix `<run_id>#`; '$' is the byte after
    // '#'. A run has few attempts (retries are bounded), so pick in Rust.
    let mut stmt = conn
        .prepare_cached("SELECT id, attempt FROM runs WHERE id > ?1 AND id < ?2")
        .map_err(backend("get latest attempt"))?;
    let attempts = stmt
        .query_map(params![format!("{id}#"), format!("{id}$")], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, String>(0)?))
        })
        .map_err(backend("get latest attempt"))?;
    let mut latest: Option<(i64, String)> = None;
    for a in attempts {
        let a = a.map_err(backend("get latest attempt"))?;
        if latest.as_ref().is_none_or(|l| a.0 > l.0) {
            latest = Some(a);
        }
    }
    let Some((_, record_id)) = latest else {
        return Ok(None);
    };
    get_exact(conn, &record_id)
}

fn get_exact(conn: &Connection, record_id: &str) -> Result<Option<RunRecord>> {
    conn.prepare_cached("SELECT id, body, output_head, output_tail FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([record_id], full_record).optional())
        .map_err(backend("get run record"))?
        .map(assemble)
        .transpose()
}

/// The SQL and parameters of a search; separate so the query plan can be tested.
pub(super) fn search_sql(q: &RunQuery) -> Result<(String, Vec<Value>, u32)> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut sql = String::from("SELECT id, scheduled_ms, body FROM runs WHERE 1");
    let mut args: Vec<Value> = Vec::new();
    let mut arg = |sql: &mut String, clause: &str, v: Value| {
        args.push(v);
        sql.push_str(&clause.replace('?', &format!("?{}", args.len())));
    };
    if let Some(job) = &q.job {
        arg(&mut sql, " AND job_id = ?", Value::Text(job.clone()));
    }
    if let Some(node) = &q.node {
        arg(&mut sql, " AND node_id = ?", Value::Text(node.clone()));
    }
    if let Some(status) = q.status {
        arg(
            &mut sql,
            " AND status = ?",
            Value::Text(status.as_str().into()),
        );
    }
    if let Some(since) = q.since {
        arg(
            &mut sql,
            " AND scheduled_ms >= ?",
            Value::Integer(ceil_ms(since)),
        );
    }
    if let Some(until) = q.until {
        arg(
            &mut sql,
            " AND scheduled_ms < ?",
            Value::Integer(ceil_ms(until)),
        );
    }
    if let Some(c) = &q.cursor {
        let c = Cursor::decode(c)?;
        arg(
            &mut sql,
            " AND scheduled_ms <= ?",
            Value::Integer(c.scheduled_ms),
        );
        let n = args.len();
        args.push(Value::Text(c.record_id));
        sql.push_str(&format!(
            " AND (scheduled_ms < ?{n} OR id < ?{})",
            args.len()
        ));
    }
    // One more than asked tells whether there is a next page.
    sql.push_str(&format!(
        " ORDER BY scheduled_ms DESC, id DESC LIMIT {}",
        limit + 1
    ));
    Ok((sql, args, limit))
}

/// Smallest whole millisecond at or after `t` (bounds compare in ms).
fn ceil_ms(t: Timestamp) -> i64 {
    let ns = t.as_nanosecond();
    let ms = ns.div_euclid(1_000_000) + i128::from(ns.rem_euclid(1_000_000) != 0);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// Newest first by (scheduled_at, record id), output emptied.
pub(super) fn search(conn: &Connection, q: &RunQuery) -> Result<RunPage> {
    let (sql, args, limit) = search_sql(q)?;
    let mut stmt = conn.prepare_cached(&sql).map_err(backend("search runs"))?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(backend("search runs"))?;
    let mut runs = Vec::new();
    let mut last = None;
    let mut more = false;
    for row in rows {
        let (id, ms, body) = row.map_err(backend("search runs"))?;
        if runs.len() == limit as usize {
            more = true;
            break;
        }
        runs.push(parse_record(&id, &body)?);
        last = Some(Cursor {
            scheduled_ms: ms,
            record_id: id,
        });
    }
    Ok(RunPage {
        runs,
        next_cursor: if more { last.map(|c| c.encode()) } else { None },
    })
}

pub(super) fn running_on(conn: &Connection, node: &str) -> Result<Vec<RunRecord>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, body, output_head, output_tail FROM runs
             WHERE status = ?1 AND node_id = ?2 ORDER BY scheduled_ms, id",
        )
        .map_err(backend("list running records"))?;
    let rows = stmt
        .query_map(params![RunStatus::Running.as_str(), node], full_record)
        .map_err(backend("list running records"))?;
    rows.map(|r| assemble(r.map_err(backend("list running records"))?))
        .collect()
}

/// One row per job that ever had a record, from the `latest` table. Rows
/// outlive retention and job deletion (the job list joins on live jobs), so a
/// job keeps showing its last run after that record aged out.
pub(super) fn latest_per_job(conn: &Connection) -> Result<Vec<(String, LastRun)>> {
    let mut stmt = conn
        .prepare_cached("SELECT job_id, body FROM latest ORDER BY job_id")
        .map_err(backend("list latest runs"))?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
        .map_err(backend("list latest runs"))?;
    rows.map(|row| {
        let (job, body) = row.map_err(backend("list latest runs"))?;
        let last = serde_json::from_str(&body).map_err(|e| {
            StoreError::Backend(format!("stored latest run of {job:?} is unreadable: {e}"))
        })?;
        Ok((job, last))
    })
    .collect()
}

/// Deletes at most `batch` finished records scheduled before `cutoff_ms`.
pub(super) fn delete_older_than(conn: &Connection, cutoff_ms: i64, batch: u32) -> Result<u64> {
    let n = conn
        .prepare_cached(
            "DELETE FROM runs WHERE rowid IN (
                SELECT rowid FROM runs WHERE scheduled_ms < ?1 AND status != 'running'
                ORDER BY scheduled_ms, id LIMIT ?2)",
        )
        .and_then(|mut s| s.execute(params![cutoff_ms, batch]))
        .map_err(backend("retention by age"))?;
    Ok(n as u64)
}

/// Jobs that have (or had) records.
pub(super) fn jobs_with_runs(conn: &Connection) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT job_id FROM latest ORDER BY job_id")
        .map_err(backend("list jobs with runs"))?;
    let rows = stmt
        .query_map([], |r| r.get(0))
        .map_err(backend("list jobs with runs"))?;
    rows.map(|r| r.map_err(backend("list jobs with runs")))
        .collect()
}

/// Deletes at most `batch` finished records of `job` beyond its newest `keep`.
pub(super) fn delete_beyond_count(
    conn: &Connection,
    job: &str,
    keep: u32,
    batch: u32,
) -> Result<u64> {
    let first_doomed: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT scheduled_ms, id FROM runs WHERE job_id = ?1
             ORDER BY scheduled_ms DESC, id DESC LIMIT 1 OFFSET ?2",
        )
        .and_then(|mut s| {
            s.query_row(params![job, keep], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })
        .map_err(backend("retention by count"))?;
    let Some((ms, id)) = first_doomed else {
        return Ok(0);
    };
    let n = conn
        .prepare_cached(
            "DELETE FROM runs WHERE rowid IN (
                SELECT rowid FROM runs
                WHERE job_id = ?1 AND scheduled_ms <= ?2 AND (scheduled_ms < ?2 OR id <= ?3)
                  AND status != 'running'
                ORDER BY scheduled_ms, id LIMIT ?4)",
        )
        .and_then(|mut s| s.execute(params![job, ms, id, batch]))
        .map_err(backend("retention by count"))?;
    Ok(n as u64)
}
