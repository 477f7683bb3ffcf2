//! Baselines measured in the same run as the daemon's figures.
//!
//! - [`spawn_floor`]: what a minimal launcher achieves on this machine — one
//!   thread sleeping with `clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME)` to
//!   each whole second, then spawning `burst` probes back to back
//!   (`std::process::Command`: glibc `posix_spawn`, a vfork-style
//!   clone+exec like the daemon's executor). The probe measures the same
//!   thing as under the daemon.
//! - [`tokio_lateness`]: how late `tokio::time::sleep_until` wakes on a
//!   multi-thread runtime (its timer has millisecond granularity).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use jiff::Timestamp;
use nix::sys::time::TimeSpec;
use nix::time::{clock_nanosleep, ClockId, ClockNanosleepFlags};

use super::stats::Dist;

/// Sleeps until `t` on CLOCK_REALTIME, absolute.
fn sleep_until_realtime(t: Timestamp) {
    let ts = TimeSpec::new(t.as_second(), i64::from(t.subsec_nanosecond()));
    // Bounded: each EINTR retry waits for the same deadline.
    for _ in 0..1000 {
        match clock_nanosleep(
            ClockId::CLOCK_REALTIME,
            ClockNanosleepFlags::TIMER_ABSTIME,
            &ts,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            _ => return,
        }
    }
}

fn spawn_probe(probe: &Path, out: &Path, at: &str) -> anyhow::Result<Child> {
    Command::new(probe)
        .arg(out)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("CRONSUN_SCHEDULED_AT", at)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawning {}", probe.display()))
}

/// Fires `burst` probes at each of the `seconds` whole seconds after `first`
/// (which must lie in the future); samples are appended to `out`.
pub fn spawn_floor(
    probe: &Path,
    out: &Path,
    burst: usize,
    first: Timestamp,
    seconds: u32,
) -> anyhow::Result<()> {
    let (probe, out) = (probe.to_path_buf(), out.to_path_buf());
    let worker = std::thread::Builder::new()
        .name("bench-floor".into())
        .spawn(move || -> anyhow::Result<()> {
            for k in 0..i64::from(seconds) {
                let at = Timestamp::from_second(first.as_second() + k)?;
                let label = at.to_string();
                sleep_until_realtime(at);
                let mut children = Vec::with_capacity(burst);
                for _ in 0..burst {
                    children.push(spawn_probe(&probe, &out, &label)?);
                }
                for mut c in children {
                    c.wait().context("waiting for a probe")?;
                }
            }
            Ok(())
        })
        .context("starting the floor thread")?;
    worker
        .join()
        .map_err(|_| anyhow::anyhow!("the floor thread panicked"))?
}

/// Lateness of `samples` `sleep_until` wake-ups `period` apart.
pub fn tokio_lateness(samples: u32, period: Duration) -> anyhow::Result<Dist> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building a tokio runtime")?;
    Ok(rt.block_on(async move {
        let mut dist = Dist::new();
        let start = Instant::now();
        for k in 1..=samples {
            let deadline = start + period * k;
            tokio::time::sleep_until(deadline.into()).await;
            dist.record(Instant::now().saturating_duration_since(deadline));
        }
        dist
    }))
}
