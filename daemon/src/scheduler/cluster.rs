//! What the scheduler needs of cluster mode; `None` in standalone mode, so
//! standalone scheduling is unchanged.

use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

/// The node's place in the cluster, as far as firing `one` jobs goes.
pub trait ClusterView: Send + Sync + 'static {
    /// How long after `t - lead` this node tries to claim instant `t` of the
    /// `one` job `job_id` (rank × `claim_delay`); `None`: it does not try
    /// (fenced, clock unhealthy) and takes the instant as decided by others.
    fn claim_offset(&self, job_id: &str, t: Timestamp) -> Option<Duration>;
    /// Moves each time this node fences itself (its lease was not renewed):
    /// its `one` runs must be killed at once.
    fn fences(&self) -> watch::Receiver<u64>;
    /// Drained (`cronsun node drain`): this node starts no new scheduled
    /// runs (`one` instants go to the other nodes, `all` instants are left
    /// out here without a record, as paused time is).
    fn draining(&self) -> bool {
        false
    }
}
