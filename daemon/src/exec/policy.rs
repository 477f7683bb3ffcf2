//! Pre-fork resolution of a run: who it runs as, what it executes, with
//! which environment, checked against the [`ExecPolicy`].
//!
//! Guarantees: nothing is forked unless the user is allowed (root only when
//! `root` is listed explicitly; a non-root daemon runs jobs only as itself),
//! the group is one the user belongs to, and — with a command allow-list —
//! `argv[0]` is a listed absolute path whose file and every folder above it
//! (also through symlinks) are root-owned and not group/world-writable.
//! Every C string the child needs is built here, so the child allocates
//! nothing.

use std::ffi::{CString, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cronsun_proto::job::RunAs;
use nix::unistd::{Gid, Group, Uid, User};

use super::{ExecPolicy, RunSpec, SpawnError};

/// The cron-like search path and base `PATH`.
pub(crate) const BASE_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Who the daemon itself is; decides whether runs can change user.
#[derive(Clone, Debug)]
pub(crate) struct DaemonUser {
    pub is_root: bool,
    pub user: User,
}

impl DaemonUser {
    pub(crate) fn current() -> std::io::Result<DaemonUser> {
        let uid = Uid::effective();
        let user = User::from_uid(uid)
            .map_err(std::io::Error::from)?
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("the daemon's uid {uid} has no passwd entry"),
                )
            })?;
        Ok(DaemonUser {
            is_root: uid.is_root(),
            user,
        })
    }
}

/// A run ready to fork: ids and every C string the child needs.
#[derive(Debug)]
pub(crate) struct Prepared {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    /// Only a root daemon changes ids.
    pub change_ids: bool,
    pub program: CString,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    /// An explicit workdir must work; `HOME` (then `/`) is best effort.
    pub workdir: Option<CString>,
    pub home: CString,
}

fn refused(msg: String) -> SpawnError {
    SpawnError::Refused(msg)
}

fn failed(msg: String) -> SpawnError {
    SpawnError::Failed(msg)
}

fn cstring(what: &str, s: impl Into<Vec<u8>>) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| failed(format!("{what} contains a NUL byte")))
}

fn lookup_user(name: &str) -> Result<User, SpawnError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u),
        Ok(None) => Err(refused(format!(
            "user {name:?} does not exist on this host"
        ))),
        Err(e) => Err(failed(format!("looking up user {name:?}: {e}"))),
    }
}

/// Picks and checks the user and group of a run.
fn resolve_identity(
    policy: &ExecPolicy,
    daemon: &DaemonUser,
    run_as: Option<&RunAs>,
) -> Result<(User, Gid), SpawnError> {
    if !daemon.is_root {
        let me = &daemon.user;
        if let Some(r) = run_as {
            if r.user != me.name {
                return Err(refused(format!(
                    "run_as {:?}: the daemon is not root, so jobs can only run as its own user {:?}",
                    r.user, me.name
                )));
            }
            if let Some(g) = &r.group {
                let gid = lookup_group(g)?;
                if gid != me.gid {
                    return Err(refused(format!(
                        "run_as group {g:?}: the daemon is not root, so jobs can only run with its own group"
                    )));
                }
            }
        }
        return Ok((me.clone(), me.gid));
    }
    let name = run_as.map_or(policy.default_run_as.as_str(), |r| r.user.as_str());
    if name != policy.default_run_as && !policy.allowed_users.iter().any(|u| u == name) {
        return Err(refused(format!(
            "user {name:?} is neither default_run_as nor in [security] allowed_users"
        )));
    }
    let user = lookup_user(name)?;
    let root_listed = policy.allowed_users.iter().any(|u| u == "root");
    if user.uid.is_root() && !root_listed {
        return Err(refused(format!(
            "user {name:?} has uid 0; running as root needs \"root\" in [security] allowed_users"
        )));
    }
    let gid = match run_as.and_then(|r| r.group.as_deref()) {
        None => user.gid,
        Some(g) => {
            let gid = lookup_group(g)?;
            if gid != user.gid && !supplementary(&user, user.gid)?.contains(&gid) {
                return Err(refused(format!(
                    "user {name:?} is not a member of group {g:?}"
                )));
            }
            if gid.as_raw() == 0 && !root_listed {
                return Err(refused(format!(
                    "group {g:?} has gid 0; that needs \"root\" in [security] allowed_users"
                )));
            }
            gid
        }
    };
    Ok((user, gid))
}

fn lookup_group(name: &str) -> Result<Gid, SpawnError> {
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        Ok(None) => Err(refused(format!(
            "group {name:?} does not exist on this host"
        ))),
        Err(e) => Err(failed(format!("looking up group {name:?}: {e}"))),
    }
}

fn supplementary(user: &User, gid: Gid) -> Result<Vec<Gid>, SpawnError> {
    let name = cstring("user name", user.name.as_bytes())?;
    nix::unistd::getgrouplist(&name, gid)
        .map_err(|e| failed(format!("getgrouplist for user {:?}: {e}", user.name)))
}

/// Finds `cmd` on `path` (`:`-separated) as an executable regular file.
fn search_path(cmd: &str, path: &str) -> Option<PathBuf> {
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(cmd))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Checks that `path` and every folder above it are root-owned and not
/// group/world-writable; symlinks on the way are followed and their targets
/// checked the same way.
pub(crate) fn check_trusted_path(path: &Path) -> Result<(), String> {
    let check_chain = |p: &Path| -> Result<(), String> {
        for anc in p.ancestors() {
            if anc.as_os_str().is_empty() {
                continue;
            }
            let m =
                std::fs::symlink_metadata(anc).map_err(|e| format!("{}: {e}", anc.display()))?;
            if m.uid() != 0 {
                return Err(format!(
                    "{} is owned by uid {}, not root",
                    anc.display(),
                    m.uid()
                ));
            }
            if !m.file_type().is_symlink() && m.mode() & 0o022 != 0 {
                return Err(format!(
                    "{} is group- or world-writable (mode {:o})",
                    anc.display(),
                    m.mode() & 0o7777
                ));
            }
        }
        Ok(())
    };
    check_chain(path)?;
    let real = std::fs::canonicalize(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if real != path {
        check_chain(&real)?;
    }
    Ok(())
}

/// Resolves the program: the allow-list check (absolute, listed, trusted)
/// when a list is configured, else a search of `path` for a bare name.
fn resolve_program(policy: &ExecPolicy, argv0: &str, search: &str) -> Result<PathBuf, SpawnError> {
    if let Some(allowed) = &policy.allowed_commands {
        let p = Path::new(argv0);
        if !p.is_absolute() {
            return Err(refused(format!(
                "command {argv0:?} is not an absolute path; [security] allowed_commands requires one"
            )));
        }
        if !allowed.iter().any(|a| a == p) {
            return Err(refused(format!(
                "command {argv0:?} is not in [security] allowed_commands"
            )));
        }
        check_trusted_path(p)
            .map_err(|why| refused(format!("command {argv0:?} is not trusted: {why}")))?;
        return Ok(p.to_path_buf());
    }
    if argv0.contains('/') {
        return Ok(PathBuf::from(argv0));
    }
    search_path(argv0, search).ok_or_else(|| {
        failed(format!(
            "cannot execute {argv0:?}: not found in PATH={search}"
        ))
    })
}

/// Builds the environment: cron-like base from passwd, then `spec.env` on
/// top (a key given again replaces the base value).
fn build_env(user: &User, env: &[(String, String)]) -> Result<Vec<CString>, SpawnError> {
    let home = user.dir.as_os_str().to_string_lossy();
    let shell = user.shell.as_os_str().to_string_lossy();
    let shell = if shell.is_empty() {
        "/bin/sh".into()
    } else {
        shell
    };
    let base = [
        ("PATH", BASE_PATH.to_string()),
        ("HOME", home.into_owned()),
        ("SHELL", shell.into_owned()),
        ("USER", user.name.clone()),
        ("LOGNAME", user.name.clone()),
    ];
    let mut vars: Vec<(&str, &str)> = base.iter().map(|(k, v)| (*k, v.as_str())).collect();
    for (k, v) in env {
        if k.is_empty() || k.contains('=') {
            return Err(failed(format!(
                "environment variable name {k:?} is invalid"
            )));
        }
        match vars.iter_mut().find(|(bk, _)| bk == k) {
            Some(slot) => slot.1 = v,
            None => vars.push((k, v)),
        }
    }
    vars.into_iter()
        .map(|(k, v)| cstring(&format!("environment variable {k}"), format!("{k}={v}")))
        .collect()
}

/// Everything before the fork: identity, policy, program, argv, env.
pub(crate) fn prepare(
    policy: &ExecPolicy,
    daemon: &DaemonUser,
    spec: &RunSpec,
) -> Result<Prepared, SpawnError> {
    let argv0 = spec
        .argv
        .first()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| failed("argv is empty".into()))?;
    let (user, gid) = resolve_identity(policy, daemon, spec.run_as.as_ref())?;
    let search = spec
        .env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or(BASE_PATH, |(_, v)| v.as_str());
    let program = resolve_program(policy, argv0, search)?;
    let groups = if daemon.is_root {
        supplementary(&user, gid)?
            .iter()
            .map(|g| g.as_raw())
            .collect()
    } else {
        Vec::new()
    };
    let argv = spec
        .argv
        .iter()
        .enumerate()
        .map(|(i, a)| cstring(&format!("argv[{i}]"), a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let workdir = match &spec.workdir {
        Some(w) => Some(cstring("workdir", w.as_bytes())?),
        None => None,
    };
    Ok(Prepared {
        uid: user.uid.as_raw(),
        gid: gid.as_raw(),
        groups,
        change_ids: daemon.is_root,
        program: cstring("command path", program.as_os_str().as_bytes())?,
        argv,
        envp: build_env(&user, &spec.env)?,
        workdir,
        home: cstring("home folder", user.dir.as_os_str().as_bytes())
            .unwrap_or_else(|_| c"/".to_owned()),
        user: user.name,
    })
}

/// Human name of a path for error messages.
pub(crate) fn display_c(s: &CString) -> String {
    OsStr::from_bytes(s.as_bytes())
        .to_string_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ExecPolicy {
        ExecPolicy {
            default_run_as: "nobody".into(),
            allowed_users: vec![],
            allowed_commands: None,
        }
    }

    fn root_daemon() -> DaemonUser {
        DaemonUser {
            is_root: true,
            user: User::from_uid(Uid::from_raw(0))
                .ok()
                .flatten()
                .expect("root exists"),
        }
    }

    fn run_as(s: &str) -> RunAs {
        s.parse().expect("valid run_as")
    }

    #[test]
    fn root_needs_explicit_listing() {
        let mut p = policy();
        p.default_run_as = "root".into();
        let err = resolve_identity(&p, &root_daemon(), None).expect_err("refused");
        assert!(matches!(err, SpawnError::Refused(m) if m.contains("uid 0")));
        p.allowed_users.push("root".into());
        assert!(resolve_identity(&p, &root_daemon(), None).is_ok());
    }

    #[test]
    fn unlisted_user_refused() {
        let err = resolve_identity(&policy(), &root_daemon(), Some(&run_as("daemon")))
            .expect_err("refused");
        assert!(matches!(err, SpawnError::Refused(m) if m.contains("allowed_users")));
    }

    #[test]
    fn non_root_daemon_runs_as_itself_only() {
        let me = DaemonUser {
            is_root: false,
            user: User::from_uid(Uid::from_raw(65534))
                .ok()
                .flatten()
                .expect("nobody exists"),
        };
        let mut p = policy();
        p.default_run_as = "daemon".into();
        let (u, _) = resolve_identity(&p, &me, None).expect("runs as self");
        assert_eq!(u.uid.as_raw(), 65534);
        let err = resolve_identity(&p, &me, Some(&run_as("daemon"))).expect_err("refused");
        assert!(matches!(err, SpawnError::Refused(m) if m.contains("not root")));
    }

    #[test]
    fn group_must_be_the_users() {
        let mut p = policy();
        p.allowed_users.push("daemon".into());
        let err = resolve_identity(&p, &root_daemon(), Some(&run_as("nobody:daemon")))
            .expect_err("refused");
        assert!(matches!(err, SpawnError::Refused(m) if m.contains("not a member")));
    }

    #[test]
    fn env_layers_job_values_over_base() {
        let user = User::from_name("nobody").ok().flatten().expect("nobody");
        let env = build_env(
            &user,
            &[
                ("PATH".into(), "/opt/bin".into()),
                ("CRONSUN_JOB_ID".into(), "j".into()),
            ],
        )
        .expect("env");
        let env: Vec<String> = env.iter().map(display_c).collect();
        assert!(env.contains(&"PATH=/opt/bin".to_string()));
        assert!(env.contains(&"USER=nobody".to_string()));
        assert!(env.contains(&"LOGNAME=nobody".to_string()));
        assert!(env.contains(&"CRONSUN_JOB_ID=j".to_string()));
        assert_eq!(env.iter().filter(|e| e.starts_with("PATH=")).count(), 1);
        assert!(build_env(&user, &[("A=B".into(), "x".into())]).is_err());
    }

    #[test]
    fn path_search_and_allow_list() {
        assert_eq!(
            search_path("sh", BASE_PATH).map(|p| p.is_absolute()),
            Some(true)
        );
        assert!(resolve_program(&policy(), "no-such-cmd-xyz", BASE_PATH).is_err());
        let mut p = policy();
        p.allowed_commands = Some(vec!["/bin/sh".into()]);
        assert!(resolve_program(&p, "/bin/sh", BASE_PATH).is_ok());
        assert!(matches!(
            resolve_program(&p, "sh", BASE_PATH),
            Err(SpawnError::Refused(_))
        ));
        assert!(matches!(
            resolve_program(&p, "/bin/true", BASE_PATH),
            Err(SpawnError::Refused(_))
        ));
    }
}
