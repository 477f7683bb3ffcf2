//! Cluster membership and etcd outages, with real processes: a node id held
//! by a live process is refused; `cronsun node ls` tells live nodes from
//! dead ones; an etcd restart breaks no guarantee.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use cronsun_tests::cluster::{wait_for, Cluster, Ledger, LEASE_TTL_S};
use cronsun_tests::daemon::free_port;
use cronsun_tests::{bins, fmt_records, job, run_cli, unique_id, RunStatus};

#[test]
fn a_second_process_with_a_live_node_id_is_refused_and_node_ls_shows_the_dead() {
    let mut c = Cluster::start(2);
    let taken = c.nodes[0].node_id().to_string();

    // A second process claiming node 0's id: exit 78 naming the holder.
    let dir = tempfile::tempdir().expect("temp dir");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let text = c.config().render(
        &taken,
        &dir.path().join("state"),
        listen,
        &dir.path().join("api.sock"),
    );
    let path = dir.path().join("cronsun.toml");
    std::fs::write(&path, text).expect("write config");
    let out = run_cli(
        &bins::cronsund(),
        &["--config", &path.to_string_lossy()],
        &[],
        Duration::from_secs(LEASE_TTL_S + 20),
    );
    assert_eq!(out.status.code(), Some(78), "{out}");
    assert!(
        out.stderr
            .contains("already registered by another live process"),
        "{}",
        out.stderr
    );
    assert!(
        c.registered(&taken),
        "the refused process removed the holder's key"
    );

    // A long `all` run in progress on node 1 when it dies for good.
    let gone = c.nodes[1].node_id().to_string();
    let long = unique_id("long");
    c.nodes[0].create_job(&job(json!({
        "id": long, "kind": "all", "command": ["sleep", "60"],
        "rules": [{ "schedule": "* * * * * *" }],
    })));
    let mut in_progress = None;
    wait_for(Duration::from_secs(20), || {
        in_progress = c.nodes[0]
            .runs(&long)
            .into_iter()
            .find(|r| r.node_id == gone && r.status == RunStatus::Running)
            .map(|r| r.run_id);
        in_progress.is_some()
    });
    let in_progress =
        in_progress.unwrap_or_else(|| panic!("no run of {long} in progress on {gone}"));
    // And a `one` run on node 1 whose job retries lost runs.
    let retried = unique_id("retried");
    c.nodes[0].create_job(&job(json!({
        "id": retried, "command": ["sleep", "60"], "on_lost": "retry", "retries": 1,
        "retry_delay": "1s", "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let started: serde_json::Value = c.nodes[0]
        .api_post(
            &format!("/api/v1/jobs/{retried}/run"),
            &json!({ "node": gone }),
        )
        .expect_status(202)
        .json();
    let retried_run = started["run_id"].as_str().expect("run id").to_string();
    assert!(
        wait_for(Duration::from_secs(20), || c.nodes[0]
            .runs(&retried)
            .iter()
            .any(
                |r| r.run_id == retried_run && r.status == RunStatus::Running
            )),
        "the run-now of {retried} did not start on {gone}"
    );
    c.nodes[0]
        .api_post(
            &format!("/api/v1/jobs/{long}/pause"),
            &json!({"reason": "test"}),
        )
        .expect_status(200);

    // kill -9 of node 1: once its lease expires it is listed dead.
    c.nodes[1].kill9();
    assert!(
        wait_for(Duration::from_secs(LEASE_TTL_S + 5), || !c
            .registered(&gone)),
        "the killed node's lease did not expire"
    );
    c.wait_leader(Duration::from_secs(15));
    let listed = wait_for(Duration::from_secs(5), || {
        let nodes = c.nodes[0].cli_json(&["node", "ls"]);
        let alive = |id: &str| {
            nodes
                .as_array()
                .and_then(|a| a.iter().find(|n| n["id"] == id))
                .map(|n| n["alive"] == true)
        };
        alive(&taken) == Some(true) && alive(&gone) == Some(false)
    });
    assert!(listed, "node ls: {}", c.nodes[0].cli_json(&["node", "ls"]));

    // The leader records the dead node's run `lost` (it never comes back).
    let reconciled = wait_for(Duration::from_secs(LEASE_TTL_S * 4 + 10), || {
        c.nodes[0].runs(&long).iter().any(|r| {
            r.run_id == in_progress
                && r.status == RunStatus::Lost
                && r.reason
                    .as_deref()
                    .is_some_and(|m| m.contains("stopped renewing its etcd lease"))
        })
    });
    assert!(
        reconciled,
        "the dead node's run was not recorded lost:\n{}",
        fmt_records(&c.nodes[0].runs(&long))
    );
    // on_lost = "retry": the leader (node 0, the only one left) runs attempt 2.
    let taken_over = wait_for(Duration::from_secs(LEASE_TTL_S * 4 + 10), || {
        let recs = c.nodes[0].runs(&retried);
        let lost = recs
            .iter()
            .any(|r| r.run_id == retried_run && r.attempt == 1 && r.status == RunStatus::Lost);
        let again = recs
            .iter()
            .any(|r| r.run_id == retried_run && r.attempt == 2 && r.node_id == taken);
        lost && again
    });
    assert!(
        taken_over,
        "the lost run was not retried by the leader:\n{}",
        fmt_records(&c.nodes[0].runs(&retried))
    );
    assert_eq!(
        c.etcd.keys(&format!("{}retry/", c.prefix)).len(),
        1,
        "one retry key per retried attempt"
    );
}

/// The instants a summary record (`<job>~missed~<first>~<last>`) stands for.
fn summary_span(r: &cronsun_tests::RunRecord) -> Option<(Timestamp, Timestamp)> {
    let (_, span) = r.run_id.split_once("~missed~")?;
    let (a, b) = span.split_once('~')?;
    let b = b.split('#').next()?;
    let parse = |k: &str| {
        let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.fZ", k).ok()?;
        jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()
    };
    Some((parse(a)?, parse(b)?))
}

#[test]
fn an_etcd_restart_keeps_all_jobs_firing_and_one_jobs_at_most_once() {
    let mut c = Cluster::start(2);
    let ledger = Ledger::new();
    let tick = unique_id("tick");
    let every = unique_id("every");
    c.nodes[0].create_job(&ledger.job(&tick, "tick", "one", "* * * * * *"));
    c.nodes[0].create_job(&ledger.job(&every, "every", "all", "* * * * * *"));
    assert!(
        wait_for(Duration::from_secs(20), || ledger.starts("tick").len() >= 3),
        "the one job did not start\n{}",
        c.logs()
    );

    // etcd down for a few seconds (longer than the fence deadline).
    c.etcd.kill9();
    let down_at = Timestamp::now();
    let all_went_on = wait_for(Duration::from_secs(10), || {
        let during: BTreeSet<String> = ledger
            .starts("every")
            .into_iter()
            .filter(|s| {
                s.scheduled_at
                    .parse::<Timestamp>()
                    .is_ok_and(|t| t > down_at)
            })
            .map(|s| s.node)
            .collect();
        during.len() == 2
    });
    std::thread::sleep(Duration::from_secs(LEASE_TTL_S)); // the outage itself
    c.etcd.restart();
    assert!(
        all_went_on,
        "`all` jobs stopped while etcd was down\n{}",
        c.logs()
    );

    // After the restart: claims resume, watches re-sync (a new job reaches
    // both nodes), and no instant ever ran twice.
    let up_at = Timestamp::now();
    let late = unique_id("late");
    let create = wait_for(Duration::from_secs(10), || {
        c.nodes[1]
            .api_post(
                "/api/v1/jobs",
                &job(json!({
                    "id": late, "kind": "all", "command": ledger.command("late"), "shell": true,
                    "rules": [{ "schedule": "* * * * * *" }],
                })),
            )
            .status
            == 201
    });
    assert!(
        create,
        "cannot create a job after the etcd restart\n{}",
        c.logs()
    );
    let resumed = wait_for(Duration::from_secs(20), || {
        let tick_after = ledger
            .starts("tick")
            .iter()
            .any(|s| s.scheduled_at.parse::<Timestamp>().is_ok_and(|t| t > up_at));
        let late_nodes: BTreeSet<String> =
            ledger.starts("late").into_iter().map(|s| s.node).collect();
        tick_after && late_nodes.len() == 2
    });
    assert!(
        resumed,
        "the cluster did not recover after the etcd restart\n{}",
        c.logs()
    );
    for (t, s) in ledger.by_instant("tick") {
        assert_eq!(s.len(), 1, "instant {t} ran {} times: {s:?}", s.len());
    }
    // Nothing silently lost: every instant of the `one` job from its first
    // start until after the outage has a final record; those nobody could
    // claim while etcd was down are `missed`, recorded by the next winner.
    let first: Timestamp = ledger
        .by_instant("tick")
        .keys()
        .next()
        .expect("some")
        .parse()
        .expect("ts");
    let through = Timestamp::from_second(up_at.as_second() + 1).expect("ts");
    let mut recs = Vec::new();
    let complete = wait_for(Duration::from_secs(20), || {
        recs = c.nodes[0].runs(&tick);
        let mut t = first;
        let summaries: Vec<(Timestamp, Timestamp)> = recs.iter().filter_map(summary_span).collect();
        while t <= through {
            let rid = cronsun_proto::ids::scheduled_run_id(&tick, t, None);
            let own = recs.iter().any(|r| r.run_id == rid && r.status.is_final());
            if !own && !summaries.iter().any(|(a, b)| *a <= t && t <= *b) {
                return false;
            }
            t += jiff::SignedDuration::from_secs(1);
        }
        true
    });
    assert!(
        complete,
        "an instant from {first} to {through} has no final record:\n{}",
        fmt_records(&recs)
    );
    assert!(
        recs.iter().any(|r| r.status == RunStatus::Missed
            && r.reason
                .as_deref()
                .is_some_and(|m| m.contains("no node claimed it"))),
        "no instant of the outage was recorded missed:\n{}",
        fmt_records(&recs)
    );
}

/// The web leader serves the API through every node (proxied, the token
/// intact); kill -9 of the leader → another node leads and every survivor
/// serves through it within the lease TTL plus the campaign time.
#[test]
fn the_web_leader_serves_through_every_node_and_fails_over() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(15));
    for d in &c.nodes {
        assert_eq!(
            d.served_by("/api/v1/nodes").as_deref(),
            Some(leader.as_str())
        );
        // Node-local answers stay local.
        let h = d.anonymous_get("/healthz");
        assert_eq!(
            h.header("x-cronsun-served-by").as_deref(),
            Some(d.node_id())
        );
    }
    // A write through a non-leader is applied (cookies and Authorization
    // pass through unchanged).
    let li = c.index_of(&leader).expect("leader index");
    let other = (li + 1) % 3;
    let id = unique_id("via-proxy");
    c.nodes[other].create_job(&job(json!({
        "id": id, "command": ["true"], "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    assert!(c.nodes[li].get_job(&id).is_some());

    let killed_at = std::time::Instant::now();
    c.nodes[li].kill9();
    let next = c.wait_leader(Duration::from_secs(LEASE_TTL_S + 10));
    let failover = killed_at.elapsed();
    assert_ne!(next, leader);
    println!("web leader failover after kill -9: {failover:?} (lease TTL {LEASE_TTL_S} s)");
    assert!(c.nodes[(li + 2) % 3].get_job(&id).is_some());
}

/// `concurrency = "forbid"` holds across the cluster: while a run is in
/// progress on any node, no node starts the next instant; those instants
/// are recorded `skipped` naming the run still in progress.
#[test]
fn forbid_holds_across_nodes() {
    let c = Cluster::start(2);
    let ledger = Ledger::new();
    let id = unique_id("forbid");
    c.nodes[0].create_job(&job(json!({
        "id": id, "command": format!("{}; sleep 2.5", ledger.command("forbid")), "shell": true,
        "rules": [{ "schedule": "* * * * * *" }], "concurrency": "forbid",
    })));
    assert!(
        wait_for(Duration::from_secs(30), || ledger.starts("forbid").len()
            >= 4),
        "fewer than 4 starts\n{}",
        c.logs()
    );
    let starts: Vec<Timestamp> = ledger
        .by_instant("forbid")
        .keys()
        .map(|t| t.parse().expect("instant"))
        .collect();
    for w in starts.windows(2) {
        assert!(
            w[1].duration_since(w[0]) >= jiff::SignedDuration::from_secs(3),
            "runs overlapped: {} then {} (each runs 2.5 s)",
            w[0],
            w[1]
        );
    }
    let runs = c.nodes[1].runs(&id);
    assert!(
        runs.iter()
            .any(|r| r.status == cronsun_tests::RunStatus::Skipped
                && r.reason
                    .as_deref()
                    .is_some_and(|s| s.contains("cluster-wide"))),
        "no skipped record:\n{}",
        cronsun_tests::fmt_records(&runs)
    );
}
