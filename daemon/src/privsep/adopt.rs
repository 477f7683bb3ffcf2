//! Runs a previous agent started that outlived it: the new agent must not
//! record them `lost` (they are alive in the executor), and must record
//! their results when they finish.
//!
//! [`AdoptingRunStore`] hides the adopted runs from `running_on`, which is
//! what the scheduler's lost-run pass reads at start; [`finish_adopted`]
//! writes each adopted run's terminal record (once: records only move
//! forward) and removes its output file.
//!
//! Limit: the scheduler does not know adopted runs, so they do not count
//! for `concurrency`/`max_parallel` and cannot be killed through the API
//! until they end. The scheduler adopting them itself would lift that.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use cronsun_proto::RunRecord;
use jiff::Timestamp;

use super::client::Adopted;
use crate::exec::ExecEvent;
use crate::scheduler::records;
use cronsun_proto::api::{LastRun, RunPage, RunQuery};

use crate::store::{Result, Retention, RunStore};

pub struct AdoptingRunStore {
    inner: Arc<dyn RunStore>,
    adopted: HashSet<String>,
}

impl AdoptingRunStore {
    pub fn wrap(inner: Arc<dyn RunStore>, adopted: HashSet<String>) -> Arc<dyn RunStore> {
        if adopted.is_empty() {
            return inner;
        }
        Arc::new(AdoptingRunStore { inner, adopted })
    }
}

#[async_trait]
impl RunStore for AdoptingRunStore {
    async fn write(&self, record: RunRecord) -> Result<bool> {
        self.inner.write(record).await
    }
    async fn get(&self, id: &str) -> Result<Option<RunRecord>> {
        self.inner.get(id).await
    }
    async fn search(&self, q: &RunQuery) -> Result<RunPage> {
        self.inner.search(q).await
    }
    async fn running_on(&self, node_id: &str) -> Result<Vec<RunRecord>> {
        let mut v = self.inner.running_on(node_id).await?;
        v.retain(|r| !self.adopted.contains(&r.record_id()));
        Ok(v)
    }
    async fn latest_per_job(&self) -> Result<Vec<(String, LastRun)>> {
        self.inner.latest_per_job().await
    }
    async fn retain(&self, policy: Retention, now: Timestamp) -> Result<u64> {
        self.inner.retain(policy, now).await
    }
}

/// Records the results of adopted runs as they finish.
pub async fn finish_adopted(mut adopted: Adopted, runs: Arc<dyn RunStore>, state_dir: PathBuf) {
    if !adopted.keys.is_empty() {
        tracing::info!(
            runs = adopted.keys.len(),
            "re-adopted runs a previous agent started"
        );
    }
    while let Some(ExecEvent::Finished { key, outcome }) = adopted.events.recv().await {
        let rec = match runs.get(&key).await {
            Ok(Some(r)) => r,
            Ok(None) => {
                tracing::warn!(run = %key, "an adopted run finished but has no record");
                continue;
            }
            Err(e) => {
                tracing::error!(run = %key, "cannot read an adopted run's record: {e}");
                continue;
            }
        };
        let done = records::finished(rec, &outcome);
        match runs.write(done).await {
            Ok(_) => {
                tracing::info!(run = %key, "adopted run finished and recorded");
                let _ = tokio::fs::remove_file(crate::exec::output_path(&state_dir, &key)).await;
            }
            Err(e) => tracing::error!(run = %key, "cannot store an adopted run's result: {e}"),
        }
    }
}
