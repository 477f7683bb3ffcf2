//! Daily run statistics, the same for every run store: counters per (job,
//! UTC day) that a write increments only when it created a final record or
//! advanced a record to a final status, so replays never double-count.
//!
//! Counter fields: `runs` (records that reached a final status), `s_<status>`
//! per final status, `d_<bucket>` a duration histogram with four buckets per
//! power of two (a percentile read back is the bucket's upper bound, within
//! 19 % of the true value), `duration_ms_sum`. MongoDB keeps them as the
//! fields of a `stats_daily` document, SQLite as rows of its `stats_daily`
//! table; both read them back into [`DayCounts`].

use std::collections::BTreeMap;

use cronsun_proto::{RunRecord, RunStatus};
use jiff::Timestamp;

/// Statuses that count as failures.
pub const FAILURES: [RunStatus; 4] = [
    RunStatus::Failed,
    RunStatus::Timeout,
    RunStatus::Killed,
    RunStatus::Lost,
];

/// The UTC day of an instant, `YYYY-MM-DD`.
pub fn day_of(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

pub fn parse_status(s: &str) -> Option<RunStatus> {
    RunStatus::ALL.into_iter().find(|x| x.as_str() == s)
}

fn bucket(ms: u64) -> u32 {
    // floor(4 * log2(ms + 1)): 0 ms is bucket 0.
    let x = (ms + 1) as f64;
    (4.0 * x.log2()).floor() as u32
}

/// Upper bound of a bucket, in milliseconds.
fn bucket_upper(b: u32) -> u64 {
    (2f64.powf(f64::from(b + 1) / 4.0) - 1.0).ceil() as u64
}

/// The counter increments of `rec` replacing a record whose status was
/// `prev` (`None`: it created the record): nothing unless `rec` is final.
pub fn increments(rec: &RunRecord, prev: Option<RunStatus>) -> Vec<(String, i64)> {
    if !rec.status.is_final() {
        return Vec::new();
    }
    let mut out = Vec::with_capacity(4);
    match prev {
        Some(p) if p.is_final() => out.push((format!("s_{}", p.as_str()), -1)),
        _ => out.push(("runs".into(), 1)),
    }
    out.push((format!("s_{}", rec.status.as_str()), 1));
    if let Some(ms) = rec.duration_ms {
        // A record advances past a final status only from `lost`, which has
        // no duration: each duration is counted once.
        out.push((format!("d_{}", bucket(ms)), 1));
        out.push((
            "duration_ms_sum".into(),
            i64::try_from(ms).unwrap_or(i64::MAX),
        ));
    }
    out
}

/// One day's counters (of one job, or summed over jobs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DayCounts {
    pub runs: u64,
    /// Final status → records.
    pub by_status: BTreeMap<String, u64>,
    hist: BTreeMap<u32, u64>,
}

impl DayCounts {
    /// Adds one stored counter field.
    pub fn add_field(&mut self, field: &str, n: i64) {
        let n = u64::try_from(n).unwrap_or(0);
        if n == 0 {
            return;
        }
        if let Some(s) = field.strip_prefix("s_") {
            *self.by_status.entry(s.to_owned()).or_default() += n;
        } else if let Some(b) = field.strip_prefix("d_") {
            if let Ok(b) = b.parse() {
                *self.hist.entry(b).or_default() += n;
            }
        } else if field == "runs" {
            self.runs += n;
        }
    }

    pub fn status(&self, s: RunStatus) -> u64 {
        self.by_status.get(s.as_str()).copied().unwrap_or(0)
    }

    pub fn failures(&self) -> u64 {
        FAILURES.iter().map(|s| self.status(*s)).sum()
    }

    /// The `p` quantile (0..1] of durations in ms, if any run had one.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let total: u64 = self.hist.values().sum();
        if total == 0 {
            return None;
        }
        let rank = ((p * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        self.hist.iter().find_map(|(b, n)| {
            seen += n;
            (seen >= rank).then(|| bucket_upper(*b))
        })
    }
}

/// Counters read back: per day, summed over the jobs asked for.
pub type DailyStats = BTreeMap<String, DayCounts>;

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

    #[test]
    fn percentiles_and_failures_from_fields() {
        let mut d = DayCounts::default();
        for (f, n) in [
            ("runs", 10),
            ("s_success", 7),
            ("s_failed", 2),
            ("s_lost", 1),
            ("d_0", 5),
            ("d_40", 4),
            ("d_60", 1),
        ] {
            d.add_field(f, n);
        }
        assert_eq!(d.failures(), 3);
        assert_eq!(d.percentile(0.5), Some(bucket_upper(0)));
        assert_eq!(d.percentile(0.9), Some(bucket_upper(40)));
        assert_eq!(d.percentile(0.99), Some(bucket_upper(60)));
        assert_eq!(DayCounts::default().percentile(0.5), None);
    }
}
