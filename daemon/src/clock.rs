//! The clock every scheduling decision reads (DESIGN §1 "testability").
//!
//! [`Clock::System`] is the host's wall clock; [`Clock::Manual`] is moved by
//! tests, so DST days, clock steps and restarts are tested deterministically.
//! Sleeps on the system clock wake at least once a second so that wall-clock
//! steps are noticed promptly (see `scheduler::steps`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

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
            Clock::System => Timestamp::now(),
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
                let wait = t.duration_since(Timestamp::now());
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
