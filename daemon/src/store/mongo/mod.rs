//! The run store on MongoDB (DESIGN §3, §4), behind the local spool.
//!
//! Guarantees:
//! - [`RunStore::write`] returns once the write is in the spool, durable in
//!   the state dir's SQLite file; a claim spools its first record in the
//!   transaction that moves the watermark ([`SpooledCoord`]);
//! - the shipper ([`ship`]) applies spooled writes in order, in batches,
//!   seq-guarded ([`apply`]), and removes them from the spool only after
//!   MongoDB acknowledged them; while MongoDB is down or slow, runs go on
//!   and the spool grows up to its bound (then sheds, see the spool);
//! - reads come from MongoDB, overlaid with spooled writes not yet shipped
//!   for single-record reads; `running_on` is answered from the spool's
//!   record of what this node wrote (standalone: this node is the only
//!   writer of its records).

mod apply;
mod connect;
mod coord;
mod docs;
pub mod plan;
pub mod query;
mod ship;
mod stats;

pub use apply::{apply_batch, Applied, ShipError};
pub use connect::{client, indexes};
pub use coord::SpooledCoord;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cronsun_proto::api::{LastRun, RunPage, RunQuery};
use cronsun_proto::RunRecord;
use jiff::Timestamp;
use mongodb::Database;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::config::MongoSection;
use crate::metrics::Metrics;
use crate::store::sqlite::spool::SpoolBound;
use crate::store::sqlite::SqliteStore;
use crate::store::stats::DailyStats;
use crate::store::{Result, Retention, RunStore};

/// Run records in MongoDB; writes through the spool in `spool`.
pub struct MongoRunStore {
    spool: Arc<SqliteStore>,
    db: Database,
    bound: SpoolBound,
    wake: Arc<Notify>,
    /// False once a spool write failed (state disk trouble): the node is unhealthy.
    spool_ok: Arc<AtomicBool>,
    metrics: Metrics,
    shipper: std::sync::Mutex<Option<JoinHandle<()>>>,
}

/// What the shipper needs, shared with the store.
pub(crate) struct ShipParts {
    pub spool: Arc<SqliteStore>,
    pub db: Database,
    pub batch: u32,
    pub max_age: Option<Duration>,
    pub wake: Arc<Notify>,
    pub metrics: Metrics,
    pub target: String,
}

impl MongoRunStore {
    /// Connects lazily (an unreachable server is not an error here: the
    /// shipper reports it and keeps trying) and starts the shipper, which
    /// creates the indexes once the server answers and stops at `stop`.
    pub async fn start(
        spool: Arc<SqliteStore>,
        cfg: &MongoSection,
        retention: Retention,
        metrics: Metrics,
        stop: watch::Receiver<bool>,
    ) -> std::result::Result<Arc<MongoRunStore>, String> {
        let client = client(cfg).await?;
        let db = client.database(&cfg.database);
        let wake = Arc::new(Notify::new());
        let parts = ShipParts {
            spool: spool.clone(),
            db: db.clone(),
            batch: cfg.batch_size,
            max_age: retention.max_age,
            wake: wake.clone(),
            metrics: metrics.clone(),
            target: format!("{} (database {})", cfg.redacted_uri(), cfg.database),
        };
        let handle = tokio::spawn(ship::run(parts, stop));
        Ok(Arc::new(MongoRunStore {
            spool,
            db,
            bound: bound_of(cfg),
            wake,
            spool_ok: Arc::new(AtomicBool::new(true)),
            metrics,
            shipper: std::sync::Mutex::new(Some(handle)),
        }))
    }

    /// The coordination store whose claims spool their first record here.
    pub fn coord(&self) -> SpooledCoord {
        SpooledCoord::new(
            self.spool.clone(),
            self.bound,
            self.wake.clone(),
            self.spool_ok.clone(),
        )
    }

    /// Waits for the shipper to stop (after the stop signal).
    pub async fn stopped(&self) {
        let handle = match self.shipper.lock() {
            Ok(mut h) => h.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            if let Err(e) = h.await {
                tracing::error!("the MongoDB shipper task failed: {e}");
            }
        }
    }

    /// Writes waiting in the spool (tests, benchmarks).
    pub async fn spool_depth(&self) -> Result<u64> {
        Ok(self.spool.spool_stats().await?.rows)
    }

    /// The database (tests, benchmarks).
    pub fn database(&self) -> &Database {
        &self.db
    }
}

pub(crate) fn bound_of(cfg: &MongoSection) -> SpoolBound {
    SpoolBound {
        max_bytes: cfg.spool_max_bytes,
        max_records: cfg.spool_max_records,
    }
}

/// Marks the spool failed (and counts it) when a spool write errs.
pub(crate) fn note_spool<T>(ok: &AtomicBool, r: Result<T>) -> Result<T> {
    match &r {
        Ok(_) => ok.store(true, Ordering::Relaxed),
        Err(e) => {
            if ok.swap(false, Ordering::Relaxed) {
                tracing::error!(
                    "the spool in the state dir cannot take writes ({e}): no run can start \
                     until it can; check the state disk"
                );
            }
        }
    }
    r
}

#[async_trait]
impl RunStore for MongoRunStore {
    async fn write(&self, record: RunRecord) -> Result<bool> {
        let r = note_spool(
            &self.spool_ok,
            self.spool.spool_push(record, self.bound).await,
        );
        if r.is_err() {
            self.metrics.store_errors.inc();
        }
        self.wake.notify_one();
        r
    }

    async fn get(&self, id: &str) -> Result<Option<RunRecord>> {
        let spooled = self.spool.spool_newest(id).await?;
        let stored = match query::get(&self.db, id).await {
            Ok(s) => s,
            // MongoDB down: a record still in the spool is still readable.
            Err(_) if spooled.is_some() => None,
            Err(e) => return Err(e),
        };
        Ok(match (spooled, stored) {
            (Some(a), Some(b)) => Some(if (a.attempt, a.seq) >= (b.attempt, b.seq) {
                a
            } else {
                b
            }),
            (a, b) => a.or(b),
        })
    }

    async fn search(&self, q: &RunQuery) -> Result<RunPage> {
        query::search(&self.db, q).await
    }

    async fn running_on(&self, node_id: &str) -> Result<Vec<RunRecord>> {
        self.spool.spool_running_on(node_id).await
    }

    async fn latest_per_job(&self) -> Result<Vec<(String, LastRun)>> {
        query::latest_per_job(&self.db).await
    }

    async fn retain(&self, policy: Retention, now: Timestamp) -> Result<u64> {
        query::retain(&self.db, policy, now).await
    }

    async fn daily_stats(&self, job: Option<&str>, from: &str, to: &str) -> Result<DailyStats> {
        query::daily_stats(&self.db, job, from, to).await
    }

    fn healthy(&self) -> std::result::Result<(), String> {
        if self.spool_ok.load(Ordering::Relaxed) {
            Ok(())
        } else {
            Err("the spool in the state dir cannot take writes: no run starts".into())
        }
    }
}
