//! The probe's samples file: one line `<scheduled_at> <latency_ns>` per run.

use std::path::Path;

use anyhow::Context as _;
use jiff::Timestamp;

use super::stats::Dist;

/// Latencies of the samples whose instant lies in `[from, until)`.
pub struct Samples {
    pub dist: Dist,
    /// Lines in the window.
    pub count: u64,
    /// Lines that did not parse (reported, never silently dropped).
    pub malformed: u64,
}

/// Reads `path` (absent = no samples).
pub fn read(path: &Path, from: Timestamp, until: Timestamp) -> anyhow::Result<Samples> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut s = Samples {
        dist: Dist::new(),
        count: 0,
        malformed: 0,
    };
    for line in text.lines() {
        match parse_line(line) {
            Some((at, ns)) if at >= from && at < until => {
                s.dist.record_ns(ns);
                s.count += 1;
            }
            Some(_) => {}
            None => s.malformed += 1,
        }
    }
    Ok(s)
}

fn parse_line(line: &str) -> Option<(Timestamp, i128)> {
    let (at, ns) = line.split_once(' ')?;
    Some((at.parse().ok()?, ns.trim().parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_window_and_counts_garbage() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("s");
        std::fs::write(
            &p,
            "2026-01-01T00:00:00Z 100\n2026-01-01T00:00:01Z 200\nbad\n2026-01-01T00:00:02Z 300\n",
        )?;
        let s = read(
            &p,
            "2026-01-01T00:00:01Z".parse()?,
            "2026-01-01T00:00:02Z".parse()?,
        )?;
        assert_eq!((s.count, s.malformed), (1, 1));
        Ok(())
    }
}
