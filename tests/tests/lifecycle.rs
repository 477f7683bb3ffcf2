//! Operating the daemon: global pause, and SIGTERM draining running runs.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use cronsun_proto::api::GlobalPause;
use cronsun_tests::{
    fmt_records, job, poll_until, unique_id, ConfigOverrides, Daemon, MarkerGuard, RunStatus,
    Trigger,
};

/// `cronsun pause --all` stops scheduled runs (no new instants while
/// paused, and paused time is never `missed`); `resume --all` resumes.
#[test]
fn global_pause_stops_scheduled_runs_and_resume_restarts_them() {
    let d = Daemon::start_default();
    let id = unique_id("paused");
    d.create_job(&job(json!({
        "id": id, "command": ["true"], "rules": [{ "schedule": "* * * * * *" }],
    })));
    d.wait_for_runs(&id, Duration::from_secs(15), "2 successful runs", |rs| {
        rs.iter().filter(|r| r.status == RunStatus::Success).count() >= 2
    });

    d.cli(&["pause", "--all"]).assert_success();
    let paused_at = Timestamp::now();
    let state: GlobalPause = d.api_get("/api/v1/pause").expect_status(200).json();
    assert!(
        state.paused,
        "GET /api/v1/pause after `pause --all`: {state:?}"
    );

    // An instant decided just as the pause landed may still run; nothing
    // scheduled a second later may. Watch for 3 s (bounded observation of
    // an absence).
    let grace = paused_at
        .checked_add(SignedDuration::from_secs(1))
        .expect("in range");
    let violation = poll_until(Duration::from_secs(3), Duration::from_millis(250), || {
        let runs = d.runs(&id);
        runs.iter().any(|r| r.scheduled_at > grace).then_some(runs)
    });
    if let Some(runs) = violation {
        panic!(
            "runs scheduled after the global pause ({paused_at}):\n{}",
            fmt_records(&runs)
        );
    }

    d.cli(&["resume", "--all"]).assert_success();
    let resumed_at = Timestamp::now();
    let state: GlobalPause = d.api_get("/api/v1/pause").expect_status(200).json();
    assert!(
        !state.paused,
        "GET /api/v1/pause after `resume --all`: {state:?}"
    );
    let runs = d.wait_for_runs(&id, Duration::from_secs(15), "a run after resume", |rs| {
        rs.iter().any(|r| {
            r.scheduled_at > resumed_at
                && r.status == RunStatus::Success
                && r.trigger == Trigger::Schedule
        })
    });
    let missed: Vec<_> = runs
        .iter()
        .filter(|r| {
            r.status == RunStatus::Missed && r.scheduled_at > grace && r.scheduled_at < resumed_at
        })
        .cloned()
        .collect();
    assert!(
        missed.is_empty(),
        "paused time is never missed:\n{}",
        fmt_records(&missed)
    );
}

/// SIGTERM with a run going: the daemon stops scheduling, lets the run
/// finish within `drain_timeout`, records it `success`, and exits 0.
#[test]
fn sigterm_drains_a_running_run_and_exits_0() {
    let mut d = Daemon::start(ConfigOverrides::new().drain_timeout("15s"));
    let id = unique_id("drain");
    d.create_job(&job(json!({
        "id": id,
        "command": "sleep 2; echo drained",
        "shell": true,
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run_id = d.run_now(&id);
    d.wait_for_status(&run_id, RunStatus::Running, Duration::from_secs(10));
    let status = d.stop_within(Duration::from_secs(30));
    assert!(
        status.success(),
        "cronsund exits 0 after draining, got {status}\n{}",
        d.logs()
    );

    d.restart();
    let r = d.wait_for_final(&run_id, Duration::from_secs(10));
    assert_eq!(
        r.status,
        RunStatus::Success,
        "the run finished during the drain:\n{}",
        fmt_records(std::slice::from_ref(&r))
    );
    assert_eq!(
        r.output_head.trim(),
        "drained",
        "{}",
        fmt_records(std::slice::from_ref(&r))
    );
}

/// A run that outlives `drain_timeout` is killed and recorded, and the
/// daemon still exits 0, leaving no process behind.
#[test]
fn sigterm_kills_runs_that_outlive_the_drain_timeout() {
    let mut d = Daemon::start(ConfigOverrides::new().drain_timeout("1s"));
    let m = MarkerGuard::new("undrained");
    let id = unique_id("undrained");
    d.create_job(&job(json!({
        "id": id,
        "command": ["sleep", "1000"],
        "env": m.env_json(),
        "kill_grace": "1s",
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run_id = d.run_now(&id);
    d.wait_for_status(&run_id, RunStatus::Running, Duration::from_secs(10));
    m.wait_present(1, Duration::from_secs(5), "the running sleep");
    let status = d.stop_within(Duration::from_secs(20));
    assert!(
        status.success(),
        "cronsund exits 0 after the drain deadline, got {status}\n{}",
        d.logs()
    );
    m.assert_none_left(Duration::from_secs(2), "after the daemon exited");

    d.restart();
    let r = d.wait_for_final(&run_id, Duration::from_secs(10));
    assert_eq!(
        r.status,
        RunStatus::Killed,
        "a run killed at the drain deadline is recorded killed, not lost:\n{}",
        fmt_records(std::slice::from_ref(&r))
    );
}
