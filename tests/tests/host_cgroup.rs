//! Per-run cgroups end to end (root only): a memory limit is enforced and
//! the OOM kill recorded, a double-forked daemon dies with its run's
//! timeout, pids.max stops a fork bomb. Each test skips, saying why, only
//! where the machine lacks the controller.

use std::time::Duration;

use serde_json::json;

use cronsun_tests::daemon::is_root;
use cronsun_tests::{fmt_records, job, unique_id, Daemon, MarkerGuard, RunStatus};

const NEVER_SOON: &str = "0 0 1 1 *";

/// Whether a controller is usable: cgroup v2 with it enabled at the root,
/// or a v1 hierarchy of it.
fn controller(name: &str) -> Option<String> {
    if !is_root() {
        return Some("per-run cgroups need root".into());
    }
    let v1 = std::path::Path::new("/sys/fs/cgroup")
        .join(name)
        .join("cgroup.procs");
    let v2 = [
        "/sys/fs/cgroup/cgroup.controllers",
        "/sys/fs/cgroup/unified/cgroup.controllers",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .any(|c| c.split_whitespace().any(|c| c == name));
    if v1.exists() || v2 {
        None
    } else {
        Some(format!(
            "no {name} controller (neither v2 nor a v1 hierarchy)"
        ))
    }
}

fn skip(why: Option<String>, test: &str) -> bool {
    if let Some(why) = why {
        eprintln!("skipped {test}: {why}");
        return true;
    }
    false
}

#[test]
fn memory_limit_kills_and_records_the_oom() {
    if skip(
        controller("memory"),
        "memory_limit_kills_and_records_the_oom",
    ) {
        return;
    }
    let d = Daemon::start_default();
    let id = unique_id("oom");
    d.create_job(&job(json!({
        "id": id,
        // awk doubles a string until it is far past the 32 MiB limit.
        "command": "exec awk 'BEGIN { s = \"x\"; while (1) s = s s }'",
        "shell": true,
        "limits": { "memory": "32MiB" },
        "timeout": "60s",
        "rules": [{ "schedule": NEVER_SOON }],
    })));
    let run_id = d.run_now(&id);
    let r = d.wait_for_final(&run_id, Duration::from_secs(60));
    let show = fmt_records(std::slice::from_ref(&r));
    assert_eq!(r.status, RunStatus::Failed, "{show}");
    assert!(
        r.signal == Some(9) || r.exit_code == Some(137),
        "killed by SIGKILL (the OOM killer): {show}"
    );
    assert!(r.oom_kills.unwrap_or(0) >= 1, "oom_kills recorded: {show}");
    assert!(
        r.reason.as_deref().unwrap_or("").contains("out of memory"),
        "the record says why: {show}"
    );
    assert!(
        r.peak_memory.unwrap_or(0) <= 40 << 20,
        "peak memory stays near the 32 MiB limit: {show}"
    );
}

#[test]
fn double_forked_daemon_dies_with_its_runs_timeout() {
    if !is_root() {
        eprintln!(
            "skipped double_forked_daemon_dies_with_its_runs_timeout: needs root for cgroups"
        );
        return;
    }
    let d = Daemon::start_default();
    let m = MarkerGuard::new("dfork");
    let id = unique_id("dfork");
    // setsid + double fork: the daemon leaves the run's session and process
    // group and is reparented; only the cgroup still holds it.
    let run_id = d.run_timing_out(
        &m,
        &id,
        "setsid sh -c 'sh -c \"trap \\\"\\\" TERM; sleep 1000\" &' ; sleep 1000",
        2,
        "the run's sleep and the daemon's",
    );
    let r = d.wait_for_status(&run_id, RunStatus::Timeout, Duration::from_secs(20));
    m.assert_none_left(
        Duration::from_secs(3),
        &format!(
            "after the timeout: {}",
            fmt_records(std::slice::from_ref(&r))
        ),
    );
}

#[test]
fn pids_max_stops_a_fork_bomb() {
    if skip(controller("pids"), "pids_max_stops_a_fork_bomb") {
        return;
    }
    let d = Daemon::start_default();
    let m = MarkerGuard::new("forkbomb");
    let id = unique_id("forkbomb");
    d.create_job(&job(json!({
        "id": id,
        // Tries to start 200 sleepers; with tasks = 20 most forks fail.
        "command": "n=0; for i in $(seq 200); do sleep 30 & n=$((n+1)); done 2>/dev/null; sleep 1; echo alive=$(jobs -r | wc -l)",
        "shell": true,
        "env": m.env_json(),
        "limits": { "tasks": 20 },
        "timeout": "20s",
        "kill_grace": "1s",
        "rules": [{ "schedule": NEVER_SOON }],
    })));
    let run_id = d.run_now(&id);
    let r = d.wait_for_final(&run_id, Duration::from_secs(40));
    let show = fmt_records(std::slice::from_ref(&r));
    assert!(
        r.peak_pids.unwrap_or(u64::MAX) <= 20,
        "pids.max held the run to 20 tasks: {show}"
    );
    m.assert_none_left(Duration::from_secs(3), "after the run ended");
}
