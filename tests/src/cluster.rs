//! A cluster on one machine: a real etcd, a real MongoDB-protocol server
//! (FerretDB) and several real `cronsund` processes with distinct node ids,
//! state dirs and ports, all on loopback.
//!
//! Exactly-once is checked outside the daemons: test jobs append one line
//! per real start to a [`Ledger`] file (`$CRONSUN_SCHEDULED_AT $CRONSUN_NODE
//! $CRONSUN_FENCE`), so a duplicate start shows even where two starts would
//! share one run record.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::time::Duration;

use tempfile::TempDir;

use crate::daemon::{ConfigOverrides, Daemon};
use crate::etcd::Etcd;
use crate::ferret::Ferret;

/// Timing the cluster tests use: short, so failover shows within seconds.
pub const LEASE_TTL_S: u64 = 3;
pub const CLAIM_DELAY_MS: u64 = 300;

/// The config of one cluster node.
pub fn node_config(etcd: &Etcd, mongo_uri: &str, prefix: &str, extra: &str) -> ConfigOverrides {
    node_config_at(&etcd.endpoint(), mongo_uri, prefix, extra)
}

/// [`node_config`] with etcd at `endpoint` (`extra`: more `[etcd]` keys,
/// e.g. TLS files).
pub fn node_config_at(
    endpoint: &str,
    mongo_uri: &str,
    prefix: &str,
    extra: &str,
) -> ConfigOverrides {
    ConfigOverrides::new().extra_toml(&format!(
        "[etcd]\n{extra}\nendpoints = [\"{endpoint}\"]\nprefix = \"{prefix}\"\nlease_ttl = \"{LEASE_TTL_S}s\"\n\
         claim_delay = \"{CLAIM_DELAY_MS}ms\"\nrequest_timeout = \"2s\"\ndial_timeout = \"2s\"\n\
         require_clock_sync = false\n\n\
         [mongodb]\nuri = \"{mongo_uri}\"\ndatabase = \"cronsun\"\nconnect_timeout = \"2s\"\n\
         server_selection_timeout = \"2s\"\n",
    ))
}

/// etcd, FerretDB and the nodes; every process is stopped by pid on drop.
pub struct Cluster {
    pub nodes: Vec<Daemon>,
    pub ferret: Ferret,
    pub etcd: Etcd,
    pub prefix: String,
    etcd_extra: String,
}

impl Cluster {
    #[track_caller]
    pub fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "")
    }

    /// [`Cluster::start`] with extra `[etcd]` keys (TOML lines).
    #[track_caller]
    pub fn start_with(n: usize, etcd_extra: &str) -> Cluster {
        Cluster::start_adjusted(n, etcd_extra, |cfg| cfg)
    }

    /// [`Cluster::start_with`], every node's config changed by `adjust`
    /// (e.g. [`ConfigOverrides::tls_listener`]).
    #[track_caller]
    pub fn start_adjusted(
        n: usize,
        etcd_extra: &str,
        adjust: impl Fn(ConfigOverrides) -> ConfigOverrides,
    ) -> Cluster {
        let etcd = Etcd::start();
        let ferret = Ferret::start();
        let prefix = "/cronsun-test/".to_string();
        let mut c = Cluster {
            nodes: Vec::new(),
            ferret,
            etcd,
            prefix,
            etcd_extra: etcd_extra.to_string(),
        };
        for _ in 0..n {
            c.add_node(&adjust);
        }
        c.wait_leader(Duration::from_secs(15));
        c.wait_clocks_healthy(Duration::from_secs(15));
        c
    }

    /// Waits until every running node's record says its clock is healthy
    /// (a node that just joined claims nothing until it has measured its
    /// offset to its peers); panics otherwise.
    #[track_caller]
    pub fn wait_clocks_healthy(&mut self, timeout: Duration) {
        let ids: Vec<String> = self
            .nodes
            .iter_mut()
            .filter_map(|d| d.is_running().then(|| d.node_id().to_string()))
            .collect();
        let ok = wait_for(timeout, || {
            ids.iter().all(|id| {
                self.etcd
                    .value(&format!("{}node/{id}", self.prefix))
                    .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
                    .is_some_and(|r| r["clock_ok"] == true)
            })
        });
        assert!(ok, "not every node's clock became healthy\n{}", self.logs());
    }

    /// A cluster of nodes the caller started (e.g. in network namespaces).
    pub fn from_parts(etcd: Etcd, ferret: Ferret, prefix: &str, nodes: Vec<Daemon>) -> Cluster {
        Cluster {
            nodes,
            ferret,
            etcd,
            prefix: prefix.to_string(),
            etcd_extra: String::new(),
        }
    }

    /// The web leader's node id, as the `leader` key says.
    pub fn leader(&self) -> Option<String> {
        let v = self.etcd.value(&format!("{}leader", self.prefix))?;
        let j: serde_json::Value = serde_json::from_str(&v).ok()?;
        j["node"].as_str().map(str::to_string)
    }

    /// Waits until a live node leads and every running node's API answers
    /// (served by the leader); panics otherwise.
    #[track_caller]
    pub fn wait_leader(&mut self, timeout: Duration) -> String {
        let mut leader = None;
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].is_running())
            .collect();
        let ok = wait_for(timeout, || {
            leader = self.leader();
            let Some(l) = &leader else { return false };
            running
                .iter()
                .all(|&i| self.nodes[i].served_by("/api/v1/nodes").as_deref() == Some(l.as_str()))
        });
        assert!(
            ok,
            "no web leader serving every node's API (leader key: {leader:?})\n{}",
            self.logs()
        );
        leader.unwrap_or_default()
    }

    /// The config every node gets, plus `extra` (environment, e.g. faults).
    pub fn config(&self) -> ConfigOverrides {
        node_config(
            &self.etcd,
            &self.ferret.uri(),
            &self.prefix,
            &self.etcd_extra,
        )
    }

    /// Starts one more node with the cluster config changed by `adjust`
    /// (e.g. an environment variable); returns its index.
    #[track_caller]
    pub fn add_node(&mut self, adjust: impl FnOnce(ConfigOverrides) -> ConfigOverrides) -> usize {
        self.nodes.push(Daemon::start(adjust(self.config())));
        self.nodes.len() - 1
    }

    /// Index of the node with this id.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.nodes.iter().position(|d| d.node_id() == id)
    }

    /// Whether `node/<id>` is registered (its lease alive).
    pub fn registered(&self, id: &str) -> bool {
        self.etcd
            .value(&format!("{}node/{id}", self.prefix))
            .is_some()
    }

    /// Every node's logs, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(Daemon::logs)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// One line per real start, appended by the job itself.
pub struct Ledger {
    dir: TempDir,
}

/// One start as the job saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Start {
    pub scheduled_at: String,
    pub node: String,
    pub fence: String,
}

impl Ledger {
    /// Job `id` of `kind` (`one`/`all`) on `schedule`, appending each real
    /// start to this ledger under `name`.
    pub fn job(&self, id: &str, name: &str, kind: &str, schedule: &str) -> crate::Job {
        crate::job(serde_json::json!({
            "id": id, "kind": kind, "command": self.command(name), "shell": true,
            "rules": [{ "schedule": schedule }],
        }))
    }

    #[track_caller]
    pub fn new() -> Ledger {
        let dir = tempfile::Builder::new()
            .prefix("cronsun-ledger-")
            .tempdir()
            .expect("create the ledger dir");
        // Jobs run as the test's user or a configured one: let them write.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o1777))
            .expect("chmod the ledger dir");
        Ledger { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The shell command that appends a start to ledger `name`.
    pub fn command(&self, name: &str) -> String {
        format!(
            "echo \"$CRONSUN_SCHEDULED_AT $CRONSUN_NODE $CRONSUN_FENCE\" >> {}",
            self.path(name).display()
        )
    }

    pub fn starts(&self, name: &str) -> Vec<Start> {
        std::fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                Some(Start {
                    scheduled_at: it.next()?.to_string(),
                    node: it.next()?.to_string(),
                    fence: it.next().unwrap_or_default().to_string(),
                })
            })
            .collect()
    }

    /// Starts grouped by instant.
    pub fn by_instant(&self, name: &str) -> BTreeMap<String, Vec<Start>> {
        let mut m: BTreeMap<String, Vec<Start>> = BTreeMap::new();
        for s in self.starts(name) {
            m.entry(s.scheduled_at.clone()).or_default().push(s);
        }
        m
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new()
    }
}

/// Polls until `pred` holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    crate::wait::poll_until(timeout, Duration::from_millis(100), || pred().then_some(())).is_some()
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.ferret.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "===== FerretDB log (last 60 lines) =====\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    }
}
