//! Process identity and live accounting read from `/proc`.
//!
//! Guarantees: a [`ProcessIdentity`] names one process for the lifetime of a
//! boot (pid + start time in clock ticks + boot id), so a stored identity can
//! be checked against `/proc` before anything is signalled; parsing of
//! `/proc/<pid>/stat` copes with any `comm` (spaces, parentheses).

use std::io;

use super::ProcessIdentity;

/// The fields of `/proc/<pid>/stat` the executor needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub utime: u64,
    pub stime: u64,
    pub start_ticks: u64,
}

/// Parses the content of `/proc/<pid>/stat`. `comm` (field 2) is enclosed in
/// parentheses and may itself contain `)`, so fields are counted from the
/// *last* `)`.
pub(crate) fn parse_stat(text: &str) -> Option<Stat> {
    let close = text.rfind(')')?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_ascii_whitespace().collect();
    // rest[0] is field 3 (state); field n is rest[n - 3].
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n)?.parse::<u64>().ok();
    let int = |n: usize| field(n)?.parse::<i32>().ok();
    Some(Stat {
        state: field(3)?.chars().next()?,
        ppid: int(4)?,
        pgrp: int(5)?,
        session: int(6)?,
        utime: num(14)?,
        stime: num(15)?,
        start_ticks: num(22)?,
    })
}

/// Reads and parses `/proc/<pid>/stat`; `None` when the process is gone.
pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// `/proc/sys/kernel/random/boot_id`, trimmed.
pub(crate) fn boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// The identity of live process `pid` in this boot.
pub(crate) fn identity(pid: i32, boot_id: &str) -> io::Result<ProcessIdentity> {
    let st = stat(pid).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("/proc/{pid}/stat is missing or unreadable"),
        )
    })?;
    Ok(ProcessIdentity {
        pid,
        start_ticks: st.start_ticks,
        boot_id: boot_id.to_string(),
    })
}

/// True when `id` still names a live (non-zombie) process of this boot.
pub(crate) fn is_same_process(id: &ProcessIdentity, current_boot: &str) -> bool {
    id.boot_id == current_boot
        && matches!(stat(id.pid), Some(st) if st.start_ticks == id.start_ticks && st.state != 'Z')
}

/// Every pid currently in `/proc`, with its parsed stat.
pub(crate) fn all_processes() -> Vec<(i32, Stat)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        Some((pid, stat(pid)?))
    })
    .collect()
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), 100 when unknown.
pub(crate) fn ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|&v| v > 0)
        .unwrap_or(100)
}

/// Peak resident set size of `pid` in bytes (`VmHWM`).
pub(crate) fn peak_rss(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_hostile_comm() {
        let line = "1234 (a) b) (c d) S 1 1234 1234 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 987654 1000 10 18446744073709551615";
        let st = parse_stat(line).expect("parses");
        assert_eq!(st.state, 'S');
        assert_eq!(st.ppid, 1);
        assert_eq!(st.pgrp, 1234);
        assert_eq!(st.session, 1234);
        assert_eq!((st.utime, st.stime), (7, 3));
        assert_eq!(st.start_ticks, 987654);
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_identity_is_verified() {
        let boot = boot_id().expect("boot id");
        let me = identity(std::process::id() as i32, &boot).expect("own identity");
        assert!(is_same_process(&me, &boot));
        let forged = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me.clone()
        };
        assert!(!is_same_process(&forged, &boot));
        let other_boot = ProcessIdentity {
            boot_id: "00000000-0000-0000-0000-000000000000".into(),
            ..me
        };
        assert!(!is_same_process(&other_boot, &boot));
    }
}
