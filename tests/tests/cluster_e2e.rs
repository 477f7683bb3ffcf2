//! Cluster mode end to end: three real cronsund processes against one real
//! etcd and one MongoDB-protocol server, on loopback.

use std::time::Duration;

use serde_json::json;

use cronsun_tests::cluster::{wait_for, Cluster, Ledger};
use cronsun_tests::{job, unique_id};

#[test]
fn one_job_runs_once_per_instant_across_the_cluster() {
    let c = Cluster::start(3);
    let ledger = Ledger::new();
    let id = unique_id("tick");
    c.nodes[0].create_job(&job(json!({
        "id": id, "command": ledger.command("tick"), "shell": true,
        "rules": [{ "schedule": "* * * * * *" }],
    })));
    let ok = wait_for(Duration::from_secs(30), || {
        ledger.by_instant("tick").len() >= 10
    });
    assert!(
        ok,
        "fewer than 10 starts: {:?}\n{}",
        ledger.starts("tick"),
        c.logs()
    );
    for (t, starts) in ledger.by_instant("tick") {
        assert_eq!(
            starts.len(),
            1,
            "instant {t} started {} times: {starts:?}",
            starts.len()
        );
    }
    let nodes: std::collections::BTreeSet<String> =
        ledger.starts("tick").into_iter().map(|s| s.node).collect();
    eprintln!("nodes that ran: {nodes:?}");
}
