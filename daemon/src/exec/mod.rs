//! The executor: starts, signals, accounts and reaps runs (DESIGN §1, §3).
//!
//! Its interface is a set of plain, serialisable messages ([`RunSpec`],
//! [`ExecEvent`], [`RunOutcome`]) so that the host-integration work can move
//! it into the privileged parent process without touching the scheduler.
//! It re-checks the security policy ([`ExecPolicy`]) itself on every spawn.
//!
//! Contract:
//! - [`Executor::spawn`] is synchronous and fast (it is on the fire-latency
//!   path): it resolves user, groups, environment and the program path
//!   *before* forking; the child (a vfork-style clone) only joins its
//!   cgroup, resets signals, calls setsid, dup2, resets nice, OOM score
//!   adjustment, umask and rlimits to host defaults, setgroups, setgid,
//!   setuid, chdir, execve. It returns once the program is executing, or with
//!   [`SpawnError`] naming the step that failed (e.g. `cannot execute
//!   "/no/such": No such file or directory`).
//! - Every spawned run ends with exactly one [`ExecEvent::Finished`] on the
//!   event channel, whatever happens (exit, signal, timeout, kill).
//! - Output (stdout+stderr interleaved) is appended to
//!   [`output_path`]`(state_dir, key)` while the run lives, and the outcome
//!   carries the first and last `output_limit/2` bytes plus the true count.
//!   The executor never deletes that file: whoever consumes the
//!   [`ExecEvent::Finished`] removes it once it is no longer needed.
//! - Each live run has a state file `state_dir/exec/<escaped key>.json`
//!   (its [`ProcessIdentity`] and cgroup folders), removed right after
//!   `Finished` was sent; [`Executor::recover_leftovers`] uses them after a
//!   crash and kills only through the recorded cgroups or after verifying
//!   pid + start time + boot id.
//! - A run ends when its main process exits: output is then drained for at
//!   most 250 ms and every process left in the run is killed.
//! - Runs live in a per-run cgroup (v2, plus v1 hierarchies for limits v2
//!   cannot apply; v1 only when v2 is unusable) when the daemon is root and
//!   the host allows it. Otherwise they live in their own session/process
//!   group with the executor as child subreaper — a weaker guarantee,
//!   warned about once: a descendant that calls setsid and is orphaned
//!   before the run ends escapes.
//! - When the daemon is not root, jobs run as the daemon's user only.
//! - Needs Linux 5.3+ (pidfd), 5.11+ (close_range), and 5.14+ for cgroup v2
//!   `cgroup.kill`.
//!
//! Submodules: `policy` resolves and checks a run before the fork, `spawn`
//! clones and execs, `reaper` supervises a run to its outcome, `output`
//! captures output, `cgroup` owns per-run groups, `procfs` reads process
//! identity, `sys` wraps the raw syscalls, `executor` is the handle.

mod cgroup;
mod hostdefaults;
mod output;
mod policy;
mod procfs;
mod reaper;
mod spawn;
mod sys;
#[cfg(test)]
mod tests;

mod executor;
pub use executor::{LeftoverRun, LocalExecutor};
pub(crate) use output::set_output_group;

/// The executor as the scheduler sees it: in this process
/// ([`LocalExecutor`]: not root, or tests), or in the privileged parent
/// process reached over a socketpair ([`crate::privsep::ExecClient`]).
/// Both keep the same contract (see above); cheap to clone.
#[derive(Clone)]
pub enum Executor {
    Local(LocalExecutor),
    Remote(crate::privsep::ExecClient),
}

impl Executor {
    /// An in-process executor (see [`LocalExecutor::new`]).
    pub fn new(
        policy: ExecPolicy,
        state_dir: &Path,
        events: tokio::sync::mpsc::UnboundedSender<ExecEvent>,
    ) -> std::io::Result<Executor> {
        LocalExecutor::new(policy, state_dir, events).map(Executor::Local)
    }

    /// Replaces the policy of an in-process executor and returns true; a
    /// remote executor reads the config itself on SIGHUP (a compromised agent
    /// must not be able to widen it), so this returns false.
    pub fn set_policy(&self, policy: ExecPolicy) -> bool {
        match self {
            Executor::Local(e) => {
                e.set_policy(policy);
                true
            }
            Executor::Remote(_) => false,
        }
    }

    pub fn uses_cgroups(&self) -> bool {
        match self {
            Executor::Local(e) => e.uses_cgroups(),
            Executor::Remote(c) => c.uses_cgroups(),
        }
    }

    pub fn spawn(&self, spec: RunSpec) -> Result<Started, SpawnError> {
        match self {
            Executor::Local(e) => e.spawn(spec),
            Executor::Remote(c) => c.spawn(spec),
        }
    }

    pub fn kill(&self, key: &str, reason: KillReason) -> bool {
        match self {
            Executor::Local(e) => e.kill(key, reason),
            Executor::Remote(c) => c.kill(key, reason),
        }
    }

    pub fn usage(&self, key: &str) -> Option<Usage> {
        match self {
            Executor::Local(e) => e.usage(key),
            Executor::Remote(c) => c.usage(key),
        }
    }

    /// Keys of the live runs, sorted (with privilege separation: also runs
    /// a previous agent started, which this one re-adopted).
    pub fn running(&self) -> Vec<String> {
        match self {
            Executor::Local(e) => e.running(),
            Executor::Remote(c) => c.running(),
        }
    }

    /// Runs left behind by a previous daemon that are really dead (runs
    /// the executor still supervises are never among them).
    pub fn recover_leftovers(&self) -> Vec<LeftoverRun> {
        match self {
            Executor::Local(e) => e.recover_leftovers(),
            Executor::Remote(c) => c.recover_leftovers(),
        }
    }
}

use std::path::{Path, PathBuf};
use std::time::Duration;

use cronsun_proto::job::{Limits, RunAs};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What to run. `key` is the record id `<run_id>#<attempt>`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub key: String,
    pub argv: Vec<String>,
    /// `None`: the policy's `default_run_as`.
    pub run_as: Option<RunAs>,
    /// Job env plus `CRONSUN_*`; the executor adds the cron-like base
    /// (`PATH`, `HOME`, `SHELL`, `USER`, `LOGNAME` from passwd) under these.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub output_limit: u64,
    pub limits: Limits,
}

/// Who may run what (config `[security]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPolicy {
    /// User for jobs that name none (fallback `nobody`; root never implied).
    pub default_run_as: String,
    /// Users jobs may name; root only if listed.
    pub allowed_users: Vec<String>,
    /// If set, argv[0] must be one of these absolute paths, root-owned and not
    /// group/world-writable (nor its parent folders) at spawn time.
    pub allowed_commands: Option<Vec<PathBuf>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KillReason {
    /// A user asked (API/CLI kill, or `replace`).
    Requested,
    /// Daemon shutdown after the drain deadline.
    Shutdown,
}

/// Identity of a started process, enough to find it again safely after a
/// daemon crash (never kill by a stored pid alone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat` field 22).
    pub start_ticks: u64,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub key: String,
    pub identity: ProcessIdentity,
    pub started_at: Timestamp,
    /// The uid/gid/user the run actually got.
    pub uid: u32,
    pub gid: u32,
    pub user: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Termination {
    Exited(i32),
    Signaled(i32),
    /// Hit its timeout (killed with SIGTERM, then SIGKILL after the grace).
    TimedOut,
    /// Killed on request.
    Killed(KillReason),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub peak_memory: Option<u64>,
    pub cpu_ms: Option<u64>,
    pub io_bytes: Option<u64>,
    pub oom_kills: Option<u64>,
    pub peak_pids: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub termination: Termination,
    /// The main process's exit code / signal, when it had one.
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// When the process started (right after it exec'd).
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub output_head: Vec<u8>,
    pub output_tail: Vec<u8>,
    pub output_bytes: u64,
    pub truncated: bool,
    pub usage: Usage,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExecEvent {
    Finished { key: String, outcome: RunOutcome },
}

/// Why a spawn was refused or failed; the message names the cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum SpawnError {
    #[error("refused by policy: {0}")]
    Refused(String),
    #[error("cannot start: {0}")]
    Failed(String),
}

/// `key` made safe as one file or cgroup name: every byte outside
/// `[A-Za-z0-9._~-]`, and a leading `.`, is percent-encoded (`#` → `%23`).
pub(crate) fn escape_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for (i, b) in key.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'~' | b'-') || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Path of the live output file of run `key`.
pub fn output_path(state_dir: &Path, key: &str) -> PathBuf {
    state_dir
        .join("output")
        .join(format!("{}.log", key.replace(['/', '#'], "_")))
}
