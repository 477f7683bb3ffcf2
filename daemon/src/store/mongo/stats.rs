//! `stats_daily` on MongoDB: one document per (job, UTC day) whose fields
//! are the counters of [`crate::store::stats`], incremented with `$inc` by
//! [`super::apply`] only for writes that created or advanced a record to a
//! final status, so replays never double-count.

use std::collections::BTreeMap;

use cronsun_proto::{RunRecord, RunStatus};
use mongodb::bson::{doc, Bson, Document};

use crate::store::stats::{day_of, increments, DailyStats};

/// Counter increments of one batch, merged per (job, day).
#[derive(Default)]
pub(super) struct Increments {
    by_key: BTreeMap<(String, String), BTreeMap<String, i64>>,
}

impl Increments {
    /// Counts `rec`, which replaced a record whose status was `prev` (none:
    /// it created the record).
    pub(super) fn add(&mut self, rec: &RunRecord, prev: Option<RunStatus>) {
        let inc = increments(rec, prev);
        if inc.is_empty() {
            return;
        }
        let key = (rec.job_id.clone(), day_of(rec.scheduled_at));
        let fields = self.by_key.entry(key).or_default();
        for (f, n) in inc {
            *fields.entry(f).or_default() += n;
        }
    }

    /// One upsert per (job, day).
    pub(super) fn into_updates(self) -> Vec<Document> {
        self.by_key
            .into_iter()
            .map(|((job, day), inc)| {
                let inc: Document = inc
                    .into_iter()
                    .filter(|(_, v)| *v != 0)
                    .map(|(k, v)| (k, Bson::Int64(v)))
                    .collect();
                doc! {
                    "q": {"_id": format!("{job}|{day}")},
                    "u": {"$inc": inc, "$set": {"job_id": &job, "day": &day}},
                    "upsert": true,
                }
            })
            .collect()
    }
}

fn int(b: &Bson) -> i64 {
    match b {
        Bson::Int32(v) => i64::from(*v),
        Bson::Int64(v) => *v,
        Bson::Double(v) => *v as i64,
        _ => 0,
    }
}

/// Adds a `stats_daily` document's counters to `out` (per day).
pub(super) fn add_doc(out: &mut DailyStats, d: &Document) {
    let Ok(day) = d.get_str("day") else { return };
    let counts = out.entry(day.to_owned()).or_default();
    for (k, v) in d {
        counts.add_field(k, int(v));
    }
}
