//! Three cronsund "hosts", each in a network namespace the test makes
//! (veth pairs on a bridge, private addresses), against one real etcd
//! reached by address over TLS with client certificates. A per-second `one`
//! job runs; one node is cut off by the network (its veth taken down, no
//! signal) while it is first-ranked for an instant and has a run in
//! progress: it self-fences (its `one` runs are killed), the other two run
//! every instant exactly once, and once the link is back it re-registers
//! and runs no instant another node claimed. Every real start is appended
//! by the job to a ledger file.
//!
//! Where namespaces cannot be made (not root, no iproute2), the test says
//! why and passes without running.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use cronsun_proto::ids;
use cronsun_tests::cluster::{node_config_at, wait_for, Cluster, Ledger, Start, LEASE_TTL_S};
use cronsun_tests::etcd::Etcd;
use cronsun_tests::ferret::Ferret;
use cronsun_tests::netns::Netns;
use cronsun_tests::{fmt_records, job, procs, unique_id, Daemon, MarkerGuard, RunStatus};
use cronsund::store::etcd::keys::rank;

const NODES: usize = 3;
const PREFIX: &str = "/cronsun-netns/";

fn by_instant(ledger: &Ledger) -> BTreeMap<Timestamp, Vec<Start>> {
    let mut m: BTreeMap<Timestamp, Vec<Start>> = BTreeMap::new();
    for s in ledger.starts("tick") {
        let t = s
            .scheduled_at
            .parse()
            .unwrap_or_else(|e| panic!("ledger instant {:?}: {e}", s.scheduled_at));
        m.entry(t).or_default().push(s);
    }
    m
}

/// Job processes the node `id` started that are still alive.
fn job_processes(marker: &MarkerGuard, id: &str) -> Vec<procs::ProcInfo> {
    let node = format!("CRONSUN_NODE={id}");
    marker
        .processes()
        .into_iter()
        .filter(|p| {
            std::fs::read(format!("/proc/{}/environ", p.pid))
                .is_ok_and(|e| e.windows(node.len()).any(|w| w == node.as_bytes()))
        })
        .collect()
}

/// etcd over TLS on the hub, FerretDB relayed into each namespace, and one
/// daemon per namespace listening on its host's address.
fn start_cluster(net: &mut Netns) -> Cluster {
    let etcd = Etcd::start_with_tls(IpAddr::V4(net.hub()));
    let ferret = Ferret::start();
    // The run store speaks plaintext on loopback only: relay it from each
    // host's loopback through its veth to the hub.
    let hub_port = cronsun_tests::daemon::free_port();
    let hub_mongo = SocketAddr::new(IpAddr::V4(net.hub()), hub_port);
    let local_mongo = SocketAddr::from(([127, 0, 0, 1], ferret.port()));
    net.relay(None, hub_mongo, local_mongo);
    for i in 0..NODES {
        net.relay(Some(i), local_mongo, hub_mongo);
    }
    let pki = etcd.pki().expect("etcd has a TLS listener").clone();
    let endpoint = etcd.tls_endpoint().expect("TLS endpoint");
    let tls = format!(
        "tls_ca_file = \"{}\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"",
        pki.ca.display(),
        pki.client_cert.display(),
        pki.client_key.display()
    );
    let nodes: Vec<Daemon> = (0..NODES)
        .map(|i| {
            Daemon::start(
                node_config_at(&endpoint, &ferret.uri(), PREFIX, &tls)
                    .set("web", "insecure_plaintext", "true")
                    .listen_ip(IpAddr::V4(net.host(i).addr))
                    .command_prefix(net.exec_prefix(i)),
            )
        })
        .collect();
    Cluster::from_parts(etcd, ferret, PREFIX, nodes)
}

#[test]
fn a_node_cut_off_by_the_network_self_fences_and_the_others_run_every_instant_once() {
    let started = Instant::now();
    let mut net = match Netns::create(NODES) {
        Ok(n) => n,
        Err(why) => {
            eprintln!("SKIPPED cluster_netns: cannot make network namespaces here: {why}");
            return;
        }
    };
    let mut c = start_cluster(&mut net);
    let leader = c.wait_leader(Duration::from_secs(20));
    let ids: Vec<String> = c.nodes.iter().map(|d| d.node_id().to_string()).collect();
    let li = c.index_of(&leader).expect("leader index");
    let ledger = Ledger::new();
    let marker = MarkerGuard::new("netns");
    let tick = unique_id("tick");
    // Each run lasts 4 s, so a node has runs in progress when it is cut.
    c.nodes[li].create_job(&job(json!({
        "id": tick, "command": format!("{}; sleep 4", ledger.command("tick")), "shell": true,
        "rules": [{ "schedule": "* * * * * *" }], "concurrency": "allow", "max_parallel": 10,
        "kill_grace": "1s", "env": marker.env_json(),
    })));
    assert!(
        wait_for(Duration::from_secs(20), || by_instant(&ledger).len() >= 4),
        "the `one` job did not start 4 times: {:?}\n{}",
        ledger.starts("tick"),
        c.logs()
    );

    // ---- cut off a non-leader that has a run in progress and ranks first
    // for one of the next instants ---------------------------------------
    let mut chosen = None;
    let found = wait_for(Duration::from_secs(20), || {
        let now = Timestamp::now();
        let next = Timestamp::from_second(now.as_second() + 1).expect("in range");
        chosen = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != li)
            .find(|(_, id)| {
                !job_processes(&marker, id).is_empty()
                    && (0..3).any(|k| {
                        rank(
                            &tick,
                            next + SignedDuration::from_secs(k),
                            id,
                            ids.iter().map(String::as_str),
                        ) == Some(0)
                    })
            })
            .map(|(i, id)| (i, id.clone()));
        chosen.is_some()
    });
    assert!(found, "no node to cut: {:?}", ledger.starts("tick"));
    let (xi, x) = chosen.expect("chosen");
    let in_progress = job_processes(&marker, &x);
    net.cut(xi);
    let cut_at = Timestamp::now();
    eprintln!(
        "cut off {x} at {cut_at} with {} job process(es) running",
        in_progress.len()
    );

    // It self-fences: its `one` runs are killed while it is cut off.
    let killed = wait_for(Duration::from_secs(LEASE_TTL_S + 5), || {
        job_processes(&marker, &x).is_empty()
    });
    assert!(
        killed,
        "the cut-off node's runs survived: {:?}\n{}",
        job_processes(&marker, &x),
        c.nodes[xi].logs()
    );
    assert!(
        c.nodes[xi].logs().contains("self-fenced"),
        "the cut-off node's log does not say it self-fenced\n{}",
        c.nodes[xi].logs()
    );
    let expired = wait_for(Duration::from_secs(LEASE_TTL_S + 5), || !c.registered(&x));
    assert!(expired, "the cut-off node's lease did not expire");
    // The others go on for a few more instants, then the link comes back.
    let resume_after = cut_at + SignedDuration::from_secs(7);
    assert!(
        wait_for(Duration::from_secs(20), || by_instant(&ledger)
            .range(resume_after..)
            .next()
            .is_some()),
        "nothing ran while {x} was cut off\n{}",
        c.logs()
    );
    net.restore(xi);
    let restored_at = Timestamp::now();
    assert!(
        wait_for(Duration::from_secs(20), || c.registered(&x)),
        "{x} did not register again after the link came back\n{}",
        c.nodes[xi].logs()
    );
    // It takes its share again.
    assert!(
        wait_for(Duration::from_secs(20), || by_instant(&ledger)
            .range(restored_at..)
            .any(|(_, s)| s.iter().any(|s| s.node == x))),
        "{x} ran nothing after it came back: {:?}\n{}",
        ledger.starts("tick"),
        c.nodes[xi].logs()
    );

    // ---- the ledger: every instant exactly once; none on X while cut ----
    let starts = by_instant(&ledger);
    let first = *starts.keys().next().expect("some start");
    let last = Timestamp::now() - SignedDuration::from_secs(2);
    let window_start = cut_at + SignedDuration::from_secs(1);
    let mut x_first_ranked = 0;
    let mut t = first;
    while t <= last {
        let s = starts
            .get(&t)
            .unwrap_or_else(|| panic!("instant {t} never started: {starts:?}"));
        assert_eq!(s.len(), 1, "instant {t} started {} times: {s:?}", s.len());
        if t >= window_start && t <= restored_at {
            assert_ne!(s[0].node, x, "{t} ran on {x} while it was cut off");
            if rank(&tick, t, &x, ids.iter().map(String::as_str)) == Some(0) {
                x_first_ranked += 1;
            }
        }
        t += SignedDuration::from_secs(1);
    }
    assert!(
        x_first_ranked > 0,
        "{x} was first-ranked for no instant while cut off"
    );

    // The run it had in progress is recorded as self-fenced.
    let fenced_start = ledger
        .starts("tick")
        .into_iter()
        .filter(|s| s.node == x)
        .filter_map(|s| s.scheduled_at.parse::<Timestamp>().ok())
        .filter(|t| *t < cut_at)
        .max()
        .expect("a start on the cut-off node before the cut");
    let rid = ids::record_id(&ids::scheduled_run_id(&tick, fenced_start, None), 1);
    let rec = c.nodes[li].wait_for_final(&rid, Duration::from_secs(20));
    assert!(
        rec.status == RunStatus::Killed
            && rec
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("self-fenced")),
        "the cut-off node's run was not recorded as self-fenced:\n{}",
        fmt_records(std::slice::from_ref(&rec))
    );
    eprintln!(
        "netns cluster test: {} instants, {x} cut off for {} ({x_first_ranked} instants it ranked first), {:?} wall time",
        starts.len(),
        restored_at.duration_since(cut_at),
        started.elapsed()
    );
    drop(c);
    drop(net);
}
