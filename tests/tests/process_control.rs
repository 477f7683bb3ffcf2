//! Timeouts, kills, concurrency policies, retries and output limits: what
//! the executor does to a run's processes and how the record says it.

use std::time::Duration;

use serde_json::json;

use cronsun_tests::{fmt_records, job, unique_id, Daemon, MarkerGuard, RunStatus, Trigger};

const NEVER_SOON: &str = "0 0 1 1 *";

/// A job whose grandchild ignores SIGTERM and which outlives `timeout`:
/// SIGTERM, then SIGKILL after `kill_grace`, reach the whole run; nothing
/// survives and the record says `timeout`.
#[test]
fn timeout_kills_the_whole_tree_including_a_sigterm_ignoring_grandchild() {
    let d = Daemon::start_default();
    let m = MarkerGuard::new("timeout");
    let id = unique_id("timeout");
    // The main shell dies on SIGTERM; its child (a shell ignoring TERM) and
    // that child's `sleep` (the grandchild, TERM still ignored) do not.
    let run_id = d.run_timing_out(
        &m,
        &id,
        "sh -c 'trap \"\" TERM; sleep 1000; echo never' & echo started; wait",
        3,
        "sh, child sh and grandchild sleep",
    );
    let r = d.wait_for_status(&run_id, RunStatus::Timeout, Duration::from_secs(20));
    m.assert_none_left(Duration::from_secs(2), "after the run was recorded timeout");
    let dur = r.duration_ms.unwrap_or_default();
    assert!(
        (1_900..10_000).contains(&dur),
        "a 2 s timeout ends the run after about 2-3 s, took {dur} ms:\n{}",
        fmt_records(std::slice::from_ref(&r))
    );
    assert!(
        r.output_head.contains("started"),
        "{}",
        fmt_records(std::slice::from_ref(&r))
    );
}

/// Every process ignores SIGTERM: only the SIGKILL after `kill_grace` ends
/// the run; it is still recorded `timeout` and nothing survives.
#[test]
fn timeout_escalates_to_sigkill_after_kill_grace() {
    let d = Daemon::start_default();
    let m = MarkerGuard::new("timeout-kill");
    let id = unique_id("timeout-kill");
    let run_id = d.run_timing_out(
        &m,
        &id,
        "trap '' TERM; sh -c 'sleep 1000' & sleep 1000; wait",
        3,
        "the run's processes",
    );
    let r = d.wait_for_status(&run_id, RunStatus::Timeout, Duration::from_secs(20));
    m.assert_none_left(Duration::from_secs(2), "after the run was recorded timeout");
    let dur = r.duration_ms.unwrap_or_default();
    assert!(
        dur >= 2_900,
        "SIGTERM is ignored, so the run lasts timeout + kill_grace (3 s), took {dur} ms:\n{}",
        fmt_records(std::slice::from_ref(&r))
    );
}

/// `concurrency = "forbid"`: instants that find the job still running are
/// recorded `skipped`, and runs never overlap.
#[test]
fn forbid_records_overlapping_instants_as_skipped() {
    let d = Daemon::start_default();
    let m = MarkerGuard::new("forbid");
    let id = unique_id("forbid");
    d.create_job(&job(json!({
        "id": id,
        "command": ["sleep", "3"],
        "env": m.env_json(),
        "concurrency": "forbid",
        "rules": [{ "schedule": "* * * * * *" }],
    })));
    let runs = d.wait_for_runs(
        &id,
        Duration::from_secs(25),
        "one finished run and 2 skipped instants",
        |rs| {
            rs.iter().any(|r| r.status == RunStatus::Success)
                && rs.iter().filter(|r| r.status == RunStatus::Skipped).count() >= 2
        },
    );
    let all = fmt_records(&runs);
    let started: Vec<_> = runs.iter().filter(|r| r.started_at.is_some()).collect();
    for (i, a) in started.iter().enumerate() {
        for b in &started[i + 1..] {
            let (a0, b0) = (
                a.started_at.expect("started"),
                b.started_at.expect("started"),
            );
            let a1 = a.finished_at.unwrap_or(jiff::Timestamp::MAX);
            let b1 = b.finished_at.unwrap_or(jiff::Timestamp::MAX);
            assert!(
                a1 <= b0 || b1 <= a0,
                "runs {} and {} overlap under forbid:\n{all}",
                a.run_id,
                b.run_id
            );
        }
    }
    for s in runs.iter().filter(|r| r.status == RunStatus::Skipped) {
        assert!(
            s.started_at.is_none() && s.exit_code.is_none(),
            "a skipped instant never started:\n{all}"
        );
        assert_eq!(s.trigger, Trigger::Schedule, "{all}");
    }
}

/// `concurrency = "replace"`: the next instant kills the running run (it
/// ends `killed`), then starts a new one.
#[test]
fn replace_kills_the_running_run_then_starts_the_new_one() {
    let d = Daemon::start_default();
    let m = MarkerGuard::new("replace");
    let id = unique_id("replace");
    d.create_job(&job(json!({
        "id": id,
        "command": ["sleep", "1000"],
        "env": m.env_json(),
        "concurrency": "replace",
        "kill_grace": "1s",
        "rules": [{ "schedule": "*/2 * * * * *" }],
    })));
    let runs = d.wait_for_runs(
        &id,
        Duration::from_secs(25),
        "a killed run followed by a started one",
        |rs| {
            rs.iter().any(|k| {
                k.status == RunStatus::Killed
                    && rs
                        .iter()
                        .any(|n| n.scheduled_at > k.scheduled_at && n.started_at.is_some())
            })
        },
    );
    let all = fmt_records(&runs);
    let killed = runs
        .iter()
        .find(|r| r.status == RunStatus::Killed)
        .expect("checked above");
    let next = runs
        .iter()
        .find(|n| n.scheduled_at > killed.scheduled_at && n.started_at.is_some())
        .expect("checked above");
    assert!(
        killed.started_at.is_some() && killed.finished_at.is_some(),
        "the replaced run had started and has ended:\n{all}"
    );
    assert!(
        next.started_at.expect("started") >= killed.finished_at.expect("finished"),
        "replace kills the old run first, then starts the new one:\n{all}"
    );
    assert!(
        !runs.iter().any(|r| r.status == RunStatus::Skipped),
        "replace never skips:\n{all}"
    );
    // Only the current run's sleep may be alive: at most one marker process.
    let alive = m.processes();
    assert!(
        alive.len() <= 1,
        "old runs' processes survived: {alive:?}\n{all}"
    );
}

/// `retries = 2`, `retry_delay = "1s"`, command `false`: three failed
/// attempts of one run id, the later two triggered `retry`, at least 1 s apart.
#[test]
fn retries_make_three_attempts_of_one_run_with_the_delay_between() {
    let d = Daemon::start_default();
    let id = unique_id("retry");
    let at = cronsun_tests::jobs::whole_seconds_from_now(3);
    d.create_job(&job(json!({
        "id": id,
        "command": ["false"],
        "retries": 2,
        "retry_delay": "1s",
        "rules": [{ "schedule": cronsun_tests::schedule_at(at) }],
    })));
    let runs = d.wait_for_runs(
        &id,
        Duration::from_secs(30),
        "three finished attempts",
        |rs| rs.iter().filter(|r| r.status.is_final()).count() >= 3,
    );
    let all = fmt_records(&runs);
    assert_eq!(runs.len(), 3, "exactly three attempts, no fourth:\n{all}");
    let run_id = &runs[0].run_id;
    assert_eq!(
        run_id,
        &cronsun_proto::ids::scheduled_run_id(&id, at, None),
        "the run of the scheduled instant:\n{all}"
    );
    for (i, r) in runs.iter().enumerate() {
        assert_eq!(&r.run_id, run_id, "one run id for all attempts:\n{all}");
        assert_eq!(r.attempt, i as u32 + 1, "attempts 1, 2, 3:\n{all}");
        assert_eq!(r.status, RunStatus::Failed, "{all}");
        assert_eq!(r.exit_code, Some(1), "`false` exits 1:\n{all}");
        assert_eq!(r.scheduled_at, at, "attempts keep the instant:\n{all}");
        let want = if i == 0 {
            Trigger::Schedule
        } else {
            Trigger::Retry
        };
        assert_eq!(r.trigger, want, "{all}");
    }
    for pair in runs.windows(2) {
        let prev_end = pair[0].finished_at.expect("finished");
        let next_start = pair[1].started_at.expect("started");
        let gap = next_start.as_millisecond() - prev_end.as_millisecond();
        assert!(
            gap >= 1000,
            "retry_delay of 1 s between attempts, got {gap} ms:\n{all}"
        );
    }
}

/// `cronsun run kill ID` ends a running run; it is recorded `killed` and
/// its processes are gone.
#[test]
fn run_killed_from_the_cli_is_recorded_killed() {
    let d = Daemon::start_default();
    let m = MarkerGuard::new("cli-kill");
    let id = unique_id("cli-kill");
    d.create_job(&job(json!({
        "id": id,
        "command": ["sleep", "1000"],
        "env": m.env_json(),
        "kill_grace": "2s",
        "rules": [{ "schedule": NEVER_SOON }],
    })));
    let run_id = d.run_now(&id);
    d.wait_for_status(&run_id, RunStatus::Running, Duration::from_secs(10));
    m.wait_present(1, Duration::from_secs(5), "the running sleep");
    d.cli(&["run", "kill", &run_id]).assert_success();
    let r = d.wait_for_status(&run_id, RunStatus::Killed, Duration::from_secs(15));
    m.assert_none_left(Duration::from_secs(2), "after the run was recorded killed");
    assert!(
        r.finished_at.is_some(),
        "{}",
        fmt_records(std::slice::from_ref(&r))
    );

    // Killing a finished run is refused (409), not a silent success.
    let again = d.api_post(
        &format!(
            "/api/v1/runs/{}/kill",
            cronsun_tests::daemon::encode_path(&run_id)
        ),
        &json!({}),
    );
    assert_eq!(again.status, 409, "kill of a finished run: {again}");
}

/// Output beyond `output_limit` keeps the first and last half of the limit
/// and counts every byte.
#[test]
fn output_over_the_limit_keeps_head_and_tail_and_the_true_byte_count() {
    let d = Daemon::start_default();
    let id = unique_id("big-output");
    const HEAD: &str = "BEGIN-OF-OUTPUT:";
    const TAIL: &str = ":END-OF-OUTPUT\n";
    let filler = 100_000 - HEAD.len() - TAIL.len();
    d.create_job(&job(json!({
        "id": id,
        "command": format!("printf '{HEAD}'; head -c {filler} /dev/zero | tr '\\0' x; printf ':END-OF-OUTPUT\\n'"),
        "shell": true,
        "output_limit": "1KiB",
        "rules": [{ "schedule": NEVER_SOON }],
    })));
    let run_id = d.run_now(&id);
    let r = d.wait_for_status(&run_id, RunStatus::Success, Duration::from_secs(20));
    let expected = format!("{HEAD}{}{TAIL}", "x".repeat(filler));
    let desc = format!(
        "output_bytes={} truncated={} head({})={:?}... tail({})=...{:?}",
        r.output_bytes,
        r.truncated,
        r.output_head.len(),
        &r.output_head.chars().take(40).collect::<String>(),
        r.output_tail.len(),
        &r.output_tail
            .chars()
            .rev()
            .take(40)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>(),
    );
    assert_eq!(r.output_bytes, 100_000, "the true byte count: {desc}");
    assert!(r.truncated, "{desc}");
    assert_eq!(
        r.output_head,
        expected[..512],
        "head = first 512 bytes: {desc}"
    );
    assert_eq!(
        r.output_tail,
        expected[expected.len() - 512..],
        "tail = last 512 bytes: {desc}"
    );
}
