//! `stats_daily` in SQLite (standalone): the counters of
//! [`crate::store::stats`] as rows `(job_id, day, field, n)`, incremented in
//! the transaction of the run-record write that created or advanced a
//! record to a final status (so replays count nothing), read back by an
//! index range on `day` (all jobs) or `(job_id, day)`.

use rusqlite::{params, Connection};

use cronsun_proto::{RunRecord, RunStatus};

use super::schema::backend;
use crate::store::stats::{day_of, increments, DailyStats};
use crate::store::Result;

/// Schema migration 3; counts (not durations) of records stored before it
/// are carried over.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE stats_daily (
        job_id TEXT NOT NULL,
        day    TEXT NOT NULL,
        field  TEXT NOT NULL,
        n      INTEGER NOT NULL,
        PRIMARY KEY (job_id, day, field)
    ) WITHOUT ROWID;
    CREATE INDEX stats_daily_by_day ON stats_daily (day, job_id, field, n);

    INSERT INTO stats_daily (job_id, day, field, n)
    SELECT job_id, strftime('%Y-%m-%d', scheduled_ms / 1000, 'unixepoch'), 'runs', COUNT(*)
    FROM runs WHERE status != 'running' GROUP BY 1, 2;
    INSERT INTO stats_daily (job_id, day, field, n)
    SELECT job_id, strftime('%Y-%m-%d', scheduled_ms / 1000, 'unixepoch'), 's_' || status, COUNT(*)
    FROM runs WHERE status != 'running' GROUP BY 1, 2, 3;
"#;

/// Counts `rec`, which replaced a record whose status was `prev`.
pub(super) fn count(conn: &Connection, rec: &RunRecord, prev: Option<RunStatus>) -> Result<()> {
    let inc = increments(rec, prev);
    if inc.is_empty() {
        return Ok(());
    }
    let day = day_of(rec.scheduled_at);
    let mut stmt = conn
        .prepare_cached(
            "INSERT INTO stats_daily (job_id, day, field, n) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(job_id, day, field) DO UPDATE SET n = n + excluded.n",
        )
        .map_err(backend("count statistics"))?;
    for (field, n) in inc {
        stmt.execute(params![rec.job_id, day, field, n])
            .map_err(backend("count statistics"))?;
    }
    Ok(())
}

/// Counters of `job` (or all jobs) for days `from..=to`, by day.
pub(super) fn read(
    conn: &Connection,
    job: Option<&str>,
    from: &str,
    to: &str,
) -> Result<DailyStats> {
    let mut out = DailyStats::new();
    let mut add = |r: &rusqlite::Row<'_>| -> rusqlite::Result<()> {
        let day: String = r.get(0)?;
        let field: String = r.get(1)?;
        out.entry(day).or_default().add_field(&field, r.get(2)?);
        Ok(())
    };
    let res = match job {
        Some(j) => conn
            .prepare_cached(
                "SELECT day, field, n FROM stats_daily
                 WHERE job_id = ?1 AND day >= ?2 AND day <= ?3",
            )
            .and_then(|mut s| {
                let mut rows = s.query(params![j, from, to])?;
                while let Some(r) = rows.next()? {
                    add(r)?;
                }
                Ok(())
            }),
        None => conn
            .prepare_cached("SELECT day, field, n FROM stats_daily WHERE day >= ?1 AND day <= ?2")
            .and_then(|mut s| {
                let mut rows = s.query(params![from, to])?;
                while let Some(r) = rows.next()? {
                    add(r)?;
                }
                Ok(())
            }),
    };
    res.map_err(backend("read statistics"))?;
    Ok(out)
}
