//! cgroup v1 groups under `<hierarchy>/<executor's own group>/cronsun.runs/`
//! in every mounted v1 hierarchy with a controller we use (memory, pids, cpu, cpuacct,
//! freezer); named hierarchies (`name=systemd`) are left alone.
//!
//! Guarantees: members are killed by freezing the group (so none can fork
//! or exit while listed), SIGKILLing every member, and thawing; limits and
//! usage use the v1 files of each controller.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cronsun_proto::job::Limits;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::{
    cpu_quota_us, create_group, ensure_dir, keyed, read_pids, single, write_file, Controllers,
    Mount,
};
use crate::exec::Usage;

const USED: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "freezer"];

#[derive(Clone, Debug)]
struct Hierarchy {
    path: PathBuf,
    controllers: Vec<String>,
}

impl Hierarchy {
    fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

/// The executor's own group in the hierarchy mounted at `mount` with
/// `controllers`, from `/proc/self/cgroup` (`N:memory:/system.slice/cronsun.service`):
/// runs are created under it, so they stay inside what systemd delegated to
/// the unit (and inside any limit on the daemon's group) rather than at the
/// hierarchy's root. v1 allows processes in inner groups, so nothing moves.
/// Falls back to the root when that group is not visible under `mount`.
fn delegated_base(
    mount: &std::path::Path,
    proc_self_cgroup: &str,
    controllers: &[String],
) -> PathBuf {
    let own = proc_self_cgroup.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, set, path) = (parts.next()?, parts.next()?, parts.next()?);
        set.split(',')
            .any(|c| controllers.iter().any(|x| x == c))
            .then(|| path.trim().trim_start_matches('/').to_string())
    });
    match own {
        Some(rel) if !rel.is_empty() && mount.join(&rel).is_dir() => mount.join(rel),
        _ => mount.to_path_buf(),
    }
}

#[derive(Debug)]
pub(crate) struct Root {
    hierarchies: Vec<Hierarchy>,
}

impl Root {
    pub(crate) fn detect(mounts: &[Mount]) -> Result<Root, String> {
        let mut hierarchies = Vec::new();
        let mut errors = Vec::new();
        for m in mounts.iter().filter(|m| m.fstype == "cgroup") {
            let controllers: Vec<String> = m
                .options
                .iter()
                .filter(|o| USED.contains(&o.as_str()))
                .cloned()
                .collect();
            if controllers.is_empty() {
                continue;
            }
            let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
            let path = delegated_base(&m.point, &own, &controllers).join(super::SUBTREE);
            match ensure_dir(&path) {
                Ok(()) => hierarchies.push(Hierarchy { path, controllers }),
                Err(e) => errors.push(e),
            }
        }
        if hierarchies.is_empty() {
            return Err(if errors.is_empty() {
                "no v1 hierarchy with memory, pids, cpu, cpuacct or freezer is mounted".into()
            } else {
                errors.join("; ")
            });
        }
        Ok(Root { hierarchies })
    }

    pub(crate) fn controllers(&self) -> Controllers {
        let has = |c: &str| self.hierarchies.iter().any(|h| h.has(c));
        Controllers {
            memory: has("memory"),
            pids: has("pids"),
            cpu: has("cpu"),
        }
    }

    /// Creates the run's group in every hierarchy, or only in those with
    /// one of the controllers in `only`.
    pub(crate) fn create_run(&self, name: &str, only: Option<&[&str]>) -> io::Result<Run> {
        let mut run = Run { groups: Vec::new() };
        let wanted = |h: &&Hierarchy| only.is_none_or(|o| o.iter().any(|c| h.has(c)));
        for h in self.hierarchies.iter().filter(wanted) {
            let path = h.path.join(name);
            let opened = create_group(&path).and_then(|()| {
                OpenOptions::new()
                    .write(true)
                    .open(path.join("cgroup.procs"))
                    .inspect_err(|_| {
                        let _ = fs::remove_dir(&path);
                    })
            });
            match opened {
                Ok(procs) => run.groups.push(Group {
                    hierarchy: h.clone(),
                    path,
                    procs,
                }),
                Err(e) => {
                    run.remove();
                    return Err(e);
                }
            }
        }
        Ok(run)
    }

    /// Opens the recorded groups that lie in our subtrees (recovery).
    pub(crate) fn open_run(&self, paths: &[PathBuf]) -> Option<Run> {
        let groups: Vec<Group> = paths
            .iter()
            .filter_map(|p| {
                let h = self
                    .hierarchies
                    .iter()
                    .find(|h| p.parent() == Some(h.path.as_path()))?;
                let name_ok = p.file_name().is_some_and(|n| n != "." && n != "..");
                let procs = OpenOptions::new()
                    .write(true)
                    .open(p.join("cgroup.procs"))
                    .ok()
                    .filter(|_| name_ok)?;
                Some(Group {
                    hierarchy: h.clone(),
                    path: p.clone(),
                    procs,
                })
            })
            .collect();
        (!groups.is_empty()).then_some(Run { groups })
    }
}

#[derive(Debug)]
struct Group {
    hierarchy: Hierarchy,
    path: PathBuf,
    procs: File,
}

#[derive(Debug)]
pub(crate) struct Run {
    groups: Vec<Group>,
}

impl Run {
    fn group(&self, controller: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.hierarchy.has(controller))
    }

    pub(crate) fn paths(&self) -> Vec<PathBuf> {
        self.groups.iter().map(|g| g.path.clone()).collect()
    }

    pub(crate) fn procs(&self) -> Vec<BorrowedFd<'_>> {
        self.groups.iter().map(|g| g.procs.as_fd()).collect()
    }

    pub(crate) fn set_limit(&self, controller: &str, limits: &Limits) -> io::Result<()> {
        let Some(g) = self.group(controller) else {
            return Ok(());
        };
        let set = |f: &str, v: String| write_file(&g.path.join(f), &v);
        match controller {
            "memory" => limits
                .memory
                .map_or(Ok(()), |m| set("memory.limit_in_bytes", m.0.to_string())),
            "pids" => limits
                .tasks
                .map_or(Ok(()), |t| set("pids.max", t.to_string())),
            "cpu" => limits.cpu.map_or(Ok(()), |c| {
                set("cpu.cfs_period_us", "100000".into())?;
                set("cpu.cfs_quota_us", cpu_quota_us(c).to_string())
            }),
            _ => Ok(()),
        }
    }

    /// Members (every group of a run holds the same processes).
    pub(crate) fn pids(&self) -> Vec<i32> {
        self.group("freezer")
            .or(self.groups.first())
            .map(|g| read_pids(&g.path.join("cgroup.procs")))
            .unwrap_or_default()
    }

    /// Freezes, SIGKILLs every member, thaws (without a freezer: just
    /// SIGKILLs the members listed; callers repeat until empty).
    pub(crate) fn kill(&self) {
        let freezer = self.group("freezer").map(|g| g.path.join("freezer.state"));
        if let Some(state) = &freezer {
            if write_file(state, "FROZEN").is_ok() {
                let deadline = Instant::now() + Duration::from_millis(200);
                while fs::read_to_string(state).is_ok_and(|s| s.trim() != "FROZEN")
                    && Instant::now() < deadline
                {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        }
        for p in self.pids() {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
        }
        if let Some(state) = &freezer {
            let _ = write_file(state, "THAWED");
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        let file = |c: &str, f: &str| self.group(c).map(|g| g.path.join(f));
        let oom = file("memory", "memory.oom_control").and_then(|p| fs::read_to_string(p).ok());
        Usage {
            peak_memory: file("memory", "memory.max_usage_in_bytes").and_then(|p| single(&p)),
            cpu_ms: file("cpuacct", "cpuacct.usage")
                .and_then(|p| single(&p))
                .map(|ns| ns / 1_000_000),
            io_bytes: None,
            oom_kills: keyed(oom.as_deref(), "oom_kill"),
            peak_pids: file("pids", "pids.peak").and_then(|p| single(&p)),
        }
    }

    pub(crate) fn remove(&self) {
        for g in &self.groups {
            if let Err(e) = fs::remove_dir(&g.path) {
                tracing::warn!(error = %e, cgroup = %g.path.display(), "cannot remove run cgroup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_named_and_unused_hierarchies() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mk = |name: &str, opts: &[&str]| Mount {
            fstype: "cgroup".into(),
            point: dir.path().join(name),
            options: opts.iter().map(|s| s.to_string()).collect(),
        };
        for n in ["memory", "systemd", "devices"] {
            fs::create_dir(dir.path().join(n)).expect("mkdir");
        }
        let root = Root::detect(&[
            mk("memory", &["rw", "memory"]),
            mk("systemd", &["rw", "name=systemd"]),
            mk("devices", &["rw", "devices"]),
        ])
        .expect("memory hierarchy usable");
        assert_eq!(root.hierarchies.len(), 1);
        assert!(root.controllers().memory && !root.controllers().pids);
        assert!(!dir.path().join("systemd/cronsun.runs").exists());
    }

    #[test]
    fn runs_go_under_the_executors_own_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mount = dir.path().join("memory");
        fs::create_dir_all(mount.join("system.slice/cronsun.service")).expect("mkdir");
        let own = "9:name=systemd:/system.slice/cronsun.service\n\
                   4:memory:/system.slice/cronsun.service\n\
                   2:cpu,cpuacct:/\n0::/system.slice/cronsun.service\n";
        let memory = vec!["memory".to_string()];
        assert_eq!(
            delegated_base(&mount, own, &memory),
            mount.join("system.slice/cronsun.service")
        );
        // At the root, or a group not visible under this mount: the root.
        let cpu = vec!["cpu".to_string(), "cpuacct".to_string()];
        assert_eq!(delegated_base(&mount, own, &cpu), mount);
        let elsewhere = "4:memory:/not/mounted/here\n";
        assert_eq!(delegated_base(&mount, elsewhere, &memory), mount);
    }
}
