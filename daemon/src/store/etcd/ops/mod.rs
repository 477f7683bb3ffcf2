//! Node-local operations that travel through etcd (DESIGN §4): run-now
//! (`once/<request>`), kill (`kill/<record id>`) and drain (`drain/<node>`).
//! Whichever node serves the API writes the key; the node(s) it concerns
//! follow the prefix (require-leader, re-read after a broken watch) and act.
//!
//! Guarantees:
//! - a run-now of a `one` job starts at most once cluster-wide: the node
//!   that starts it first wins a create-if-absent on `once/<request>/claimed`
//!   that also compares the request still exists and this node's lease; a
//!   run-now of an `all` job starts at most once per selected node (its run
//!   id names the node, and a replayed request's `running` write does not
//!   apply);
//! - `once/` and `kill/` keys carry a lease (and are deleted once handled),
//!   so keys stay O(requests in flight); `drain/` keys have none, so a drain
//!   survives restarts of the node and of the cluster.

mod drain;
mod kill;
mod once;

use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::follow::{follow, Change, Feed};
use super::EtcdCoord;
use crate::scheduler::{RequestError, SchedulerHandle};
use crate::store::StoreError;

pub(super) use drain::load as load_drain;
pub use once::RunAccepted;

fn unavailable(e: StoreError) -> RequestError {
    RequestError::Unavailable(e.to_string())
}

/// The puts of a feed message (a snapshot is all of its keys).
fn puts(feed: Feed) -> Vec<etcd_client::KeyValue> {
    match feed {
        Feed::Snapshot { kvs, .. } => kvs,
        Feed::Events { changes, .. } => changes
            .into_iter()
            .filter_map(|c| match c {
                Change::Put(kv) => Some(kv),
                Change::Deleted(_) => None,
            })
            .collect(),
    }
}

impl EtcdCoord {
    /// Starts following `once/`, `kill/` and this node's `drain/` key; they
    /// act through the scheduler and stop with `stop`.
    pub fn start_ops(self: &Arc<Self>, sched: SchedulerHandle, stop: watch::Receiver<bool>) {
        let (once_feed, once_rx) = self.feed(self.keys.onces(), true, &stop);
        let (kill_feed, kill_rx) = self.feed(self.keys.kills(), true, &stop);
        let (drain_feed, drain_rx) = self.feed(self.keys.drain(&self.node.id), false, &stop);
        let spawned = [
            once_feed,
            kill_feed,
            drain_feed,
            tokio::spawn(
                self.clone()
                    .follow_once(once_rx, sched.clone(), stop.clone()),
            ),
            tokio::spawn(self.clone().follow_kill(kill_rx, sched.clone())),
            tokio::spawn(self.clone().follow_drain(drain_rx, sched)),
        ];
        self.tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(spawned);
    }

    /// A follower of `key` (re-reading after a broken watch) and its feed.
    fn feed(
        &self,
        key: String,
        prefix: bool,
        stop: &watch::Receiver<bool>,
    ) -> (JoinHandle<()>, mpsc::Receiver<Feed>) {
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(follow(self.etcd.clone(), key, prefix, tx, stop.clone()));
        (task, rx)
    }
}
