//! Rendering: `--output json` prints the API's objects as pretty JSON;
//! `table` prints aligned columns for humans, times in the local zone.

use std::io::Write as _;

use anyhow::Result;
use clap::ValueEnum;
use comfy_table::{presets, ContentArrangement, Table};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Serialize;

/// The `--output` format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns for humans.
    #[default]
    Table,
    /// The API's JSON objects, pretty-printed.
    Json,
}

/// Writes `text` to stdout (a closed pipe surfaces as an `io::Error` the
/// caller turns into a quiet exit instead of a panic).
pub fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(())
}

/// Writes raw run output as it arrives, without adding newlines.
pub fn emit_raw(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints `value` as pretty JSON.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<()> {
    emit(&serde_json::to_string_pretty(value)?)
}

/// A borderless table with upper-case headers, not wrapped to the terminal,
/// so it stays greppable.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for row in rows {
        t.add_row(row);
    }
    render(t)
}

/// `key  value` lines for one object.
pub fn key_values(rows: impl IntoIterator<Item = (&'static str, String)>) -> String {
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled);
    for (k, v) in rows {
        t.add_row(vec![format!("{k}:"), v]);
    }
    render(t)
}

/// An instant in the local zone with a relative hint, e.g.
/// `2026-03-28 03:00:00 (in 2h 5m)`; `-` when absent.
pub fn time(ts: Option<Timestamp>) -> String {
    let Some(ts) = ts else { return "-".into() };
    let local = ts.to_zoned_datetime(TimeZone::system());
    let secs = ts.as_second() - Timestamp::now().as_second();
    let rel = if secs.abs() < 1 {
        "now".to_string()
    } else if secs > 0 {
        format!("in {}", span(secs.unsigned_abs()))
    } else {
        format!("{} ago", span(secs.unsigned_abs()))
    };
    format!("{} ({rel})", local.strftime("%Y-%m-%d %H:%M:%S"))
}

/// A duration in milliseconds, coarse: `850ms`, `12.3s`, `4m 2s`, `3h 10m`, `2d 4h`.
pub fn duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        span(ms / 1000)
    }
}

/// Whole seconds as the two largest units.
fn span(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) if s == 0 => format!("{m}m"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, 0) => format!("{h}h"),
        (0, _, _) => format!("{h}h {m}m"),
        (_, 0, _) => format!("{d}d"),
        _ => format!("{d}d {h}h"),
    }
}

/// A byte count in binary units: `512B`, `1.5KiB`, `64.0MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n}B")
    } else {
        format!("{v:.1}{}", UNITS[unit])
    }
}

/// `yes`/`no`.
pub fn yes_no(b: bool) -> String {
    if b { "yes" } else { "no" }.to_string()
}

/// A table as text: two spaces between columns, no trailing blanks.
fn render(mut t: Table) -> String {
    for col in t.column_iter_mut() {
        col.set_padding((0, 2));
    }
    t.lines()
        .map(|l| l.trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration_ms(850), "850ms");
        assert_eq!(duration_ms(12_340), "12.3s");
        assert_eq!(duration_ms(242_000), "4m 2s");
        assert_eq!(duration_ms(3 * 3_600_000 + 600_000), "3h 10m");
        assert_eq!(duration_ms(2 * 86_400_000 + 4 * 3_600_000), "2d 4h");
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1536), "1.5KiB");
    }

    #[test]
    fn tables_are_aligned_and_unpadded_at_the_end() {
        let t = table(
            &["ID", "STATUS"],
            vec![
                vec!["a".into(), "ok".into()],
                vec!["long-id".into(), "-".into()],
            ],
        );
        assert_eq!(t, "ID       STATUS\na        ok\nlong-id  -");
    }
}
