//! Claims of a busy second, many per transaction (DESIGN §3, "speed").
//!
//! A `forbid` job's claim also takes its `active/` key in the batch; a
//! batch in which one such job still runs elsewhere fails as a whole and
//! goes through the single path (correct, only slower).
//!
//! When many `one` jobs share an instant, each node claims its share at
//! `T - lead`. One transaction per claim costs etcd one raft proposal each,
//! and a burst of a thousand queues behind them. Here the plain claims of a
//! batch (not `forbid`, this node's lease) go to etcd as ONE transaction:
//! every watermark and job-revision compare, the node's lease compare once,
//! every watermark put and `running/` key. The compares are the same as the
//! single claim's, so exactly-once is unchanged; only the unit of commit
//! grows. Nodes ranked after the first read the watermarks before trying
//! (a read-only transaction costs no proposal), so the instants already
//! decided cost them nothing.
//!
//! Guarantees:
//! - all or nothing: the transaction applied every claim of the batch or
//!   none; its revision is each run's fence (unique per job and instant,
//!   increasing per job);
//! - a failed compare (another node decided one instant, a job changed, the
//!   lease moved) sends only the claims still open through the single-claim
//!   path, which tells each outcome apart;
//! - an ambiguous reply is resolved by reading the watermarks back: the
//!   batch's nonce on any of them means the whole batch applied.

use std::collections::HashMap;

use etcd_client::{Txn, TxnOp, TxnOpResponse, TxnResponse};
use futures::future::join_all;
use jiff::Timestamp;
use tracing::warn;

use super::keys::Watermark;
use super::{backend, gets, reply_lost, EtcdCoord, CLAIM_TRIES};
use crate::store::{ClaimOutcome, ClaimRequest, CoordStore, Result};
use cronsun_proto::job::JobKind;
use cronsun_proto::run::RunStatus;

/// Claims per transaction: up to three compares and three puts each (the
/// `forbid` key), plus the lease compare, under etcd's default limit of 128
/// operations per list.
pub const CLAIMS_PER_TXN: usize = 40;

impl EtcdCoord {
    /// Claims `reqs` (answers in the same order).
    pub(super) async fn claim_batch(&self, reqs: Vec<ClaimRequest>) -> Vec<Result<ClaimOutcome>> {
        let mut answers: Vec<Option<Result<ClaimOutcome>>> = reqs.iter().map(|_| None).collect();
        let (plain, single): (Vec<usize>, Vec<usize>) =
            (0..reqs.len()).partition(|&i| self.batchable(&reqs[i]));
        // Later ranks: instants the first-ranked node already decided.
        let later: Vec<usize> = plain
            .iter()
            .copied()
            .filter(|&i| {
                self.member
                    .claim_offset(&reqs[i].job_id, reqs[i].instant)
                    .is_some_and(|d| !d.is_zero())
            })
            .collect();
        if !later.is_empty() {
            let ids: Vec<&str> = later.iter().map(|&i| reqs[i].job_id.as_str()).collect();
            if let Ok(marks) = self.read_watermarks(&ids).await {
                let boot = self.member.boot();
                for &i in &later {
                    let (job, t) = (&reqs[i].job_id, reqs[i].instant);
                    // Not this boot's own earlier claim of the instant (its
                    // outcome was unknown): the transaction path tells that
                    // one as won, so its run still gets a record.
                    if let Some(w) = marks
                        .get(job)
                        .filter(|w| w.instant >= t && !w.claimed_by_boot(&boot, t))
                    {
                        answers[i] = Some(Ok(ClaimOutcome::Decided {
                            watermark: w.instant,
                        }));
                    }
                }
            }
        }
        let open: Vec<usize> = plain
            .into_iter()
            .filter(|&i| answers[i].is_none())
            .collect();
        let mut retry = single;
        for chunk in open.chunks(CLAIMS_PER_TXN) {
            let batch: Vec<&ClaimRequest> = chunk.iter().map(|&i| &reqs[i]).collect();
            match self.try_batch(&batch).await {
                Some(won) => {
                    for (&i, out) in chunk.iter().zip(won) {
                        answers[i] = Some(out);
                    }
                }
                None => retry.extend_from_slice(chunk),
            }
        }
        tracing::debug!(
            asked = reqs.len(),
            decided_before = later.len(),
            single = retry.len(),
            "claim batch"
        );
        let singles = join_all(retry.iter().map(|&i| self.claim(reqs[i].clone()))).await;
        for (&i, out) in retry.iter().zip(singles) {
            answers[i] = Some(out);
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(backend("claim left unanswered"))))
            .collect()
    }

    /// A `one` claim of a job known at the revision it was scheduled from.
    fn batchable(&self, req: &ClaimRequest) -> bool {
        self.known(&req.job_id)
            .is_some_and(|k| k.kind == JobKind::One && k.revision == req.job_revision)
    }

    /// `concurrency = "forbid"`: the claim also takes the job's `active/` key.
    pub(super) fn holds_active(&self, req: &ClaimRequest) -> bool {
        req.record.status == RunStatus::Running && self.known(&req.job_id).is_some_and(|k| k.forbid)
    }

    /// The watermarks of `jobs` (read-only: no raft proposal).
    async fn read_watermarks(&self, jobs: &[&str]) -> Result<HashMap<String, Watermark>> {
        let mut out = HashMap::new();
        let mut kv = self.etcd.client.kv_client();
        for chunk in jobs.chunks(CLAIMS_PER_TXN * 2) {
            let txn = Txn::new().and_then(
                chunk
                    .iter()
                    .map(|j| TxnOp::get(self.keys.claim(j), None))
                    .collect::<Vec<_>>(),
            );
            let resp = self.etcd.call("read watermarks", kv.txn(txn)).await?;
            for (job, got) in chunk.iter().zip(gets(&resp)) {
                if let Some(w) = got.and_then(|kv| Watermark::decode(kv.value())) {
                    out.insert((*job).to_string(), w);
                }
            }
        }
        Ok(out)
    }

    /// One transaction for the whole batch. `None`: not applied (or not
    /// known to be), so each claim goes through the single path.
    async fn try_batch(&self, batch: &[&ClaimRequest]) -> Option<Vec<Result<ClaimOutcome>>> {
        let lease = self.member.lease()?;
        let nonce = self.next_nonce();
        let mut when = vec![self.lease_compare(lease)];
        let mut marks = Vec::with_capacity(batch.len());
        let mut held = Vec::new();
        for req in batch {
            let ops = self.claim_ops(req, lease, &nonce, self.holds_active(req));
            when.extend(ops.when);
            marks.push(ops.mark);
            held.extend(ops.held);
        }
        // Watermark puts first: their answers (previous values) line up
        // with the batch.
        marks.extend(held);
        let first_claim = self.keys.claim(&batch.first()?.job_id);
        let txn = Txn::new()
            .when(when)
            .and_then(marks)
            .or_else([TxnOp::get(first_claim.as_str(), None)]);
        let mut kv = self.etcd.client.kv_client();
        let mut last_err = None;
        for _ in 0..CLAIM_TRIES {
            match reply_lost(self.etcd.call("claim batch", kv.txn(txn.clone())).await) {
                Ok(resp) if resp.succeeded() => {
                    let fence = resp
                        .header()
                        .map_or(0, |h| u64::try_from(h.revision()).unwrap_or(0));
                    return Some(self.batch_won(batch, fence, previous_marks(&resp)).await);
                }
                // Not applied now; applied by an earlier try whose reply
                // was lost if the batch's nonce is on the first watermark.
                Ok(resp) => {
                    tracing::debug!(claims = batch.len(), "claim batch compares failed");
                    let mark = gets(&resp).into_iter().next().flatten();
                    return self.applied_earlier(batch, mark, &nonce).await;
                }
                Err(e) => {
                    warn!(
                        claims = batch.len(),
                        "claim batch reply lost, retrying it: {e}"
                    );
                    last_err = Some(e);
                }
            }
        }
        // Still unknown: the instants stay undecided (the scheduler asks
        // again, with the same compares, after a short backoff).
        let e = last_err.map_or_else(|| "claim batch failed".to_string(), |e| e.to_string());
        Some(batch.iter().map(|_| Err(backend(&e))).collect())
    }

    /// A batch whose compares failed: won already if an earlier try of the
    /// same transaction applied (its nonce is on the watermark), otherwise
    /// `None` (each claim goes through the single path).
    async fn applied_earlier(
        &self,
        batch: &[&ClaimRequest],
        first_mark: Option<etcd_client::KeyValue>,
        nonce: &str,
    ) -> Option<Vec<Result<ClaimOutcome>>> {
        let kv = first_mark?;
        // This very batch (its nonce): all of it applied. Any other claim of
        // this boot is told apart claim by claim on the single path.
        let ours = Watermark::decode(kv.value()).is_some_and(|w| w.nonce == nonce);
        if !ours {
            return None;
        }
        let fence = u64::try_from(kv.mod_revision()).unwrap_or(0);
        Some(self.batch_won(batch, fence, vec![None; batch.len()]).await)
    }

    /// Every claim of an applied batch: first records to the spool together.
    async fn batch_won(
        &self,
        batch: &[&ClaimRequest],
        fence: u64,
        previous: Vec<Option<Timestamp>>,
    ) -> Vec<Result<ClaimOutcome>> {
        join_all(
            batch
                .iter()
                .zip(previous)
                .map(|(req, prev)| self.won((*req).clone(), fence, prev)),
        )
        .await
    }
}

/// The previous watermark of each claim put, in batch order.
fn previous_marks(resp: &TxnResponse) -> Vec<Option<Timestamp>> {
    resp.op_responses()
        .into_iter()
        .map(|r| match r {
            TxnOpResponse::Put(p) => p
                .prev_key()
                .and_then(|kv| Watermark::decode(kv.value()))
                .map(|w| w.instant),
            _ => None,
        })
        .collect()
}
