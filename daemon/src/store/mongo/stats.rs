//! Daily statistics per job (`stats_daily`): run counts by status, failures
//! and duration percentiles.
//!
//! A document per (job, UTC day) holds counters: `runs` (records that
//! reached a final status), `s_<status>` per final status, and a duration
//! histogram `d_<bucket>` with four buckets per power of two (so a
//! percentile read back is within 19 % of the true value). Counters are
//! only incremented by [`super::apply`] for writes that created or advanced
//! a record, so replays never double-count.

use std::collections::BTreeMap;

use cronsun_proto::{RunRecord, RunStatus};
use mongodb::bson::{doc, Bson, Document};
use serde::Serialize;

use super::apply::day_of;

/// Statuses that count as failures.
const FAILURES: [RunStatus; 4] = [
    RunStatus::Failed,
    RunStatus::Timeout,
    RunStatus::Killed,
    RunStatus::Lost,
];

pub(super) fn parse_status(s: &str) -> Option<RunStatus> {
    RunStatus::ALL.into_iter().find(|x| x.as_str() == s)
}

fn bucket(ms: u64) -> u32 {
    // floor(4 * log2(ms + 1)), computed without floating point drift at 0.
    let x = (ms + 1) as f64;
    (4.0 * x.log2()).floor() as u32
}

/// Upper bound of a bucket, in milliseconds.
fn bucket_upper(b: u32) -> u64 {
    (2f64.powf(f64::from(b + 1) / 4.0) - 1.0).ceil() as u64
}

/// Counter increments of one batch, merged per (job, day).
#[derive(Default)]
pub(super) struct Increments {
    by_key: BTreeMap<(String, String), BTreeMap<String, i64>>,
}

impl Increments {
    /// Counts `rec`, which replaced a record whose status was `prev` (none:
    /// it created the record).
    pub(super) fn add(&mut self, rec: &RunRecord, prev: Option<RunStatus>) {
        if !rec.status.is_final() {
            return;
        }
        let key = (rec.job_id.clone(), day_of(rec.scheduled_at));
        let inc = self.by_key.entry(key).or_default();
        match prev {
            Some(p) if p.is_final() => {
                *inc.entry(format!("s_{}", p.as_str())).or_default() -= 1;
            }
            _ => *inc.entry("runs".into()).or_default() += 1,
        }
        *inc.entry(format!("s_{}", rec.status.as_str())).or_default() += 1;
        if let Some(ms) = rec.duration_ms {
            // A record advances past a final status only from `lost`, which
            // has no duration: each duration is counted once.
            *inc.entry(format!("d_{}", bucket(ms))).or_default() += 1;
            *inc.entry("duration_ms_sum".into()).or_default() +=
                i64::try_from(ms).unwrap_or(i64::MAX);
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

/// One job's statistics for one UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DailyStats {
    pub job_id: String,
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub runs: u64,
    pub failures: u64,
    pub by_status: BTreeMap<String, u64>,
    /// Duration percentiles in ms (bucket upper bounds), if any run had one.
    pub p50_ms: Option<u64>,
    pub p90_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

fn int(b: &Bson) -> i64 {
    match b {
        Bson::Int32(v) => i64::from(*v),
        Bson::Int64(v) => *v,
        Bson::Double(v) => *v as i64,
        _ => 0,
    }
}

/// Reads a `stats_daily` document.
pub(super) fn from_doc(d: &Document) -> DailyStats {
    let mut by_status = BTreeMap::new();
    let mut hist: BTreeMap<u32, u64> = BTreeMap::new();
    let mut runs = 0;
    for (k, v) in d {
        let n = u64::try_from(int(v)).unwrap_or(0);
        if let Some(s) = k.strip_prefix("s_") {
            if n > 0 {
                by_status.insert(s.to_owned(), n);
            }
        } else if let Some(b) = k.strip_prefix("d_") {
            if let Ok(b) = b.parse() {
                hist.insert(b, n);
            }
        } else if k == "runs" {
            runs = n;
        }
    }
    let failures = FAILURES
        .iter()
        .filter_map(|s| by_status.get(s.as_str()))
        .sum();
    let total: u64 = hist.values().sum();
    let pct = |p: f64| -> Option<u64> {
        if total == 0 {
            return None;
        }
        let rank = ((p * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        hist.iter().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| bucket_upper(*b))
        })
    };
    DailyStats {
        job_id: d.get_str("job_id").unwrap_or("").to_owned(),
        day: d.get_str("day").unwrap_or("").to_owned(),
        runs,
        failures,
        by_status,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p99_ms: pct(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_bound_values_within_19_percent() {
        for ms in [0u64, 1, 2, 3, 10, 99, 1000, 12_345, 3_600_000] {
            let up = bucket_upper(bucket(ms));
            assert!(up >= ms, "{ms} -> {up}");
            assert!(up as f64 <= (ms as f64 + 1.0) * 1.19 + 1.0, "{ms} -> {up}");
        }
    }
}
