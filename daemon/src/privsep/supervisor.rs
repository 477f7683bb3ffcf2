//! The executor process (the unit's main process when started as root):
//! prepares the state dir, starts the agent (re-executing this binary, so
//! the agent never inherits this process's threads or locks), serves its
//! requests over a socketpair, forwards run events, restarts it if it dies.
//!
//! Guarantees: no network and no async runtime here; every request is
//! decoded from a bounded frame and checked before it is acted on; spawns
//! go through [`LocalExecutor::spawn`] with the policy *this* process read
//! from the config, so a compromised agent cannot widen it; finished events
//! of runs that ended while no agent was connected are kept and replayed to
//! the next agent; SIGTERM/SIGINT/SIGHUP are forwarded to the agent.
#![allow(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, SigSet, Signal};
use nix::unistd::{Pid, User};
use tracing::{error, info, warn};

use super::wire::{read_frame, write_frame, Reply, Request, WireError};
use super::{notify, AGENT_FD, AGENT_FD_ENV};
use crate::config::{Config, EXIT_CONFIG};
use crate::exec::{ExecEvent, LocalExecutor, RunSpec, SpawnError};

/// Largest `output_limit` a spec may ask for (DESIGN §2).
const MAX_OUTPUT_LIMIT: u64 = 1 << 20;

/// The agent connection and the events waiting for one.
#[derive(Default)]
pub(crate) struct Link {
    stream: Option<UnixStream>,
    pending: VecDeque<ExecEvent>,
}

fn lock(l: &Mutex<Link>) -> std::sync::MutexGuard<'_, Link> {
    l.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the executor role until the agent has drained after SIGTERM.
pub fn run_executor(cfg: &Config, config_path: &Path) -> ExitCode {
    let name = &cfg.security.agent_user;
    let agent = match User::from_name(name) {
        Ok(Some(u)) => u,
        Ok(None) => {
            eprintln!(
                "cronsund: the agent user {name:?} ([security] agent_user) does not exist; \
                 create it with `useradd --system --home-dir /var/lib/cronsun --shell /usr/sbin/nologin {name}` \
                 (the cronsun package creates it)"
            );
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        Err(e) => {
            eprintln!("cronsund: cannot look up the agent user {name:?}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = prepare_dirs(cfg, &agent) {
        eprintln!("cronsund: {e}");
        return ExitCode::FAILURE;
    }
    // Signals are taken by one thread with sigwait; every thread started
    // from here on inherits the mask (runs and the agent reset theirs).
    let mut sigs = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        sigs.add(s);
    }
    if let Err(e) = sigs.thread_block() {
        eprintln!("cronsund: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    crate::exec::set_output_group(agent.gid.as_raw());
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let exec = match LocalExecutor::new(cfg.exec_policy(), &cfg.node.state_dir, tx) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("cronsund: cannot start the executor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let link = Arc::new(Mutex::new(Link::default()));
    let stopping = Arc::new(AtomicBool::new(false));
    let agent_pid = Arc::new(AtomicI32::new(0));
    {
        let (stopping, agent_pid) = (stopping.clone(), agent_pid.clone());
        let policy = PolicySource {
            config_path: config_path.to_path_buf(),
            exec: exec.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || forward_signals(sigs, &stopping, &agent_pid, &policy));
        if let Err(e) = spawned {
            eprintln!("cronsund: cannot start the signal thread: {e}");
            return ExitCode::FAILURE;
        }
    }
    {
        let link = link.clone();
        let spawned = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                while let Some(ev) = rx.blocking_recv() {
                    deliver(&link, ev);
                }
            });
        if let Err(e) = spawned {
            eprintln!("cronsund: cannot start the event thread: {e}");
            return ExitCode::FAILURE;
        }
    }
    info!(
        agent_user = %agent.name,
        "privilege separation: this process (pid {}) is the executor (root, no network); the agent runs as {}",
        std::process::id(),
        agent.name
    );
    let mut backoff = Duration::from_millis(500);
    loop {
        let started = Instant::now();
        let status = match run_agent_once(config_path, &exec, &link, &agent_pid) {
            Ok(s) => s,
            Err(e) => {
                error!("cannot start the agent: {e}");
                return ExitCode::FAILURE;
            }
        };
        agent_pid.store(0, Ordering::SeqCst);
        if stopping.load(Ordering::SeqCst) {
            let code = status.code().unwrap_or(1);
            info!("agent stopped ({status}); executor exits");
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        // Crash tests (debug builds) abort the agent at a fault point to
        // simulate the whole daemon dying: the executor goes down with it.
        if cfg!(debug_assertions)
            && std::env::var_os("CRONSUN_FAULTS").is_some()
            && std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGABRT)
        {
            eprintln!("cronsund: the agent hit a fault point; the executor aborts too");
            std::process::abort();
        }
        if status.code() == Some(EXIT_CONFIG) {
            error!("agent exited {EXIT_CONFIG} (configuration); not restarting");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(500);
        }
        warn!(
            running = exec.running().len(),
            "agent died ({status}); runs keep going; restarting it in {backoff:?}"
        );
        std::thread::sleep(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

/// Starts one agent and serves it until its side of the socket closes.
fn run_agent_once(
    config_path: &Path,
    exec: &LocalExecutor,
    link: &Mutex<Link>,
    agent_pid: &AtomicI32,
) -> std::io::Result<std::process::ExitStatus> {
    let (ours, theirs) = UnixStream::pair()?;
    let theirs: OwnedFd = theirs.into();
    let fd = theirs.as_raw_fd();
    // The real path (not /proc/self/exe), so the agent shows as cronsund.
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("/proc/self/exe"));
    let mut cmd = Command::new(exe);
    cmd.arg("--config")
        .arg(config_path)
        .env(AGENT_FD_ENV, AGENT_FD.to_string());
    // SAFETY: the closure runs in the forked child before exec and makes
    // only async-signal-safe system calls (dup2, sigprocmask) on values
    // computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, AGENT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    drop(theirs);
    agent_pid.store(i32::try_from(child.id()).unwrap_or(0), Ordering::SeqCst);
    serve(ours, exec, link);
    lock(link).stream = None;
    child.wait()
}

/// The request loop, for tests that forge requests.
#[cfg(test)]
pub(crate) fn serve_for_tests(stream: UnixStream, exec: &LocalExecutor, link: &Mutex<Link>) {
    serve(stream, exec, link);
}

/// Hands a finished event to the agent, or keeps it for the next one.
fn deliver(link: &Mutex<Link>, ev: ExecEvent) {
    let mut l = lock(link);
    let sent = match l.stream.as_mut() {
        Some(s) => write_frame(s, &Reply::Event(ev.clone())).is_ok(),
        None => false,
    };
    if !sent {
        l.stream = None;
        l.pending.push_back(ev);
    }
}

fn reply(link: &Mutex<Link>, stream: &mut UnixStream, r: &Reply) {
    let _guard = lock(link);
    if let Err(e) = write_frame(stream, r) {
        warn!("cannot answer the agent: {e}");
    }
}

/// Serves requests until the agent closes the connection.
fn serve(stream: UnixStream, exec: &LocalExecutor, link: &Mutex<Link>) {
    let mut reader = stream;
    let mut writer = match reader.try_clone() {
        Ok(w) => w,
        Err(e) => {
            error!("cannot clone the agent socket: {e}");
            return;
        }
    };
    loop {
        let req = match read_frame::<Request>(&mut reader) {
            Ok(r) => r,
            Err(WireError::Closed) => return,
            Err(WireError::Malformed(why)) => {
                warn!("refused a malformed request from the agent: {why}");
                reply(link, &mut writer, &Reply::Refused { reason: why });
                continue;
            }
            Err(WireError::Io(e)) => {
                warn!("agent connection failed: {e}");
                return;
            }
        };
        handle(req, exec, link, &mut writer);
    }
}

fn handle(req: Request, exec: &LocalExecutor, link: &Mutex<Link>, w: &mut UnixStream) {
    let r = match req {
        Request::Hello => {
            let mut l = lock(link);
            let mut running = exec.running();
            running.extend(
                l.pending
                    .iter()
                    .map(|ExecEvent::Finished { key, .. }| key.clone()),
            );
            let welcome = Reply::Welcome {
                running,
                uses_cgroups: exec.uses_cgroups(),
            };
            if write_frame(w, &welcome).is_err() {
                return;
            }
            while let Some(ev) = l.pending.pop_front() {
                if write_frame(w, &Reply::Event(ev.clone())).is_err() {
                    l.pending.push_front(ev);
                    return;
                }
            }
            l.stream = w.try_clone().ok();
            return;
        }
        Request::Spawn { id, spec } => Reply::Spawned {
            id,
            result: check_spec(&spec).and_then(|()| exec.spawn(spec)),
        },
        Request::Kill { id, key, reason } => Reply::Killed {
            id,
            found: exec.kill(&key, reason),
        },
        Request::Usage { id, key } => Reply::Usage {
            id,
            usage: exec.usage(&key),
        },
        Request::Recover { id } => Reply::Recovered {
            id,
            leftovers: exec.recover_leftovers(),
        },
        Request::Notify { lines } => {
            notify::forward(&lines);
            return;
        }
    };
    reply(link, w, &r);
}

/// Shape checks the executor makes before the policy check proper (which
/// [`LocalExecutor::spawn`] does with this process's own policy).
pub(crate) fn check_spec(spec: &RunSpec) -> Result<(), SpawnError> {
    let refuse = |m: String| Err(SpawnError::Refused(m));
    if spec.key.is_empty() || spec.key.len() > 512 || spec.key.chars().any(char::is_control) {
        return refuse(format!("invalid run key {:?}", spec.key));
    }
    if spec.argv.is_empty() {
        return refuse("empty command".into());
    }
    if spec.output_limit > MAX_OUTPUT_LIMIT {
        return refuse(format!(
            "output_limit {} exceeds {MAX_OUTPUT_LIMIT}",
            spec.output_limit
        ));
    }
    if let Some((k, _)) = spec
        .env
        .iter()
        .find(|(k, _)| k.is_empty() || k.contains('=') || k.contains('\0'))
    {
        return refuse(format!("invalid environment variable name {k:?}"));
    }
    Ok(())
}

/// Where the executor re-reads its policy on SIGHUP: from the config file
/// itself, never from the agent.
struct PolicySource {
    config_path: PathBuf,
    exec: LocalExecutor,
}

impl PolicySource {
    fn reload(&self) {
        match Config::load(&self.config_path, true) {
            Ok(cfg) => {
                if let Err(e) = crate::logging::set_level(&cfg.log.level) {
                    error!("SIGHUP: {e}");
                }
                let p = cfg.exec_policy();
                info!(
                    default_run_as = %p.default_run_as,
                    allowed_users = ?p.allowed_users,
                    allowed_commands = ?p.allowed_commands,
                    "SIGHUP: executor reloaded the run_as and command policy"
                );
                self.exec.set_policy(p);
            }
            Err(e) => error!("SIGHUP: executor keeps its policy; the config is rejected: {e}"),
        }
    }
}

fn forward_signals(
    sigs: SigSet,
    stopping: &AtomicBool,
    agent_pid: &AtomicI32,
    policy: &PolicySource,
) {
    loop {
        let sig = match sigs.wait() {
            Ok(s) => s,
            Err(e) => {
                error!("sigwait failed: {e}");
                return;
            }
        };
        if sig == Signal::SIGHUP {
            policy.reload();
        } else {
            stopping.store(true, Ordering::SeqCst);
        }
        let pid = agent_pid.load(Ordering::SeqCst);
        if pid > 0 {
            let _ = kill(Pid::from_raw(pid), sig);
        } else if sig != Signal::SIGHUP {
            info!("stop requested while no agent runs; exiting");
            std::process::exit(0);
        }
    }
}

/// State dir layout for two users: the dir itself `root:<agent group>`
/// 1770 (the agent creates its database, token and node id there but cannot
/// rename or remove what root created), `exec/` root-only 0700 (run files
/// the executor trusts at recovery), `output/` `root:<agent group>` 0770
/// (files the executor writes, given to the agent's group; no sticky bit, so
/// the agent can remove them once their record is durable — the executor
/// never follows a link there nor writes a file with more than one link). Files a
/// single-process root daemon created before are handed to the agent. The
/// socket's folder goes to the agent.
fn prepare_dirs(cfg: &Config, agent: &User) -> Result<(), String> {
    let state = &cfg.node.state_dir;
    let gid = agent.gid;
    let dir = |path: &PathBuf, mode: u32, group: bool| -> Result<(), String> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() || !m.is_dir() => {
                return Err(format!(
                    "{} exists and is not a folder; refusing to use it",
                    path.display()
                ))
            }
            Ok(_) => {}
            Err(_) => std::fs::create_dir_all(path)
                .map_err(|e| format!("cannot create {}: {e}", path.display()))?,
        }
        nix::unistd::chown(
            path.as_path(),
            Some(nix::unistd::Uid::from_raw(0)),
            Some(if group {
                gid
            } else {
                nix::unistd::Gid::from_raw(0)
            }),
        )
        .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot chmod {}: {e}", path.display()))
    };
    dir(state, 0o1770, true)?;
    dir(&state.join("exec"), 0o700, false)?;
    dir(&state.join("output"), 0o770, true)?;
    if let Ok(entries) = std::fs::read_dir(state) {
        for e in entries.flatten() {
            if let Ok(m) = e.path().symlink_metadata() {
                if m.is_file() && m.uid() == 0 {
                    let _ = std::os::unix::fs::lchown(
                        e.path(),
                        Some(agent.uid.as_raw()),
                        Some(gid.as_raw()),
                    );
                }
            }
        }
    }
    if let Some(parent) = cfg.socket().and_then(Path::parent) {
        if !parent.exists() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create {} ([web] socket): {e}", parent.display()))?;
            let _ = nix::unistd::chown(parent, Some(agent.uid), Some(gid));
        }
    }
    Ok(())
}
