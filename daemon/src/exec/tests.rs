//! Executor tests with real processes and real signals. Each waits on the
//! run's `Finished` event (bounded), never on a sleep.

use std::path::Path;
use std::time::{Duration, Instant};

use cronsun_proto::job::Limits;
use nix::unistd::{Uid, User};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::executor::Options;
use super::*;

struct Fixture {
    exec: LocalExecutor,
    rx: UnboundedReceiver<ExecEvent>,
    dir: tempfile::TempDir,
}

fn policy() -> ExecPolicy {
    ExecPolicy {
        default_run_as: "nobody".into(),
        allowed_users: vec![],
        allowed_commands: None,
    }
}

fn fixture_with(policy: ExecPolicy, use_cgroups: bool) -> Fixture {
    fixture_opts(
        policy,
        Options {
            use_cgroups,
            use_v2: true,
        },
    )
}

fn fixture_opts(policy: ExecPolicy, opts: Options) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, rx) = unbounded_channel();
    let exec = LocalExecutor::with_options(policy, dir.path(), tx, opts).expect("executor starts");
    Fixture { exec, rx, dir }
}

fn fixture() -> Fixture {
    fixture_with(policy(), true)
}

fn is_root() -> bool {
    Uid::effective().is_root()
}

/// A key unique across concurrently running test binaries.
fn key(name: &str) -> String {
    format!("t{}~{name}#1", std::process::id())
}

fn spec(name: &str, argv: &[&str]) -> RunSpec {
    RunSpec {
        key: key(name),
        argv: argv.iter().map(|s| s.to_string()).collect(),
        run_as: None,
        env: vec![],
        workdir: None,
        timeout: None,
        kill_grace: Duration::from_secs(1),
        output_limit: 1 << 20,
        limits: Limits::default(),
    }
}

fn sh(name: &str, script: &str) -> RunSpec {
    spec(name, &["/bin/sh", "-c", script])
}

impl Fixture {
    fn finished(&mut self, key: &str) -> RunOutcome {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            loop {
                let ev = tokio::time::timeout(Duration::from_secs(30), self.rx.recv())
                    .await
                    .expect("Finished within 30 s")
                    .expect("channel open");
                let ExecEvent::Finished { key: k, outcome } = ev;
                if k == key {
                    return outcome;
                }
            }
        })
    }

    fn run(&mut self, s: RunSpec) -> (Started, RunOutcome) {
        let key = s.key.clone();
        let started = self.exec.spawn(s).expect("spawns");
        let outcome = self.finished(&key);
        (started, outcome)
    }
}

fn text(o: &RunOutcome) -> String {
    String::from_utf8_lossy(&[o.output_head.clone(), o.output_tail.clone()].concat()).into_owned()
}

/// Live (non-zombie) processes in session or process group `id`.
fn live_in_session(id: i32) -> Vec<i32> {
    procfs::all_processes()
        .into_iter()
        .filter(|(_, st)| (st.session == id || st.pgrp == id) && st.state != 'Z')
        .map(|(p, _)| p)
        .collect()
}

/// Waits (at most 10 s) for `cond`; false if it never held.
fn wait_until(mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

fn is_alive(pid: i32) -> bool {
    procfs::stat(pid).is_some_and(|st| st.state != 'Z')
}

#[test]
fn executor_is_shareable() {
    fn shareable<T: Clone + Send + Sync + 'static>() {}
    shareable::<LocalExecutor>();
}

#[test]
fn output_and_exit_code() {
    let mut f = fixture();
    let (started, o) = f.run(sh("echo", "echo hello; echo oops >&2; exit 3"));
    assert_eq!(o.termination, Termination::Exited(3));
    assert_eq!((o.exit_code, o.signal), (Some(3), None));
    assert_eq!(text(&o), "hello\noops\n");
    assert_eq!(o.output_bytes, 11);
    assert!(!o.truncated);
    let file = std::fs::read(output_path(f.dir.path(), &started.key)).expect("output file");
    assert_eq!(file, b"hello\noops\n");
    assert!(o.usage.cpu_ms.is_some());
    assert!(o.usage.peak_memory.is_some_and(|m| m > 0));
    assert!(f.exec.running().is_empty());
    // Removed right *after* Finished was sent: a bounded wait.
    let exec_dir = f.dir.path().join("exec");
    assert!(
        wait_until(|| std::fs::read_dir(&exec_dir).map_or(0, |d| d.count()) == 0),
        "state file removed after Finished"
    );
}

#[test]
fn large_output_keeps_head_and_tail() {
    let mut f = fixture();
    let mut s = sh("big", "seq 1 40000");
    s.output_limit = 1000;
    let (started, o) = f.run(s);
    let expected: String = (1..=40000).map(|i| format!("{i}\n")).collect();
    assert_eq!(o.output_bytes, expected.len() as u64);
    assert!(o.truncated);
    assert_eq!(o.output_head, &expected.as_bytes()[..500]);
    assert_eq!(o.output_tail, &expected.as_bytes()[expected.len() - 500..]);
    let file = std::fs::read(output_path(f.dir.path(), &started.key)).expect("output file");
    assert_eq!(file, expected.as_bytes());

    let mut s = spec("zeros", &["head", "-c", "200000", "/dev/zero"]);
    s.output_limit = 4096;
    let (_, o) = f.run(s);
    assert_eq!(o.output_bytes, 200_000);
    assert_eq!((o.output_head.len(), o.output_tail.len()), (2048, 2048));
    assert_eq!(o.termination, Termination::Exited(0));
}

#[test]
fn signal_death() {
    let mut f = fixture();
    let (_, o) = f.run(sh("sig", "kill -KILL $$"));
    assert_eq!(o.termination, Termination::Signaled(libc::SIGKILL));
    assert_eq!((o.exit_code, o.signal), (None, Some(libc::SIGKILL)));
}

fn timeout_kills_term_ignoring_grandchild(use_cgroups: bool) {
    let mut f = fixture_with(policy(), use_cgroups);
    let mut s = sh(
        if use_cgroups {
            "timeout-cg"
        } else {
            "timeout-pg"
        },
        "trap '' TERM; sleep 1000 & echo $!; sleep 1000",
    );
    s.timeout = Some(Duration::from_millis(300));
    s.kill_grace = Duration::from_millis(300);
    let t0 = Instant::now();
    let (started, o) = f.run(s);
    assert_eq!(o.termination, Termination::TimedOut);
    assert_eq!(
        o.signal,
        Some(libc::SIGKILL),
        "main ignored TERM, died by KILL"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let grandchild: i32 = text(&o).trim().parse().expect("grandchild pid printed");
    assert!(!is_alive(grandchild), "grandchild {grandchild} survived");
    assert_eq!(live_in_session(started.identity.pid), Vec::<i32>::new());
}

#[test]
fn timeout_kills_term_ignoring_grandchild_cgroup() {
    timeout_kills_term_ignoring_grandchild(true);
}

#[test]
fn timeout_kills_term_ignoring_grandchild_fallback() {
    timeout_kills_term_ignoring_grandchild(false);
}

#[test]
fn exit_kills_leftover_background_process() {
    let mut f = fixture();
    let t0 = Instant::now();
    let (started, o) = f.run(sh("leftover", "sleep 1000 & echo $!"));
    assert_eq!(o.termination, Termination::Exited(0));
    let bg: i32 = text(&o).trim().parse().expect("pid printed");
    assert!(!is_alive(bg), "background sleep {bg} survived its run");
    assert_eq!(live_in_session(started.identity.pid), Vec::<i32>::new());
    assert!(t0.elapsed() < Duration::from_secs(5), "drain is bounded");
}

#[test]
fn kill_request() {
    let mut f = fixture();
    let s = spec("kill", &["sleep", "1000"]);
    let key = s.key.clone();
    f.exec.spawn(s).expect("spawns");
    assert_eq!(f.exec.running(), vec![key.clone()]);
    assert!(f.exec.usage(&key).is_some_and(|u| u.cpu_ms.is_some()));
    assert!(f.exec.kill(&key, KillReason::Requested));
    let o = f.finished(&key);
    assert_eq!(o.termination, Termination::Killed(KillReason::Requested));
    assert_eq!(o.signal, Some(libc::SIGTERM));
    assert!(
        !f.exec.kill(&key, KillReason::Requested),
        "unknown once finished"
    );
    assert!(!f.exec.kill("no-such-run#1", KillReason::Shutdown));
    assert!(f.exec.usage(&key).is_none());
    assert!(f.exec.running().is_empty());
}

#[test]
fn duplicate_key_refused() {
    let mut f = fixture();
    let s = spec("dup", &["sleep", "1000"]);
    let key = s.key.clone();
    f.exec.spawn(s.clone()).expect("spawns");
    let err = f.exec.spawn(s).expect_err("second refused");
    assert!(err.to_string().contains("already running"), "{err}");
    f.exec.kill(&key, KillReason::Shutdown);
    f.finished(&key);
}

fn setsid_grandchild_dies_with_cgroup(use_v2: bool) {
    let mut f = fixture_opts(
        policy(),
        Options {
            use_cgroups: true,
            use_v2,
        },
    );
    if !f.exec.uses_cgroups() {
        eprintln!("skipped: no per-run cgroups here");
        return;
    }
    // Wait until the grandchild really is in its own session, then leave.
    let script = "setsid sleep 1000 & p=$!; \
                  while [ \"$(cut -d' ' -f6 /proc/$p/stat)\" != \"$p\" ]; do :; done; echo $p";
    let (started, o) = f.run(sh(if use_v2 { "setsid-v2" } else { "setsid-v1" }, script));
    assert_eq!(o.termination, Termination::Exited(0));
    let escaped: i32 = text(&o).trim().parse().expect("pid printed");
    assert!(!is_alive(escaped), "setsid'd grandchild {escaped} survived");
    assert_eq!(live_in_session(started.identity.pid), Vec::<i32>::new());
}

#[test]
fn setsid_grandchild_dies_with_cgroup_v2() {
    setsid_grandchild_dies_with_cgroup(true);
}

#[test]
fn setsid_grandchild_dies_with_cgroup_v1() {
    setsid_grandchild_dies_with_cgroup(false);
}

/// The run's cgroup folders, from its state file.
fn cgroup_dirs(f: &Fixture, key: &str) -> Vec<std::path::PathBuf> {
    let file = f
        .dir
        .path()
        .join("exec")
        .join(format!("{}.json", escape_key(key)));
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(file).expect("state file")).expect("json");
    v["cgroups"]
        .as_array()
        .expect("cgroups list")
        .iter()
        .map(|p| p.as_str().expect("path").into())
        .collect()
}

#[test]
fn limits_are_applied_where_controllers_exist() {
    let mut f = fixture();
    if !f.exec.uses_cgroups() {
        eprintln!("skipped: no per-run cgroups here");
        return;
    }
    let mut s = spec("limits", &["sleep", "1000"]);
    s.limits = Limits {
        memory: Some(cronsun_proto::job::ByteSize(64 << 20)),
        cpu: Some(0.5),
        tasks: Some(32),
    };
    let key = s.key.clone();
    f.exec.spawn(s).expect("spawns");
    let dirs = cgroup_dirs(&f, &key);
    assert!(!dirs.is_empty());
    let read = |file: &str| {
        dirs.iter()
            .find_map(|d| std::fs::read_to_string(d.join(file)).ok())
            .map(|s| s.trim().to_string())
    };
    // Whichever of v2 / v1 carries each controller must hold the limit.
    if let Some(v) = read("memory.max").or_else(|| read("memory.limit_in_bytes")) {
        assert_eq!(v, (64u64 << 20).to_string());
    }
    if let Some(v) = read("pids.max") {
        assert_eq!(v, "32");
    }
    if let Some(v) = read("cpu.max") {
        assert_eq!(v, "50000 100000");
    } else if let Some(v) = read("cpu.cfs_quota_us") {
        assert_eq!(v, "50000");
    }
    assert!(f.exec.kill(&key, KillReason::Shutdown));
    let o = f.finished(&key);
    assert_eq!(o.termination, Termination::Killed(KillReason::Shutdown));
    assert!(o.usage.cpu_ms.is_some());
    eprintln!("usage with cgroups: {:?}", o.usage);
    for d in dirs {
        assert!(!d.exists(), "cgroup {} removed after the run", d.display());
    }
}

#[test]
fn run_as_refused() {
    let f = fixture();
    let mut s = spec("refused", &["true"]);
    s.run_as = Some("daemon".parse().expect("run_as"));
    let err = f.exec.spawn(s).expect_err("refused");
    assert!(matches!(err, SpawnError::Refused(_)), "{err}");
    if is_root() {
        let mut p = policy();
        p.default_run_as = "root".into();
        let f = fixture_with(p, true);
        let err = f.exec.spawn(spec("root", &["true"])).expect_err("refused");
        assert!(
            matches!(&err, SpawnError::Refused(m) if m.contains("root")),
            "{err}"
        );
    }
}

#[test]
fn runs_as_allowed_user_with_groups_and_env() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let mut p = policy();
    p.default_run_as = "root".into();
    p.allowed_users = vec!["nobody".into()];
    let mut f = fixture_with(p, true);
    let mut s = sh(
        "nobody",
        "id -u; id -g; id -G; echo \"$PATH|$HOME|$USER|$LOGNAME|$CRONSUN_JOB_ID|$SHELL\"; pwd",
    );
    s.run_as = Some("nobody".parse().expect("run_as"));
    s.env = vec![("CRONSUN_JOB_ID".into(), "job-1".into())];
    let (started, o) = f.run(s);
    let nobody = User::from_name("nobody")
        .ok()
        .flatten()
        .expect("nobody exists");
    let groups = nix::unistd::getgrouplist(c"nobody", nobody.gid).expect("groups");
    let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
    groups.sort();
    groups.dedup();
    assert_eq!(
        (started.uid, started.gid),
        (nobody.uid.as_raw(), nobody.gid.as_raw())
    );
    assert_eq!(started.user, "nobody");
    let out = text(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], nobody.uid.to_string());
    assert_eq!(lines[1], nobody.gid.to_string());
    let mut got: Vec<&str> = lines[2].split(' ').collect();
    got.sort();
    got.dedup();
    assert_eq!(got, groups);
    assert_eq!(
        lines[3],
        format!(
            "/usr/local/bin:/usr/bin:/bin|{}|nobody|nobody|job-1|{}",
            nobody.dir.display(),
            nobody.shell.display()
        )
    );
    let expected_dir = if nobody.dir.is_dir() {
        nobody.dir.clone()
    } else {
        "/".into()
    };
    assert_eq!(Path::new(lines[4]), expected_dir);
}

#[test]
fn exec_failure_is_reported() {
    let f = fixture();
    let err = f
        .exec
        .spawn(spec("nosuch", &["/no/such"]))
        .expect_err("fails");
    assert_eq!(
        err,
        SpawnError::Failed("cannot execute \"/no/such\": No such file or directory".into())
    );
    let err = f
        .exec
        .spawn(spec("nopath", &["no-such-cmd-xyz"]))
        .expect_err("fails");
    assert!(err.to_string().contains("not found in PATH"), "{err}");
    let mut s = spec("nodir", &["true"]);
    s.workdir = Some("/no/such/dir".into());
    let err = f.exec.spawn(s).expect_err("fails");
    assert!(err.to_string().contains("/no/such/dir"), "{err}");
    assert!(f.exec.running().is_empty());
}

#[test]
fn allowed_commands_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let open_dir = dir.path().join("open");
    std::fs::create_dir(&open_dir).expect("mkdir");
    std::fs::set_permissions(
        &open_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let script = open_dir.join("job.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let script_s = script.to_string_lossy().into_owned();

    let mut p = policy();
    p.allowed_commands = Some(vec!["/bin/sh".into(), script.clone()]);
    let mut f = fixture_with(p, true);
    let err = f
        .exec
        .spawn(spec("open", &[&script_s]))
        .expect_err("refused");
    assert!(
        // As root: the folder is world-writable; otherwise also not root-owned.
        matches!(&err, SpawnError::Refused(m) if m.contains("not trusted")
            && (m.contains("writable") || !is_root())),
        "{err}"
    );
    let err = f
        .exec
        .spawn(spec("unlisted", &["/bin/echo", "x"]))
        .expect_err("refused");
    assert!(
        matches!(&err, SpawnError::Refused(m) if m.contains("allowed_commands")),
        "{err}"
    );
    let err = f
        .exec
        .spawn(spec("relative", &["sh", "-c", "true"]))
        .expect_err("refused");
    assert!(
        matches!(&err, SpawnError::Refused(m) if m.contains("absolute")),
        "{err}"
    );
    let (_, o) = f.run(sh("listed", "echo ok"));
    assert_eq!(text(&o), "ok\n");
}

#[test]
fn recover_leftovers_verifies_identity() {
    use std::os::unix::process::CommandExt;
    let f = fixture_with(policy(), false);
    let spawn_sleep = || {
        std::process::Command::new("sleep")
            .arg("1000")
            .process_group(0)
            .spawn()
            .expect("sleep starts")
    };
    let mut real = spawn_sleep();
    let mut other = spawn_sleep();
    let boot = procfs::boot_id().expect("boot id");
    let real_id = procfs::identity(real.id() as i32, &boot).expect("identity");
    let mut forged_id = procfs::identity(other.id() as i32, &boot).expect("identity");
    forged_id.start_ticks += 1;
    let old_boot = ProcessIdentity {
        boot_id: "00000000-0000-0000-0000-000000000000".into(),
        ..procfs::identity(other.id() as i32, &boot).expect("identity")
    };
    let write = |k: &str, id: &ProcessIdentity| {
        let json = serde_json::json!({ "key": k, "identity": id });
        std::fs::write(
            f.dir
                .path()
                .join("exec")
                .join(format!("{}.json", escape_key(k))),
            json.to_string(),
        )
        .expect("write state file");
    };
    write("real#1", &real_id);
    write("forged#1", &forged_id);
    write("oldboot#1", &old_boot);
    std::fs::write(f.dir.path().join("exec/garbage.json"), "{").expect("write");

    let found = f.exec.recover_leftovers();
    let summary: Vec<(&str, bool)> = found.iter().map(|l| (l.key.as_str(), l.killed)).collect();
    assert_eq!(
        summary,
        vec![("forged#1", false), ("oldboot#1", false), ("real#1", true)]
    );
    let status = real.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(
        other.try_wait().expect("try_wait").is_none(),
        "unverified process was killed"
    );
    other.kill().expect("kill");
    other.wait().expect("wait");
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("exec"))
            .expect("dir")
            .count(),
        0
    );
}

#[test]
fn recover_leftovers_kills_through_recorded_cgroup() {
    use std::io::Write as _;
    let f = fixture();
    if !f.exec.uses_cgroups() {
        eprintln!("skipped: no per-run cgroups here");
        return;
    }
    let cgroups = cgroup::Cgroups::detect(true).expect("cgroups");
    let k = key("orphan");
    let run = cgroups
        .create_run(&escape_key(&k), &Limits::default())
        .expect("run cgroup");
    let mut child = std::process::Command::new("sleep")
        .arg("1000")
        .spawn()
        .expect("sleep starts");
    for fd in run.procs() {
        let mut procs = std::fs::File::from(fd.try_clone_to_owned().expect("dup"));
        procs
            .write_all(child.id().to_string().as_bytes())
            .expect("join cgroup");
    }
    let boot = procfs::boot_id().expect("boot id");
    // The recorded leader is gone (forged start time): only the cgroup
    // can tell that the sleep belongs to the run.
    let mut id = procfs::identity(child.id() as i32, &boot).expect("identity");
    id.start_ticks += 1;
    let json = serde_json::json!({ "key": k, "identity": id, "cgroups": run.paths() });
    std::fs::write(
        f.dir
            .path()
            .join("exec")
            .join(format!("{}.json", escape_key(&k))),
        json.to_string(),
    )
    .expect("write state file");
    let found = f.exec.recover_leftovers();
    assert_eq!(found.len(), 1);
    assert!(found[0].killed);
    let status = child.wait().expect("wait");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    for d in run.paths() {
        assert!(!d.exists(), "cgroup {} removed", d.display());
    }
}

#[test]
fn escape_key_is_file_safe() {
    assert_eq!(
        escape_key("job~20260325T030000.000Z#2"),
        "job~20260325T030000.000Z%232"
    );
    assert_eq!(escape_key("../x/y"), "%2E.%2Fx%2Fy");
}

/// Fire latency: from just before `spawn()` to the child's `main` (the
/// child prints its wall clock, `date +%s%N`), and the `spawn()` call itself.
/// `cargo test -p cronsund --lib exec::tests::spawn_latency -- --ignored --nocapture`
#[test]
#[ignore]
fn spawn_latency() {
    let modes = [
        (
            "cgroup v2",
            Options {
                use_cgroups: true,
                use_v2: true,
            },
        ),
        (
            "cgroup v1",
            Options {
                use_cgroups: true,
                use_v2: false,
            },
        ),
        (
            "no cgroup",
            Options {
                use_cgroups: false,
                use_v2: false,
            },
        ),
    ];
    let now_ns = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_nanos()
    };
    let mut base = Vec::new();
    for _ in 0..200 {
        let wall = now_ns();
        let out = std::process::Command::new("date")
            .arg("+%s%N")
            .output()
            .expect("date runs");
        let child: u128 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("date output");
        base.push(Duration::from_nanos(child.saturating_sub(wall) as u64));
    }
    base.sort();
    let base_p50 = base[100];
    eprintln!("baseline std::process::Command: spawn->child main p50 {base_p50:?}");
    for (name, opts) in modes {
        let mut f = fixture_opts(policy(), opts);
        let (mut to_main, mut call) = (Vec::new(), Vec::new());
        for i in 0..200 {
            let s = spec(
                &format!("lat{}{i}", name.replace(' ', "")),
                &["date", "+%s%N"],
            );
            let k = s.key.clone();
            let wall = now_ns();
            let t = Instant::now();
            f.exec.spawn(s).expect("spawns");
            call.push(t.elapsed());
            let o = f.finished(&k);
            let child: u128 = text(&o).trim().parse().expect("date output");
            to_main.push(Duration::from_nanos((child.saturating_sub(wall)) as u64));
        }
        to_main.sort();
        call.sort();
        eprintln!(
            "{name}: spawn->child main p50 {:?} ({:.2}x baseline) p90 {:?} p99 {:?}; spawn() call p50 {:?} p90 {:?}",
            to_main[100],
            to_main[100].as_secs_f64() / base_p50.as_secs_f64(),
            to_main[180],
            to_main[198],
            call[100],
            call[180]
        );
    }
}

#[test]
#[ignore]
fn spawn_breakdown() {
    let daemon = policy::DaemonUser::current().expect("me");
    let s = spec("bd", &["/bin/true"]);
    let mut t = Vec::new();
    for _ in 0..200 {
        let t0 = Instant::now();
        let _p = policy::prepare(&policy(), &daemon, &s).expect("prepare");
        t.push(t0.elapsed());
    }
    t.sort();
    eprintln!("prepare p50 {:?}", t[100]);
    let mut p = policy::prepare(&policy(), &daemon, &s).expect("prepare");
    if std::env::var("NOIDS").is_ok() {
        p.change_ids = false;
    }
    let devnull = std::fs::File::open("/dev/null").expect("devnull");
    let (mut t, mut u) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let t0 = Instant::now();
        let c = spawn::fork_exec(&p, std::os::fd::AsFd::as_fd(&devnull), None, &[])
            .map_err(|e| format!("{e:?}"))
            .expect("fork");
        t.push(t0.elapsed());
        sys::wait4(c.pid, false).expect("wait");
        let t0 = Instant::now();
        let mut c = std::process::Command::new("/bin/true")
            .spawn()
            .expect("spawn");
        u.push(t0.elapsed());
        c.wait().expect("wait");
    }
    t.sort();
    u.sort();
    eprintln!(
        "fork_exec p50 {:?} p90 {:?}; std Command p50 {:?} p90 {:?}",
        t[150], t[270], u[150], u[270]
    );
}

/// Jobs start with host defaults, not the daemon's nice, OOM score
/// adjustment, rlimits and umask (DESIGN §6).
#[test]
fn jobs_get_host_defaults_not_the_daemons_attributes() {
    // Give the "daemon" (this test process) attributes a unit could set.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o002));
    let _ = std::fs::write("/proc/self/oom_score_adj", "7");
    let (_, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .expect("getrlimit");
    let _ = nix::sys::resource::setrlimit(
        nix::sys::resource::Resource::RLIMIT_NOFILE,
        2048.min(hard),
        hard,
    );
    let mut f = fixture();
    let (_, o) = f.run(sh(
        "hostdefaults",
        "umask; ulimit -Sn; cat /proc/self/oom_score_adj; cut -d' ' -f19 /proc/self/stat",
    ));
    let out = text(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["0022", "1024", "0", "0"], "output: {out:?}");
}
