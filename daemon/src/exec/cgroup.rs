//! One cgroup v2 group per run, under the executor's own subtree
//! `<cgroup2 mount>/cronsun.runs/`.
//!
//! Guarantees: a run placed in its group before exec cannot leave it, so
//! `cgroup.kill` ends every process of the run, including setsid'd,
//! double-forked daemons; usage (cpu, memory/pids peaks, OOM kills, io) is
//! read from the group when the kernel offers it; limits are applied for the
//! controllers enabled in the subtree and skipped (with one warning per
//! controller) otherwise. Only groups under `cronsun.runs` are ever touched.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use cronsun_proto::job::Limits;

use super::Usage;

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

/// The executor's cgroup subtree and the controllers usable in it.
#[derive(Clone, Debug)]
pub(crate) struct CgroupRoot {
    path: PathBuf,
    memory: bool,
    pids: bool,
    cpu: bool,
    io: bool,
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

/// The mount point of the cgroup2 hierarchy (its root), from mountinfo text.
pub(crate) fn cgroup2_mount(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let fstype = post.split_ascii_whitespace().next()?;
        let f: Vec<&str> = pre.split_ascii_whitespace().collect();
        if fstype != "cgroup2" || f.get(3) != Some(&"/") {
            return None;
        }
        Some(PathBuf::from(unescape_mount(f.get(4)?)))
    })
}

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", path.display()),
        )
    })
}

impl CgroupRoot {
    /// Finds the cgroup2 mount and prepares `cronsun.runs` in it; the error
    /// says why per-run cgroups cannot be used.
    pub(crate) fn detect() -> Result<CgroupRoot, String> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| format!("cannot read /proc/self/mountinfo: {e}"))?;
        let mount = cgroup2_mount(&info).ok_or("no cgroup2 hierarchy is mounted")?;
        Self::at(&mount.join(SUBTREE))
    }

    pub(crate) fn at(path: &Path) -> Result<CgroupRoot, String> {
        match fs::create_dir(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        }
        if !path.join("cgroup.kill").exists() {
            return Err(format!(
                "{} has no cgroup.kill (kernel older than 5.14)",
                path.display()
            ));
        }
        let available = fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
        let mut enabled =
            fs::read_to_string(path.join("cgroup.subtree_control")).unwrap_or_default();
        for c in available.split_ascii_whitespace() {
            if matches!(c, "memory" | "pids" | "cpu" | "io")
                && !enabled.split_ascii_whitespace().any(|e| e == c)
                && write_file(&path.join("cgroup.subtree_control"), &format!("+{c}")).is_ok()
            {
                enabled.push(' ');
                enabled.push_str(c);
            }
        }
        let has = |c: &str| enabled.split_ascii_whitespace().any(|e| e == c);
        Ok(CgroupRoot {
            path: path.to_path_buf(),
            memory: has("memory"),
            pids: has("pids"),
            cpu: has("cpu"),
            io: has("io"),
        })
    }

    /// Creates the group `name` (an escaped run key). A stale empty group of
    /// the same name (left by a crash) is removed first.
    pub(crate) fn create_run(&self, name: &str, limits: &Limits) -> io::Result<RunCgroup> {
        let path = self.path.join(name);
        if let Err(e) = fs::create_dir(&path) {
            if e.kind() != io::ErrorKind::AlreadyExists || fs::remove_dir(&path).is_err() {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating cgroup {}: {e}", path.display()),
                ));
            }
            fs::create_dir(&path)?;
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"));
        let procs = match procs {
            Ok(f) => f,
            Err(e) => {
                let _ = fs::remove_dir(&path);
                return Err(e);
            }
        };
        let cg = RunCgroup {
            path,
            procs,
            root: self.clone(),
        };
        cg.apply_limits(limits);
        Ok(cg)
    }

    /// True when `path` is a run group inside this subtree (guards against a
    /// forged state file naming some other cgroup).
    pub(crate) fn owns(&self, path: &Path) -> bool {
        path.parent() == Some(self.path.as_path())
            && path.file_name().is_some_and(|n| n != "." && n != "..")
    }

    /// Opens an existing run group (recovery).
    pub(crate) fn open_run(&self, path: &Path) -> Option<RunCgroup> {
        if !self.owns(path) || !path.is_dir() {
            return None;
        }
        let procs = OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))
            .ok()?;
        Some(RunCgroup {
            path: path.to_path_buf(),
            procs,
            root: self.clone(),
        })
    }
}

/// The cgroup of one run.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    path: PathBuf,
    procs: File,
    root: CgroupRoot,
}

impl RunCgroup {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The open `cgroup.procs`: a process writing `0` to it joins the group.
    pub(crate) fn procs(&self) -> BorrowedFd<'_> {
        self.procs.as_fd()
    }

    fn apply_limits(&self, limits: &Limits) {
        let set = |enabled: bool, flag: &AtomicBool, ctl: &str, file: &str, value: String| {
            if !enabled {
                warn_once(
                    flag,
                    &format!(
                        "the cgroup {ctl} controller is not enabled in {}; job {ctl} limits are not applied",
                        self.root.path.display()
                    ),
                );
            } else if let Err(e) = write_file(&self.path.join(file), &value) {
                tracing::warn!(error = %e, "cannot apply a job limit");
            }
        };
        if let Some(m) = limits.memory {
            set(
                self.root.memory,
                &WARN_MEMORY,
                "memory",
                "memory.max",
                m.0.to_string(),
            );
        }
        if let Some(t) = limits.tasks {
            set(
                self.root.pids,
                &WARN_PIDS,
                "pids",
                "pids.max",
                t.to_string(),
            );
        }
        if let Some(c) = limits.cpu {
            let quota = ((c * 100_000.0) as u64).max(1000);
            set(
                self.root.cpu,
                &WARN_CPU,
                "cpu",
                "cpu.max",
                format!("{quota} 100000"),
            );
        }
    }

    /// Pids currently in the group.
    pub(crate) fn pids(&self) -> Vec<i32> {
        fs::read_to_string(self.path.join("cgroup.procs"))
            .unwrap_or_default()
            .split_ascii_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// SIGKILLs every process in the group (atomically, by the kernel).
    pub(crate) fn kill(&self) -> io::Result<()> {
        write_file(&self.path.join("cgroup.kill"), "1")
    }

    /// True when no live process is left in the group.
    pub(crate) fn is_empty(&self) -> bool {
        match fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(ev) => ev.lines().any(|l| l == "populated 0"),
            Err(_) => self.pids().is_empty(),
        }
    }

    /// Kills everything and waits (bounded) until the group is empty.
    /// Returns whether anything was still in it.
    pub(crate) fn kill_and_wait(&self, within: Duration) -> bool {
        if self.is_empty() {
            return false;
        }
        if let Err(e) = self.kill() {
            tracing::warn!(error = %e, cgroup = %self.path.display(), "cgroup.kill failed");
        }
        let deadline = Instant::now() + within;
        while !self.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// What the kernel accounted for the group.
    pub(crate) fn usage(&self) -> Usage {
        let read = |f: &str| fs::read_to_string(self.path.join(f)).ok();
        let keyed = |text: &Option<String>, key: &str| -> Option<u64> {
            text.as_ref()?.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        };
        let single = |f: &str| read(f)?.trim().parse::<u64>().ok();
        let io_bytes = read("io.stat").map(|t| {
            t.split_ascii_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    matches!(k, "rbytes" | "wbytes")
                        .then(|| v.parse::<u64>().ok())
                        .flatten()
                })
                .sum()
        });
        Usage {
            peak_memory: single("memory.peak"),
            cpu_ms: keyed(&read("cpu.stat"), "usage_usec").map(|us| us / 1000),
            io_bytes: io_bytes.filter(|_| self.root.io),
            oom_kills: keyed(&read("memory.events"), "oom_kill"),
            peak_pids: single("pids.peak"),
        }
    }

    /// Kills what is left, then removes the group.
    pub(crate) fn remove(&self) {
        self.kill_and_wait(Duration::from_secs(2));
        if let Err(e) = fs::remove_dir(&self.path) {
            tracing::warn!(error = %e, cgroup = %self.path.display(), "cannot remove run cgroup");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_cgroup2_in_hybrid_layout() {
        let info = "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n\
                    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
                    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount(info),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let bind = "50 1 0:38 /sub /mnt/x rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(bind), None);
        let spaced = "41 31 0:38 / /a\\040b rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup2_mount(spaced), Some(PathBuf::from("/a b")));
    }
}
