//! The process attributes a job starts with, independent of the daemon's own
//! (DESIGN §6): the unit may give the daemon a nice level, an OOM score
//! adjustment, raised rlimits or a umask, and none of that may leak into jobs.
//!
//! Guarantees: [`HostDefaults::get`] is computed once, before any clone, so
//! the child only copies plain values into raw system calls: nice 0, OOM
//! score adjustment 0, umask 022 and the rlimit set of a fresh systemd
//! service (RLIMIT_NOFILE 1024 soft, RLIMIT_CORE 0 soft, RLIMIT_MEMLOCK
//! 8 MiB, RLIMIT_STACK 8 MiB soft). Hard limits are only ever lowered (to
//! those defaults), never raised, so the reset cannot fail for lack of
//! privilege.

use std::sync::OnceLock;

/// umask every job starts with.
pub(crate) const JOB_UMASK: libc::mode_t = 0o022;

/// One rlimit to apply in the child.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rlimit {
    pub resource: libc::__rlimit_resource_t,
    pub soft: libc::rlim_t,
    pub hard: libc::rlim_t,
}

#[derive(Debug)]
pub(crate) struct HostDefaults {
    pub rlimits: Vec<Rlimit>,
}

const MIB: libc::rlim_t = 1 << 20;

impl HostDefaults {
    pub(crate) fn get() -> &'static HostDefaults {
        static DEFAULTS: OnceLock<HostDefaults> = OnceLock::new();
        DEFAULTS.get_or_init(HostDefaults::compute)
    }

    fn compute() -> HostDefaults {
        let inf = libc::RLIM_INFINITY;
        // (resource, soft, hard): systemd's defaults for a service.
        let wanted: [(libc::__rlimit_resource_t, libc::rlim_t, libc::rlim_t); 4] = [
            (libc::RLIMIT_NOFILE, 1024, 524_288),
            (libc::RLIMIT_CORE, 0, inf),
            (libc::RLIMIT_MEMLOCK, 8 * MIB, 8 * MIB),
            (libc::RLIMIT_STACK, 8 * MIB, inf),
        ];
        let rlimits = wanted
            .into_iter()
            .filter_map(|(resource, soft, hard)| {
                let current = current(resource)?;
                // Never raise a hard limit: that needs CAP_SYS_RESOURCE (not
                // every root has it in a container) and is not a reset.
                let hard = hard.min(current.rlim_max);
                Some(Rlimit {
                    resource,
                    soft: soft.min(hard),
                    hard,
                })
            })
            .collect();
        HostDefaults { rlimits }
    }
}

fn current(resource: libc::__rlimit_resource_t) -> Option<libc::rlimit> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: r is a valid, exclusively borrowed out-pointer for the call.
    #[allow(unsafe_code)]
    let rc = unsafe { libc::getrlimit(resource, &mut r) };
    (rc == 0).then_some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_never_exceeds_hard() {
        for r in &HostDefaults::get().rlimits {
            assert!(r.soft <= r.hard, "{r:?}");
        }
        assert!(HostDefaults::get()
            .rlimits
            .iter()
            .any(|r| r.resource == libc::RLIMIT_NOFILE && r.soft == 1024));
    }
}
