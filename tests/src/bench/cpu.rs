//! Scheduler cost with 10,000 jobs: idle (jobs that fire rarely) and under
//! load (each job once a minute, ~167 runs/s), against an empty daemon.

use std::time::Duration;

use anyhow::Context as _;
use jiff::Timestamp;

use cronsun_proto::{RunRecord, RunStatus};
use cronsun_tests::{poll_until, Daemon};

use super::api_client::{count_by_status, fmt_counts, top_reasons, Api};
use super::procstat::{CpuUse, DaemonProcs};
use super::report::{Report, Row, Verdict};
use super::stats::{fmt_ratio, Dist};
use super::{jobs, sleep_until, whole_second_after, Ctx};

const IDLE_CPU_TARGET: f64 = 1.0;
const RSS_TARGET_KIB: u64 = 64 * 1024;

pub fn run(ctx: &Ctx, report: &mut Report) -> anyhow::Result<()> {
    let n = ctx.pick(10_000, 2_000);
    let mut d = Daemon::start(ctx.config());
    let (procs, idle, empty_rss) = idle_phase(ctx, &mut d, report, n)?;
    load_phase(ctx, &d, report, n, &procs, &idle, empty_rss)?;
    Ok(())
}

fn daemon_procs(d: &Daemon) -> anyhow::Result<DaemonProcs> {
    DaemonProcs::find(d.pid().context("the daemon is not running")?)
}

/// Empty daemon, then `n` rare jobs loaded through the API, then the same
/// daemon restarted on that state: CPU and RSS of each.
fn idle_phase(
    ctx: &Ctx,
    d: &mut Daemon,
    report: &mut Report,
    n: usize,
) -> anyhow::Result<(DaemonProcs, CpuUse, u64)> {
    let idle_secs = ctx.pick(20, 4);
    let settle = Duration::from_secs(ctx.pick(5, 1));
    let procs = daemon_procs(d)?;
    let empty_cpu = measure(&procs, Duration::from_secs(idle_secs / 2))?;
    let (empty_rss, _) = procs.memory_kib();
    report.add(Row {
        figure: "empty daemon: CPU, RSS (baseline)".into(),
        value: format!("{}, RSS {}", fmt_cpu(&empty_cpu), fmt_kib(empty_rss)),
        target: "—".into(),
        vs_baseline: format!("{} process(es)", procs.count()),
        verdict: Verdict::Info,
    });

    Api::new(d)
        .apply(&jobs::rare(n, Timestamp::now())?)
        .context("loading the rare jobs")?;
    std::thread::sleep(settle);
    let (rss, hwm) = daemon_procs(d)?.memory_kib();
    report.add(rss_row(
        format!("RSS, {n} jobs just applied via API"),
        rss,
        hwm,
        empty_rss,
    ));

    d.stop();
    d.restart();
    std::thread::sleep(settle);
    let procs = daemon_procs(d)?;
    let idle = measure(&procs, Duration::from_secs(idle_secs))?;
    let (rss, hwm) = procs.memory_kib();
    report.add(Row {
        figure: format!("idle CPU, {n} jobs (daily, none due)"),
        value: fmt_cpu(&idle),
        target: "< 1 %".into(),
        vs_baseline: format!("empty {:.3} %", empty_cpu.percent),
        verdict: Verdict::from_check(idle.percent < IDLE_CPU_TARGET),
    });
    report.add(rss_row(
        format!("RSS, {n} jobs idle (after restart)"),
        rss,
        hwm,
        empty_rss,
    ));
    Ok((procs, idle, empty_rss))
}

/// The `n` jobs made to fire once a minute each: CPU, RSS and the runs of
/// one window.
fn load_phase(
    ctx: &Ctx,
    d: &Daemon,
    report: &mut Report,
    n: usize,
    procs: &DaemonProcs,
    idle: &CpuUse,
    empty_rss: u64,
) -> anyhow::Result<()> {
    let load_secs = ctx.pick(60, 8);
    let api = Api::new(d);
    api.apply(&jobs::spread(n)?)
        .context("loading the spread jobs")?;
    let from = whole_second_after(ctx.pick(3, 1))?;
    let until = Timestamp::from_second(from.as_second() + load_secs as i64)?;
    sleep_until(from);
    let window = procs.cpu_window()?;
    sleep_until(until);
    let busy = window.finish()?;
    let (rss, hwm) = procs.memory_kib();
    let per_s = n as f64 / 60.0;
    report.add(Row {
        figure: format!("CPU, {n} jobs × 1/min ({per_s:.0} runs/s)"),
        value: fmt_cpu(&busy),
        target: "— (daemon only)".into(),
        vs_baseline: format!("idle {:.3} %", idle.percent),
        verdict: Verdict::Info,
    });
    report.add(rss_row(
        format!("RSS, {n} jobs under load"),
        rss,
        hwm,
        empty_rss,
    ));

    let expected = jobs::spread_expected(n, from, until);
    let runs = settled_runs(&api, from, until, expected)?;
    let counts = count_by_status(&runs);
    let success = counts
        .get(RunStatus::Success.to_string().as_str())
        .copied()
        .unwrap_or(0);
    report.add(Row {
        figure: format!("runs in the {load_secs} s window"),
        value: format!(
            "{success} success of {expected} expected ({})",
            fmt_counts(&counts)
        ),
        target: "all, none missed".into(),
        vs_baseline: String::new(),
        verdict: Verdict::from_check(success == expected && runs.len() as u64 == expected),
    });
    for (count, reason) in top_reasons(&runs, 3) {
        report.info("  not success", format!("{count} × {reason}"));
    }
    report.add(Row {
        figure: format!("start lag from records at {per_s:.0} runs/s"),
        value: start_lag(&runs),
        target: "—".into(),
        vs_baseline: String::new(),
        verdict: Verdict::Info,
    });
    report.note(
        "cpu: CPU = Δ(utime+stime) of /proc/<pid>/stat of the daemon's own processes (main + same-name \
         descendants; job children and cutime/cstime excluded) over the window ÷ wall time, as % of one \
         core; RSS = VmRSS (HWM = VmHWM) from /proc/<pid>/status, summed; jobs loaded by POST \
         /api/v1/jobs/apply in batches of 1000; idle figures taken after a restart on the same state (a \
         freshly booted daemon); default [scheduler] max_concurrent_runs (256); run counts by status \
         from GET /api/v1/runs over the window's instants; start lag = record started_at − scheduled_at.",
    );
    Ok(())
}

fn measure(procs: &DaemonProcs, d: Duration) -> anyhow::Result<CpuUse> {
    let w = procs.cpu_window()?;
    std::thread::sleep(d);
    w.finish()
}

fn fmt_cpu(c: &CpuUse) -> String {
    format!(
        "{:.3} % ({} ms CPU over {:.1} s)",
        c.percent,
        c.cpu.as_millis(),
        c.wall.as_secs_f64()
    )
}

fn fmt_kib(k: u64) -> String {
    format!("{:.1} MB", k as f64 / 1024.0)
}

fn rss_row(figure: String, rss: u64, hwm: u64, empty: u64) -> Row {
    Row {
        figure,
        value: format!("{} (HWM {})", fmt_kib(rss), fmt_kib(hwm)),
        target: "< 64 MB".into(),
        vs_baseline: format!(
            "{} empty",
            fmt_ratio((empty > 0).then(|| rss as f64 / empty as f64))
        ),
        verdict: Verdict::from_check(rss < RSS_TARGET_KIB),
    }
}

/// The window's records once none is `running` and all expected are there
/// (bounded: whatever is there after 30 s).
fn settled_runs(
    api: &Api,
    from: Timestamp,
    until: Timestamp,
    expected: u64,
) -> anyhow::Result<Vec<RunRecord>> {
    let settled = poll_until(Duration::from_secs(30), Duration::from_millis(500), || {
        let runs = api.runs_between(from, until).ok()?;
        let done =
            runs.len() as u64 >= expected && runs.iter().all(|r| r.status != RunStatus::Running);
        done.then_some(runs)
    });
    match settled {
        Some(r) => Ok(r),
        None => api.runs_between(from, until),
    }
}

/// `started_at − scheduled_at` of the records that have a start time, and
/// how many final records that ran (not skipped or missed) lack one.
pub fn start_lag(runs: &[RunRecord]) -> String {
    let mut d = Dist::new();
    let mut without = 0;
    for r in runs {
        match r.started_at {
            Some(s) => d.record_ns(s.as_nanosecond() - r.scheduled_at.as_nanosecond()),
            None if !matches!(r.status, RunStatus::Skipped | RunStatus::Missed) => without += 1,
            None => {}
        }
    }
    let mut out = d.summary().to_string();
    if without > 0 {
        out.push_str(&format!(" [{without} ran without started_at]"));
    }
    out
}
