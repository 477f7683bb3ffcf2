//! Starts claimed runs at their exact instant.
//!
//! The scheduler claims an instant `lead` ahead of time (the store write is
//! off the critical path) and hands the run here. A dedicated thread sleeps
//! with `clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME)` — sub-millisecond
//! wake-ups, unlike tokio's millisecond timer — and calls the executor's
//! synchronous spawn at the instant. Absolute realtime sleeps follow clock
//! steps, so a stepped clock never makes a run start early.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::mpsc;
use std::time::Duration;

use jiff::Timestamp;
use nix::sys::time::TimeSpec;
use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};
use tokio::sync::mpsc::UnboundedSender;

use crate::exec::{Executor, RunSpec, SpawnError, Started};

/// A run to start at `at`.
pub struct Launch {
    pub at: Timestamp,
    pub spec: RunSpec,
}

/// The result of one launch, for the scheduler.
pub struct Launched {
    pub key: String,
    pub at: Timestamp,
    pub result: Result<Started, SpawnError>,
}

/// Handle of the launcher thread; dropping it stops the thread.
pub struct Launcher {
    tx: mpsc::Sender<Launch>,
}

/// How long before the instant the thread switches from the channel wait
/// (coarse) to the absolute sleep (precise).
const PRECISE_WINDOW: Duration = Duration::from_millis(3);

impl Launcher {
    /// `precise`: sleep on the real clock until each instant; `false` (manual
    /// test clock) launches as soon as asked.
    pub fn start(
        exec: Executor,
        done: UnboundedSender<Launched>,
        precise: bool,
    ) -> std::io::Result<Launcher> {
        let (tx, rx) = mpsc::channel::<Launch>();
        std::thread::Builder::new()
            .name("cronsun-launcher".into())
            .spawn(move || run(rx, exec, done, precise))?;
        Ok(Launcher { tx })
    }

    /// Queues a launch. Returns false if the launcher has stopped.
    pub fn launch(&self, l: Launch) -> bool {
        self.tx.send(l).is_ok()
    }
}

struct Pending(Launch, u64);

impl PartialEq for Pending {
    fn eq(&self, o: &Self) -> bool {
        (self.0.at, self.1) == (o.0.at, o.1)
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Pending {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.0.at, self.1).cmp(&(o.0.at, o.1))
    }
}

fn run(rx: mpsc::Receiver<Launch>, exec: Executor, done: UnboundedSender<Launched>, precise: bool) {
    let mut queue: BinaryHeap<Reverse<Pending>> = BinaryHeap::new();
    let mut seq = 0u64;
    loop {
        // Wait for work, or until the earliest launch is close.
        let next = queue.peek().map(|Reverse(p)| p.0.at);
        let received = match next {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) if precise => {
                let until = at.duration_since(Timestamp::now());
                let coarse = Duration::try_from(until)
                    .unwrap_or(Duration::ZERO)
                    .saturating_sub(PRECISE_WINDOW);
                if coarse.is_zero() {
                    Err(mpsc::RecvTimeoutError::Timeout)
                } else {
                    rx.recv_timeout(coarse)
                }
            }
            Some(_) => Err(mpsc::RecvTimeoutError::Timeout),
        };
        match received {
            Ok(l) => {
                seq += 1;
                queue.push(Reverse(Pending(l, seq)));
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) if queue.is_empty() => return,
            Err(_) => {}
        }
        let Some(Reverse(Pending(launch, _))) = queue.pop() else {
            continue;
        };
        if precise {
            sleep_until_realtime(launch.at);
        }
        let key = launch.spec.key.clone();
        let result = exec.spawn(launch.spec);
        if done
            .send(Launched {
                key,
                at: launch.at,
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

/// Sleeps until `t` on CLOCK_REALTIME with an absolute deadline.
fn sleep_until_realtime(t: Timestamp) {
    let ts = TimeSpec::new(t.as_second(), i64::from(t.subsec_nanosecond()));
    // EINTR: retry; any other error: the instant has passed or cannot be
    // waited for, so launch now rather than never.
    while let Err(nix::errno::Errno::EINTR) = clock_nanosleep(
        ClockId::CLOCK_REALTIME,
        ClockNanosleepFlags::TIMER_ABSTIME,
        &ts,
    ) {}
}
