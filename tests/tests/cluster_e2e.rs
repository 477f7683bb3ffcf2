//! Cluster mode end to end: real cronsund processes (distinct node ids,
//! state dirs and ports) against one real etcd and one MongoDB-protocol
//! server, on loopback. One cluster serves every scenario in turn, while a
//! per-second `one` job and a per-2-seconds `all` job run throughout; every
//! real start is appended by the job itself to a ledger file, so a double
//! start shows even where two starts would share a run record.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use nix::sys::signal::Signal;
use serde_json::json;

use cronsun_proto::ids;
use cronsun_tests::cluster::{wait_for, Cluster, Ledger, Start, CLAIM_DELAY_MS, LEASE_TTL_S};
use cronsun_tests::procs;
use cronsun_tests::{fmt_records, job, unique_id, Daemon, Job, RunRecord, RunStatus};
use cronsund::store::etcd::keys::rank;

/// The instant (whole second) `secs` seconds from now.
fn second_from_now(secs: i64) -> Timestamp {
    Timestamp::from_second(Timestamp::now().as_second() + secs).expect("in range")
}

fn parse(t: &str) -> Timestamp {
    t.parse()
        .unwrap_or_else(|e| panic!("ledger instant {t:?}: {e}"))
}

/// The ledger lines of `name` as (instant → starts).
fn starts_by_instant(ledger: &Ledger, name: &str) -> BTreeMap<Timestamp, Vec<Start>> {
    let mut m: BTreeMap<Timestamp, Vec<Start>> = BTreeMap::new();
    for s in ledger.starts(name) {
        m.entry(parse(&s.scheduled_at)).or_default().push(s);
    }
    m
}

/// No instant of the `one` job started twice, anywhere in the cluster.
#[track_caller]
fn assert_at_most_once(ledger: &Ledger, name: &str) {
    for (t, s) in starts_by_instant(ledger, name) {
        assert_eq!(
            s.len(),
            1,
            "instant {t} of {name} started {} times: {s:?}",
            s.len()
        );
    }
}

/// Sleeps until `t` (the test's own pacing between scenario steps).
fn sleep_until(t: Timestamp) {
    let d = t.duration_since(Timestamp::now());
    if d > SignedDuration::ZERO {
        std::thread::sleep(d.unsigned_abs());
    }
}

/// The daemon and agent processes of a node (not its jobs).
fn daemon_pids(d: &Daemon) -> Vec<i32> {
    procs::processes_matching(&d.config_path().to_string_lossy())
        .into_iter()
        .map(|p| p.pid)
        .collect()
}

#[test]
fn cluster_runs_one_jobs_once_and_survives_node_failures() {
    let started = Instant::now();
    let mut c = Cluster::start(3);
    let ledger = Ledger::new();
    let tick = unique_id("tick");
    let every = unique_id("every");
    let slow = unique_id("slow");
    c.nodes[0].create_job(&ledger.job(&tick, "tick", "one", "* * * * * *"));
    let every_job = c.nodes[1].create_job(&ledger.job(&every, "every", "all", "*/2 * * * * *"));
    // Long runs, so a frozen node has one in progress.
    c.nodes[2].create_job(&job(json!({
        "id": slow, "command": format!("{}; sleep 30", ledger.command("slow")), "shell": true,
        "rules": [{ "schedule": "*/3 * * * * *" }], "concurrency": "allow", "max_parallel": 20,
        "kill_grace": "1s",
    })));
    let ids: Vec<String> = c.nodes.iter().map(|d| d.node_id().to_string()).collect();

    // ---- steady state: `one` spread over the nodes, `all` on each ----------
    assert!(
        wait_for(Duration::from_secs(30), || starts_by_instant(
            &ledger, "tick"
        )
        .len()
            >= 8),
        "the `one` job did not start 8 times: {:?}\n{}",
        ledger.starts("tick"),
        c.logs()
    );
    assert_at_most_once(&ledger, "tick");
    let ran: BTreeSet<String> = ledger.starts("tick").into_iter().map(|s| s.node).collect();
    assert!(ran.len() >= 2, "one node ran everything: {ran:?}");
    let all_nodes: BTreeSet<String> = ids.iter().cloned().collect();
    let full = starts_by_instant(&ledger, "every")
        .into_values()
        .filter(|s| s.iter().map(|s| &s.node).collect::<BTreeSet<_>>().len() == 3)
        .count();
    assert!(
        full >= 2,
        "the `all` job did not run on all 3 nodes: {:?}",
        ledger.starts("every")
    );

    // ---- a job edit reaches every node -------------------------------------
    let mut edited = every_job.clone();
    edited
        .env
        .insert("EDITED".into(), cronsun_proto::job::EnvValue::plain("1"));
    let stored: Job = c.nodes[2]
        .api_put(
            &format!("/api/v1/jobs/{every}"),
            &edited,
            Some(every_job.revision),
        )
        .expect_status(200)
        .json();
    let new_rev = stored.revision;
    assert!(new_rev > every_job.revision);
    let edit_seen = wait_for(Duration::from_secs(15), || {
        let recs = c.nodes[0].runs(&every);
        all_nodes.iter().all(|n| {
            recs.iter()
                .any(|r| &r.node_id == n && r.job_revision == new_rev)
        })
    });
    assert!(
        edit_seen,
        "not every node ran revision {new_rev}:\n{}",
        fmt_records(&c.nodes[0].runs(&every))
    );

    // ---- kill -9 of the node ranked first for an instant --------------------
    let target = second_from_now(3);
    let victim = ids
        .iter()
        .find(|n| rank(&tick, target, n, ids.iter().map(String::as_str)) == Some(0))
        .expect("some node ranks first")
        .clone();
    let vi = c.index_of(&victim).expect("victim index");
    sleep_until(target - SignedDuration::from_millis(700));
    c.nodes[vi].kill9();
    let after = target + SignedDuration::from_secs(4);
    let ok = wait_for(Duration::from_secs(20), || {
        starts_by_instant(&ledger, "tick")
            .range(after..)
            .next()
            .is_some()
    });
    assert!(ok, "no instant ran after the kill:\n{}", c.logs());
    c.wait_leader(Duration::from_secs(15)); // the victim may have led the web
    let by_t = starts_by_instant(&ledger, "tick");
    for s in 0..4 {
        let t = target + SignedDuration::from_secs(s);
        let starts = by_t
            .get(&t)
            .unwrap_or_else(|| panic!("instant {t} did not run after the kill: {by_t:?}"));
        assert_eq!(starts.len(), 1, "{t}: {starts:?}");
        assert_ne!(starts[0].node, victim, "{t} ran on the killed node");
        let rec = c.nodes[(vi + 1) % 3]
            .record(&ids::record_id(&ids::scheduled_run_id(&tick, t, None), 1))
            .unwrap_or_else(|| panic!("no record for {t}"));
        let late = rec.started_at.expect("started").duration_since(t);
        assert!(
            late < SignedDuration::from_millis(2 * CLAIM_DELAY_MS as i64),
            "{t} started {late} late (claim_delay {CLAIM_DELAY_MS} ms)\n{}",
            fmt_records(&[rec])
        );
    }
    c.nodes[vi].restart(); // waits for the dead boot's lease, then registers

    // ---- SIGSTOP past the lease: self-fenced, runs nothing claimed elsewhere --
    let frozen_ok = wait_for(Duration::from_secs(20), || {
        let now = Timestamp::now();
        ledger.starts("slow").iter().any(|s| {
            let t = parse(&s.scheduled_at);
            now.duration_since(t) < SignedDuration::from_secs(20) && s.node != victim
        })
    });
    assert!(
        frozen_ok,
        "no slow run in progress: {:?}",
        ledger.starts("slow")
    );
    let slow_start = ledger
        .starts("slow")
        .into_iter()
        .rev()
        .find(|s| s.node != victim)
        .expect("a slow run");
    let fi = c.index_of(&slow_start.node).expect("frozen index");
    let frozen_id = slow_start.node.clone();
    let pids = daemon_pids(&c.nodes[fi]);
    assert!(!pids.is_empty());
    procs::signal_pids(&pids, Signal::SIGSTOP);
    let expired = wait_for(Duration::from_secs(LEASE_TTL_S + 5), || {
        !c.registered(&frozen_id)
    });
    let stopped_at = Timestamp::now();
    // Others go on while it is frozen.
    let others_ran = wait_for(Duration::from_secs(10), || {
        starts_by_instant(&ledger, "tick")
            .range(stopped_at..)
            .next()
            .is_some()
    });
    procs::signal_pids(&pids, Signal::SIGCONT);
    assert!(
        expired,
        "the frozen node's lease did not expire\n{}",
        c.etcd.log()
    );
    assert!(
        others_ran,
        "nothing ran while a node was frozen\n{}",
        c.logs()
    );
    c.wait_leader(Duration::from_secs(15));
    let run_id = ids::scheduled_run_id(&slow, parse(&slow_start.scheduled_at), None);
    let fenced: RunRecord =
        c.nodes[fi].wait_for_final(&ids::record_id(&run_id, 1), Duration::from_secs(20));
    assert!(
        fenced
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("self-fenced")),
        "the frozen node's `one` run was not self-fenced:\n{}\n{}",
        fmt_records(std::slice::from_ref(&fenced)),
        c.nodes[fi].logs()
    );
    assert!(
        wait_for(Duration::from_secs(15), || c.registered(&frozen_id)),
        "the resumed node did not register again\n{}",
        c.nodes[fi].logs()
    );

    // ---- fault point "die after claim": the instant still gets a record -----
    // Only the `one` job fires now, so the first claim the faulty node wins
    // is one made in etcd.
    for j in [&every, &slow] {
        c.nodes[0]
            .api_post(
                &format!("/api/v1/jobs/{j}/pause"),
                &json!({"reason": "fault test"}),
            )
            .expect_status(200);
    }
    let faulty = c.add_node(|cfg| cfg.env("CRONSUN_FAULTS", "die_after_claim"));
    let died = wait_for(Duration::from_secs(30), || {
        c.nodes[faulty]
            .logs()
            .contains("fault point \"die_after_claim\" hit")
    });
    assert!(
        died,
        "the faulty node never won a claim\n{}",
        c.nodes[faulty].logs()
    );
    c.nodes[faulty].kill9();
    c.nodes[faulty].clear_env();
    c.nodes[faulty].restart();
    c.wait_leader(Duration::from_secs(15));
    let faulty_id = c.nodes[faulty].node_id().to_string();

    // ---- fault point "commit outcome unknown": etcd applied the claim but
    // the node never saw the reply; it must find out it won and run it ------
    let unsure = c.add_node(|cfg| cfg.env("CRONSUN_FAULTS", "claim_outcome_unknown"));
    let unsure_id = c.nodes[unsure].node_id().to_string();
    let ran_unsure = wait_for(Duration::from_secs(30), || {
        ledger.starts("tick").iter().any(|s| s.node == unsure_id)
    });
    assert!(
        ran_unsure,
        "the node whose claim replies are dropped never ran an instant it won\n{}",
        c.nodes[unsure].logs()
    );
    assert!(
        c.nodes[unsure]
            .logs()
            .contains("fault point claim_outcome_unknown"),
        "the fault point was never hit\n{}",
        c.nodes[unsure].logs()
    );

    // ---- the whole history --------------------------------------------------
    assert!(
        wait_for(Duration::from_secs(70), || starts_by_instant(
            &ledger, "tick"
        )
        .len()
            >= 60),
        "fewer than 60 instants ran"
    );
    let first = *starts_by_instant(&ledger, "tick")
        .keys()
        .next()
        .expect("some");
    let last = Timestamp::now() - SignedDuration::from_secs(3);
    let complete = wait_for(Duration::from_secs(20), || {
        let recs = c.nodes[0].runs(&tick);
        let mut t = first;
        while t <= last {
            let rid = ids::scheduled_run_id(&tick, t, None);
            if !recs.iter().any(|r| r.run_id == rid && r.status.is_final()) {
                return false;
            }
            t += SignedDuration::from_secs(1);
        }
        true
    });
    let recs = c.nodes[0].runs(&tick);
    assert!(
        complete,
        "an instant between {first} and {last} has no final record:\n{}",
        fmt_records(&recs)
    );
    assert_at_most_once(&ledger, "tick");
    assert_at_most_once(&ledger, "slow");
    for (t, s) in starts_by_instant(&ledger, "every") {
        let nodes: Vec<&String> = s.iter().map(|s| &s.node).collect();
        let unique: BTreeSet<&String> = nodes.iter().copied().collect();
        assert_eq!(
            nodes.len(),
            unique.len(),
            "`all` instant {t} ran twice on a node: {s:?}"
        );
    }
    // Every success in the records is a real start in the ledger, on the
    // node the record names; the faulty node's claimed instants are `lost`.
    let ledger_by_t = starts_by_instant(&ledger, "tick");
    for r in recs.iter().filter(|r| r.status == RunStatus::Success) {
        let s = ledger_by_t.get(&r.scheduled_at).unwrap_or_else(|| {
            panic!(
                "success without a start: {}",
                fmt_records(std::slice::from_ref(r))
            )
        });
        assert_eq!(
            s[0].node,
            r.node_id,
            "{}",
            fmt_records(std::slice::from_ref(r))
        );
        assert_eq!(
            Some(s[0].fence.as_str()),
            r.fence.map(|f| f.to_string()).as_deref()
        );
    }
    assert!(
        recs.iter()
            .any(|r| r.node_id == faulty_id && r.status == RunStatus::Lost),
        "the faulty node's claimed instant has no `lost` record:\n{}",
        fmt_records(&recs)
    );
    // Fences grow with the instants.
    let fences: Vec<u64> = ledger_by_t
        .values()
        .filter_map(|s| s[0].fence.parse().ok())
        .collect();
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fences not increasing: {fences:?}"
    );
    eprintln!(
        "cluster test: {} instants of the `one` job, {} records, {:?} wall time",
        ledger_by_t.len(),
        recs.len(),
        started.elapsed()
    );
}
