//! Reads and retention on MongoDB.
//!
//! Search has the SQLite store's semantics: newest first by
//! `(scheduled_at desc, _id desc)`, an opaque cursor holding the last sort
//! key, each next page strictly after it (stable while records are
//! inserted). Every filter shape has an index whose prefix is its equality
//! and whose suffix is the sort (see `connect::ensure_indexes`). Retention
//! deletes in batches of [`RETAIN_BATCH`] by `_id`, so it never holds the
//! server for long and needs no TTL-index support.

use cronsun_proto::api::{LastRun, RunPage, RunQuery};
use cronsun_proto::{RunRecord, RunStatus};
use futures::TryStreamExt;
use jiff::Timestamp;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;

use super::docs::{self, date};
use super::stats;
use crate::store::sqlite::cursor::Cursor;
use crate::store::stats::DailyStats;
use crate::store::{Result, Retention, StoreError};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 1000;
/// Records deleted per retention round trip.
pub(super) const RETAIN_BATCH: i64 = 1000;

fn backend(op: &'static str) -> impl Fn(mongodb::error::Error) -> StoreError {
    move |e| StoreError::Backend(format!("MongoDB {op}: {e}"))
}

fn runs(db: &Database) -> mongodb::Collection<Document> {
    db.collection("runs")
}

/// The filter and sort of a search; separate so `explain` can be tested.
pub fn search_filter(q: &RunQuery) -> Result<Document> {
    let mut f = Document::new();
    if let Some(j) = &q.job {
        f.insert("job_id", j);
    }
    if let Some(n) = &q.node {
        f.insert("node_id", n);
    }
    if let Some(s) = q.status {
        f.insert("status", s.as_str());
    }
    let mut range = Document::new();
    if let Some(since) = q.since {
        range.insert("$gte", date(ceil_ms(since)));
    }
    if let Some(until) = q.until {
        range.insert("$lt", date(ceil_ms(until)));
    }
    if let Some(c) = &q.cursor {
        let c = Cursor::decode(c)?;
        let at = mongodb::bson::DateTime::from_millis(c.scheduled_ms);
        // (scheduled_at, _id) < (at, id), with an index-friendly upper bound.
        range.insert("$lte", at);
        f.insert(
            "$or",
            vec![
                doc! {"scheduled_at": {"$lt": at}},
                doc! {"scheduled_at": at, "_id": {"$lt": c.record_id}},
            ],
        );
    }
    if !range.is_empty() {
        f.insert("scheduled_at", range);
    }
    Ok(f)
}

pub fn search_sort() -> Document {
    doc! {"scheduled_at": -1, "_id": -1}
}

fn ceil_ms(t: Timestamp) -> Timestamp {
    let ms = t.as_millisecond();
    let up = if Timestamp::from_millisecond(ms).is_ok_and(|f| f < t) {
        ms + 1
    } else {
        ms
    };
    Timestamp::from_millisecond(up).unwrap_or(t)
}

pub(super) async fn search(db: &Database, q: &RunQuery) -> Result<RunPage> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let docs: Vec<Document> = runs(db)
        .find(search_filter(q)?)
        .sort(search_sort())
        .limit(i64::from(limit) + 1)
        .projection(doc! {"output_head": 0, "output_tail": 0})
        .await
        .map_err(backend("search runs"))?
        .try_collect()
        .await
        .map_err(backend("search runs"))?;
    let more = docs.len() > limit as usize;
    let mut out = Vec::with_capacity(docs.len().min(limit as usize));
    for d in docs.into_iter().take(limit as usize) {
        out.push(docs::run_from_doc(d)?);
    }
    let next_cursor = if more {
        out.last().map(|r| {
            Cursor {
                scheduled_ms: r.scheduled_at.as_millisecond(),
                record_id: r.record_id(),
            }
            .encode()
        })
    } else {
        None
    };
    Ok(RunPage {
        runs: out,
        next_cursor,
    })
}

/// A record id, or a bare run id (its latest attempt).
pub(super) async fn get(db: &Database, id: &str) -> Result<Option<RunRecord>> {
    let c = runs(db);
    if let Some(d) = c
        .find_one(doc! {"_id": id})
        .await
        .map_err(backend("get run"))?
    {
        return docs::run_from_doc(d).map(Some);
    }
    c.find_one(doc! {"run_id": id})
        .sort(doc! {"run_id": 1, "attempt": -1})
        .await
        .map_err(backend("get run"))?
        .map(docs::run_from_doc)
        .transpose()
}

pub(super) async fn latest_per_job(db: &Database) -> Result<Vec<(String, LastRun)>> {
    let docs: Vec<Document> = db
        .collection::<Document>("latest")
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .await
        .map_err(backend("list latest runs"))?
        .try_collect()
        .await
        .map_err(backend("list latest runs"))?;
    docs.iter()
        .map(|d| {
            let job = d.get_str("_id").unwrap_or("").to_owned();
            let last = docs::last_run_from(&job, d)?;
            Ok((job, last))
        })
        .collect()
}

/// Deletes the records matching `filter` (never `running` ones) in batches,
/// oldest first; returns how many.
async fn delete_batches(db: &Database, mut filter: Document) -> Result<u64> {
    filter.insert("status", doc! {"$ne": RunStatus::Running.as_str()});
    let c = runs(db);
    let mut deleted = 0;
    loop {
        let ids: Vec<Bson> = c
            .find(filter.clone())
            .projection(doc! {"_id": 1})
            .limit(RETAIN_BATCH)
            .await
            .map_err(backend("retention"))?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(backend("retention"))?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        if ids.is_empty() {
            return Ok(deleted);
        }
        let n = ids.len();
        let r = c
            .delete_many(doc! {"_id": {"$in": ids}})
            .await
            .map_err(backend("retention"))?;
        deleted += r.deleted_count;
        if (n as i64) < RETAIN_BATCH {
            return Ok(deleted);
        }
    }
}

/// By age (each record's `expire_at`, else `scheduled_at` + `max_age`) and
/// by count per job (the newest `max_per_job` are kept).
pub(super) async fn retain(db: &Database, policy: Retention, now: Timestamp) -> Result<u64> {
    let mut deleted = delete_batches(db, doc! {"expire_at": {"$lt": date(now)}}).await?;
    if let Some(age) = policy.max_age {
        let cutoff = now
            .checked_sub(jiff::SignedDuration::try_from(age).unwrap_or(jiff::SignedDuration::MAX))
            .unwrap_or(Timestamp::MIN);
        deleted += delete_batches(db, doc! {"scheduled_at": {"$lt": date(cutoff)}}).await?;
    }
    if let Some(keep) = policy.max_per_job {
        for (job, _) in latest_per_job(db).await? {
            let first_doomed = runs(db)
                .find_one(doc! {"job_id": &job})
                .sort(search_sort())
                .skip(u64::from(keep))
                .projection(doc! {"_id": 1, "scheduled_at": 1})
                .await
                .map_err(backend("retention by count"))?;
            let Some(d) = first_doomed else { continue };
            let (Ok(at), Ok(id)) = (d.get_datetime("scheduled_at"), d.get_str("_id")) else {
                continue;
            };
            let filter = doc! {
                "job_id": &job,
                "scheduled_at": {"$lte": *at},
                "$or": [
                    {"scheduled_at": {"$lt": *at}},
                    {"scheduled_at": *at, "_id": {"$lte": id}},
                ],
            };
            deleted += delete_batches(db, filter).await?;
        }
    }
    Ok(deleted)
}

/// Daily statistics for `from..=to` (`YYYY-MM-DD`), of one job or summed
/// over all jobs: an index range scan of `stats_daily` (`by_job_day` or
/// `by_day`), one document per job and day.
pub(super) async fn daily_stats(
    db: &Database,
    job: Option<&str>,
    from: &str,
    to: &str,
) -> Result<DailyStats> {
    let (filter, sort) = stats_filter(job, from, to);
    let mut cursor = db
        .collection::<Document>("stats_daily")
        .find(filter)
        .sort(sort)
        .await
        .map_err(backend("read statistics"))?;
    let mut out = DailyStats::new();
    while let Some(d) = cursor
        .try_next()
        .await
        .map_err(backend("read statistics"))?
    {
        stats::add_doc(&mut out, &d);
    }
    Ok(out)
}

/// The filter and sort of a statistics read (also used by the explain test).
pub fn stats_filter(job: Option<&str>, from: &str, to: &str) -> (Document, Document) {
    match job {
        Some(j) => (
            doc! {"job_id": j, "day": {"$gte": from, "$lte": to}},
            doc! {"job_id": 1, "day": 1},
        ),
        None => (
            doc! {"day": {"$gte": from, "$lte": to}},
            doc! {"day": 1, "job_id": 1},
        ),
    }
}
