//! Job writes of cluster mode, with their audit entry in the same etcd
//! transaction ([`crate::store::CoordStore::apply_audited`], DESIGN §5).
//!
//! Every expectation (revision, existence) of the whole batch is checked
//! first, then the ops are written in transactions of at most
//! [`OPS_PER_TXN`] operations (etcd allows 128), each comparing the
//! revisions checked. An audited write puts its entry under `audit/` in the
//! same transaction; a batch larger than one transaction gets one entry per
//! transaction, each naming its part of the batch, so every committed change
//! has exactly one entry and a refused one none.

use std::collections::HashMap;

use cronsun_proto::auth::AuditEntry;
use cronsun_proto::job::JobKind;
use cronsun_proto::Job;
use etcd_client::{Compare, CompareOp, Txn, TxnOp, TxnOpResponse};
use jiff::Timestamp;
use serde_json::Value;

use super::auth::audit_put;
use super::keys::{instant_key, Watermark};
use super::{check_expect, encode_job, rev, EtcdCoord};
use crate::store::auth::{fill_after, journal};
use crate::store::CoordStore as _;
use crate::store::{CoordOp, Result, StoreError};

/// Operations per transaction (etcd's default limit is 128; one is left
/// for the audit entry).
const OPS_PER_TXN: usize = 120;

/// The part of a batch written by one transaction.
#[derive(Default)]
struct Part {
    compares: Vec<Compare>,
    ops: Vec<TxnOp>,
    /// Ids of the jobs this part puts or deletes (for conflicts and audit).
    ids: Vec<String>,
    /// Jobs as they will be stored (revision set after the commit).
    jobs: Vec<Job>,
    /// `one` watermarks moved by a nested transaction (never backwards).
    one_marks: Vec<(String, Timestamp)>,
    /// `all` watermarks (node-local), moved after the commit.
    local_marks: Vec<(String, Timestamp)>,
}

/// The audit entry of `part` when a batch took several transactions:
/// `before` keeps the part's own jobs when it is an object by job id.
fn part_entry(entry: &AuditEntry, ids: &[String], first: bool) -> AuditEntry {
    let mut e = entry.clone();
    e.before = match &entry.before {
        Some(Value::Object(by_id)) if ids.iter().any(|id| by_id.contains_key(id)) => {
            Some(Value::Object(
                by_id
                    .iter()
                    .filter(|(k, _)| ids.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ))
        }
        other if first => other.clone(),
        _ => None,
    };
    e
}

impl EtcdCoord {
    /// The compare and puts writing `job` over `current` (`None`: a new
    /// job, whose watermark starts at `now`), and the job as stored.
    pub(super) fn job_put(
        &self,
        job: &Job,
        current: Option<&Job>,
        now: Timestamp,
    ) -> Result<(Compare, Vec<TxnOp>, Job)> {
        let key = self.keys.job(&job.id);
        let mut job = job.clone();
        job.updated_at = Some(now);
        job.revision = 0; // the transaction's revision, known once committed
        let mut ops = Vec::new();
        let compare = match current {
            Some(cur) => {
                job.created_at = cur.created_at.or(Some(now));
                Compare::mod_revision(key.as_str(), CompareOp::Equal, rev(cur.revision))
            }
            None => {
                job.created_at = Some(now);
                let mark = Watermark {
                    instant: now,
                    by: "created".into(),
                    nonce: String::new(),
                    clock_ms: now.as_millisecond(),
                };
                ops.push(TxnOp::put(self.keys.claim(&job.id), mark.encode(), None));
                Compare::create_revision(key.as_str(), CompareOp::Equal, 0)
            }
        };
        ops.push(TxnOp::put(key, encode_job(&job)?, None));
        Ok((compare, ops, job))
    }

    /// The compare and deletes removing job `id` at `revision`.
    pub(super) fn job_delete(&self, id: &str, revision: u64) -> (Compare, Vec<TxnOp>) {
        let key = self.keys.job(id);
        (
            Compare::mod_revision(key.as_str(), CompareOp::Equal, rev(revision)),
            vec![
                TxnOp::delete(key, None),
                TxnOp::delete(self.keys.claim(id), None),
                TxnOp::delete(self.keys.active(id), None),
            ],
        )
    }

    /// Applies `ops` (checked as a whole first) with `audit`, if any, in the
    /// same transaction; returns the jobs the `PutJob` ops stored.
    pub(super) async fn write_audited(
        &self,
        ops: Vec<CoordOp>,
        audit: Option<AuditEntry>,
        now: Timestamp,
    ) -> Result<Vec<Job>> {
        let ids: Vec<&str> = ops
            .iter()
            .filter_map(|op| match op {
                CoordOp::PutJob(j, _) => Some(j.id.as_str()),
                CoordOp::DeleteJob(id, _) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let current = self.currents(&ids).await?;
        for op in &ops {
            match op {
                CoordOp::PutJob(j, e) => {
                    check_expect(&j.id, *e, current.get(&j.id).map(|j| j.revision))?
                }
                CoordOp::DeleteJob(id, e) => match current.get(id) {
                    None => return Err(StoreError::NotFound(format!("job {id:?}"))),
                    Some(cur) => check_expect(id, *e, Some(cur.revision))?,
                },
                _ => {}
            }
        }
        let parts = self.parts(ops, &current, now)?;
        let many = parts.len() > 1;
        let mut stored = Vec::new();
        for (i, part) in parts.into_iter().enumerate() {
            let entry = audit.as_ref().map(|a| {
                let mut e = if many {
                    part_entry(a, &part.ids, i == 0)
                } else {
                    a.clone()
                };
                fill_after(&mut e, &part.jobs);
                e
            });
            stored.extend(self.commit(part, entry, &current).await?);
        }
        Ok(stored)
    }

    /// Splits `ops` into transactions of at most [`OPS_PER_TXN`] operations.
    fn parts(
        &self,
        ops: Vec<CoordOp>,
        current: &HashMap<String, Job>,
        now: Timestamp,
    ) -> Result<Vec<Part>> {
        let mut parts = vec![Part::default()];
        for op in ops {
            if parts.last().is_some_and(|p| p.ops.len() + 3 > OPS_PER_TXN) {
                parts.push(Part::default());
            }
            let Some(p) = parts.last_mut() else {
                continue;
            };
            match op {
                CoordOp::PutJob(job, _) => {
                    let (compare, puts, job) = self.job_put(&job, current.get(&job.id), now)?;
                    p.compares.push(compare);
                    p.ops.extend(puts);
                    p.ids.push(job.id.clone());
                    p.jobs.push(job);
                }
                CoordOp::DeleteJob(id, _) => {
                    let revision = current.get(&id).map_or(0, |j| j.revision);
                    let (compare, deletes) = self.job_delete(&id, revision);
                    p.compares.push(compare);
                    p.ops.extend(deletes);
                    p.ids.push(id);
                }
                CoordOp::SetWatermark(id, t) if self.kind_of(&id) == Some(JobKind::All) => {
                    p.local_marks.push((id, t));
                }
                CoordOp::SetWatermark(id, t) => {
                    let key = self.keys.claim(&id);
                    let mark = Watermark {
                        instant: t,
                        by: "resumed".into(),
                        nonce: String::new(),
                        clock_ms: Timestamp::now().as_millisecond(),
                    };
                    p.ops.push(TxnOp::txn(
                        Txn::new()
                            .when([Compare::value(
                                key.as_str(),
                                CompareOp::Less,
                                instant_key(t),
                            )])
                            .and_then([TxnOp::put(key, mark.encode(), None)]),
                    ));
                    p.one_marks.push((id, t));
                }
                CoordOp::SetGlobalPause(pause) => {
                    let body = serde_json::to_string(&pause)
                        .map_err(|e| StoreError::Backend(format!("encode pause: {e}")))?;
                    p.ops.push(TxnOp::put(self.keys.paused(), body, None));
                }
            }
        }
        Ok(parts)
    }

    /// Commits one part (and its entry); a changed job fails it with
    /// `Conflict` naming that job.
    async fn commit(
        &self,
        mut part: Part,
        entry: Option<AuditEntry>,
        checked: &HashMap<String, Job>,
    ) -> Result<Vec<Job>> {
        if let Some(e) = &entry {
            part.ops.push(audit_put(&self.keys, e)?);
        }
        let mut kv = self.etcd.client.kv_client();
        let resp = self
            .etcd
            .call(
                "write jobs",
                kv.txn(Txn::new().when(part.compares).and_then(part.ops)),
            )
            .await?;
        if !resp.succeeded() {
            let ids: Vec<&str> = part.ids.iter().map(String::as_str).collect();
            let now = self.currents(&ids).await?;
            let changed = part
                .ids
                .iter()
                .find(|id| now.get(*id).map(|j| j.revision) != checked.get(*id).map(|j| j.revision))
                .or(part.ids.first());
            let id = changed.cloned().unwrap_or_default();
            return Err(StoreError::Conflict {
                current: now.get(&id).map_or(0, |j| j.revision),
                id,
            });
        }
        if let Some(e) = &entry {
            journal(e);
        }
        // A `one` watermark whose nested compare failed had none at all or
        // a later one: create it if absent (a later one stays).
        let nested = resp.op_responses().into_iter().filter_map(|r| match r {
            TxnOpResponse::Txn(t) => Some(t.succeeded()),
            _ => None,
        });
        for ((id, t), moved) in part.one_marks.iter().zip(nested) {
            if !moved {
                self.init_watermark(id, *t).await?;
            }
        }
        for (id, t) in part.local_marks {
            self.local.set_watermark(&id, t).await?;
        }
        let revision = u64::try_from(resp.header().map_or(0, |h| h.revision())).unwrap_or(0);
        Ok(part
            .jobs
            .into_iter()
            .map(|mut j| {
                j.revision = revision;
                j
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::auth::Via;

    #[test]
    fn a_part_of_a_batch_is_audited_with_its_own_jobs() {
        let entry = AuditEntry {
            id: String::new(),
            at: Timestamp::UNIX_EPOCH,
            actor: "a".into(),
            via: Via::Token,
            from: "f".into(),
            action: "job.apply".into(),
            target: "jobs".into(),
            before: Some(serde_json::json!({"x": 1, "y": 2})),
            after: None,
        };
        let ids = vec!["y".to_string(), "new".to_string()];
        assert_eq!(
            part_entry(&entry, &ids, false).before,
            Some(serde_json::json!({"y": 2}))
        );
        let none = vec!["z".to_string()];
        assert_eq!(part_entry(&entry, &none, false).before, None);
        assert_eq!(part_entry(&entry, &none, true).before, entry.before);
    }
}
