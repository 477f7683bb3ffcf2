//! Deterministic scheduler tests: a manual clock, the real SQLite store, the
//! real executor running real processes. Time only moves when a test moves
//! it, so DST days, clock steps and restarts are exact, not lucky.

use std::sync::Arc;
use std::time::Duration;

use cronsun_proto::job::ValidateContext;
use cronsun_proto::run::{RunRecord, RunStatus, Trigger};
use cronsun_proto::Job;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::exec::{ExecPolicy, Executor};
use crate::metrics::Metrics;
use crate::store::sqlite::SqliteStore;
use crate::store::{ClaimRequest, CoordStore, Expect, RunStore};

/// Bound on waiting for an event the test caused.
const EVENT_WAIT: Duration = Duration::from_secs(20);

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn me() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .expect("current user has a name")
}

fn job(id: &str, schedule: &str, tz: &str, extra: serde_json::Value, now: Timestamp) -> Job {
    // `allow`: the tests move the clock faster than processes end.
    let mut v = serde_json::json!({
        "id": id,
        "command": ["true"],
        "rules": [{"schedule": schedule, "timezone": tz}],
        "concurrency": "allow",
        "max_parallel": 100,
    });
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let mut j: Job = serde_json::from_value(v).expect("job json");
    j.validate(&ValidateContext {
        default_timezone: "UTC".into(),
        now,
        allow_past_at: false,
    })
    .expect("valid job");
    j
}

struct Node {
    dir: tempfile::TempDir,
    clock: ManualClock,
    store: Arc<SqliteStore>,
    handle: SchedulerHandle,
    finished: broadcast::Receiver<Arc<RunRecord>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Node {
    async fn start(dir: tempfile::TempDir, clock: ManualClock) -> Node {
        Node::start_in(dir, clock, None).await
    }

    async fn start_in(
        dir: tempfile::TempDir,
        clock: ManualClock,
        cluster: Option<Arc<dyn ClusterView>>,
    ) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter("debug")
            .try_init();
        let store = Arc::new(SqliteStore::open(&dir.path().join("cronsun.db")).expect("store"));
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let policy = ExecPolicy {
            default_run_as: me(),
            allowed_users: vec![me()],
            allowed_commands: None,
        };
        let exec = Executor::new(policy, dir.path(), tx).expect("executor");
        let (sched, handle) = Scheduler::new(Parts {
            cfg: SchedulerConfig {
                lead: Duration::from_millis(5),
                drain_timeout: Duration::from_secs(10),
                step_tolerance: Duration::from_secs(2),
                max_concurrent: 64,
                state_dir: dir.path().to_path_buf(),
            },
            clock: Clock::Manual(clock.clone()),
            node: NodeIdentity {
                id: "n1".into(),
                hostname: "test".into(),
            },
            coord: store.clone(),
            runs: store.clone(),
            exec,
            exec_events: rx,
            adopted: Default::default(),
            metrics: Metrics::new(),
            cluster,
        })
        .await
        .expect("scheduler");
        let finished = handle.subscribe_finished();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(sched.run(stop_rx));
        Node {
            dir,
            clock,
            store,
            handle,
            finished,
            stop,
            task,
        }
    }

    async fn shutdown(self) -> (tempfile::TempDir, ManualClock) {
        let _ = self.stop.send(true);
        self.task.await.expect("scheduler task");
        (self.dir, self.clock)
    }

    async fn add(&self, j: Job) -> Job {
        self.store
            .put_job(j, Expect::Absent, self.clock.now())
            .await
            .expect("job stored")
    }

    /// Moves the clock to `t` in steps of at most `step`, like real time.
    async fn advance_to(&self, t: Timestamp, step: Duration) {
        while self.clock.now() < t {
            let left = Duration::try_from(t.duration_since(self.clock.now())).unwrap_or_default();
            self.clock.advance(left.min(step));
            tokio::task::yield_now().await;
        }
    }

    /// Waits for the next final record of `job_id` that satisfies `pred`.
    async fn next_where(
        &mut self,
        job_id: &str,
        pred: impl Fn(&RunRecord) -> bool,
    ) -> Arc<RunRecord> {
        loop {
            let r = tokio::time::timeout(EVENT_WAIT, self.finished.recv())
                .await
                .expect("a record became final in time")
                .expect("finished feed open");
            if r.job_id == job_id && pred(&r) {
                return r;
            }
        }
    }

    /// Waits for the next run of `job_id` that really ran (not skipped or missed).
    async fn next_finished(&mut self, job_id: &str) -> Arc<RunRecord> {
        self.next_where(job_id, |r| {
            !matches!(r.status, RunStatus::Skipped | RunStatus::Missed)
        })
        .await
    }

    async fn records(&self, job_id: &str) -> Vec<RunRecord> {
        let mut out = Vec::new();
        let mut q = cronsun_proto::api::RunQuery {
            job: Some(job_id.into()),
            limit: Some(1000),
            ..Default::default()
        };
        loop {
            let page = self.store.search(&q).await.expect("search");
            out.extend(page.runs);
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => break,
            }
        }
        out.sort_by_key(|r| (r.scheduled_at, r.attempt));
        out
    }
}

fn instants(recs: &[RunRecord], status: RunStatus) -> Vec<Timestamp> {
    recs.iter()
        .filter(|r| r.status == status)
        .map(|r| r.scheduled_at)
        .collect()
}

#[tokio::test]
async fn berlin_spring_forward_fires_gap_time_at_the_transition() {
    let clock = ManualClock::new(ts("2026-03-28T22:00:00Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    n.add(job(
        "gap",
        "30 2 * * *",
        "Europe/Berlin",
        serde_json::json!({}),
        n.clock.now(),
    ))
    .await;
    n.advance_to(ts("2026-03-29T01:00:01Z"), Duration::from_secs(600))
        .await;
    let r = n.next_finished("gap").await;
    // 02:30 does not exist on that day: it fires once at 03:00+02:00 = 01:00Z.
    assert_eq!(r.scheduled_at, ts("2026-03-29T01:00:00Z"));
    assert_eq!(r.status, RunStatus::Success, "{r:?}");
    n.shutdown().await;
}

#[tokio::test]
async fn berlin_fall_back_real_instant_rule_fires_both_passes() {
    let clock = ManualClock::new(ts("2026-10-24T21:30:00Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    n.add(job(
        "fold",
        "0 */2 * * *",
        "Europe/Berlin",
        serde_json::json!({}),
        n.clock.now(),
    ))
    .await;
    // Each instant is awaited before time moves on, as real time would allow.
    let expected = [
        ts("2026-10-24T22:00:00Z"), // 00:00+02
        ts("2026-10-25T00:00:00Z"), // 02:00+02
        ts("2026-10-25T01:00:00Z"), // 02:00+01
        ts("2026-10-25T03:00:00Z"), // 04:00+01
    ];
    for t in expected {
        n.advance_to(
            t + SignedDuration::from_millis(100),
            Duration::from_secs(900),
        )
        .await;
        assert_eq!(n.next_finished("fold").await.scheduled_at, t);
    }
    let recs = n.records("fold").await;
    assert_eq!(
        instants(&recs, RunStatus::Success),
        expected.to_vec(),
        "{recs:#?}"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn backward_clock_step_never_refires_decided_instants() {
    let clock = ManualClock::new(ts("2026-01-01T10:00:30Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    n.add(job(
        "tick",
        "* * * * *",
        "UTC",
        serde_json::json!({}),
        n.clock.now(),
    ))
    .await;
    n.advance_to(ts("2026-01-01T10:02:00Z"), Duration::from_secs(1))
        .await;
    assert_eq!(
        n.next_finished("tick").await.scheduled_at,
        ts("2026-01-01T10:01:00Z")
    );
    assert_eq!(
        n.next_finished("tick").await.scheduled_at,
        ts("2026-01-01T10:02:00Z")
    );
    // The clock jumps back five minutes, then runs forward again.
    n.clock.step(SignedDuration::from_secs(-300));
    n.advance_to(ts("2026-01-01T10:03:00Z"), Duration::from_secs(1))
        .await;
    // The next run is 10:03: 09:58..10:02 were decided before the step.
    assert_eq!(
        n.next_finished("tick").await.scheduled_at,
        ts("2026-01-01T10:03:00Z")
    );
    let recs = n.records("tick").await;
    assert_eq!(
        instants(&recs, RunStatus::Success),
        vec![
            ts("2026-01-01T10:01:00Z"),
            ts("2026-01-01T10:02:00Z"),
            ts("2026-01-01T10:03:00Z")
        ],
        "{recs:#?}"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn forward_clock_step_counts_as_downtime() {
    let clock = ManualClock::new(ts("2026-01-01T10:00:30Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    let j = serde_json::json!({"missed": "once", "max_catchup": 2});
    n.add(job("jump", "* * * * *", "UTC", j, n.clock.now()))
        .await;
    // The wall clock jumps an hour ahead without time passing.
    n.clock.step(SignedDuration::from_secs(3600));
    n.clock.advance(Duration::from_millis(10));
    let mut seen = Vec::new();
    for _ in 0..2 {
        seen.push(n.next_finished("jump").await);
    }
    seen.sort_by_key(|r| r.scheduled_at);
    // One catch-up of the newest missed instant, and 11:00 on time.
    assert_eq!(seen[0].trigger, Trigger::Catchup);
    assert_eq!(seen[0].scheduled_at, ts("2026-01-01T10:59:00Z"));
    assert_eq!(seen[0].attempt, 2);
    assert_eq!(seen[1].trigger, Trigger::Schedule);
    assert_eq!(seen[1].scheduled_at, ts("2026-01-01T11:00:00Z"));
    let recs = n.records("jump").await;
    let missed = instants(&recs, RunStatus::Missed);
    // 10:01..10:59 = 59 instants: the newest two individually, 57 in one summary.
    assert_eq!(missed.len(), 3, "{recs:#?}");
    let summary = recs
        .iter()
        .find(|r| r.run_id.contains("~missed~"))
        .expect("summary record");
    assert!(
        summary
            .reason
            .as_deref()
            .unwrap_or("")
            .starts_with("57 instants"),
        "{summary:?}"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn restart_after_dying_past_the_claim_records_lost_and_never_refires() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(ts("2026-01-01T10:00:30Z"));
    let n = Node::start(dir, clock).await;
    let j = n
        .add(job(
            "crash",
            "* * * * *",
            "UTC",
            serde_json::json!({"missed": "skip"}),
            n.clock.now(),
        ))
        .await;
    let (dir, clock) = n.shutdown().await;
    // What a daemon that died right after moving the watermark leaves behind:
    // the claim and its `running` record, and no process.
    let store = SqliteStore::open(&dir.path().join("cronsun.db")).expect("store");
    let t = ts("2026-01-01T10:01:00Z");
    let mut rec = records::new_record(
        &j,
        &NodeIdentity {
            id: "n1".into(),
            hostname: "test".into(),
        },
        records::scheduled_run_id(
            &j,
            t,
            &NodeIdentity {
                id: "n1".into(),
                hostname: "test".into(),
            },
        ),
        1,
        Trigger::Schedule,
        t,
        RunStatus::Running,
    );
    rec.started_at = Some(t);
    let won = store
        .claim(ClaimRequest {
            job_id: j.id.clone(),
            job_revision: j.revision,
            instant: t,
            record: rec,
        })
        .await
        .expect("claim");
    assert!(
        matches!(won, crate::store::ClaimOutcome::Won { .. }),
        "{won:?}"
    );
    store.close().await;
    clock.advance(Duration::from_secs(31)); // 10:01:01, restart
    let mut n = Node::start(dir, clock).await;
    n.advance_to(ts("2026-01-01T10:02:00Z"), Duration::from_secs(1))
        .await;
    assert_eq!(
        n.next_finished("crash").await.scheduled_at,
        ts("2026-01-01T10:02:00Z")
    );
    let recs = n.records("crash").await;
    let lost: Vec<_> = recs
        .iter()
        .filter(|r| r.status == RunStatus::Lost)
        .collect();
    assert_eq!(lost.len(), 1, "{recs:#?}");
    assert_eq!(lost[0].scheduled_at, t);
    assert_eq!(
        recs.iter().filter(|r| r.scheduled_at == t).count(),
        1,
        "10:01 never re-fired: {recs:#?}"
    );
    n.shutdown().await;
}

#[tokio::test]
async fn paused_time_is_never_missed() {
    let clock = ManualClock::new(ts("2026-01-01T10:00:30Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    let mut j = n
        .add(job(
            "nap",
            "* * * * *",
            "UTC",
            serde_json::json!({"missed": "all"}),
            n.clock.now(),
        ))
        .await;
    j.paused = true;
    let j = n
        .store
        .put_job(j.clone(), Expect::Revision(j.revision), n.clock.now())
        .await
        .expect("pause");
    n.advance_to(ts("2026-01-01T10:30:30Z"), Duration::from_secs(60))
        .await;
    // Resume as the API does: the watermark restarts at now.
    n.store
        .set_watermark("nap", n.clock.now())
        .await
        .expect("watermark");
    let mut r = j.clone();
    r.paused = false;
    n.store
        .put_job(r, Expect::Revision(j.revision), n.clock.now())
        .await
        .expect("resume");
    n.advance_to(ts("2026-01-01T10:31:00Z"), Duration::from_secs(1))
        .await;
    assert_eq!(
        n.next_finished("nap").await.scheduled_at,
        ts("2026-01-01T10:31:00Z")
    );
    let recs = n.records("nap").await;
    assert!(instants(&recs, RunStatus::Missed).is_empty(), "{recs:#?}");
    n.shutdown().await;
}

#[tokio::test]
async fn forbid_skips_an_instant_that_finds_the_job_running() {
    let clock = ManualClock::new(ts("2026-01-01T10:00:00.500Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    let j = serde_json::json!({"command": ["sleep", "30"], "concurrency": "forbid"});
    n.add(job("slow", "* * * * * *", "UTC", j, n.clock.now()))
        .await;
    n.advance_to(ts("2026-01-01T10:00:02Z"), Duration::from_millis(500))
        .await;
    // 10:00:01 started (still sleeping); 10:00:02 is skipped.
    let r = n
        .next_where("slow", |r| r.status == RunStatus::Skipped)
        .await;
    assert_eq!(r.scheduled_at, ts("2026-01-01T10:00:02Z"));
    assert!(
        r.reason.as_deref().unwrap_or("").contains("forbid"),
        "{r:?}"
    );
    n.handle
        .kill(&format!(
            "slow~{}#1",
            cronsun_proto::ids::instant_key(ts("2026-01-01T10:00:01Z"))
        ))
        .await
        .expect("kill");
    let k = n.next_finished("slow").await;
    assert_eq!(k.status, RunStatus::Killed, "{k:?}");
    n.shutdown().await;
}

#[tokio::test]
async fn at_job_runs_once_then_is_completed() {
    let clock = ManualClock::new(ts("2026-01-01T10:00:00Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    n.add(job(
        "once",
        "@at 2026-01-01T10:00:05Z",
        "UTC",
        serde_json::json!({}),
        n.clock.now(),
    ))
    .await;
    n.advance_to(ts("2026-01-01T10:00:05.1Z"), Duration::from_secs(1))
        .await;
    let r = n.next_finished("once").await;
    assert_eq!(r.scheduled_at, ts("2026-01-01T10:00:05Z"));
    // The job is marked completed: paused with that reason.
    let mut events = n.store.subscribe();
    let done = loop {
        let j = n.store.get_job("once").await.expect("get").expect("exists");
        if j.paused {
            break j;
        }
        tokio::time::timeout(EVENT_WAIT, events.recv())
            .await
            .expect("job updated in time")
            .expect("feed open");
    };
    assert_eq!(done.paused_reason.as_deref(), Some("completed"));
    n.shutdown().await;
}

#[tokio::test]
async fn missed_at_job_still_runs_once_after_downtime() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = ManualClock::new(ts("2026-01-01T10:00:00Z"));
    let n = Node::start(dir, clock).await;
    n.add(job(
        "late",
        "@at 2026-01-01T10:00:05Z",
        "UTC",
        serde_json::json!({}),
        n.clock.now(),
    ))
    .await;
    let (dir, clock) = n.shutdown().await;
    clock.advance(Duration::from_secs(3600)); // down across the instant
    let mut n = Node::start(dir, clock).await;
    n.clock.advance(Duration::from_millis(10));
    let r = n.next_finished("late").await;
    assert_eq!(r.scheduled_at, ts("2026-01-01T10:00:05Z"));
    assert_eq!(r.status, RunStatus::Success);
    n.shutdown().await;
}

#[tokio::test]
async fn lord_howe_half_hour_fold_fires_a_wall_time_once() {
    // Lord Howe falls back 30 minutes on 2026-04-05: 01:30-02:00 local happens twice.
    let clock = ManualClock::new(ts("2026-04-04T14:00:00Z"));
    let mut n = Node::start(tempfile::tempdir().expect("tmp"), clock).await;
    n.add(job(
        "howe",
        "45 1 * * *",
        "Australia/Lord_Howe",
        serde_json::json!({}),
        n.clock.now(),
    ))
    .await;
    // 01:45+11:00 = 14:45Z is the first pass; 01:45+10:30 = 15:15Z the second.
    n.advance_to(ts("2026-04-04T14:45:00.1Z"), Duration::from_secs(300))
        .await;
    assert_eq!(
        n.next_finished("howe").await.scheduled_at,
        ts("2026-04-04T14:45:00Z")
    );
    // Past the second pass (15:15Z) to the next day's run, 01:45+10:30: nothing in between.
    n.advance_to(ts("2026-04-05T15:15:00.1Z"), Duration::from_secs(900))
        .await;
    assert_eq!(
        n.next_finished("howe").await.scheduled_at,
        ts("2026-04-05T15:15:00Z")
    );
    let recs = n.records("howe").await;
    assert_eq!(
        recs.len(),
        2,
        "once per day, not twice on the fold day: {recs:#?}"
    );
    n.shutdown().await;
}

/// A cluster view whose answers the test sets.
struct FakeCluster {
    /// `None`: this node does not try; `Some(d)`: it tries `d` after `T - lead`.
    turn: std::sync::Mutex<Option<Duration>>,
    fences: watch::Sender<u64>,
}

impl ClusterView for FakeCluster {
    fn claim_offset(&self, _job: &str, _t: Timestamp) -> Option<Duration> {
        *self.turn.lock().expect("lock")
    }
    fn fences(&self) -> watch::Receiver<u64> {
        self.fences.subscribe()
    }
}

#[tokio::test]
async fn cluster_turns_and_fences_apply_to_one_jobs_only() {
    let clock = ManualClock::new(ts("2026-05-01T00:00:00Z"));
    let cluster = Arc::new(FakeCluster {
        turn: std::sync::Mutex::new(None),
        fences: watch::channel(0).0,
    });
    let mut n = Node::start_in(
        tempfile::tempdir().expect("tmp"),
        clock,
        Some(cluster.clone()),
    )
    .await;
    let now = n.clock.now();
    n.add(job("one", "* * * * * *", "UTC", serde_json::json!({}), now))
        .await;
    let all = serde_json::json!({"kind": "all"});
    n.add(job("all", "* * * * * *", "UTC", all, now)).await;

    // Not this node's turn: the `one` job's instants pass without a record;
    // the `all` job runs regardless.
    n.advance_to(
        now + SignedDuration::from_secs(3),
        Duration::from_millis(100),
    )
    .await;
    n.next_finished("all").await;
    assert!(
        n.records("one").await.is_empty(),
        "{:?}",
        n.records("one").await
    );
    assert!(n
        .handle
        .next_run("one")
        .is_some_and(|t| t > now + SignedDuration::from_secs(2)));

    // Its turn, 200 ms after T − lead: the instant starts then.
    *cluster.turn.lock().expect("lock") = Some(Duration::from_millis(200));
    n.store
        .put_job(
            job(
                "long",
                "* * * * * *",
                "UTC",
                serde_json::json!({"command": ["sleep", "30"]}),
                now,
            ),
            Expect::Absent,
            n.clock.now(),
        )
        .await
        .expect("job stored");
    let t = n.clock.now();
    n.advance_to(t + SignedDuration::from_secs(2), Duration::from_millis(50))
        .await;
    assert!(
        wait_running(&n, "long").await,
        "the `one` job did not start on its turn"
    );

    // Fenced: its `one` runs are killed at once, with the reason.
    cluster.fences.send_modify(|e| *e += 1);
    let r = n
        .next_where("long", |r| r.status == RunStatus::Killed)
        .await;
    assert!(
        r.reason
            .as_deref()
            .is_some_and(|s| s.contains("self-fenced")),
        "{r:?}"
    );
    n.shutdown().await;
}

/// Waits (bounded) until a run of `job_id` is in progress.
async fn wait_running(n: &Node, job_id: &str) -> bool {
    for _ in 0..200 {
        if n.handle.running_count(job_id) > 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}
