//! Tests of the SQLite store on real files in temporary directories.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use cronsun_proto::api::{GlobalPause, RunQuery};
use cronsun_proto::{Job, RunRecord, RunStatus};
use jiff::Timestamp;
use tempfile::TempDir;

use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cronsun.db")).unwrap();
    (dir, store)
}

fn job(id: &str) -> Job {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "command": ["true"],
        "rules": [{"schedule": "@hourly"}],
    }))
    .unwrap()
}

/// A record of `job` scheduled `minute` minutes after a fixed origin.
fn record(job: &str, node: &str, minute: i64, status: RunStatus) -> RunRecord {
    let at = Timestamp::from_second(1_774_400_000 + minute * 60).unwrap();
    RunRecord {
        job_revision: 1,
        node_id: node.into(),
        hostname: node.into(),
        started_at: Some(at),
        finished_at: status.is_final().then_some(at),
        argv: vec!["true".into()],
        run_as: "nobody".into(),
        output_head: format!("head of {job} {minute}"),
        output_tail: "tail".into(),
        output_bytes: 10,
        ..RunRecord::new(
            cronsun_proto::ids::scheduled_run_id(job, at, Some(node)),
            1,
            job,
            at,
            status,
        )
    }
}

fn with_status(mut r: RunRecord, status: RunStatus) -> RunRecord {
    r.status = status;
    r.seq = status.seq();
    r
}

#[tokio::test]
async fn seq_orders_writes_of_a_run() {
    let (_d, s) = open();
    let running = record("j", "n1", 0, RunStatus::Running);
    let id = running.record_id();
    assert!(s.write(running.clone()).await.unwrap());
    // Replay of the same write is not applied.
    assert!(!s.write(running.clone()).await.unwrap());
    // Lost, then a late success: both apply (the success is newer).
    assert!(s
        .write(with_status(running.clone(), RunStatus::Lost))
        .await
        .unwrap());
    assert!(s
        .write(with_status(running.clone(), RunStatus::Success))
        .await
        .unwrap());
    // A late `running` after the terminal record does nothing.
    assert!(!s.write(running.clone()).await.unwrap());
    assert!(!s
        .write(with_status(running.clone(), RunStatus::Lost))
        .await
        .unwrap());
    let got = s.get(&id).await.unwrap().unwrap();
    assert_eq!(got.status, RunStatus::Success);
    assert_eq!(got.output_head, running.output_head, "get returns output");
    assert_eq!(got, with_status(running, RunStatus::Success));
}

#[tokio::test]
async fn get_by_run_id_returns_latest_attempt() {
    let (_d, s) = open();
    let first = record("j", "n1", 0, RunStatus::Failed);
    let mut second = first.clone();
    second.attempt = 2;
    let mut tenth = first.clone();
    tenth.attempt = 10;
    for r in [first.clone(), tenth.clone(), second] {
        s.write(r).await.unwrap();
    }
    // A run id that is a prefix of another must not pick up its records.
    let mut other = first.clone();
    other.run_id = format!("{}x", first.run_id);
    other.attempt = 99;
    s.write(other).await.unwrap();
    assert_eq!(s.get(&first.run_id).await.unwrap().unwrap().attempt, 10);
    assert_eq!(s.get(&first.record_id()).await.unwrap().unwrap().attempt, 1);
    assert!(s.get("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn put_job_revisions_and_conflicts() {
    let (_d, s) = open();
    // Sub-millisecond parts survive: watermarks compare at full precision.
    let t0 = ts("2026-03-25T03:00:00.123456789Z");
    let t1 = ts("2026-03-25T04:00:00Z");
    let a = s.put_job(job("a"), Expect::Absent, t0).await.unwrap();
    assert!(a.revision > 0);
    assert_eq!(a.created_at, Some(t0));
    assert_eq!(
        s.watermark("a").await.unwrap(),
        Some(t0),
        "watermark starts at now"
    );
    assert!(matches!(
        s.put_job(job("a"), Expect::Absent, t1).await,
        Err(StoreError::Exists(id)) if id == "a"
    ));
    assert!(matches!(
        s.put_job(job("a"), Expect::Revision(a.revision + 7), t1).await,
        Err(StoreError::Conflict { current, .. }) if current == a.revision
    ));
    assert!(matches!(
        s.put_job(job("b"), Expect::Revision(1), t1).await,
        Err(StoreError::NotFound(_))
    ));
    let b = s.put_job(job("b"), Expect::Any, t1).await.unwrap();
    assert!(b.revision > a.revision);
    let a2 = s
        .put_job(job("a"), Expect::Revision(a.revision), t1)
        .await
        .unwrap();
    assert!(a2.revision > b.revision, "revision is store-wide");
    assert_eq!(a2.created_at, Some(t0));
    assert_eq!(a2.updated_at, Some(t1));
    assert_eq!(
        s.watermark("a").await.unwrap(),
        Some(t0),
        "update keeps watermark"
    );
    assert_eq!(s.get_job("a").await.unwrap(), Some(a2.clone()));
    let ids: Vec<_> = s
        .list_jobs()
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(ids, ["a", "b"]);

    assert!(matches!(
        s.delete_job("a", Expect::Revision(a.revision)).await,
        Err(StoreError::Conflict { .. })
    ));
    s.delete_job("a", Expect::Revision(a2.revision))
        .await
        .unwrap();
    assert!(s.get_job("a").await.unwrap().is_none());
    assert!(s.watermark("a").await.unwrap().is_none());
    assert!(matches!(
        s.delete_job("a", Expect::Any).await,
        Err(StoreError::NotFound(_))
    ));
    // Recreated: a fresh, higher revision.
    let a3 = s.put_job(job("a"), Expect::Absent, t1).await.unwrap();
    assert!(a3.revision > a2.revision);
}

#[tokio::test]
async fn put_jobs_is_all_or_nothing() {
    let (_d, s) = open();
    let now = ts("2026-03-25T03:00:00Z");
    s.put_job(job("taken"), Expect::Absent, now).await.unwrap();
    let mut rx = s.subscribe();
    let err = s
        .put_jobs(
            vec![
                (job("x"), Expect::Absent),
                (job("y"), Expect::Any),
                (job("taken"), Expect::Absent),
            ],
            now,
        )
        .await;
    assert!(matches!(err, Err(StoreError::Exists(id)) if id == "taken"));
    assert!(s.get_job("x").await.unwrap().is_none());
    assert!(s.get_job("y").await.unwrap().is_none());
    assert!(rx.try_recv().is_err(), "no events for a failed batch");
    let ok = s
        .put_jobs(
            vec![(job("x"), Expect::Absent), (job("y"), Expect::Absent)],
            now,
        )
        .await
        .unwrap();
    assert_eq!(ok.len(), 2);
    assert_eq!(s.list_jobs().await.unwrap().len(), 3);
}

#[tokio::test]
async fn events_follow_commit_order() {
    let (_d, s) = open();
    let now = ts("2026-03-25T03:00:00Z");
    let mut rx = s.subscribe();
    // Concurrent writers: whatever order they commit in, events match it.
    let mut tasks = Vec::new();
    let s = std::sync::Arc::new(s);
    for i in 0..50 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.put_job(job(&format!("j{i}")), Expect::Absent, now)
                .await
                .unwrap()
        }));
    }
    let mut revs = Vec::new();
    for t in tasks {
        revs.push(t.await.unwrap().revision);
    }
    s.delete_job("j0", Expect::Any).await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..50 {
        match rx.recv().await.unwrap() {
            JobEvent::Put(j) => seen.push(j.revision),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        seen.windows(2).all(|w| w[0] < w[1]),
        "commit order: {seen:?}"
    );
    revs.sort_unstable();
    assert_eq!(seen, revs);
    assert_eq!(rx.recv().await.unwrap(), JobEvent::Deleted("j0".into()));
}

#[tokio::test]
async fn claim_semantics() {
    let (_d, s) = open();
    let created = ts("2026-03-25T03:00:00Z");
    let j = s.put_job(job("c"), Expect::Absent, created).await.unwrap();
    let req = |minute: i64, rev: u64| {
        let rec = record("c", "n1", minute, RunStatus::Running);
        ClaimRequest {
            job_id: "c".into(),
            job_revision: rev,
            instant: rec.scheduled_at,
            record: rec,
        }
    };
    // 1_774_400_000 s is before `created`: already decided.
    let before = req(0, j.revision);
    assert_eq!(
        s.claim(before).await.unwrap(),
        ClaimOutcome::Decided { watermark: created }
    );
    let base = (created.as_second() - 1_774_400_000) / 60;
    let first = req(base + 1, j.revision);
    let ClaimOutcome::Won {
        fence: f1,
        previous,
    } = s.claim(first.clone()).await.unwrap()
    else {
        panic!("first claim must win");
    };
    assert_eq!(previous, Some(created));
    let stored = s.get(&first.record.record_id()).await.unwrap().unwrap();
    assert_eq!(stored.fence, Some(f1), "the record carries the fence");
    assert_eq!(s.watermark("c").await.unwrap(), Some(first.instant));
    // Same instant again: decided.
    assert_eq!(
        s.claim(first.clone()).await.unwrap(),
        ClaimOutcome::Decided {
            watermark: first.instant
        }
    );
    let second = req(base + 5, j.revision);
    let ClaimOutcome::Won {
        fence: f2,
        previous,
    } = s.claim(second.clone()).await.unwrap()
    else {
        panic!("second claim must win");
    };
    assert!(f2 > f1, "fences strictly increase");
    assert_eq!(previous, Some(first.instant));
    // Stale revision, then a deleted job.
    assert_eq!(
        s.claim(req(base + 9, j.revision + 100)).await.unwrap(),
        ClaimOutcome::JobChanged
    );
    let j2 = s.put_job(job("c"), Expect::Any, created).await.unwrap();
    assert_eq!(
        s.claim(req(base + 9, j.revision)).await.unwrap(),
        ClaimOutcome::JobChanged
    );
    assert!(matches!(
        s.claim(req(base + 9, j2.revision)).await.unwrap(),
        ClaimOutcome::Won { fence, .. } if fence > f2 && fence > j2.revision
    ));
    // set_watermark moves it back unconditionally (resume).
    s.set_watermark("c", created).await.unwrap();
    assert_eq!(s.watermark("c").await.unwrap(), Some(created));
    s.delete_job("c", Expect::Any).await.unwrap();
    assert_eq!(
        s.claim(req(base + 20, j2.revision)).await.unwrap(),
        ClaimOutcome::JobChanged
    );
    assert!(matches!(
        s.set_watermark("c", created).await,
        Err(StoreError::NotFound(_))
    ));
}

#[tokio::test]
async fn concurrent_claims_of_one_instant_have_one_winner() {
    let (_d, s) = open();
    let created = ts("2026-03-25T03:00:00Z");
    let j = s.put_job(job("c"), Expect::Absent, created).await.unwrap();
    let s = std::sync::Arc::new(s);
    let instant = ts("2026-03-25T03:01:00Z");
    let mut tasks = Vec::new();
    for n in 0..20 {
        let s = s.clone();
        let mut rec = record("c", &format!("n{n}"), 0, RunStatus::Running);
        rec.scheduled_at = instant;
        tasks.push(tokio::spawn(async move {
            s.claim(ClaimRequest {
                job_id: "c".into(),
                job_revision: j.revision,
                instant,
                record: rec,
            })
            .await
            .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), ClaimOutcome::Won { .. }) {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test]
async fn global_pause_and_meta() {
    let (_d, s) = open();
    assert_eq!(s.global_pause().await.unwrap(), GlobalPause::default());
    let p = GlobalPause {
        paused: true,
        reason: Some("maintenance".into()),
        since: Some(ts("2026-03-25T03:00:00Z")),
    };
    s.set_global_pause(p.clone()).await.unwrap();
    assert_eq!(s.global_pause().await.unwrap(), p);
    assert_eq!(s.meta_get("node_id").await.unwrap(), None);
    s.meta_put("node_id", "web-1").await.unwrap();
    s.meta_put("node_id", "web-2").await.unwrap();
    assert_eq!(
        s.meta_get("node_id").await.unwrap().as_deref(),
        Some("web-2")
    );
}

/// 3 jobs × 2 nodes × 20 minutes, statuses cycling.
async fn fill(s: &SqliteStore) -> Vec<RunRecord> {
    let statuses = [RunStatus::Success, RunStatus::Failed, RunStatus::Running];
    let mut all = Vec::new();
    for minute in 0..20 {
        for (j, job) in ["a", "b", "c"].iter().enumerate() {
            for node in ["n1", "n2"] {
                let st = statuses[(minute as usize + j) % 3];
                all.push(record(job, node, minute, st));
            }
        }
    }
    assert_eq!(s.bulk_insert_for_bench(all.clone()).await.unwrap(), 120);
    all
}

fn newest_first(mut v: Vec<RunRecord>) -> Vec<String> {
    v.sort_by_key(|r| std::cmp::Reverse((r.scheduled_at, r.record_id())));
    v.iter().map(RunRecord::record_id).collect()
}

async fn all_pages(s: &SqliteStore, mut q: RunQuery) -> Vec<RunRecord> {
    let mut out = Vec::new();
    loop {
        let page = s.search(&q).await.unwrap();
        assert!(page.runs.len() <= q.limit.unwrap_or(50) as usize);
        out.extend(page.runs);
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return out,
        }
    }
}

#[tokio::test]
async fn search_filters_and_pages() {
    let (_d, s) = open();
    let all = fill(&s).await;
    let since = all[30].scheduled_at;
    let until = all[90].scheduled_at;
    type Keep = Box<dyn Fn(&RunRecord) -> bool>;
    let cases: Vec<(RunQuery, Keep)> = vec![
        (RunQuery::default(), Box::new(|_| true)),
        (
            RunQuery {
                job: Some("b".into()),
                ..Default::default()
            },
            Box::new(|r| r.job_id == "b"),
        ),
        (
            RunQuery {
                node: Some("n2".into()),
                ..Default::default()
            },
            Box::new(|r| r.node_id == "n2"),
        ),
        (
            RunQuery {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
            Box::new(|r| r.status == RunStatus::Failed),
        ),
        (
            RunQuery {
                job: Some("a".into()),
                node: Some("n1".into()),
                status: Some(RunStatus::Success),
                ..Default::default()
            },
            Box::new(|r| r.job_id == "a" && r.node_id == "n1" && r.status == RunStatus::Success),
        ),
        (
            RunQuery {
                since: Some(since),
                until: Some(until),
                ..Default::default()
            },
            Box::new(move |r| r.scheduled_at >= since && r.scheduled_at < until),
        ),
    ];
    for (q, keep) in cases {
        let want = newest_first(all.iter().filter(|r| keep(r)).cloned().collect());
        assert!(!want.is_empty(), "{q:?}");
        for limit in [1, 7, 50] {
            let got = all_pages(
                &s,
                RunQuery {
                    limit: Some(limit),
                    ..q.clone()
                },
            )
            .await;
            assert!(got
                .iter()
                .all(|r| r.output_head.is_empty() && r.output_tail.is_empty()));
            let ids: Vec<_> = got.iter().map(RunRecord::record_id).collect();
            assert_eq!(ids, want, "{q:?} limit {limit}");
        }
    }
    assert!(matches!(
        s.search(&RunQuery {
            cursor: Some("not hex".into()),
            ..Default::default()
        })
        .await,
        Err(StoreError::BadCursor)
    ));
    let capped = s
        .search(&RunQuery {
            limit: Some(5000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.runs.len(), 120);
}

#[tokio::test]
async fn pagination_is_stable_under_inserts() {
    let (_d, s) = open();
    let all = fill(&s).await;
    let want = newest_first(all.clone());
    let mut q = RunQuery {
        limit: Some(10),
        ..Default::default()
    };
    let mut got = Vec::new();
    let mut extra = 0;
    loop {
        let page = s.search(&q).await.unwrap();
        got.extend(page.runs.iter().map(RunRecord::record_id));
        // Between pages: newer records and same-instant ties arrive.
        extra += 1;
        s.write(record("new", "n1", 1000 + extra, RunStatus::Running))
            .await
            .unwrap();
        s.write(record("a", &format!("n0{extra}"), 25, RunStatus::Running))
            .await
            .unwrap();
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(got, want);
}

#[tokio::test]
async fn running_on_and_latest_per_job() {
    let (_d, s) = open();
    let all = fill(&s).await;
    let running = s.running_on("n1").await.unwrap();
    let want: Vec<_> = all
        .iter()
        .filter(|r| r.node_id == "n1" && r.status == RunStatus::Running)
        .collect();
    assert_eq!(running.len(), want.len());
    assert!(running
        .iter()
        .all(|r| r.node_id == "n1" && r.status == RunStatus::Running));
    assert!(!running[0].output_head.is_empty());

    let latest = s.latest_per_job().await.unwrap();
    assert_eq!(
        latest.iter().map(|(j, _)| j.as_str()).collect::<Vec<_>>(),
        ["a", "b", "c"]
    );
    let (_, a) = &latest[0];
    let newest_a = record("a", "n2", 19, RunStatus::Success);
    assert_eq!(a.run_id, newest_a.run_id, "ties broken by record id");
    // An older record never moves `latest` back; a newer attempt moves it.
    s.write(record("a", "n9", 3, RunStatus::Failed))
        .await
        .unwrap();
    let mut retry = newest_a.clone();
    retry.attempt = 2;
    retry.status = RunStatus::Failed;
    s.write(retry.clone()).await.unwrap();
    let latest = s.latest_per_job().await.unwrap();
    assert_eq!(latest[0].1.attempt, 2);
    assert_eq!(latest[0].1.status, RunStatus::Failed);
}

#[tokio::test]
async fn retention_by_age_and_count_keeps_running() {
    let (_d, s) = open();
    let all = fill(&s).await;
    let now = all[0].scheduled_at + Duration::from_secs(3600);
    // Records of minutes 0..10 are older than 50 min before `now`.
    let deleted = s
        .retain(
            Retention {
                max_age: Some(Duration::from_secs(50 * 60)),
                max_per_job: None,
            },
            now,
        )
        .await
        .unwrap();
    let old: Vec<_> = all
        .iter()
        .filter(|r| r.scheduled_at < all[60].scheduled_at)
        .collect();
    let old_running = old
        .iter()
        .filter(|r| r.status == RunStatus::Running)
        .count();
    assert_eq!(deleted as usize, old.len() - old_running);
    let left = all_pages(
        &s,
        RunQuery {
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(left.len(), 120 - deleted as usize);
    assert!(left
        .iter()
        .all(|r| r.scheduled_at >= all[60].scheduled_at || r.status == RunStatus::Running));

    // Keep the newest 4 of each job (running ones count but stay).
    s.retain(
        Retention {
            max_age: None,
            max_per_job: Some(4),
        },
        now,
    )
    .await
    .unwrap();
    for job in ["a", "b", "c"] {
        let left = all_pages(
            &s,
            RunQuery {
                job: Some(job.into()),
                ..Default::default()
            },
        )
        .await;
        let (newest, rest) = left.split_at(4);
        let want = newest_first(all.iter().filter(|r| r.job_id == job).cloned().collect());
        assert_eq!(
            newest.iter().map(RunRecord::record_id).collect::<Vec<_>>(),
            want[..4]
        );
        assert!(
            rest.iter().all(|r| r.status == RunStatus::Running),
            "{job}: {rest:?}"
        );
    }
}

#[tokio::test]
async fn retention_works_in_batches() {
    let (_d, s) = open();
    let recs: Vec<_> = (0..2500)
        .map(|m| record("big", "n1", m, RunStatus::Success))
        .collect();
    s.bulk_insert_for_bench(recs).await.unwrap();
    let n = s
        .retain(
            Retention {
                max_age: None,
                max_per_job: Some(100),
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(n, 2400);
    let n = s
        .retain(
            Retention {
                max_age: Some(Duration::from_secs(1)),
                max_per_job: None,
            },
            Timestamp::now(),
        )
        .await
        .unwrap();
    assert_eq!(n, 100);
}

#[tokio::test]
async fn everything_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state").join("cronsun.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let now = ts("2026-03-25T03:00:00Z");
    let (j, rec, fence) = {
        let s = SqliteStore::open(&path).unwrap();
        let j = s.put_job(job("d"), Expect::Absent, now).await.unwrap();
        let mut rec = record("d", "n1", 0, RunStatus::Running);
        rec.scheduled_at = ts("2026-03-25T03:05:00Z");
        let ClaimOutcome::Won { fence, .. } = s
            .claim(ClaimRequest {
                job_id: "d".into(),
                job_revision: j.revision,
                instant: rec.scheduled_at,
                record: rec.clone(),
            })
            .await
            .unwrap()
        else {
            panic!("claim must win");
        };
        s.set_global_pause(GlobalPause {
            paused: true,
            ..Default::default()
        })
        .await
        .unwrap();
        s.meta_put("node_id", "n1").await.unwrap();
        s.close().await;
        (j, rec, fence)
    };
    let s = SqliteStore::open(&path).unwrap();
    assert_eq!(s.get_job("d").await.unwrap(), Some(j.clone()));
    assert_eq!(s.watermark("d").await.unwrap(), Some(rec.scheduled_at));
    let got = s.get(&rec.record_id()).await.unwrap().unwrap();
    assert_eq!(got.fence, Some(fence));
    assert_eq!(got.output_head, rec.output_head);
    assert!(s.global_pause().await.unwrap().paused);
    assert_eq!(s.meta_get("node_id").await.unwrap().as_deref(), Some("n1"));
    assert_eq!(s.running_on("n1").await.unwrap().len(), 1);
    // The revision counter continues; it never reuses a fence.
    let j2 = s
        .put_job(job("d"), Expect::Revision(j.revision), now)
        .await
        .unwrap();
    assert!(j2.revision > fence);
}

#[tokio::test]
async fn open_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir").join("cronsun.db");
    let err = SqliteStore::open(&missing).err().unwrap().to_string();
    assert!(
        err.contains("no-such-dir/cronsun.db") && err.contains("state directory"),
        "{err}"
    );

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = SqliteStore::open(&garbage).err().unwrap().to_string();
    assert!(
        err.contains("garbage.db") && err.contains("corrupt"),
        "{err}"
    );
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cronsun.db");
    drop(schema::open_writer(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", schema::current_version() + 1)
        .unwrap();
    drop(conn);
    let err = schema::open_writer(&path).err().unwrap().to_string();
    assert!(err.contains("newer cronsun"), "{err}");
}

/// Every query shape the product issues, as run against the real schema.
fn query_shapes() -> Vec<(String, String)> {
    let cursor = cursor::Cursor {
        scheduled_ms: 5,
        record_id: "x#1".into(),
    }
    .encode();
    let base = [
        ("none", RunQuery::default()),
        (
            "job",
            RunQuery {
                job: Some("a".into()),
                ..Default::default()
            },
        ),
        (
            "node",
            RunQuery {
                node: Some("n".into()),
                ..Default::default()
            },
        ),
        (
            "status",
            RunQuery {
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        ),
        (
            "job+status",
            RunQuery {
                job: Some("a".into()),
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        ),
        (
            "node+status",
            RunQuery {
                node: Some("n".into()),
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        ),
        (
            "job+node",
            RunQuery {
                job: Some("a".into()),
                node: Some("n".into()),
                ..Default::default()
            },
        ),
        (
            "range",
            RunQuery {
                since: Some(Timestamp::UNIX_EPOCH),
                until: Some(Timestamp::now()),
                ..Default::default()
            },
        ),
    ];
    let mut out = Vec::new();
    for (name, q) in base {
        for with_cursor in [false, true] {
            let q = RunQuery {
                cursor: with_cursor.then(|| cursor.clone()),
                ..q.clone()
            };
            let (sql, args, _) = runs::search_sql(&q).unwrap();
            out.push((
                format!("search {name} cursor={with_cursor}"),
                inline(&sql, &args),
            ));
        }
    }
    for (name, sql) in [
        ("get", "SELECT id, body, output_head, output_tail FROM runs WHERE id = 'x#1'"),
        (
            "get latest attempt",
            "SELECT id, attempt FROM runs WHERE id > 'x#' AND id < 'x$'",
        ),
        (
            "running_on",
            "SELECT id, body, output_head, output_tail FROM runs WHERE status = 'running' AND node_id = 'n' ORDER BY scheduled_ms, id",
        ),
        (
            "retain by age",
            "SELECT rowid FROM runs WHERE scheduled_ms < 5 AND status != 'running' ORDER BY scheduled_ms, id LIMIT 1000",
        ),
        (
            "retain count cutoff",
            "SELECT scheduled_ms, id FROM runs WHERE job_id = 'a' ORDER BY scheduled_ms DESC, id DESC LIMIT 1 OFFSET 10",
        ),
        (
            "retain by count",
            "SELECT rowid FROM runs WHERE job_id = 'a' AND scheduled_ms <= 5 AND (scheduled_ms < 5 OR id <= 'x') AND status != 'running' ORDER BY scheduled_ms, id LIMIT 1000",
        ),
    ] {
        out.push((name.to_owned(), sql.to_owned()));
    }
    out
}

/// Substitutes literal values for `?N` (EXPLAIN QUERY PLAN needs no binding).
fn inline(sql: &str, args: &[rusqlite::types::Value]) -> String {
    let mut sql = sql.to_owned();
    for (i, v) in args.iter().enumerate().rev() {
        let lit = match v {
            rusqlite::types::Value::Integer(n) => n.to_string(),
            rusqlite::types::Value::Text(t) => format!("'{}'", t.replace('\'', "''")),
            other => panic!("unexpected arg {other:?}"),
        };
        sql = sql.replace(&format!("?{}", i + 1), &lit);
    }
    sql
}

#[tokio::test]
async fn every_query_is_served_by_an_index() {
    let (_d, s) = open();
    fill(&s).await;
    let conn = schema::open_reader(s.path()).unwrap();
    for analyzed in [false, true] {
        if analyzed {
            let w = rusqlite::Connection::open(s.path()).unwrap();
            w.execute_batch("ANALYZE").unwrap();
        }
        for (name, sql) in query_shapes() {
            let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
            let plan: Vec<String> = stmt
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .map(|r| r.unwrap())
                .collect();
            let bad = plan.iter().any(|l| {
                (l.starts_with("SCAN runs") && !l.contains("USING")) || l.contains("TEMP B-TREE")
            });
            assert!(
                !bad,
                "{name} (analyzed={analyzed}) is not served by an index: {plan:?}\n{sql}"
            );
            // Combined filters use the index made for them, not a filtered scan.
            for (shape, index) in [
                ("search job+status", "runs_by_job_status"),
                ("search node+status", "runs_by_node_status"),
                ("running_on", "runs_by_node_status"),
            ] {
                if name.starts_with(shape) {
                    assert!(
                        plan.iter().any(|l| l.contains(index)),
                        "{name} (analyzed={analyzed}) does not use {index}: {plan:?}"
                    );
                }
            }
        }
    }
}

#[tokio::test]
async fn many_concurrent_writes_group_commit() {
    let (_d, s) = open();
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for m in 0..250 {
                s.write(record("w", &format!("n{t}"), m, RunStatus::Success))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let page = all_pages(
        &s,
        RunQuery {
            job: Some("w".into()),
            limit: Some(1000),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(page.len(), 2000);
}
