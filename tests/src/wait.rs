//! Bounded polling for an observable condition.

use std::time::{Duration, Instant};

/// Calls `probe` every `interval` until it returns `Some` or `timeout` has
/// passed (then one last call). Polls an observable state (an API answer, the
/// process table); it is never used to let time pass blindly.
pub fn poll_until<T>(
    timeout: Duration,
    interval: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(interval.min(deadline - now));
    }
}
