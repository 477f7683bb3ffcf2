//! The web leader (DESIGN §1, §4): the node holding `<prefix>leader`, a key
//! attached to its node lease, serves the UI and API; every other node
//! proxies to it.
//!
//! Guarantees: at most one key holder at a time (create-if-absent); the
//! leadership ends with the holder's lease (expiry, revocation at a clean
//! stop), and a fenced node does not consider itself leader even while the
//! key still names it, so leader-only duties stop at the renew deadline,
//! before the TTL.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use super::client::Etcd;
use super::follow::{follow, Change, Feed};
use super::keys::Keys;
use super::members::Membership;

/// How often a node without a known leader tries to become it.
const CAMPAIGN_EVERY: Duration = Duration::from_millis(500);

/// Who leads, and where its API listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub node: String,
    /// `http://host:port` or `https://host:port` of its API.
    pub url: String,
    /// SHA-256 fingerprint of the certificate its API serves (TLS only):
    /// the other nodes accept exactly this certificate from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

pub struct Leadership {
    etcd: Etcd,
    keys: Keys,
    me: Leader,
    member: Arc<Membership>,
    current: watch::Sender<Option<Leader>>,
}

impl Leadership {
    pub fn new(etcd: Etcd, keys: Keys, me: Leader, member: Arc<Membership>) -> Arc<Leadership> {
        Arc::new(Leadership {
            etcd,
            keys,
            me,
            member,
            current: watch::channel(None).0,
        })
    }

    /// The leader as last seen in etcd.
    pub fn leader(&self) -> Option<Leader> {
        self.current.borrow().clone()
    }

    /// Whether this node leads now (holds the key and is not fenced).
    pub fn is_leader(&self) -> bool {
        self.member.lease().is_some()
            && self
                .current
                .borrow()
                .as_ref()
                .is_some_and(|l| l.node == self.me.node)
    }

    /// Follows the key and campaigns whenever nobody holds it.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel(8);
        let follower = tokio::spawn(follow(
            self.etcd.clone(),
            self.keys.leader(),
            false,
            tx,
            stop.clone(),
        ));
        let mut tick = tokio::time::interval(CAMPAIGN_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                feed = rx.recv() => match feed {
                    Some(f) => self.apply(f),
                    None => break,
                },
                _ = tick.tick() => {
                    if self.leader().is_none() {
                        self.campaign().await;
                    }
                }
                _ = stop.changed() => break,
            }
        }
        let _ = follower.await;
    }

    fn apply(&self, feed: Feed) {
        let value = match feed {
            Feed::Snapshot { kvs, .. } => kvs.first().map(|kv| kv.value().to_vec()),
            Feed::Events { changes, .. } => match changes.into_iter().last() {
                Some(Change::Put(kv)) => Some(kv.value().to_vec()),
                Some(Change::Deleted(_)) | None => None,
            },
        };
        let leader = value.and_then(|v| serde_json::from_slice::<Leader>(&v).ok());
        self.current.send_if_modified(|cur| {
            if *cur == leader {
                return false;
            }
            match &leader {
                Some(l) if l.node == self.me.node => info!("this node is the web leader"),
                Some(l) => info!(leader = %l.node, url = %l.url, "web leader elected"),
                None => warn!("no web leader; campaigning"),
            }
            *cur = leader;
            true
        });
    }

    /// Create-if-absent of the key under this node's lease.
    async fn campaign(&self) {
        let Some(lease) = self.member.lease() else {
            return;
        };
        let Ok(body) = serde_json::to_string(&self.me) else {
            return;
        };
        let key = self.keys.leader();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                body,
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut kv = self.etcd.client.kv_client();
        if let Err(e) = self.etcd.call("campaign", kv.txn(txn)).await {
            warn!("cannot campaign for web leader: {e}");
        }
    }
}
