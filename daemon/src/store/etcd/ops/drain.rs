//! Drain through etcd: `drain/<node>` (no lease, so it survives restarts).
//! A drained node starts no new runs: it leaves the `one` ranking (the
//! other nodes take its instants), leaves its `all` instants out without a
//! record (as paused time is), takes no run-now requests, and lets its
//! running runs finish. The node's `node/` record says `draining`.

use std::collections::BTreeSet;
use std::sync::Arc;

use cronsun_proto::api::NodeInfo;
use etcd_client::GetOptions;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::super::client::Etcd;
use super::super::follow::{Change, Feed};
use super::super::keys::Keys;
use super::super::members::Membership;
use super::super::EtcdCoord;
use super::unavailable;
use crate::scheduler::{RequestError, SchedulerHandle};
use crate::store::{CoordStore, StoreError};
use cronsun_proto::job::JobKind;

/// The value of `drain/<node>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    pub by: String,
    pub since: Timestamp,
}

/// Reads this node's drain key before it registers, so a drained node
/// starts drained (its first `node/` record says so).
pub async fn load(etcd: &Etcd, keys: &Keys, member: &Membership) {
    let mut kv = etcd.client.kv_client();
    match etcd
        .call("read drain", kv.get(keys.drain(&member.id()), None))
        .await
    {
        Ok(r) if !r.kvs().is_empty() => {
            info!("this node is drained (drain/ key): starting no new runs until undrained");
            let _ = member.set_draining(true).await;
        }
        Ok(_) => {}
        Err(e) => warn!("cannot read whether this node is drained ({e}); the watch tells later"),
    }
}

impl EtcdCoord {
    /// Every node of the cluster with `draining` from the `drain/` keys
    /// (authoritative, also for nodes that are down).
    pub(in crate::store::etcd) async fn nodes_with_drains(
        &self,
    ) -> Result<Vec<NodeInfo>, StoreError> {
        let mut nodes = self.member.nodes().await?;
        let drained = self.drained().await?;
        for n in &mut nodes {
            n.draining = drained.contains(&n.id);
        }
        Ok(nodes)
    }

    async fn drained(&self) -> Result<BTreeSet<String>, StoreError> {
        let mut kv = self.etcd.client.kv_client();
        let r = self
            .etcd
            .call(
                "list drains",
                kv.get(self.keys.drains(), Some(GetOptions::new().with_prefix())),
            )
            .await?;
        Ok(r.kvs()
            .iter()
            .filter_map(|kv| self.keys.id_in("drain/", kv.key()).map(str::to_string))
            .collect())
    }

    /// Drains (`on`) or undrains a node; answers its state afterwards.
    pub async fn set_drain(
        &self,
        node: &str,
        on: bool,
        by: &str,
        now: Timestamp,
    ) -> Result<NodeInfo, RequestError> {
        let mut info = self
            .nodes()
            .await
            .map_err(unavailable)?
            .into_iter()
            .find(|n| n.id == node)
            .ok_or_else(|| {
                RequestError::NotFound(format!("node {node:?} is not a node of this cluster"))
            })?;
        let key = self.keys.drain(node);
        let mut kv = self.etcd.client.kv_client();
        if on {
            let body = serde_json::to_string(&Drain {
                by: by.to_string(),
                since: now,
            })
            .map_err(|e| RequestError::Unavailable(format!("encode drain: {e}")))?;
            self.etcd
                .call("drain node", kv.put(key, body, None))
                .await
                .map_err(unavailable)?;
        } else {
            self.etcd
                .call("undrain node", kv.delete(key, None))
                .await
                .map_err(unavailable)?;
        }
        info!(node, draining = on, by, "drain state changed");
        info.draining = on;
        Ok(info)
    }

    /// Drained time is never missed (as paused time): before the node
    /// starts runs again, its `all` jobs' local watermarks move to now, so
    /// a restart does not take the drained stretch for downtime. While the
    /// node is still drained nothing claims them, so this cannot race.
    async fn skip_drained_time(&self) {
        let now = Timestamp::now();
        let all: Vec<String> = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, k)| k.kind == JobKind::All)
            .map(|(id, _)| id.clone())
            .collect();
        for id in all {
            let behind = self.local.watermark(&id).await.ok().flatten();
            if behind.is_some_and(|w| w >= now) {
                continue;
            }
            if let Err(e) = self.local.set_watermark(&id, now).await {
                warn!(job = %id, "cannot move the watermark past the drained time: {e}");
            }
        }
    }

    /// Applies this node's `drain/` key as it changes.
    pub(super) async fn follow_drain(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Feed>,
        sched: SchedulerHandle,
    ) {
        while let Some(feed) = rx.recv().await {
            let on = match feed {
                Feed::Snapshot { kvs, .. } => !kvs.is_empty(),
                Feed::Events { changes, .. } => match changes.last() {
                    Some(Change::Put(_)) => true,
                    Some(Change::Deleted(_)) => false,
                    None => continue,
                },
            };
            if on == self.member.draining() {
                continue;
            }
            if on {
                info!(
                    running = sched.running_total(),
                    "drained: starting no new runs; running runs finish"
                );
            } else {
                info!("undrained: starting runs again");
                self.skip_drained_time().await;
            }
            if let Err(e) = self.member.set_draining(on).await {
                warn!("cannot publish the drain state in this node's record: {e}");
            }
        }
    }
}
