//! Fire-latency probe run as a job by `cronsun-bench`.
//!
//! `cronsun-probe <samples-file>` reads CLOCK_REALTIME first thing in `main`,
//! then `CRONSUN_SCHEDULED_AT` (RFC 3339 in UTC, `2026-03-25T03:00:00Z`, with
//! optional fraction, as the daemon's scheduler formats it), and appends one
//! line `<scheduled_at> <latency_ns>` to the file with a single `O_APPEND`
//! write, so concurrent probes never interleave. Exits 0 on success, 2 on bad
//! input, 1 when the file cannot be written. Only std: nothing to load or
//! initialise before the clock is read.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

fn main() -> ExitCode {
    // SystemTime::now() is clock_gettime(CLOCK_REALTIME) on Linux.
    let now = SystemTime::now();
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: cronsun-probe <samples-file>");
        return ExitCode::from(2);
    };
    let Some(raw) = std::env::var("CRONSUN_SCHEDULED_AT").ok() else {
        eprintln!("cronsun-probe: CRONSUN_SCHEDULED_AT is not set");
        return ExitCode::from(2);
    };
    let Some(scheduled_ns) = parse_rfc3339_utc(&raw) else {
        eprintln!("cronsun-probe: CRONSUN_SCHEDULED_AT={raw:?} is not RFC 3339 UTC (…Z)");
        return ExitCode::from(2);
    };
    let now_ns = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => i128::try_from(d.as_nanos()).unwrap_or(i128::MAX),
        Err(e) => -i128::try_from(e.duration().as_nanos()).unwrap_or(i128::MAX),
    };
    let line = format!("{raw} {}\n", now_ns - scheduled_ns);
    let written = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cronsun-probe: {}: {e}", path.to_string_lossy());
            ExitCode::from(1)
        }
    }
}

/// Nanoseconds since the epoch of `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
fn parse_rfc3339_utc(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' || !matches!(b.last(), Some(b'Z' | b'z')) {
        return None;
    }
    let num = |from: usize, to: usize| -> Option<i64> {
        let digits = b.get(from..to)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (year, month, day) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hour, min, sec) = (num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let frac = &b[19..b.len() - 1];
    let nanos = match frac.split_first() {
        None => 0,
        Some((b'.', digits)) if (1..=9).contains(&digits.len()) => {
            let n = num(20, 20 + digits.len())?;
            n * 10i64.pow(9 - digits.len() as u32)
        }
        Some(_) => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_whole_and_fractional_utc_instants() {
        assert_eq!(parse_rfc3339_utc("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_utc("2026-03-25T03:00:00Z"),
            Some(1_774_407_600_000_000_000)
        );
        assert_eq!(
            parse_rfc3339_utc("2026-03-25T03:00:00.5Z"),
            Some(1_774_407_600_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_utc("2000-02-29T23:59:59.000000001Z"),
            Some(951_868_799_000_000_001)
        );
    }

    #[test]
    fn rejects_offsets_and_garbage() {
        for bad in [
            "",
            "2026-03-25T03:00:00+01:00",
            "2026-03-25T03:00:00",
            "2026-13-25T03:00:00Z",
            "2026-03-25T03:00:00.Z",
            "2026-03-25T03:0a:00Z",
            "2026-03-25T03:00:00.1234567890Z",
        ] {
            assert_eq!(parse_rfc3339_utc(bad), None, "{bad}");
        }
    }
}
