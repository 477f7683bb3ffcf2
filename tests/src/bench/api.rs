//! API latency: listing 10,000 jobs, and run search over 1,000,000 stored
//! records for each query shape, against `/healthz` on the same client.

use std::time::Duration;

use anyhow::Context as _;
use jiff::{SignedDuration, Timestamp};

use cronsun_proto::api::RunPage;
use cronsun_proto::{RunRecord, RunStatus};
use cronsun_tests::daemon::encode_query;
use cronsun_tests::Daemon;
use cronsund::store::sqlite::SqliteStore;

use super::api_client::Api;
use super::report::{Report, Row, Verdict};
use super::stats::{fmt_ratio, Dist, Summary};
use super::{jobs, Ctx};

/// The query string of the `i`th request of one shape.
type Query = Box<dyn Fn(usize) -> String>;

const SEARCH_P99_TARGET_NS: u64 = 50_000_000;
/// Jobs with records; the first of the 10,000 loaded jobs.
const RECORD_JOBS: usize = 1000;
const NODES: [&str; 5] = ["node-a", "node-b", "node-c", "node-d", "node-e"];
const SPAN: SignedDuration = SignedDuration::from_hours(30 * 24);
/// Records built and inserted per call, to bound the bench's memory.
const FILL_CHUNK: usize = 100_000;

pub fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let n_jobs = ctx.pick(10_000, 2_000);
    let n_records = ctx.pick(1_000_000, 50_000);
    let requests = ctx.pick(50, 10);

    let mut d = Daemon::start(ctx.config().set_str("retention", "max_age", "3650d").set(
        "retention",
        "max_runs_per_job",
        "100000",
    ));
    let now = Timestamp::now();
    Api::new(&d).apply(&jobs::rare(n_jobs, now)?)?;
    d.stop();
    let t = std::time::Instant::now();
    let inserted = fill(&d.state_dir().join("cronsun.db"), n_records, now)?;
    report.info(
        format!("fill: {n_records} records (bulk_insert_for_bench)"),
        format!("{inserted} inserted in {:.1?}", t.elapsed()),
    );
    d.restart();
    let api = Api::new(&d);

    let health = sample(requests, |_| api.timed_get("/healthz", 200).map(|r| r.0))?;
    report.add(Row {
        figure: "GET /healthz (baseline)".into(),
        value: health.to_string(),
        target: "—".into(),
        vs_baseline: String::new(),
        verdict: Verdict::Info,
    });

    let list = sample(requests, |_| {
        api.timed_get("/api/v1/jobs", 200).map(|r| r.0)
    })?;
    report.add(row(
        format!("GET /api/v1/jobs ({n_jobs} jobs)"),
        list,
        &health,
        None,
    ));

    let day = move |i: usize| now - SignedDuration::from_hours(24 * (1 + (i % 28) as i64));
    let shapes: [(&str, Query); 5] = [
        (
            "by job",
            Box::new(|i| format!("job={}", jobs::load_id((i * 37) % RECORD_JOBS))),
        ),
        ("by status (failed)", Box::new(|_| "status=failed".into())),
        (
            "by node",
            Box::new(|i| format!("node={}", NODES[i % NODES.len()])),
        ),
        (
            "by time range (1 day)",
            Box::new(move |i| {
                let since = day(i);
                format!(
                    "since={}&until={}",
                    encode_query(&since.to_string()),
                    encode_query(&(since + SignedDuration::from_hours(24)).to_string())
                )
            }),
        ),
        ("no filter", Box::new(|_| String::new())),
    ];
    for (name, query) in &shapes {
        let s = sample(requests, |i| {
            api.timed_get(&format!("/api/v1/runs?{}", query(i)), 200)
                .map(|r| r.0)
        })?;
        report.add(row(
            format!("search {name}, {n_records} records"),
            s,
            &health,
            Some(SEARCH_P99_TARGET_NS),
        ));
    }
    let by_node = &shapes[2].1;
    let s = sample(requests, |i| {
        let first: RunPage = api.get_json(&format!("/api/v1/runs?{}", by_node(i)))?;
        let cursor = first
            .next_cursor
            .context("the first page has no next_cursor")?;
        let path = format!(
            "/api/v1/runs?{}&cursor={}",
            by_node(i),
            encode_query(&cursor)
        );
        api.timed_get(&path, 200).map(|r| r.0)
    })?;
    report.add(row(
        format!("search 2nd page (cursor, by node), {n_records}"),
        s,
        &health,
        Some(SEARCH_P99_TARGET_NS),
    ));
    d.stop();

    report.note(format!(
        "api: wall time of each request on the bench's client (new loopback TCP connection per \
         request, body read fully), {requests} requests per figure, varying the parameter; \
         {n_records} records for {RECORD_JOBS} jobs × {} nodes, 30 days, 90 % success, filled \
         with SqliteStore::bulk_insert_for_bench before the daemon starts; page size 50 (default).",
        NODES.len()
    ));
    Ok(())
}

fn sample(
    n: usize,
    mut f: impl FnMut(usize) -> anyhow::Result<Duration>,
) -> anyhow::Result<Summary> {
    let mut d = Dist::new();
    for i in 0..n {
        d.record(f(i)?);
    }
    Ok(d.summary())
}

fn row(figure: String, s: Summary, health: &Summary, target_p99: Option<u64>) -> Row {
    Row {
        figure,
        value: s.to_string(),
        target: target_p99.map_or_else(|| "— (none set)".into(), |_| "p99 < 50 ms".into()),
        vs_baseline: format!("p99 {} healthz", fmt_ratio(s.p99_ratio(health))),
        verdict: target_p99.map_or(Verdict::Info, |t| Verdict::from_check(s.p99 < t)),
    }
}

/// Fills the stopped daemon's store with `n` terminal records spread over
/// the 30 days before `now`; returns how many were applied.
fn fill(db: &std::path::Path, n: usize, now: Timestamp) -> anyhow::Result<u64> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let store = SqliteStore::open(db).with_context(|| format!("opening {}", db.display()))?;
    let mut applied = 0;
    rt.block_on(async {
        for start in (0..n).step_by(FILL_CHUNK) {
            let chunk: Vec<RunRecord> = (start..n.min(start + FILL_CHUNK))
                .map(|i| record(i, n, now))
                .collect::<anyhow::Result<_>>()?;
            applied += store.bulk_insert_for_bench(chunk).await?;
        }
        store.close().await;
        anyhow::Ok(())
    })?;
    chown_like_parent(db)?;
    Ok(applied)
}

/// The store files get the owner of the state dir, in case the daemon's
/// agent runs as another user than the bench.
fn chown_like_parent(db: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let Some(dir) = db.parent() else {
        return Ok(());
    };
    let meta = std::fs::metadata(dir)?;
    for suffix in ["", "-wal", "-shm"] {
        let p = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
        if p.exists() {
            std::os::unix::fs::chown(&p, Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("chown {}", p.display()))?;
        }
    }
    Ok(())
}

/// Record `i` of `n`: job `i % 1000`, node by job, instants evenly over 30 days.
pub(super) fn record(i: usize, n: usize, now: Timestamp) -> anyhow::Result<RunRecord> {
    let job = jobs::load_id(i % RECORD_JOBS);
    let node = NODES[(i / RECORD_JOBS) % NODES.len()];
    let back = SPAN.as_nanos() * (n - i) as i128 / n as i128;
    let at = Timestamp::from_second(now.as_second() - i64::try_from(back / 1_000_000_000)?)?;
    let status = match i % 100 {
        0..=5 => RunStatus::Failed,
        6 => RunStatus::Timeout,
        7 => RunStatus::Skipped,
        8 => RunStatus::Missed,
        9 => RunStatus::Killed,
        _ => RunStatus::Success,
    };
    let ran = !matches!(status, RunStatus::Skipped | RunStatus::Missed);
    let run_id = cronsun_proto::ids::scheduled_run_id(&job, at, Some(node));
    Ok(RunRecord {
        job_revision: 1,
        hostname: format!("{node}.example.org"),
        node_id: node.to_string(),
        started_at: ran.then_some(at),
        finished_at: Some(at),
        duration_ms: ran.then_some(1200),
        exit_code: ran.then(|| i32::from(status != RunStatus::Success)),
        argv: vec!["/usr/local/bin/backup".into(), "--all".into()],
        run_as: "backup".into(),
        env_keys: vec!["PATH".into(), "HOME".into()],
        output_head: "x".repeat(200),
        output_bytes: 200,
        peak_memory: Some(10_000_000),
        cpu_ms: Some(800),
        io_bytes: Some(4096),
        oom_kills: Some(0),
        peak_pids: Some(3),
        ..RunRecord::new(run_id, 1, &job, at, status)
    })
}
