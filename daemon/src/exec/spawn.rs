//! fork + exec of one prepared run.
//!
//! Guarantees: between `fork` and `execve` the child only makes
//! async-signal-safe calls on data built before the fork (no allocation, no
//! locks): wait for the parent's go-ahead (cgroup placement), reset signal
//! mask and dispositions, `setsid`, stdin `/dev/null`, stdout+stderr on the
//! one output pipe, every other fd close-on-exec, `setgroups`/`setgid`/
//! `setuid` (root daemon only), `chdir`, `execve`. A failure on the way is
//! reported through a close-on-exec status pipe, so [`fork_exec`] returns
//! only once the program runs, or with the cause it could not.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::unistd::pipe2;

use super::policy::{display_c, Prepared};
use super::{sys, SpawnError};

/// A forked child that has exec'd.
pub(crate) struct Child {
    pub pid: i32,
    /// Read end of the run's stdout+stderr pipe.
    pub output: OwnedFd,
}

#[derive(Clone, Copy)]
#[repr(u32)]
enum Stage {
    Setsid = 1,
    Dup = 2,
    Setgroups = 3,
    Setgid = 4,
    Setuid = 5,
    Chdir = 6,
    Exec = 7,
}

impl Stage {
    fn from_raw(v: u32) -> Option<Stage> {
        [Stage::Setsid, Stage::Dup, Stage::Setgroups, Stage::Setgid, Stage::Setuid, Stage::Chdir, Stage::Exec]
            .into_iter()
            .find(|s| *s as u32 == v)
    }
}

/// A close-on-exec pipe whose ends are both above fd 2, so the child's
/// `dup2` onto 0/1/2 can never clobber one of them.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let (r, w) = pipe2(OFlag::O_CLOEXEC)?;
    Ok((above_stdio(r)?, above_stdio(w)?))
}

pub(crate) fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    let dup = fcntl(fd.as_fd(), FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: F_DUPFD_CLOEXEC returned a fresh descriptor we now own.
    Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(dup) })
}

fn null_terminated(v: &[CString]) -> Vec<*const libc::c_char> {
    v.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect()
}

/// Forks and execs `p`. `place` runs in the parent after the fork and before
/// the child may go on (used to move the child into its cgroup); its failure
/// is the caller's to handle, the child proceeds regardless.
pub(crate) fn fork_exec(
    p: &Prepared,
    devnull: BorrowedFd<'_>,
    place: Option<&mut dyn FnMut(i32)>,
) -> Result<Child, SpawnError> {
    let io_err = |what: &str, e: io::Error| SpawnError::Failed(format!("{what}: {e}"));
    let (out_r, out_w) = pipe().map_err(|e| io_err("creating the output pipe", e))?;
    let (st_r, st_w) = pipe().map_err(|e| io_err("creating the status pipe", e))?;
    let go = match place {
        Some(_) => Some(pipe().map_err(|e| io_err("creating the sync pipe", e))?),
        None => None,
    };
    let argv = null_terminated(&p.argv);
    let envp = null_terminated(&p.envp);
    let child_fds = ChildFds {
        devnull: devnull.as_raw_fd(),
        out: out_w.as_raw_fd(),
        status: st_w.as_raw_fd(),
        go: go.as_ref().map_or(-1, |(r, _)| r.as_raw_fd()),
    };

    // SAFETY: fork has no memory-safety preconditions; the child branch below
    // only makes async-signal-safe calls on memory prepared before the fork
    // and never returns (execve or _exit).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io_err("fork", io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: we are the freshly forked child; see child_main's contract.
        unsafe { child_main(p, &argv, &envp, &child_fds) }
    }

    drop(out_w);
    drop(st_w);
    if let (Some(place), Some((go_r, go_w))) = (place, go) {
        drop(go_r);
        place(pid);
        // The child waits for this byte (or EOF); a failed write means it
        // died, which the status pipe and wait4 then report.
        let mut go_w = std::fs::File::from(go_w);
        let _ = go_w.write_all(&[1]);
    }
    let mut status = [0u8; 8];
    let n = read_full(st_r, &mut status);
    if n < status.len() {
        return Ok(Child { pid, output: out_r });
    }
    // The child failed before or at exec and has _exit'ed: reap it.
    let _ = sys::wait4(pid, false);
    let stage = u32::from_le_bytes([status[0], status[1], status[2], status[3]]);
    let errno = i32::from_le_bytes([status[4], status[5], status[6], status[7]]);
    Err(SpawnError::Failed(describe(p, Stage::from_raw(stage), errno)))
}

fn read_full(fd: OwnedFd, buf: &mut [u8]) -> usize {
    let mut f = std::fs::File::from(fd);
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    n
}

fn describe(p: &Prepared, stage: Option<Stage>, errno: i32) -> String {
    let why = nix::errno::Errno::from_raw(errno).desc();
    match stage {
        Some(Stage::Exec) => format!("cannot execute {:?}: {why}", display_c(&p.program)),
        Some(Stage::Chdir) => format!(
            "cannot change directory to {:?}: {why}",
            p.workdir.as_ref().map_or_else(|| display_c(&p.home), display_c)
        ),
        Some(s @ (Stage::Setgroups | Stage::Setgid | Stage::Setuid)) => format!(
            "cannot switch to user {:?} (uid {}, gid {}): {} failed: {why}",
            p.user,
            p.uid,
            p.gid,
            match s {
                Stage::Setgroups => "setgroups",
                Stage::Setgid => "setgid",
                _ => "setuid",
            }
        ),
        Some(Stage::Setsid) => format!("setsid failed: {why}"),
        Some(Stage::Dup) => format!("setting up stdin/stdout/stderr failed: {why}"),
        None => format!("child failed at an unknown step: {why}"),
    }
}

struct ChildFds {
    devnull: libc::c_int,
    out: libc::c_int,
    status: libc::c_int,
    go: libc::c_int,
}

/// Reports `stage` and errno on the status pipe and exits.
///
/// # Safety
/// Only to be called in the forked child.
unsafe fn fail(fds: &ChildFds, stage: Stage) -> ! {
    // SAFETY: __errno_location returns this thread's errno slot.
    let errno = unsafe { *libc::__errno_location() };
    let mut buf = [0u8; 8];
    buf[..4].copy_from_slice(&(stage as u32).to_le_bytes());
    buf[4..].copy_from_slice(&errno.to_le_bytes());
    // SAFETY: write and _exit are async-signal-safe; buf outlives the call.
    unsafe {
        libc::write(fds.status, buf.as_ptr().cast(), buf.len());
        libc::_exit(127)
    }
}

/// The child between fork and exec.
///
/// # Safety
/// Must run only in a freshly forked child; `argv`/`envp` are
/// null-terminated arrays pointing into `p`, all built before the fork.
unsafe fn child_main(
    p: &Prepared,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
    fds: &ChildFds,
) -> ! {
    // SAFETY: every call below is async-signal-safe and uses only memory
    // allocated before the fork (p, argv, envp, fds) or on this stack.
    unsafe {
        if fds.go >= 0 {
            let mut b = 0u8;
            while libc::read(fds.go, (&mut b as *mut u8).cast(), 1) < 0
                && *libc::__errno_location() == libc::EINTR
            {}
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        for sig in 1..libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        if libc::setsid() < 0 {
            fail(fds, Stage::Setsid);
        }
        if libc::dup2(fds.devnull, 0) < 0 || libc::dup2(fds.out, 1) < 0 || libc::dup2(fds.out, 2) < 0 {
            fail(fds, Stage::Dup);
        }
        // Every inherited fd above stderr closes at exec (the status pipe
        // too, which is how the parent learns exec succeeded).
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
        if p.change_ids {
            if libc::setgroups(p.groups.len(), p.groups.as_ptr()) < 0 {
                fail(fds, Stage::Setgroups);
            }
            if libc::setgid(p.gid) < 0 {
                fail(fds, Stage::Setgid);
            }
            if libc::setuid(p.uid) < 0 {
                fail(fds, Stage::Setuid);
            }
        }
        match &p.workdir {
            Some(w) => {
                if libc::chdir(w.as_ptr()) < 0 {
                    fail(fds, Stage::Chdir);
                }
            }
            None => {
                if libc::chdir(p.home.as_ptr()) < 0 {
                    libc::chdir(c"/".as_ptr());
                }
            }
        }
        libc::execve(p.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(fds, Stage::Exec)
    }
}
