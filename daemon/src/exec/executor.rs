//! The [`LocalExecutor`] handle (in-process): spawn, kill, account and recover runs.
//!
//! Guarantees: every successful [`LocalExecutor::spawn`] is followed by exactly
//! one [`ExecEvent::Finished`] for its key; a run's state file exists from
//! spawn until after that event was sent; leftovers of a previous daemon are
//! killed only through their own cgroup or after pid, start time and boot id
//! were verified. No async runtime is needed: each run has a std thread.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use jiff::Timestamp;
use nix::fcntl::OFlag;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use super::cgroup::{warn_once, Cgroups, RunCgroup};
use super::output::OutputCapture;
use super::policy::DaemonUser;
use super::reaper::{self, RunHandle, Supervised};
use super::spawn::StartError;
use super::{
    escape_key, output_path, procfs, spawn, sys, ExecEvent, ExecPolicy, KillReason,
    ProcessIdentity, RunSpec, SpawnError, Started, Usage,
};

static WARN_NO_CGROUP: AtomicBool = AtomicBool::new(false);

/// A run a previous daemon left behind (found by
/// [`LocalExecutor::recover_leftovers`]); the caller records it as `lost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeftoverRun {
    pub key: String,
    pub identity: ProcessIdentity,
    /// Whether live processes of the run were found and killed.
    pub killed: bool,
}

/// The state file of one live run.
#[derive(Debug, Serialize, Deserialize)]
struct RunFile {
    key: String,
    identity: ProcessIdentity,
    /// The run's cgroup folders (v2 and/or v1).
    #[serde(default)]
    cgroups: Vec<PathBuf>,
}

/// Starts, signals, accounts and reaps runs. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct LocalExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    /// Replaced in place by SIGHUP (see [`LocalExecutor::set_policy`]).
    policy: std::sync::RwLock<ExecPolicy>,
    state_dir: PathBuf,
    events: UnboundedSender<ExecEvent>,
    daemon: DaemonUser,
    boot_id: String,
    devnull: OwnedFd,
    cgroups: Option<Cgroups>,
    runs: Mutex<HashMap<String, Arc<RunHandle>>>,
    /// Set once `clone3(CLONE_INTO_CGROUP)` failed: the kernel lacks it.
    no_clone3: std::sync::atomic::AtomicBool,
}

/// How the executor isolates runs; tests force the fallbacks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    pub use_cgroups: bool,
    /// Use cgroup v2 when present (else v1 hierarchies only).
    pub use_v2: bool,
}

impl LocalExecutor {
    /// Creates `state_dir/output` and `state_dir/exec`, picks cgroups or the
    /// subreaper fallback (warning once about the latter).
    pub fn new(
        policy: ExecPolicy,
        state_dir: &Path,
        events: UnboundedSender<ExecEvent>,
    ) -> io::Result<LocalExecutor> {
        Self::with_options(
            policy,
            state_dir,
            events,
            Options {
                use_cgroups: true,
                use_v2: true,
            },
        )
    }

    pub(crate) fn with_options(
        policy: ExecPolicy,
        state_dir: &Path,
        events: UnboundedSender<ExecEvent>,
        opts: Options,
    ) -> io::Result<LocalExecutor> {
        let with_path = |p: &Path| {
            let p = p.to_path_buf();
            move |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", p.display()))
        };
        for sub in ["output", "exec"] {
            let d = state_dir.join(sub);
            fs::create_dir_all(&d).map_err(with_path(&d))?;
        }
        let devnull = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open("/dev/null")
            .map_err(with_path(Path::new("/dev/null")))?;
        let devnull = spawn::above_stdio(devnull.into())?;
        let daemon = DaemonUser::current()?;
        let cgroups = if !opts.use_cgroups {
            Err("disabled".to_string())
        } else if !daemon.is_root {
            Err("the daemon is not root".to_string())
        } else {
            Cgroups::detect(opts.use_v2)
        };
        let cgroups = match cgroups {
            Ok(root) => Some(root),
            Err(why) => {
                let subreaper = nix::sys::prctl::set_child_subreaper(true).map_or_else(
                    |e| format!("; becoming child subreaper failed too: {e}"),
                    |()| String::new(),
                );
                warn_once(
                    &WARN_NO_CGROUP,
                    &format!(
                        "per-run cgroups unavailable ({why}); runs are tracked by session and process \
                         group only, so a descendant that calls setsid and is orphaned may survive its run{subreaper}"
                    ),
                );
                None
            }
        };
        Ok(LocalExecutor {
            inner: Arc::new(Inner {
                policy: std::sync::RwLock::new(policy),
                state_dir: state_dir.to_path_buf(),
                events,
                daemon,
                boot_id: procfs::boot_id()?,
                devnull,
                cgroups,
                runs: Mutex::new(HashMap::new()),
                no_clone3: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// Replaces the run-as and command policy for every later spawn (SIGHUP).
    /// Runs already started keep the identity they were started with.
    pub fn set_policy(&self, policy: ExecPolicy) {
        *self
            .inner
            .policy
            .write()
            .unwrap_or_else(PoisonError::into_inner) = policy;
    }

    fn runs(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<RunHandle>>> {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn run_file(&self, key: &str) -> PathBuf {
        self.inner
            .state_dir
            .join("exec")
            .join(format!("{}.json", escape_key(key)))
    }

    /// Whether runs get their own cgroup (else the weaker session/process
    /// group + subreaper fallback is in use).
    pub fn uses_cgroups(&self) -> bool {
        self.inner.cgroups.is_some()
    }

    /// Starts a run; returns once its program is executing (or why not).
    /// Keys must be unique among live runs (a live duplicate is refused).
    pub fn spawn(&self, spec: RunSpec) -> Result<Started, SpawnError> {
        let inner = &*self.inner;
        if self.runs().contains_key(&spec.key) {
            return Err(SpawnError::Failed(format!(
                "run {:?} is already running",
                spec.key
            )));
        }
        let prepared = {
            let policy = inner
                .policy
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            super::policy::prepare(&policy, &inner.daemon, &spec)?
        };
        let mut cgroup: Option<RunCgroup> = inner.cgroups.as_ref().and_then(|root| {
            root.create_run(&escape_key(&spec.key), &spec.limits)
                .map_err(|e| tracing::warn!(key = %spec.key, error = %e, "run goes without its own cgroup"))
                .ok()
        });
        let devnull = inner.devnull.as_fd();
        let into = cgroup.as_ref().and_then(|c| c.v2_dir());
        let first = match (into, &cgroup) {
            (Some(dir), Some(c)) if !inner.no_clone3.load(Ordering::Relaxed) => {
                spawn::fork_exec(&prepared, devnull, Some(dir), &c.v1_procs())
            }
            _ => Err(StartError::Cgroup(String::new())),
        };
        let child = match first {
            Err(StartError::Cgroup(why)) if cgroup.is_some() => {
                if !why.is_empty() {
                    inner.no_clone3.store(true, Ordering::Relaxed);
                    tracing::warn!(error = %why, "cannot clone into cgroups; runs join their cgroup after the clone (slower starts)");
                }
                let procs = cgroup.as_ref().map(|c| c.procs()).unwrap_or_default();
                match spawn::fork_exec(&prepared, devnull, None, &procs) {
                    Err(StartError::Cgroup(why)) => {
                        tracing::warn!(key = %spec.key, error = %why, "run goes without its own cgroup");
                        if let Some(cg) = cgroup.take() {
                            cg.remove();
                        }
                        spawn::fork_exec(&prepared, devnull, None, &[])
                    }
                    other => other,
                }
            }
            Err(StartError::Cgroup(_)) => spawn::fork_exec(&prepared, devnull, None, &[]),
            other => other,
        };
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                if let Some(cg) = &cgroup {
                    cg.remove();
                }
                return Err(match e {
                    StartError::Other(e) => e,
                    StartError::Cgroup(why) => SpawnError::Failed(why),
                });
            }
        };
        let started = Instant::now();
        // The child has exec'd (CLONE_VFORK returned): this is when the run started.
        let started_at = Timestamp::now();
        let cgroup = cgroup.map(Arc::new);
        let pid = child.pid;
        let abort = |cgroup: Option<&RunCgroup>, why: String| abort_child(pid, cgroup, why);
        let identity = match procfs::identity(child.pid, &inner.boot_id) {
            Ok(id) => id,
            Err(e) => {
                return Err(abort(
                    cgroup.as_deref(),
                    format!("reading the new process's identity: {e}"),
                ))
            }
        };
        let file = RunFile {
            key: spec.key.clone(),
            identity: identity.clone(),
            cgroups: cgroup.as_ref().map(|c| c.paths()).unwrap_or_default(),
        };
        let run_file = self.run_file(&spec.key);
        if let Err(e) = write_run_file(&run_file, &file) {
            return Err(abort(
                cgroup.as_deref(),
                format!("recording the run in {}: {e}", run_file.display()),
            ));
        }
        let pidfd = match sys::pidfd_open(child.pid) {
            Ok(fd) => fd,
            Err(e) => {
                let _ = fs::remove_file(&run_file);
                return Err(abort(
                    cgroup.as_deref(),
                    format!("pidfd_open (needs Linux 5.3 or later): {e}"),
                ));
            }
        };
        let (wake_r, wake_w) = match nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => {
                let _ = fs::remove_file(&run_file);
                return Err(abort(
                    cgroup.as_deref(),
                    format!("creating the control pipe: {e}"),
                ));
            }
        };
        let handle = Arc::new(RunHandle::new(child.pid, cgroup, wake_w));
        let supervised = Supervised {
            handle: handle.clone(),
            pidfd,
            output: child.output,
            wake: wake_r,
            capture: OutputCapture::new(
                spec.output_limit,
                &output_path(&inner.state_dir, &spec.key),
            ),
            timeout: spec.timeout,
            kill_grace: spec.kill_grace,
            started,
            started_at,
        };
        self.runs().insert(spec.key.clone(), handle);
        let this = self.clone();
        let key = spec.key.clone();
        let thread = std::thread::Builder::new()
            .name(format!(
                "run {}",
                spec.key.chars().take(10).collect::<String>()
            ))
            .spawn(move || this.finish(key, run_file, supervised));
        if let Err(e) = thread {
            // The closure (and with it the run's fds) is gone; stop the run.
            let handle = self.runs().remove(&spec.key);
            let _ = fs::remove_file(self.run_file(&spec.key));
            let cgroup = handle.and_then(|h| h.cgroup.clone());
            return Err(abort(
                cgroup.as_deref(),
                format!("starting the run's thread: {e}"),
            ));
        }
        Ok(Started {
            key: spec.key,
            identity,
            started_at,
            uid: prepared.uid,
            gid: prepared.gid,
            user: prepared.user,
        })
    }

    /// The run's thread: supervise, then report exactly once.
    fn finish(&self, key: String, run_file: PathBuf, s: Supervised) {
        let outcome = reaper::supervise(s);
        self.runs().remove(&key);
        let _ = self.inner.events.send(ExecEvent::Finished { key, outcome });
        if let Err(e) = fs::remove_file(&run_file) {
            tracing::warn!(file = %run_file.display(), error = %e, "cannot remove a finished run's state file");
        }
    }

    /// SIGTERM to the whole run, SIGKILL after its `kill_grace`; its
    /// `Finished` then says `Killed(reason)`. Unknown key → false. A run
    /// whose main process has already exited (it is draining output) keeps
    /// the termination it had; its leftovers are killed anyway.
    pub fn kill(&self, key: &str, reason: KillReason) -> bool {
        let handle = self.runs().get(key).cloned();
        handle.map(|h| h.request_kill(reason)).is_some()
    }

    /// Usage of a live run so far.
    pub fn usage(&self, key: &str) -> Option<Usage> {
        let handle = self.runs().get(key).cloned();
        handle.map(|h| h.usage())
    }

    /// Keys of the live runs, sorted.
    pub fn running(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.runs().keys().cloned().collect();
        keys.sort();
        keys
    }

    /// Finds runs a previous daemon left behind, kills what is verifiably
    /// theirs, removes their state files and returns them (to be marked
    /// `lost`). Call once at start, before spawning.
    pub fn recover_leftovers(&self) -> Vec<LeftoverRun> {
        let dir = self.inner.state_dir.join("exec");
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list leftover runs");
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let file: RunFile = match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "unreadable leftover run file; removed");
                    let _ = fs::remove_file(&path);
                    continue;
                }
            };
            if self.runs().contains_key(&file.key) {
                continue;
            }
            let killed = self.kill_leftover(&file);
            if let Err(e) = fs::remove_file(&path) {
                tracing::warn!(file = %path.display(), error = %e, "cannot remove a leftover run file");
            }
            found.push(LeftoverRun {
                key: file.key,
                identity: file.identity,
                killed,
            });
        }
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found
    }

    fn kill_leftover(&self, file: &RunFile) -> bool {
        let id = &file.identity;
        if id.boot_id != self.inner.boot_id {
            return false; // another boot: its processes are gone
        }
        let mut killed = false;
        let cgroup = self
            .inner
            .cgroups
            .as_ref()
            .and_then(|c| c.open_run(&file.cgroups));
        if let Some(cg) = &cgroup {
            killed |= cg.kill_and_wait(std::time::Duration::from_secs(2));
            cg.remove();
        }
        if procfs::is_same_process(id, &self.inner.boot_id) {
            // Verified leader; as a session leader it cannot have left its
            // group, so its pgid (= pid) names only its own processes.
            let _ = killpg(Pid::from_raw(id.pid), Signal::SIGKILL);
            for (p, _) in reaper::fallback_members(id.pid) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            killed = true;
        }
        killed
    }
}

/// Undoes a half-made spawn: kills and reaps the child, drops its cgroup.
fn abort_child(pid: i32, cgroup: Option<&RunCgroup>, why: String) -> SpawnError {
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    let _ = sys::wait4(pid, false);
    if let Some(cg) = cgroup {
        cg.remove();
    }
    SpawnError::Failed(why)
}

fn write_run_file(path: &Path, file: &RunFile) -> io::Result<()> {
    let json = serde_json::to_vec(file).map_err(io::Error::other)?;
    // Not fsync'd: it only matters after a daemon crash, and on the boot it
    // was written in (a power loss ends the processes it describes anyway).
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(&json)
}
