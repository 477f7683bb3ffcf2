//! Supervision of one run from exec to outcome, on the run's own thread.
//!
//! Guarantees: the run's output is read as it comes; the timeout and kill
//! requests send SIGTERM to the whole run and SIGKILL after `kill_grace`;
//! when the main process exits, output is drained for at most
//! [`DRAIN`] and every process left in the run is killed *before* the main
//! process is reaped (so its pid, which is the run's process group and
//! session id, cannot be reused while we signal it). Only the run's own pid
//! is ever waited for, plus — in the fallback without cgroups — adopted
//! zombies that were verified members of this run.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

use super::cgroup::RunCgroup;
use super::output::OutputCapture;
use super::{procfs, sys, KillReason, RunOutcome, Termination, Usage};

/// How long output is still read after the main process exited.
pub(crate) const DRAIN: Duration = Duration::from_millis(250);

/// Bound on waiting for killed processes to disappear.
const REAP_BOUND: Duration = Duration::from_secs(2);

/// The part of a run shared between the executor's map and its thread.
#[derive(Debug)]
pub(crate) struct RunHandle {
    pub pid: i32,
    pub cgroup: Option<Arc<RunCgroup>>,
    kill_request: Mutex<Option<KillReason>>,
    wake: File,
}

impl RunHandle {
    pub(crate) fn new(pid: i32, cgroup: Option<Arc<RunCgroup>>, wake: OwnedFd) -> RunHandle {
        RunHandle {
            pid,
            cgroup,
            kill_request: Mutex::new(None),
            wake: File::from(wake),
        }
    }

    /// Asks the run's thread to kill it; the first reason wins.
    pub(crate) fn request_kill(&self, reason: KillReason) {
        self.kill_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(reason);
        // The pipe is non-blocking: a full pipe already means "wake up".
        let _ = io::Write::write(&mut &self.wake, &[1]);
    }

    fn take_kill_request(&self) -> Option<KillReason> {
        *self
            .kill_request
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Live usage: the cgroup's counters, else the main process's `/proc`.
    pub(crate) fn usage(&self) -> Usage {
        let mut u = self.cgroup.as_ref().map(|c| c.usage()).unwrap_or_default();
        if let Some(st) = procfs::stat(self.pid) {
            let ms = (st.utime + st.stime) * 1000 / procfs::ticks_per_second();
            u.cpu_ms = u.cpu_ms.or(Some(ms));
        }
        u.peak_memory = u.peak_memory.or_else(|| procfs::peak_rss(self.pid));
        u
    }
}

/// Everything the run's thread owns.
pub(crate) struct Supervised {
    pub handle: Arc<RunHandle>,
    pub pidfd: OwnedFd,
    pub output: OwnedFd,
    pub wake: OwnedFd,
    pub capture: OutputCapture,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
    pub started: Instant,
    pub started_at: Timestamp,
}

/// Every live process of the run found through `/proc` (fallback without a
/// cgroup): its session and process group (both = the main pid, thanks to
/// setsid) and all their descendants. Setsid'd processes that were already
/// orphaned are out of reach; that is the documented weaker guarantee.
pub(crate) fn fallback_members(pid: i32) -> Vec<(i32, procfs::Stat)> {
    let all = procfs::all_processes();
    let mut members: Vec<(i32, procfs::Stat)> = all
        .iter()
        .filter(|(_, st)| st.session == pid || st.pgrp == pid)
        .copied()
        .collect();
    loop {
        let more: Vec<(i32, procfs::Stat)> = all
            .iter()
            .filter(|(p, st)| {
                members.iter().any(|(m, _)| *m == st.ppid) && !members.iter().any(|(m, _)| m == p)
            })
            .copied()
            .collect();
        if more.is_empty() {
            return members;
        }
        members.extend(more);
    }
}

/// Sends `sig` to the whole run.
fn signal_run(h: &RunHandle, sig: Signal) {
    // pgid == main pid, which is not reaped yet, so it cannot name anyone else.
    let _ = killpg(Pid::from_raw(h.pid), sig);
    match &h.cgroup {
        Some(cg) if sig == Signal::SIGKILL => cg.kill(),
        Some(cg) => {
            for p in cg.pids() {
                let _ = kill(Pid::from_raw(p), sig);
            }
        }
        None => {
            for (p, _) in fallback_members(h.pid) {
                let _ = kill(Pid::from_raw(p), sig);
            }
        }
    }
}

/// Kills whatever is left of the run (main process already exited) and
/// waits, bounded, until it is gone.
fn kill_leftovers(h: &RunHandle) {
    let _ = killpg(Pid::from_raw(h.pid), Signal::SIGKILL);
    if let Some(cg) = &h.cgroup {
        cg.kill_and_wait(REAP_BOUND);
        return;
    }
    let me = std::process::id() as i32;
    let deadline = Instant::now() + REAP_BOUND;
    loop {
        let members = fallback_members(h.pid);
        let live: Vec<i32> = members
            .iter()
            .filter(|(p, st)| *p != h.pid && st.state != 'Z')
            .map(|(p, _)| *p)
            .collect();
        // Adopted (we are a subreaper) zombies of this run are ours to reap.
        for (p, st) in &members {
            if *p != h.pid && st.state == 'Z' && st.ppid == me {
                let _ = sys::wait4(*p, true);
            }
        }
        if live.is_empty() || Instant::now() >= deadline {
            return;
        }
        for p in live {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Reads what is in the output pipe now, without waiting for more.
fn read_available(out: &mut File, capture: &mut OutputCapture, buf: &mut [u8]) {
    loop {
        match sys::poll_readable(&[Some(out.as_fd())], Some(Duration::ZERO)) {
            Ok(r) if r[0] => {}
            _ => return,
        }
        match out.read(buf) {
            Ok(0) => return,
            Ok(n) => capture.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

/// Runs the run to its end and returns its outcome (the main process reaped,
/// no process of the run left, as far as the mechanism in use can tell).
pub(crate) fn supervise(s: Supervised) -> RunOutcome {
    let Supervised {
        handle: h,
        pidfd,
        output,
        wake,
        mut capture,
        timeout,
        kill_grace,
        started,
        started_at,
    } = s;
    let mut out = File::from(output);
    let mut wake = File::from(wake);
    let mut buf = vec![0u8; 64 << 10];
    let deadline = timeout.map(|t| started + t);
    let mut out_open = true;
    let mut exited_at: Option<Instant> = None;
    let mut cause: Option<Termination> = None;
    let mut term_at: Option<Instant> = None;
    let mut hard_killed = false;

    loop {
        let now = Instant::now();
        if exited_at.is_none() && cause.is_none() {
            let why = if deadline.is_some_and(|d| now >= d) {
                Some(Termination::TimedOut)
            } else {
                h.take_kill_request().map(Termination::Killed)
            };
            if let Some(why) = why {
                cause = Some(why);
                term_at = Some(now);
                signal_run(&h, Signal::SIGTERM);
            }
        }
        let grace_end = term_at.map(|t| t + kill_grace);
        if exited_at.is_none() && !hard_killed && grace_end.is_some_and(|g| now >= g) {
            hard_killed = true;
            signal_run(&h, Signal::SIGKILL);
        }
        let drain_end = exited_at.map(|e| e + DRAIN);
        if drain_end.is_some_and(|d| !out_open || now >= d) {
            break;
        }
        let next = [
            deadline.filter(|_| cause.is_none() && exited_at.is_none()),
            grace_end.filter(|_| !hard_killed && exited_at.is_none()),
            drain_end,
        ]
        .into_iter()
        .flatten()
        .min();
        let fds = [
            out_open.then(|| out.as_fd()),
            exited_at.is_none().then(|| pidfd.as_fd()),
            Some(wake.as_fd()),
        ];
        let ready = match sys::poll_readable(&fds, next.map(|n| n.saturating_duration_since(now))) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "poll failed while supervising a run; killing it");
                signal_run(&h, Signal::SIGKILL);
                exited_at.get_or_insert_with(Instant::now);
                out_open = false;
                continue;
            }
        };
        if ready[0] {
            match out.read(&mut buf) {
                Ok(0) => out_open = false,
                Ok(n) => capture.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => out_open = false,
            }
        }
        if ready[1] {
            exited_at = Some(Instant::now());
        }
        if ready[2] {
            let mut sink = [0u8; 64];
            let _ = wake.read(&mut sink);
        }
    }

    kill_leftovers(&h);
    if out_open {
        read_available(&mut out, &mut capture, &mut buf);
    }
    let reaped = match sys::wait4(h.pid, false) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, pid = h.pid, "wait4 on a run's main process failed");
            None
        }
    };
    let mut usage = h.cgroup.as_ref().map(|c| c.usage()).unwrap_or_default();
    if let Some(r) = reaped {
        usage.cpu_ms = usage.cpu_ms.or(Some(r.cpu_ms));
        usage.peak_memory = usage.peak_memory.or(Some(r.max_rss));
    }
    if let Some(cg) = &h.cgroup {
        cg.remove();
    }
    let exit_code = reaped.and_then(|r| r.exit_code);
    let signal = reaped.and_then(|r| r.signal);
    let termination = match (cause, exit_code, signal) {
        (Some(c), _, _) => c,
        (None, Some(code), _) => Termination::Exited(code),
        (None, None, Some(sig)) => Termination::Signaled(sig),
        (None, None, None) => Termination::Signaled(libc::SIGKILL),
    };
    let captured = capture.finish();
    RunOutcome {
        termination,
        exit_code,
        signal,
        started_at,
        finished_at: Timestamp::now(),
        output_head: captured.head,
        output_tail: captured.tail,
        output_bytes: captured.total,
        truncated: captured.truncated,
        usage,
    }
}
