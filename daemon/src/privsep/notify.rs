//! systemd notifications (`READY=1`, `STATUS=`, `STOPPING=1`, `WATCHDOG=1`)
//! from whichever process has the daemon's state.
//!
//! Guarantees: every call is a no-op without `NOTIFY_SOCKET`. With privilege
//! separation the agent's notifications are relayed through the executor,
//! the unit's main process, so the unit can keep `NotifyAccess=main` (jobs,
//! which also live in the unit's cgroup, cannot speak for the daemon). The
//! watchdog interval is read once by the main process before the fork
//! ([`capture_watchdog`]) because `WATCHDOG_PID` names only that process.

use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Lines an agent may ask the executor to forward (nothing that changes
/// the unit's main pid or file descriptor store).
const FORWARDED: [&str; 5] = [
    "READY=1",
    "STOPPING=1",
    "RELOADING=1",
    "WATCHDOG=1",
    "STATUS=",
];

static WATCHDOG: OnceLock<Option<Duration>> = OnceLock::new();
type Relay = Box<dyn Fn(String) + Send>;
static RELAY: Mutex<Option<Relay>> = Mutex::new(None);

/// Reads `WATCHDOG_USEC` for this process; call in the unit's main process
/// before forking the agent.
pub fn capture_watchdog() {
    let _ = WATCHDOG.set(sd_notify::watchdog_enabled());
}

/// The interval systemd expects watchdog pings within, if any.
pub fn watchdog() -> Option<Duration> {
    *WATCHDOG.get_or_init(sd_notify::watchdog_enabled)
}

/// Makes [`send`] hand messages to `relay` (the agent's executor link).
pub(crate) fn set_relay(relay: Relay) {
    *RELAY.lock().unwrap_or_else(PoisonError::into_inner) = Some(relay);
}

/// Sends newline-separated `KEY=value` lines to systemd (or the relay).
pub fn send(lines: &str) {
    let relay = RELAY.lock().unwrap_or_else(PoisonError::into_inner);
    match relay.as_ref() {
        Some(r) => r(lines.to_string()),
        None => forward(lines),
    }
}

/// Sends an agent's lines to systemd, dropping any line not in the
/// forwarded set.
pub(crate) fn forward(lines: &str) {
    let kept: Vec<&str> = lines
        .lines()
        .filter(|l| {
            FORWARDED
                .iter()
                .any(|f| l.starts_with(f) && (f.ends_with('=') || l == f))
        })
        .map(|l| l.char_indices().nth(512).map_or(l, |(i, _)| &l[..i]))
        .collect();
    if kept.is_empty() {
        return;
    }
    let msg = kept.join("\n");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Custom(&msg)]);
}

#[cfg(test)]
mod tests {
    #[test]
    fn forwards_only_known_lines() {
        // No NOTIFY_SOCKET in tests: forward must simply not fail.
        super::forward("MAINPID=1\nSTATUS=ok\nREADY=1");
    }
}
