//! Starting one prepared run: `clone(CLONE_VM | CLONE_VFORK)` + `execve`.
//!
//! Why vfork-style: the daemon's page tables are not copied, so the cost
//! of a spawn does not grow with the daemon's size (this is what
//! `posix_spawn` does; it cannot be used because it cannot set groups and
//! ids). The child shares the parent's memory until `execve`, so it runs on
//! its own stack, with every signal blocked until it has reset all
//! dispositions, and makes only raw, async-signal-safe system calls on data
//! built before the clone (no allocation, no locks, and `setgroups`/
//! `setgid`/`setuid` as raw syscalls, because glibc's wrappers would apply
//! them to the parent's threads too).
//!
//! Guarantees: the child joins its run cgroup (writing `0` to the
//! pre-opened `cgroup.procs`) before anything else, so it cannot fork
//! outside it; then `setsid`, stdin `/dev/null`, stdout+stderr on the one
//! output pipe, every other fd close-on-exec, ids (root daemon only),
//! `chdir`, `execve`. A failure on the way is written (step and errno) into
//! memory shared with the parent before the child exits, so [`fork_exec`]
//! returns only once the program runs, or with the step that failed and why.
//! (No status pipe: its close-on-exec would only be seen when the new
//! program is fully loaded, which doubled the spawn latency.)
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::{pthread_sigmask, SigSet, SigmaskHow};
use nix::unistd::pipe2;

use super::hostdefaults::{HostDefaults, JOB_UMASK};
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
    Cgroup = 0,
    Setsid = 1,
    Dup = 2,
    Setgroups = 3,
    Setgid = 4,
    Setuid = 5,
    Chdir = 6,
    Exec = 7,
    HostDefaults = 8,
}

impl Stage {
    fn from_raw(v: u32) -> Option<Stage> {
        [
            Stage::Cgroup,
            Stage::Setsid,
            Stage::Dup,
            Stage::Setgroups,
            Stage::Setgid,
            Stage::Setuid,
            Stage::Chdir,
            Stage::Exec,
            Stage::HostDefaults,
        ]
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
    v.iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Why a start failed: joining the cgroup (the caller may retry without
/// one) or anything else.
#[derive(Debug)]
pub(crate) enum StartError {
    Cgroup(String),
    Other(SpawnError),
}

/// Size of the child's stack between clone and exec.
const CHILD_STACK: usize = 128 << 10;

/// Starts `p`; the child first moves itself into the groups whose open
/// `cgroup.procs` files are `cgroup_procs`.
///
/// With `into` (a cgroup v2 folder) the child is created inside that group by
/// `clone3(CLONE_INTO_CGROUP)`, a fork that does not share memory: migrating
/// a process costs an RCU grace period (~10 ms here), cloning into a group
/// costs nothing extra. Without it, the memory-sharing vfork-style clone is
/// used and the child joins its groups itself.
pub(crate) fn fork_exec(
    p: &Prepared,
    devnull: BorrowedFd<'_>,
    into: Option<BorrowedFd<'_>>,
    cgroup_procs: &[BorrowedFd<'_>],
) -> Result<Child, StartError> {
    let io_err =
        |what: &str, e: io::Error| StartError::Other(SpawnError::Failed(format!("{what}: {e}")));
    let (out_r, out_w) = pipe().map_err(|e| io_err("creating the output pipe", e))?;
    let procs: Vec<libc::c_int> = cgroup_procs.iter().map(|f| f.as_raw_fd()).collect();
    let argv = null_terminated(&p.argv);
    let envp = null_terminated(&p.envp);
    // The child reports a failure here; with clone3 (no shared memory) the
    // slot is a shared mapping.
    let shared = SharedSlot::new().map_err(|e| io_err("mapping the status slot", e))?;
    let ctx = ChildCtx {
        p,
        argv: &argv,
        envp: &envp,
        devnull: devnull.as_raw_fd(),
        out: out_w.as_raw_fd(),
        result: shared.slot(),
        cgroup_procs: &procs,
        host: HostDefaults::get(),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down from a 16-byte aligned top.
    let top = ((stack.as_mut_ptr() as usize + CHILD_STACK) & !15) as *mut libc::c_void;

    // No handler of the daemon may run in the child while it shares our
    // memory: block everything until the child has reset dispositions.
    let mut old = SigSet::empty();
    pthread_sigmask(
        SigmaskHow::SIG_SETMASK,
        Some(&SigSet::all()),
        Some(&mut old),
    )
    .map_err(|e| io_err("blocking signals", e.into()))?;
    // SAFETY: child_entry gets a pointer to ctx, which lives on this stack
    // frame; CLONE_VFORK suspends this thread until the child has exec'd or
    // exited, so ctx, p, argv, envp and the child stack outlive every use.
    // The child runs on its own stack and writes no shared memory except the
    // errno slot of this (suspended) thread.
    let pid = match into {
        // SAFETY: see clone_into.
        Some(dir) => unsafe { clone_into(&ctx, dir.as_raw_fd()) },
        None => unsafe {
            libc::clone(
                child_entry,
                top,
                libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                (&ctx as *const ChildCtx<'_>).cast_mut().cast(),
            )
        },
    };
    let clone_err = io::Error::last_os_error();
    let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&old), None);
    drop(stack);
    if pid < 0 {
        if into.is_some() {
            // No clone3 or no CLONE_INTO_CGROUP here: the caller falls back.
            return Err(StartError::Cgroup(format!(
                "clone3 into the run's cgroup: {clone_err}"
            )));
        }
        return Err(io_err("clone", clone_err));
    }
    drop(out_w);
    // CLONE_VFORK: the child has exec'd or exited by now.
    let result = ctx.result.load(Ordering::SeqCst);
    if result == NO_FAILURE {
        return Ok(Child { pid, output: out_r });
    }
    // The child failed before or at exec and has _exit'ed: reap it.
    let _ = sys::wait4(pid, false);
    let stage = Stage::from_raw((result >> 32) as u32);
    let errno = result as u32 as i32;
    let msg = describe(p, stage, errno);
    Err(match stage {
        Some(Stage::Cgroup) => StartError::Cgroup(msg),
        _ => StartError::Other(SpawnError::Failed(msg)),
    })
}

fn describe(p: &Prepared, stage: Option<Stage>, errno: i32) -> String {
    let why = nix::errno::Errno::from_raw(errno).desc();
    match stage {
        Some(Stage::Exec) => format!("cannot execute {:?}: {why}", display_c(&p.program)),
        Some(Stage::Chdir) => format!(
            "cannot change directory to {:?}: {why}",
            p.workdir
                .as_ref()
                .map_or_else(|| display_c(&p.home), display_c)
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
        Some(Stage::Cgroup) => format!("joining the run's cgroup failed: {why}"),
        Some(Stage::Dup) => format!("setting up stdin/stdout/stderr failed: {why}"),
        Some(Stage::HostDefaults) => {
            format!("resetting rlimits to the host defaults failed: {why}")
        }
        None => format!("child failed at an unknown step: {why}"),
    }
}

/// What the child reads; all of it built before the clone.
struct ChildCtx<'a> {
    p: &'a Prepared,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    devnull: libc::c_int,
    out: libc::c_int,
    cgroup_procs: &'a [libc::c_int],
    host: &'a HostDefaults,
    /// `NO_FAILURE`, or the failed step (high half) and errno (low half).
    result: &'a AtomicU64,
}

/// One `AtomicU64` in a shared anonymous mapping, visible to a forked child.
struct SharedSlot(*mut AtomicU64);

impl SharedSlot {
    fn new() -> io::Result<SharedSlot> {
        // SAFETY: a fresh anonymous shared mapping of one page; checked below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let slot = ptr.cast::<AtomicU64>();
        // SAFETY: the page is writable, page-aligned and ours alone.
        unsafe { slot.write(AtomicU64::new(NO_FAILURE)) };
        Ok(SharedSlot(slot))
    }

    fn slot(&self) -> &AtomicU64 {
        // SAFETY: initialised in new(); lives until drop.
        unsafe { &*self.0 }
    }
}

impl Drop for SharedSlot {
    fn drop(&mut self) {
        // SAFETY: the mapping made in new(), unmapped once.
        unsafe { libc::munmap(self.0.cast(), 4096) };
    }
}

/// `clone_args` of `clone3(2)` (the fields up to `cgroup`, 88 bytes).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks (no shared memory, the parent suspended until exec as with vfork)
/// a child born in the cgroup `dir`, which runs `child_main`.
///
/// # Safety
/// As for a `fork` in a multi-threaded process: the child runs only
/// `child_main`, which makes async-signal-safe system calls on memory built
/// before the clone; all signals must be blocked by the caller.
unsafe fn clone_into(ctx: &ChildCtx<'_>, dir: libc::c_int) -> libc::pid_t {
    let args = CloneArgs {
        flags: libc::CLONE_VFORK as u64 | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir as u64,
        ..CloneArgs::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; without a stack
    // the child continues here on a copy of this stack, like fork.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        // SAFETY: we are the child; see the function's contract.
        unsafe { child_main(ctx) }
    }
    pid as libc::pid_t
}

const NO_FAILURE: u64 = u64::MAX;

/// Records `stage` and errno for the parent and exits.
///
/// # Safety
/// Only to be called in the cloned child.
unsafe fn fail(ctx: &ChildCtx<'_>, stage: Stage) -> ! {
    // SAFETY: __errno_location returns the errno slot the failed call set.
    let errno = unsafe { *libc::__errno_location() };
    ctx.result.store(
        (u64::from(stage as u32) << 32) | u64::from(errno as u32),
        Ordering::SeqCst,
    );
    // SAFETY: _exit is async-signal-safe and ends only this child.
    unsafe { libc::_exit(127) }
}

/// Entry point of the cloned child.
extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the &ChildCtx passed to clone by fork_exec, alive while
    // that thread is suspended by CLONE_VFORK.
    let ctx = unsafe { &*arg.cast::<ChildCtx<'_>>() };
    // SAFETY: we are the freshly cloned child; see child_main's contract.
    unsafe { child_main(ctx) }
}

/// The child between clone and exec.
///
/// # Safety
/// Must run only in a child cloned by [`fork_exec`], with all signals
/// blocked; `ctx.argv`/`ctx.envp` are null-terminated arrays into `ctx.p`.
unsafe fn child_main(ctx: &ChildCtx<'_>) -> ! {
    let p = ctx.p;
    // SAFETY: every call below is an async-signal-safe system call on memory
    // built before the clone (ctx and what it points to) or on this stack.
    unsafe {
        for &fd in ctx.cgroup_procs {
            if libc::write(fd, c"0".as_ptr().cast(), 1) < 0 {
                fail(ctx, Stage::Cgroup);
            }
        }
        for sig in 1..=libc::SIGRTMAX() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        if libc::setsid() < 0 {
            fail(ctx, Stage::Setsid);
        }
        if libc::dup2(ctx.devnull, 0) < 0
            || libc::dup2(ctx.out, 1) < 0
            || libc::dup2(ctx.out, 2) < 0
        {
            fail(ctx, Stage::Dup);
        }
        // Every inherited fd above stderr closes at exec.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
        // Host defaults, not the daemon's attributes (DESIGN §6). Lowering
        // nice and the OOM adjustment needs privilege: best effort.
        libc::umask(JOB_UMASK);
        libc::setpriority(libc::PRIO_PROCESS, 0, 0);
        let oom = libc::open(
            c"/proc/self/oom_score_adj".as_ptr(),
            libc::O_WRONLY | libc::O_CLOEXEC,
        );
        if oom >= 0 {
            libc::write(oom, c"0".as_ptr().cast(), 1);
            libc::close(oom);
        }
        for r in &ctx.host.rlimits {
            let lim = libc::rlimit {
                rlim_cur: r.soft,
                rlim_max: r.hard,
            };
            if libc::setrlimit(r.resource, &lim) < 0 {
                fail(ctx, Stage::HostDefaults);
            }
        }
        if p.change_ids {
            // Raw syscalls: glibc's wrappers would also signal the parent's
            // threads (its setxid broadcast), whose memory we share.
            if libc::syscall(libc::SYS_setgroups, p.groups.len(), p.groups.as_ptr()) < 0 {
                fail(ctx, Stage::Setgroups);
            }
            if libc::syscall(libc::SYS_setresgid, p.gid, p.gid, p.gid) < 0 {
                fail(ctx, Stage::Setgid);
            }
            if libc::syscall(libc::SYS_setresuid, p.uid, p.uid, p.uid) < 0 {
                fail(ctx, Stage::Setuid);
            }
        }
        match &p.workdir {
            Some(w) => {
                if libc::chdir(w.as_ptr()) < 0 {
                    fail(ctx, Stage::Chdir);
                }
            }
            None => {
                if libc::chdir(p.home.as_ptr()) < 0 {
                    libc::chdir(c"/".as_ptr());
                }
            }
        }
        libc::execve(p.program.as_ptr(), ctx.argv.as_ptr(), ctx.envp.as_ptr());
        fail(ctx, Stage::Exec)
    }
}
