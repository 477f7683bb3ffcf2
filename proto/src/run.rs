//! Run records (DESIGN §3): one record per attempt, identified by
//! `<run_id>#<attempt>`, written in `seq` order.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Write order of a run's records: a write is applied only if its `seq` is
/// greater than the stored one, so replays never regress a record.
pub mod seq {
    pub const RUNNING: u8 = 1;
    pub const LOST: u8 = 2;
    pub const TERMINAL: u8 = 3;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Success,
    Failed,
    Timeout,
    Killed,
    Lost,
    Skipped,
    Missed,
}

impl RunStatus {
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Running,
        RunStatus::Success,
        RunStatus::Failed,
        RunStatus::Timeout,
        RunStatus::Killed,
        RunStatus::Lost,
        RunStatus::Skipped,
        RunStatus::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Success => "success",
            RunStatus::Failed => "failed",
            RunStatus::Timeout => "timeout",
            RunStatus::Killed => "killed",
            RunStatus::Lost => "lost",
            RunStatus::Skipped => "skipped",
            RunStatus::Missed => "missed",
        }
    }

    /// Whether the run is over (every status but `running`).
    pub fn is_final(self) -> bool {
        self != RunStatus::Running
    }

    /// The `seq` of a write carrying this status.
    pub fn seq(self) -> u8 {
        match self {
            RunStatus::Running => seq::RUNNING,
            RunStatus::Lost => seq::LOST,
            _ => seq::TERMINAL,
        }
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown status {s:?}; one of: {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                )
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Trigger {
    Schedule,
    Manual,
    Retry,
    Catchup,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::Catchup => "catchup",
        }
    }
}

/// One attempt of one run. Field names are the public contract (DESIGN §3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunRecord {
    pub run_id: String,
    pub attempt: u32,
    pub job_id: String,
    pub job_revision: u64,
    pub job_name: String,
    pub node_id: String,
    pub hostname: String,
    pub trigger: Trigger,
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
    pub duration_ms: Option<u64>,
    pub status: RunStatus,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub argv: Vec<String>,
    pub run_as: String,
    pub env_keys: Vec<String>,
    /// First `output_limit/2` bytes of output (lossy UTF-8).
    #[serde(default)]
    pub output_head: String,
    /// Last `output_limit/2` bytes, when the output was longer than the limit.
    #[serde(default)]
    pub output_tail: String,
    /// True byte count of the output.
    pub output_bytes: u64,
    pub truncated: bool,
    pub peak_memory: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub io_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub peak_pids: Option<u64>,
    pub fence: Option<u64>,
    pub seq: u8,
    /// Why the run ended as it did when the process alone does not say
    /// (refused by policy, spawn failed, skipped because still running, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl RunRecord {
    /// A record of attempt `attempt` of `run_id` that says nothing yet beyond
    /// its identity and status: no times, process, output or usage. Builders
    /// fill in what they know with struct-update syntax.
    pub fn new(
        run_id: String,
        attempt: u32,
        job_id: &str,
        scheduled_at: Timestamp,
        status: RunStatus,
    ) -> RunRecord {
        RunRecord {
            run_id,
            attempt,
            job_id: job_id.to_string(),
            job_revision: 0,
            job_name: job_id.to_string(),
            node_id: String::new(),
            hostname: String::new(),
            trigger: Trigger::Schedule,
            scheduled_at,
            started_at: None,
            finished_at: None,
            duration_ms: None,
            status,
            exit_code: None,
            signal: None,
            argv: Vec::new(),
            run_as: String::new(),
            env_keys: Vec::new(),
            output_head: String::new(),
            output_tail: String::new(),
            output_bytes: 0,
            truncated: false,
            peak_memory: None,
            cpu_ms: None,
            io_bytes: None,
            oom_kills: None,
            peak_pids: None,
            fence: None,
            seq: status.seq(),
            reason: None,
        }
    }

    /// The stored output as one text: all of it, or the head, a line saying
    /// how many bytes were left out, and the tail.
    pub fn output_text(&self) -> String {
        if !self.truncated {
            return format!("{}{}", self.output_head, self.output_tail);
        }
        let kept = (self.output_head.len() + self.output_tail.len()) as u64;
        let omitted = self.output_bytes.saturating_sub(kept);
        let sep = if self.output_head.ends_with('\n') || self.output_head.is_empty() {
            ""
        } else {
            "\n"
        };
        format!(
            "{}{sep}... [{omitted} bytes omitted] ...\n{}",
            self.output_head, self.output_tail
        )
    }

    /// `<run_id>#<attempt>`.
    pub fn record_id(&self) -> String {
        crate::ids::record_id(&self.run_id, self.attempt)
    }
}
