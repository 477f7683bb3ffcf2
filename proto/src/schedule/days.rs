//! Which days of a month a rule selects: day of month (with `L`, `L-n`,
//! `nW`, `LW`), day of week (with `nL`, `n#k`) and the Vixie rule joining
//! them.

use super::civil::{days_from_civil, days_in_month, weekday};
use super::field::ParsedField;

const SATURDAY: u32 = 6;
const SUNDAY: u32 = 0;

/// The day part of a cron rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DayRule {
    day_of_month: ParsedField,
    day_of_week: ParsedField,
    /// Vixie: when both fields are restricted (neither starts with `*` nor is
    /// `?`), a day matching either is enough; otherwise both must match.
    either: bool,
}

impl DayRule {
    pub(crate) fn new(day_of_month: ParsedField, day_of_week: ParsedField) -> DayRule {
        let either = !day_of_month.starts_with_wildcard && !day_of_week.starts_with_wildcard;
        DayRule {
            day_of_month,
            day_of_week,
            either,
        }
    }

    /// The matching days of `year-month` as a bit set (bit `d` = day `d`).
    pub(crate) fn days_of(&self, year: i64, month: u32) -> u32 {
        let length = days_in_month(year, month);
        let first_weekday = weekday(days_from_civil(year, month, 1));
        let by_month_day = self.month_days(length, first_weekday);
        let by_week_day = self.week_days(length, first_weekday);
        if self.either {
            by_month_day | by_week_day
        } else {
            by_month_day & by_week_day
        }
    }

    fn month_days(&self, length: u32, first_weekday: u32) -> u32 {
        let field = &self.day_of_month;
        // Bits 1..=length; the cast keeps the low 32 bits, which is all of them.
        let valid = ((1u64 << (length + 1)) - 2) as u32;
        let mut days = field.values as u32 & valid;
        for offset in bits(u64::from(field.last_day_offsets)) {
            if offset < length {
                days |= 1 << (length - offset);
            }
        }
        let weekday_of = |day: u32| (first_weekday + day - 1) % 7;
        for day in bits(u64::from(field.nearest_weekday)) {
            if day <= length {
                days |= 1 << nearest_weekday(day, weekday_of(day), length);
            }
        }
        if field.last_weekday {
            let last = match weekday_of(length) {
                SATURDAY => length - 1,
                SUNDAY => length - 2,
                _ => length,
            };
            days |= 1 << last;
        }
        days
    }

    fn week_days(&self, length: u32, first_weekday: u32) -> u32 {
        let field = &self.day_of_week;
        // The first day of the month falling on `wd`.
        let first_on = |wd: u32| 1 + (wd + 7 - first_weekday) % 7;
        let mut days = 0u32;
        for wd in bits(field.values) {
            let mut day = first_on(wd);
            while day <= length {
                days |= 1 << day;
                day += 7;
            }
        }
        for wd in bits(u64::from(field.last_of_weekday)) {
            let first = first_on(wd);
            days |= 1 << (first + (length - first) / 7 * 7);
        }
        for (k, weekdays) in (0u32..).zip(field.nth_weekday) {
            for wd in bits(u64::from(weekdays)) {
                let day = first_on(wd) + 7 * k;
                if day <= length {
                    days |= 1 << day;
                }
            }
        }
        days
    }
}

/// `dW`: the weekday nearest to day `day`, never leaving the month
/// (Quartz semantics: a Saturday the 1st moves to Monday the 3rd, a Sunday
/// that ends the month moves to Friday).
fn nearest_weekday(day: u32, day_weekday: u32, length: u32) -> u32 {
    match day_weekday {
        SATURDAY if day == 1 => 3,
        SATURDAY => day - 1,
        SUNDAY if day == length => day - 2,
        SUNDAY => day + 1,
        _ => day,
    }
}

/// The set bits of `mask`, lowest first.
pub(crate) fn bits(mut mask: u64) -> impl Iterator<Item = u32> {
    std::iter::from_fn(move || {
        if mask == 0 {
            return None;
        }
        let bit = mask.trailing_zeros();
        mask &= mask - 1;
        Some(bit)
    })
}
