//! Load and search timings over 1 000 000 records. Ignored by default; run:
//! `cargo test -p cronsund --lib store::sqlite::bench -- --ignored --nocapture`
//! (numbers are printed, never asserted).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use cronsun_proto::api::RunQuery;
use cronsun_proto::{RunRecord, RunStatus};
use jiff::Timestamp;

use super::SqliteStore;
use crate::store::RunStore;

const RECORDS: usize = 1_000_000;
const JOBS: usize = 200;
const NODES: usize = 50;

fn record(i: usize) -> RunRecord {
    let job = format!("job-{:03}", i % JOBS);
    let node = format!("node-{:02}", (i / JOBS) % NODES);
    let at = Timestamp::from_second(1_700_000_000 + (i / JOBS) as i64 * 60).unwrap();
    let status = match (i % 1000, i % 37) {
        (7, _) => RunStatus::Running,
        (_, 0) => RunStatus::Failed,
        _ => RunStatus::Success,
    };
    let run_id = cronsun_proto::ids::scheduled_run_id(&job, at, None);
    RunRecord {
        job_revision: 3,
        hostname: format!("{node}.example.org"),
        node_id: node,
        started_at: Some(at),
        finished_at: status.is_final().then_some(at),
        duration_ms: Some(1200),
        exit_code: Some(i32::from(status == RunStatus::Failed)),
        argv: vec!["/usr/local/bin/backup".into(), "--all".into()],
        run_as: "backup".into(),
        env_keys: vec!["PATH".into(), "HOME".into()],
        output_head: "x".repeat(256),
        output_bytes: 256,
        peak_memory: Some(10_000_000),
        cpu_ms: Some(800),
        io_bytes: Some(4096),
        oom_kills: Some(0),
        peak_pids: Some(3),
        fence: Some(i as u64),
        ..RunRecord::new(run_id, 1, &job, at, status)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: loads 1M records"]
async fn million_records() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.db");
    let store = SqliteStore::open(&path).unwrap();

    // How much of the load is building and encoding records (not SQLite).
    let t = Instant::now();
    let bytes: usize = (0..100_000)
        .map(|i| serde_json::to_string(&record(i)).unwrap().len())
        .sum();
    println!(
        "build+encode 100000 records: {:.1?} ({} MiB JSON)",
        t.elapsed(),
        bytes >> 20
    );

    let t = Instant::now();
    for start in (0..RECORDS).step_by(100_000) {
        let batch: Vec<_> = (start..start + 100_000).map(record).collect();
        store.bulk_insert_for_bench(batch).await.unwrap();
    }
    let load = t.elapsed();
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "load: {RECORDS} records in {load:.1?} ({:.0} records/s), file {} MiB",
        RECORDS as f64 / load.as_secs_f64(),
        size >> 20
    );

    let t = Instant::now();
    let n = 2000;
    let mut tasks = Vec::new();
    let store = std::sync::Arc::new(store);
    for i in 0..n {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.write(record(RECORDS + i)).await.unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    println!(
        "concurrent single writes: {n} in {:.1?} ({:.0}/s)",
        t.elapsed(),
        n as f64 / t.elapsed().as_secs_f64()
    );

    type Shape = (&'static str, fn(usize) -> RunQuery);
    let shapes: [Shape; 7] = [
        ("none", |_| RunQuery::default()),
        ("job", |i| RunQuery {
            job: Some(format!("job-{:03}", i % JOBS)),
            ..Default::default()
        }),
        ("node", |i| RunQuery {
            node: Some(format!("node-{:02}", i % NODES)),
            ..Default::default()
        }),
        ("status=failed", |_| RunQuery {
            status: Some(RunStatus::Failed),
            ..Default::default()
        }),
        ("job+status=failed", |i| RunQuery {
            job: Some(format!("job-{:03}", i % JOBS)),
            status: Some(RunStatus::Failed),
            ..Default::default()
        }),
        ("job+node", |i| RunQuery {
            job: Some(format!("job-{:03}", i % JOBS)),
            node: Some(format!("node-{:02}", i % NODES)),
            ..Default::default()
        }),
        ("node+status=running", |i| RunQuery {
            node: Some(format!("node-{:02}", i % NODES)),
            status: Some(RunStatus::Running),
            ..Default::default()
        }),
    ];
    for (name, make) in shapes {
        let mut times = Vec::new();
        for i in 0..300 {
            let mut q = make(i);
            let t = Instant::now();
            let page = store.search(&q).await.unwrap();
            times.push(t.elapsed());
            // And a deep page through the cursor.
            if let Some(c) = page.next_cursor {
                q.cursor = Some(c);
                let t = Instant::now();
                store.search(&q).await.unwrap();
                times.push(t.elapsed());
            }
        }
        times.sort_unstable();
        println!(
            "search {name:>20}: n={} p50 {:.2?} p99 {:.2?} max {:.2?}",
            times.len(),
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            times[times.len() - 1]
        );
    }
    let t = Instant::now();
    let latest = store.latest_per_job().await.unwrap();
    println!(
        "latest_per_job: {} jobs in {:.2?}",
        latest.len(),
        t.elapsed()
    );
    let t = Instant::now();
    let running = store.running_on("node-07").await.unwrap();
    println!(
        "running_on: {} records in {:.2?}",
        running.len(),
        t.elapsed()
    );
}
