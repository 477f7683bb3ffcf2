//! Cron expressions (5 or 6 fields, or a macro) and the search for the next
//! matching wall-clock time.
//!
//! The search works on "local seconds" (see [`super::civil`]) with bit sets
//! per field: it skips whole months whose days do not match and whole hours
//! or minutes that do not match, so its cost does not depend on how far the
//! next match is within a month, and `* * * * * *` costs the same as
//! `0 0 29 2 *`.

use super::civil::{civil_from_days, days_from_civil, SECONDS_PER_DAY};
use super::days::{bits, DayRule};
use super::error::ScheduleError;
use super::field::{self, parse_field, FieldSyntax, ParsedField};

/// How wall times map to instants across daylight-saving transitions (the
/// Vixie/ISC rule, DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DstPolicy {
    /// The seconds, minute or hour field starts with `*`: every real instant
    /// whose wall time matches; nothing in a gap, both passes of a fold.
    RealInstant,
    /// Wall times in a gap fire once at the transition; a repeated wall time
    /// fires only at its first occurrence.
    WallClock,
}

const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

const FIVE_FIELDS: [&FieldSyntax; 5] = [
    &field::MINUTE,
    &field::HOUR,
    &field::DAY_OF_MONTH,
    &field::MONTH,
    &field::DAY_OF_WEEK,
];
const SIX_FIELDS: [&FieldSyntax; 6] = [
    &field::SECOND,
    &field::MINUTE,
    &field::HOUR,
    &field::DAY_OF_MONTH,
    &field::MONTH,
    &field::DAY_OF_WEEK,
];

/// Years after which the Gregorian calendar, weekdays included, repeats.
const CALENDAR_CYCLE_YEARS: i64 = 400;

/// A parsed cron rule. Bit `v` of each set means value `v` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CronRule {
    seconds: u64,
    minutes: u64,
    hours: u64,
    months: u64,
    days: DayRule,
    policy: DstPolicy,
}

impl CronRule {
    /// Parses 5 or 6 fields or one of the `@yearly` … `@hourly` macros, and
    /// refuses rules that match no date at all.
    pub(crate) fn parse(expr: &str) -> Result<CronRule, ScheduleError> {
        let mut words = expr.split_whitespace();
        let first = words.next().ok_or(ScheduleError::Empty)?;
        let fields_text = if first.starts_with('@') {
            let name = first.to_ascii_lowercase();
            let (_, fields) = MACROS
                .iter()
                .find(|(macro_name, _)| *macro_name == name)
                .ok_or_else(|| ScheduleError::UnknownMacro(first.to_string()))?;
            let extra = words.collect::<Vec<_>>().join(" ");
            if !extra.is_empty() {
                return Err(ScheduleError::MacroArguments {
                    name: first.to_string(),
                    extra,
                });
            }
            *fields
        } else {
            expr
        };
        let rule = CronRule::parse_fields(fields_text)?;
        if !rule.can_fire() {
            return Err(ScheduleError::NeverFires(expr.trim().to_string()));
        }
        Ok(rule)
    }

    fn parse_fields(text: &str) -> Result<CronRule, ScheduleError> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let syntaxes: &[&FieldSyntax] = match words.len() {
            5 => &FIVE_FIELDS,
            6 => &SIX_FIELDS,
            0 => return Err(ScheduleError::Empty),
            n => return Err(ScheduleError::FieldCount(n)),
        };
        let mut parsed = [ParsedField::default(); 6];
        for (position, (word, syntax)) in words.iter().zip(syntaxes).enumerate() {
            parsed[position] =
                parse_field(word, syntax).map_err(|problem| ScheduleError::Field {
                    position: position + 1,
                    field: syntax.field,
                    problem,
                })?;
        }
        // Five fields: the seconds field is an implicit, literal `0`.
        let (second, rest) = match words.len() {
            5 => (
                ParsedField {
                    values: 1,
                    ..ParsedField::default()
                },
                &parsed[..5],
            ),
            _ => (parsed[0], &parsed[1..]),
        };
        let [minute, hour, day_of_month, month, day_of_week] =
            [rest[0], rest[1], rest[2], rest[3], rest[4]];
        let real_instant = [second, minute, hour]
            .iter()
            .any(|f| f.starts_with_wildcard);
        Ok(CronRule {
            seconds: second.values,
            minutes: minute.values,
            hours: hour.values,
            months: month.values,
            days: DayRule::new(day_of_month, day_of_week),
            policy: if real_instant {
                DstPolicy::RealInstant
            } else {
                DstPolicy::WallClock
            },
        })
    }

    pub(crate) fn policy(&self) -> DstPolicy {
        self.policy
    }

    /// Whether some date matches: the calendar repeats every 400 years, so
    /// one cycle decides it.
    fn can_fire(&self) -> bool {
        (2000..2000 + CALENDAR_CYCLE_YEARS)
            .any(|year| bits(self.months).any(|month| self.days.days_of(year, month) != 0))
    }

    /// The first matching local time in `[from, limit)`.
    pub(crate) fn next_local(&self, from: i64, limit: i64) -> Option<i64> {
        if from >= limit {
            return None;
        }
        let day = from.div_euclid(SECONDS_PER_DAY);
        let time_of_day = from.rem_euclid(SECONDS_PER_DAY);
        let candidate = match self.next_time_of_day(time_of_day) {
            Some(time) if self.day_matches(day) => day * SECONDS_PER_DAY + time,
            _ => {
                let last_day = (limit - 1).div_euclid(SECONDS_PER_DAY);
                let next_day = self.next_day(day + 1, last_day)?;
                next_day * SECONDS_PER_DAY + self.next_time_of_day(0)?
            }
        };
        (candidate < limit).then_some(candidate)
    }

    fn day_matches(&self, day: i64) -> bool {
        let (year, month, day_of_month) = civil_from_days(day);
        self.months & (1 << month) != 0 && self.days.days_of(year, month) & (1 << day_of_month) != 0
    }

    /// The first matching day in `[from, last]`, skipping whole months.
    fn next_day(&self, from: i64, last: i64) -> Option<i64> {
        let (mut year, mut month, mut day) = civil_from_days(from);
        loop {
            if days_from_civil(year, month, 1) > last {
                return None;
            }
            if self.months & (1 << month) != 0 {
                let candidates = self.days.days_of(year, month) & (u32::MAX << day);
                if candidates != 0 {
                    let found = days_from_civil(year, month, candidates.trailing_zeros());
                    return (found <= last).then_some(found);
                }
            }
            match next_bit(self.months, month + 1) {
                Some(next) => month = next,
                None => {
                    year += 1;
                    month = next_bit(self.months, 1)?;
                }
            }
            day = 1;
        }
    }

    /// The first matching time of day at or after `time_of_day` seconds.
    fn next_time_of_day(&self, time_of_day: i64) -> Option<i64> {
        // time_of_day is in 0..86_400, so these casts cannot truncate.
        let (hour, minute, second) = (
            (time_of_day / 3600) as u32,
            (time_of_day / 60 % 60) as u32,
            (time_of_day % 60) as u32,
        );
        for h in bits(self.hours & (u64::MAX << hour)) {
            let minute_from = if h == hour { minute } else { 0 };
            for m in bits(self.minutes & (u64::MAX << minute_from)) {
                let second_from = if h == hour && m == minute { second } else { 0 };
                if let Some(s) = next_bit(self.seconds, second_from) {
                    return Some(i64::from(h * 3600 + m * 60 + s));
                }
            }
        }
        None
    }
}

/// The lowest set bit of `mask` at or above `from`.
fn next_bit(mask: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = mask & (u64::MAX << from);
    (rest != 0).then(|| rest.trailing_zeros())
}
