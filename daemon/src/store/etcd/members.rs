//! This node's membership (DESIGN §3, §4): registration under `node/<id>`
//! with a lease and a per-boot nonce, keep-alive, self-fencing, and the view
//! of live peers that ranks claim attempts.
//!
//! Guarantees:
//! - registration is create-if-absent: a second process (or a cloned
//!   machine) with the same node id is refused once the first one's lease
//!   has had a full TTL to expire;
//! - when no keep-alive has been acknowledged for `TTL - interval - margin`
//!   (monotonic clock, so a frozen or suspended process counts the time it
//!   was stopped) the node fences itself: the fence epoch moves, the
//!   scheduler kills its `one` runs and no claim is attempted until a new
//!   lease is held. etcd stays the authority: every claim compares the lease;
//! - a node claims only while its clock is healthy: the kernel reports it
//!   synchronised (unless `require_clock_sync = false`) and its measured
//!   offset to its peers is under `max_skew` ([`super::clock_health`]). The
//!   record is refreshed every keep-alive interval with a clock stamp, its
//!   `clock_ok` and the reason when not ok; peers rank only nodes whose
//!   record says `clock_ok`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use cronsun_proto::api::NodeInfo;
use etcd_client::{Compare, CompareOp, GetOptions, PutOptions, Txn, TxnOp, TxnOpResponse};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{error, info, warn};

use super::client::Etcd;
use super::clock_health::{ClockGauges, ClockHealth, Stamp, Verdict};
use super::follow::{follow, Change, Feed};
use super::keys::{rank, Keys};
use crate::store::StoreError;

/// How many ranks try each instant before the rest (DESIGN §3: R = 3).
pub const RANKS: usize = 3;
/// Safety margin of the self-fence deadline.
const FENCE_MARGIN: Duration = Duration::from_millis(250);
/// How often the fence deadline and the clock are checked.
const FENCE_CHECK: Duration = Duration::from_millis(50);

/// The value of `node/<id>` and `nodeinfo/<id>`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NodeRecord {
    #[serde(flatten)]
    pub info: NodeInfo,
    /// Random per boot: tells this process's registration from any other's.
    pub nonce: String,
    /// The clock-offset measurement ([`super::clock_health`]); absent from
    /// nodes of older versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<Stamp>,
}

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("node id {id:?} is already registered by another live process (host {host}, started {started}, boot {nonce}); give this node another [node] id, or stop the other process")]
    Taken {
        id: String,
        host: String,
        started: Timestamp,
        nonce: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Claim timing from `[etcd]`.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub ttl: Duration,
    pub interval: Duration,
    pub claim_delay: Duration,
}

pub struct Membership {
    etcd: Etcd,
    keys: Keys,
    timing: Timing,
    record: Mutex<NodeRecord>,
    lease: AtomicI64,
    last_ack: Mutex<Option<Instant>>,
    fenced: AtomicBool,
    fences: watch::Sender<u64>,
    peers: RwLock<BTreeMap<String, NodeRecord>>,
    require_sync: bool,
    max_skew: Duration,
    clock: ClockHealth,
    /// Drained (`drain/<id>`): starts no new runs, leaves the ranking.
    draining: AtomicBool,
}

fn encode(r: &NodeRecord) -> Result<String, StoreError> {
    serde_json::to_string(r).map_err(|e| StoreError::Backend(format!("encode node record: {e}")))
}

impl Membership {
    pub fn new(
        etcd: Etcd,
        keys: Keys,
        timing: Timing,
        info: NodeInfo,
        require_sync: bool,
        max_skew: Duration,
        gauges: ClockGauges,
    ) -> Arc<Membership> {
        let nonce = hex::encode(rand::random::<[u8; 8]>());
        let clock = ClockHealth::new(&info.id, max_skew, timing.interval * 4, gauges);
        Arc::new(Membership {
            etcd,
            keys,
            timing,
            record: Mutex::new(NodeRecord {
                info,
                nonce,
                clock: None,
            }),
            lease: AtomicI64::new(0),
            last_ack: Mutex::new(None),
            fenced: AtomicBool::new(true),
            fences: watch::channel(0).0,
            peers: RwLock::new(BTreeMap::new()),
            require_sync,
            max_skew,
            clock,
            draining: AtomicBool::new(false),
        })
    }

    fn record(&self) -> NodeRecord {
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn id(&self) -> String {
        self.record().info.id
    }

    /// This boot's nonce (part of every claim nonce, so a restart can tell
    /// its previous boots' claims from its own).
    pub fn boot(&self) -> String {
        self.record().nonce
    }

    /// The live lease, if registered and not fenced.
    pub fn lease(&self) -> Option<i64> {
        let l = self.lease.load(Ordering::SeqCst);
        (l != 0 && !self.fenced.load(Ordering::SeqCst)).then_some(l)
    }

    /// Changes each time this node fences itself.
    pub fn fences(&self) -> watch::Receiver<u64> {
        self.fences.subscribe()
    }

    fn clock_ok(&self) -> bool {
        self.clock_verdict().ok()
    }

    /// The kernel check, then the peer-offset check.
    fn clock_verdict(&self) -> Verdict {
        let peer = self.clock.verdict();
        if self.require_sync && !crate::node::clock_within(self.max_skew) {
            return Verdict {
                problem: Some(format!(
                    "the kernel does not report the clock synchronised with a max error under {} ms",
                    self.max_skew.as_millis()
                )),
                ..peer
            };
        }
        peer
    }

    /// This node's record as published now: clock stamp and health.
    fn current_record(&self) -> NodeRecord {
        let mut rec = self.record();
        let now = crate::clock::system_now();
        let v = self.clock_verdict();
        rec.info.clock_ok = v.ok();
        rec.info.clock_offset_ms = v.offset.map(|o| o.as_millis() as i64);
        rec.info.clock_problem = v.problem;
        rec.info.last_seen = now;
        rec.clock = Some(self.clock.stamp(now.as_millisecond()));
        rec
    }

    /// Registers under `node/<id>` with a fresh lease. If the key is held,
    /// waits up to one TTL (plus a second) for it to expire (a previous boot
    /// that crashed), then refuses.
    pub async fn register(&self) -> Result<(), RegisterError> {
        let ttl_s = i64::try_from(self.timing.ttl.as_secs()).unwrap_or(i64::MAX);
        let mut lc = self.etcd.client.lease_client();
        let grant = self.etcd.call("grant lease", lc.grant(ttl_s, None)).await?;
        let lease = grant.id();
        let granted_at = Instant::now();
        let key = self.keys.node(&self.id());
        let deadline = Instant::now() + self.timing.ttl + Duration::from_secs(1);
        let mut kv = self.etcd.client.kv_client();
        loop {
            let rec = self.current_record();
            let body = encode(&rec)?;
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([
                    TxnOp::put(
                        key.as_str(),
                        body.as_str(),
                        Some(PutOptions::new().with_lease(lease)),
                    ),
                    TxnOp::put(self.keys.node_info(&rec.info.id), body.as_str(), None),
                ])
                .or_else([TxnOp::get(key.as_str(), None)]);
            let resp = self.etcd.call("register node", kv.txn(txn)).await?;
            if resp.succeeded() {
                self.lease.store(lease, Ordering::SeqCst);
                *self.last_ack.lock().unwrap_or_else(|e| e.into_inner()) = Some(granted_at);
                self.unfence();
                info!(node = %rec.info.id, lease, boot = %rec.nonce, "registered in etcd");
                return Ok(());
            }
            let holder = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(g) => g
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice::<NodeRecord>(kv.value()).ok()),
                _ => None,
            });
            if Instant::now() >= deadline {
                let _ = lc.revoke(lease).await;
                let h = holder.map_or_else(
                    || ("unknown".to_string(), Timestamp::UNIX_EPOCH, String::new()),
                    |h| (h.info.hostname, h.info.started_at, h.nonce),
                );
                return Err(RegisterError::Taken {
                    id: rec.info.id,
                    host: h.0,
                    started: h.1,
                    nonce: h.2,
                });
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    fn unfence(&self) {
        if self.fenced.swap(false, Ordering::SeqCst) && *self.fences.borrow() > 0 {
            info!("lease renewed: this node claims `one` instants again");
        }
    }

    fn fence(&self, why: &str) {
        if !self.fenced.swap(true, Ordering::SeqCst) {
            warn!("self-fenced ({why}): killing this node's `one` runs and claiming nothing until the lease is renewed");
            self.fences.send_modify(|e| *e += 1);
        }
    }

    /// Keeps the lease alive (re-registering after it expired) until `stop`.
    pub async fn keep_alive(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *stop.borrow() {
                return;
            }
            if self.lease.load(Ordering::SeqCst) == 0 {
                match self.register().await {
                    Ok(()) => backoff = Duration::from_millis(100),
                    Err(e) => {
                        error!("cannot register in etcd: {e}");
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = stop.wait_for(|s| *s) => return,
                        }
                        backoff = (backoff * 2).min(self.timing.interval);
                        continue;
                    }
                }
            }
            tokio::select! {
                _ = self.renew_until_lost() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    /// Sends keep-alives every interval; returns when the stream broke or
    /// the lease is gone (then `lease` is 0).
    async fn renew_until_lost(&self) {
        let lease = self.lease.load(Ordering::SeqCst);
        let mut lc = self.etcd.client.lease_client();
        let Ok((mut keeper, mut stream)) = self.etcd.call("keep-alive", lc.keep_alive(lease)).await
        else {
            self.expire_if_stale(lease);
            return;
        };
        loop {
            let sent = Instant::now();
            if keeper.keep_alive().await.is_err() {
                self.expire_if_stale(lease);
                return;
            }
            match tokio::time::timeout(self.etcd.request_timeout, stream.message()).await {
                Ok(Ok(Some(r))) if r.ttl() > 0 => {
                    *self.last_ack.lock().unwrap_or_else(|e| e.into_inner()) = Some(sent);
                    self.unfence();
                }
                Ok(Ok(Some(_))) => {
                    warn!(lease, "the node's lease expired in etcd; registering again");
                    self.lease.store(0, Ordering::SeqCst);
                    self.fence("lease expired");
                    return;
                }
                _ => {
                    self.expire_if_stale(lease);
                    return;
                }
            }
            tokio::time::sleep_until((sent + self.timing.interval).into()).await;
        }
    }

    /// After a failed renewal: a lease older than its TTL is surely gone.
    fn expire_if_stale(&self, lease: i64) {
        let last = *self.last_ack.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|a| a.elapsed() > self.timing.ttl) {
            warn!(
                lease,
                "no keep-alive acknowledged for a whole TTL; registering again"
            );
            let _ = self
                .lease
                .compare_exchange(lease, 0, Ordering::SeqCst, Ordering::SeqCst);
            self.fence("lease expired");
        }
    }

    /// Every keep-alive interval: re-judges the clock (an alert when its
    /// health changes) and re-writes `node/<id>` with a fresh clock stamp.
    pub async fn refresh(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let mut was: Option<bool> = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timing.interval) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            self.judge_peers();
            let v = self.clock_verdict();
            self.clock.set_healthy(v.ok());
            if was != Some(v.ok()) {
                match &v.problem {
                    Some(p) => {
                        warn!(offset = ?v.offset, "clock unhealthy: {p}; this node claims no `one` instants until it is healthy")
                    }
                    None if was.is_some() => {
                        info!(offset = ?v.offset, "clock healthy again: this node claims `one` instants again")
                    }
                    None => {}
                }
                was = Some(v.ok());
            }
            if let Some(lease) = self.lease() {
                if let Err(e) = self.publish(lease).await {
                    warn!("cannot refresh the node record: {e}");
                }
            }
        }
    }

    /// Re-evaluates the peer-offset verdict against the live peers.
    fn judge_peers(&self) -> Verdict {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        let stamped = peers
            .values()
            .filter(|r| r.clock.is_some())
            .map(|r| r.info.id.as_str());
        self.clock.evaluate(stamped, Instant::now())
    }

    /// Whether this node is drained (starts no new runs).
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Drains or undrains this node: it leaves (or rejoins) the claim
    /// ranking at once, and its `node/` record says so to its peers.
    pub async fn set_draining(&self, on: bool) -> Result<(), StoreError> {
        self.draining.store(on, Ordering::SeqCst);
        self.record
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .info
            .draining = on;
        match self.lease() {
            Some(lease) => self.publish(lease).await,
            None => Ok(()), // registration writes the record with the flag
        }
    }

    /// Re-writes `node/<id>` under the lease.
    async fn publish(&self, lease: i64) -> Result<(), StoreError> {
        let rec = self.current_record();
        let body = encode(&rec)?;
        let key = self.keys.node(&rec.info.id);
        let mut kv = self.etcd.client.kv_client();
        let txn = Txn::new()
            .when([Compare::lease(key.as_str(), CompareOp::Equal, lease)])
            .and_then([TxnOp::put(
                key.as_str(),
                body.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        self.etcd.call("update node", kv.txn(txn)).await?;
        Ok(())
    }

    /// Fences when no keep-alive was acknowledged within the deadline.
    pub async fn watch_fence(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let deadline = self
            .timing
            .ttl
            .saturating_sub(self.timing.interval + FENCE_MARGIN);
        loop {
            tokio::select! {
                _ = tokio::time::sleep(FENCE_CHECK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let last = *self.last_ack.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|a| a.elapsed() > deadline) {
                self.fence("no keep-alive acknowledged within the renew deadline");
            }
        }
    }

    /// Keeps the view of live peers from the `node/` prefix.
    pub async fn follow_peers(self: Arc<Self>, stop: watch::Receiver<bool>) {
        let (tx, mut rx) = mpsc::channel(16);
        let task = tokio::spawn(follow(self.etcd.clone(), self.keys.nodes(), true, tx, stop));
        while let Some(feed) = rx.recv().await {
            let gone = self.apply_peers(feed);
            for r in gone {
                self.record_death(r).await;
            }
        }
        let _ = task.await;
    }

    /// Applies one feed message to the peer view; returns the peers whose
    /// registration disappeared (their lease expired or was revoked).
    fn apply_peers(&self, feed: Feed) -> Vec<NodeRecord> {
        let mut gone = Vec::new();
        let (now, at) = (crate::clock::system_now().as_millisecond(), Instant::now());
        let observe = |r: &NodeRecord| {
            if let Some(s) = &r.clock {
                self.clock.observe(&r.info.id, s, now, at);
            }
        };
        {
            let mut peers = self.peers.write().unwrap_or_else(|e| e.into_inner());
            let parse =
                |kv: &etcd_client::KeyValue| serde_json::from_slice::<NodeRecord>(kv.value()).ok();
            match feed {
                Feed::Snapshot { kvs, .. } => {
                    let before: Vec<String> = peers.keys().cloned().collect();
                    *peers = kvs
                        .iter()
                        .filter_map(parse)
                        .inspect(observe)
                        .map(|r| (r.info.id.clone(), r))
                        .collect();
                    for id in before.iter().filter(|id| !peers.contains_key(*id)) {
                        self.clock.forget(id);
                    }
                }
                Feed::Events { changes, .. } => {
                    for c in changes {
                        match c {
                            Change::Put(kv) => {
                                if let Some(r) = parse(&kv) {
                                    observe(&r);
                                    peers.insert(r.info.id.clone(), r);
                                }
                            }
                            Change::Deleted(k) => {
                                if let Some(id) = self.keys.id_in("node/", &k) {
                                    gone.extend(peers.remove(id));
                                }
                            }
                        }
                    }
                }
            }
        }
        for r in &gone {
            self.clock.forget(&r.info.id);
        }
        self.judge_peers();
        gone
    }

    /// A peer's registration vanished: its `nodeinfo/` says when it was
    /// last seen alive (every node that saw it writes the same thing).
    async fn record_death(&self, mut r: NodeRecord) {
        if r.info.id == self.id() {
            return;
        }
        info!(node = %r.info.id, "node left the cluster (lease expired or revoked)");
        r.info.alive = false;
        r.info.last_seen = Timestamp::now();
        let Ok(body) = encode(&r) else {
            return;
        };
        let mut kv = self.etcd.client.kv_client();
        if let Err(e) = self
            .etcd
            .call(
                "record a node's death",
                kv.put(self.keys.node_info(&r.info.id), body, None),
            )
            .await
        {
            warn!(node = %r.info.id, "cannot record that the node left: {e}");
        }
    }

    /// When this node tries to claim instant `t` of job `job`, relative to
    /// the first-ranked node's attempt; `None`: it does not try (fenced, no
    /// lease, or its clock is not healthy).
    pub fn claim_offset(&self, job: &str, t: Timestamp) -> Option<Duration> {
        self.lease()?;
        if !self.clock_ok() || self.draining() {
            return None;
        }
        let me = self.id();
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        let eligible = peers
            .values()
            .filter(|r| r.info.clock_ok && !r.info.draining && r.info.id != me)
            .map(|r| r.info.id.as_str())
            .chain(std::iter::once(me.as_str()));
        let r = rank(job, t, &me, eligible)?;
        Some(self.timing.claim_delay * u32::try_from(r.min(RANKS)).unwrap_or(u32::MAX))
    }

    /// A live peer's record as last seen.
    pub fn peer(&self, id: &str) -> Option<NodeInfo> {
        let peers = self.peers.read().unwrap_or_else(|e| e.into_inner());
        peers.get(id).map(|r| r.info.clone())
    }

    /// Every node ever registered: live ones from `node/`, the others with
    /// their last known facts (`alive = false`).
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, StoreError> {
        let mut kv = self.etcd.client.kv_client();
        let opts = || Some(GetOptions::new().with_prefix());
        let known = self
            .etcd
            .call("list nodes", kv.get(self.keys.node_infos(), opts()))
            .await?;
        let live = self
            .etcd
            .call("list nodes", kv.get(self.keys.nodes(), opts()))
            .await?;
        let parse =
            |kv: &etcd_client::KeyValue| serde_json::from_slice::<NodeRecord>(kv.value()).ok();
        let mut out: BTreeMap<String, NodeInfo> = BTreeMap::new();
        for r in known.kvs().iter().filter_map(parse) {
            let mut info = r.info;
            info.alive = false;
            out.insert(info.id.clone(), info);
        }
        let now = Timestamp::now();
        for r in live.kvs().iter().filter_map(parse) {
            let mut info = r.info;
            info.alive = true;
            info.last_seen = now;
            out.insert(info.id.clone(), info);
        }
        Ok(out.into_values().collect())
    }

    /// Clean stop: records the last-seen time and revokes the lease, so the
    /// other nodes take over at once instead of after the TTL.
    pub async fn leave(&self) {
        let lease = self.lease.swap(0, Ordering::SeqCst);
        let mut rec = self.record();
        rec.info.last_seen = Timestamp::now();
        rec.info.alive = false;
        if let Ok(body) = encode(&rec) {
            let mut kv = self.etcd.client.kv_client();
            let _ = self
                .etcd
                .call(
                    "record last seen",
                    kv.put(self.keys.node_info(&rec.info.id), body, None),
                )
                .await;
        }
        if lease != 0 {
            let mut lc = self.etcd.client.lease_client();
            if let Err(e) = self.etcd.call("revoke lease", lc.revoke(lease)).await {
                warn!("cannot revoke the node's lease (it expires by itself): {e}");
            }
        }
    }
}
