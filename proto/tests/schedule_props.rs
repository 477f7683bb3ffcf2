//! Property tests of the schedule engine against an independent oracle.
//!
//! Expressions are generated from a small model (field items and day
//! specials) that is both rendered to text and evaluated directly with
//! jiff's calendar, so the oracle shares no code with the engine.

use cronsun_proto::schedule::{Schedule, ScheduleError};
use jiff::civil::DateTime;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{SignedDuration, Timestamp};
use proptest::prelude::*;

const ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "America/Santiago",
    "Asia/Kolkata",
    "UTC",
];
const DST_ZONES: &[&str] = &[
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "Australia/Sydney",
    "America/Santiago",
];

fn zone(name: &str) -> TimeZone {
    TimeZoneDatabase::bundled().get(name).expect("bundled zone")
}

// ---------------------------------------------------------------------------
// The model.

#[derive(Clone, Debug)]
enum Item {
    Star(Option<u32>),
    Value(u32),
    Range(u32, u32, Option<u32>),
    /// `a/n` = `a-max/n`.
    Open(u32, u32),
}

#[derive(Clone, Debug)]
enum DaySpecial {
    Last,
    NearestWeekday(u32),
    LastWeekday,
    LastOf(u32),
    Nth(u32, u32),
}

#[derive(Clone, Debug)]
struct FieldModel {
    items: Vec<Item>,
    specials: Vec<DaySpecial>,
}

#[derive(Clone, Copy)]
struct Bounds {
    min: u32,
    max: u32,
    open_max: u32,
}

const SECOND: Bounds = Bounds {
    min: 0,
    max: 59,
    open_max: 59,
};
const MINUTE: Bounds = SECOND;
const HOUR: Bounds = Bounds {
    min: 0,
    max: 23,
    open_max: 23,
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    open_max: 31,
};
const MONTH: Bounds = Bounds {
    min: 1,
    max: 12,
    open_max: 12,
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 7,
    open_max: 6,
};

impl FieldModel {
    fn star() -> FieldModel {
        FieldModel {
            items: vec![Item::Star(None)],
            specials: vec![],
        }
    }

    fn render(&self) -> String {
        let mut parts: Vec<String> = self
            .items
            .iter()
            .map(|item| match item {
                Item::Star(None) => "*".to_string(),
                Item::Star(Some(n)) => format!("*/{n}"),
                Item::Value(v) => v.to_string(),
                Item::Range(a, b, None) => format!("{a}-{b}"),
                Item::Range(a, b, Some(n)) => format!("{a}-{b}/{n}"),
                Item::Open(a, n) => format!("{a}/{n}"),
            })
            .collect();
        parts.extend(self.specials.iter().map(|s| match s {
            DaySpecial::Last => "L".to_string(),
            DaySpecial::NearestWeekday(d) => format!("{d}W"),
            DaySpecial::LastWeekday => "LW".to_string(),
            DaySpecial::LastOf(w) => format!("{w}L"),
            DaySpecial::Nth(w, k) => format!("{w}#{k}"),
        }));
        parts.join(",")
    }

    fn starts_with_star(&self) -> bool {
        matches!(self.items.first(), Some(Item::Star(_)))
    }

    fn contains(&self, value: u32, bounds: Bounds) -> bool {
        self.items.iter().any(|item| {
            let (low, high, step) = match *item {
                Item::Star(step) => (bounds.min, bounds.open_max, step.unwrap_or(1)),
                Item::Value(v) => (v, v, 1),
                Item::Range(a, b, step) => (a, b, step.unwrap_or(1)),
                Item::Open(a, step) => (a, bounds.open_max.max(a), step),
            };
            (low..=high).step_by(step as usize).any(|v| v == value)
        })
    }
}

#[derive(Clone, Debug)]
struct RuleModel {
    second: Option<FieldModel>,
    minute: FieldModel,
    hour: FieldModel,
    dom: FieldModel,
    month: FieldModel,
    dow: FieldModel,
}

impl RuleModel {
    fn render(&self) -> String {
        let mut fields = vec![];
        if let Some(second) = &self.second {
            fields.push(second.render());
        }
        for f in [&self.minute, &self.hour, &self.dom, &self.month, &self.dow] {
            fields.push(f.render());
        }
        fields.join(" ")
    }

    fn real_instant(&self) -> bool {
        self.second
            .as_ref()
            .is_some_and(FieldModel::starts_with_star)
            || self.minute.starts_with_star()
            || self.hour.starts_with_star()
    }

    /// Whether a wall time matches, evaluated with jiff's calendar.
    fn matches(&self, wall: DateTime) -> bool {
        let second = wall.second() as u32;
        let second_ok = match &self.second {
            Some(field) => field.contains(second, SECOND),
            None => second == 0,
        };
        second_ok
            && self.minute.contains(wall.minute() as u32, MINUTE)
            && self.hour.contains(wall.hour() as u32, HOUR)
            && self.month.contains(wall.month() as u32, MONTH)
            && self.day_matches(wall)
    }

    fn day_matches(&self, wall: DateTime) -> bool {
        let day = wall.day() as u32;
        let length = wall.date().days_in_month() as u32;
        let weekday_of = |d: u32| {
            let offset = wall.weekday().to_sunday_zero_offset() as i64 + d as i64 - day as i64;
            offset.rem_euclid(7) as u32
        };
        let is_weekday = |d: u32| (1..=5).contains(&weekday_of(d));
        let weekday = weekday_of(day);
        let by_dom = self.dom.contains(day, DOM)
            || self.dom.specials.iter().any(|s| match *s {
                DaySpecial::Last => day == length,
                DaySpecial::LastWeekday => {
                    is_weekday(day) && (day + 1..=length).all(|d| !is_weekday(d))
                }
                DaySpecial::NearestWeekday(n) if n <= length => {
                    let target = match weekday_of(n) {
                        6 if n == 1 => 3,
                        6 => n - 1,
                        0 if n == length => n - 2,
                        0 => n + 1,
                        _ => n,
                    };
                    day == target
                }
                _ => false,
            });
        let by_dow = self.dow.contains(weekday, DOW)
            || (weekday == 0 && self.dow.contains(7, DOW))
            || self.dow.specials.iter().any(|s| match *s {
                DaySpecial::LastOf(w) => w % 7 == weekday && day + 7 > length,
                DaySpecial::Nth(w, k) => w % 7 == weekday && (day - 1) / 7 + 1 == k,
                _ => false,
            });
        if !self.dom.starts_with_star() && !self.dow.starts_with_star() {
            by_dom || by_dow
        } else {
            by_dom && by_dow
        }
    }
}

// ---------------------------------------------------------------------------
// Strategies.

fn item(bounds: Bounds) -> impl Strategy<Value = Item> {
    let span = bounds.open_max - bounds.min + 1;
    let value = bounds.min..=bounds.max;
    prop_oneof![
        3 => prop::option::of(1..=span.min(20)).prop_map(Item::Star),
        3 => value.clone().prop_map(Item::Value),
        2 => (value.clone(), value.clone(), prop::option::of(1..=span.min(20)))
            .prop_map(|(a, b, step)| Item::Range(a.min(b), a.max(b), step)),
        1 => (bounds.min..=bounds.open_max, 1..=span.min(20)).prop_map(|(a, n)| Item::Open(a, n)),
    ]
}

fn field(bounds: Bounds) -> impl Strategy<Value = FieldModel> {
    prop::collection::vec(item(bounds), 1..4).prop_map(|items| FieldModel {
        items,
        specials: vec![],
    })
}

/// Mostly `*`, so that a transition day usually matches.
fn sparse_field(bounds: Bounds) -> impl Strategy<Value = FieldModel> {
    prop_oneof![3 => Just(FieldModel::star()), 1 => field(bounds)]
}

fn dom_field() -> impl Strategy<Value = FieldModel> {
    let special = prop_oneof![
        Just(DaySpecial::Last),
        Just(DaySpecial::LastWeekday),
        (1u32..=31).prop_map(DaySpecial::NearestWeekday),
    ];
    prop_oneof![
        4 => Just(FieldModel::star()),
        2 => field(DOM),
        1 => (prop::collection::vec(item(DOM), 0..2), prop::collection::vec(special, 1..3))
            .prop_map(|(items, specials)| FieldModel { items, specials }),
    ]
}

fn dow_field() -> impl Strategy<Value = FieldModel> {
    let special = prop_oneof![
        (0u32..=7).prop_map(DaySpecial::LastOf),
        (0u32..=7, 1u32..=5).prop_map(|(w, k)| DaySpecial::Nth(w, k)),
    ];
    prop_oneof![
        4 => Just(FieldModel::star()),
        2 => field(DOW),
        1 => (prop::collection::vec(item(DOW), 0..2), prop::collection::vec(special, 1..3))
            .prop_map(|(items, specials)| FieldModel { items, specials }),
    ]
}

fn rule(with_seconds: bool) -> impl Strategy<Value = RuleModel> {
    let second = if with_seconds {
        prop::option::of(field(SECOND)).boxed()
    } else {
        Just(None).boxed()
    };
    (
        second,
        field(MINUTE),
        field(HOUR),
        dom_field(),
        sparse_field(MONTH),
        dow_field(),
    )
        .prop_map(|(second, minute, hour, dom, month, dow)| RuleModel {
            second,
            minute,
            hour,
            dom,
            month,
            dow,
        })
}

/// An instant in 2020-2035, or close to one of the zone's transitions.
fn instant(zone_name: &'static str) -> impl Strategy<Value = Timestamp> {
    let anywhere = (1_577_836_800i64..2_082_758_400)
        .prop_map(|s| Timestamp::from_second(s).expect("in range"));
    let near_transition = (0usize..20, -172_800i64..172_800).prop_map(move |(i, delta)| {
        let transitions = transitions_2026_2035(zone_name);
        match transitions.get(i % transitions.len().max(1)) {
            Some(t) => *t + SignedDuration::from_secs(delta),
            None => Timestamp::from_second(1_780_000_000 + delta).expect("in range"),
        }
    });
    prop_oneof![anywhere, near_transition]
}

fn transitions_2026_2035(zone_name: &str) -> Vec<Timestamp> {
    let start: Timestamp = "2026-01-01T00:00:00Z".parse().expect("valid");
    let end: Timestamp = "2035-01-01T00:00:00Z".parse().expect("valid");
    zone(zone_name)
        .following(start)
        .map(|t| t.timestamp())
        .take_while(|t| *t < end)
        .collect()
}

fn parse_model(model: &RuleModel, zone_name: &str) -> Option<Schedule> {
    match Schedule::parse(&model.render(), zone_name, "prop") {
        Ok(schedule) => Some(schedule),
        Err(ScheduleError::NeverFires(_)) => None,
        Err(other) => panic!("{:?} refused: {other}", model.render()),
    }
}

/// Whether `t` starts a spring-forward gap containing a matching wall time.
fn is_gap_firing(model: &RuleModel, zone: &TimeZone, t: Timestamp) -> bool {
    let before = zone.to_offset(t - SignedDuration::from_secs(1)).seconds();
    let after = zone.to_offset(t).seconds();
    if before >= after {
        return false;
    }
    let gap_start = t.to_zoned_datetime(TimeZone::fixed(
        zone.to_offset(t - SignedDuration::from_secs(1)),
    ));
    let step = if model.second.is_some() { 1 } else { 60 };
    (0..i64::from(after - before)).step_by(step).any(|s| {
        let wall = gap_start.datetime() + SignedDuration::from_secs(s);
        model.matches(wall)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Every result is strictly later than the last, matches the rule in
    /// local wall time (at its first occurrence for wall-clock rules), or is
    /// the transition instant of a gap holding a match (wall-clock only).
    #[test]
    fn results_increase_and_match(
        (model, zone_name, from) in (rule(true), prop::sample::select(ZONES))
            .prop_flat_map(|(model, zone_name)| (Just(model), Just(zone_name), instant(zone_name)))
    ) {
        let Some(schedule) = parse_model(&model, zone_name) else { return Ok(()) };
        let zone = zone(zone_name);
        let mut previous = from;
        for _ in 0..6 {
            let Some(t) = schedule.next_after(previous) else { break };
            prop_assert!(t > previous, "{} not after {}", t, previous);
            let wall = zone.to_datetime(t);
            if model.matches(wall) {
                if !model.real_instant() {
                    let first = zone.to_ambiguous_timestamp(wall).earlier().expect("exists");
                    prop_assert_eq!(first, t, "{} fired at a second occurrence", model.render());
                }
            } else {
                prop_assert!(!model.real_instant(), "{}: real-instant rule fired at non-matching {}", model.render(), t);
                prop_assert!(is_gap_firing(&model, &zone, t), "{}: {} matches nothing", model.render(), wall);
            }
            previous = t;
        }
    }

    /// Minute by minute around a transition, nothing is skipped or added.
    #[test]
    fn nothing_skipped_around_transitions(
        model in rule(false),
        zone_name in prop::sample::select(DST_ZONES),
        which in 0usize..18,
        shift in -180i64..180,
    ) {
        let Some(schedule) = parse_model(&model, zone_name) else { return Ok(()) };
        let zone = zone(zone_name);
        let transitions = transitions_2026_2035(zone_name);
        let transition = transitions[which % transitions.len()];
        let start = transition + SignedDuration::from_mins(shift - 180);
        let end = start + SignedDuration::from_hours(6);

        let mut expected = vec![];
        let mut m = start;
        while m < end {
            let wall = zone.to_datetime(m);
            let first = zone.to_ambiguous_timestamp(wall).earlier().expect("exists") == m;
            let gap = !model.real_instant() && is_gap_firing(&model, &zone, m);
            if gap || (model.matches(wall) && (model.real_instant() || first)) {
                expected.push(m);
            }
            m += SignedDuration::from_mins(1);
        }

        let actual: Vec<Timestamp> = std::iter::successors(
            schedule.next_after(start - SignedDuration::from_secs(1)),
            |t| schedule.next_after(*t),
        )
        .take_while(|t| *t < end)
        .collect();
        prop_assert_eq!(actual, expected, "{} in {}", model.render(), zone_name);
    }

    /// Same job id, same instants; `epoch + offset + k * period`.
    #[test]
    fn every_is_stable_and_periodic(
        period in 1u64..200_000,
        job in "[a-z0-9][a-z0-9_-]{0,20}",
        from in 0i64..4_000_000_000,
    ) {
        let expr = format!("@every {period}s");
        let a = Schedule::parse(&expr, "UTC", &job).expect("valid");
        let b = Schedule::parse(&expr, "Europe/Berlin", &job).expect("valid");
        let from = Timestamp::from_second(from).expect("in range");
        let (_, offset) = a.every().expect("every");
        let mut previous = from;
        for _ in 0..3 {
            let t = a.next_after(previous).expect("next");
            prop_assert_eq!(Some(t), b.next_after(previous));
            prop_assert!(t > previous);
            prop_assert!(t.as_second() - previous.as_second() <= period as i64);
            prop_assert_eq!(t.as_second().rem_euclid(period as i64) as u64, offset.as_secs());
            previous = t;
        }
    }

    /// Parsing never panics, whatever the text; nor does the first search.
    #[test]
    fn parse_never_panics(expr in "\\PC{0,40}", tz in prop::sample::select(ZONES)) {
        if let Ok(schedule) = Schedule::parse(&expr, tz, "x") {
            let _ = schedule.next_after(Timestamp::UNIX_EPOCH);
        }
    }

    #[test]
    fn parse_never_panics_on_cron_like_text(
        expr in "(@every |@at |@)?[0-9*/,LW#?A-Za-z -]{0,30}",
        from in any::<i32>(),
    ) {
        if let Ok(schedule) = Schedule::parse(&expr, "Europe/Berlin", "x") {
            let from = Timestamp::from_second(i64::from(from)).expect("in range");
            let _ = schedule.next_after(from);
        }
    }
}
