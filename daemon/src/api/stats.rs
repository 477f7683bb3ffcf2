//! `/api/v1/stats/daily`: run counts by status and duration percentiles per
//! UTC day, of one job or all, for the UI's charts. Served from the run
//! store's pre-aggregated daily counters (SQLite standalone, MongoDB's
//! `stats_daily` when configured), so a request reads at most `days` × jobs
//! small rows whatever the number of records.

use axum::extract::State;
use axum::Json;
use cronsun_proto::RunStatus;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::body::QueryArgs;
use super::error::{ApiResult, Failure};
use super::AppState;
use crate::store::stats::{day_of, DayCounts};

const DEFAULT_DAYS: u32 = 14;
const MAX_DAYS: u32 = 366;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatsQuery {
    /// Days to return, ending today (UTC); 1..=366, default 14.
    pub days: Option<u32>,
    /// Only this job (default: all jobs summed).
    pub job: Option<String>,
}

/// Duration percentiles in ms (within 19 %: log-scale histogram buckets).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Percentiles {
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
}

/// One UTC day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DayStats {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    pub succeeded: u64,
    pub failed: u64,
    pub timeout: u64,
    pub killed: u64,
    pub lost: u64,
    pub skipped: u64,
    pub missed: u64,
    /// Records that reached a final status (all of the above).
    pub runs: u64,
    /// `null` when no run of the day has a duration.
    pub duration_ms: Option<Percentiles>,
}

/// Oldest day first, every day present (zero-filled).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DailyStatsPage {
    pub days: Vec<DayStats>,
}

fn day_stats(day: String, c: &DayCounts) -> DayStats {
    let duration_ms = match (c.percentile(0.5), c.percentile(0.9), c.percentile(0.99)) {
        (Some(p50), Some(p90), Some(p99)) => Some(Percentiles { p50, p90, p99 }),
        _ => None,
    };
    DayStats {
        day,
        succeeded: c.status(RunStatus::Success),
        failed: c.status(RunStatus::Failed),
        timeout: c.status(RunStatus::Timeout),
        killed: c.status(RunStatus::Killed),
        lost: c.status(RunStatus::Lost),
        skipped: c.status(RunStatus::Skipped),
        missed: c.status(RunStatus::Missed),
        runs: c.runs,
        duration_ms,
    }
}

/// The `days` UTC days ending with the day of `now`, oldest first.
fn day_range(now: Timestamp, days: u32) -> Vec<String> {
    (0..days)
        .rev()
        .filter_map(|i| {
            now.checked_sub(SignedDuration::from_hours(24 * i64::from(i)))
                .ok()
        })
        .map(day_of)
        .collect()
}

#[utoipa::path(get, path = "/api/v1/stats/daily", tag = "runs", params(StatsQuery),
    responses((status = 200, body = DailyStatsPage), (status = 400, body = cronsun_proto::api::ApiError)))]
pub async fn daily(
    State(s): State<AppState>,
    p: super::auth::Principal,
    QueryArgs(q): QueryArgs<StatsQuery>,
) -> ApiResult<Json<DailyStatsPage>> {
    // Group-scoped callers see one job of their groups at a time: the
    // all-jobs totals would include other groups.
    if !p.groups.is_empty() {
        let Some(job) = q.job.as_deref() else {
            return Err(super::auth::principal::forbidden(format!(
                "statistics of all jobs include groups outside yours ({:?}); ask for one job with job=ID",
                p.groups
            )));
        };
        s.visible_job(&p, job).await?;
    }
    let days = q.days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        return Err(
            Failure::bad_request(format!("days must be between 1 and {MAX_DAYS}")).field("days"),
        );
    }
    let range = day_range(s.clock.now(), days);
    let (Some(from), Some(to)) = (range.first(), range.last()) else {
        return Ok(Json(DailyStatsPage { days: vec![] }));
    };
    let mut counts = s.runs.daily_stats(q.job.as_deref(), from, to).await?;
    let days = range
        .iter()
        .map(|d| day_stats(d.clone(), &counts.remove(d).unwrap_or_default()))
        .collect();
    Ok(Json(DailyStatsPage { days }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_ends_today_oldest_first() {
        let now: Timestamp = "2026-03-01T05:00:00Z".parse().expect("ts");
        assert_eq!(
            day_range(now, 3),
            ["2026-02-27", "2026-02-28", "2026-03-01"]
        );
        assert_eq!(day_range(now, 1), ["2026-03-01"]);
    }

    #[test]
    fn an_empty_day_is_zeroes_and_no_durations() {
        let d = day_stats("2026-03-01".into(), &DayCounts::default());
        assert_eq!(d.runs, 0);
        assert_eq!(d.duration_ms, None);
    }
}
