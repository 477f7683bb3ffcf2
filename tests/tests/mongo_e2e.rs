//! The MongoDB run store end to end: a real cronsund, a real FerretDB
//! (MongoDB wire protocol), outages of both, and an independent client
//! (pymongo) reading back what was stored.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use cronsun_tests::ferret::{Ferret, FerretOptions, StoredRun};
use cronsun_tests::{job, poll_until, unique_id, ConfigOverrides, Daemon, RunStatus};

const DB: &str = "cronsun";

fn mongo_config(uri: &str) -> ConfigOverrides {
    mongo_config_with(uri, "")
}

/// `[mongodb]` for `uri` plus more keys of that section.
fn mongo_config_with(uri: &str, more: &str) -> ConfigOverrides {
    ConfigOverrides::new().extra_toml(&format!(
        "[mongodb]\nuri = \"{uri}\"\ndatabase = \"{DB}\"\nconnect_timeout = \"1s\"\nserver_selection_timeout = \"1s\"\n{more}"
    ))
}

/// A value of one labelled sample of the daemon's `/metrics`.
fn metric_labelled(d: &Daemon, name: &str, label: &str) -> f64 {
    let text = d.api_get("/metrics").expect_status(200).text();
    let key = format!("{name}{{{label}}}");
    text.lines()
        .find_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            (k == key).then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0.0)
}

/// A temp dir every user may write (the agent runs jobs unprivileged).
fn shared_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    dir
}

fn lines_of(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
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

/// A full spool while MongoDB is down sheds as DESIGN §3 says: output of the
/// oldest records first (digest kept), then whole successful `all` records,
/// never failures; every drop is counted, and once MongoDB is back the rest
/// arrives: each failure, and each success minus exactly the dropped ones.
#[test]
fn full_spool_sheds_output_first_never_failures() {
    let port = cronsun_tests::daemon::free_port();
    let uri = format!("mongodb://127.0.0.1:{port}");
    let d = Daemon::start(mongo_config_with(&uri, "spool_max_records = 8\n"));
    let log = shared_dir();
    let ok_log = log.path().join("ok");
    let bad_log = log.path().join("bad");
    let ok = unique_id("shed-ok");
    let bad = unique_id("shed-bad");
    let body = "x".repeat(2000);
    d.create_job(&job(json!({
        "id": ok, "kind": "all", "rules": [{ "schedule": "* * * * * *" }],
        "command": ["sh", "-c", format!("echo $CRONSUN_RUN_ID >> {}; echo {body}", ok_log.display())],
    })));
    d.create_job(&job(json!({
        "id": bad, "rules": [{ "schedule": "* * * * * *" }],
        "command": ["sh", "-c", format!("echo $CRONSUN_RUN_ID >> {}; echo {body}; exit 3", bad_log.display())],
    })));
    let dropped = poll_until(Duration::from_secs(60), Duration::from_millis(200), || {
        let n = metric_labelled(&d, "cronsun_spool_drops_total", "reason=\"success_all\"");
        (n >= 3.0).then_some(n)
    });
    assert!(
        dropped.is_some(),
        "no successful record was dropped\n{}",
        d.logs()
    );
    assert!(metric_labelled(&d, "cronsun_spool_drops_total", "reason=\"output\"") >= 1.0);
    assert!(metric(&d, "cronsun_spool_bytes").unwrap_or(0.0) > 0.0);
    assert!(metric(&d, "cronsun_ship_errors_total").unwrap_or(0.0) >= 1.0);
    assert_eq!(metric(&d, "cronsun_run_store_up"), Some(0.0));
    for j in [&ok, &bad] {
        let r = d.api_post(&format!("/api/v1/jobs/{j}/pause"), &json!({}));
        assert!(r.status < 300, "pause: {r}");
    }
    // Let runs started before the pause finish and be spooled.
    wait_metric(&d, "cronsun_running_runs", "no run in progress", |v| {
        v == 0.0
    });

    let ferret = Ferret::start_with(FerretOptions {
        port: Some(port),
        ..FerretOptions::default()
    });
    wait_metric(&d, "cronsun_spool_records", "the spool to drain", |v| {
        v == 0.0
    });
    assert_eq!(metric(&d, "cronsun_run_store_up"), Some(1.0));
    assert!(metric(&d, "cronsun_ship_latency_seconds_count").unwrap_or(0.0) >= 1.0);
    let dropped = metric_labelled(&d, "cronsun_spool_drops_total", "reason=\"success_all\"");

    let failures = ferret.runs_of(DB, &bad);
    let bad_runs = lines_of(&bad_log);
    assert_eq!(
        failures.len(),
        bad_runs.len(),
        "a failure was lost: {failures:#?}"
    );
    assert!(
        failures.iter().all(|r| r.status == "failed"),
        "{failures:#?}"
    );
    let successes = ferret.runs_of(DB, &ok);
    let ok_runs = lines_of(&ok_log);
    assert_eq!(
        successes.len() as f64 + dropped,
        ok_runs.len() as f64,
        "successes stored + dropped != runs\n{successes:#?}"
    );
    assert!(
        successes.iter().all(|r| r.status == "success"),
        "{successes:#?}"
    );
    let shed: Vec<&StoredRun> = failures
        .iter()
        .chain(&successes)
        .filter(|r| r.output_digest.is_some())
        .collect();
    assert!(!shed.is_empty(), "no record has a digest for shed output");
    assert!(shed.iter().all(|r| r.output_head.is_empty()), "{shed:#?}");
}

/// A failing state disk (the spool cannot be written): `/healthz` says
/// unhealthy (503) and why, no run starts; when the disk recovers, both do.
#[test]
fn failing_spool_makes_the_node_unhealthy_and_stops_runs() {
    let faults = shared_dir();
    let fault_file = faults.path().join("faults");
    std::fs::write(&fault_file, "").expect("write the faults file");
    let port = cronsun_tests::daemon::free_port();
    let d = Daemon::start(
        mongo_config(&format!("mongodb://127.0.0.1:{port}"))
            .env("CRONSUN_FAULTS_FILE", &fault_file.display().to_string()),
    );
    let id = unique_id("disk");
    d.create_job(&job(json!({
        "id": id, "command": ["true"], "rules": [{ "schedule": "* * * * * *" }],
    })));
    wait_metric(&d, "cronsun_runs_total", "a run", |v| v >= 1.0);
    assert_eq!(d.anonymous_get("/healthz").status, 200);

    std::fs::write(&fault_file, "spool_write").expect("switch the fault on");
    let sick = poll_until(Duration::from_secs(20), Duration::from_millis(100), || {
        let r = d.anonymous_get("/healthz");
        (r.status == 503).then_some(r)
    })
    .unwrap_or_else(|| panic!("/healthz stayed healthy\n{}", d.logs()));
    let h: serde_json::Value = sick.json();
    assert_eq!(h["status"], "unhealthy", "{h}");
    assert!(
        h["problems"][0].as_str().unwrap_or("").contains("spool"),
        "{h}"
    );
    assert!(d.logs().contains("cannot take writes"), "{}", d.logs());
    // Runs that started before the fault may still finish; then none starts.
    wait_metric(&d, "cronsun_running_runs", "no run in progress", |v| {
        v == 0.0
    });
    let before = metric(&d, "cronsun_runs_total").unwrap_or(0.0);
    let started = poll_until(Duration::from_secs(3), Duration::from_millis(200), || {
        (metric(&d, "cronsun_runs_total").unwrap_or(0.0) > before).then_some(())
    });
    assert!(
        started.is_none(),
        "a run started while the spool failed\n{}",
        d.logs()
    );

    std::fs::write(&fault_file, "").expect("switch the fault off");
    let healthy = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
        (d.anonymous_get("/healthz").status == 200).then_some(())
    });
    assert!(healthy.is_some(), "/healthz did not recover\n{}", d.logs());
    wait_metric(&d, "cronsun_runs_total", "runs again", |v| v > before);
}

/// A MongoDB that refuses the credentials at start: a clear error naming the
/// server (never the password), and jobs still run (spooled). (A successful
/// login cannot be tested here: FerretDB 1.24 answers SCRAM's final step
/// with `done: false` although the driver asked to skip the empty exchange,
/// which the Rust driver rejects; see ARCHITECTURE.)
#[test]
fn refused_auth_names_the_server_and_jobs_still_run() {
    let ferret = Ferret::start_with(FerretOptions {
        auth: Some(("alice".into(), "s3cret-pw".into())),
        ..FerretOptions::default()
    });
    let wrong = format!(
        "mongodb://alice:WRONG-pw@127.0.0.1:{}/?authSource=admin",
        ferret.port()
    );
    let d = Daemon::start(mongo_config(&wrong));
    let id = unique_id("auth");
    d.create_job(&job(json!({
        "id": id, "command": ["echo", "hi"], "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run = d.run_now(&id);
    d.wait_for_status(&run, RunStatus::Success, Duration::from_secs(20));
    wait_metric(
        &d,
        "cronsun_spool_records",
        "the records to wait in the spool",
        |v| v >= 2.0,
    );
    let logs = d.logs();
    assert!(
        logs.contains("MongoDB run store unavailable")
            && logs.contains(&format!("alice:***@127.0.0.1:{}", ferret.port()))
            && logs.contains("refused the credentials")
            && logs.contains("Authentication failed"),
        "{logs}"
    );
    assert!(
        !logs.contains("WRONG-pw"),
        "the password was logged:\n{logs}"
    );
    assert!(ferret.runs_of(DB, &id).is_empty());
}

/// `GET /api/v1/stats/daily` from MongoDB's `stats_daily` and from SQLite
/// (standalone): today's counts by status and duration percentiles,
/// zero-filled days before, for one job and for all.
#[test]
fn daily_stats_api_from_mongodb_and_sqlite() {
    let ferret = Ferret::start();
    for d in [
        Daemon::start(mongo_config(&ferret.uri())),
        Daemon::start_default(),
    ] {
        let ok = unique_id("stats-ok");
        let bad = unique_id("stats-bad");
        for (id, cmd) in [(&ok, "true"), (&bad, "false")] {
            d.create_job(&job(json!({
                "id": id, "command": [cmd], "rules": [{ "schedule": "0 0 1 1 *" }],
            })));
        }
        for j in [&ok, &ok, &bad] {
            let run = d.run_now(j);
            d.wait_for_final(&run, Duration::from_secs(20));
        }
        let want_days = 3;
        let stats = poll_until(Duration::from_secs(30), Duration::from_millis(200), || {
            let v: serde_json::Value = d
                .api_get(&format!("/api/v1/stats/daily?days={want_days}"))
                .expect_status(200)
                .json();
            (v["days"][2]["runs"].as_u64() >= Some(3)).then_some(v)
        })
        .unwrap_or_else(|| panic!("stats never counted the runs\n{}", d.logs()));
        let days = stats["days"].as_array().expect("days");
        assert_eq!(days.len(), want_days, "{stats}");
        assert_eq!(
            days[2]["day"],
            jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
        );
        assert_eq!(days[0]["runs"], 0, "{stats}");
        assert_eq!(days[0]["duration_ms"], serde_json::Value::Null, "{stats}");
        let today = &days[2];
        assert_eq!(
            (today["succeeded"].as_u64(), today["failed"].as_u64()),
            (Some(2), Some(1)),
            "{stats}"
        );
        let p = &today["duration_ms"];
        assert!(p["p50"].as_u64() <= p["p99"].as_u64(), "{stats}");

        let one: serde_json::Value = d
            .api_get(&format!("/api/v1/stats/daily?days=1&job={bad}"))
            .expect_status(200)
            .json();
        assert_eq!(one["days"][0]["runs"], 1, "{one}");
        assert_eq!(one["days"][0]["failed"], 1, "{one}");
        let r = d.api_get("/api/v1/stats/daily?days=0");
        assert_eq!(r.status, 400, "{r}");
        assert!(r.text().contains("days"), "{r}");
    }
}
