//! Run records as MongoDB documents, and back.
//!
//! A `runs` document is the record's fields (DESIGN §3) with `_id =
//! <run_id>#<attempt>`; `scheduled_at`, `started_at` and `finished_at` are
//! BSON dates (millisecond precision) so that they index, sort and read
//! naturally in MongoDB tools; `expire_at` (a date) drives retention;
//! `output_digest` is present when the spool shed the output.

use cronsun_proto::api::LastRun;
use cronsun_proto::RunRecord;
use jiff::Timestamp;
use mongodb::bson::{self, doc, Bson, DateTime, Document};

use crate::store::{Result, StoreError};

const DATE_FIELDS: [&str; 3] = ["scheduled_at", "started_at", "finished_at"];

pub(super) fn date(t: Timestamp) -> DateTime {
    DateTime::from_millis(t.as_millisecond())
}

fn enc(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("encode {what} for MongoDB: {e}"))
}

/// The `runs` document of a record.
pub(super) fn run_doc(
    rec: &RunRecord,
    digest: Option<&str>,
    expire_at: Option<Timestamp>,
) -> Result<Document> {
    let id = rec.record_id();
    let mut d = bson::to_document(rec).map_err(|e| enc(&id, e))?;
    d.insert("_id", id);
    d.insert("scheduled_at", date(rec.scheduled_at));
    for (k, v) in [
        ("started_at", rec.started_at),
        ("finished_at", rec.finished_at),
    ] {
        d.insert(k, v.map_or(Bson::Null, |t| Bson::DateTime(date(t))));
    }
    if let Some(e) = expire_at {
        d.insert("expire_at", date(e));
    }
    if let Some(g) = digest {
        d.insert("output_digest", g);
    }
    Ok(d)
}

/// A record from a `runs` document (output fields may have been projected away).
pub(super) fn run_from_doc(mut d: Document) -> Result<RunRecord> {
    let id = d
        .get_str("_id")
        .map(str::to_owned)
        .unwrap_or_else(|_| "<no _id>".into());
    for k in ["_id", "expire_at", "output_digest"] {
        d.remove(k);
    }
    for k in DATE_FIELDS {
        if let Some(Bson::DateTime(t)) = d.get(k) {
            let ts = Timestamp::from_millisecond(t.timestamp_millis()).map_err(|e| {
                StoreError::Backend(format!("stored run {id:?}: {k} is out of range: {e}"))
            })?;
            d.insert(k, ts.to_string());
        }
    }
    for k in ["output_head", "output_tail"] {
        if !d.contains_key(k) {
            d.insert(k, "");
        }
    }
    bson::from_document(d)
        .map_err(|e| StoreError::Backend(format!("stored run {id:?} is unreadable: {e}")))
}

/// Sort key of `latest`: newer instant, then attempt, then seq, wins.
/// Fixed-width hex so string order is numeric order (instants after 1970).
pub(super) fn latest_key(rec: &RunRecord) -> String {
    let ms = u64::try_from(rec.scheduled_at.as_millisecond()).unwrap_or(0);
    format!("{ms:016x}{:08x}{:02x}", rec.attempt, rec.seq)
}

pub(super) fn last_run(rec: &RunRecord) -> Result<Document> {
    let last = LastRun {
        run_id: rec.run_id.clone(),
        attempt: rec.attempt,
        status: rec.status,
        scheduled_at: rec.scheduled_at,
        finished_at: rec.finished_at,
    };
    bson::to_document(&last).map_err(|e| enc("latest run", e))
}

pub(super) fn last_run_from(job: &str, d: &Document) -> Result<LastRun> {
    let last = d.get_document("last").map_err(|e| {
        StoreError::Backend(format!("stored latest run of {job:?} is unreadable: {e}"))
    })?;
    bson::from_document(last.clone()).map_err(|e| {
        StoreError::Backend(format!("stored latest run of {job:?} is unreadable: {e}"))
    })
}

/// `{_id: {$in: ids}}`.
pub(super) fn ids_in(ids: &[String]) -> Document {
    doc! { "_id": { "$in": ids } }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::{RunStatus, Trigger};

    pub(crate) fn record(job: &str, ms: i64, attempt: u32, status: RunStatus) -> RunRecord {
        let at = Timestamp::from_millisecond(ms).expect("ts");
        RunRecord {
            run_id: format!("{job}~{ms}"),
            attempt,
            job_id: job.into(),
            job_revision: 1,
            job_name: job.into(),
            node_id: "n1".into(),
            hostname: "h".into(),
            trigger: Trigger::Schedule,
            scheduled_at: at,
            started_at: Some(at),
            finished_at: status.is_final().then_some(at),
            duration_ms: Some(3),
            status,
            exit_code: Some(0),
            signal: None,
            argv: vec!["true".into()],
            run_as: "me".into(),
            env_keys: vec![],
            output_head: "hello".into(),
            output_tail: String::new(),
            output_bytes: 5,
            truncated: false,
            peak_memory: Some(u64::from(u32::MAX) * 4),
            cpu_ms: None,
            io_bytes: None,
            oom_kills: None,
            peak_pids: None,
            fence: Some(7),
            seq: if status.is_final() { 3 } else { 1 },
            reason: None,
        }
    }

    #[test]
    fn round_trip() {
        let r = record("j", 1_774_407_600_000, 2, RunStatus::Success);
        let d = run_doc(&r, Some("ab"), Some(r.scheduled_at)).expect("doc");
        assert_eq!(d.get_str("_id").expect("id"), r.record_id());
        assert!(matches!(d.get("scheduled_at"), Some(Bson::DateTime(_))));
        assert_eq!(run_from_doc(d).expect("back"), r);
    }

    #[test]
    fn latest_key_orders_by_instant_attempt_seq() {
        let a = record("j", 1000, 1, RunStatus::Running);
        let b = record("j", 1000, 1, RunStatus::Success);
        let c = record("j", 1000, 2, RunStatus::Running);
        let d = record("j", 2000, 1, RunStatus::Running);
        assert!(latest_key(&a) < latest_key(&b));
        assert!(latest_key(&b) < latest_key(&c));
        assert!(latest_key(&c) < latest_key(&d));
    }
}
