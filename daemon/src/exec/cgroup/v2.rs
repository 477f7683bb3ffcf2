//! cgroup v2 groups under `<cgroup2 mount>/cronsun.runs/`.
//!
//! Guarantees: `cgroup.kill` kills every member atomically; controllers
//! available to the subtree are enabled for the run groups.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{create_group, ensure_dir, keyed, read_pids, single, write_file, Controllers};
use crate::exec::Usage;

#[derive(Clone, Debug)]
pub(crate) struct Root {
    path: PathBuf,
    controllers: Controllers,
    io: bool,
}

impl Root {
    pub(crate) fn at(path: &Path) -> Result<Root, String> {
        ensure_dir(path)?;
        if !path.join("cgroup.kill").exists() {
            return Err(format!(
                "{} has no cgroup.kill (kernel older than 5.14)",
                path.display()
            ));
        }
        let available = fs::read_to_string(path.join("cgroup.controllers")).unwrap_or_default();
        let control = path.join("cgroup.subtree_control");
        let mut enabled = fs::read_to_string(&control).unwrap_or_default();
        for c in available.split_ascii_whitespace() {
            if matches!(c, "memory" | "pids" | "cpu" | "io")
                && !enabled.split_ascii_whitespace().any(|e| e == c)
                && write_file(&control, &format!("+{c}")).is_ok()
            {
                enabled.push(' ');
                enabled.push_str(c);
            }
        }
        let has = |c: &str| enabled.split_ascii_whitespace().any(|e| e == c);
        Ok(Root {
            path: path.to_path_buf(),
            controllers: Controllers {
                memory: has("memory"),
                pids: has("pids"),
                cpu: has("cpu"),
            },
            io: has("io"),
        })
    }

    pub(crate) fn controllers(&self) -> Controllers {
        self.controllers
    }

    pub(crate) fn create_run(&self, name: &str) -> io::Result<Run> {
        let path = self.path.join(name);
        create_group(&path)?;
        match self.open(&path) {
            Ok(run) => Ok(run),
            Err(e) => {
                let _ = fs::remove_dir(&path);
                Err(e)
            }
        }
    }

    fn open(&self, path: &Path) -> io::Result<Run> {
        let procs = OpenOptions::new()
            .write(true)
            .open(path.join("cgroup.procs"))?;
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)?;
        Ok(Run {
            path: path.to_path_buf(),
            procs,
            dir,
            root: self.clone(),
        })
    }

    /// Opens an existing run group inside this subtree (recovery).
    pub(crate) fn open_run(&self, path: &Path) -> Option<Run> {
        let ours = path.parent() == Some(self.path.as_path())
            && path.file_name().is_some_and(|n| n != "." && n != "..");
        if !ours || !path.is_dir() {
            return None;
        }
        self.open(path).ok()
    }
}

#[derive(Debug)]
pub(crate) struct Run {
    path: PathBuf,
    procs: File,
    /// The group's folder, for `clone3(CLONE_INTO_CGROUP)`.
    dir: File,
    root: Root,
}

impl Run {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn procs(&self) -> BorrowedFd<'_> {
        self.procs.as_fd()
    }

    pub(crate) fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    pub(crate) fn controllers(&self) -> Controllers {
        self.root.controllers
    }

    pub(crate) fn set(&self, file: &str, value: &str) -> io::Result<()> {
        write_file(&self.path.join(file), value)
    }

    pub(crate) fn pids(&self) -> Vec<i32> {
        read_pids(&self.path.join("cgroup.procs"))
    }

    pub(crate) fn kill(&self) -> io::Result<()> {
        write_file(&self.path.join("cgroup.kill"), "1")
    }

    pub(crate) fn is_empty(&self) -> bool {
        match fs::read_to_string(self.path.join("cgroup.events")) {
            Ok(ev) => ev.lines().any(|l| l == "populated 0"),
            Err(_) => self.pids().is_empty(),
        }
    }

    pub(crate) fn usage(&self) -> Usage {
        let read = |f: &str| fs::read_to_string(self.path.join(f)).ok();
        let io_bytes = read("io.stat").filter(|_| self.root.io).map(|t| {
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
            peak_memory: single(&self.path.join("memory.peak")),
            cpu_ms: keyed(read("cpu.stat").as_deref(), "usage_usec").map(|us| us / 1000),
            io_bytes,
            oom_kills: keyed(read("memory.events").as_deref(), "oom_kill"),
            peak_pids: single(&self.path.join("pids.peak")),
        }
    }

    pub(crate) fn remove(&self) {
        if let Err(e) = fs::remove_dir(&self.path) {
            tracing::warn!(error = %e, cgroup = %self.path.display(), "cannot remove run cgroup");
        }
    }
}
