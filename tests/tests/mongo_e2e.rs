//! The MongoDB run store end to end: a real cronsund, a real FerretDB
//! (MongoDB wire protocol), outages of both, and an independent client
//! (pymongo) reading back what was stored.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use cronsun_tests::ferret::{Ferret, StoredRun};
use cronsun_tests::{job, poll_until, unique_id, ConfigOverrides, Daemon, RunStatus};

const DB: &str = "cronsun";

fn mongo_config(uri: &str) -> ConfigOverrides {
    ConfigOverrides::new().extra_toml(&format!(
        "[mongodb]\nuri = \"{uri}\"\ndatabase = \"{DB}\"\nconnect_timeout = \"1s\"\nserver_selection_timeout = \"1s\"\n"
    ))
}

/// A value of the daemon's `/metrics`: the sum of that name's samples.
fn metric(d: &Daemon, name: &str) -> Option<f64> {
    let text = d.api_get("/metrics").expect_status(200).text();
    let samples: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == name || k.starts_with(&format!("{name}{{"))).then(|| v.trim().parse().ok())?
        })
        .collect();
    (!samples.is_empty()).then(|| samples.iter().sum())
}

#[track_caller]
fn wait_metric(d: &Daemon, name: &str, what: &str, pred: impl Fn(f64) -> bool) {
    let ok = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        metric(d, name).filter(|v| pred(*v))
    });
    assert!(
        ok.is_some(),
        "timed out waiting for {what} ({name} = {:?})\n{}",
        metric(d, name),
        d.logs()
    );
}

/// Every instant of the job from its first to its last record has exactly
/// one record, final, attempt 1; returns the records by instant.
#[track_caller]
fn assert_one_final_record_per_second(runs: &[StoredRun]) -> BTreeMap<i64, StoredRun> {
    let mut by_instant: BTreeMap<i64, Vec<&StoredRun>> = BTreeMap::new();
    for r in runs {
        by_instant.entry(r.scheduled_ms).or_default().push(r);
    }
    let dump = || format!("{runs:#?}");
    for (t, rs) in &by_instant {
        assert_eq!(rs.len(), 1, "instant {t} has {} records: {rs:?}", rs.len());
        let r = rs[0];
        assert_eq!(r.attempt, 1, "{r:?}");
        assert_ne!(r.status, "running", "not final: {r:?}");
    }
    let first = *by_instant.keys().next().expect("some records");
    let last = *by_instant.keys().last().expect("some records");
    let missing: Vec<i64> = (0..=(last - first) / 1000)
        .map(|i| first + i * 1000)
        .filter(|t| !by_instant.contains_key(t))
        .collect();
    assert!(
        missing.is_empty(),
        "instants without a record: {missing:?}\n{}",
        dump()
    );
    by_instant
        .into_iter()
        .map(|(t, v)| (t, v[0].clone()))
        .collect()
}

/// A per-second job through a 12 s MongoDB outage and then a SIGKILL of
/// cronsund with a non-empty spool: afterwards every instant has exactly one
/// final record in MongoDB, none duplicated, as pymongo reads them.
#[test]
fn outage_and_kill9_lose_and_duplicate_nothing() {
    let mut ferret = Ferret::start();
    let mut d = Daemon::start(mongo_config(&ferret.uri()));
    let id = unique_id("tick");
    d.create_job(&job(json!({
        "id": id, "command": ["true"], "rules": [{ "schedule": "* * * * * *" }],
        "missed": "all", "max_catchup": 100,
    })));
    d.wait_for_runs(&id, Duration::from_secs(20), "3 successes", |rs| {
        rs.iter().filter(|r| r.status == RunStatus::Success).count() >= 3
    });

    // MongoDB down for 12 s: runs go on, the spool grows.
    ferret.kill9();
    let before = metric(&d, "cronsun_runs_total").unwrap_or(0.0);
    std::thread::sleep(Duration::from_secs(12)); // the outage itself
    let during = metric(&d, "cronsun_runs_total").unwrap_or(0.0);
    assert!(
        during - before >= 8.0,
        "runs stopped during the outage: {before} -> {during}\n{}",
        d.logs()
    );
    assert!(metric(&d, "cronsun_spool_records").unwrap_or(0.0) >= 8.0);
    assert_eq!(metric(&d, "cronsun_run_store_up"), Some(0.0));
    assert!(
        d.logs().contains("MongoDB run store unavailable"),
        "{}",
        d.logs()
    );
    ferret.restart();
    wait_metric(&d, "cronsun_spool_records", "the spool to drain", |v| {
        v < 3.0
    });
    wait_metric(&d, "cronsun_run_store_up", "the store to be up", |v| {
        v == 1.0
    });

    // MongoDB down again, then cronsund SIGKILLed with a non-empty spool.
    ferret.kill9();
    wait_metric(&d, "cronsun_spool_records", "a non-empty spool", |v| {
        v >= 3.0
    });
    d.kill9();
    ferret.restart();
    d.restart();
    let restarted = jiff::Timestamp::now();
    let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        d.wait_for_runs(
            &id,
            Duration::from_secs(30),
            "3 successes scheduled after the restart",
            |rs| {
                rs.iter()
                    .filter(|r| r.status == RunStatus::Success && r.scheduled_at > restarted)
                    .count()
                    >= 3
            },
        )
    }));
    if let Err(p) = waited {
        eprintln!("FerretDB log:\n{}", ferret.log());
        std::panic::resume_unwind(p);
    }
    let paused = d.api_post(&format!("/api/v1/jobs/{id}/pause"), &json!({}));
    assert!(paused.status < 300, "pause: {paused}");
    wait_metric(&d, "cronsun_spool_records", "the spool to drain", |v| {
        v == 0.0
    });

    let runs = ferret.runs_of(DB, &id);
    let by_instant = assert_one_final_record_per_second(&runs);
    assert!(by_instant.len() >= 20, "{runs:#?}");
    let mut ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), runs.len(), "duplicated _id");
    assert!(by_instant.values().any(|r| r.status == "success"));
    d.stop();
}

/// Retries: one record per attempt, each final, as MongoDB holds them.
#[test]
fn retries_store_one_record_per_attempt() {
    let ferret = Ferret::start();
    let d = Daemon::start(mongo_config(&ferret.uri()));
    let id = unique_id("retry");
    d.create_job(&job(json!({
        "id": id, "command": ["false"], "rules": [{ "schedule": "0 0 1 1 *" }],
        "retries": 2, "retry_delay": "1s",
    })));
    let run = d.run_now(&id);
    poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        let rs = ferret.runs_of(DB, &id);
        (rs.len() == 3 && rs.iter().all(|r| r.status == "failed")).then_some(())
    })
    .unwrap_or_else(|| panic!("{:#?}\n{}", ferret.runs_of(DB, &id), d.logs()));
    let mut attempts: Vec<u32> = ferret
        .runs_of(DB, &id)
        .iter()
        .filter(|r| r.run_id == run.split('#').next().unwrap_or(&run))
        .map(|r| r.attempt)
        .collect();
    attempts.sort_unstable();
    assert_eq!(attempts, [1, 2, 3]);
}

/// An unreachable MongoDB at start: a clear error in the log, and jobs still
/// run (their records wait in the spool; the run detail reads it).
#[test]
fn unreachable_mongodb_at_start_still_runs_jobs() {
    let port = cronsun_tests::daemon::free_port();
    let d = Daemon::start(mongo_config(&format!("mongodb://127.0.0.1:{port}")));
    let id = unique_id("offline");
    d.create_job(&job(json!({
        "id": id, "command": ["echo", "hi"], "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run = d.run_now(&id);
    let rec = d.wait_for_status(&run, RunStatus::Success, Duration::from_secs(20));
    assert!(rec.output_head.contains("hi"), "{rec:?}");
    wait_metric(
        &d,
        "cronsun_spool_records",
        "the record to be spooled",
        |v| v >= 2.0,
    );
    let logs = d.logs();
    assert!(
        logs.contains("MongoDB run store unavailable")
            && logs.contains(&format!("127.0.0.1:{port}")),
        "{logs}"
    );
}

/// A non-loopback server without TLS is refused by `validate`, naming the key.
#[test]
fn remote_mongodb_without_tls_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[mongodb]\nuri = \"mongodb://db.example:27017\"\n").expect("write");
    let out = std::process::Command::new(cronsun_tests::bins::cronsund())
        .args(["validate", "--config"])
        .arg(&cfg)
        .output()
        .expect("run cronsund validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{err}");
    assert!(err.contains("mongodb.tls"), "{err}");
}
