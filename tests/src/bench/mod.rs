//! `cronsun-bench`: fire latency, scheduler CPU/RSS and API latency of the
//! real `cronsund`, each figure printed with its target and its ratio to a
//! baseline measured in the same run.

pub mod api;
pub mod api_client;
pub mod baseline;
pub mod cpu;
pub mod fire;
pub mod jobs;
pub mod mongo;
pub mod procstat;
pub mod report;
pub mod samples;
pub mod stats;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use jiff::Timestamp;

use cronsun_tests::ConfigOverrides;

use report::Report;

/// One section of the bench.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Fire,
    Cpu,
    Api,
    /// MongoDB run store (needs FerretDB; only with `--only mongo`).
    Mongo,
}

impl Section {
    /// The sections run without `--only`.
    const ALL: [Section; 3] = [Section::Fire, Section::Cpu, Section::Api];

    fn name(self) -> &'static str {
        match self {
            Section::Fire => "fire",
            Section::Cpu => "cpu",
            Section::Api => "api",
            Section::Mongo => "mongo",
        }
    }
}

/// Command-line options.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Shrink durations and counts (CI smoke run, under a minute).
    pub quick: bool,
    /// Run this section only.
    pub only: Option<Section>,
    /// `[scheduler] lead` for the daemons (default: the daemon's own).
    pub lead: Option<String>,
    /// Records in MongoDB for the mongo section's search figures.
    pub mongo_records: Option<usize>,
}

pub const USAGE: &str =
    "usage: cronsun-bench [--quick] [--only fire|cpu|api|mongo] [--lead <duration>] [--mongo-records N]\n\
    Runs against target/<profile>/cronsund and cronsun-probe next to this binary\n\
    (or CRONSUN_TEST_BIN_DIR). Build with `cargo build --release --bins`.";

impl Options {
    pub fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Options> {
        let mut o = Options::default();
        let mut args = args.into_iter();
        while let Some(a) = args.next() {
            match a.as_str() {
                "--quick" => o.quick = true,
                "--only" => {
                    let v = args
                        .next()
                        .context("--only needs fire, cpu, api or mongo")?;
                    o.only = Some(match v.as_str() {
                        "fire" => Section::Fire,
                        "cpu" => Section::Cpu,
                        "api" => Section::Api,
                        "mongo" => Section::Mongo,
                        _ => bail!("--only {v:?}: expected fire, cpu, api or mongo"),
                    });
                }
                "--mongo-records" => {
                    let v = args.next().context("--mongo-records needs a number")?;
                    o.mongo_records = Some(
                        v.parse()
                            .with_context(|| format!("--mongo-records {v:?}"))?,
                    );
                }
                "--lead" => {
                    o.lead = Some(args.next().context("--lead needs a duration, e.g. 20ms")?)
                }
                _ => bail!("unknown argument {a:?}\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

/// What every section needs.
pub struct Ctx {
    pub quick: bool,
    pub lead: Option<String>,
    pub mongo_records: Option<usize>,
    pub probe: PathBuf,
    /// Scratch space (sample files); removed at the end.
    pub work: tempfile::TempDir,
}

impl Ctx {
    /// The bench's daemon config: the harness defaults plus `--lead`.
    pub fn config(&self) -> ConfigOverrides {
        match &self.lead {
            Some(l) => ConfigOverrides::new().set_str("scheduler", "lead", l),
            None => ConfigOverrides::new(),
        }
    }

    /// `full` normally, `quick` with `--quick`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Runs the selected sections and returns the report.
pub fn run(opts: &Options) -> anyhow::Result<Report> {
    let bins = cronsun_tests::bins::bin_dir();
    let probe = bins.join("cronsun-probe");
    for b in [&probe, &bins.join("cronsund")] {
        if !b.is_file() {
            bail!("{} not found: {USAGE}", b.display());
        }
    }
    let ctx = Ctx {
        quick: opts.quick,
        lead: opts.lead.clone(),
        mongo_records: opts.mongo_records,
        probe,
        work: tempfile::Builder::new()
            .prefix("cronsun-bench-")
            .tempdir()
            .context("creating a scratch dir")?,
    };
    let mut report = Report::default();
    if let Some(l) = &ctx.lead {
        report.note(format!(
            "daemons ran with [scheduler] lead = {l:?} (--lead)"
        ));
    }
    let sections = match opts.only {
        Some(s) => vec![s],
        None => Section::ALL.to_vec(),
    };
    for s in sections {
        let t = Instant::now();
        println!("== {} ==", s.name());
        match s {
            Section::Fire => fire::run(&ctx, &mut report),
            Section::Cpu => cpu::run(&ctx, &mut report),
            Section::Api => api::run(&ctx, &mut report),
            Section::Mongo => mongo::run(&ctx, &mut report),
        }
        .with_context(|| format!("section {}", s.name()))?;
        println!("   ({} section took {:.0?})", s.name(), t.elapsed());
    }
    Ok(report)
}

/// The whole second `secs` after the current one (now ceiled, plus `secs`).
pub fn whole_second_after(secs: i64) -> anyhow::Result<Timestamp> {
    let now = Timestamp::now();
    Ok(Timestamp::from_second(now.as_second() + 1 + secs)?)
}

/// Sleeps until wall-clock `t`: the bench's measurement windows are
/// wall-clock windows, so this is the measurement, not a wait for an event.
pub fn sleep_until(t: Timestamp) {
    let left = t.duration_since(Timestamp::now());
    if let Ok(d) = Duration::try_from(left) {
        std::thread::sleep(d);
    }
}
