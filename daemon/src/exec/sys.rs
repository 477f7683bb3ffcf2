//! Safe wrappers for the few raw syscalls the executor needs that nix 0.32
//! does not provide: `wait4` with rusage, `pidfd_open`, `poll`.
//!
//! Guarantees: each wrapper waits on or opens only the one pid it is given
//! (never `-1`), so children spawned elsewhere in the daemon are untouched.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// How a reaped child ended, with its rusage.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reaped {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// `ru_utime + ru_stime` in milliseconds.
    pub cpu_ms: u64,
    /// `ru_maxrss` in bytes.
    pub max_rss: u64,
}

/// `wait4(pid, ..)` for exactly `pid`; `Ok(None)` with `nohang` when it has
/// not exited yet. Retries on EINTR.
pub(crate) fn wait4(pid: i32, nohang: bool) -> io::Result<Option<Reaped>> {
    let mut status: libc::c_int = 0;
    // SAFETY: rusage is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    loop {
        // SAFETY: status and ru are valid, exclusively borrowed out-pointers
        // for the duration of the call; pid is a specific child (> 0).
        let r = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
        if r == 0 {
            return Ok(None);
        }
        if r > 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let tv_ms = |tv: libc::timeval| {
        u64::try_from(tv.tv_sec).unwrap_or(0) * 1000 + u64::try_from(tv.tv_usec).unwrap_or(0) / 1000
    };
    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    };
    Ok(Some(Reaped {
        exit_code,
        signal,
        cpu_ms: tv_ms(ru.ru_utime) + tv_ms(ru.ru_stime),
        max_rss: u64::try_from(ru.ru_maxrss).unwrap_or(0) * 1024,
    }))
}

/// A pidfd for child `pid` (readable once it has exited).
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(r).map_err(|_| io::Error::other("pidfd_open returned a bad fd"))?;
    // SAFETY: fd is a fresh descriptor returned by the kernel that nothing
    // else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `poll` on `fds` (readability); returns which are ready (readable, error
/// or hang-up). `None` timeout waits forever. EINTR counts as "nothing ready".
pub(crate) fn poll_readable(
    fds: &[Option<BorrowedFd<'_>>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.map_or(-1, |f| f.as_raw_fd()),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let ms = timeout.map_or(-1, |t| {
        // Round up so a deadline 0.3 ms away does not spin.
        i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
    });
    // SAFETY: pfds is a valid, exclusively borrowed array of pfds.len()
    // pollfd entries for the duration of the call.
    let r = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![false; fds.len()]);
        }
        return Err(e);
    }
    Ok(pfds.iter().map(|p| p.fd >= 0 && p.revents != 0).collect())
}
