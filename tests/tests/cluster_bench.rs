//! Cluster benchmark (issue 5), printed, never asserted: three nodes, one
//! etcd, one FerretDB, `CRONSUN_BENCH_JOBS` (default 1000) `one` jobs every
//! 10 s. Prints etcd revisions per `one` run (etcd's own counter), fire
//! latency, failover latency with the first-ranked node dead, job-edit
//! propagation and the number of keys.
//!
//! Run: `cargo build --release --bins && CRONSUN_TEST_BIN_DIR=target/release
//! cargo test -p cronsun-tests --test cluster_bench -- --ignored --nocapture`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use cronsun_proto::api::RunPage;
use cronsun_tests::cluster::{wait_for, Cluster};
use cronsun_tests::daemon::encode_query;
use cronsun_tests::{poll_until, Daemon, RunRecord};
use cronsund::store::etcd::keys::rank;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut v: Vec<f64>) {
    v.sort_by(f64::total_cmp);
    println!(
        "  {name}: n={} p50={:.2} ms p99={:.2} ms max={:.2} ms",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    );
}

/// Every record scheduled in `[since, until)`, all jobs.
fn records(d: &Daemon, since: Timestamp, until: Timestamp) -> Vec<RunRecord> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..1000 {
        let mut path = format!(
            "/api/v1/runs?since={}&until={}&limit=1000",
            encode_query(&since.to_string()),
            encode_query(&until.to_string())
        );
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", encode_query(c)));
        }
        let page: RunPage = d.api_get(&path).expect_status(200).json();
        out.extend(page.runs);
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    out
}

/// `cronsun_jobs_loaded` of one node (its own /metrics).
fn jobs_loaded(d: &Daemon) -> f64 {
    let text = d.api_get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("cronsun_jobs_loaded "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

fn latency_ms(r: &RunRecord) -> Option<f64> {
    Some(r.started_at?.duration_since(r.scheduled_at).as_secs_f64() * 1000.0)
}

/// The next instant that is a multiple of 10 s, at least `margin` away.
fn next_round(margin: i64) -> Timestamp {
    let s = Timestamp::now().as_second() + margin;
    Timestamp::from_second((s / 10 + 1) * 10).expect("in range")
}

fn sleep_until(t: Timestamp) {
    let d = t.duration_since(Timestamp::now());
    if d > SignedDuration::ZERO {
        std::thread::sleep(d.unsigned_abs());
    }
}

#[test]
#[ignore = "benchmark: prints figures; run with --ignored --nocapture"]
fn cluster_benchmark() {
    let n: usize = std::env::var("CRONSUN_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: i64 = 6;
    let mut c = Cluster::start(3);
    let ids: Vec<String> = c.nodes.iter().map(|d| d.node_id().to_string()).collect();
    let jobs: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();
    for chunk in jobs.chunks(500) {
        let body = json!({ "jobs": chunk.iter().map(|id| json!({
            "id": id, "command": ["true"], "rules": [{ "schedule": "*/10 * * * * *" }],
        })).collect::<Vec<_>>() });
        c.nodes[0]
            .api_post("/api/v1/jobs/apply", &body)
            .expect_status(200);
    }
    println!("cluster benchmark: 3 nodes, {n} `one` jobs every 10 s");

    // ---- steady state ------------------------------------------------------
    let start = next_round(5);
    sleep_until(start - SignedDuration::from_millis(500));
    let rev0 = c
        .etcd
        .metric("etcd_debugging_mvcc_current_revision")
        .unwrap_or(0.0);
    let end = start + SignedDuration::from_secs(10 * rounds);
    sleep_until(end - SignedDuration::from_millis(500));
    let rev1 = c
        .etcd
        .metric("etcd_debugging_mvcc_current_revision")
        .unwrap_or(0.0);
    // Let the last runs finish and ship.
    wait_for(Duration::from_secs(60), || {
        records(&c.nodes[0], start, end)
            .iter()
            .filter(|r| r.status.is_final())
            .count()
            >= n * rounds as usize
    });
    let recs = records(&c.nodes[0], start, end);
    let runs = recs.len();
    println!(
        "  runs: {runs} of {} instants ({} rounds); etcd revisions {} → {}: {:.3} revisions per `one` run (claims + batched deletes)",
        n * rounds as usize,
        rounds,
        rev0,
        rev1,
        (rev1 - rev0) / runs.max(1) as f64
    );
    let per_node: BTreeMap<&str, usize> = recs.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.node_id.as_str()).or_default() += 1;
        m
    });
    println!("  runs per node: {per_node:?}");
    summary(
        "fire latency (started − scheduled)",
        recs.iter().filter_map(latency_ms).collect(),
    );

    // ---- job-change propagation ----------------------------------------------
    // From the API call (through node 0, proxied to the leader) until every
    // node's scheduler holds the new job (its own /metrics, served locally).
    let mut prop = Vec::new();
    for i in 0..20 {
        let id = format!("prop-{i:03}");
        let t0 = Instant::now();
        c.nodes[0]
            .api_post(
                "/api/v1/jobs",
                &json!({ "id": id, "command": ["true"], "rules": [{ "schedule": "0 0 1 1 *" }] }),
            )
            .expect_status(201);
        for d in &c.nodes {
            let want = (n + i + 1) as f64;
            let seen = poll_until(Duration::from_secs(10), Duration::from_millis(2), || {
                (jobs_loaded(d) >= want).then_some(())
            })
            .is_some();
            assert!(seen, "job {id} never reached {}", d.node_id());
        }
        prop.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    summary("job create → scheduled on all 3 nodes", prop);

    // ---- failover: the first-ranked node dead -------------------------------
    let dead = ids[2].clone();
    let fstart = next_round(3);
    sleep_until(fstart - SignedDuration::from_secs(1));
    c.nodes[2].kill9();
    let fend = fstart + SignedDuration::from_secs(20);
    sleep_until(fend);
    wait_for(Duration::from_secs(30), || {
        records(&c.nodes[0], fstart, fend)
            .iter()
            .filter(|r| r.status.is_final())
            .count()
            >= n * 2
    });
    let frecs = records(&c.nodes[0], fstart, fend);
    let taken_over: Vec<f64> = frecs
        .iter()
        .filter(|r| {
            rank(
                &r.job_id,
                r.scheduled_at,
                &dead,
                ids.iter().map(String::as_str),
            ) == Some(0)
        })
        .filter_map(latency_ms)
        .collect();
    println!(
        "  failover: {} runs in 2 rounds after kill -9 of a node, {} of them ranked the dead node first",
        frecs.len(),
        taken_over.len()
    );
    summary(
        "start latency of instants whose first-ranked node was dead",
        taken_over,
    );

    // ---- keys ----------------------------------------------------------------
    let keys = c.etcd.keys(&c.prefix);
    let mut by_folder: BTreeMap<String, usize> = BTreeMap::new();
    for k in &keys {
        let folder = k
            .strip_prefix(&c.prefix)
            .and_then(|r| r.split('/').next())
            .unwrap_or("?")
            .to_string();
        *by_folder.entry(folder).or_default() += 1;
    }
    println!(
        "  etcd keys after {} runs: {} ({by_folder:?}) for {n} jobs",
        runs + frecs.len(),
        keys.len()
    );
}
