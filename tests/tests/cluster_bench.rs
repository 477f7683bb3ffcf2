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

use cronsun_tests::cluster::Cluster;
use cronsun_tests::{poll_until, ConfigOverrides, Daemon};

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

/// A histogram's buckets summed over `nodes` (each node's own /metrics):
/// (upper bound in seconds, cumulative count).
fn buckets<'a>(nodes: impl IntoIterator<Item = &'a Daemon>, metric: &str) -> Vec<(f64, f64)> {
    let mut sum: BTreeMap<String, f64> = BTreeMap::new();
    let prefix = format!("{metric}_bucket{{le=\"");
    for d in nodes {
        let text = d.api_get("/metrics").text();
        for l in text.lines() {
            let Some(rest) = l.strip_prefix(prefix.as_str()) else {
                continue;
            };
            let Some((le, v)) = rest.split_once("\"} ") else {
                continue;
            };
            *sum.entry(le.to_string()).or_default() += v.trim().parse::<f64>().unwrap_or(0.0);
        }
    }
    let mut out: Vec<(f64, f64)> = sum
        .into_iter()
        .map(|(le, n)| (le.parse().unwrap_or(f64::INFINITY), n))
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

const FIRE: &str = "cronsun_fire_latency_seconds";
const CLAIM: &str = "cronsun_claim_latency_seconds";

/// The cluster's live nodes (all but `dead`).
fn live(c: &Cluster, dead: Option<usize>) -> impl Iterator<Item = &Daemon> {
    c.nodes
        .iter()
        .enumerate()
        .filter(move |(i, _)| Some(*i) != dead)
        .map(|(_, d)| d)
}

/// Percentiles (bucket upper bounds, ms) of the runs between two snapshots.
fn bucket_summary(name: &str, before: &[(f64, f64)], after: &[(f64, f64)]) {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0.0, |x| x.1);
            (*le, n - b)
        })
        .collect();
    let total = delta.last().map_or(0.0, |x| x.1);
    let at = |p: f64| {
        delta
            .iter()
            .find(|(_, n)| *n >= total * p)
            .map_or(f64::NAN, |(le, _)| le * 1000.0)
    };
    println!(
        "  {name}: n={total} p50≤{:.1} ms p90≤{:.1} ms p99≤{:.1} ms (histogram bucket bounds)",
        at(0.5),
        at(0.9),
        at(0.99)
    );
}

/// The sum of a metric's samples over every node (each node's own /metrics).
fn cluster_metric<'a>(nodes: impl IntoIterator<Item = &'a Daemon>, name: &str) -> f64 {
    nodes
        .into_iter()
        .map(|d| {
            let text = d.api_get("/metrics").text();
            text.lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| {
                    let (k, v) = l.rsplit_once(' ')?;
                    (k == name || k.starts_with(&format!("{name}{{")))
                        .then(|| v.parse::<f64>().ok())?
                })
                .sum::<f64>()
        })
        .sum()
}

/// `cronsun_jobs_loaded` of one node (its own /metrics).
fn jobs_loaded(d: &Daemon) -> f64 {
    let text = d.api_get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix("cronsun_jobs_loaded "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
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

/// `n` jobs `bench-NNNNN` running `true` every 10 s, through `d`'s API.
fn apply_bench_jobs(d: &Daemon, n: usize) {
    let jobs: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();
    for chunk in jobs.chunks(500) {
        let body = json!({ "jobs": chunk.iter().map(|id| json!({
            "id": id, "command": ["true"], "rules": [{ "schedule": "*/10 * * * * *" }],
        })).collect::<Vec<_>>() });
        d.api_post("/api/v1/jobs/apply", &body).expect_status(200);
    }
}

/// The same jobs on one standalone daemon (same machine, same processes
/// per burst): the floor the cluster's fire latency is compared with.
fn standalone_baseline(n: usize, rounds: i64) {
    let d = Daemon::start(ConfigOverrides::new());
    apply_bench_jobs(&d, n);
    let start = next_round(3);
    sleep_until(start - SignedDuration::from_millis(2000));
    let f0 = buckets([&d], FIRE);
    sleep_until(start + SignedDuration::from_secs(10 * rounds) - SignedDuration::from_millis(2000));
    let f1 = buckets([&d], FIRE);
    bucket_summary(
        &format!("standalone baseline, same {n} jobs on one node: fire latency"),
        &f0,
        &f1,
    );
}

#[test]
#[ignore = "benchmark: prints figures; run with --ignored --nocapture"]
fn cluster_benchmark() {
    let n: usize = std::env::var("CRONSUN_BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rounds: i64 = 6;
    // CRONSUN_BENCH_LEAD: `[etcd] lead` (default the daemon's).
    let lead = std::env::var("CRONSUN_BENCH_LEAD")
        .map(|l| format!("lead = \"{l}\""))
        .unwrap_or_default();
    let mut c = Cluster::start_with(3, &lead);
    apply_bench_jobs(&c.nodes[0], n);
    println!("cluster benchmark: 3 nodes, {n} `one` jobs every 10 s {lead}");

    // ---- steady state ------------------------------------------------------
    let start = next_round(5);
    sleep_until(start - SignedDuration::from_millis(2000));
    let rev0 = c
        .etcd
        .metric("etcd_debugging_mvcc_current_revision")
        .unwrap_or(0.0);
    let runs0 = cluster_metric(&c.nodes, "cronsun_runs_total");
    let fire0 = buckets(live(&c, None), FIRE);
    let claim0 = buckets(live(&c, None), CLAIM);
    let late0 = cluster_metric(&c.nodes, "cronsun_claims_late_total");
    let end = start + SignedDuration::from_secs(10 * rounds);
    sleep_until(end - SignedDuration::from_millis(2000));
    let rev1 = c
        .etcd
        .metric("etcd_debugging_mvcc_current_revision")
        .unwrap_or(0.0);
    let runs = (cluster_metric(&c.nodes, "cronsun_runs_total") - runs0) as usize;
    let fire1 = buckets(live(&c, None), FIRE);
    let claim1 = buckets(live(&c, None), CLAIM);
    let late = cluster_metric(&c.nodes, "cronsun_claims_late_total") - late0;

    println!(
        "  runs: {runs} of {} instants ({} rounds); etcd revisions {} → {}: {:.3} revisions per `one` run (claims + batched deletes)",
        n * rounds as usize,
        rounds,
        rev0,
        rev1,
        (rev1 - rev0) / runs.max(1) as f64
    );
    bucket_summary("fire latency (started − scheduled)", &fire0, &fire1);
    if std::env::var_os("CRONSUN_BENCH_LOGS").is_some() {
        println!("{}", c.nodes[0].logs());
    }
    bucket_summary(
        "claim latency (asked → answered, records durable; per chunk of up to 40 claims)",
        &claim0,
        &claim1,
    );
    println!("  claims answered after their instant: {late}");

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

    // ---- failover: a node dead, its instants taken by the next rank --------
    let fstart = next_round(3);
    sleep_until(fstart - SignedDuration::from_secs(1));
    c.nodes[2].kill9();
    let f0 = buckets(live(&c, Some(2)), FIRE);
    sleep_until(fstart + SignedDuration::from_secs(18));
    let f1 = buckets(live(&c, Some(2)), FIRE);
    bucket_summary(
        "fire latency, 2 rounds after kill -9 of a node (a third of the instants ranked it first)",
        &f0,
        &f1,
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
        "  etcd keys after {runs}+ runs: {} ({by_folder:?}) for {n} jobs",
        keys.len()
    );
    drop(c);
    standalone_baseline(n, 3);
}
