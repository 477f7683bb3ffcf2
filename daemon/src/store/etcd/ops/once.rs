//! Run-now through etcd: `once/<request>` (DESIGN §4).
//!
//! The API node writes the request under a lease of [`ONCE_TTL`]. For an
//! `all` job it lists the live, undrained nodes as targets; each runs
//! `<job>~manual~<request>~<node>` once. For a `one` job the named node, or
//! else the nodes in rendezvous order (the claim ranking: rank × `claim_delay`
//! after the request, so a dead first-ranked node costs one `claim_delay`),
//! race for `once/<request>/claimed`; the winner runs
//! `<job>~manual~<request>` and deletes the request. A node that sees a
//! request again (re-read after a broken watch) starts nothing new: its run
//! id is fixed and the `running` write of an existing record does not apply.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cronsun_proto::job::JobKind;
use cronsun_proto::{ids, Job};
use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::super::follow::Feed;
use super::super::gets;
use super::super::EtcdCoord;
use super::{puts, unavailable};
use crate::scheduler::{records, RequestError, Requested, SchedulerHandle};
use crate::store::CoordStore;
use cronsun_proto::run::{RunStatus, Trigger};

/// Lease of a request and its claim (seconds): a node that was down when
/// the request was written and returns within it still runs it (late: its
/// record's `scheduled_at` is the request time); after it, nobody does.
pub const ONCE_TTL: i64 = 60;

/// How often, and how far apart, a busy `forbid` job's request is tried
/// again before it is recorded `skipped` (longer than the batching of the
/// deletes of ended runs' keys).
const BUSY_RETRIES: u32 = 2;
const BUSY_PAUSE: Duration = Duration::from_millis(400);

/// The value of `once/<request>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OnceRequest {
    pub request: String,
    pub job: String,
    /// The job's revision (`mod_revision` of `job/<id>`) when asked for.
    pub job_revision: u64,
    pub kind: JobKind,
    /// `concurrency = "forbid"` (cluster-wide for `one` jobs, `active/`).
    #[serde(default)]
    pub forbid: bool,
    pub requester: String,
    /// `one` jobs: the node the caller named; else the ranking decides.
    #[serde(default)]
    pub node: Option<String>,
    /// `all` jobs: the live, undrained nodes when asked for.
    #[serde(default)]
    pub targets: Vec<String>,
    pub created_at: Timestamp,
}

impl OnceRequest {
    /// The run this node starts for the request.
    pub fn run_id(&self, node: &str) -> String {
        match self.kind {
            JobKind::All => ids::manual_node_run_id(&self.job, &self.request, node),
            JobKind::One => ids::manual_run_id(&self.job, &self.request),
        }
    }

    /// Every run the request starts (what the API answers).
    pub fn run_ids(&self) -> Vec<String> {
        match self.kind {
            JobKind::All => self.targets.iter().map(|n| self.run_id(n)).collect(),
            JobKind::One => vec![self.run_id("")],
        }
    }
}

/// A run-now claim's answer.
#[derive(Debug, PartialEq, Eq)]
enum OnceClaim {
    /// The claim transaction's revision (the run's fence).
    Won(u64),
    /// Another node claimed it, or the request is gone.
    Lost,
    /// A `forbid` job with a run active somewhere (its record id).
    Busy(String),
}

/// What a failed run-now claim found.
struct Refusal {
    /// `once/<request>/claimed`: its value and create revision.
    claimed: Option<(String, u64)>,
    request_exists: bool,
    /// `active/<job>`: the record id of the job's run in progress.
    active: Option<String>,
}

impl Refusal {
    /// Someone else claimed it (or an earlier boot of this node did — then
    /// this boot takes it over: the fixed run id makes a second start
    /// impossible, and a run that boot started is recorded `lost` at this
    /// one's start), the request is gone, or a `forbid` job has another run
    /// active (never this request's own run: that one is claimed).
    fn read(self, node: &str, boot: &str, forbid: bool, record_id: &str) -> OnceClaim {
        if let Some((value, rev)) = self.claimed {
            // `<node>|<boot>`, or `<node>|<boot>|skipped` for a decided skip.
            let parts: Vec<&str> = value.split('|').collect();
            return match parts.as_slice() {
                [n, b] if *n == node && *b != boot => OnceClaim::Won(rev),
                _ => OnceClaim::Lost,
            };
        }
        match self.active {
            Some(a) if self.request_exists && forbid && a != record_id => OnceClaim::Busy(a),
            _ => OnceClaim::Lost,
        }
    }
}

/// What the API answers to a cluster run-now.
#[derive(Clone, Debug)]
pub struct RunAccepted {
    pub request: String,
    pub run_ids: Vec<String>,
}

/// A fresh request id: the time plus randomness (no `/`, URL-safe).
fn request_id(now: Timestamp) -> String {
    format!(
        "{}-{}",
        ids::instant_key(now),
        hex::encode(rand::random::<[u8; 3]>())
    )
}

/// The nodes a request may go to: alive and not drained (and, for `one`
/// jobs, claiming: clock healthy), given `node` if the caller named one.
fn choose_targets(
    nodes: &[cronsun_proto::api::NodeInfo],
    kind: JobKind,
    named: Option<&str>,
) -> Result<Vec<String>, RequestError> {
    let eligible = |n: &&cronsun_proto::api::NodeInfo| {
        n.alive && !n.draining && (kind == JobKind::All || n.clock_ok)
    };
    if let Some(name) = named {
        let n = nodes.iter().find(|n| n.id == name).ok_or_else(|| {
            RequestError::NotFound(format!("node {name:?} is not a node of this cluster"))
        })?;
        if !eligible(&n) {
            let why = if !n.alive {
                "not alive"
            } else if n.draining {
                "draining"
            } else {
                "not claiming (its clock is not healthy)"
            };
            return Err(RequestError::Conflict(format!(
                "node {name:?} is {why}; name another node or leave the choice to the cluster"
            )));
        }
        return Ok(vec![name.to_string()]);
    }
    let out: Vec<String> = nodes
        .iter()
        .filter(eligible)
        .map(|n| n.id.clone())
        .collect();
    if out.is_empty() {
        return Err(RequestError::Conflict(
            "no node can run it now: none is alive, undrained and (for a `one` job) clock-healthy"
                .into(),
        ));
    }
    Ok(out)
}

impl EtcdCoord {
    /// Writes a run-now request for `job`; nodes pick it up from the watch.
    pub async fn request_run(
        &self,
        job: &Job,
        node: Option<&str>,
        requester: &str,
        now: Timestamp,
    ) -> Result<RunAccepted, RequestError> {
        if node.is_some() && job.kind == JobKind::All {
            return Err(RequestError::Conflict(format!(
                "job {:?} is an `all` job: it runs on every node; run it without naming a node",
                job.id
            )));
        }
        let nodes = self.nodes().await.map_err(unavailable)?;
        let targets = choose_targets(&nodes, job.kind, node)?;
        let req = OnceRequest {
            request: request_id(now),
            job: job.id.clone(),
            job_revision: job.revision,
            kind: job.kind,
            forbid: job.concurrency == cronsun_proto::job::Concurrency::Forbid,
            requester: requester.to_string(),
            node: node.map(str::to_string),
            targets: if job.kind == JobKind::All {
                targets
            } else {
                Vec::new()
            },
            created_at: now,
        };
        let body = serde_json::to_string(&req)
            .map_err(|e| RequestError::Unavailable(format!("encode run-now request: {e}")))?;
        let mut lc = self.etcd.client.lease_client();
        let lease = self
            .etcd
            .call("grant run-now lease", lc.grant(ONCE_TTL, None))
            .await
            .map_err(unavailable)?
            .id();
        let mut kv = self.etcd.client.kv_client();
        self.etcd
            .call(
                "write run-now request",
                kv.put(
                    self.keys.once(&req.request),
                    body,
                    Some(PutOptions::new().with_lease(lease)),
                ),
            )
            .await
            .map_err(unavailable)?;
        info!(job = %req.job, request = %req.request, "run-now requested through etcd");
        Ok(RunAccepted {
            run_ids: req.run_ids(),
            request: req.request,
        })
    }

    /// Handles every request seen on `once/` (once each).
    pub(super) async fn follow_once(
        self: Arc<Self>,
        mut rx: mpsc::Receiver<Feed>,
        sched: SchedulerHandle,
        stop: watch::Receiver<bool>,
    ) {
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let forget_after = Duration::from_secs(u64::try_from(2 * ONCE_TTL).unwrap_or(120));
        while let Some(feed) = rx.recv().await {
            seen.retain(|_, at| at.elapsed() < forget_after);
            for kv in puts(feed) {
                let Some(req) = self.parse_once(&kv) else {
                    continue;
                };
                if seen.insert(req.request.clone(), Instant::now()).is_some() {
                    continue;
                }
                let me = self.clone();
                let sched = sched.clone();
                let stop = stop.clone();
                let at = kv.create_revision();
                let lease = kv.lease();
                tokio::spawn(async move { me.handle_once(req, at, lease, sched, stop).await });
            }
        }
    }

    /// A request key's value (the `claimed` keys under it are skipped).
    fn parse_once(&self, kv: &KeyValue) -> Option<OnceRequest> {
        let id = self.keys.id_in("once/", kv.key())?;
        if id.contains('/') {
            return None;
        }
        match serde_json::from_slice::<OnceRequest>(kv.value()) {
            Ok(r) => Some(r),
            Err(e) => {
                warn!(request = %id, "unreadable run-now request, ignoring it: {e}");
                None
            }
        }
    }

    async fn handle_once(
        self: Arc<Self>,
        req: OnceRequest,
        created: i64,
        lease: i64,
        sched: SchedulerHandle,
        mut stop: watch::Receiver<bool>,
    ) {
        let me = self.node.id.clone();
        if self.member.draining() {
            debug!(request = %req.request, "draining: leaving the run-now request to the other nodes");
            return;
        }
        let fence = match req.kind {
            JobKind::All if !req.targets.contains(&me) => return,
            JobKind::All => None,
            JobKind::One => {
                let wait = match &req.node {
                    Some(n) if *n == me => Some(Duration::ZERO),
                    Some(_) => None,
                    None => self.member.claim_offset(&req.job, req.created_at),
                };
                let Some(wait) = wait else {
                    return;
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
                let mut won = None;
                for _ in 0..3 {
                    match self.claim_once_patiently(&req, created, lease).await {
                        Ok(OnceClaim::Won(fence)) => {
                            won = Some(fence);
                            break;
                        }
                        Ok(OnceClaim::Lost) => return,
                        // The other run ended meanwhile: try to start it.
                        Ok(OnceClaim::Busy(holder)) => {
                            if self.record_busy(&req, &holder, created, lease).await {
                                return;
                            }
                        }
                        Err(e) => {
                            warn!(request = %req.request, "cannot claim the run-now request: {e}");
                            return;
                        }
                    }
                }
                let Some(fence) = won else {
                    return;
                };
                Some(fence)
            }
        };
        let run_id = req.run_id(&me);
        let asked = Requested {
            run_id: run_id.clone(),
            job_revision: req.job_revision,
            at: req.created_at,
            fence,
        };
        match sched.run_requested(&req.job, asked).await {
            Ok(_) => {
                info!(run = %run_id, requester = %req.requester, "started a run requested through etcd")
            }
            Err(e) => warn!(run = %run_id, "run-now request not started: {e}"),
        }
        if req.kind == JobKind::One {
            self.delete_once(&req.request).await;
        }
    }

    /// [`Self::claim_once`], tried again while a `forbid` job looks busy:
    /// a run that just ended keeps `active/<job>` until the next batch of
    /// deletes (`DELETE_COALESCE`), and a run-now right after it should
    /// start, not be skipped.
    async fn claim_once_patiently(
        &self,
        req: &OnceRequest,
        created: i64,
        lease: i64,
    ) -> Result<OnceClaim, crate::store::StoreError> {
        let mut tries = 0;
        loop {
            match self.claim_once(req, created, lease).await? {
                OnceClaim::Busy(_) if tries < BUSY_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(BUSY_PAUSE).await;
                }
                out => return Ok(out),
            }
        }
    }

    /// Create-if-absent of `once/<request>/claimed` while the request
    /// exists and this node holds its lease; with it, the run's
    /// `running/<node>/<run>` key and, for a `forbid` job, `active/<job>`
    /// (refused while another run of the job is active anywhere), exactly
    /// as a scheduled claim. An ambiguous reply is resolved by reading the
    /// claim back (it names this node's boot).
    async fn claim_once(
        &self,
        req: &OnceRequest,
        created: i64,
        lease: i64,
    ) -> Result<OnceClaim, crate::store::StoreError> {
        let Some(node_lease) = self.member.lease() else {
            return Ok(OnceClaim::Lost);
        };
        let key = self.keys.once_claimed(&req.request);
        let active = self.keys.active(&req.job);
        // The request says so even if this node has not heard of the job yet.
        let forbid = req.forbid || self.known(&req.job).is_some_and(|k| k.forbid);
        let mine = format!("{}|{}", self.node.id, self.member.boot());
        let run_id = req.run_id(&self.node.id);
        let record_id = ids::record_id(&run_id, 1);
        let on_node = || Some(PutOptions::new().with_lease(node_lease));
        let mut when = vec![
            Compare::create_revision(self.keys.once(&req.request), CompareOp::Equal, created),
            Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
            Compare::lease(self.keys.node(&self.node.id), CompareOp::Equal, node_lease),
        ];
        let mut then = vec![
            TxnOp::put(
                key.as_str(),
                mine.as_str(),
                (lease != 0).then(|| PutOptions::new().with_lease(lease)),
            ),
            TxnOp::put(
                self.keys.running(&self.node.id, &run_id),
                record_id.as_str(),
                on_node(),
            ),
        ];
        if forbid {
            when.push(Compare::create_revision(
                active.as_str(),
                CompareOp::Equal,
                0,
            ));
            then.push(TxnOp::put(active.as_str(), record_id.as_str(), on_node()));
        }
        let txn = Txn::new().when(when).and_then(then).or_else([
            TxnOp::get(key.as_str(), None),
            TxnOp::get(self.keys.once(&req.request), None),
            TxnOp::get(active.as_str(), None),
        ]);
        let mut kv = self.etcd.client.kv_client();
        match self.etcd.call("claim run-now request", kv.txn(txn)).await {
            Ok(r) if r.succeeded() => Ok(OnceClaim::Won(
                r.header()
                    .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0)),
            )),
            Ok(r) => {
                let got = gets(&r);
                let at = |i: usize| got.get(i).cloned().flatten();
                let seen = Refusal {
                    claimed: at(0).map(|kv| {
                        let rev = u64::try_from(kv.create_revision()).unwrap_or(0);
                        (String::from_utf8_lossy(kv.value()).into_owned(), rev)
                    }),
                    request_exists: at(1).is_some(),
                    active: at(2).map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                };
                Ok(seen.read(&self.node.id, &self.member.boot(), forbid, &record_id))
            }
            Err(e) => {
                let back = self
                    .etcd
                    .call("read run-now claim", kv.get(key, None))
                    .await?;
                match back.kvs().first() {
                    Some(kv) if kv.value() == mine.as_bytes() => Ok(OnceClaim::Won(
                        u64::try_from(kv.create_revision()).unwrap_or(0),
                    )),
                    _ => Err(e),
                }
            }
        }
    }

    /// A `forbid` job's run-now found another run active: it is recorded
    /// `skipped` (so the requester sees why) and the request is dropped.
    /// The skip is claimed like a start (`claimed` = `<node>|<boot>|skipped`,
    /// only while the other run is still active), so no node records it
    /// skipped while another has just started it.
    /// Returns false when the other run ended meanwhile (try to start it).
    async fn record_busy(&self, req: &OnceRequest, holder: &str, created: i64, lease: i64) -> bool {
        let key = self.keys.once_claimed(&req.request);
        let active = self.keys.active(&req.job);
        let txn = Txn::new()
            .when([
                Compare::create_revision(self.keys.once(&req.request), CompareOp::Equal, created),
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0),
                Compare::value(active.as_str(), CompareOp::Equal, holder),
            ])
            .and_then([TxnOp::put(
                key.as_str(),
                format!("{}|{}|skipped", self.node.id, self.member.boot()),
                (lease != 0).then(|| PutOptions::new().with_lease(lease)),
            )])
            .or_else([
                TxnOp::get(key.as_str(), None),
                TxnOp::get(self.keys.once(&req.request), None),
            ]);
        let mut kv = self.etcd.client.kv_client();
        match self.etcd.call("decide run-now skipped", kv.txn(txn)).await {
            Ok(r) if r.succeeded() => {}
            Ok(r) => {
                // Decided elsewhere (claimed, or the request is gone): done;
                // else the other run ended: the caller tries to start it.
                let got = gets(&r);
                let claimed = got.first().cloned().flatten().is_some();
                let request = got.get(1).cloned().flatten().is_some();
                return claimed || !request;
            }
            Err(e) => {
                warn!(request = %req.request, "cannot decide the run-now request: {e}");
                return true;
            }
        }
        let job = match self.mirror.get_job(&req.job).await {
            Ok(Some(j)) => j,
            Ok(None) => return true,
            Err(e) => {
                warn!(request = %req.request, "cannot read job {:?}: {e}", req.job);
                return true;
            }
        };
        let rec = records::new_record(
            &job,
            &self.node,
            req.run_id(&self.node.id),
            1,
            Trigger::Manual,
            req.created_at,
            RunStatus::Skipped,
        );
        let reason =
            format!("previous run {holder} still running (concurrency = \"forbid\", cluster-wide)");
        let rec = records::settled(rec, RunStatus::Skipped, reason, Timestamp::now());
        if let Err(e) = self.runs.write(rec).await {
            warn!(request = %req.request, "cannot record the skipped run-now: {e}");
        }
        self.delete_once(&req.request).await;
        true
    }

    /// A `one` request is handled: its keys go (its lease would end them).
    async fn delete_once(&self, request: &str) {
        let txn = Txn::new().and_then([
            TxnOp::delete(self.keys.once_claimed(request), None),
            TxnOp::delete(self.keys.once(request), None),
        ]);
        let mut kv = self.etcd.client.kv_client();
        if let Err(e) = self.etcd.call("delete run-now request", kv.txn(txn)).await {
            debug!(
                request,
                "cannot delete the handled run-now request (its lease ends it): {e}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::api::NodeInfo;

    fn node(id: &str, alive: bool, draining: bool) -> NodeInfo {
        crate::testing::node_info(id, alive, draining, Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn targets_are_live_undrained_nodes() {
        let nodes = [
            node("a", true, false),
            node("b", false, false),
            node("c", true, true),
        ];
        assert_eq!(
            choose_targets(&nodes, JobKind::All, None).expect("targets"),
            vec!["a".to_string()]
        );
        assert!(matches!(
            choose_targets(&nodes, JobKind::One, Some("c")),
            Err(RequestError::Conflict(m)) if m.contains("draining")
        ));
        assert!(matches!(
            choose_targets(&nodes, JobKind::One, Some("b")),
            Err(RequestError::Conflict(m)) if m.contains("not alive")
        ));
        assert!(matches!(
            choose_targets(&nodes, JobKind::One, Some("zz")),
            Err(RequestError::NotFound(_))
        ));
        assert!(matches!(
            choose_targets(&nodes[1..], JobKind::All, None),
            Err(RequestError::Conflict(_))
        ));
    }

    #[test]
    fn a_failed_claim_is_read_without_overwriting_a_started_run() {
        let read = |claimed: Option<&str>, exists: bool, active: Option<&str>, forbid: bool| {
            Refusal {
                claimed: claimed.map(|c| (c.to_string(), 7)),
                request_exists: exists,
                active: active.map(str::to_string),
            }
            .read("me", "boot2", forbid, "j~manual~r#1")
        };
        // Another node won; its run is active: lost, not busy.
        assert_eq!(
            read(Some("b|x"), true, Some("j~manual~r#1"), true),
            OnceClaim::Lost
        );
        assert_eq!(
            read(Some("b|x"), true, Some("other#1"), true),
            OnceClaim::Lost
        );
        // An earlier boot of this node claimed it: taken over.
        assert_eq!(read(Some("me|boot1"), true, None, false), OnceClaim::Won(7));
        assert_eq!(read(Some("me|boot2"), true, None, false), OnceClaim::Lost);
        // A decided skip is never taken over.
        assert_eq!(
            read(Some("me|boot1|skipped"), true, None, true),
            OnceClaim::Lost
        );
        // Unclaimed and another run active: busy (forbid only).
        assert_eq!(
            read(None, true, Some("other#1"), true),
            OnceClaim::Busy("other#1".into())
        );
        assert_eq!(read(None, true, Some("other#1"), false), OnceClaim::Lost);
        // The request is gone (handled): lost.
        assert_eq!(read(None, false, Some("other#1"), true), OnceClaim::Lost);
    }

    #[test]
    fn run_ids_are_known_before_the_run() {
        let mut r = OnceRequest {
            request: "20260101T000000.000Z-abcdef".into(),
            job: "j".into(),
            job_revision: 3,
            kind: JobKind::All,
            forbid: false,
            requester: "admin".into(),
            node: None,
            targets: vec!["a".into(), "b".into()],
            created_at: Timestamp::UNIX_EPOCH,
        };
        assert_eq!(
            r.run_ids(),
            vec![
                "j~manual~20260101T000000.000Z-abcdef~a",
                "j~manual~20260101T000000.000Z-abcdef~b"
            ]
        );
        r.kind = JobKind::One;
        r.targets.clear();
        assert_eq!(r.run_ids(), vec!["j~manual~20260101T000000.000Z-abcdef"]);
        let back: OnceRequest =
            serde_json::from_str(&serde_json::to_string(&r).expect("encode")).expect("decode");
        assert_eq!(back, r);
    }
}
