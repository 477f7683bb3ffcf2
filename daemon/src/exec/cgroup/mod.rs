//! One cgroup per run: cgroup v2 first, cgroup v1 hierarchies as fallback
//! and for the controllers v2 lacks (DESIGN §3; on hybrid hosts such as
//! the test machines v2 has no controllers while v1 has memory/cpu/pids).
//!
//! Guarantees: a run joins its groups before it can fork (the child writes
//! `0` to the pre-opened `cgroup.procs` files), so it cannot leave them; a
//! kill ends every process of the run, including setsid'd, double-forked
//! daemons (v2: `cgroup.kill`; v1: freeze, SIGKILL every member, thaw);
//! usage is read from the groups; limits are applied where a controller is
//! available, and skipped with one warning per controller where not. Only
//! groups under the executor's `cronsun.runs` subtrees are ever touched.

mod v1;
mod v2;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cronsun_proto::job::Limits;

use super::Usage;

/// Name of the executor's subtree in each hierarchy.
const SUBTREE: &str = "cronsun.runs";

/// Logs `msg` the first time `flag` is seen unset.
pub(crate) fn warn_once(flag: &AtomicBool, msg: &str) {
    if !flag.swap(true, Ordering::Relaxed) {
        tracing::warn!("{msg}");
    }
}

static WARN_MEMORY: AtomicBool = AtomicBool::new(false);
static WARN_PIDS: AtomicBool = AtomicBool::new(false);
static WARN_CPU: AtomicBool = AtomicBool::new(false);

pub(crate) fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

/// The executor's own v2 group (`0::<path>` of `/proc/self/cgroup`) under
/// `mount`. When that is not the hierarchy's root (systemd with
/// `Delegate=yes`: `.../cronsun.service`), every process of the group (the
/// executor, and the agent if already forked) first moves into the leaf
/// `executor`, so the group has no processes of its own and controllers can
/// be enabled for its `cronsun.runs` subtree. Groups cronsun did not create
/// (systemd's `.control`) are never touched.
fn delegated_base(mount: &Path) -> PathBuf {
    let own = fs::read_to_string("/proc/self/cgroup")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("0::").map(|p| p.trim().to_string()))
        })
        .unwrap_or_default();
    let rel = own.trim_start_matches('/');
    let base = mount.join(rel);
    if rel.is_empty() {
        return base;
    }
    let (base, rel) = match rel.strip_suffix("/executor") {
        // Already in our leaf (e.g. a re-executed executor).
        Some(parent) => (mount.join(parent), parent),
        None => (base, rel),
    };
    let leaf = base.join("executor");
    let moved = ensure_dir(&leaf).and_then(|()| {
        for pid in read_pids(&base.join("cgroup.procs")) {
            write_file(&leaf.join("cgroup.procs"), &pid.to_string())
                .map_err(|e| format!("moving pid {pid} into {}: {e}", leaf.display()))?;
        }
        Ok(())
    });
    match moved {
        Ok(()) => tracing::info!(group = %format!("/{rel}"), "executor moved into its leaf cgroup; runs get groups under cronsun.runs"),
        Err(e) => tracing::warn!("cannot move the executor into a leaf of its delegated cgroup ({e}); controllers may be unavailable to runs"),
    }
    base
}

/// Creates `path` unless it exists.
fn ensure_dir(path: &Path) -> Result<(), String> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// Creates the run group `path`; a stale empty group of that name (left by
/// a crash) is replaced.
fn create_group(path: &Path) -> io::Result<()> {
    match fs::create_dir(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && fs::remove_dir(path).is_ok() => {
            fs::create_dir(path)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("creating cgroup {}: {e}", path.display()),
        )),
    }
}

/// Undoes the kernel's octal escapes (`\040`) in a mountinfo path.
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok());
        if b[i] == b'\\' {
            if let Some(v) = oct.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup mount from mountinfo: filesystem type, mount point, super options.
pub(crate) struct Mount {
    pub fstype: String,
    pub point: PathBuf,
    pub options: Vec<String>,
}

/// The cgroup mounts of the whole hierarchies (mount root `/`).
pub(crate) fn cgroup_mounts(mountinfo: &str) -> Vec<Mount> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let mut post = post.split_ascii_whitespace();
            let fstype = post.next()?;
            let options = post.nth(1).unwrap_or_default();
            let f: Vec<&str> = pre.split_ascii_whitespace().collect();
            if !matches!(fstype, "cgroup" | "cgroup2") || f.get(3) != Some(&"/") {
                return None;
            }
            Some(Mount {
                fstype: fstype.to_string(),
                point: PathBuf::from(unescape_mount(f.get(4)?)),
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// The executor's cgroup subtrees.
#[derive(Debug)]
pub(crate) struct Cgroups {
    v2: Option<v2::Root>,
    v1: Option<v1::Root>,
}

/// Whether each controller can limit runs (`true`: through v2 or v1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Controllers {
    pub memory: bool,
    pub pids: bool,
    pub cpu: bool,
}

impl Cgroups {
    /// Finds the hierarchies and prepares `cronsun.runs` in each usable one.
    /// The error says why no kind of per-run group can be used.
    pub(crate) fn detect(use_v2: bool) -> Result<Cgroups, String> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mounts = cgroup_mounts(&info);
        let v2 = mounts
            .iter()
            .find(|m| m.fstype == "cgroup2" && use_v2)
            .ok_or_else(|| "no cgroup2 hierarchy is mounted".to_string())
            .and_then(|m| v2::Root::at(&delegated_base(&m.point).join(SUBTREE)));
        let v1 = v1::Root::detect(&mounts);
        match (v2, v1) {
            (Err(e2), Err(e1)) => Err(format!("cgroup v2: {e2}; cgroup v1: {e1}")),
            (v2, v1) => {
                if let Err(e) = &v2 {
                    tracing::warn!(
                        "cgroup v2 unusable ({e}); runs use cgroup v1 groups (killed by freezing)"
                    );
                }
                Ok(Cgroups {
                    v2: v2.ok(),
                    v1: v1.ok(),
                })
            }
        }
    }

    pub(crate) fn controllers(&self) -> Controllers {
        let a = self
            .v2
            .as_ref()
            .map(|r| r.controllers())
            .unwrap_or_default();
        let b = self
            .v1
            .as_ref()
            .map(|r| r.controllers())
            .unwrap_or_default();
        Controllers {
            memory: a.memory || b.memory,
            pids: a.pids || b.pids,
            cpu: a.cpu || b.cpu,
        }
    }

    /// Creates the groups of run `name` (an escaped run key) and applies
    /// `limits`. With v2, the run joins only its v2 group plus the v1
    /// hierarchies of controllers its limits need and v2 lacks: every join
    /// is a migration that waits for an RCU grace period, which is what the
    /// fire latency pays for. Without v2 it joins every v1 hierarchy.
    pub(crate) fn create_run(&self, name: &str, limits: &Limits) -> io::Result<RunCgroup> {
        let v2 = self.v2.as_ref().map(|r| r.create_run(name)).transpose()?;
        let v1_needed: Option<Vec<&str>> = v2.as_ref().map(|g| {
            let have = g.controllers();
            [
                ("memory", limits.memory.is_some() && !have.memory),
                ("pids", limits.tasks.is_some() && !have.pids),
                ("cpu", limits.cpu.is_some() && !have.cpu),
            ]
            .into_iter()
            .filter_map(|(c, need)| need.then_some(c))
            .collect()
        });
        let v1 = match (&self.v1, v1_needed) {
            (Some(_), Some(need)) if need.is_empty() => Ok(None),
            (Some(r), need) => r.create_run(name, need.as_deref()).map(Some),
            (None, _) => Ok(None),
        };
        let v1 = match v1 {
            Ok(v1) => v1,
            Err(e) => {
                if let Some(g) = &v2 {
                    g.remove();
                }
                return Err(e);
            }
        };
        let run = RunCgroup { v2, v1 };
        run.apply_limits(limits, self.controllers());
        Ok(run)
    }

    /// Opens the groups a previous daemon recorded (recovery); paths
    /// outside our subtrees are ignored.
    pub(crate) fn open_run(&self, paths: &[PathBuf]) -> Option<RunCgroup> {
        let v2 = self
            .v2
            .as_ref()
            .and_then(|r| paths.iter().find_map(|p| r.open_run(p)));
        let v1 = self.v1.as_ref().and_then(|r| r.open_run(paths));
        (v2.is_some() || v1.is_some()).then_some(RunCgroup { v2, v1 })
    }
}

/// The groups of one run.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    v2: Option<v2::Run>,
    v1: Option<v1::Run>,
}

impl RunCgroup {
    /// Every group folder (recorded for recovery).
    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        let mut p: Vec<PathBuf> = self.v2.iter().map(|g| g.path().to_path_buf()).collect();
        if let Some(g) = &self.v1 {
            p.extend(g.paths());
        }
        p
    }

    /// The v2 group's folder: a child cloned into it (`CLONE_INTO_CGROUP`)
    /// is born there, with no migration (and no RCU grace period) to wait for.
    pub(crate) fn v2_dir(&self) -> Option<BorrowedFd<'_>> {
        self.v2.as_ref().map(|g| g.dir())
    }

    /// The open v1 `cgroup.procs` files (joined by the child itself).
    pub(crate) fn v1_procs(&self) -> Vec<BorrowedFd<'_>> {
        self.v1.as_ref().map(|g| g.procs()).unwrap_or_default()
    }

    /// The open `cgroup.procs` files: a process writing `0` joins the group.
    pub(crate) fn procs(&self) -> Vec<BorrowedFd<'_>> {
        let mut fds: Vec<BorrowedFd<'_>> = self.v2.iter().map(|g| g.procs()).collect();
        if let Some(g) = &self.v1 {
            fds.extend(g.procs());
        }
        fds
    }

    fn apply_limits(&self, limits: &Limits, available: Controllers) {
        let warn = |flag: &AtomicBool, ctl: &str| {
            warn_once(
                flag,
                &format!(
                    "no cgroup {ctl} controller is usable here; job {ctl} limits are not applied"
                ),
            )
        };
        let v2 = self
            .v2
            .as_ref()
            .map(|g| g.controllers())
            .unwrap_or_default();
        let set = |ctl: &str, via_v2: bool, v2_file: &str, v2_value: String| {
            let r = match (&self.v2, &self.v1) {
                (Some(g), _) if via_v2 => g.set(v2_file, &v2_value),
                (_, Some(g)) => g.set_limit(ctl, limits),
                _ => Ok(()),
            };
            if let Err(e) = r {
                tracing::warn!(error = %e, "cannot apply a job {ctl} limit");
            }
        };
        if let Some(m) = limits.memory {
            if available.memory {
                set("memory", v2.memory, "memory.max", m.0.to_string());
            } else {
                warn(&WARN_MEMORY, "memory");
            }
        }
        if let Some(t) = limits.tasks {
            if available.pids {
                set("pids", v2.pids, "pids.max", t.to_string());
            } else {
                warn(&WARN_PIDS, "pids");
            }
        }
        if let Some(c) = limits.cpu {
            if available.cpu {
                set(
                    "cpu",
                    v2.cpu,
                    "cpu.max",
                    format!("{} 100000", cpu_quota_us(c)),
                );
            } else {
                warn(&WARN_CPU, "cpu");
            }
        }
    }

    /// Pids currently in the run's groups.
    pub(crate) fn pids(&self) -> Vec<i32> {
        match (&self.v2, &self.v1) {
            (Some(g), _) => g.pids(),
            (None, Some(g)) => g.pids(),
            (None, None) => Vec::new(),
        }
    }

    /// True when no live process is left.
    pub(crate) fn is_empty(&self) -> bool {
        match (&self.v2, &self.v1) {
            (Some(g), _) => g.is_empty(),
            (None, Some(g)) => g.pids().is_empty(),
            (None, None) => true,
        }
    }

    /// SIGKILLs every process of the run.
    pub(crate) fn kill(&self) {
        if let Some(g) = &self.v2 {
            if let Err(e) = g.kill() {
                tracing::warn!(error = %e, cgroup = %g.path().display(), "cgroup.kill failed");
            } else {
                return;
            }
        }
        if let Some(g) = &self.v1 {
            g.kill();
        }
    }

    /// Kills everything and waits (bounded) until the run is empty.
    /// Returns whether anything was still there.
    pub(crate) fn kill_and_wait(&self, within: Duration) -> bool {
        if self.is_empty() {
            return false;
        }
        let deadline = Instant::now() + within;
        loop {
            self.kill();
            if self.is_empty() || Instant::now() >= deadline {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// What the kernel accounted: v2 where it has it, v1 for the rest.
    pub(crate) fn usage(&self) -> Usage {
        let a = self.v2.as_ref().map(|g| g.usage()).unwrap_or_default();
        let b = self.v1.as_ref().map(|g| g.usage()).unwrap_or_default();
        Usage {
            peak_memory: a.peak_memory.or(b.peak_memory),
            cpu_ms: a.cpu_ms.or(b.cpu_ms),
            io_bytes: a.io_bytes.or(b.io_bytes),
            oom_kills: a.oom_kills.or(b.oom_kills),
            peak_pids: a.peak_pids.or(b.peak_pids),
        }
    }

    /// Kills what is left, then removes the groups.
    pub(crate) fn remove(&self) {
        self.kill_and_wait(Duration::from_secs(2));
        if let Some(g) = &self.v2 {
            g.remove();
        }
        if let Some(g) = &self.v1 {
            g.remove();
        }
    }
}

/// CFS quota for `cores` per 100 ms period (at least 1 ms).
pub(crate) fn cpu_quota_us(cores: f64) -> u64 {
    ((cores * 100_000.0) as u64).max(1000)
}

/// Reads `key value` lines (`cpu.stat`, `memory.events`, ...).
pub(crate) fn keyed(text: Option<&str>, key: &str) -> Option<u64> {
    text?.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Reads a file holding one number.
pub(crate) fn single(path: &Path) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Pids listed in a `cgroup.procs` file.
pub(crate) fn read_pids(path: &Path) -> Vec<i32> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .split_ascii_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hierarchies_in_hybrid_layout() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
                    50 1 0:38 /sub /mnt/x rw - cgroup2 cgroup2 rw\n\
                    51 1 0:38 / /a\\040b rw - cgroup2 cgroup2 rw\n";
        let m = cgroup_mounts(info);
        let points: Vec<&Path> = m.iter().map(|m| m.point.as_path()).collect();
        assert_eq!(
            points,
            [
                Path::new("/sys/fs/cgroup/cpu,cpuacct"),
                Path::new("/sys/fs/cgroup/memory"),
                Path::new("/sys/fs/cgroup/unified"),
                Path::new("/a b"),
            ]
        );
        assert_eq!(m[0].options, ["rw", "cpu", "cpuacct"]);
        assert_eq!(m[2].fstype, "cgroup2");
    }

    #[test]
    fn keyed_values() {
        let t = "usage_usec 1500\nuser_usec 1000\n";
        assert_eq!(keyed(Some(t), "usage_usec"), Some(1500));
        assert_eq!(keyed(Some(t), "nope"), None);
        assert_eq!(cpu_quota_us(0.5), 50_000);
        assert_eq!(cpu_quota_us(0.001), 1000);
    }
}
