//! The agent's sandbox beyond the user switch (DESIGN §1: "Landlock/seccomp
//! where the kernel allows"). Applied once, right after
//! [`super::agent::drop_privileges`], while the agent is still one thread,
//! so every thread it starts later inherits it:
//!
//! - **Landlock**: the whole filesystem is readable (config, NSS, CA
//!   certificates, time zones) but nothing is executable, and only the
//!   state dir, the local socket's folder and `/dev/null` are writable; TCP
//!   `bind` is allowed on the web port only; signals and abstract Unix
//!   sockets cannot reach outside the agent's domain. Best effort: a kernel
//!   without some feature enforces the rest, and the status is logged.
//! - **seccomp**: `execve`/`execveat`, `ptrace` and the process-memory
//!   calls, mounts and namespaces (`unshare`, `setns`, `clone` with a
//!   namespace flag; `clone3` answers `ENOSYS` so the C library falls back to
//!   `clone`), kernel modules, `kexec`, `bpf`, `perf_event_open`,
//!   `userfaultfd`, keyrings, swap, reboot and accounting fail with `EPERM`.
//!
//! Jobs never inherit any of this: the executor, which is not sandboxed,
//! starts them. `cronsund check-sandbox` applies the same sandbox to itself
//! and proves each rule by trying what it forbids.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, LandlockStatus, NetPort, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// What the sandboxed process may still touch.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Folders (and files) the agent writes: state dir, socket folder.
    pub writable: Vec<PathBuf>,
    /// The only TCP port the agent may bind.
    pub bind_port: Option<u16>,
}

impl Spec {
    /// The agent's needs under `cfg`.
    pub fn for_config(cfg: &crate::config::Config) -> Spec {
        let mut writable = vec![cfg.node.state_dir.clone()];
        if let Some(dir) = cfg.socket().and_then(std::path::Path::parent) {
            writable.push(dir.to_path_buf());
        }
        Spec {
            writable,
            bind_port: Some(cfg.web.listen.port()),
        }
    }
}

/// What was enforced, for the start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub landlock: String,
    pub seccomp: String,
    /// Whether both layers are fully in force.
    pub complete: bool,
}

/// Syscalls the agent never needs.
fn denied_syscalls() -> Vec<libc::c_long> {
    let mut v = vec![
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_open_tree,
        libc::SYS_move_mount,
        libc::SYS_fsopen,
        libc::SYS_fsconfig,
        libc::SYS_fsmount,
        libc::SYS_fspick,
        libc::SYS_mount_setattr,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_reboot,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_open_by_handle_at,
        libc::SYS_fanotify_init,
        libc::SYS_syslog,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([libc::SYS_iopl, libc::SYS_ioperm]);
    v
}

/// Namespace flags `clone` may not carry.
const NAMESPACE_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWNS,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
];

fn arch() -> Result<TargetArch, String> {
    TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| format!("seccomp: unsupported architecture: {e:?}"))
}

/// Builds the two filters: the deny list (`EPERM`) and `clone3` (`ENOSYS`).
fn seccomp_programs() -> Result<Vec<BpfProgram>, String> {
    let arch = arch()?;
    let err = |e: seccompiler::BackendError| format!("seccomp: {e}");
    let mut deny: BTreeMap<i64, Vec<SeccompRule>> = denied_syscalls()
        .into_iter()
        .map(|nr| (nr, Vec::new()))
        .collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let flag = u64::try_from(flag).unwrap_or_default();
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .and_then(|c| SeccompRule::new(vec![c]))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(err)?;
    deny.insert(libc::SYS_clone, clone_rules);
    let eperm = u32::try_from(libc::EPERM).unwrap_or(1);
    let enosys = u32::try_from(libc::ENOSYS).unwrap_or(38);
    let filters = [
        SeccompFilter::new(
            deny,
            SeccompAction::Allow,
            SeccompAction::Errno(eperm),
            arch,
        ),
        SeccompFilter::new(
            BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(enosys),
            arch,
        ),
    ];
    filters
        .into_iter()
        .map(|f| {
            f.map_err(err)?
                .try_into()
                .map_err(|e: seccompiler::BackendError| format!("seccomp: {e}"))
        })
        .collect()
}

fn landlock(spec: &Spec) -> Result<(String, bool), String> {
    let fs = AccessFs::from_all(ABI::V3);
    let read_only = AccessFs::from_read(ABI::V3) & !AccessFs::Execute;
    let writable = fs & !AccessFs::Execute;
    let err = |e: landlock::RulesetError| format!("landlock: {e}");
    let mut created = Ruleset::default()
        .handle_access(fs)
        .map_err(err)?
        .handle_access(AccessNet::BindTcp)
        .map_err(err)?
        .scope(Scope::from_all(ABI::V6))
        .map_err(err)?
        .create()
        .map_err(err)?
        .add_rules(path_beneath_rules(["/"], read_only))
        .map_err(err)?
        .add_rules(path_beneath_rules(
            spec.writable
                .iter()
                .map(PathBuf::as_path)
                .chain([std::path::Path::new("/dev/null")]),
            writable,
        ))
        .map_err(err)?;
    if let Some(port) = spec.bind_port {
        created = created
            .add_rule(NetPort::new(port, AccessNet::BindTcp))
            .map_err(err)?;
    }
    let status = created.restrict_self().map_err(err)?;
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => {
            format!(" (ABI {})", effective_abi as u8)
        }
        LandlockStatus::NotEnabled => " (not enabled in this kernel)".into(),
        LandlockStatus::NotImplemented => " (not built into this kernel)".into(),
    };
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => (format!("fully enforced{abi}"), true),
        RulesetStatus::PartiallyEnforced => (format!("partially enforced{abi}"), false),
        RulesetStatus::NotEnforced => (format!("not enforced{abi}"), false),
    })
}

/// Confines this process for good. Call while single-threaded, after
/// `PR_SET_NO_NEW_PRIVS` (which Landlock and seccomp require unprivileged).
/// Errors name the layer; a kernel lacking a feature is not an error.
pub fn confine(spec: &Spec) -> Result<Report, String> {
    let (landlock, fully) = landlock(spec)?;
    let programs = seccomp_programs()?;
    for p in &programs {
        seccompiler::apply_filter(p).map_err(|e| format!("seccomp: {e}"))?;
    }
    Ok(Report {
        landlock,
        seccomp: format!(
            "{} syscalls denied, namespaces refused",
            denied_syscalls().len()
        ),
        complete: fully,
    })
}

/// One forbidden (or allowed) action tried inside the sandbox.
struct Probe {
    what: String,
    expect_allowed: bool,
    result: std::io::Result<()>,
}

fn last_os_error(r: libc::c_long) -> std::io::Result<()> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn probes(spec: &Spec) -> Vec<Probe> {
    let pid = std::process::id();
    let mut out = Vec::new();
    let mut write = |dir: &std::path::Path, expect_allowed: bool| {
        let path = dir.join(format!(".cronsun-sandbox-probe-{pid}"));
        let result = std::fs::write(&path, b"probe").and_then(|()| std::fs::remove_file(&path));
        out.push(Probe {
            what: format!("write {}", path.display()),
            expect_allowed,
            result,
        });
    };
    if let Some(state) = spec.writable.first() {
        write(state, true);
        if let Some(outside) = state.parent() {
            write(outside, false);
        }
    }
    out.push(Probe {
        what: "exec /bin/true".into(),
        expect_allowed: false,
        result: std::process::Command::new("/bin/true").status().map(drop),
    });
    if let Some(port) = spec.bind_port {
        let other = if port == u16::MAX { port - 1 } else { port + 1 };
        out.push(Probe {
            what: format!("bind TCP 127.0.0.1:{other} (not the web port)"),
            expect_allowed: false,
            result: std::net::TcpListener::bind(("127.0.0.1", other)).map(drop),
        });
    }
    // SAFETY: plain syscalls with integer arguments; each is expected to fail.
    let (unshare, ptrace, signal) = unsafe {
        (
            libc::unshare(libc::CLONE_NEWUSER),
            libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0),
            libc::kill(libc::getppid(), 0),
        )
    };
    out.push(Probe {
        what: "unshare(CLONE_NEWUSER)".into(),
        expect_allowed: false,
        result: last_os_error(unshare.into()),
    });
    out.push(Probe {
        what: "ptrace(PTRACE_TRACEME)".into(),
        expect_allowed: false,
        result: last_os_error(ptrace),
    });
    out.push(Probe {
        what: "signal the parent process (outside the sandbox)".into(),
        expect_allowed: false,
        result: last_os_error(signal.into()),
    });
    out
}

/// `cronsund check-sandbox`: confines this process as the agent would be
/// and tries what the sandbox forbids. Returns the report and whether every
/// probe had the expected outcome.
pub fn check(spec: &Spec) -> (String, bool) {
    let mut text = String::new();
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        return (format!("cannot set PR_SET_NO_NEW_PRIVS: {e}\n"), false);
    }
    let report = match confine(spec) {
        Ok(r) => r,
        Err(e) => return (format!("sandbox not applied: {e}\n"), false),
    };
    text.push_str(&format!(
        "landlock: {}\nseccomp: {}\n",
        report.landlock, report.seccomp
    ));
    let mut ok = true;
    for p in probes(spec) {
        let outcome = match &p.result {
            Ok(()) => "allowed".to_string(),
            Err(e) => format!("denied ({e})"),
        };
        let good = p.result.is_ok() == p.expect_allowed;
        ok &= good;
        let mark = if good { "ok" } else { "UNEXPECTED" };
        text.push_str(&format!("{mark:>10}  {}: {outcome}\n", p.what));
    }
    (text, ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_build_for_this_architecture() {
        let programs = seccomp_programs().expect("filters build");
        assert_eq!(programs.len(), 2);
        assert!(programs.iter().all(|p| !p.is_empty()));
    }
}
