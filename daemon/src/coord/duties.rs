//! Work only the web leader does (DESIGN §4): run-record retention and the
//! reconciliation of runs left `running` by nodes that died for good.
//!
//! Guarantees:
//! - each duty runs only while [`Duty::holds`] says so; in a cluster that is
//!   "this node holds the `leader` key and its lease is not fenced", and the
//!   self-fence deadline is shorter than the lease TTL, so a leader cut off
//!   from etcd stops before another node can be elected;
//! - a duty re-checks leadership before each write, so a leadership lost in
//!   the middle of a pass stops the pass;
//! - reconciliation marks a run `lost` only when its node has no live
//!   registration (its lease expired) for at least the grace period; the
//!   record write is seq-guarded, so a node that comes back and reports the
//!   same run `lost`, or finished, never regresses it (a success after
//!   `lost` raises the "lost run reappeared" alert, DESIGN §3);
//! - a lost `one` run whose job says `on_lost = "retry"` is retried by the
//!   leader's scheduler, after it wins `retry/<run>#<attempt>` in etcd, so
//!   the dead node coming back cannot start the same attempt too.

use std::sync::Arc;
use std::time::Duration;

use cronsun_proto::api::{NodeInfo, RunQuery};
use cronsun_proto::run::RunStatus;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::scheduler::SchedulerHandle;
use crate::store::etcd::EtcdCoord;
use crate::store::{Result, RunStore};

/// Who may do leader-only work now.
#[derive(Clone)]
pub enum Duty {
    /// Standalone: the only node does everything.
    Always,
    /// Cluster: the web leader, while its lease is live.
    Leader(Arc<EtcdCoord>),
}

impl Duty {
    pub fn holds(&self) -> bool {
        match self {
            Duty::Always => true,
            Duty::Leader(c) => c.is_leader(),
        }
    }
}

/// Runs scanned per dead node and pass (the next pass goes on).
const PAGE: u32 = 500;

/// Marks `lost` the runs that dead nodes left `running`, every `every`,
/// while this node leads.
pub struct Reconciler {
    pub coord: Arc<EtcdCoord>,
    pub runs: Arc<dyn RunStore>,
    pub sched: SchedulerHandle,
    pub clock: Clock,
    pub metrics: Metrics,
    pub every: Duration,
    /// How long a node must have been dead before its runs are `lost`.
    pub grace: Duration,
}

impl Reconciler {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let duty = Duty::Leader(self.coord.clone());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            if !duty.holds() {
                continue;
            }
            let dead = match self.coord.nodes().await {
                Ok(nodes) => dead_for(&nodes, self.clock.now(), self.grace),
                Err(e) => {
                    warn!("lost-run reconciliation: cannot list nodes: {e}");
                    continue;
                }
            };
            for node in dead {
                match self.reconcile_node(&node, &duty).await {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(node = %node.id, runs = n, "recorded the runs of a dead node as lost")
                    }
                    Err(e) => warn!(node = %node.id, "lost-run reconciliation failed: {e}"),
                }
            }
        }
    }

    /// One dead node: each run it left `running` becomes `lost`.
    async fn reconcile_node(&self, node: &NodeInfo, duty: &Duty) -> Result<usize> {
        let page = self
            .runs
            .search(&RunQuery {
                node: Some(node.id.clone()),
                status: Some(RunStatus::Running),
                limit: Some(PAGE),
                ..RunQuery::default()
            })
            .await?;
        let mut n = 0;
        for r in page.runs {
            if !duty.holds() {
                break;
            }
            let mut lost = r;
            lost.status = RunStatus::Lost;
            lost.seq = RunStatus::Lost.seq();
            lost.finished_at = Some(self.clock.now());
            lost.reason = Some(format!(
                "node {} stopped renewing its etcd lease (last seen {}) while the run was in progress; its outcome is unknown",
                node.id, node.last_seen
            ));
            if self.runs.write(lost.clone()).await? {
                self.metrics.count_run(RunStatus::Lost);
                n += 1;
                // `on_lost = "retry"`: this node retries it (after claiming
                // the retry key, so the dead node coming back does not too).
                self.sched.adopt_lost(lost).await;
            }
        }
        Ok(n)
    }
}

/// Nodes without a live registration whose last sign of life is older
/// than `grace`.
pub fn dead_for(nodes: &[NodeInfo], now: Timestamp, grace: Duration) -> Vec<NodeInfo> {
    let grace = SignedDuration::try_from(grace).unwrap_or(SignedDuration::MAX);
    nodes
        .iter()
        .filter(|n| !n.alive && now.duration_since(n.last_seen) >= grace)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, alive: bool, last_seen: &str) -> NodeInfo {
        crate::testing::node_info(id, alive, false, last_seen.parse().expect("ts"))
    }

    #[test]
    fn only_nodes_dead_past_the_grace_are_reconciled() {
        let now: Timestamp = "2026-11-25T12:00:30Z".parse().expect("ts");
        let nodes = [
            node("alive", true, "2026-11-25T11:00:00Z"),
            node("just-died", false, "2026-11-25T12:00:25Z"),
            node("long-dead", false, "2026-11-25T12:00:00Z"),
        ];
        let dead: Vec<String> = dead_for(&nodes, now, Duration::from_secs(20))
            .into_iter()
            .map(|n| n.id)
            .collect();
        assert_eq!(dead, vec!["long-dead".to_string()]);
    }

    #[test]
    fn standalone_always_holds_the_duty() {
        assert!(Duty::Always.holds());
    }
}
