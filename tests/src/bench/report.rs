//! The figures of one bench run, printed as they are measured and again as
//! one table at the end, each with its target and its baseline ratio.

/// Whether a figure meets its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// No target, or nothing to compare.
    Info,
}

impl Verdict {
    pub fn from_check(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "ok",
            Verdict::Fail => "MISS",
            Verdict::Info => "",
        }
    }
}

/// One measured figure.
#[derive(Clone, Debug)]
pub struct Row {
    pub figure: String,
    pub value: String,
    pub target: String,
    /// Ratio against the baseline measured in the same run, e.g. `×1.8 floor`.
    pub vs_baseline: String,
    pub verdict: Verdict,
}

/// All rows plus one method note per figure group.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// Adds a row and prints it at once.
    pub fn add(&mut self, row: Row) {
        println!(
            "  {:<44} {}  target: {}  {} {}",
            row.figure,
            row.value,
            row.target,
            row.vs_baseline,
            row.verdict.label()
        );
        self.rows.push(row);
    }

    /// A figure without a target.
    pub fn info(&mut self, figure: impl Into<String>, value: impl Into<String>) {
        self.add(Row {
            figure: figure.into(),
            value: value.into(),
            target: "—".into(),
            vs_baseline: String::new(),
            verdict: Verdict::Info,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        self.notes.push(text.into());
    }

    pub fn misses(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Fail)
            .count()
    }

    /// The compact table and the method notes.
    pub fn render(&self) -> String {
        let head = ["figure", "value", "target", "vs baseline", ""];
        let cells: Vec<[&str; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.as_str(),
                    r.value.as_str(),
                    r.target.as_str(),
                    r.vs_baseline.as_str(),
                    r.verdict.label(),
                ]
            })
            .collect();
        let mut width = head.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: [&str; 5]| -> String {
            let padded: Vec<String> = cols
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let mut out = line(head);
        out.push_str(&line(width.map(|_| "")).replace(' ', "-"));
        for row in cells {
            out.push_str(&line(row));
        }
        if !self.notes.is_empty() {
            out.push_str("\nMethod:\n");
            for n in &self.notes {
                out.push_str(&format!("- {n}\n"));
            }
        }
        out
    }
}
