//! Privilege separation end to end (root only): the network-facing agent
//! runs as the agent user with no capabilities, the executor as root; a
//! kill -9 of the agent is survived: the executor restarts it, the running
//! job keeps running and its result is recorded exactly once.

use std::time::Duration;

use serde_json::json;

use cronsun_tests::daemon::is_root;
use cronsun_tests::{job, poll_until, unique_id, Daemon, MarkerGuard, RunStatus};

fn field(pid: i32, key: &str) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
}

/// The agent: the child of the executor that runs cronsund.
fn agent_of(executor: i32) -> Option<i32> {
    let children =
        std::fs::read_to_string(format!("/proc/{executor}/task/{executor}/children")).ok()?;
    children
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .find(|p| field(*p, "Name:").as_deref() == Some("cronsund"))
}

#[test]
fn agent_is_confined_and_its_crash_keeps_runs() {
    if !is_root() {
        eprintln!("skipped: privilege separation needs root (this test runs as non-root)");
        return;
    }
    let d = Daemon::start_default();
    let exec_pid = d.pid().expect("daemon pid");
    let agent = agent_of(exec_pid).expect("an agent process");
    let uid = |p: i32| {
        field(p, "Uid:")
            .and_then(|u| u.split_whitespace().next().map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(uid(exec_pid), "0", "the executor runs as root");
    assert_ne!(uid(agent), "0", "the agent does not run as root");
    assert_eq!(
        field(agent, "CapEff:").as_deref(),
        Some("0000000000000000"),
        "the agent has no capabilities"
    );
    assert_eq!(field(agent, "NoNewPrivs:").as_deref(), Some("1"));
    assert_eq!(
        field(agent, "Seccomp:").as_deref(),
        Some("2"),
        "the agent runs under a seccomp filter"
    );
    assert_eq!(
        field(exec_pid, "Seccomp:").as_deref(),
        Some("0"),
        "the executor (which starts jobs) is not filtered"
    );
    assert!(
        d.logs().contains("agent sandboxed"),
        "the sandbox status is logged:\n{}",
        d.logs()
    );

    let m = MarkerGuard::new("survivor");
    let id = unique_id("survivor");
    d.create_job(&job(json!({
        "id": id,
        "command": "sleep 3; echo survived",
        "shell": true,
        "env": m.env_json(),
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run_id = d.run_now(&id);
    d.wait_for_status(&run_id, RunStatus::Running, Duration::from_secs(10));
    // The job's processes exist: the executor has started it.
    m.wait_present(2, Duration::from_secs(10), "the job's sh and sleep");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(agent),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the agent");
    let next = poll_until(Duration::from_secs(15), Duration::from_millis(50), || {
        agent_of(exec_pid).filter(|p| *p != agent)
    })
    .unwrap_or_else(|| panic!("no new agent after kill -9\n{}", d.logs()));
    assert_ne!(next, agent);
    // The API comes back with the new agent; the run ends and is recorded once.
    let rec = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let r = std::panic::catch_unwind(|| d.runs(&id)).ok()?;
        r.into_iter().find(|r| r.status != RunStatus::Running)
    })
    .unwrap_or_else(|| panic!("the run was not recorded\n{}", d.logs()));
    assert_eq!(rec.status, RunStatus::Success, "{rec:?}\n{}", d.logs());
    let full = d.record(&run_id).expect("the run's record");
    assert!(full.output_head.contains("survived"), "{full:?}");
    let all = d.runs(&id);
    assert_eq!(all.len(), 1, "recorded once: {all:?}");
    // The agent removes the executor-written output file once the record is
    // durable (the output folder must let it: no sticky bit).
    let output = d.state_dir().join("output");
    let emptied = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
        let n = std::fs::read_dir(&output).ok()?.count();
        (n == 0).then_some(())
    });
    assert!(
        emptied.is_some(),
        "output files left behind in {}: {:?}",
        output.display(),
        std::fs::read_dir(&output).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
}

/// `cronsund check-sandbox` applies the agent's sandbox to itself and
/// proves every rule by trying what it forbids (any user; the kernel here
/// has Landlock and seccomp — a kernel without them makes this fail, which
/// is the point of the command).
#[test]
fn check_sandbox_proves_each_rule() {
    let dir = tempfile::tempdir().expect("temp dir");
    let state = dir.path().join("state");
    let run = dir.path().join("run");
    std::fs::create_dir_all(&state).expect("state dir");
    std::fs::create_dir_all(&run).expect("socket dir");
    let port = cronsun_tests::daemon::free_port();
    let config = dir.path().join("cronsun.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\nstate_dir = {state:?}\n[web]\nlisten = \"127.0.0.1:{port}\"\nsocket = {sock:?}\n",
            sock = run.join("api.sock")
        ),
    )
    .expect("write the config");
    let out = std::process::Command::new(cronsun_tests::bins::cronsund())
        .args(["check-sandbox", "--config"])
        .arg(&config)
        .output()
        .expect("run cronsund check-sandbox");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("landlock: fully enforced"), "{text}");
    for probe in [
        "write {state}",
        "exec /bin/true: denied",
        "bind TCP",
        "unshare(CLONE_NEWUSER): denied",
        "ptrace(PTRACE_TRACEME): denied",
        "signal the parent process (outside the sandbox): denied",
    ] {
        let probe = probe.replace("{state}", &state.display().to_string());
        let line = text
            .lines()
            .find(|l| l.contains(&probe))
            .unwrap_or_else(|| panic!("no probe {probe:?}:\n{text}"));
        assert!(line.trim_start().starts_with("ok"), "{line}");
    }
    assert!(
        !dir.path().read_dir().expect("list").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with(".cronsun-sandbox-probe")),
        "the denied write left no file"
    );
}
