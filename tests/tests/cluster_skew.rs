//! The clock-health gate against peers (DESIGN §3), with real processes: of
//! three nodes on one real etcd, one runs with its clock 2 s ahead
//! (`CRONSUN_TEST_CLOCK_OFFSET`, a debug-build switch), more than
//! `max_skew` (500 ms). It measures its offset to the others through etcd,
//! says so (node record, `cronsun node ls`, `/metrics`, an alert in its
//! log) and claims nothing: every instant of a per-second `one` job runs
//! exactly once, on one of the other two.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::json;

use cronsun_tests::cluster::{wait_for, Cluster, Ledger};
use cronsun_tests::{fmt_records, unique_id, RunStatus};

/// The value of a gauge in a `/metrics` text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

fn instant(t: &str) -> jiff::Timestamp {
    t.parse()
        .unwrap_or_else(|e| panic!("ledger instant {t:?}: {e}"))
}

#[test]
fn a_node_whose_clock_is_ahead_by_more_than_max_skew_claims_nothing() {
    let mut c = Cluster::start_with(2, "max_skew = \"500ms\"");
    let skewed = c.add_node(|cfg| cfg.env("CRONSUN_TEST_CLOCK_OFFSET", "2s"));
    let skewed_id = c.nodes[skewed].node_id().to_string();
    let healthy: BTreeSet<String> = c.nodes[..2]
        .iter()
        .map(|d| d.node_id().to_string())
        .collect();

    // The skewed node measures itself out of the ranking and says why.
    let key = format!("{}node/{skewed_id}", c.prefix);
    let mut record = serde_json::Value::Null;
    let measured = wait_for(Duration::from_secs(20), || {
        record = c
            .etcd
            .value(&key)
            .and_then(|v| serde_json::from_str(&v).ok())
            .unwrap_or_default();
        record["clock_ok"] == json!(false)
            && record["clock_problem"]
                .as_str()
                .is_some_and(|p| p.contains("clock offset"))
    });
    assert!(
        measured,
        "the skewed node's record does not say its clock is off: {record}\n{}",
        c.nodes[skewed].logs()
    );
    let offset_ms = record["clock_offset_ms"].as_i64().unwrap_or_default();
    assert!(
        (1500..=2500).contains(&offset_ms),
        "measured offset {offset_ms} ms, expected about +2000: {record}"
    );
    let metrics = c.nodes[skewed].api_get("/metrics").text();
    assert_eq!(
        gauge(&metrics, "cronsun_clock_healthy"),
        Some(0.0),
        "{metrics}"
    );
    let off = gauge(&metrics, "cronsun_clock_offset_seconds").unwrap_or_default();
    assert!(
        (1.5..=2.5).contains(&off),
        "cronsun_clock_offset_seconds {off}"
    );
    assert!(
        c.nodes[skewed].logs().contains("clock unhealthy"),
        "no alert in the skewed node's log\n{}",
        c.nodes[skewed].logs()
    );
    // The healthy nodes are healthy, with offsets well under max_skew.
    let mut healthy_offsets = Vec::new();
    for d in &c.nodes[..2] {
        let m = d.api_get("/metrics").text();
        assert_eq!(gauge(&m, "cronsun_clock_healthy"), Some(1.0), "{m}");
        let o = gauge(&m, "cronsun_clock_offset_seconds").unwrap_or(f64::NAN);
        assert!(o.abs() < 0.5, "{}: offset {o}", d.node_id());
        healthy_offsets.push(o);
    }
    eprintln!(
        "clock offsets measured through etcd: skewed node {off:+.3} s (injected +2 s), \
         healthy nodes {healthy_offsets:?} s"
    );
    let ls = c.nodes[0].cli(&["node", "ls"]);
    ls.assert_success();
    let line = ls
        .stdout
        .lines()
        .find(|l| l.contains(&skewed_id))
        .unwrap_or_default();
    assert!(line.contains("clock unhealthy"), "{}", ls.stdout);

    // A per-second `one` job: every instant exactly once, never on it.
    let ledger = Ledger::new();
    let tick = unique_id("tick");
    c.nodes[0].create_job(&ledger.job(&tick, "tick", "one", "* * * * * *"));
    const INSTANTS: usize = 12;
    assert!(
        wait_for(Duration::from_secs(40), || ledger.by_instant("tick").len()
            >= INSTANTS),
        "the `one` job did not run {INSTANTS} instants: {:?}\n{}",
        ledger.starts("tick"),
        c.logs()
    );
    let by_instant = ledger.by_instant("tick");
    for (t, starts) in &by_instant {
        assert_eq!(
            starts.len(),
            1,
            "instant {t} started {} times: {starts:?}",
            starts.len()
        );
        assert!(
            healthy.contains(&starts[0].node),
            "instant {t} ran on {} (the skewed node is {skewed_id})",
            starts[0].node
        );
    }
    // Exactly one final record per instant that ran, none from the skewed node.
    let recs = c.nodes[1].wait_for_runs(&tick, Duration::from_secs(15), "final records", |r| {
        by_instant.keys().all(|t| {
            r.iter()
                .any(|r| r.scheduled_at == instant(t) && r.status.is_final())
        })
    });
    for t in by_instant.keys() {
        let of_t: Vec<_> = recs
            .iter()
            .filter(|r| r.scheduled_at == instant(t))
            .collect();
        assert_eq!(of_t.len(), 1, "instant {t}:\n{}", fmt_records(&recs));
        assert_eq!(of_t[0].status, RunStatus::Success, "{}", fmt_records(&recs));
    }
    assert!(
        recs.iter().all(|r| healthy.contains(&r.node_id)),
        "a record names the skewed node {skewed_id}:\n{}",
        fmt_records(&recs)
    );
}

/// A test clock offset that does not parse stops the daemon at start
/// (exit 78) naming the variable and the value, before anything runs.
#[test]
fn an_unparsable_test_clock_offset_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], cronsun_tests::daemon::free_port()));
    let text = cronsun_tests::ConfigOverrides::new().render(
        "skew-refused",
        &dir.path().join("state"),
        listen,
        &dir.path().join("api.sock"),
    );
    let path = dir.path().join("cronsun.toml");
    std::fs::write(&path, text).expect("write config");
    let out = cronsun_tests::run_cli(
        &cronsun_tests::bins::cronsund(),
        &["--config", &path.to_string_lossy()],
        &[("CRONSUN_TEST_CLOCK_OFFSET", "soon")],
        Duration::from_secs(20),
    );
    assert_eq!(out.status.code(), Some(78), "{out}");
    assert!(
        out.stderr.contains("CRONSUN_TEST_CLOCK_OFFSET") && out.stderr.contains("soon"),
        "{}",
        out.stderr
    );
}
