//! CPU time and memory of the daemon's own processes from `/proc`.
//!
//! The daemon is its main process plus, when privilege-separated, the agent
//! it forks: every descendant with the main process's command name. Jobs
//! (other command names) are excluded, and so is `cutime`/`cstime`, so a
//! figure is the daemon's own cost, not its children's.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context as _};

use cronsun_tests::procs;

fn comm(pid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// `utime + stime` of `pid` in clock ticks (fields 14 and 15 of `stat`).
fn cpu_ticks(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name start at field 3 (state).
    let rest = s.get(s.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// `VmRSS` and `VmHWM` of `pid` in KiB.
fn memory_kib(pid: i32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = s.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

fn ticks_per_second() -> anyhow::Result<f64> {
    use nix::unistd::{sysconf, SysconfVar};
    let t = sysconf(SysconfVar::CLK_TCK)
        .context("sysconf(CLK_TCK)")?
        .ok_or_else(|| anyhow!("sysconf(CLK_TCK) has no value"))?;
    Ok(t as f64)
}

/// The daemon's processes: `main` and its descendants with the same name.
#[derive(Clone, Debug)]
pub struct DaemonProcs {
    pids: Vec<i32>,
}

impl DaemonProcs {
    pub fn find(main: i32) -> anyhow::Result<DaemonProcs> {
        let name = comm(main).ok_or_else(|| anyhow!("daemon pid {main} is gone"))?;
        let mut pids = vec![main];
        pids.extend(
            procs::descendants(main)
                .into_iter()
                .filter(|&p| comm(p).as_deref() == Some(name.as_str())),
        );
        Ok(DaemonProcs { pids })
    }

    pub fn count(&self) -> usize {
        self.pids.len()
    }

    fn ticks(&self) -> BTreeMap<i32, u64> {
        self.pids
            .iter()
            .filter_map(|&p| Some((p, cpu_ticks(p)?)))
            .collect()
    }

    /// Summed RSS and high-water mark, in KiB.
    pub fn memory_kib(&self) -> (u64, u64) {
        self.pids
            .iter()
            .filter_map(|&p| memory_kib(p))
            .fold((0, 0), |(r, h), (r2, h2)| (r + r2, h + h2))
    }

    /// Starts a CPU measurement window.
    pub fn cpu_window(&self) -> anyhow::Result<CpuWindow> {
        Ok(CpuWindow {
            procs: self.clone(),
            start: self.ticks(),
            at: Instant::now(),
            hz: ticks_per_second()?,
        })
    }
}

/// CPU time used by a [`DaemonProcs`] since the window started.
pub struct CpuWindow {
    procs: DaemonProcs,
    start: BTreeMap<i32, u64>,
    at: Instant,
    hz: f64,
}

/// Share of one core used over a window.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub percent: f64,
    pub cpu: Duration,
    pub wall: Duration,
}

impl CpuWindow {
    /// CPU used since the start, by processes alive at both ends.
    pub fn finish(&self) -> anyhow::Result<CpuUse> {
        let end = self.procs.ticks();
        let wall = self.at.elapsed();
        if end.is_empty() {
            return Err(anyhow!("the daemon's processes are gone"));
        }
        let ticks: u64 = end
            .iter()
            .filter_map(|(p, t)| Some(t.saturating_sub(*self.start.get(p)?)))
            .sum();
        let cpu = Duration::from_secs_f64(ticks as f64 / self.hz);
        Ok(CpuUse {
            percent: 100.0 * cpu.as_secs_f64() / wall.as_secs_f64().max(1e-9),
            cpu,
            wall,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_cpu_and_memory() {
        let me = std::process::id() as i32;
        assert!(cpu_ticks(me).is_some());
        let (rss, hwm) = memory_kib(me).unwrap_or_default();
        assert!(rss > 0 && hwm >= rss);
    }
}
