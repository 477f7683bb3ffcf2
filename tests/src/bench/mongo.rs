//! `--only mongo`: the MongoDB run store against a real server (FerretDB
//! started here, or `CRONSUN_BENCH_MONGODB_URI`).
//!
//! - Write path: records per second stored through the whole path
//!   (`RunStore::write` → durable spool → shipper batches → server), next to
//!   the raw driver's `insert_many` of the same documents in the same run
//!   (baseline; target ≥ 80 % of it and ≥ 2,000 records/s).
//! - Search: run-search latency (`RunStore::search`, the API's query) over
//!   a collection of `--mongo-records` records (default 1,000,000) filled
//!   with the raw driver, with the store's indexes; target p99 < 50 ms.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use cronsun_proto::api::RunQuery;
use cronsun_proto::{RunRecord, RunStatus};
use cronsund::config::MongoSection;
use cronsund::metrics::Metrics;
use cronsund::store::mongo::{run_document, MongoRunStore};
use cronsund::store::{Retention, RunStore, SqliteStore};
use jiff::Timestamp;
use mongodb::bson::Document;
use tokio::sync::watch;

use cronsun_tests::ferret::Ferret;

use super::report::{Report, Row, Verdict};
use super::stats::{fmt_ratio, Dist};
use super::Ctx;

const WRITE_RATE_TARGET: f64 = 2000.0;
const WRITE_RATIO_TARGET: f64 = 0.8;
const SEARCH_P99_TARGET_NS: u64 = 50_000_000;
/// Concurrent writers through the store (like the scheduler's concurrent
/// terminal writes, which the spool group-commits).
const WRITERS: usize = 64;
const INSERT_BATCH: usize = 1000;

pub fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ferret;
    let uri = match std::env::var("CRONSUN_BENCH_MONGODB_URI") {
        Ok(u) => u,
        Err(_) => {
            ferret = Ferret::start();
            ferret.uri()
        }
    };
    let writes = ctx.pick(20_000, 2_000);
    let search_n = ctx.mongo_records.unwrap_or(ctx.pick(1_000_000, 20_000));
    // On a server that scans (FerretDB 1.24's SQLite backend), one query
    // over 1,000,000 records takes minutes: fewer samples then.
    let queries = ctx.pick(
        match search_n {
            500_000.. => 1,
            100_000.. => 2,
            _ => 10,
        },
        3,
    );
    rt.block_on(async {
        write_path(ctx, report, &uri, writes).await?;
        search(ctx, report, &uri, search_n, queries).await
    })?;
    report.note(format!(
        "mongo: server {}; write path: {writes} final records of 1000 jobs (~600 B documents \
         with 200 B output) written by {WRITERS} concurrent tasks through MongoRunStore::write \
         (durable spool, fsync) until the spool is empty, batch_size 1000; baseline: the raw \
         driver's unordered insert_many of the same documents in batches of {INSERT_BATCH} into \
         an empty collection of the same server. Search: {search_n} records filled by \
         insert_many, the store's indexes, {queries} queries per shape, MongoRunStore::search.",
        if std::env::var("CRONSUN_BENCH_MONGODB_URI").is_ok() {
            "CRONSUN_BENCH_MONGODB_URI"
        } else {
            "FerretDB 1.24.2 (SQLite backend) on loopback"
        }
    ));
    Ok(())
}

fn section(uri: &str, db: &str) -> anyhow::Result<MongoSection> {
    serde_json::from_value(serde_json::json!({
        "uri": uri, "database": db, "connect_timeout": "5s", "server_selection_timeout": "5s",
    }))
    .context("mongodb section")
}

struct Store {
    store: Arc<MongoRunStore>,
    stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start_store(ctx: &Ctx, uri: &str, db: &str) -> anyhow::Result<Store> {
    let dir = tempfile::Builder::new()
        .prefix("spool-")
        .tempdir_in(ctx.work.path())?;
    let spool = Arc::new(SqliteStore::open(&dir.path().join("cronsun.db"))?);
    let (stop, rx) = watch::channel(false);
    let store = MongoRunStore::start(
        spool,
        &section(uri, db)?,
        Retention {
            max_age: None,
            max_per_job: None,
        },
        Metrics::new(),
        rx,
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    Ok(Store {
        store,
        stop,
        _dir: dir,
    })
}

impl Store {
    async fn stop(self) {
        let _ = self.stop.send(true);
        self.store.stopped().await;
    }

    /// Waits until the store created its indexes (the shipper does it once
    /// the server answers).
    async fn indexes_ready(&self) -> anyhow::Result<()> {
        let want = cronsund::store::mongo::indexes()
            .iter()
            .filter(|(c, _)| *c == "runs")
            .count();
        for _ in 0..1200 {
            let names = self
                .store
                .database()
                .collection::<Document>("runs")
                .list_index_names()
                .await
                .unwrap_or_default();
            if names.len() > want {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the store did not create its indexes within 60 s")
    }
}

fn records(n: usize, now: Timestamp) -> anyhow::Result<Vec<RunRecord>> {
    (0..n).map(|i| super::api::record(i, n, now)).collect()
}

async fn write_path(ctx: &Ctx, report: &mut Report, uri: &str, n: usize) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let recs = records(n, now)?;

    // Baseline: the raw driver, same documents, empty collection.
    let client = cronsund::store::mongo::client(&section(uri, "bench_raw")?)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let raw = client.database("bench_raw").collection::<Document>("runs");
    let _ = raw.drop().await;
    let docs: Vec<Document> = recs
        .iter()
        .map(|r| run_document(r, None))
        .collect::<Result<_, _>>()?;
    let t = Instant::now();
    for chunk in docs.chunks(INSERT_BATCH) {
        raw.insert_many(chunk.to_vec())
            .ordered(false)
            .await
            .context("raw insert_many")?;
    }
    let raw_rate = n as f64 / t.elapsed().as_secs_f64();

    // The whole path.
    let s = start_store(ctx, uri, "bench_path").await?;
    s.indexes_ready().await?;
    let t = Instant::now();
    let per = n.div_ceil(WRITERS);
    let mut tasks = Vec::new();
    for chunk in recs.chunks(per) {
        let store = s.store.clone();
        let chunk = chunk.to_vec();
        tasks.push(tokio::spawn(async move {
            for r in chunk {
                store.write(r).await?;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let spooled = t.elapsed();
    let mut shipped = false;
    for _ in 0..600_000 {
        if s.store.spool_depth().await? == 0 {
            shipped = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if !shipped {
        bail!("the spool did not drain");
    }
    let elapsed = t.elapsed();
    let stored = s
        .store
        .database()
        .collection::<Document>("runs")
        .estimated_document_count()
        .await?;
    s.stop().await;
    if stored != n as u64 {
        bail!("{stored} of {n} records stored");
    }
    let rate = n as f64 / elapsed.as_secs_f64();
    let ratio = rate / raw_rate;
    report.add(Row {
        figure: "mongo: records stored/s (spool → batch → server)".into(),
        value: format!("{rate:.0}/s ({n} in {elapsed:.1?}; spooled in {spooled:.1?})"),
        target: format!("≥ {WRITE_RATE_TARGET:.0}/s and ≥ 80 % of raw"),
        vs_baseline: format!(
            "{} raw insert_many ({raw_rate:.0}/s)",
            fmt_ratio(Some(ratio))
        ),
        verdict: Verdict::from_check(rate >= WRITE_RATE_TARGET && ratio >= WRITE_RATIO_TARGET),
    });
    Ok(())
}

async fn search(
    ctx: &Ctx,
    report: &mut Report,
    uri: &str,
    n: usize,
    queries: usize,
) -> anyhow::Result<()> {
    let now = Timestamp::now();
    let s = start_store(ctx, uri, "bench_search").await?;
    s.indexes_ready().await?;
    let runs = s.store.database().collection::<Document>("runs");
    let have = runs.estimated_document_count().await?;
    let t = Instant::now();
    if have != n as u64 {
        runs.delete_many(mongodb::bson::doc! {}).await?;
        for start in (0..n).step_by(INSERT_BATCH) {
            let docs: Vec<Document> = (start..n.min(start + INSERT_BATCH))
                .map(|i| Ok(run_document(&super::api::record(i, n, now)?, None)?))
                .collect::<anyhow::Result<_>>()?;
            runs.insert_many(docs).ordered(false).await?;
        }
    }
    println!("   filled {n} records in {:.0?}", t.elapsed());
    let job = super::jobs::load_id(7);
    let shapes: [(&str, RunQuery); 4] = [
        ("newest page", RunQuery::default()),
        (
            "one job",
            RunQuery {
                job: Some(job.clone()),
                ..RunQuery::default()
            },
        ),
        (
            "failed runs",
            RunQuery {
                status: Some(RunStatus::Failed),
                ..RunQuery::default()
            },
        ),
        (
            "one job, page 2",
            RunQuery {
                job: Some(job),
                ..RunQuery::default()
            },
        ),
    ];
    for (name, q) in shapes {
        let mut q = q;
        if name.ends_with("page 2") {
            q.cursor = s.store.search(&q).await?.next_cursor;
        }
        let mut d = Dist::new();
        for _ in 0..queries {
            let t = Instant::now();
            let page = s.store.search(&q).await?;
            d.record(t.elapsed());
            if page.runs.is_empty() {
                bail!("search {name} returned nothing");
            }
        }
        let sum = d.summary();
        report.add(Row {
            figure: format!("mongo: search {name} ({n} records)"),
            value: sum.to_string(),
            target: "p99 < 50 ms".into(),
            vs_baseline: "—".into(),
            verdict: Verdict::from_check(sum.p99 < SEARCH_P99_TARGET_NS),
        });
    }
    s.stop().await;
    Ok(())
}
