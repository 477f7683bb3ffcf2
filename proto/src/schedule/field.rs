//! One cron field: lists, ranges, steps, names and the day specials
//! (`L`, `L-n`, `nW`, `LW` in day of month; `nL`, `n#k` in day of week).

use super::error::{Field, FieldProblem};

const MONTH_NAMES: &[&str] = &[
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAY_NAMES: &[&str] = &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

const DAY_SPECIALS_ONLY: &str =
    "L, W and # are only allowed in day of month (L, L-n, nW, LW) and day of week (nL, n#k)";

/// The grammar of one field position.
#[derive(Debug)]
pub(crate) struct FieldSyntax {
    pub(crate) field: Field,
    min: u32,
    /// Largest value that may be written (7 = Sunday in day of week).
    max: u32,
    /// Upper end of `*` and of an open `a/n` step (6 in day of week, so that
    /// `*/2` does not add Sunday twice).
    open_max: u32,
    names: &'static [&'static str],
    /// Value of the first name (`JAN` = 1, `SUN` = 0).
    first_name_value: u32,
    expected: &'static str,
}

pub(crate) const SECOND: FieldSyntax = FieldSyntax::numeric(Field::Second, 0, 59, "0-59");
pub(crate) const MINUTE: FieldSyntax = FieldSyntax::numeric(Field::Minute, 0, 59, "0-59");
pub(crate) const HOUR: FieldSyntax = FieldSyntax::numeric(Field::Hour, 0, 23, "0-23");
pub(crate) const DAY_OF_MONTH: FieldSyntax =
    FieldSyntax::numeric(Field::DayOfMonth, 1, 31, "1-31, L, L-n, nW or LW");
pub(crate) const MONTH: FieldSyntax = FieldSyntax {
    field: Field::Month,
    min: 1,
    max: 12,
    open_max: 12,
    names: MONTH_NAMES,
    first_name_value: 1,
    expected: "1-12 or JAN-DEC",
};
pub(crate) const DAY_OF_WEEK: FieldSyntax = FieldSyntax {
    field: Field::DayOfWeek,
    min: 0,
    max: 7,
    open_max: 6,
    names: WEEKDAY_NAMES,
    first_name_value: 0,
    expected: "0-7 or SUN-SAT (0 and 7 are Sunday), nL or n#k",
};

impl FieldSyntax {
    const fn numeric(field: Field, min: u32, max: u32, expected: &'static str) -> FieldSyntax {
        FieldSyntax {
            field,
            min,
            max,
            open_max: max,
            names: &[],
            first_name_value: 0,
            expected,
        }
    }
}

/// A parsed field. Only day of month uses the `last_*`/`nearest_*` parts and
/// only day of week uses `last_of_weekday`/`nth_weekday`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct ParsedField {
    /// Bit `v` set: value `v` matches (day of week: 0-6, Sunday folded to 0).
    pub(crate) values: u64,
    /// Bit `n` set: `L-n` (`L` is `L-0`).
    pub(crate) last_day_offsets: u32,
    /// Bit `d` set: `dW`.
    pub(crate) nearest_weekday: u32,
    /// `LW`.
    pub(crate) last_weekday: bool,
    /// Bit `d` set: `dL`, the last weekday `d` of the month.
    pub(crate) last_of_weekday: u8,
    /// `nth_weekday[k - 1]` bit `d` set: `d#k`.
    pub(crate) nth_weekday: [u8; 5],
    /// The literal text starts with `*` or is `?`: it drives both the Vixie
    /// day-of-month/day-of-week rule and the daylight-saving policy.
    pub(crate) starts_with_wildcard: bool,
}

/// Parses one field's text according to `syntax`.
pub(crate) fn parse_field(text: &str, syntax: &FieldSyntax) -> Result<ParsedField, FieldProblem> {
    let mut parsed = ParsedField {
        starts_with_wildcard: text.starts_with('*') || text.starts_with('?'),
        ..ParsedField::default()
    };
    for item in text.split(',') {
        if item.is_empty() {
            return Err(FieldProblem::EmptyItem(text.to_string()));
        }
        let handled = match syntax.field {
            Field::DayOfMonth => parse_day_of_month_special(item, &mut parsed)?,
            Field::DayOfWeek => parse_day_of_week_special(item, syntax, &mut parsed)?,
            _ => {
                reject_day_special(item)?;
                false
            }
        };
        if !handled {
            parsed.values |= parse_values(item, syntax)?;
        }
    }
    if syntax.field == Field::DayOfWeek && parsed.values & (1 << 7) != 0 {
        parsed.values = (parsed.values & !(1 << 7)) | 1;
    }
    Ok(parsed)
}

/// `*`, `?`, `a`, `a-b`, each optionally followed by `/step`.
fn parse_values(item: &str, syntax: &FieldSyntax) -> Result<u64, FieldProblem> {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(step, item, syntax)?)),
        None => (item, None),
    };
    let (low, high) = if base == "*" || base == "?" {
        (syntax.min, syntax.open_max)
    } else if let Some((start, end)) = base.split_once('-') {
        let low = parse_value(start, item, syntax)?;
        let high = parse_value(end, item, syntax)?;
        if low > high {
            return Err(FieldProblem::ReversedRange {
                text: base.to_string(),
                suggestion: format!("{start}-{},{}-{end}", syntax.open_max, syntax.min),
            });
        }
        (low, high)
    } else {
        let value = parse_value(base, item, syntax)?;
        match step {
            Some(_) => (value, syntax.open_max.max(value)),
            None => (value, value),
        }
    };
    let step = step.unwrap_or(1) as usize;
    Ok((low..=high).step_by(step).fold(0, |bits, v| bits | 1 << v))
}

fn parse_step(step: &str, item: &str, syntax: &FieldSyntax) -> Result<u32, FieldProblem> {
    let largest = syntax.open_max - syntax.min + 1;
    match parse_number(step) {
        Some(0) => Err(FieldProblem::ZeroStep(item.to_string())),
        Some(n) if n <= largest => Ok(n),
        Some(_) => Err(FieldProblem::StepTooLarge {
            text: item.to_string(),
            max: largest,
        }),
        None => Err(FieldProblem::Malformed(item.to_string())),
    }
}

/// A number or a name, within the field's range.
fn parse_value(text: &str, item: &str, syntax: &FieldSyntax) -> Result<u32, FieldProblem> {
    if text.is_empty() {
        return Err(FieldProblem::Malformed(item.to_string()));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match parse_number(text) {
            Some(v) if (syntax.min..=syntax.max).contains(&v) => Ok(v),
            _ => Err(FieldProblem::OutOfRange {
                value: text.to_string(),
                min: syntax.min,
                max: syntax.max,
            }),
        };
    }
    match syntax
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        // Position is below 12, so the cast cannot truncate.
        Some(index) => Ok(syntax.first_name_value + index as u32),
        None => Err(FieldProblem::NotAValue {
            text: text.to_string(),
            expected: syntax.expected,
        }),
    }
}

/// Decimal digits only, at most 9 of them (so that no value overflows).
fn parse_number(text: &str) -> Option<u32> {
    if text.is_empty() || text.len() > 9 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// `L`, `L-n`, `LW`, `nW`; returns whether `item` was one of them.
fn parse_day_of_month_special(item: &str, parsed: &mut ParsedField) -> Result<bool, FieldProblem> {
    if item.eq_ignore_ascii_case("L") {
        parsed.last_day_offsets |= 1;
    } else if item.eq_ignore_ascii_case("LW") {
        parsed.last_weekday = true;
    } else if let Some(offset) = item
        .strip_prefix(['L', 'l'])
        .and_then(|rest| rest.strip_prefix('-'))
    {
        match parse_number(offset) {
            Some(n) if n <= 30 => parsed.last_day_offsets |= 1 << n,
            Some(_) => {
                return Err(FieldProblem::OutOfRange {
                    value: item.to_string(),
                    min: 0,
                    max: 30,
                })
            }
            None => return Err(FieldProblem::Malformed(item.to_string())),
        }
    } else if let Some(day) = item.strip_suffix(['W', 'w']) {
        match parse_number(day) {
            Some(d) if (1..=31).contains(&d) => parsed.nearest_weekday |= 1 << d,
            Some(_) => {
                return Err(FieldProblem::OutOfRange {
                    value: day.to_string(),
                    min: 1,
                    max: 31,
                })
            }
            None => return Err(FieldProblem::Malformed(item.to_string())),
        }
    } else if item.contains('#') {
        return Err(FieldProblem::NotAllowed {
            text: item.to_string(),
            reason: DAY_SPECIALS_ONLY,
        });
    } else {
        return Ok(false);
    }
    Ok(true)
}

/// `dL`, `d#k`; returns whether `item` was one of them.
fn parse_day_of_week_special(
    item: &str,
    syntax: &FieldSyntax,
    parsed: &mut ParsedField,
) -> Result<bool, FieldProblem> {
    if item.eq_ignore_ascii_case("L") {
        return Err(FieldProblem::NotAllowed {
            text: item.to_string(),
            reason:
                "a bare L is ambiguous in day of week; write e.g. 5L or FRIL for the last Friday",
        });
    }
    if let Some((day, nth)) = item.split_once('#') {
        let weekday = parse_value(day, item, syntax)? % 7;
        match parse_number(nth) {
            Some(k) if (1..=5).contains(&k) => parsed.nth_weekday[k as usize - 1] |= 1 << weekday,
            Some(_) => {
                return Err(FieldProblem::OutOfRange {
                    value: nth.to_string(),
                    min: 1,
                    max: 5,
                })
            }
            None => return Err(FieldProblem::Malformed(item.to_string())),
        }
        return Ok(true);
    }
    if let Some(day) = item.strip_suffix(['L', 'l']) {
        let weekday = parse_value(day, item, syntax)? % 7;
        parsed.last_of_weekday |= 1 << weekday;
        return Ok(true);
    }
    if item.ends_with(['W', 'w']) && item.len() > 1 && !item.contains('-') {
        return Err(FieldProblem::NotAllowed {
            text: item.to_string(),
            reason: DAY_SPECIALS_ONLY,
        });
    }
    Ok(false)
}

/// A clear message for `L`/`W`/`#` outside the day fields (`JUL` is fine).
fn reject_day_special(item: &str) -> Result<(), FieldProblem> {
    let digits_then = |suffix: [char; 2]| {
        item.strip_suffix(suffix)
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
    };
    if item.eq_ignore_ascii_case("L")
        || item.eq_ignore_ascii_case("LW")
        || item.contains('#')
        || digits_then(['W', 'w'])
        || digits_then(['L', 'l'])
    {
        return Err(FieldProblem::NotAllowed {
            text: item.to_string(),
            reason: DAY_SPECIALS_ONLY,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str, syntax: &FieldSyntax) -> Vec<u32> {
        let parsed = parse_field(text, syntax).expect("valid field");
        (0..64).filter(|v| parsed.values & (1 << v) != 0).collect()
    }

    fn problem(text: &str, syntax: &FieldSyntax) -> String {
        parse_field(text, syntax)
            .expect_err("invalid field")
            .to_string()
    }

    #[test]
    fn lists_ranges_steps_and_names() {
        assert_eq!(values("*", &HOUR), (0..24).collect::<Vec<_>>());
        assert_eq!(values("?", &MONTH), (1..=12).collect::<Vec<_>>());
        assert_eq!(values("1,5,10-12", &MINUTE), vec![1, 5, 10, 11, 12]);
        assert_eq!(values("*/15", &MINUTE), vec![0, 15, 30, 45]);
        assert_eq!(values("10-30/10", &SECOND), vec![10, 20, 30]);
        assert_eq!(
            values("50/5", &MINUTE),
            vec![50, 55],
            "start/step = start-max/step"
        );
        assert_eq!(values("jan-Mar,DEC", &MONTH), vec![1, 2, 3, 12]);
        assert_eq!(values("*/5", &MONTH), vec![1, 6, 11]);
        assert_eq!(values("*/2", &DAY_OF_MONTH)[..3], [1, 3, 5]);
    }

    #[test]
    fn sunday_is_0_and_7() {
        assert_eq!(values("7", &DAY_OF_WEEK), vec![0]);
        assert_eq!(values("SUN", &DAY_OF_WEEK), vec![0]);
        assert_eq!(values("5-7", &DAY_OF_WEEK), vec![0, 5, 6]);
        assert_eq!(values("mon-fri", &DAY_OF_WEEK), vec![1, 2, 3, 4, 5]);
        assert_eq!(values("*/2", &DAY_OF_WEEK), vec![0, 2, 4, 6]);
        assert_eq!(values("0-7", &DAY_OF_WEEK), (0..7).collect::<Vec<_>>());
    }

    #[test]
    fn day_specials() {
        let dom = parse_field("L,L-3,15W,LW,1", &DAY_OF_MONTH).expect("valid");
        assert_eq!(dom.last_day_offsets, 1 | 1 << 3);
        assert_eq!(dom.nearest_weekday, 1 << 15);
        assert!(dom.last_weekday);
        assert_eq!(dom.values, 1 << 1);
        assert!(!dom.starts_with_wildcard);
        assert_eq!(
            parse_field("l,lw,15w", &DAY_OF_MONTH),
            parse_field("L,LW,15W", &DAY_OF_MONTH)
        );
        let dow = parse_field("5L,MON#2,1#5,satl,7#1", &DAY_OF_WEEK).expect("valid");
        assert_eq!(dow.last_of_weekday, 1 << 5 | 1 << 6);
        assert_eq!(dow.nth_weekday, [1, 1 << 1, 0, 0, 1 << 1]);
        assert_eq!(dow.values, 0);
        assert!(
            parse_field("*/5,7", &MINUTE)
                .expect("valid")
                .starts_with_wildcard
        );
        assert!(
            !parse_field("7,*/5", &MINUTE)
                .expect("valid")
                .starts_with_wildcard
        );
        assert!(
            !parse_field("0-59/5", &MINUTE)
                .expect("valid")
                .starts_with_wildcard
        );
    }

    #[test]
    fn problems_name_the_offending_text() {
        assert_eq!(problem("32", &DAY_OF_MONTH), "32 is out of range 1-31");
        assert_eq!(problem("60", &MINUTE), "60 is out of range 0-59");
        assert_eq!(
            problem("99999999999", &HOUR),
            "99999999999 is out of range 0-23"
        );
        assert_eq!(problem("0", &MONTH), "0 is out of range 1-12");
        assert_eq!(problem("8", &DAY_OF_WEEK), "8 is out of range 0-7");
        assert_eq!(problem("1,,2", &MINUTE), "empty item in list \"1,,2\"");
        assert_eq!(problem("5,", &MINUTE), "empty item in list \"5,\"");
        assert_eq!(
            problem("*/0", &MINUTE),
            "step in \"*/0\" must be at least 1"
        );
        assert_eq!(
            problem("*/61", &MINUTE),
            "step in \"*/61\" is out of range 1-60"
        );
        assert_eq!(
            problem("FRI-MON", &DAY_OF_WEEK),
            "range FRI-MON is reversed (start after end); write FRI-6,0-MON instead"
        );
        assert_eq!(
            problem("22-2", &HOUR),
            "range 22-2 is reversed (start after end); write 22-23,0-2 instead"
        );
        assert_eq!(
            problem("MON", &MONTH),
            "\"MON\" is not a valid value; expected 1-12 or JAN-DEC"
        );
        assert_eq!(
            problem("JAN", &DAY_OF_WEEK).split(';').next(),
            Some("\"JAN\" is not a valid value")
        );
        assert_eq!(
            problem("x", &MINUTE),
            "\"x\" is not a valid value; expected 0-59"
        );
        assert!(problem("5-", &MINUTE).starts_with("\"5-\" is malformed"));
        assert!(problem("*/x", &MINUTE).starts_with("\"*/x\" is malformed"));
        assert_eq!(problem("l-40", &DAY_OF_MONTH), "l-40 is out of range 0-30");
        assert!(problem("L", &HOUR).starts_with("\"L\" is not allowed here: L, W and #"));
        assert!(problem("15W", &MINUTE).starts_with("\"15W\" is not allowed here"));
        assert!(problem("1#2", &DAY_OF_MONTH).starts_with("\"1#2\" is not allowed here"));
        assert!(problem("L", &DAY_OF_WEEK).contains("ambiguous"));
        assert_eq!(problem("L-31", &DAY_OF_MONTH), "L-31 is out of range 0-30");
        assert_eq!(problem("32W", &DAY_OF_MONTH), "32 is out of range 1-31");
        assert_eq!(problem("MON#6", &DAY_OF_WEEK), "6 is out of range 1-5");
        assert_eq!(problem("MON#0", &DAY_OF_WEEK), "0 is out of range 1-5");
        assert!(problem("L/2", &DAY_OF_MONTH).contains("\"L\" is not a valid value"));
    }
}
