//! The two storage ports of DESIGN §1 and their embedded implementation.
//!
//! [`CoordStore`] holds jobs, the per-job watermark, the global pause and the
//! claim; [`RunStore`] holds run records. In standalone mode one SQLite file
//! in the state dir implements both; MongoDB and etcd implement the same
//! traits later. All methods are async and never block a runtime thread.

pub mod auth;
pub mod etcd;
pub mod mongo;
pub mod sqlite;
pub mod stats;

pub use auth::{Account, AccountWrite, AuthStore, CoordOp, StoredToken};
pub use sqlite::SqliteStore;

use std::time::Duration;

use async_trait::async_trait;
use cronsun_proto::api::{GlobalPause, LastRun, RunPage, RunQuery};
use cronsun_proto::{Job, RunRecord};
use jiff::Timestamp;
use tokio::sync::broadcast;

/// Store failures. `Conflict` and `NotFound` are answers, not faults.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {id:?} was changed meanwhile: current revision is {current}")]
    Conflict { id: String, current: u64 },
    /// Something other than a job (an account) changed since it was read.
    #[error("{what} was changed meanwhile (current revision {current}); read it again")]
    Stale { what: String, current: u64 },
    #[error("job {0:?} already exists")]
    Exists(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("invalid cursor")]
    BadCursor,
    #[error("storage failed: {0}")]
    Backend(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which revision a job write expects to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// The job must not exist.
    Absent,
    /// The stored revision must be this one.
    Revision(u64),
    /// Create or replace whatever is there (internal use, e.g. `@at` completion
    /// re-reads and writes with the revision it read instead).
    Any,
}

#[derive(Clone, Debug, PartialEq)]
pub enum JobEvent {
    Put(Box<Job>),
    Deleted(String),
}

/// Claim one instant of a job and write its first record in one transaction.
#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub job_id: String,
    /// The revision the caller scheduled from; a changed job fails the claim.
    pub job_revision: u64,
    pub instant: Timestamp,
    /// The record to write if the claim wins (`running`, `skipped` or `missed`).
    pub record: RunRecord,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The watermark moved from `previous` to the instant; `fence` is a
    /// strictly increasing number unique to this claim.
    Won {
        fence: u64,
        previous: Option<Timestamp>,
    },
    /// The instant was already decided (watermark at or after it).
    Decided { watermark: Timestamp },
    /// The job's revision is no longer the one scheduled from, or it was deleted.
    JobChanged,
}

#[async_trait]
pub trait CoordStore: Send + Sync + 'static {
    async fn list_jobs(&self) -> Result<Vec<Job>>;
    async fn get_job(&self, id: &str) -> Result<Option<Job>>;
    /// Validated job in; stored job (new revision, timestamps) out. A new job's
    /// watermark starts at `now` (time before a job existed is never missed).
    async fn put_job(&self, job: Job, expect: Expect, now: Timestamp) -> Result<Job>;
    /// All or nothing.
    async fn put_jobs(&self, jobs: Vec<(Job, Expect)>, now: Timestamp) -> Result<Vec<Job>>;
    async fn delete_job(&self, id: &str, expect: Expect) -> Result<()>;
    /// Every job change after the call, in commit order.
    fn subscribe(&self) -> broadcast::Receiver<JobEvent>;
    async fn watermark(&self, job_id: &str) -> Result<Option<Timestamp>>;
    /// Every job's watermark at once (start-up: one read, not one per job).
    async fn watermarks(&self) -> Result<std::collections::HashMap<String, Timestamp>>;
    /// Moves the watermark to `t` unconditionally (resume resets it to now).
    async fn set_watermark(&self, job_id: &str, t: Timestamp) -> Result<()>;
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome>;
    /// Claims the right to start `record_id`, the retry of a `lost` run,
    /// so that exactly one node starts it (the leader that recorded the run
    /// lost, or its own node coming back). Standalone: one node, always true.
    async fn claim_retry(&self, _record_id: &str) -> Result<bool> {
        Ok(true)
    }
    /// Several claims at once (a busy second), answered in request order.
    /// Each answer means what [`CoordStore::claim`]'s would; a store may
    /// commit them together.
    async fn claim_many(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<ClaimOutcome>> {
        futures::future::join_all(reqs.into_iter().map(|r| self.claim(r))).await
    }
    async fn global_pause(&self) -> Result<GlobalPause>;
    async fn set_global_pause(&self, p: GlobalPause) -> Result<()>;
    /// Applies `ops` in order and appends `audit` (its `after` completed by
    /// [`auth::fill_after`]), all in one transaction: an API mutation and its
    /// audit entry commit together or not at all (DESIGN §5). Returns the
    /// jobs the `PutJob` ops stored, in order.
    async fn apply_audited(
        &self,
        ops: Vec<CoordOp>,
        audit: cronsun_proto::auth::AuditEntry,
        now: Timestamp,
    ) -> Result<Vec<Job>>;
}

/// Retention of run records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_per_job: Option<u32>,
}

#[async_trait]
pub trait RunStore: Send + Sync + 'static {
    /// Applies the write only if `record.seq` is greater than the stored
    /// one (or nothing is stored). Durable before it returns. Returns whether
    /// it was applied.
    async fn write(&self, record: RunRecord) -> Result<bool>;
    /// `id` is `<run_id>#<attempt>`, or a bare run id for its latest attempt.
    async fn get(&self, id: &str) -> Result<Option<RunRecord>>;
    async fn search(&self, q: &RunQuery) -> Result<RunPage>;
    /// Records still `running` on this node (for the restart → `lost` pass).
    async fn running_on(&self, node_id: &str) -> Result<Vec<RunRecord>>;
    /// The latest record of each job (by scheduled_at, then attempt).
    async fn latest_per_job(&self) -> Result<Vec<(String, LastRun)>>;
    /// Deletes by age and count per job in bounded batches; returns how many.
    async fn retain(&self, policy: Retention, now: Timestamp) -> Result<u64>;
    /// Daily counters of one job (or summed over all jobs) for UTC days
    /// `from..=to` (`YYYY-MM-DD`), by day; days without runs are absent.
    /// Pre-aggregated at write time (see [`stats`]), so cheap at any size.
    async fn daily_stats(
        &self,
        job: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<stats::DailyStats>;
    /// Whether the store can take writes (`Err` says why): a failing state
    /// disk makes the node unhealthy and stops new runs.
    fn healthy(&self) -> std::result::Result<(), String> {
        Ok(())
    }
}
