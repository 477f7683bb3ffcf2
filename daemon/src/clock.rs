//! The clock every scheduling decision reads (DESIGN §1 "testability").
//!
//! [`Clock::System`] is the host's wall clock; [`Clock::Manual`] is moved by
//! tests, so DST days, clock steps and restarts are tested deterministically.
//! Sleeps on the system clock wake at least once a second so that wall-clock
//! steps are noticed promptly (see `scheduler::steps`).
//!
//! Test only: in debug builds, `CRONSUN_TEST_CLOCK_OFFSET` (a signed
//! duration such as `3s` or `-1500ms`) shifts [`Clock::System`] by that
//! much, so a real daemon process can run with a wrong clock (the cluster's
//! clock-health tests). Like `CRONSUN_FAULTS` it is a debug-build switch:
//! release builds refuse to start with it set ([`check_test_offset`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

/// The test-only clock offset variable (see the module doc).
pub const TEST_OFFSET_ENV: &str = "CRONSUN_TEST_CLOCK_OFFSET";

/// Longest single sleep on the system clock; bounds how late a clock step is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(1);

#[derive(Clone)]
pub enum Clock {
    System,
    Manual(ManualClock),
}

impl Clock {
    pub fn now(&self) -> Timestamp {
        match self {
            Clock::System => system_now(),
            Clock::Manual(m) => m.now(),
        }
    }

    /// Monotonic reading, used to tell wall-clock steps from elapsed time.
    pub fn monotonic(&self) -> Duration {
        match self {
            Clock::System => {
                static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
                START.get_or_init(Instant::now).elapsed()
            }
            Clock::Manual(m) => m.monotonic(),
        }
    }

    /// Sleeps until `t` on this clock, or for at most one second (system
    /// clock), whichever comes first. Callers loop and re-read `now()`.
    pub async fn sleep_until(&self, t: Timestamp) {
        match self {
            Clock::System => {
                let wait = t.duration_since(system_now());
                let wait = if wait.is_negative() {
                    Duration::ZERO
                } else {
                    Duration::try_from(wait).unwrap_or(MAX_SLEEP).min(MAX_SLEEP)
                };
                tokio::time::sleep(wait).await;
            }
            Clock::Manual(m) => m.sleep_until(t).await,
        }
    }

    pub fn is_system(&self) -> bool {
        matches!(self, Clock::System)
    }
}

/// The host's wall clock, shifted by the test offset (debug builds only).
pub fn system_now() -> Timestamp {
    let now = Timestamp::now();
    match test_offset() {
        Ok(Some(d)) => now.checked_add(d).unwrap_or(now),
        _ => now,
    }
}

/// `CRONSUN_TEST_CLOCK_OFFSET` as parsed once: `Ok(None)` when unset.
fn test_offset() -> Result<Option<SignedDuration>, String> {
    static OFFSET: std::sync::OnceLock<Result<Option<SignedDuration>, String>> =
        std::sync::OnceLock::new();
    OFFSET
        .get_or_init(|| parse_test_offset(std::env::var(TEST_OFFSET_ENV).ok().as_deref()))
        .clone()
}

fn parse_test_offset(v: Option<&str>) -> Result<Option<SignedDuration>, String> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if !cfg!(debug_assertions) {
        return Err(format!(
            "{TEST_OFFSET_ENV} is a test switch of debug builds; unset it (this is a release build)"
        ));
    }
    let (neg, abs) = match v.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, v.strip_prefix('+').unwrap_or(v)),
    };
    let d: cronsun_proto::Dur = abs
        .parse()
        .map_err(|e| format!("{TEST_OFFSET_ENV}={v:?}: {e} (e.g. \"3s\" or \"-1500ms\")"))?;
    let d = SignedDuration::try_from(d.0).map_err(|e| format!("{TEST_OFFSET_ENV}={v:?}: {e}"))?;
    Ok(Some(if neg { -d } else { d }))
}

/// Checks the test clock offset at start: an unparsable value, or any value
/// in a release build, is a startup error naming the variable.
pub fn check_test_offset() -> Result<(), String> {
    test_offset().map(|_| ())
}

/// A clock that only moves when told to. `step` moves the wall clock without
/// moving the monotonic clock (a clock step); `advance` moves both.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(Timestamp, Duration)>>,
    tick: watch::Sender<u64>,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            inner: Arc::new(Mutex::new((start, Duration::ZERO))),
            tick: watch::channel(0).0,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.lock().0
    }

    fn monotonic(&self) -> Duration {
        self.lock().1
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Timestamp, Duration)> {
        // A poisoned lock only means a test thread panicked; the value is still usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves wall and monotonic time forward by `d`.
    pub fn advance(&self, d: Duration) {
        {
            let mut g = self.lock();
            g.0 += SignedDuration::try_from(d).unwrap_or(SignedDuration::ZERO);
            g.1 += d;
        }
        self.tick.send_modify(|n| *n += 1);
    }

    /// Steps the wall clock by `d` (may be negative) without elapsed time.
    pub fn step(&self, d: SignedDuration) {
        {
            let mut g = self.lock();
            g.0 += d;
        }
        self.tick.send_modify(|n| *n += 1);
    }

    async fn sleep_until(&self, t: Timestamp) {
        let mut rx = self.tick.subscribe();
        while self.now() < t {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_offset_parses_signed_durations() {
        assert_eq!(parse_test_offset(None), Ok(None));
        assert_eq!(parse_test_offset(Some(" ")), Ok(None));
        assert_eq!(
            parse_test_offset(Some("3s")),
            Ok(Some(SignedDuration::from_secs(3)))
        );
        assert_eq!(
            parse_test_offset(Some("-1500ms")),
            Ok(Some(SignedDuration::from_millis(-1500)))
        );
        let e = parse_test_offset(Some("soon")).unwrap_err();
        assert!(e.contains(TEST_OFFSET_ENV) && e.contains("soon"), "{e}");
    }
}
