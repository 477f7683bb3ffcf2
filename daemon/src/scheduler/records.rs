//! Builds run records (DESIGN §3) from jobs, claims and outcomes.

use cronsun_proto::ids;
use cronsun_proto::run::{RunRecord, RunStatus, Trigger};
use cronsun_proto::Job;
use jiff::Timestamp;

use crate::exec::{KillReason, RunOutcome, Termination};

/// Who this node is, as written into records.
#[derive(Clone, Debug)]
pub struct NodeIdentity {
    pub id: String,
    pub hostname: String,
}

/// A fresh record for one attempt, before anything happened.
pub fn new_record(
    job: &Job,
    node: &NodeIdentity,
    run_id: String,
    attempt: u32,
    trigger: Trigger,
    scheduled_at: Timestamp,
    status: RunStatus,
) -> RunRecord {
    RunRecord {
        job_revision: job.revision,
        job_name: job.name.clone(),
        node_id: node.id.clone(),
        hostname: node.hostname.clone(),
        trigger,
        argv: job.argv().unwrap_or_default(),
        run_as: job
            .run_as
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        env_keys: job.env.keys().cloned().collect(),
        ..RunRecord::new(run_id, attempt, &job.id, scheduled_at, status)
    }
}

/// The run id of a scheduled instant on this node.
pub fn scheduled_run_id(job: &Job, instant: Timestamp, node: &NodeIdentity) -> String {
    match job.kind {
        cronsun_proto::job::JobKind::All => ids::scheduled_run_id(&job.id, instant, Some(&node.id)),
        cronsun_proto::job::JobKind::One => ids::scheduled_run_id(&job.id, instant, None),
    }
}

/// A record that ends before it starts (`skipped`, `missed`, refused).
pub fn settled(mut r: RunRecord, status: RunStatus, reason: String, at: Timestamp) -> RunRecord {
    r.status = status;
    r.seq = status.seq();
    r.reason = Some(reason);
    r.finished_at = Some(at);
    r
}

/// The status a termination maps to.
pub fn status_of(t: &Termination) -> RunStatus {
    match t {
        Termination::Exited(0) => RunStatus::Success,
        Termination::Exited(_) | Termination::Signaled(_) => RunStatus::Failed,
        Termination::TimedOut => RunStatus::Timeout,
        Termination::Killed(_) => RunStatus::Killed,
    }
}

/// The terminal record of a run that ended.
pub fn finished(mut r: RunRecord, o: &RunOutcome) -> RunRecord {
    let status = status_of(&o.termination);
    r.status = status;
    r.seq = status.seq();
    r.exit_code = o.exit_code;
    r.signal = o.signal;
    r.started_at = Some(o.started_at);
    r.finished_at = Some(o.finished_at);
    r.duration_ms =
        Some(u64::try_from(o.finished_at.duration_since(o.started_at).as_millis()).unwrap_or(0));
    r.output_head = String::from_utf8_lossy(&o.output_head).into_owned();
    r.output_tail = String::from_utf8_lossy(&o.output_tail).into_owned();
    r.output_bytes = o.output_bytes;
    r.truncated = o.truncated;
    r.peak_memory = o.usage.peak_memory;
    r.cpu_ms = o.usage.cpu_ms;
    r.io_bytes = o.usage.io_bytes;
    r.oom_kills = o.usage.oom_kills;
    r.peak_pids = o.usage.peak_pids;
    r.reason = match &o.termination {
        Termination::TimedOut => Some("timeout reached".into()),
        Termination::Killed(KillReason::Requested) => r
            .reason
            .clone()
            .or_else(|| Some("killed on request".into())),
        Termination::Killed(KillReason::Shutdown) => {
            Some("killed at daemon shutdown after the drain deadline".into())
        }
        _ if o.usage.oom_kills.is_some_and(|n| n > 0) => Some(
            "out of memory: the kernel's OOM killer ended a process of the run (see limits.memory)"
                .into(),
        ),
        _ => r.reason.clone(),
    };
    r
}

/// Whether a finished attempt should be retried.
pub fn wants_retry(job: &Job, r: &RunRecord) -> bool {
    matches!(r.status, RunStatus::Failed | RunStatus::Timeout) && r.attempt <= job.retries
}
