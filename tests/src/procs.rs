//! The process table: find processes by a marker in their command line or
//! environment, and stop them by pid.

use std::fmt;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::wait::poll_until;

/// A live process as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: i32,
    pub ppid: i32,
    pub cmdline: String,
}

impl fmt::Display for ProcInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} (ppid {}): {}", self.pid, self.ppid, self.cmdline)
    }
}

fn all_pids() -> Vec<i32> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

/// State letter and parent pid from `/proc/<pid>/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &s[s.rfind(')')? + 2..];
    let mut it = rest.split(' ');
    let state = it.next()?.chars().next()?;
    let ppid = it.next()?.parse().ok()?;
    Some((state, ppid))
}

fn info(pid: i32) -> Option<ProcInfo> {
    let (state, ppid) = stat(pid)?;
    if state == 'Z' || state == 'X' {
        return None;
    }
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&raw)
        .trim_end_matches('\0')
        .replace('\0', " ");
    Some(ProcInfo { pid, ppid, cmdline })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// Live (not zombie) processes other than this one whose command line or
/// environment contains `marker`.
pub fn processes_matching(marker: &str) -> Vec<ProcInfo> {
    let me = std::process::id() as i32;
    let needle = marker.as_bytes();
    all_pids()
        .into_iter()
        .filter(|&pid| pid != me)
        .filter(|&pid| {
            ["cmdline", "environ"].iter().any(|f| {
                std::fs::read(format!("/proc/{pid}/{f}")).is_ok_and(|b| contains(&b, needle))
            })
        })
        .filter_map(info)
        .collect()
}

/// All live descendants of `root` (children, their children, ...).
pub fn descendants(root: i32) -> Vec<i32> {
    let table: Vec<(i32, i32)> = all_pids()
        .into_iter()
        .filter_map(|p| stat(p).map(|(_, pp)| (p, pp)))
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(child, parent) in &table {
            if parent == p && !out.contains(&child) {
                out.push(child);
                frontier.push(child);
            }
        }
    }
    out
}

/// Sends `sig` to each pid, ignoring pids that are already gone.
pub fn signal_pids(pids: &[i32], sig: Signal) {
    for &p in pids {
        if p > 1 && p != std::process::id() as i32 {
            let _ = kill(Pid::from_raw(p), sig);
        }
    }
}

/// SIGKILLs every process matching `marker` and returns what it found.
pub fn kill_matching(marker: &str) -> Vec<ProcInfo> {
    let found = processes_matching(marker);
    signal_pids(
        &found.iter().map(|p| p.pid).collect::<Vec<_>>(),
        Signal::SIGKILL,
    );
    found
}

/// Waits (bounded) until no live process matches `marker`; returns the
/// survivors if some are still there after `timeout`.
pub fn wait_until_gone(marker: &str, timeout: Duration) -> Result<(), Vec<ProcInfo>> {
    match poll_until(timeout, Duration::from_millis(50), || {
        processes_matching(marker).is_empty().then_some(())
    }) {
        Some(()) => Ok(()),
        None => Err(processes_matching(marker)),
    }
}

/// Waits (bounded) until at least `n` live processes match `marker`.
pub fn wait_until_present(
    marker: &str,
    n: usize,
    timeout: Duration,
) -> Result<Vec<ProcInfo>, Vec<ProcInfo>> {
    poll_until(timeout, Duration::from_millis(50), || {
        let found = processes_matching(marker);
        (found.len() >= n).then_some(found)
    })
    .ok_or_else(|| processes_matching(marker))
}

/// A unique marker for a test's job processes (put it in the job's `env`):
/// on drop, any process still carrying it is SIGKILLed, so a failing test
/// leaves nothing behind.
pub struct MarkerGuard {
    marker: String,
}

impl MarkerGuard {
    pub fn new(prefix: &str) -> Self {
        MarkerGuard {
            marker: crate::jobs::unique_id(prefix),
        }
    }

    /// The marker string itself.
    pub fn marker(&self) -> &str {
        &self.marker
    }

    /// `E2E_MARKER=<marker>` as it appears in `/proc/<pid>/environ`.
    pub fn env_entry(&self) -> String {
        format!("E2E_MARKER={}", self.marker)
    }

    /// The job `env` entry that tags every process of a run (inherited by descendants).
    pub fn env_json(&self) -> serde_json::Value {
        serde_json::json!({ "E2E_MARKER": self.marker })
    }

    pub fn processes(&self) -> Vec<ProcInfo> {
        processes_matching(&self.env_entry())
    }

    /// Asserts (waiting at most `timeout` for reaping) that no process with the marker is alive.
    #[track_caller]
    pub fn assert_none_left(&self, timeout: Duration, context: &str) {
        if let Err(left) = wait_until_gone(&self.env_entry(), timeout) {
            let list: Vec<String> = left.iter().map(ToString::to_string).collect();
            panic!(
                "{context}: {} process(es) of the job survived:\n  {}",
                left.len(),
                list.join("\n  ")
            );
        }
    }

    /// Waits until at least `n` processes carry the marker; panics otherwise.
    #[track_caller]
    pub fn wait_present(&self, n: usize, timeout: Duration, context: &str) -> Vec<ProcInfo> {
        match wait_until_present(&self.env_entry(), n, timeout) {
            Ok(found) => found,
            Err(found) => panic!(
                "{context}: expected at least {n} job process(es) within {timeout:?}, found {}: {found:?}",
                found.len()
            ),
        }
    }
}

impl Drop for MarkerGuard {
    fn drop(&mut self) {
        let left = kill_matching(&self.env_entry());
        if !left.is_empty() {
            eprintln!(
                "cleanup: killed {} leftover job process(es) with {}",
                left.len(),
                self.marker
            );
        }
    }
}

/// A server's log file, opened for appending (restarts add to it).
#[track_caller]
pub fn append_log(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("open the log {}: {e}", path.display()))
}

/// SIGKILLs a server the harness started and reaps it (no-op when it is
/// not running); `child` is left empty.
pub fn kill_and_reap(child: &mut Option<std::process::Child>) {
    if let Some(mut c) = child.take() {
        let _ = kill(Pid::from_raw(c.id() as i32), Signal::SIGKILL);
        let _ = c.wait();
    }
}
