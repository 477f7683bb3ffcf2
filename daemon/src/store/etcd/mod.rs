//! Cluster mode's coordination store on etcd (DESIGN §1, §3, §4).
//!
//! Guarantees:
//! - jobs live under `job/<id>`; a job's revision is its key's
//!   `mod_revision`, so every node schedules from the same numbers and a
//!   claim made from an older version fails;
//! - every node follows `job/` with require-leader; a broken watch re-reads
//!   everything ([`follow`]) and the last known job set is mirrored, with
//!   the revision it is as of, into the state dir's SQLite file (so `all`
//!   jobs go on while etcd is unreachable, also across a restart);
//! - a `one` instant is decided by the single transaction of DESIGN §3 on
//!   `claim/<job>`, comparing the watermark, the job's revision and this
//!   node's lease; an ambiguous reply is resolved by reading the nonce back;
//!   the winner's fence is the transaction's revision;
//! - `all` jobs never write to etcd at fire time: their watermarks and
//!   claims are local (SQLite, with the first record in the spool).

mod audited;
pub mod auth;
mod batch;
mod client;
pub mod clock_health;
mod follow;
pub mod keys;
mod leader;
mod members;
mod ops;

pub use auth::EtcdAuth;
pub use client::Etcd;
pub use leader::{Leader, Leadership};
pub use members::{Membership, NodeRecord, RegisterError, Timing};
pub use ops::RunAccepted;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use cronsun_proto::api::{GlobalPause, LastRun, NodeInfo, RunPage, RunQuery};
use cronsun_proto::job::{Concurrency, JobKind};
use cronsun_proto::run::{RunStatus, Trigger};
use cronsun_proto::{ids, Job, RunRecord};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use jiff::Timestamp;
use tokio::sync::{broadcast, mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{error, warn};

use self::follow::{follow, Change, Feed};
use self::keys::{instant_key, Keys, Watermark};
use super::mongo::SpooledCoord;
use super::sqlite::SqliteStore;
use super::{
    ClaimOutcome, ClaimRequest, CoordOp, CoordStore, Expect, JobEvent, Result, Retention, RunStore,
    StoreError,
};
use crate::config::EtcdSection;
use crate::scheduler::{ClusterView, NodeIdentity};

/// Job events buffered per subscriber.
const EVENT_BUFFER: usize = 4096;
/// `running/` keys deleted per transaction.
const DELETES_PER_TXN: usize = 60;
/// How long finished runs' `running/` keys are collected before one delete.
const DELETE_COALESCE: Duration = Duration::from_millis(250);
/// Lifetime of a `retry/` key (seconds).
const RETRY_KEY_TTL_S: i64 = 24 * 3600;
/// Attempts of one claim whose reply was lost.
const CLAIM_TRIES: usize = 3;
/// Meta key (SQLite) of the etcd revision the mirrored job set is as of.
const MIRROR_REVISION: &str = "etcd_job_revision";

/// Fault point `claim_outcome_unknown`: a claim transaction's reply is
/// dropped after etcd applied it, as a lost connection would (the caller
/// must resolve the outcome by reading its nonce back).
fn reply_lost(r: Result<TxnResponse>) -> Result<TxnResponse> {
    match r {
        Ok(resp) if resp.succeeded() && crate::faults::fails("claim_outcome_unknown") => Err(
            backend("fault point claim_outcome_unknown: the reply was dropped after the commit"),
        ),
        r => r,
    }
}

fn fenced_during_claim() -> StoreError {
    backend("this node fenced itself during the claim (no keep-alive acknowledged in time); not claiming")
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

/// The coordination store of a cluster node.
pub struct EtcdCoord {
    etcd: Etcd,
    keys: Keys,
    node: NodeIdentity,
    member: Arc<Membership>,
    /// `all` jobs' watermarks and claims (and their first records).
    local: SpooledCoord,
    /// The last known job set.
    mirror: Arc<SqliteStore>,
    /// Where a won claim's first record goes (the spool).
    runs: Arc<dyn RunStore>,
    events: broadcast::Sender<JobEvent>,
    /// What claims need of every known job (from the watch).
    known: RwLock<HashMap<String, KnownJob>>,
    pause: watch::Sender<GlobalPause>,
    /// Deletes waiting for the next batch (`running/` keys, `active/` keys).
    finished: Mutex<Vec<TxnOp>>,
    finished_wake: Notify,
    attempts: AtomicU64,
    leadership: Arc<Leadership>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// What a claim needs to know of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KnownJob {
    kind: JobKind,
    revision: u64,
    /// `concurrency = "forbid"`: one run at a time cluster-wide (`active/`).
    forbid: bool,
}

impl KnownJob {
    fn of(j: &Job) -> KnownJob {
        KnownJob {
            kind: j.kind,
            revision: j.revision,
            forbid: j.concurrency == Concurrency::Forbid,
        }
    }
}

/// One claim's part of a claim transaction.
struct ClaimOps {
    /// Watermark below the instant, job at the scheduled revision, and (for
    /// `forbid`) no active run anywhere.
    when: Vec<Compare>,
    /// The watermark put (with its previous value).
    mark: TxnOp,
    /// Keys held under the node's lease: `running/` and `active/`.
    held: Vec<TxnOp>,
}

/// A claim transaction's answer before the forbid rule is applied.
enum Claimed {
    Done(ClaimOutcome),
    /// A previous run of this `forbid` job is still active (its record id).
    Busy(String),
}

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Another live process holds this node id (a configuration problem:
    /// the daemon exits 78 and is not restarted).
    #[error("{0}")]
    IdTaken(String),
    #[error("{0}")]
    Other(String),
}

/// What the daemon hands over to start cluster mode.
pub struct ClusterParts {
    pub info: NodeInfo,
    pub node: NodeIdentity,
    pub mirror: Arc<SqliteStore>,
    pub local: SpooledCoord,
    pub runs: Arc<dyn RunStore>,
    /// Where the other nodes reach this node's API (`http://host:port`).
    pub api_url: String,
    pub clock_gauges: clock_health::ClockGauges,
}

fn parse_job(kv: &KeyValue, keys: &Keys) -> Option<Job> {
    let id = keys.id_in("job/", kv.key())?;
    match serde_json::from_slice::<Job>(kv.value()) {
        Ok(mut j) => {
            j.revision = u64::try_from(kv.mod_revision()).unwrap_or(0);
            Some(j)
        }
        Err(e) => {
            error!(job = %id, "job stored in etcd is unreadable, ignoring it: {e}");
            None
        }
    }
}

fn encode_job(job: &Job) -> Result<String> {
    let mut body = job.clone();
    body.revision = 0; // the key's mod_revision is the revision
    serde_json::to_string(&body).map_err(|e| backend(format!("encode job {:?}: {e}", job.id)))
}

fn check_expect(id: &str, expect: Expect, current: Option<u64>) -> Result<()> {
    match (expect, current) {
        (Expect::Absent, Some(_)) => Err(StoreError::Exists(id.to_string())),
        (Expect::Revision(_), None) => Err(StoreError::NotFound(format!("job {id:?}"))),
        (Expect::Revision(want), Some(have)) if want != have => Err(StoreError::Conflict {
            id: id.to_string(),
            current: have,
        }),
        _ => Ok(()),
    }
}

fn rev(r: u64) -> i64 {
    i64::try_from(r).unwrap_or(i64::MAX)
}

/// The key-values of the `Get` operations of a transaction's reply.
fn gets(resp: &TxnResponse) -> Vec<Option<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().first().cloned()),
            _ => None,
        })
        .collect()
}

impl EtcdCoord {
    /// Connects, registers this node (refused if its id is taken by a live
    /// process), and starts following jobs, peers and the pause switch.
    /// etcd being unreachable is not fatal: the node runs `all` jobs from
    /// the mirrored job set and registers when etcd answers.
    pub async fn start(
        cfg: &EtcdSection,
        p: ClusterParts,
        stop: watch::Receiver<bool>,
    ) -> std::result::Result<Arc<EtcdCoord>, StartError> {
        let etcd = Etcd::connect(cfg).await.map_err(StartError::Other)?;
        let keys = Keys::new(&cfg.prefix);
        let member = Membership::new(
            etcd.clone(),
            keys.clone(),
            Timing {
                ttl: cfg.lease_ttl.0,
                interval: cfg.keepalive_interval(),
                claim_delay: cfg.claim_delay.0,
            },
            p.info.clone(),
            cfg.require_clock_sync,
            cfg.max_skew.0,
            p.clock_gauges,
        );
        ops::load_drain(&etcd, &keys, &member).await;
        match member.register().await {
            Ok(()) => {}
            Err(e @ RegisterError::Taken { .. }) => return Err(StartError::IdTaken(e.to_string())),
            Err(RegisterError::Store(e)) => {
                warn!("etcd is unreachable at start ({e}); running `all` jobs from the last known job set and registering when etcd answers");
            }
        }
        let known = p
            .mirror
            .list_jobs()
            .await
            .map_err(|e| StartError::Other(format!("cannot read the mirrored job set: {e}")))?
            .into_iter()
            .map(|j| (j.id.clone(), KnownJob::of(&j)))
            .collect();
        let leadership = Leadership::new(
            etcd.clone(),
            keys.clone(),
            Leader {
                node: p.node.id.clone(),
                url: p.api_url.clone(),
                fingerprint: p.info.tls_fingerprint.clone(),
            },
            member.clone(),
        );
        let coord = Arc::new(EtcdCoord {
            etcd: etcd.clone(),
            keys: keys.clone(),
            node: p.node,
            member: member.clone(),
            local: p.local,
            mirror: p.mirror,
            runs: p.runs,
            events: broadcast::channel(EVENT_BUFFER).0,
            known: RwLock::new(known),
            pause: watch::channel(GlobalPause::default()).0,
            finished: Mutex::new(Vec::new()),
            finished_wake: Notify::new(),
            attempts: AtomicU64::new(0),
            leadership: leadership.clone(),
            tasks: Mutex::new(Vec::new()),
        });
        let (jobs_tx, jobs_rx) = mpsc::channel(64);
        let (pause_tx, pause_rx) = mpsc::channel(8);
        let tasks = vec![
            tokio::spawn(member.clone().keep_alive(stop.clone())),
            tokio::spawn(member.clone().watch_fence(stop.clone())),
            tokio::spawn(member.clone().refresh(stop.clone())),
            tokio::spawn(member.clone().follow_peers(stop.clone())),
            tokio::spawn(follow(
                etcd.clone(),
                keys.jobs(),
                true,
                jobs_tx,
                stop.clone(),
            )),
            tokio::spawn(coord.clone().apply_jobs(jobs_rx)),
            tokio::spawn(follow(etcd, keys.paused(), false, pause_tx, stop.clone())),
            tokio::spawn(coord.clone().apply_pause(pause_rx)),
            tokio::spawn(coord.clone().delete_finished(stop.clone())),
            tokio::spawn(coord.clone().reconcile_previous_boots()),
            tokio::spawn(leadership.run(stop.clone())),
        ];
        *coord.tasks.lock().unwrap_or_else(|e| e.into_inner()) = tasks;
        Ok(coord)
    }

    /// The global pause switch as etcd has it (changes from any node).
    pub fn pause_feed(&self) -> watch::Receiver<GlobalPause> {
        self.pause.subscribe()
    }

    /// The cluster's admin token: the first node to start writes its own
    /// (create-if-absent); every node then uses that one, so a token works
    /// through any node (requests are proxied to the leader). Returns the
    /// cluster's token and the node that bootstrapped it.
    pub async fn admin_token(&self, mine: &str) -> Result<(String, String)> {
        #[derive(serde::Serialize, serde::Deserialize)]
        struct Bootstrap {
            token: String,
            node: String,
        }
        let key = self.keys.admin_token();
        let body = serde_json::to_string(&Bootstrap {
            token: mine.to_string(),
            node: self.node.id.clone(),
        })
        .map_err(backend)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key.as_str(), body, None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let mut kv = self.etcd.client.kv_client();
        let resp = self.etcd.call("bootstrap admin token", kv.txn(txn)).await?;
        if resp.succeeded() {
            return Ok((mine.to_string(), self.node.id.clone()));
        }
        let b: Bootstrap = gets(&resp)
            .into_iter()
            .flatten()
            .next()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
            .ok_or_else(|| backend(format!("{key} is unreadable")))?;
        Ok((b.token, b.node))
    }

    /// Accounts, tokens, the session key and the audit log of this
    /// cluster (in etcd, shared by every node).
    pub fn auth_store(&self) -> EtcdAuth {
        EtcdAuth::new(self.etcd.clone(), self.keys.clone())
    }

    /// The web leader, if one is known.
    pub fn leader(&self) -> Option<Leader> {
        self.leadership.leader()
    }

    /// Whether this node is the web leader now (not fenced).
    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    /// A live peer's registered facts (its API URL and certificate).
    pub fn peer(&self, id: &str) -> Option<NodeInfo> {
        self.member.peer(id)
    }

    /// Every node of the cluster, alive or not.
    pub async fn nodes(&self) -> Result<Vec<NodeInfo>> {
        self.nodes_with_drains().await
    }

    /// Waits for the background tasks (after the stop signal), then leaves
    /// the cluster (revokes the lease).
    pub async fn stopped(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                warn!("an etcd task did not stop within 5 s");
            }
        }
        self.member.leave().await;
    }

    fn known(&self, id: &str) -> Option<KnownJob> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .copied()
    }

    fn kind_of(&self, id: &str) -> Option<JobKind> {
        self.known(id).map(|k| k.kind)
    }

    // ---- following ----------------------------------------------------------

    /// Applies the job feed: mirror first (durable), then events, so a
    /// scheduler that hears of a revision finds it in the local store.
    async fn apply_jobs(self: Arc<Self>, mut rx: mpsc::Receiver<Feed>) {
        while let Some(feed) = rx.recv().await {
            let (puts, deletes, revision) = match feed {
                Feed::Snapshot { kvs, revision } => {
                    let jobs: Vec<Job> = kvs
                        .iter()
                        .filter_map(|kv| parse_job(kv, &self.keys))
                        .collect();
                    let known = self.known.read().unwrap_or_else(|e| e.into_inner()).clone();
                    let present: std::collections::HashSet<&str> =
                        jobs.iter().map(|j| j.id.as_str()).collect();
                    let deletes: Vec<String> = known
                        .keys()
                        .filter(|id| !present.contains(id.as_str()))
                        .cloned()
                        .collect();
                    let puts: Vec<Job> = jobs
                        .into_iter()
                        .filter(|j| known.get(&j.id).is_none_or(|k| k.revision != j.revision))
                        .collect();
                    (puts, deletes, revision)
                }
                Feed::Events { changes, revision } => {
                    let mut puts = Vec::new();
                    let mut deletes = Vec::new();
                    for c in changes {
                        match c {
                            Change::Put(kv) => puts.extend(parse_job(&kv, &self.keys)),
                            Change::Deleted(k) => {
                                if let Some(id) = self.keys.id_in("job/", &k) {
                                    puts.retain(|j: &Job| j.id != id);
                                    deletes.push(id.to_string());
                                }
                            }
                        }
                    }
                    (puts, deletes, revision)
                }
            };
            if puts.is_empty() && deletes.is_empty() {
                continue;
            }
            if let Err(e) = self
                .mirror
                .mirror_jobs(
                    puts.clone(),
                    deletes.clone(),
                    Some((MIRROR_REVISION.into(), revision.to_string())),
                )
                .await
            {
                error!("cannot save the job set in the state dir: {e}");
            }
            {
                let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
                for id in &deletes {
                    known.remove(id);
                }
                for j in &puts {
                    known.insert(j.id.clone(), KnownJob::of(j));
                }
            }
            for id in deletes {
                let _ = self.events.send(JobEvent::Deleted(id));
            }
            for j in puts {
                let _ = self.events.send(JobEvent::Put(Box::new(j)));
            }
        }
    }

    async fn apply_pause(self: Arc<Self>, mut rx: mpsc::Receiver<Feed>) {
        while let Some(feed) = rx.recv().await {
            let value = match feed {
                Feed::Snapshot { kvs, .. } => kvs.first().map(|kv| kv.value().to_vec()),
                Feed::Events { changes, .. } => match changes.into_iter().last() {
                    Some(Change::Put(kv)) => Some(kv.value().to_vec()),
                    Some(Change::Deleted(_)) => None,
                    None => continue,
                },
            };
            let p = value
                .and_then(|v| serde_json::from_slice::<GlobalPause>(&v).ok())
                .unwrap_or_default();
            // Kept locally too: a node started while etcd is unreachable
            // schedules with the last pause state it knew.
            if let Err(e) = self.mirror.set_global_pause(p.clone()).await {
                warn!("cannot keep the global pause state locally: {e}");
            }
            self.pause.send_if_modified(|cur| {
                let changed = *cur != p;
                *cur = p;
                changed
            });
        }
    }

    // ---- finished runs --------------------------------------------------------

    /// A `one` run ended: its `running/` key goes in the next batch delete.
    /// A `forbid` job's `active/` key goes too, if it still names this run.
    fn run_finished(&self, rec: &RunRecord) {
        let mut ops = vec![TxnOp::delete(
            self.keys.running(&rec.node_id, &rec.run_id),
            None,
        )];
        if self.known(&rec.job_id).is_some_and(|k| k.forbid) {
            let active = self.keys.active(&rec.job_id);
            ops.push(TxnOp::txn(
                Txn::new()
                    .when([Compare::value(
                        active.as_str(),
                        CompareOp::Equal,
                        rec.record_id(),
                    )])
                    .and_then([TxnOp::delete(active, None)]),
            ));
        }
        self.finished
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(ops);
        self.finished_wake.notify_one();
    }

    /// Deletes finished runs' `running/` keys in batches (one revision per
    /// batch, not per run).
    async fn delete_finished(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            let stopping = tokio::select! {
                _ = self.finished_wake.notified() => false,
                _ = stop.wait_for(|s| *s) => true,
            };
            if !stopping {
                tokio::time::sleep(DELETE_COALESCE).await;
            }
            loop {
                let ops: Vec<TxnOp> = {
                    let mut f = self.finished.lock().unwrap_or_else(|e| e.into_inner());
                    let n = f.len().min(DELETES_PER_TXN);
                    f.drain(..n).collect()
                };
                if ops.is_empty() {
                    break;
                }
                let n = ops.len();
                let mut kv = self.etcd.client.kv_client();
                if let Err(e) = self
                    .etcd
                    .call("delete finished runs", kv.txn(Txn::new().and_then(ops)))
                    .await
                {
                    // They carry the node's lease: at worst they go when it does.
                    warn!(n, "cannot delete finished runs' keys: {e}");
                    break;
                }
            }
            if stopping {
                return;
            }
        }
    }

    /// Instants a previous boot of this node claimed but may not have
    /// recorded (it died between the claim and the spool write) get a
    /// `lost` record, so no claimed instant is left without one.
    async fn reconcile_previous_boots(self: Arc<Self>) {
        let me = self.node.id.clone();
        let boot = self.member.boot();
        let mut kv = self.etcd.client.kv_client();
        let resp = match self
            .etcd
            .call(
                "read watermarks",
                kv.get(self.keys.claims(), Some(GetOptions::new().with_prefix())),
            )
            .await
        {
            Ok(r) => r,
            Err(e) => {
                warn!("cannot check this node's earlier claims: {e}");
                return;
            }
        };
        for kv in resp.kvs() {
            let (Some(job_id), Some(w)) = (
                self.keys.id_in("claim/", kv.key()),
                Watermark::decode(kv.value()),
            ) else {
                continue;
            };
            if w.by != me || w.nonce.starts_with(&boot) {
                continue;
            }
            let run_id = ids::scheduled_run_id(job_id, w.instant, None);
            match self.runs.get(&ids::record_id(&run_id, 1)).await {
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => {
                    warn!(run = %run_id, "cannot check an earlier claim's record: {e}");
                    continue;
                }
            }
            let mut rec = RunRecord::new(run_id, 1, job_id, w.instant, RunStatus::Lost);
            rec.node_id = me.clone();
            rec.hostname = self.node.hostname.clone();
            rec.fence = u64::try_from(kv.mod_revision()).ok();
            rec.seq = RunStatus::Lost.seq();
            rec.finished_at = Some(Timestamp::now());
            rec.reason = Some(
                "this node stopped after claiming the instant and before recording its start"
                    .into(),
            );
            warn!(run = %rec.run_id, "recording a claimed but unrecorded instant as lost");
            if let Err(e) = self.runs.write(rec).await {
                error!("cannot record a lost instant: {e}");
            }
        }
    }

    // ---- jobs --------------------------------------------------------------

    async fn read_job(&self, id: &str) -> Result<Option<Job>> {
        let mut kv = self.etcd.client.kv_client();
        let resp = self
            .etcd
            .call("read job", kv.get(self.keys.job(id), None))
            .await?;
        Ok(resp.kvs().first().and_then(|kv| parse_job(kv, &self.keys)))
    }

    /// Current revisions (and creation times) of the batch's jobs.
    async fn currents(&self, ids: &[&str]) -> Result<HashMap<String, Job>> {
        let found = futures::future::try_join_all(ids.iter().map(|id| self.read_job(id))).await?;
        Ok(found
            .into_iter()
            .flatten()
            .map(|j| (j.id.clone(), j))
            .collect())
    }

    /// Writes the batch (checked as a whole first) in transactions that
    /// each compare every job's revision with the one checked; a new job's
    /// watermark is created with it at `now` ([`audited`]).
    async fn write_jobs(&self, batch: &[(Job, Expect)], now: Timestamp) -> Result<Vec<Job>> {
        let ops = batch
            .iter()
            .map(|(j, e)| CoordOp::PutJob(Box::new(j.clone()), *e))
            .collect();
        self.write_audited(ops, None, now).await
    }

    // ---- claims -------------------------------------------------------------

    /// The claim of DESIGN §3 for a `one` job. A `forbid` job whose
    /// previous run is still active anywhere in the cluster has the instant
    /// decided as `skipped` (with the same transaction, minus the run).
    async fn claim_one(&self, req: ClaimRequest) -> Result<ClaimOutcome> {
        let Some(lease) = self.member.lease() else {
            return Err(backend(
                "this node holds no live lease (fenced or not registered); not claiming",
            ));
        };
        // A claim waiting on an unreachable etcd must not hold the scheduler
        // past the self-fence deadline: when the node fences itself, the
        // claim is abandoned (as if the node had died) so the scheduler
        // kills its `one` runs at once.
        let mut fences = self.member.fences();
        tokio::select! {
            r = self.claim_with(req, lease) => r,
            _ = fences.changed() => Err(fenced_during_claim()),
        }
    }

    async fn claim_with(&self, req: ClaimRequest, lease: i64) -> Result<ClaimOutcome> {
        let forbid = self.holds_active(&req);
        match self.try_claim(req.clone(), lease, forbid).await? {
            Claimed::Done(out) => Ok(out),
            Claimed::Busy(holder) => {
                let instant = req.instant;
                let mut rec = req.record.clone();
                rec.status = RunStatus::Skipped;
                rec.seq = RunStatus::Skipped.seq();
                rec.finished_at = Some(Timestamp::now());
                rec.reason = Some(format!(
                    "previous run {holder} still running (concurrency = \"forbid\", cluster-wide)"
                ));
                let skip = ClaimRequest { record: rec, ..req };
                match self.try_claim(skip, lease, false).await? {
                    // Decided here (skipped); nothing for the scheduler to start.
                    Claimed::Done(ClaimOutcome::Won { .. }) => {
                        Ok(ClaimOutcome::Decided { watermark: instant })
                    }
                    Claimed::Done(out) => Ok(out),
                    Claimed::Busy(_) => Err(backend("claim answered busy without forbid")),
                }
            }
        }
    }

    /// A fresh claim nonce, `<boot>.<n>` ([`Watermark::claimed_by_boot`]
    /// reads the boot part back).
    fn next_nonce(&self) -> String {
        let n = self.attempts.fetch_add(1, Ordering::Relaxed);
        format!("{}.{n}", self.member.boot())
    }

    /// What one claim of `req` compares and writes (DESIGN §3), without the
    /// node's lease compare (one per transaction, however many claims).
    fn claim_ops(&self, req: &ClaimRequest, lease: i64, nonce: &str, forbid: bool) -> ClaimOps {
        let claim_key = self.keys.claim(&req.job_id);
        let mark = Watermark {
            instant: req.instant,
            by: self.node.id.clone(),
            nonce: nonce.to_string(),
            clock_ms: Timestamp::now().as_millisecond(),
        };
        let mut ops = ClaimOps {
            when: vec![
                Compare::value(
                    claim_key.as_str(),
                    CompareOp::Less,
                    instant_key(req.instant),
                ),
                Compare::mod_revision(
                    self.keys.job(&req.job_id),
                    CompareOp::Equal,
                    rev(req.job_revision),
                ),
            ],
            mark: TxnOp::put(
                claim_key,
                mark.encode(),
                Some(PutOptions::new().with_prev_key()),
            ),
            held: Vec::new(),
        };
        if req.record.status == RunStatus::Running {
            ops.held.push(TxnOp::put(
                self.keys.running(&self.node.id, &req.record.run_id),
                req.record.record_id(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        if forbid {
            let active_key = self.keys.active(&req.job_id);
            ops.when.push(Compare::create_revision(
                active_key.as_str(),
                CompareOp::Equal,
                0,
            ));
            ops.held.push(TxnOp::put(
                active_key,
                req.record.record_id(),
                Some(PutOptions::new().with_lease(lease)),
            ));
        }
        ops
    }

    /// The node's lease compare every claim transaction carries once.
    fn lease_compare(&self, lease: i64) -> Compare {
        Compare::lease(self.keys.node(&self.node.id), CompareOp::Equal, lease)
    }

    /// One claim transaction (retried with the same nonce when the reply
    /// is lost; the nonce read back tells whether it was applied).
    async fn try_claim(&self, req: ClaimRequest, lease: i64, forbid: bool) -> Result<Claimed> {
        let nonce = self.next_nonce();
        let claim_key = self.keys.claim(&req.job_id);
        let ops = self.claim_ops(&req, lease, &nonce, forbid);
        let mut when = ops.when;
        when.push(self.lease_compare(lease));
        let mut then = vec![ops.mark];
        then.extend(ops.held);
        let mut otherwise = vec![
            TxnOp::get(claim_key.as_str(), None),
            TxnOp::get(self.keys.job(&req.job_id), None),
        ];
        if forbid {
            otherwise.push(TxnOp::get(self.keys.active(&req.job_id), None));
        }
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let mut kv = self.etcd.client.kv_client();
        let mut last_err = None;
        for _ in 0..CLAIM_TRIES {
            match reply_lost(self.etcd.call("claim", kv.txn(txn.clone())).await) {
                Ok(resp) => return self.claim_answer(req, &resp, lease).await,
                Err(e) => {
                    // Ambiguous: the transaction may have been applied.
                    warn!(job = %req.job_id, instant = %req.instant, "claim reply lost, reading the watermark back: {e}");
                    if let Ok(r) = self
                        .etcd
                        .call("read claim", kv.get(claim_key.as_str(), None))
                        .await
                    {
                        if let Some(kv) = r.kvs().first() {
                            if let Some(w) = Watermark::decode(kv.value()) {
                                if w.claimed_by_boot(&self.member.boot(), req.instant) {
                                    let fence = u64::try_from(kv.mod_revision()).unwrap_or(0);
                                    return Ok(Claimed::Done(self.won(req, fence, None).await?));
                                }
                                if w.instant >= req.instant {
                                    return Ok(Claimed::Done(ClaimOutcome::Decided {
                                        watermark: w.instant,
                                    }));
                                }
                            }
                        }
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| backend("claim failed")))
    }

    async fn claim_answer(
        &self,
        req: ClaimRequest,
        resp: &TxnResponse,
        lease: i64,
    ) -> Result<Claimed> {
        if resp.succeeded() {
            let fence = resp.header().map_or(0, |h| h.revision());
            let previous = resp.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Put(p) => p.prev_key().and_then(|kv| Watermark::decode(kv.value())),
                _ => None,
            });
            let out = self
                .won(
                    req,
                    u64::try_from(fence).unwrap_or(0),
                    previous.map(|w| w.instant),
                )
                .await?;
            return Ok(Claimed::Done(out));
        }
        let got = gets(resp);
        let claim = got.first().cloned().flatten();
        let job = got.get(1).cloned().flatten();
        let active = got.get(2).cloned().flatten();
        let job_ok = job.is_some_and(|kv| kv.mod_revision() == rev(req.job_revision));
        let mark = claim
            .as_ref()
            .and_then(|kv| Watermark::decode(kv.value()).map(|w| (w, kv.mod_revision())));
        match mark {
            Some((w, mod_rev)) if w.claimed_by_boot(&self.member.boot(), req.instant) => {
                // An earlier try of this claim was applied (this try, or an
                // earlier claim of the instant whose outcome was unknown).
                let out = self.won(req, u64::try_from(mod_rev).unwrap_or(0), None).await?;
                Ok(Claimed::Done(out))
            }
            Some((w, _)) if w.instant >= req.instant => Ok(Claimed::Done(ClaimOutcome::Decided {
                watermark: w.instant,
            })),
            _ if !job_ok => Ok(Claimed::Done(ClaimOutcome::JobChanged)),
            None => {
                // The job exists but has no watermark (written by hand or by
                // an older version): create one just before this instant.
                let before = req.instant - jiff::SignedDuration::from_nanos(1);
                self.init_watermark(&req.job_id, before).await?;
                Err(backend(format!(
                    "job {:?} had no watermark; created one, the claim is retried",
                    req.job_id
                )))
            }
            Some(_) if active.is_some() => Ok(Claimed::Busy(
                active
                    .map(|kv| String::from_utf8_lossy(kv.value()).into_owned())
                    .unwrap_or_default(),
            )),
            Some(_) => Err(backend(format!(
                "lease {lease:x} of node {} is no longer the registered one; not claiming until registered again",
                self.node.id
            ))),
        }
    }

    /// A claim won: the first record (with its fence) goes to the spool.
    async fn won(
        &self,
        req: ClaimRequest,
        fence: u64,
        previous: Option<Timestamp>,
    ) -> Result<ClaimOutcome> {
        let mut rec = req.record;
        rec.fence = Some(fence);
        self.runs.write(rec).await?;
        Ok(ClaimOutcome::Won { fence, previous })
    }

    async fn init_watermark(&self, job_id: &str, t: Timestamp) -> Result<()> {
        let key = self.keys.claim(job_id);
        let mark = Watermark {
            instant: t,
            by: "created".into(),
            nonce: String::new(),
            clock_ms: Timestamp::now().as_millisecond(),
        };
        let mut kv = self.etcd.client.kv_client();
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, mark.encode(), None)]);
        self.etcd.call("create watermark", kv.txn(txn)).await?;
        Ok(())
    }

    /// Reads a job the watch has not delivered yet; if it is at `revision`,
    /// mirrors it (so a local claim can find it) and returns its kind.
    async fn learn(&self, job_id: &str, revision: u64) -> Result<Option<JobKind>> {
        let Some(job) = self.read_job(job_id).await? else {
            return Ok(None);
        };
        if job.revision != revision {
            return Ok(None);
        }
        let known = KnownJob::of(&job);
        self.mirror.mirror_jobs(vec![job], vec![], None).await?;
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(job_id.to_string(), known);
        Ok(Some(known.kind))
    }

    async fn one_watermark(&self, job_id: &str) -> Result<Option<Timestamp>> {
        let mut kv = self.etcd.client.kv_client();
        let resp = self
            .etcd
            .call("read watermark", kv.get(self.keys.claim(job_id), None))
            .await?;
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| Watermark::decode(kv.value()))
            .map(|w| w.instant))
    }
}

#[async_trait]
impl CoordStore for EtcdCoord {
    /// From etcd; from the mirrored job set while etcd is unreachable.
    async fn list_jobs(&self) -> Result<Vec<Job>> {
        let mut kv = self.etcd.client.kv_client();
        match self
            .etcd
            .call(
                "list jobs",
                kv.get(self.keys.jobs(), Some(GetOptions::new().with_prefix())),
            )
            .await
        {
            Ok(resp) => Ok(resp
                .kvs()
                .iter()
                .filter_map(|kv| parse_job(kv, &self.keys))
                .collect()),
            Err(e) => {
                warn!("{e}; using the last known job set from the state dir");
                self.mirror.list_jobs().await
            }
        }
    }

    async fn get_job(&self, id: &str) -> Result<Option<Job>> {
        self.read_job(id).await
    }

    async fn put_job(&self, job: Job, expect: Expect, now: Timestamp) -> Result<Job> {
        let mut out = self.put_jobs(vec![(job, expect)], now).await?;
        out.pop().ok_or_else(|| backend("no job written"))
    }

    /// All or nothing while the batch fits one transaction (120 operations:
    /// ~60 new jobs or ~120 updates); larger batches are checked as a whole
    /// first, then written one transaction at a time ([`audited`]).
    async fn put_jobs(&self, jobs: Vec<(Job, Expect)>, now: Timestamp) -> Result<Vec<Job>> {
        // `Any` writes race only with other writers: retry those a little.
        let retry = jobs.iter().all(|(_, e)| *e == Expect::Any);
        let mut tries = 0;
        loop {
            match self.write_jobs(&jobs, now).await {
                Err(StoreError::Conflict { .. }) if retry && tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    async fn delete_job(&self, id: &str, expect: Expect) -> Result<()> {
        let cur = self.read_job(id).await?;
        let Some(cur) = cur else {
            return Err(StoreError::NotFound(format!("job {id:?}")));
        };
        check_expect(id, expect, Some(cur.revision))?;
        let (compare, deletes) = self.job_delete(id, cur.revision);
        let txn = Txn::new().when([compare]).and_then(deletes);
        let mut kv = self.etcd.client.kv_client();
        let resp = self.etcd.call("delete job", kv.txn(txn)).await?;
        if !resp.succeeded() {
            let current = self.read_job(id).await?.map_or(0, |j| j.revision);
            return Err(StoreError::Conflict {
                id: id.to_string(),
                current,
            });
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.events.subscribe()
    }

    async fn watermark(&self, job_id: &str) -> Result<Option<Timestamp>> {
        match self.kind_of(job_id) {
            Some(JobKind::All) => self.local.watermark(job_id).await,
            _ => self.one_watermark(job_id).await,
        }
    }

    async fn watermarks(&self) -> Result<HashMap<String, Timestamp>> {
        let mut kv = self.etcd.client.kv_client();
        let mut out: HashMap<String, Timestamp> = match self
            .etcd
            .call(
                "read watermarks",
                kv.get(self.keys.claims(), Some(GetOptions::new().with_prefix())),
            )
            .await
        {
            Ok(resp) => resp
                .kvs()
                .iter()
                .filter_map(|kv| {
                    let id = self.keys.id_in("claim/", kv.key())?;
                    Some((id.to_string(), Watermark::decode(kv.value())?.instant))
                })
                .collect(),
            Err(e) => {
                warn!("{e}; `one` jobs start from now");
                HashMap::new()
            }
        };
        let local = self.local.watermarks().await?;
        let known = self.known.read().unwrap_or_else(|e| e.into_inner()).clone();
        out.retain(|id, _| known.get(id).is_none_or(|k| k.kind == JobKind::One));
        for (id, t) in local {
            if known.get(&id).is_some_and(|k| k.kind == JobKind::All) {
                out.insert(id, t);
            }
        }
        Ok(out)
    }

    /// Never moves a `one` watermark backwards (an instant claimed ahead
    /// with `lead` stays decided).
    async fn set_watermark(&self, job_id: &str, t: Timestamp) -> Result<()> {
        if self.kind_of(job_id) == Some(JobKind::All) {
            return self.local.set_watermark(job_id, t).await;
        }
        let key = self.keys.claim(job_id);
        let mark = Watermark {
            instant: t,
            by: "resumed".into(),
            nonce: String::new(),
            clock_ms: Timestamp::now().as_millisecond(),
        };
        let txn = Txn::new()
            .when([Compare::value(
                key.as_str(),
                CompareOp::Less,
                instant_key(t),
            )])
            .and_then([TxnOp::put(key.as_str(), mark.encode(), None)])
            .or_else([TxnOp::get(key.as_str(), None)]);
        let mut kv = self.etcd.client.kv_client();
        let resp = self.etcd.call("set watermark", kv.txn(txn)).await?;
        if !resp.succeeded() && gets(&resp).first().is_none_or(Option::is_none) {
            self.init_watermark(job_id, t).await?;
        }
        Ok(())
    }

    async fn claim(&self, req: ClaimRequest) -> Result<ClaimOutcome> {
        let kind = match self.kind_of(&req.job_id) {
            Some(k) => k,
            // The scheduler read the job before the watch brought it here.
            None => match self.learn(&req.job_id, req.job_revision).await? {
                Some(k) => k,
                None => return Ok(ClaimOutcome::JobChanged),
            },
        };
        match kind {
            JobKind::One => self.claim_one(req).await,
            JobKind::All => match self.local.claim(req.clone()).await? {
                ClaimOutcome::JobChanged
                    if self.learn(&req.job_id, req.job_revision).await?.is_some() =>
                {
                    self.local.claim(req).await
                }
                out => Ok(out),
            },
        }
    }

    /// `retry/<record id>`, create-if-absent under a lease of a day: the
    /// node that outlived the run and the node coming back cannot both
    /// start the retry (a day bounds the keys; a node away for longer
    /// finds its run's retry long decided by the leader).
    async fn claim_retry(&self, record_id: &str) -> Result<bool> {
        let mut leases = self.etcd.client.lease_client();
        let lease = self
            .etcd
            .call("grant retry lease", leases.grant(RETRY_KEY_TTL_S, None))
            .await?
            .id();
        let key = self.keys.retry(record_id);
        let txn = Txn::new()
            .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.as_str(),
                self.node.id.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )]);
        let mut kv = self.etcd.client.kv_client();
        let resp = self.etcd.call("claim retry", kv.txn(txn)).await?;
        Ok(resp.succeeded())
    }

    /// As [`EtcdCoord::claim_one`]: abandoned when the node fences itself.
    async fn claim_many(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<ClaimOutcome>> {
        let n = reqs.len();
        let mut fences = self.member.fences();
        tokio::select! {
            r = self.claim_batch(reqs) => r,
            _ = fences.changed() => (0..n)
                .map(|_| Err(fenced_during_claim()))
                .collect(),
        }
    }

    /// From etcd; while etcd is unreachable, the last state this node saw
    /// (kept in its state dir, so also across a restart).
    async fn global_pause(&self) -> Result<GlobalPause> {
        let mut kv = self.etcd.client.kv_client();
        let resp = match self
            .etcd
            .call("read pause", kv.get(self.keys.paused(), None))
            .await
        {
            Ok(resp) => resp,
            Err(e) => {
                warn!("{e}; using the last known global pause state");
                return self.mirror.global_pause().await;
            }
        };
        Ok(resp
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
            .unwrap_or_default())
    }

    async fn set_global_pause(&self, p: GlobalPause) -> Result<()> {
        let body = serde_json::to_string(&p).map_err(backend)?;
        let mut kv = self.etcd.client.kv_client();
        self.etcd
            .call("set pause", kv.put(self.keys.paused(), body, None))
            .await?;
        Ok(())
    }

    /// The ops and the audit entry in one etcd transaction (one per part
    /// of a batch too large for one; see [`audited`]).
    async fn apply_audited(
        &self,
        ops: Vec<CoordOp>,
        audit: cronsun_proto::auth::AuditEntry,
        now: Timestamp,
    ) -> Result<Vec<Job>> {
        self.write_audited(ops, Some(audit), now).await
    }
}

impl ClusterView for EtcdCoord {
    fn claim_offset(&self, job_id: &str, t: Timestamp) -> Option<Duration> {
        self.member.claim_offset(job_id, t)
    }

    fn fences(&self) -> watch::Receiver<u64> {
        self.member.fences()
    }

    fn draining(&self) -> bool {
        self.member.draining()
    }
}

/// The run store of a cluster node: MongoDB through the spool, plus the
/// removal of a `one` run's `running/` key once its final record is stored.
pub struct ClusterRuns {
    pub inner: Arc<dyn RunStore>,
    pub coord: Arc<EtcdCoord>,
}

#[async_trait]
impl RunStore for ClusterRuns {
    async fn write(&self, record: RunRecord) -> Result<bool> {
        let applied = self.inner.write(record.clone()).await?;
        if record.status.is_final()
            && matches!(record.trigger, Trigger::Schedule | Trigger::Manual)
            && record.node_id == self.coord.node.id
            && self.coord.kind_of(&record.job_id) == Some(JobKind::One)
        {
            self.coord.run_finished(&record);
        }
        Ok(applied)
    }
    async fn get(&self, id: &str) -> Result<Option<RunRecord>> {
        self.inner.get(id).await
    }
    async fn search(&self, q: &RunQuery) -> Result<RunPage> {
        self.inner.search(q).await
    }
    async fn running_on(&self, node_id: &str) -> Result<Vec<RunRecord>> {
        self.inner.running_on(node_id).await
    }
    async fn latest_per_job(&self) -> Result<Vec<(String, LastRun)>> {
        self.inner.latest_per_job().await
    }
    async fn retain(&self, policy: Retention, now: Timestamp) -> Result<u64> {
        self.inner.retain(policy, now).await
    }
    async fn daily_stats(
        &self,
        job: Option<&str>,
        from: &str,
        to: &str,
    ) -> Result<crate::store::stats::DailyStats> {
        self.inner.daily_stats(job, from, to).await
    }
    fn healthy(&self) -> std::result::Result<(), String> {
        self.inner.healthy()
    }
}

/// Logs a registration at start.
pub fn describe(cfg: &EtcdSection) -> String {
    format!("etcd {} (prefix {})", cfg.endpoints.join(","), cfg.prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        assert!(check_expect("a", Expect::Absent, None).is_ok());
        assert!(matches!(
            check_expect("a", Expect::Absent, Some(3)),
            Err(StoreError::Exists(_))
        ));
        assert!(matches!(
            check_expect("a", Expect::Revision(2), Some(3)),
            Err(StoreError::Conflict { current: 3, .. })
        ));
        assert!(matches!(
            check_expect("a", Expect::Revision(2), None),
            Err(StoreError::NotFound(_))
        ));
        assert!(check_expect("a", Expect::Any, Some(9)).is_ok());
    }
}
