//! The coordination store of standalone mode when runs live in MongoDB: the
//! SQLite store, except that a claim's first record goes to the spool (in
//! the same transaction as the watermark, DESIGN §3) instead of the local
//! run table.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use async_trait::async_trait;
use cronsun_proto::api::GlobalPause;
use cronsun_proto::Job;
use jiff::Timestamp;
use tokio::sync::{broadcast, Notify};

use super::note_spool;
use crate::store::sqlite::spool::SpoolBound;
use crate::store::sqlite::SqliteStore;
use crate::store::{ClaimOutcome, ClaimRequest, CoordStore, Expect, JobEvent, Result};

pub struct SpooledCoord {
    store: Arc<SqliteStore>,
    bound: SpoolBound,
    wake: Arc<Notify>,
    spool_ok: Arc<AtomicBool>,
}

impl SpooledCoord {
    pub(super) fn new(
        store: Arc<SqliteStore>,
        bound: SpoolBound,
        wake: Arc<Notify>,
        spool_ok: Arc<AtomicBool>,
    ) -> SpooledCoord {
        SpooledCoord {
            store,
            bound,
            wake,
            spool_ok,
        }
    }
}

#[async_trait]
impl CoordStore for SpooledCoord {
    async fn list_jobs(&self) -> Result<Vec<Job>> {
        self.store.list_jobs().await
    }
    async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        self.store.get_job(id).await
    }
    async fn put_job(&self, job: Job, expect: Expect, now: Timestamp) -> Result<Job> {
        self.store.put_job(job, expect, now).await
    }
    async fn put_jobs(&self, jobs: Vec<(Job, Expect)>, now: Timestamp) -> Result<Vec<Job>> {
        self.store.put_jobs(jobs, now).await
    }
    async fn delete_job(&self, id: &str, expect: Expect) -> Result<()> {
        self.store.delete_job(id, expect).await
    }
    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.store.subscribe()
    }
    async fn watermark(&self, job_id: &str) -> Result<Option<Timestamp>> {
        self.store.watermark(job_id).await
    }
    async fn watermarks(&self) -> Result<std::collections::HashMap<String, Timestamp>> {
        self.store.watermarks().await
    }
    async fn set_watermark(&self, job_id: &str, t: Timestamp) -> Result<()> {
        self.store.set_watermark(job_id, t).await
    }
    /// Refused (an error, so nothing starts) while the spool cannot be written.
    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome> {
        let out = note_spool(
            &self.spool_ok,
            self.store.claim_spooled(req, self.bound).await,
        );
        self.wake.notify_one();
        out
    }
    async fn global_pause(&self) -> Result<GlobalPause> {
        self.store.global_pause().await
    }
    async fn set_global_pause(&self, p: GlobalPause) -> Result<()> {
        self.store.set_global_pause(p).await
    }
    async fn apply_audited(
        &self,
        ops: Vec<crate::store::CoordOp>,
        audit: cronsun_proto::auth::AuditEntry,
        now: Timestamp,
    ) -> Result<Vec<Job>> {
        self.store.apply_audited(ops, audit, now).await
    }
}
