//! The embedded store: one SQLite file implementing both [`CoordStore`] and
//! [`RunStore`] (standalone mode, DESIGN §1 and §3).
//!
//! Guarantees:
//! - every write is committed with `synchronous = FULL` before its call
//!   returns, so a reported result survives a crash or power loss;
//! - writes go through one writer thread with group commit ([`writer`]), so
//!   they never block the async runtime and are applied in call order;
//! - reads use a pool of read-only connections on the blocking pool
//!   ([`reader`]) and run beside the writer (WAL);
//! - job events are published after commit, in commit order.

mod auth;
pub(crate) mod cursor;
mod jobs;
mod reader;
mod runs;
mod schema;
pub mod spool;
mod stats;
mod writer;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use cronsun_proto::api::{GlobalPause, LastRun, RunPage, RunQuery};
use cronsun_proto::{Job, RunRecord};
use jiff::Timestamp;
use tokio::sync::broadcast;

use self::reader::ReadPool;
use self::writer::Writer;
use super::{
    ClaimOutcome, ClaimRequest, CoordStore, Expect, JobEvent, Result, Retention, RunStore,
    StoreError,
};

/// Read-only connections kept for concurrent reads.
const READERS: usize = 4;
/// Job events buffered per subscriber before a slow one sees `Lagged`.
const EVENT_BUFFER: usize = 4096;
/// Records deleted per retention transaction, so other writes never wait long.
const RETAIN_BATCH: u32 = 1000;
/// Records per transaction in [`SqliteStore::bulk_insert_for_bench`].
const BULK_CHUNK: usize = 10_000;

/// Jobs, watermarks, pause, meta and run records in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: ReadPool,
    events: broadcast::Sender<JobEvent>,
}

impl SqliteStore {
    /// Opens or creates the store at `path` and migrates its schema. Errors
    /// name the file and what to do (permissions, corruption, full disk).
    /// Blocks briefly (file open and migration): call at start-up or from
    /// `spawn_blocking`.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let conn = schema::open_writer(path)?;
        // Fail now, not at the first read, when readers cannot open the file.
        schema::open_reader(path)?;
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let writer = Writer::start(conn, path, events.clone())?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer,
            readers: ReadPool::new(path.to_path_buf(), READERS),
            events,
        })
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commits everything queued and closes the write connection.
    pub async fn close(self) {
        let SqliteStore { writer, .. } = self;
        if let Err(e) = tokio::task::spawn_blocking(move || writer.close_blocking()).await {
            tracing::error!("closing the store failed: {e}");
        }
    }

    /// A value of the daemon's own (node id, last-seen clock, ...).
    pub async fn meta_get(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_owned();
        self.readers.run(move |c| jobs::meta_get(c, &key)).await
    }

    /// Stores a value of the daemon's own, durably.
    pub async fn meta_put(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.writer
            .run(move |c| Ok((jobs::meta_put(c, &key, &value)?, vec![])))
            .await
    }

    /// Applies another store's job changes to the local job table in one
    /// transaction, with a meta value (e.g. the revision they are as of):
    /// revisions are kept as given, local watermarks of kept jobs stay.
    /// Publishes no job events (the other store is the source of those).
    pub async fn mirror_jobs(
        &self,
        puts: Vec<Job>,
        deletes: Vec<String>,
        meta: Option<(String, String)>,
    ) -> Result<()> {
        self.writer
            .run(move |c| {
                for job in &puts {
                    jobs::mirror_put(c, job)?;
                }
                for id in &deletes {
                    jobs::mirror_delete(c, id)?;
                }
                if let Some((k, v)) = &meta {
                    jobs::meta_put(c, k, v)?;
                }
                Ok(((), vec![]))
            })
            .await
    }

    /// Loads records in transactions of 10 000 (benchmarks, imports); same
    /// seq rule as [`RunStore::write`]. Returns how many were applied.
    pub async fn bulk_insert_for_bench(&self, records: Vec<RunRecord>) -> Result<u64> {
        let mut applied = 0;
        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let chunk: Vec<RunRecord> = records.by_ref().take(BULK_CHUNK).collect();
            applied += self
                .writer
                .run(move |c| {
                    let mut n = 0;
                    for r in chunk {
                        n += u64::from(runs::write(c, r)?);
                    }
                    Ok((n, vec![]))
                })
                .await?;
        }
        Ok(applied)
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Connection) -> Result<T> + Send + 'static,
    {
        self.readers.run(f).await
    }
}

/// Nanoseconds since the epoch as stored (watermarks keep full precision).
fn to_ns(t: Timestamp) -> Result<i64> {
    i64::try_from(t.as_nanosecond())
        .map_err(|_| StoreError::Backend(format!("instant {t} is outside 1677..2262")))
}

fn from_ns(ns: i64) -> Result<Timestamp> {
    Timestamp::from_nanosecond(i128::from(ns))
        .map_err(|e| StoreError::Backend(format!("stored instant {ns} is invalid: {e}")))
}

#[async_trait]
impl CoordStore for SqliteStore {
    async fn list_jobs(&self) -> Result<Vec<Job>> {
        self.read(jobs::list_jobs).await
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        let id = id.to_owned();
        self.read(move |c| jobs::get_job(c, &id)).await
    }

    async fn put_job(&self, job: Job, expect: Expect, now: Timestamp) -> Result<Job> {
        self.writer
            .run(move |c| {
                let job = jobs::put_job(c, job, expect, now)?;
                Ok((job.clone(), vec![JobEvent::Put(Box::new(job))]))
            })
            .await
    }

    async fn put_jobs(&self, batch: Vec<(Job, Expect)>, now: Timestamp) -> Result<Vec<Job>> {
        self.writer
            .run(move |c| {
                let mut stored = Vec::with_capacity(batch.len());
                for (job, expect) in batch {
                    stored.push(jobs::put_job(c, job, expect, now)?);
                }
                let events = stored
                    .iter()
                    .map(|j| JobEvent::Put(Box::new(j.clone())))
                    .collect();
                Ok((stored, events))
            })
            .await
    }

    async fn delete_job(&self, id: &str, expect: Expect) -> Result<()> {
        let id = id.to_owned();
        self.writer
            .run(move |c| {
                jobs::delete_job(c, &id, expect)?;
                Ok(((), vec![JobEvent::Deleted(id)]))
            })
            .await
    }

    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    async fn watermark(&self, job_id: &str) -> Result<Option<Timestamp>> {
        let id = job_id.to_owned();
        self.read(move |c| jobs::watermark(c, &id)).await
    }

    async fn watermarks(&self) -> Result<std::collections::HashMap<String, Timestamp>> {
        self.read(jobs::watermarks).await
    }

    async fn set_watermark(&self, job_id: &str, t: Timestamp) -> Result<()> {
        let id = job_id.to_owned();
        self.writer
            .run(move |c| Ok((jobs::set_watermark(c, &id, t)?, vec![])))
            .await
    }

    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome> {
        self.writer
            .run(move |c| Ok((jobs::claim(c, req)?, vec![])))
            .await
    }

    async fn global_pause(&self) -> Result<GlobalPause> {
        self.read(jobs::global_pause).await
    }

    async fn set_global_pause(&self, p: GlobalPause) -> Result<()> {
        self.writer
            .run(move |c| Ok((jobs::set_global_pause(c, &p)?, vec![])))
            .await
    }

    async fn apply_audited(
        &self,
        ops: Vec<super::CoordOp>,
        audit: cronsun_proto::auth::AuditEntry,
        now: Timestamp,
    ) -> Result<Vec<Job>> {
        let logged = audit.clone();
        let stored = self
            .writer
            .run(move |c| auth::apply_ops(c, ops, audit, now))
            .await?;
        auth::journal(&logged);
        Ok(stored)
    }
}

#[async_trait]
impl RunStore for SqliteStore {
    async fn write(&self, record: RunRecord) -> Result<bool> {
        self.writer
            .run(move |c| Ok((runs::write(c, record)?, vec![])))
            .await
    }

    async fn get(&self, id: &str) -> Result<Option<RunRecord>> {
        let id = id.to_owned();
        self.read(move |c| runs::get(c, &id)).await
    }

    async fn search(&self, q: &RunQuery) -> Result<RunPage> {
        let q = q.clone();
        self.read(move |c| runs::search(c, &q)).await
    }

    async fn running_on(&self, node_id: &str) -> Result<Vec<RunRecord>> {
        let node = node_id.to_owned();
        self.read(move |c| runs::running_on(c, &node)).await
    }

    async fn latest_per_job(&self) -> Result<Vec<(String, LastRun)>> {
        self.read(runs::latest_per_job).await
    }

    /// Age counts from `scheduled_at`; `running` records are never deleted.
    /// Each batch is its own transaction, so other writes interleave.
    async fn daily_stats(
        &self,
        job: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<crate::store::stats::DailyStats> {
        let (job, from, to) = (job.map(str::to_owned), from.to_owned(), to.to_owned());
        self.read(move |c| stats::read(c, job.as_deref(), &from, &to))
            .await
    }

    async fn retain(&self, policy: Retention, now: Timestamp) -> Result<u64> {
        let mut deleted = 0;
        if let Some(age) = policy.max_age {
            let age_ms = i64::try_from(age.as_millis()).unwrap_or(i64::MAX);
            let cutoff = now.as_millisecond().saturating_sub(age_ms);
            loop {
                let n = self
                    .writer
                    .run(move |c| Ok((runs::delete_older_than(c, cutoff, RETAIN_BATCH)?, vec![])))
                    .await?;
                deleted += n;
                if n < u64::from(RETAIN_BATCH) {
                    break;
                }
            }
        }
        if let Some(keep) = policy.max_per_job {
            for job in self.read(runs::jobs_with_runs).await? {
                loop {
                    let job = job.clone();
                    let n = self
                        .writer
                        .run(move |c| {
                            Ok((
                                runs::delete_beyond_count(c, &job, keep, RETAIN_BATCH)?,
                                vec![],
                            ))
                        })
                        .await?;
                    deleted += n;
                    if n < u64::from(RETAIN_BATCH) {
                        break;
                    }
                }
            }
        }
        Ok(deleted)
    }
}
