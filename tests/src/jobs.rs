//! Building jobs and describing run records in assertion messages.

use std::sync::atomic::{AtomicU32, Ordering};

use jiff::{Timestamp, ToSpan as _};

use cronsun_proto::{Job, RunRecord};

/// A job from JSON with the field names of DESIGN §2; unset fields take
/// their defaults exactly as the daemon's deserialisation does.
#[track_caller]
pub fn job(value: serde_json::Value) -> Job {
    match serde_json::from_value(value.clone()) {
        Ok(j) => j,
        Err(e) => panic!("test job does not deserialise ({e}): {value}"),
    }
}

/// A fresh id usable as a job id and as a process marker:
/// `<prefix>-<pid>-<nanos>-<n>`, lowercase.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = Timestamp::now().subsec_nanosecond();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A 6-field UTC cron expression that fires once a day at `t`'s second.
pub fn schedule_at(t: Timestamp) -> String {
    let z = t.to_zoned_datetime(jiff::tz::TimeZone::UTC);
    format!("{} {} {} * * *", z.second(), z.minute(), z.hour())
}

/// Now plus `secs`, truncated to the whole second.
pub fn whole_seconds_from_now(secs: i64) -> Timestamp {
    let now = Timestamp::now();
    let t = Timestamp::from_second(now.as_second()).expect("a valid second");
    t.checked_add(secs.seconds()).expect("in range")
}

/// One line per record: id, status, trigger, times, exit, reason, output.
pub fn fmt_records(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "  (no records)".into();
    }
    runs.iter()
        .map(|r| {
            let out: String = format!("{}{}", r.output_head, r.output_tail)
                .chars()
                .take(80)
                .collect();
            format!(
                "  {}#{} {} trigger={} scheduled={} started={} finished={} exit={:?} signal={:?} reason={:?} bytes={} out={:?}",
                r.run_id,
                r.attempt,
                r.status,
                r.trigger.as_str(),
                r.scheduled_at,
                r.started_at.map(|t| t.to_string()).unwrap_or_default(),
                r.finished_at.map(|t| t.to_string()).unwrap_or_default(),
                r.exit_code,
                r.signal,
                r.reason,
                r.output_bytes,
                out
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
