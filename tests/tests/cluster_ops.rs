//! Node-local operations through etcd, end to end: run-now (`once/`), kill
//! (`kill/`) and drain/undrain (`drain/`) on three real cronsund processes
//! against one real etcd and one MongoDB-protocol server. Every real start
//! is appended by the job itself to a ledger file, so a double start shows
//! even where two starts would share a run record.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cronsun_proto::api::{NodeInfo, RunNowResponse};
use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use cronsun_tests::cluster::{wait_for, Cluster, Ledger, Start};
use cronsun_tests::{job, unique_id, RunStatus};

/// Never fires during the test (manual runs only).
const NEVER: &str = "0 0 1 1 *";

fn parse(t: &str) -> Timestamp {
    t.parse()
        .unwrap_or_else(|e| panic!("ledger instant {t:?}: {e}"))
}

/// Ledger starts of `name` scheduled at or after `from`.
fn starts_since(ledger: &Ledger, name: &str, from: Timestamp) -> Vec<Start> {
    ledger
        .starts(name)
        .into_iter()
        .filter(|s| parse(&s.scheduled_at) >= from)
        .collect()
}

/// Whether etcd's record of `node` says `draining = on` (the node itself
/// applied the drain key: it publishes the flag after switching).
fn published_draining(c: &Cluster, node: &str, on: bool) -> bool {
    c.etcd
        .value(&format!("{}node/{node}", c.prefix))
        .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
        .is_some_and(|v| v["draining"] == json!(on))
}

#[test]
fn run_now_kill_and_drain_reach_the_right_nodes() {
    let started = Instant::now();
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(15));
    let li = c.index_of(&leader).expect("leader index");
    let other = (li + 1) % 3; // a node that proxies to the leader
    let ids: Vec<String> = c.nodes.iter().map(|d| d.node_id().to_string()).collect();
    let ledger = Ledger::new();
    let once = unique_id("once");
    let each = unique_id("each");
    let sleeper = unique_id("sleeper");
    c.nodes[0].create_job(&job(json!({
        "id": once, "command": ledger.command("once"), "shell": true,
        "rules": [{ "schedule": NEVER }],
    })));
    c.nodes[0].create_job(&job(json!({
        "id": each, "kind": "all", "command": ledger.command("each"), "shell": true,
        "rules": [{ "schedule": NEVER }],
    })));
    c.nodes[0].create_job(&job(json!({
        "id": sleeper, "command": "sleep 60", "shell": true,
        "rules": [{ "schedule": NEVER }], "kill_grace": "1s",
    })));

    // ---- run-now of a `one` job through a non-leader: once, on one node ----
    let r = c.nodes[other].api_post(&format!("/api/v1/jobs/{once}/run"), &json!({}));
    assert_eq!(
        r.header("x-cronsun-served-by").as_deref(),
        Some(leader.as_str())
    );
    let accepted: RunNowResponse = r.expect_status(202).json();
    let request = accepted.request.clone().expect("a cluster request id");
    assert_eq!(
        accepted.run_id,
        format!("{once}~manual~{request}"),
        "{accepted:?}"
    );
    assert_eq!(accepted.run_ids, vec![accepted.run_id.clone()]);
    let rec = c.nodes[other].wait_for_final(&accepted.run_id, Duration::from_secs(20));
    assert_eq!(rec.status, RunStatus::Success, "{rec:?}");
    assert_eq!(rec.trigger, cronsun_tests::Trigger::Manual);
    // Handled: the winner deleted the request, so no other node can claim it.
    let once_prefix = format!("{}once/", c.prefix);
    assert!(
        wait_for(Duration::from_secs(10), || c
            .etcd
            .keys(&once_prefix)
            .is_empty()),
        "once/ keys left: {:?}",
        c.etcd.keys(&once_prefix)
    );
    let starts = ledger.starts("once");
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(starts[0].node, rec.node_id);
    // The claim's revision is the run's fence, as for scheduled `one` runs.
    let fence = rec.fence.expect("a fence").to_string();
    assert_eq!(starts[0].fence, fence);
    // The CLI follows a cluster run-now like a local one, also when the
    // run is on a node that does not serve the API.
    let third = ids[(li + 2) % 3].clone();
    let out = c.nodes[other].cli_within(
        &["job", "run", &once, "--node", &third, "--wait"],
        Duration::from_secs(30),
    );
    out.assert_success();
    assert!(
        out.stderr.contains(&format!("started run {once}~manual~")),
        "{out}"
    );
    assert!(out.stderr.contains("success"), "{out}");
    let starts = ledger.starts("once");
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[1].node, third);

    // A `forbid` run that outlasts the other ranks' attempts: they find it
    // claimed (or its request gone) and leave its record alone.
    let slow = unique_id("slow");
    c.nodes[0].create_job(&job(json!({
        "id": slow, "command": format!("{}; sleep 2", ledger.command("slow")), "shell": true,
        "rules": [{ "schedule": NEVER }],
    })));
    let accepted: RunNowResponse = c.nodes[other]
        .api_post(&format!("/api/v1/jobs/{slow}/run"), &json!({}))
        .expect_status(202)
        .json();
    let rec = c.nodes[other].wait_for_final(&accepted.run_id, Duration::from_secs(20));
    assert_eq!(rec.status, RunStatus::Success, "{rec:?}");
    assert_eq!(
        ledger.starts("slow").len(),
        1,
        "{:?}",
        ledger.starts("slow")
    );

    // ---- run-now of an `all` job: once on each node --------------------------
    let accepted: RunNowResponse = c.nodes[other]
        .api_post(&format!("/api/v1/jobs/{each}/run"), &json!({}))
        .expect_status(202)
        .json();
    assert_eq!(accepted.run_ids.len(), 3, "{accepted:?}");
    for id in &accepted.run_ids {
        let rec = c.nodes[li].wait_for_final(id, Duration::from_secs(20));
        assert_eq!(rec.status, RunStatus::Success, "{rec:?}");
        assert!(id.ends_with(&format!("~{}", rec.node_id)), "{id}: {rec:?}");
    }
    let nodes_ran: Vec<String> = ledger.starts("each").into_iter().map(|s| s.node).collect();
    let distinct: BTreeSet<&String> = nodes_ran.iter().collect();
    assert_eq!(nodes_ran.len(), 3, "{nodes_ran:?}");
    assert_eq!(distinct.len(), 3, "{nodes_ran:?}");

    // ---- kill, through the leader, of a run another node owns ---------------
    let owner = ids[other].clone();
    let accepted: RunNowResponse = c.nodes[li]
        .api_post(
            &format!("/api/v1/jobs/{sleeper}/run"),
            &json!({ "node": owner }),
        )
        .expect_status(202)
        .json();
    let running = c.nodes[li].wait_for_status(
        &accepted.run_id,
        RunStatus::Running,
        Duration::from_secs(20),
    );
    assert_eq!(running.node_id, owner);
    // `forbid` (the default) holds cluster-wide for run-now too: whichever
    // node claims the second request finds the run active and records why.
    let second: RunNowResponse = c.nodes[li]
        .api_post(&format!("/api/v1/jobs/{sleeper}/run"), &json!({}))
        .expect_status(202)
        .json();
    let skipped = c.nodes[li].wait_for_final(&second.run_id, Duration::from_secs(20));
    assert_eq!(skipped.status, RunStatus::Skipped, "{skipped:?}");
    let reason = skipped.reason.clone().unwrap_or_default();
    assert!(
        reason.contains(&running.record_id()) && reason.contains("forbid"),
        "{reason}"
    );
    let killed: serde_json::Value = c.nodes[li]
        .api_post(
            &format!(
                "/api/v1/runs/{}/kill",
                cronsun_tests::daemon::encode_path(&accepted.run_id)
            ),
            &json!({}),
        )
        .expect_status(202)
        .json();
    assert_eq!(killed, json!({ "node": owner, "via": "etcd" }));
    let rec = c.nodes[li].wait_for_final(&accepted.run_id, Duration::from_secs(20));
    assert_eq!(rec.status, RunStatus::Killed, "{rec:?}");
    let kill_prefix = format!("{}kill/", c.prefix);
    assert!(
        wait_for(Duration::from_secs(10), || c
            .etcd
            .keys(&kill_prefix)
            .is_empty()),
        "kill/ keys left: {:?}",
        c.etcd.keys(&kill_prefix)
    );
    // A finished run: 409, as on one node.
    let again = c.nodes[li].api_post(
        &format!(
            "/api/v1/runs/{}/kill",
            cronsun_tests::daemon::encode_path(&accepted.run_id)
        ),
        &json!({}),
    );
    assert_eq!(again.status, 409, "{again}");

    // ---- drain: no new runs there, the others run every instant -------------
    let tick = unique_id("tick");
    let every = unique_id("every");
    c.nodes[0].create_job(&ledger.job(&tick, "tick", "one", "* * * * * *"));
    c.nodes[0].create_job(&ledger.job(&every, "every", "all", "* * * * * *"));
    let drained = ids[other].clone();
    // `window`: an `all` job due once before the drain, then only during it.
    let window = unique_id("window");
    let base = Timestamp::now().as_second();
    let window_last = Timestamp::from_second(base + 11).expect("in range");
    let secs: Vec<String> = [2, 9, 10, 11]
        .iter()
        .map(|d| ((base + d) % 60).to_string())
        .collect();
    c.nodes[0].create_job(&job(json!({
        "id": window, "kind": "all", "command": ledger.command("window"), "shell": true,
        "rules": [{ "schedule": format!("{} * * * * *", secs.join(",")) }],
    })));
    assert!(
        wait_for(Duration::from_secs(15), || ["every", "window"]
            .iter()
            .all(|n| ledger.starts(n).iter().any(|s| s.node == drained))),
        "the `all` jobs never ran on {drained}: {:?} {:?}",
        ledger.starts("every"),
        ledger.starts("window")
    );
    let out = c.nodes[li].cli(&["node", "drain", &drained]);
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        format!("node {drained} draining: it starts no new runs; runs in progress finish"),
        "{out}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || published_draining(
            &c, &drained, true
        )),
        "{drained} did not apply its drain:\n{}",
        c.logs()
    );
    // Instants claimed before the node applied the drain may still start.
    let from = Timestamp::from_second(Timestamp::now().as_second() + 1).expect("in range");
    assert!(
        from < window_last - SignedDuration::from_secs(2),
        "the drain took too long to set up the `window` check (from {from})"
    );
    let listed: Vec<NodeInfo> =
        serde_json::from_value(c.nodes[0].cli_json(&["node", "ls"])).expect("node list");
    let d = listed.iter().find(|n| n.id == drained).expect("listed");
    assert!(d.draining && d.alive, "{d:?}");
    let table = c.nodes[0].cli(&["node", "ls"]);
    assert!(table.stdout.contains("yes (draining)"), "{table}");
    // A run-now avoids it: named → 409 on field `node`; an `all` job → the others.
    let refused = c.nodes[li].api_post(
        &format!("/api/v1/jobs/{once}/run"),
        &json!({ "node": drained }),
    );
    assert_eq!(refused.status, 409, "{refused}");
    assert_eq!(refused.api_error().field.as_deref(), Some("node"));
    let accepted: RunNowResponse = c.nodes[li]
        .api_post(&format!("/api/v1/jobs/{each}/run"), &json!({}))
        .expect_status(202)
        .json();
    assert_eq!(accepted.run_ids.len(), 2, "{accepted:?}");
    assert!(accepted.run_ids.iter().all(|r| !r.ends_with(&drained)));

    let enough = wait_for(Duration::from_secs(20), || {
        starts_since(&ledger, "tick", from).len() >= 6
            && starts_since(&ledger, "window", window_last).len() >= 2
    });
    assert!(
        enough,
        "tick stopped while {drained} drained:\n{}",
        c.logs()
    );
    let until = Timestamp::now() - SignedDuration::from_secs(2);
    for name in ["tick", "every"] {
        let on_drained: Vec<Start> = starts_since(&ledger, name, from)
            .into_iter()
            .filter(|s| s.node == drained)
            .collect();
        assert!(
            on_drained.is_empty(),
            "{name} ran on drained {drained}: {on_drained:?}"
        );
    }
    // Every second from `from` to `until` ran exactly once (`one`) and on
    // both other nodes (`all`).
    let mut t = from;
    while t < until {
        let key = |s: &Start| parse(&s.scheduled_at) == t;
        let ticks: Vec<Start> = ledger.starts("tick").into_iter().filter(key).collect();
        assert_eq!(ticks.len(), 1, "tick at {t}: {ticks:?}");
        let evs: BTreeSet<String> = ledger
            .starts("every")
            .into_iter()
            .filter(key)
            .map(|s| s.node)
            .collect();
        assert_eq!(evs.len(), 2, "every at {t}: {evs:?}");
        t += SignedDuration::from_secs(1);
    }

    // ---- a drain survives a restart of the node ------------------------------
    c.nodes[other].stop();
    c.nodes[other].restart();
    assert!(
        wait_for(Duration::from_secs(15), || c.registered(&drained)),
        "{drained} did not register again:\n{}",
        c.logs()
    );
    // Its first registration already says so (read before registering).
    assert!(
        published_draining(&c, &drained, true),
        "{drained} came back undrained"
    );
    let restarted = Timestamp::now();
    assert!(
        wait_for(Duration::from_secs(15), || {
            starts_since(&ledger, "tick", restarted).len() >= 3
        }),
        "tick stopped after {drained} restarted:\n{}",
        c.logs()
    );
    for name in ["tick", "every"] {
        let on_drained: Vec<Start> = starts_since(&ledger, name, restarted)
            .into_iter()
            .filter(|s| s.node == drained)
            .collect();
        assert!(
            on_drained.is_empty(),
            "{name} ran on {drained} after its restart: {on_drained:?}"
        );
    }

    // ---- undrain: it gets instants again --------------------------------------
    let out = c.nodes[li].cli(&["node", "undrain", &drained]);
    out.assert_success();
    assert_eq!(
        out.stdout.trim(),
        format!("node {drained} undrained: it starts runs again"),
        "{out}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || published_draining(
            &c, &drained, false
        )),
        "{drained} did not apply its undrain:\n{}",
        c.logs()
    );
    let back = Timestamp::now();
    let runs_again = wait_for(Duration::from_secs(20), || {
        ["tick", "every"].iter().all(|n| {
            starts_since(&ledger, n, back)
                .iter()
                .any(|s| s.node == drained)
        })
    });
    assert!(
        runs_again,
        "{drained} got no instants after undrain: tick {:?}",
        starts_since(&ledger, "tick", back)
    );
    for (t, s) in ledger.by_instant("tick") {
        assert_eq!(s.len(), 1, "tick at {t} started {} times: {s:?}", s.len());
    }
    // Drained time is not downtime: `window` fired only while the node was
    // drained; a restart after the undrain must not record it `missed` there.
    let stopped_at = Timestamp::now();
    c.nodes[other].stop();
    c.nodes[other].restart();
    let again = Timestamp::now();
    let mut seen = Vec::new();
    assert!(
        wait_for(Duration::from_secs(15), || {
            seen = c.nodes[li].runs(&every);
            seen.iter()
                .any(|r| r.node_id == drained && r.scheduled_at > again)
        }),
        "{drained} did not run `every` after its restart:\n{}",
        c.logs()
    );
    let missed: Vec<String> = c.nodes[li]
        .runs(&window)
        .into_iter()
        .filter(|r| r.node_id == drained && r.scheduled_at >= from)
        .map(|r| format!("{} {}", r.run_id, r.status))
        .collect();
    assert!(
        missed.is_empty(),
        "drained time taken for downtime on {drained} (restarted at {stopped_at}): {missed:?}"
    );
    let ran: BTreeSet<String> = starts_since(&ledger, "window", from)
        .into_iter()
        .map(|s| s.node)
        .collect();
    assert_eq!(
        ran.len(),
        2,
        "`window` ran on {ran:?} while {drained} drained"
    );
    eprintln!("cluster_ops took {:?}", started.elapsed());
}
