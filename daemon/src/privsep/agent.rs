//! The agent's self-confinement, right after it starts (as root, single
//! threaded, before any runtime): become `[security] agent_user`, with no
//! capabilities (bounding and ambient sets cleared too) and
//! `PR_SET_NO_NEW_PRIVS`, so neither it nor anything it could exec can
//! regain privilege. Running jobs is the executor's job, not the agent's.
#![allow(unsafe_code)]

use nix::unistd::{Gid, Uid, User};

/// Why confinement failed; `MissingUser` maps to exit 78.
#[derive(Debug, thiserror::Error)]
pub enum DropError {
    #[error("the agent user {0:?} ([security] agent_user) does not exist; create it with `useradd --system --home-dir /var/lib/cronsun --shell /usr/sbin/nologin {0}` (the cronsun package creates it)")]
    MissingUser(String),
    #[error("cannot drop privileges to {user:?}: {step}: {why}")]
    Failed {
        user: String,
        step: &'static str,
        why: String,
    },
}

/// Becomes `name` for good. Must run before any thread exists.
pub fn drop_privileges(name: &str) -> Result<(), DropError> {
    let user = User::from_name(name)
        .ok()
        .flatten()
        .ok_or_else(|| DropError::MissingUser(name.to_string()))?;
    let fail = |step: &'static str, why: String| DropError::Failed {
        user: name.to_string(),
        step,
        why,
    };
    for cap in 0..64 {
        // SAFETY: prctl with integer arguments only; EINVAL past the last cap.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if r < 0 {
            break;
        }
    }
    nix::unistd::setgroups(&[user.gid]).map_err(|e| fail("setgroups", e.to_string()))?;
    nix::unistd::setresgid(user.gid, user.gid, user.gid)
        .map_err(|e| fail("setresgid", e.to_string()))?;
    nix::unistd::setresuid(user.uid, user.uid, user.uid)
        .map_err(|e| fail("setresuid", e.to_string()))?;
    // SAFETY: prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    nix::sys::prctl::set_no_new_privs().map_err(|e| fail("PR_SET_NO_NEW_PRIVS", e.to_string()))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok()
        || nix::unistd::setgid(Gid::from_raw(0)).is_ok()
    {
        return Err(fail("verify", "root could be regained".into()));
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let eff = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .map(str::trim);
    if eff.is_some_and(|c| !c.trim_start_matches('0').is_empty()) {
        return Err(fail("verify", format!("capabilities left: {eff:?}")));
    }
    Ok(())
}
