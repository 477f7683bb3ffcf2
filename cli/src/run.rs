//! `cronsun run ls|show|logs|kill`, and following a run's live output.

use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use clap::Subcommand;
use cronsun_proto::api::RunQuery;
use cronsun_proto::client::headers::StatusCode;
use cronsun_proto::client::{Client, RunEvent};
use cronsun_proto::{Dur, RunRecord, RunStatus};
use jiff::Timestamp;

use crate::output;
use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum RunCmd {
    /// Search runs, newest first.
    #[command(visible_alias = "list")]
    Ls {
        /// Only this job's runs.
        #[arg(long)]
        job: Option<String>,
        /// Only runs on this node.
        #[arg(long)]
        node: Option<String>,
        /// Only runs with this status (running, success, failed, timeout, killed, lost, skipped, missed).
        #[arg(long, value_parser = parse_status)]
        status: Option<RunStatus>,
        /// Runs scheduled at or after: RFC 3339, or a duration ago such as 1h, 2d.
        #[arg(long, value_parser = parse_since)]
        since: Option<Timestamp>,
        /// Runs scheduled before: RFC 3339, or a duration ago.
        #[arg(long, value_parser = parse_since)]
        until: Option<Timestamp>,
        /// At most this many (server default 50, at most 1000).
        #[arg(long)]
        limit: Option<u32>,
        /// Continue after a previous page (printed at its end).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Show one run: RUN_ID#ATTEMPT, or a bare run id for its latest attempt.
    Show { run_id: String },
    /// Print a run's output; --follow streams it live until the run ends.
    ///
    /// With --output json and --follow, prints one JSON object per line:
    /// {"event":"output","data":"..."} then {"event":"end","data":<run record>}.
    Logs {
        run_id: String,
        #[arg(long, short = 'f')]
        follow: bool,
    },
    /// Kill a running run (SIGTERM to the whole run, SIGKILL after the job's kill_grace).
    Kill { run_id: String },
}

fn parse_status(s: &str) -> Result<RunStatus, String> {
    s.parse()
}

/// RFC 3339, or a duration before now (`90m`, `2d`).
fn parse_since(s: &str) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d: Dur = s.parse().map_err(|_| {
        format!("{s:?} is neither RFC 3339 (2026-03-28T00:00:00Z) nor a duration ago (30m, 2d)")
    })?;
    let span = jiff::SignedDuration::try_from(d.as_duration()).map_err(|e| e.to_string())?;
    Timestamp::now()
        .checked_sub(span)
        .map_err(|e| format!("{s:?} is too far back: {e}"))
}

pub async fn run(ctx: &Ctx, cmd: RunCmd) -> Result<u8> {
    let client = ctx.client()?;
    match cmd {
        RunCmd::Ls {
            job,
            node,
            status,
            since,
            until,
            limit,
            cursor,
        } => {
            let q = RunQuery {
                job,
                node,
                status,
                since,
                until,
                limit,
                cursor,
            };
            let page = client.search_runs(&q).await?;
            if ctx.json() {
                output::json(&page)?;
                return Ok(0);
            }
            output::emit(&output::table(
                &[
                    "RUN ID#ATTEMPT",
                    "JOB",
                    "NODE",
                    "STATUS",
                    "SCHEDULED",
                    "DURATION",
                    "EXIT",
                ],
                page.runs.iter().map(|r| {
                    vec![
                        r.record_id(),
                        r.job_id.clone(),
                        r.node_id.clone(),
                        r.status.to_string(),
                        output::time(Some(r.scheduled_at)),
                        r.duration_ms.map_or("-".into(), output::duration_ms),
                        exit_text(r),
                    ]
                }),
            ))?;
            if let Some(c) = page.next_cursor {
                eprintln!("(more: add --cursor {c})");
            }
            Ok(0)
        }
        RunCmd::Show { run_id } => {
            let r = client.get_run(&run_id).await?;
            if ctx.json() {
                output::json(&r)?;
            } else {
                output::emit(&describe(&r))?;
            }
            Ok(0)
        }
        RunCmd::Logs {
            run_id,
            follow: false,
        } => {
            let r = client.get_run(&run_id).await?;
            if ctx.json() {
                output::json(&r)?;
            } else {
                output::emit_raw(&r.output_text())?;
            }
            Ok(0)
        }
        RunCmd::Logs {
            run_id,
            follow: true,
        } => {
            follow(&client, &run_id, ctx.json(), Duration::ZERO).await?;
            Ok(0)
        }
        RunCmd::Kill { run_id } => {
            client.kill_run(&run_id).await?;
            if ctx.json() {
                output::json(&serde_json::json!({}))?;
            } else {
                output::emit(&format!("kill requested for run {run_id}"))?;
            }
            Ok(0)
        }
    }
}

/// `exit 3`, `signal 9`, or `-`.
fn exit_text(r: &RunRecord) -> String {
    match (r.exit_code, r.signal) {
        (Some(c), _) => c.to_string(),
        (None, Some(s)) => format!("signal {s}"),
        (None, None) => "-".into(),
    }
}

fn describe(r: &RunRecord) -> String {
    let opt = |v: Option<u64>, f: fn(u64) -> String| v.map_or("-".to_string(), f);
    let mut rows = vec![
        ("run", r.record_id()),
        ("job", format!("{} (revision {})", r.job_id, r.job_revision)),
        ("node", format!("{} ({})", r.node_id, r.hostname)),
        ("trigger", r.trigger.as_str().to_string()),
        ("status", r.status.to_string()),
    ];
    if let Some(reason) = &r.reason {
        rows.push(("reason", reason.clone()));
    }
    rows.extend([
        ("scheduled", output::time(Some(r.scheduled_at))),
        ("started", output::time(r.started_at)),
        ("finished", output::time(r.finished_at)),
        ("duration", opt(r.duration_ms, output::duration_ms)),
        ("exit", exit_text(r)),
        ("argv", shell_quote(&r.argv)),
        ("run as", r.run_as.clone()),
        (
            "output",
            format!(
                "{}{}",
                output::bytes(r.output_bytes),
                if r.truncated { " (truncated)" } else { "" }
            ),
        ),
        ("peak memory", opt(r.peak_memory, output::bytes)),
        ("cpu", opt(r.cpu_ms, output::duration_ms)),
    ]);
    if let Some(f) = r.fence {
        rows.push(("fence", f.to_string()));
    }
    output::key_values(rows)
}

/// argv as one line a shell would split back the same way.
fn shell_quote(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Streams a run's output to stdout until its `end` event and returns the
/// final record. A run that was just requested may not exist yet: 404s are
/// retried for `wait_for_start`.
pub async fn follow(
    client: &Client,
    run_id: &str,
    json: bool,
    wait_for_start: Duration,
) -> Result<RunRecord> {
    let deadline = tokio::time::Instant::now() + wait_for_start;
    let mut stream = loop {
        match client.stream_run(run_id).await {
            Ok(s) => break s,
            Err(e)
                if e.status() == Some(StatusCode::NOT_FOUND)
                    && tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot follow run {run_id}")),
        }
    };
    while let Some(ev) = stream.next().await {
        match ev.map_err(anyhow::Error::from)? {
            RunEvent::Output(text) if json => {
                output::emit(&serde_json::json!({"event": "output", "data": text}).to_string())?;
            }
            RunEvent::Output(text) => output::emit_raw(&text)?,
            RunEvent::End(record) => {
                if json {
                    output::emit(
                        &serde_json::json!({"event": "end", "data": &*record}).to_string(),
                    )?;
                }
                return Ok(*record);
            }
        }
    }
    bail!(
        "the stream of run {run_id} ended before the run did (daemon restarted?); see `cronsun run show {run_id}`"
    )
}

/// The process exit code that mirrors a finished run: its own exit code on
/// success or failure, 1 for any other non-success.
pub fn exit_code_of(r: &RunRecord) -> u8 {
    match (r.status, r.exit_code) {
        (RunStatus::Success, _) => 0,
        (_, Some(c)) if (1..=255).contains(&c) => u8::try_from(c).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: RunStatus, exit_code: Option<i32>) -> RunRecord {
        serde_json::from_value(serde_json::json!({
            "run_id": "j~manual~r", "attempt": 1, "job_id": "j", "job_revision": 1, "job_name": "j",
            "node_id": "n", "hostname": "h", "trigger": "manual", "scheduled_at": "2026-03-28T00:00:00Z",
            "started_at": null, "finished_at": null, "duration_ms": null, "status": status,
            "exit_code": exit_code, "signal": null, "argv": ["a b", "c"], "run_as": "nobody", "env_keys": [],
            "output_head": "first\n", "output_tail": "last\n", "output_bytes": 1011, "truncated": true,
            "peak_memory": null, "cpu_ms": null, "io_bytes": null, "oom_kills": null, "peak_pids": null,
            "fence": null, "seq": 3
        }))
        .expect("record")
    }

    #[test]
    fn truncated_output_has_a_marker() {
        assert_eq!(
            record(RunStatus::Success, Some(0)).output_text(),
            "first\n... [1000 bytes omitted] ...\nlast\n"
        );
    }

    #[test]
    fn exit_codes_mirror_the_run() {
        assert_eq!(exit_code_of(&record(RunStatus::Success, Some(0))), 0);
        assert_eq!(exit_code_of(&record(RunStatus::Failed, Some(3))), 3);
        assert_eq!(exit_code_of(&record(RunStatus::Failed, None)), 1);
        assert_eq!(exit_code_of(&record(RunStatus::Timeout, Some(0))), 1);
        assert_eq!(exit_code_of(&record(RunStatus::Failed, Some(300))), 1);
    }

    #[test]
    fn since_accepts_rfc3339_and_durations() {
        assert_eq!(
            parse_since("2026-03-28T00:00:00Z").map(|t| t.as_second()),
            Ok(1_774_656_000)
        );
        let ago = parse_since("1h").expect("duration");
        let diff = Timestamp::now().as_second() - ago.as_second();
        assert!((3599..=3601).contains(&diff), "{diff}");
        assert!(parse_since("yesterday")
            .expect_err("bad")
            .contains("RFC 3339"));
    }

    #[test]
    fn argv_is_quoted_for_display() {
        assert_eq!(
            shell_quote(&["echo".into(), "a b".into(), "it's".into()]),
            r"echo 'a b' 'it'\''s'"
        );
    }
}
