//! Kill through etcd: `kill/<record id>` (DESIGN §4). The API node writes
//! it, under a lease of [`KILL_TTL`], for a run another node owns; the
//! owner (named in the value) kills the run and deletes the key. A kill
//! whose owner is down when it returns is void after the lease: the run
//! is recorded `lost` when its node restarts.

use std::sync::Arc;

use cronsun_proto::RunRecord;
use etcd_client::PutOptions;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::super::follow::Feed;
use super::super::EtcdCoord;
use super::{puts, unavailable};
use crate::scheduler::{RequestError, SchedulerHandle};

/// Lease of a kill request (seconds).
pub const KILL_TTL: i64 = 30;

/// The value of `kill/<record id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KillRequest {
    /// `<run_id>#<attempt>`.
    pub record: String,
    /// The node that runs it.
    pub node: String,
    pub requester: String,
    pub at: Timestamp,
}

impl EtcdCoord {
    /// Asks the node that runs `rec` to kill it. 409 if that node is not
    /// alive (nothing to kill; the run is recorded `lost` at its restart).
    pub async fn request_kill(
        &self,
        rec: &RunRecord,
        requester: &str,
        now: Timestamp,
    ) -> Result<(), RequestError> {
        let mut kv = self.etcd.client.kv_client();
        let alive = self
            .etcd
            .call("read node", kv.get(self.keys.node(&rec.node_id), None))
            .await
            .map_err(unavailable)?;
        if alive.kvs().is_empty() {
            return Err(RequestError::Conflict(format!(
                "run {} is on node {:?}, which is not alive: nothing to kill (the run is recorded lost when the node restarts)",
                rec.record_id(),
                rec.node_id
            )));
        }
        let req = KillRequest {
            record: rec.record_id(),
            node: rec.node_id.clone(),
            requester: requester.to_string(),
            at: now,
        };
        let body = serde_json::to_string(&req)
            .map_err(|e| RequestError::Unavailable(format!("encode kill request: {e}")))?;
        let mut lc = self.etcd.client.lease_client();
        let lease = self
            .etcd
            .call("grant kill lease", lc.grant(KILL_TTL, None))
            .await
            .map_err(unavailable)?
            .id();
        self.etcd
            .call(
                "write kill request",
                kv.put(
                    self.keys.kill(&req.record),
                    body,
                    Some(PutOptions::new().with_lease(lease)),
                ),
            )
            .await
            .map_err(unavailable)?;
        info!(run = %req.record, node = %req.node, "kill requested through etcd");
        Ok(())
    }

    /// Applies the kill requests addressed to this node, then deletes them.
    pub(super) async fn follow_kill(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Feed>,
        sched: SchedulerHandle,
    ) {
        while let Some(feed) = rx.recv().await {
            for kv in puts(feed) {
                let Ok(req) = serde_json::from_slice::<KillRequest>(kv.value()) else {
                    warn!(key = %String::from_utf8_lossy(kv.key()), "unreadable kill request, ignoring it");
                    continue;
                };
                if req.node != self.node.id {
                    continue;
                }
                match sched.kill(&req.record).await {
                    Ok(()) => {
                        info!(run = %req.record, requester = %req.requester, "killed a run on request through etcd")
                    }
                    Err(e) => warn!(run = %req.record, "kill request through etcd: {e}"),
                }
                let mut c = self.etcd.client.kv_client();
                if let Err(e) = self
                    .etcd
                    .call("delete kill request", c.delete(kv.key(), None))
                    .await
                {
                    warn!(run = %req.record, "cannot delete the handled kill request (its lease ends it): {e}");
                }
            }
        }
    }
}
