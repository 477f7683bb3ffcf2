//! Schedules (DESIGN §2): cron expressions, macros, `@every`, `@at`, time
//! zones and the Vixie daylight-saving policy.
//!
//! # Guarantees
//!
//! - [`Schedule::next_after`] returns the first fire instant *strictly*
//!   after its argument; instants are whole seconds; repeated calls walk the
//!   instants in increasing order and never skip one. It is cheap whatever
//!   the rule: bit sets per field, whole months skipped, one step per offset
//!   segment of the zone, no per-second or per-minute iteration (release
//!   build: ~0.25 µs for `* * * * * *`, ~4 µs for `0 0 29 2 *` in
//!   Europe/Berlin, which walks 8 offset segments per leap day); it gives up (`None`) only past a horizon of 401 years (one
//!   Gregorian cycle, so rare rules such as `0 0 * 2 FRI#5` are still found),
//!   or at jiff's last representable instant (9999-12-30).
//! - Zones come from the tz database bundled in the binary
//!   ([`tzdata_version`]), never from the host, so every node computes the
//!   same instants. Zone names are matched case-insensitively and stored in
//!   their canonical spelling.
//! - [`Schedule::parse`] refuses, with a message naming the part at fault,
//!   wrong field counts, empty list items, out-of-range values, zero steps,
//!   reversed ranges, unknown names, macros and zones, and rules that can
//!   never fire (no date matches their day and month fields in a whole
//!   400-year Gregorian cycle, after which the calendar repeats).
//!
//! # Syntax decisions
//!
//! - Five fields are `min hour dom month dow` (seconds implicitly `0`); six
//!   put seconds first.
//! - `?` means exactly `*` in every field, including for the
//!   daylight-saving policy and the Vixie day rule.
//! - Wrap-around ranges (`FRI-MON`, `22-2`) are **refused**; the message
//!   suggests the equivalent list (`FRI-6,0-MON`). Refusing is unambiguous
//!   and matches Vixie cron, where such ranges are errors.
//! - `a/n` means `a-max/n`; for day of week `max` is 6 (Saturday) so `*/2`
//!   is Sun, Tue, Thu, Sat. Steps must be in 1..=span of the field.
//! - Day of month: `L` (last day), `L-n` (n days before it, 0..=30), `nW`
//!   (weekday nearest to day n, never leaving the month; no fire in months
//!   shorter than n), `LW` (last weekday). Day of week: `nL` (last weekday n
//!   of the month), `n#k` (k-th weekday n, k in 1..=5; no fire in months
//!   without one). Names work in both (`FRIL`, `MON#2`). A bare `L` in day of
//!   week is refused as ambiguous.
//! - Vixie rule: when day of month and day of week are both restricted
//!   (neither starts with `*` nor is `?`), a day matching either fires.
//! - `@every` accepts humantime durations (`90s`, `5m`, `1h30m`, `1h 30m`)
//!   in whole seconds; the default offset is the first 8 bytes (big endian)
//!   of SHA-256 of the job id, modulo the period.
//! - `@at` takes one RFC 3339 instant with an offset; fractional seconds are
//!   kept as written.
//!
//! # Daylight-saving policy (Vixie/ISC)
//!
//! A rule whose seconds, minute or hour field (literal text; seconds is `0`
//! for five fields) starts with `*` fires at every real instant whose wall
//! time matches: nothing in a spring-forward gap, both passes of a repeated
//! stretch. Every other rule is wall-clock: the matches inside a gap fire
//! once, at the transition instant (merged with each other and with a match
//! there), and a wall time that occurs twice fires only at its first
//! occurrence, so a search starting between the two passes does not fire it
//! again. See [`zone`] for the algorithm.

mod civil;
mod cron;
mod days;
mod error;
mod every;
mod field;
mod zone;

#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

pub use error::{EveryProblem, Field, FieldProblem, ScheduleError};

use cron::CronRule;
use every::Every;

/// Samples taken to estimate a cron rule's shortest gap.
const PERIOD_SAMPLES: usize = 16;

/// One parsed rule: expression plus resolved zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: String,
    tz_name: String,
    rule: Rule,
    period_hint: Option<Duration>,
}

#[derive(Clone, Debug)]
enum Rule {
    Cron { cron: CronRule, zone: TimeZone },
    Every(Every),
    At(Timestamp),
}

impl Schedule {
    /// Parses `expr` in zone `tz` (IANA name). `job_id` seeds the default
    /// `@every` offset. `@every` and `@at` ignore `tz` and store `UTC`.
    pub fn parse(expr: &str, tz: &str, job_id: &str) -> Result<Schedule, ScheduleError> {
        let trimmed = expr.trim();
        let (first, rest) = trimmed
            .split_once(char::is_whitespace)
            .unwrap_or((trimmed, ""));
        let rule = if first.eq_ignore_ascii_case("@every") {
            Rule::Every(Every::parse(rest, job_id)?)
        } else if first.eq_ignore_ascii_case("@at") {
            Rule::At(every::parse_at(rest)?)
        } else {
            let cron = CronRule::parse(trimmed)?;
            Rule::Cron {
                cron,
                zone: zone::resolve(tz)?,
            }
        };
        let tz_name = match &rule {
            Rule::Cron { zone, .. } => zone::name_of(zone),
            Rule::Every(_) | Rule::At(_) => "UTC".to_string(),
        };
        let period_hint = match &rule {
            Rule::Cron { cron, .. } => cron_period_hint(cron),
            Rule::Every(every) => Some(every.period()),
            Rule::At(_) => None,
        };
        Ok(Schedule {
            expr: expr.to_string(),
            tz_name,
            rule,
            period_hint,
        })
    }

    /// The first fire instant strictly after `t`, or `None` if there is none.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match &self.rule {
            Rule::Cron { cron, zone } => zone::next_fire(cron, zone, t),
            Rule::Every(every) => every.next_after(t),
            Rule::At(at) => (*at > t).then_some(*at),
        }
    }

    /// The instants strictly after `t`, in order.
    pub fn instants_after(&self, t: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        std::iter::successors(self.next_after(t), move |previous| {
            self.next_after(*previous)
        })
    }

    /// For `@at` rules: the one instant.
    pub fn one_shot_instant(&self) -> Option<Timestamp> {
        match self.rule {
            Rule::At(at) => Some(at),
            _ => None,
        }
    }

    /// The zone's IANA name as stored on the rule (`UTC` for `@every`/`@at`).
    pub fn timezone_name(&self) -> &str {
        &self.tz_name
    }

    /// The zone instants are shown in.
    pub fn time_zone(&self) -> TimeZone {
        match &self.rule {
            Rule::Cron { zone, .. } => zone.clone(),
            Rule::Every(_) | Rule::At(_) => TimeZone::UTC,
        }
    }

    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// The shortest gap between consecutive instants, approximately; used for
    /// the default `start_deadline`. `None` for `@at`.
    pub fn period_hint(&self) -> Option<Duration> {
        self.period_hint
    }

    /// For `@every` rules: the period and the offset from the epoch.
    pub fn every(&self) -> Option<(Duration, Duration)> {
        match &self.rule {
            Rule::Every(every) => Some((every.period(), every.offset())),
            _ => None,
        }
    }
}

/// The smallest gap among the first instants after 2001-01-01 in UTC
/// (daylight saving ignored: it is a hint).
fn cron_period_hint(cron: &CronRule) -> Option<Duration> {
    let start = civil::days_from_civil(2001, 1, 1) * civil::SECONDS_PER_DAY;
    let limit = i64::MAX;
    let samples = std::iter::successors(cron.next_local(start, limit), |t| {
        cron.next_local(t + 1, limit)
    });
    let mut previous = None;
    let mut shortest: Option<i64> = None;
    for t in samples.take(PERIOD_SAMPLES) {
        if let Some(p) = previous {
            shortest = Some(shortest.map_or(t - p, |s: i64| s.min(t - p)));
        }
        previous = Some(t);
    }
    shortest
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
}

/// A job's instants: the union of its rules, one per distinct instant.
#[derive(Clone, Debug)]
pub struct JobSchedule {
    rules: Vec<Schedule>,
}

impl JobSchedule {
    pub fn new(rules: Vec<Schedule>) -> Self {
        JobSchedule { rules }
    }
    pub fn rules(&self) -> &[Schedule] {
        &self.rules
    }
    /// The first instant of any rule strictly after `t`.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        self.rules.iter().filter_map(|r| r.next_after(t)).min()
    }
    /// Whether every rule is `@at`.
    pub fn is_one_shot(&self) -> bool {
        self.rules.iter().all(|r| r.one_shot_instant().is_some())
    }
    /// The smallest period hint of the rules.
    pub fn period_hint(&self) -> Option<Duration> {
        self.rules.iter().filter_map(Schedule::period_hint).min()
    }
}

/// `cronsun cron next`: the next `n` instants strictly after `from`, shown in
/// the rule's zone. `@every` uses the offset of an empty job id; see
/// [`preview_for_job`] to preview a given job's offset.
pub fn preview(
    expr: &str,
    tz: &str,
    from: Timestamp,
    n: usize,
) -> Result<Vec<ZonedDateTime>, ScheduleError> {
    preview_for_job(expr, tz, "", from, n)
}

/// [`preview`] for the rule as job `job_id` would run it.
pub fn preview_for_job(
    expr: &str,
    tz: &str,
    job_id: &str,
    from: Timestamp,
    n: usize,
) -> Result<Vec<ZonedDateTime>, ScheduleError> {
    let schedule = Schedule::parse(expr, tz, job_id)?;
    let zone = schedule.time_zone();
    Ok(schedule
        .instants_after(from)
        .take(n)
        .map(|t| t.to_zoned_datetime(zone.clone()))
        .collect())
}

/// The version of the tz database compiled into this binary (e.g. `2025b`).
pub fn tzdata_version() -> String {
    zone::BUNDLED_TZDATA_VERSION.to_string()
}
