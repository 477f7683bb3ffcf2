//! A daemon killed with SIGKILL and restarted on the same state dir: runs
//! in flight are `lost`, finished records survive, missed instants follow
//! the job's `missed` policy.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use cronsun_tests::{
    fmt_records, job, unique_id, ConfigOverrides, Daemon, MarkerGuard, RunStatus, Trigger,
};

/// SIGKILL of the daemon (and, as on a host crash, of everything it ran)
/// during a run; after a restart that run is `lost` and every record that
/// was visible before the crash is still there, unchanged.
#[test]
fn kill9_during_a_run_then_restart_records_it_lost_and_loses_nothing_else() {
    let mut d = Daemon::start_default();
    let m = MarkerGuard::new("lost");
    let quick = unique_id("quick");
    let ticking = unique_id("ticking");
    let long = unique_id("long");
    d.create_job(&job(json!({
        "id": quick, "command": ["true"], "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    d.create_job(&job(json!({
        "id": ticking, "command": ["true"], "rules": [{ "schedule": "* * * * * *" }],
    })));
    d.create_job(&job(json!({
        "id": long,
        "command": ["sleep", "1000"],
        "env": m.env_json(),
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let q1 = d.run_now(&quick);
    d.wait_for_status(&q1, RunStatus::Success, Duration::from_secs(15));
    let q2 = d.run_now(&quick);
    d.wait_for_status(&q2, RunStatus::Success, Duration::from_secs(15));
    d.wait_for_runs(&ticking, Duration::from_secs(15), "3 finished runs", |rs| {
        rs.iter().filter(|r| r.status == RunStatus::Success).count() >= 3
    });
    let victim = d.run_now(&long);
    d.wait_for_status(&victim, RunStatus::Running, Duration::from_secs(10));
    m.wait_present(1, Duration::from_secs(5), "the long run's sleep");

    let before: Vec<_> = [&quick, &ticking]
        .iter()
        .flat_map(|j| d.runs(j))
        .filter(|r| r.status.is_final())
        .collect();
    d.kill9();
    m.assert_none_left(Duration::from_secs(5), "after SIGKILL of the daemon's tree");
    d.restart();

    let lost = d.wait_for_status(&victim, RunStatus::Lost, Duration::from_secs(30));
    assert_eq!(
        lost.attempt,
        1,
        "{}",
        fmt_records(std::slice::from_ref(&lost))
    );

    let after: BTreeMap<String, _> = [&quick, &ticking]
        .iter()
        .flat_map(|j| d.runs(j))
        .map(|r| (r.record_id(), r))
        .collect();
    let mut missing = Vec::new();
    for r in &before {
        match after.get(&r.record_id()) {
            Some(a) if a.status == r.status && a.finished_at == r.finished_at => {}
            _ => missing.push(r.clone()),
        }
    }
    assert!(
        missing.is_empty(),
        "records finished before the crash are missing or changed after the restart:\n{}\nafter:\n{}",
        fmt_records(&missing),
        fmt_records(&after.values().cloned().collect::<Vec<_>>())
    );
    let long_runs = d.runs(&long);
    assert_eq!(
        long_runs.len(),
        1,
        "the lost run is neither retried nor duplicated (on_lost = record):\n{}",
        fmt_records(&long_runs)
    );
}

/// `missed = "once"`: instants that passed their `start_deadline` while the
/// daemon was down are each recorded `missed`, and exactly one catch-up run
/// follows the restart.
#[test]
fn downtime_with_missed_once_records_missed_instants_and_runs_one_catchup() {
    let mut d = Daemon::start_default();
    let id = unique_id("catchup");
    d.create_job(&job(json!({
        "id": id,
        "command": ["true"],
        "missed": "once",
        "start_deadline": "1s",
        "rules": [{ "schedule": "*/2 * * * * *" }],
    })));
    let before = d.wait_for_runs(&id, Duration::from_secs(15), "2 successful runs", |rs| {
        rs.iter().filter(|r| r.status == RunStatus::Success).count() >= 2
    });
    let last_seen = before
        .iter()
        .map(|r| r.scheduled_at)
        .max()
        .expect("runs were seen");
    d.kill9();
    let down_at = Timestamp::now();
    // The downtime is the scenario under test (instants pass while no daemon
    // runs), not a synchronisation: nothing can be awaited here.
    std::thread::sleep(Duration::from_secs(7));
    d.restart();
    let up_at = Timestamp::now();

    let runs = d.wait_for_runs(
        &id,
        Duration::from_secs(30),
        "a finished catch-up run and a scheduled run after the restart",
        |rs| {
            rs.iter()
                .any(|r| r.trigger == Trigger::Catchup && r.status.is_final())
                && rs.iter().any(|r| {
                    r.trigger == Trigger::Schedule && r.scheduled_at > up_at && r.status.is_final()
                })
        },
    );
    let all = fmt_records(&runs);
    let catchups: Vec<_> = runs
        .iter()
        .filter(|r| r.trigger == Trigger::Catchup)
        .collect();
    assert_eq!(catchups.len(), 1, "exactly one catch-up run:\n{all}");
    assert_eq!(catchups[0].status, RunStatus::Success, "{all}");
    assert!(
        catchups[0].scheduled_at > last_seen && catchups[0].scheduled_at < up_at,
        "the catch-up stands for an instant of the downtime:\n{all}"
    );

    // Every instant after the last one seen and more than start_deadline
    // before the restart is recorded exactly once besides the catch-up; those
    // that came after the kill are `missed`.
    let two = jiff::SignedDuration::from_secs(2);
    let one = jiff::SignedDuration::from_secs(1);
    let surely_down = down_at.checked_add(one).expect("in range");
    let mut t = last_seen.checked_add(two).expect("in range");
    let mut missed = 0;
    while t.checked_add(one).expect("in range") < up_at {
        let at_t: Vec<_> = runs
            .iter()
            .filter(|r| r.scheduled_at == t && r.trigger != Trigger::Catchup)
            .collect();
        assert_eq!(
            at_t.len(),
            1,
            "instant {t} (down at {down_at}, up at {up_at}) needs exactly one record:\n{all}"
        );
        if t > surely_down {
            assert_eq!(
                at_t[0].status,
                RunStatus::Missed,
                "instant {t} passed while down (down at {down_at}, up at {up_at}):\n{all}"
            );
        }
        missed += usize::from(at_t[0].status == RunStatus::Missed);
        t = t.checked_add(two).expect("in range");
    }
    assert!(
        missed >= 2,
        "a 7 s downtime misses at least 2 two-second instants:\n{all}"
    );
    assert!(
        !runs.iter().any(|r| r.status == RunStatus::Missed
            && (r.scheduled_at <= last_seen || r.scheduled_at > up_at)),
        "nothing outside the downtime is missed:\n{all}"
    );
    let mut seen = std::collections::BTreeSet::new();
    for r in &runs {
        assert!(
            seen.insert(r.record_id()),
            "duplicate record {}:\n{all}",
            r.record_id()
        );
    }
}

/// The daemon dies (fault point, debug builds) right after starting a run,
/// while the run's process lives on in its own session and cgroup. At the
/// restart the executor finds it by its recorded identity (pid, start time,
/// boot id), kills it, and the run is recorded `lost`; the one-shot instant
/// is never started again.
#[test]
fn dying_right_after_a_spawn_leaves_no_orphan_after_restart() {
    let mut d = Daemon::start(ConfigOverrides::new().env("CRONSUN_FAULTS", "die_after_spawn"));
    let m = MarkerGuard::new("orphan");
    let id = unique_id("orphan");
    let at = cronsun_tests::jobs::whole_seconds_from_now(2);
    d.create_job(&job(json!({
        "id": id,
        "command": ["sleep", "1000"],
        "env": m.env_json(),
        "rules": [{ "schedule": format!("@at {at}") }],
    })));
    let status = d
        .wait_exit(Duration::from_secs(20))
        .expect("the daemon aborts at the fault point");
    assert!(!status.success(), "aborted, not a clean exit: {status}");
    m.wait_present(1, Duration::from_secs(5), "the run outlives its daemon");

    d.clear_env();
    d.restart();
    let runs = d.wait_for_runs(
        &id,
        Duration::from_secs(20),
        "the run recorded lost",
        |rs| rs.iter().any(|r| r.status == RunStatus::Lost),
    );
    m.assert_none_left(Duration::from_secs(10), "the leftover is killed at restart");
    assert_eq!(
        runs.len(),
        1,
        "the instant is never started again:\n{}",
        fmt_records(&runs)
    );
    let reason = runs[0].reason.clone().unwrap_or_default();
    assert!(
        reason.contains("killed"),
        "the record says the leftover was killed: {reason}"
    );
}
