//! Schedules (DESIGN §2): cron expressions, macros, `@every`, `@at`, time
//! zones and the Vixie daylight-saving policy.
//!
//! PLACEHOLDER INTERFACE — the implementation is being written; the public
//! signatures below are the contract the rest of the workspace uses.

use std::time::Duration;

use jiff::{Timestamp, ZonedDateTime};

/// Why an expression or zone was refused; the message names the part at fault.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("{0}")]
    Invalid(String),
}

/// One parsed rule: expression plus resolved zone.
#[derive(Clone, Debug)]
pub struct Schedule {
    expr: String,
    tz_name: String,
}

impl Schedule {
    /// Parses `expr` in zone `tz` (IANA name). `job_id` seeds the default
    /// `@every` offset.
    pub fn parse(expr: &str, tz: &str, job_id: &str) -> Result<Schedule, ScheduleError> {
        let _ = (expr, tz, job_id);
        Err(ScheduleError::Invalid(
            "schedules are not implemented yet".into(),
        ))
    }
    /// The first fire instant strictly after `t`, or `None` if there is none.
    pub fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        let _ = t;
        None
    }
    /// For `@at` rules: the one instant.
    pub fn one_shot_instant(&self) -> Option<Timestamp> {
        None
    }
    /// The zone's IANA name as stored on the rule (`UTC` for `@every`/`@at`).
    pub fn timezone_name(&self) -> &str {
        &self.tz_name
    }
    /// The expression as written.
    pub fn expr(&self) -> &str {
        &self.expr
    }
    /// The shortest gap between consecutive instants, approximately; used for
    /// the default `start_deadline`. `None` for `@at`.
    pub fn period_hint(&self) -> Option<Duration> {
        None
    }
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
/// the rule's zone.
pub fn preview(
    expr: &str,
    tz: &str,
    from: Timestamp,
    n: usize,
) -> Result<Vec<ZonedDateTime>, ScheduleError> {
    let _ = (expr, tz, from, n);
    Err(ScheduleError::Invalid(
        "schedules are not implemented yet".into(),
    ))
}

/// The version of the tz database compiled into this binary (e.g. `2025b`).
pub fn tzdata_version() -> String {
    "unknown".into()
}
