//! Scheduled firing: per-second schedules, run ids and run environment.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use cronsun_proto::ids::instant_key;
use cronsun_tests::{fmt_records, job, unique_id, Daemon, RunStatus, Trigger};

/// A per-second job fires at every second; each record's output is the
/// `CRONSUN_RUN_ID` the job saw, equal to the record's run id; scheduled
/// instants are consecutive seconds with no duplicates.
#[test]
fn per_second_job_fires_every_second_with_its_run_id() {
    let d = Daemon::start_default();
    let id = unique_id("every-sec");
    d.create_job(&job(json!({
        "id": id,
        "command": "echo \"$CRONSUN_RUN_ID\"",
        "shell": true,
        "rules": [{ "schedule": "* * * * * *" }],
    })));

    let runs = d.wait_for_runs(&id, Duration::from_secs(20), "5 successful runs", |rs| {
        rs.iter().filter(|r| r.status == RunStatus::Success).count() >= 5
    });
    let all = fmt_records(&runs);

    let scheduled: Vec<_> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::Schedule)
        .collect();
    let mut ids = BTreeSet::new();
    for r in &scheduled {
        assert!(
            ids.insert(r.record_id()),
            "duplicate record {}:\n{all}",
            r.record_id()
        );
        assert_eq!(r.attempt, 1, "a scheduled run's first attempt:\n{all}");
        assert_eq!(
            r.scheduled_at.subsec_nanosecond(),
            0,
            "instants fall on whole seconds:\n{all}"
        );
        assert!(
            r.run_id
                .starts_with(&format!("{id}~{}", instant_key(r.scheduled_at))),
            "run_id is <job>~<instant>: {}\n{all}",
            r.run_id
        );
    }
    for pair in scheduled.windows(2) {
        let gap = pair[1].scheduled_at.as_millisecond() - pair[0].scheduled_at.as_millisecond();
        assert_eq!(
            gap, 1000,
            "consecutive instants must be exactly 1 s apart ({} then {}):\n{all}",
            pair[0].scheduled_at, pair[1].scheduled_at
        );
    }

    for r in runs.iter().filter(|r| r.status == RunStatus::Success) {
        let full = d
            .record(&r.record_id())
            .unwrap_or_else(|| panic!("record {} is listed but not found", r.record_id()));
        assert_eq!(
            full.output_head.trim(),
            full.run_id,
            "the job printed its CRONSUN_RUN_ID:\n{}",
            fmt_records(std::slice::from_ref(&full))
        );
        assert_eq!(full.exit_code, Some(0));
        assert!(!full.truncated);
        assert_eq!(
            full.output_bytes,
            full.run_id.len() as u64 + 1,
            "echo adds a newline"
        );
        assert!(
            full.started_at.is_some() && full.finished_at.is_some(),
            "a finished run has both times:\n{}",
            fmt_records(std::slice::from_ref(&full))
        );
    }
}

/// The documented run environment reaches the job: job id, attempt, node
/// and scheduled instant, plus the job's own `env`.
#[test]
fn run_environment_carries_cronsun_variables_and_job_env() {
    let d = Daemon::start_default();
    let id = unique_id("env");
    d.create_job(&job(json!({
        "id": id,
        "command": "printf '%s|%s|%s|%s|%s' \"$CRONSUN_JOB_ID\" \"$CRONSUN_ATTEMPT\" \"$CRONSUN_NODE\" \"$GREETING\" \"$PATH\"",
        "shell": true,
        "env": { "GREETING": "hello world" },
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run_id = d.run_now(&id);
    assert!(
        run_id.starts_with(&format!("{id}~manual~")),
        "manual run ids are <job>~manual~<request>: {run_id}"
    );
    let r = d.wait_for_status(&run_id, RunStatus::Success, Duration::from_secs(20));
    assert_eq!(r.trigger, Trigger::Manual);
    let out = r.output_head.clone();
    let parts: Vec<&str> = out.split('|').collect();
    assert_eq!(
        parts,
        vec![
            id.as_str(),
            "1",
            d.node_id(),
            "hello world",
            "/usr/local/bin:/usr/bin:/bin"
        ],
        "output: {out:?}"
    );
    assert!(
        r.env_keys.iter().any(|k| k == "GREETING"),
        "env_keys lists the job's env: {:?}",
        r.env_keys
    );
}
