//! The jobs the bench loads: probes, rarely firing jobs, and jobs spread
//! over the seconds of a minute.

use std::path::Path;

use anyhow::Context as _;
use jiff::Timestamp;
use serde_json::json;

use cronsun_proto::Job;

fn from_json(v: serde_json::Value) -> anyhow::Result<Job> {
    serde_json::from_value(v.clone())
        .with_context(|| format!("bench job does not deserialise: {v}"))
}

/// `n` per-second jobs running the probe, appending to `samples`.
pub fn probes(prefix: &str, n: usize, probe: &Path, samples: &Path) -> anyhow::Result<Vec<Job>> {
    (0..n)
        .map(|i| {
            from_json(json!({
                "id": format!("{prefix}-{i:03}"),
                "command": [probe.to_string_lossy(), samples.to_string_lossy()],
                "rules": [{ "schedule": "* * * * * *" }],
            }))
        })
        .collect()
}

/// Id of the `i`th job of a 10,000-job load.
pub fn load_id(i: usize) -> String {
    format!("load-{i:05}")
}

/// `n` daily jobs (`M H * * *`) spread over the day, none due within an
/// hour of `now`, so an idle window sees no run.
pub fn rare(n: usize, now: Timestamp) -> anyhow::Result<Vec<Job>> {
    let z = now.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    let now_min = i64::from(z.hour()) * 60 + i64::from(z.minute());
    // Minutes of the day from now+60 to now+1380: 1320 slots, none near now.
    (0..n)
        .map(|i| {
            let slot = (i * 7919) % 1320;
            let m = (now_min + 60 + slot as i64).rem_euclid(1440);
            from_json(json!({
                "id": load_id(i),
                "command": "true",
                "rules": [{ "schedule": format!("{} {} * * *", m % 60, m / 60) }],
            }))
        })
        .collect()
}

/// `n` jobs that each fire once a minute, job `i` at second `i % 60`
/// (`S * * * * *`), running `true`.
pub fn spread(n: usize) -> anyhow::Result<Vec<Job>> {
    (0..n)
        .map(|i| {
            from_json(json!({
                "id": load_id(i),
                "command": "true",
                "rules": [{ "schedule": format!("{} * * * * *", spread_second(i)) }],
            }))
        })
        .collect()
}

/// Second of the minute at which [`spread`] job `i` fires.
pub fn spread_second(i: usize) -> i64 {
    (i % 60) as i64
}

/// How many [`spread`] runs of `n` jobs fall in `[from, until)` (whole seconds).
pub fn spread_expected(n: usize, from: Timestamp, until: Timestamp) -> u64 {
    (from.as_second()..until.as_second())
        .map(|t| {
            (0..n)
                .filter(|&i| spread_second(i) == t.rem_euclid(60))
                .count() as u64
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spread_job_fires_once_a_minute() -> anyhow::Result<()> {
        let t: Timestamp = "2026-01-01T00:00:07Z".parse()?;
        let later = Timestamp::from_second(t.as_second() + 60)?;
        assert_eq!(spread_expected(10_000, t, later), 10_000);
        assert_eq!(spread(3)?.len(), 3);
        assert_eq!(rare(3, t)?.len(), 3);
        Ok(())
    }
}
