//! Latency distributions: an HDR histogram in nanoseconds and its summary.

use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;

/// Highest recordable value: one hour, in nanoseconds.
const MAX_NS: u64 = 3_600_000_000_000;

/// Recorded latencies in nanoseconds (3 significant digits). Negative
/// samples (an event seen before its instant) are counted apart and
/// recorded as zero, so they never vanish from the count.
pub struct Dist {
    hist: Histogram<u64>,
    early: u64,
}

impl Default for Dist {
    fn default() -> Self {
        Dist {
            hist: Histogram::new_with_bounds(1, MAX_NS, 3).expect("constant bounds are valid"),
            early: 0,
        }
    }
}

impl Dist {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn record_ns(&mut self, ns: i128) {
        if ns < 0 {
            self.early += 1;
        }
        let v = u64::try_from(ns.max(0)).unwrap_or(MAX_NS).min(MAX_NS);
        self.hist.saturating_record(v);
    }

    pub fn record(&mut self, d: Duration) {
        self.record_ns(i128::try_from(d.as_nanos()).unwrap_or(i128::MAX));
    }

    pub fn summary(&self) -> Summary {
        Summary {
            n: self.hist.len(),
            p50: self.hist.value_at_quantile(0.50),
            p99: self.hist.value_at_quantile(0.99),
            max: self.hist.max(),
            early: self.early,
        }
    }
}

/// p50/p99/max of a [`Dist`], in nanoseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub n: u64,
    pub p50: u64,
    pub p99: u64,
    pub max: u64,
    pub early: u64,
}

impl Summary {
    /// `p99 / baseline.p99`, when both are measured.
    pub fn p99_ratio(&self, baseline: &Summary) -> Option<f64> {
        (self.n > 0 && baseline.n > 0 && baseline.p99 > 0)
            .then(|| self.p99 as f64 / baseline.p99 as f64)
    }

    pub fn p50_ratio(&self, baseline: &Summary) -> Option<f64> {
        (self.n > 0 && baseline.n > 0 && baseline.p50 > 0)
            .then(|| self.p50 as f64 / baseline.p50 as f64)
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.n == 0 {
            return write!(f, "no samples");
        }
        write!(
            f,
            "p50 {} p99 {} max {} (n={})",
            fmt_ns(self.p50),
            fmt_ns(self.p99),
            fmt_ns(self.max),
            self.n
        )?;
        if self.early > 0 {
            write!(f, " [{} early]", self.early)?;
        }
        Ok(())
    }
}

/// `850 ns`, `12.3 µs`, `1.23 ms`, `2.50 s`.
pub fn fmt_ns(ns: u64) -> String {
    let f = ns as f64;
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} µs", f / 1e3),
        1_000_000..=999_999_999 => format!("{:.2} ms", f / 1e6),
        _ => format!("{:.2} s", f / 1e9),
    }
}

/// `×1.23`, or `—` when there is no ratio.
pub fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "—".into(), |r| format!("×{r:.2}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_early_samples_and_formats_units() {
        let mut d = Dist::new();
        for ns in [-5, 1_000, 2_000, 3_000_000] {
            d.record_ns(ns);
        }
        let s = d.summary();
        assert_eq!((s.n, s.early), (4, 1));
        assert!(s.max >= 2_999_000);
        assert_eq!(fmt_ns(850), "850 ns");
        assert_eq!(fmt_ns(12_300), "12.3 µs");
        assert_eq!(fmt_ns(1_230_000), "1.23 ms");
        assert_eq!(fmt_ratio(None), "—");
    }
}
