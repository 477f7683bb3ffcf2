//! What to do with a job's instants that came due: start, or record as
//! missed and catch up (DESIGN §2 `missed`, `start_deadline`, `max_catchup`).
//!
//! Pure logic over the schedule, so the restart, clock-step and slow-store
//! cases all go through the same few lines and are unit-tested.

use std::collections::VecDeque;
use std::time::Duration;

use cronsun_proto::job::Missed;
use cronsun_proto::schedule::JobSchedule;
use jiff::{SignedDuration, Timestamp};

/// More due instants than this in one pass are counted, not listed (a
/// per-second job after days of downtime).
const SCAN_LIMIT: usize = 200_000;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct DuePlan {
    /// Instants to start now (within their start deadline), oldest first.
    pub start: Vec<Timestamp>,
    /// Missed instants recorded one by one (the newest `max_catchup`), oldest first.
    pub missed: Vec<Timestamp>,
    /// Older missed instants summarised in one record: (count, first, last).
    pub summarised: Option<(u64, Timestamp, Timestamp)>,
    /// Missed instants to run as catch-up runs, oldest first.
    pub catchup: Vec<Timestamp>,
    /// The last instant this plan decides; the job's cursor moves here.
    pub decided_through: Option<Timestamp>,
}

pub struct PlanInput<'a> {
    pub schedule: &'a JobSchedule,
    /// Everything at or before this instant is already decided (the watermark).
    pub after: Timestamp,
    pub now: Timestamp,
    /// Instants up to `now + lead` are decided now (claimed ahead of time).
    pub lead: Duration,
    pub start_deadline: Duration,
    pub missed: Missed,
    pub max_catchup: u32,
}

pub fn plan(input: &PlanInput<'_>) -> DuePlan {
    let horizon = input.now + signed(input.lead);
    let oldest_startable = input.now - signed(input.start_deadline);
    let keep = input.max_catchup.max(1) as usize;
    let mut plan = DuePlan::default();
    let mut newest_missed: VecDeque<Timestamp> = VecDeque::new();
    let mut older: Option<(u64, Timestamp, Timestamp)> = None;
    let mut cursor = input.after;
    let mut scanned = 0usize;
    while let Some(t) = input.schedule.next_after(cursor) {
        if t > horizon {
            break;
        }
        cursor = t;
        plan.decided_through = Some(t);
        if t >= oldest_startable {
            plan.start.push(t);
            continue;
        }
        newest_missed.push_back(t);
        if newest_missed.len() > keep {
            if let Some(old) = newest_missed.pop_front() {
                older = Some(match older {
                    None => (1, old, old),
                    Some((n, first, _)) => (n + 1, first, old),
                });
            }
        }
        scanned += 1;
        if scanned == SCAN_LIMIT {
            // Jump ahead: count what was scanned, resume close to the deadline.
            let resume = oldest_startable
                - signed(input.start_deadline.max(Duration::from_secs(1)) * keep as u32);
            if resume > cursor {
                cursor = resume;
            }
        }
    }
    plan.missed = newest_missed.into_iter().collect();
    plan.summarised = older;
    plan.catchup = match input.missed {
        Missed::Skip => Vec::new(),
        Missed::Once => plan.missed.last().copied().into_iter().collect(),
        Missed::All => plan.missed.clone(),
    };
    plan
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

/// The default start deadline: the smaller of the schedule's period and 5 min
/// (at least 1 s).
pub fn default_start_deadline(schedule: &JobSchedule) -> Duration {
    let five = Duration::from_secs(300);
    schedule
        .period_hint()
        .map_or(five, |p| p.min(five))
        .max(Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::schedule::Schedule;

    fn sched(expr: &str) -> JobSchedule {
        JobSchedule::new(vec![Schedule::parse(expr, "UTC", "job").expect("valid")])
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn input<'a>(s: &'a JobSchedule, after: &str, now: &str, missed: Missed) -> PlanInput<'a> {
        PlanInput {
            schedule: s,
            after: ts(after),
            now: ts(now),
            lead: Duration::from_millis(5),
            start_deadline: Duration::from_secs(60),
            missed,
            max_catchup: 3,
        }
    }

    #[test]
    fn on_time_instant_starts() {
        let s = sched("* * * * *");
        let p = plan(&input(
            &s,
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:59.996Z",
            Missed::Skip,
        ));
        assert_eq!(
            p.start,
            vec![ts("2026-01-01T10:01:00Z")],
            "claimed within lead"
        );
        assert!(p.missed.is_empty() && p.catchup.is_empty());
        assert_eq!(p.decided_through, Some(ts("2026-01-01T10:01:00Z")));
    }

    #[test]
    fn nothing_due_decides_nothing() {
        let s = sched("* * * * *");
        let p = plan(&input(
            &s,
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:00:30Z",
            Missed::All,
        ));
        assert_eq!(p, DuePlan::default());
    }

    #[test]
    fn downtime_is_missed_newest_kept_older_summarised() {
        let s = sched("* * * * *");
        // Down from 10:00 to 10:10:30: 10:01..10:09 are past the 60 s deadline, 10:10 is not.
        let p = plan(&input(
            &s,
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:10:30Z",
            Missed::Once,
        ));
        assert_eq!(p.start, vec![ts("2026-01-01T10:10:00Z")]);
        assert_eq!(
            p.missed,
            vec![
                ts("2026-01-01T10:07:00Z"),
                ts("2026-01-01T10:08:00Z"),
                ts("2026-01-01T10:09:00Z")
            ]
        );
        assert_eq!(
            p.summarised,
            Some((6, ts("2026-01-01T10:01:00Z"), ts("2026-01-01T10:06:00Z")))
        );
        assert_eq!(
            p.catchup,
            vec![ts("2026-01-01T10:09:00Z")],
            "once: the newest missed"
        );
    }

    #[test]
    fn missed_all_catches_up_oldest_first_and_skip_none() {
        let s = sched("* * * * *");
        let p = plan(&input(
            &s,
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:04:30Z",
            Missed::All,
        ));
        assert_eq!(p.catchup, p.missed);
        assert!(p.catchup.windows(2).all(|w| w[0] < w[1]));
        let p = plan(&input(
            &s,
            "2026-01-01T10:00:00Z",
            "2026-01-01T10:04:30Z",
            Missed::Skip,
        ));
        assert!(p.catchup.is_empty() && !p.missed.is_empty());
    }

    #[test]
    fn days_of_per_second_downtime_stay_bounded() {
        let s = sched("* * * * * *");
        let p = plan(&input(
            &s,
            "2026-01-01T00:00:00Z",
            "2026-01-04T00:00:00Z",
            Missed::Once,
        ));
        assert_eq!(p.missed.len(), 3);
        let (n, first, _) = p.summarised.expect("summary");
        assert!(n >= 200_000, "counted {n}");
        assert_eq!(first, ts("2026-01-01T00:00:01Z"));
        assert_eq!(
            p.start.len(),
            61,
            "the last 60 s are still startable: {:?}",
            p.start.len()
        );
    }

    #[test]
    fn default_deadline_is_period_capped_at_five_minutes() {
        assert_eq!(
            default_start_deadline(&sched("* * * * * *")),
            Duration::from_secs(1)
        );
        assert_eq!(
            default_start_deadline(&sched("*/2 * * * *")),
            Duration::from_secs(120)
        );
        assert_eq!(
            default_start_deadline(&sched("0 3 * * *")),
            Duration::from_secs(300)
        );
    }
}
