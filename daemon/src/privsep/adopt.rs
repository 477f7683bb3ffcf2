//! Runs a previous agent started and the executor still has (or that ended
//! while no agent was connected) are re-adopted by the scheduler of the new
//! agent (`Scheduler::recover_lost`); their events are forwarded here into
//! the scheduler's executor-event channel, so their results are recorded
//! exactly once, by the same code as every other run.

use tokio::sync::mpsc::UnboundedSender;

use super::client::Adopted;
use crate::exec::ExecEvent;

/// Forwards adopted runs' events until either side closes.
pub async fn forward_adopted(mut adopted: Adopted, to: UnboundedSender<ExecEvent>) {
    if !adopted.keys.is_empty() {
        tracing::info!(
            runs = adopted.keys.len(),
            "re-adopting runs a previous agent started"
        );
    }
    while let Some(ev) = adopted.events.recv().await {
        if to.send(ev).is_err() {
            return;
        }
    }
}
