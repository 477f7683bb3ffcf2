//! Why a schedule was refused. Every message names the part of the input at
//! fault; the API and the CLI show them verbatim.

use std::fmt;

/// A cron field, named as users know it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day of month",
            Field::Month => "month",
            Field::DayOfWeek => "day of week",
        })
    }
}

/// What is wrong inside one cron field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("empty item in list {0:?}")]
    EmptyItem(String),
    #[error("{value} is out of range {min}-{max}")]
    OutOfRange { value: String, min: u32, max: u32 },
    #[error("{text:?} is not a valid value; expected {expected}")]
    NotAValue {
        text: String,
        expected: &'static str,
    },
    #[error("{0:?} is malformed; expected a value, a range a-b, a step a-b/n or */n")]
    Malformed(String),
    #[error("range {text} is reversed (start after end); write {suggestion} instead")]
    ReversedRange { text: String, suggestion: String },
    #[error("step in {0:?} must be at least 1")]
    ZeroStep(String),
    #[error("step in {text:?} is out of range 1-{max}")]
    StepTooLarge { text: String, max: u32 },
    #[error("{text:?} is not allowed here: {reason}")]
    NotAllowed { text: String, reason: &'static str },
}

/// What is wrong with an `@every` rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EveryProblem {
    #[error("missing period; write e.g. @every 5m or @every 1h30m offset 10m")]
    MissingPeriod,
    #[error("missing duration after `offset`; write e.g. @every 1h offset 10m")]
    MissingOffset,
    #[error("{part} {text:?} is not a duration (e.g. 90s, 5m, 1h30m): {reason}")]
    NotADuration {
        part: &'static str,
        text: String,
        reason: String,
    },
    #[error("{part} {text:?} is not a whole number of seconds")]
    SubSecond { part: &'static str, text: String },
    #[error("period {0:?} must be at least 1s")]
    PeriodTooShort(String),
    #[error("offset {offset:?} must be less than the period {period:?}")]
    OffsetTooLarge { offset: String, period: String },
}

/// Why an expression or zone was refused; the message names the part at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the schedule is empty; write 5 cron fields (minute hour day-of-month month day-of-week), 6 (seconds first), a macro such as @daily, @every <duration> or @at <RFC 3339 instant>")]
    Empty,
    #[error("expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    #[error("field {position} ({field}): {problem}")]
    Field {
        position: usize,
        field: Field,
        problem: FieldProblem,
    },
    #[error("unknown macro {0:?}; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration> or @at <RFC 3339 instant>")]
    UnknownMacro(String),
    #[error("{name} takes no arguments, got {extra:?}")]
    MacroArguments { name: String, extra: String },
    #[error("@every: {0}")]
    Every(#[from] EveryProblem),
    #[error(
        "@at: {0:?} is not an RFC 3339 instant with an offset, e.g. 2026-03-29T03:00:00+02:00"
    )]
    At(String),
    #[error("unknown time zone {0:?}")]
    UnknownZone(String),
    #[error("{0:?} can never fire")]
    NeverFires(String),
}
