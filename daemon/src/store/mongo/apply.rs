//! Applying a batch of spooled writes to MongoDB.
//!
//! Guarantees:
//! - a `runs` document changes only if the write's `seq` is greater than the
//!   stored one: a record not stored yet is inserted (a duplicate key means
//!   it appeared meanwhile: it then takes the next path), any other write is
//!   an upsert filtered on `{_id, seq: {$lt: new}}`;
//!   when a newer document exists the filter matches nothing, the upsert's
//!   insert hits the unique `_id` and fails with a duplicate-key error, which
//!   means "not applied" — so replaying a batch, a late `running` or a late
//!   success never regresses a record;
//! - `latest` only moves forward (same pattern on a fixed-width sort key);
//! - `stats_daily` counts a write only when it created or advanced a record
//!   to a final status (decided from the stored seq read before the write),
//!   so a replayed batch counts nothing. A crash between the `runs` update
//!   and the statistics update under-counts that batch; it never
//!   double-counts.

use std::collections::{BTreeMap, HashMap};

use cronsun_proto::{RunRecord, RunStatus};
use futures::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::Database;

use super::docs;
use super::stats;
use crate::store::sqlite::spool::SpoolEntry;

/// MongoDB's duplicate-key error.
const DUPLICATE_KEY: i32 = 11000;
/// Largest `update` command sent at once (the server's limit is 16 MiB).
const MAX_COMMAND_BYTES: usize = 8 << 20;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Writes that created or advanced a record.
    pub applied: u64,
    /// Writes older than what was stored (replays, late arrivals).
    pub stale: u64,
    /// `lost` records that a later success or failure replaced.
    pub reappeared: Vec<String>,
}

/// A failed batch, with its cause; the batch stays in the spool.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ShipError(pub String);

fn fail(op: &str) -> impl Fn(mongodb::error::Error) -> ShipError + '_ {
    move |e| ShipError(format!("{op}: {e}"))
}

/// Applies `entries` (in spool order); see the module documentation.
pub async fn apply_batch(
    db: &Database,
    entries: &[SpoolEntry],
    max_age: Option<std::time::Duration>,
) -> Result<Applied, ShipError> {
    // Newest write per record: the spool holds a record's writes in seq order.
    let mut newest: BTreeMap<String, &SpoolEntry> = BTreeMap::new();
    for e in entries {
        let id = e.record.record_id();
        if newest
            .get(&id)
            .is_none_or(|old| old.record.seq < e.record.seq)
        {
            newest.insert(id, e);
        }
    }
    let ids: Vec<String> = newest.keys().cloned().collect();
    let runs = db.collection::<Document>("runs");
    let stored: HashMap<String, (i64, String)> = runs
        .find(docs::ids_in(&ids))
        .projection(doc! {"seq": 1, "status": 1})
        .await
        .map_err(fail("read stored seqs"))?
        .try_collect::<Vec<Document>>()
        .await
        .map_err(fail("read stored seqs"))?
        .into_iter()
        .filter_map(|d| {
            let id = d.get_str("_id").ok()?.to_owned();
            let seq = match d.get("seq") {
                Some(Bson::Int32(s)) => i64::from(*s),
                Some(Bson::Int64(s)) => *s,
                _ => 0,
            };
            let status = d.get_str("status").unwrap_or("").to_owned();
            Some((id, (seq, status)))
        })
        .collect();

    let mut out = Applied::default();
    let mut run_docs = Vec::new();
    let mut candidates = Vec::new();
    for (id, e) in &newest {
        let prev = stored.get(id);
        if prev.is_some_and(|(s, _)| *s >= i64::from(e.record.seq)) {
            out.stale += 1;
            continue;
        }
        let expire = max_age.and_then(|a| {
            e.record
                .scheduled_at
                .checked_add(jiff::SignedDuration::try_from(a).ok()?)
                .ok()
        });
        let d = docs::run_doc(&e.record, e.output_digest.as_deref(), expire)
            .map_err(|err| ShipError(err.to_string()))?;
        run_docs.push(d);
        candidates.push((&e.record, prev));
    }
    // New records are inserted: cheaper than a guarded upsert on every
    // server (on FerretDB 1.24 an insert is checked by the unique index
    // while an update filter scans the table). One that appeared meanwhile
    // (duplicate key) takes the guarded upsert like an existing one.
    let (mut upserts, mut inserts) = (Vec::new(), Vec::new());
    for (i, d) in run_docs.into_iter().enumerate() {
        if candidates[i].1.is_none() {
            inserts.push((i, d));
        } else {
            upserts.push((i, d));
        }
    }
    let existed = write_many(
        db,
        Write::Insert,
        "runs",
        inserts.iter().map(|(_, d)| d.clone()).collect(),
    )
    .await?;
    upserts.extend(
        inserts
            .into_iter()
            .enumerate()
            .filter_map(|(j, x)| existed.contains(&j).then_some(x)),
    );
    let guarded = upserts
        .iter()
        .map(|(i, d)| {
            doc! {
                "q": {"_id": d.get("_id").cloned().unwrap_or(Bson::Null),
                      "seq": {"$lt": i32::from(candidates[*i].0.seq)}},
                "u": d.clone(),
                "upsert": true,
            }
        })
        .collect();
    let refused: std::collections::HashSet<usize> = write_many(db, Write::Update, "runs", guarded)
        .await?
        .into_iter()
        .map(|j| upserts[j].0)
        .collect();

    let mut latest: BTreeMap<&str, (String, &RunRecord)> = BTreeMap::new();
    let mut counts = stats::Increments::default();
    for (i, (rec, prev)) in candidates.iter().enumerate() {
        if refused.contains(&i) {
            out.stale += 1;
            continue;
        }
        out.applied += 1;
        let key = docs::latest_key(rec);
        if latest
            .get(rec.job_id.as_str())
            .is_none_or(|(k, _)| *k < key)
        {
            latest.insert(&rec.job_id, (key, rec));
        }
        let prev_status = prev.and_then(|(_, s)| crate::store::stats::parse_status(s));
        if prev_status == Some(RunStatus::Lost) && rec.status != RunStatus::Lost {
            out.reappeared.push(rec.record_id());
        }
        counts.add(rec, prev_status);
    }

    let mut latest_updates = Vec::new();
    for (job, (key, rec)) in latest {
        let last = docs::last_run(rec).map_err(|e| ShipError(e.to_string()))?;
        latest_updates.push(doc! {
            "q": {"_id": job, "k": {"$lt": &key}},
            "u": {"$set": {"k": &key, "last": last}},
            "upsert": true,
        });
    }
    write_many(db, Write::Update, "latest", latest_updates).await?;
    write_many(db, Write::Update, "stats_daily", counts.into_updates()).await?;
    Ok(out)
}

/// A write command and the field holding its operations.
#[derive(Clone, Copy)]
enum Write {
    Insert,
    Update,
}

impl Write {
    fn command(self) -> (&'static str, &'static str) {
        match self {
            Write::Insert => ("insert", "documents"),
            Write::Update => ("update", "updates"),
        }
    }
}

/// Sends `ops` as unordered `insert`/`update` commands of bounded size;
/// returns the indexes refused with a duplicate key (not applied). Any other
/// write error fails the batch.
async fn write_many(
    db: &Database,
    w: Write,
    coll: &str,
    ops: Vec<Document>,
) -> Result<std::collections::HashSet<usize>, ShipError> {
    let mut refused = std::collections::HashSet::new();
    let mut chunk: Vec<Document> = Vec::new();
    let mut chunk_bytes = 0;
    let mut base = 0;
    let total = ops.len();
    for (i, u) in ops.into_iter().enumerate() {
        let size = mongodb::bson::to_vec(&u).map_or(0, |v| v.len());
        chunk_bytes += size;
        chunk.push(u);
        if chunk_bytes >= MAX_COMMAND_BYTES || i + 1 == total {
            let sent = std::mem::take(&mut chunk);
            let n = sent.len();
            for idx in send(db, w, coll, sent).await? {
                refused.insert(base + idx);
            }
            base += n;
            chunk_bytes = 0;
        }
    }
    Ok(refused)
}

async fn send(
    db: &Database,
    w: Write,
    coll: &str,
    ops: Vec<Document>,
) -> Result<Vec<usize>, ShipError> {
    let (cmd, field) = w.command();
    let reply = db
        .run_command(doc! {cmd: coll, field: ops, "ordered": false})
        .await
        .map_err(|e| ShipError(format!("{cmd} {coll}: {e}")))?;
    let mut refused = Vec::new();
    if let Ok(errors) = reply.get_array("writeErrors") {
        for e in errors {
            let Some(e) = e.as_document() else { continue };
            let code = e.get_i32("code").unwrap_or(0);
            let index = match e.get("index") {
                Some(Bson::Int32(i)) => usize::try_from(*i).unwrap_or(usize::MAX),
                Some(Bson::Int64(i)) => usize::try_from(*i).unwrap_or(usize::MAX),
                _ => usize::MAX,
            };
            if code == DUPLICATE_KEY {
                refused.push(index);
            } else {
                let msg = e.get_str("errmsg").unwrap_or("no message");
                return Err(ShipError(format!(
                    "{cmd} {coll}: write error {code}: {msg}"
                )));
            }
        }
    }
    if let Ok(wce) = reply.get_document("writeConcernError") {
        return Err(ShipError(format!(
            "{cmd} {coll}: write concern error: {wce}"
        )));
    }
    Ok(refused)
}
