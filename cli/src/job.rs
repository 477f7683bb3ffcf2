//! `cronsun job ls|show|apply|export|rm|pause|resume|run`.

use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use cronsun_proto::api::{ApplyRequest, JobView};
use cronsun_proto::client::ClientError;
use cronsun_proto::Job;

use crate::output;
use crate::run::{exit_code_of, follow};
use crate::{jobfile, Ctx};

#[derive(Debug, Subcommand)]
pub enum JobCmd {
    /// List jobs with their next run and last status.
    #[command(visible_alias = "list")]
    Ls,
    /// Show one job as a job file, with its state.
    Show { id: String },
    /// Create or replace the jobs of a file; all are validated before any is written.
    ///
    /// TOML with [[job]] tables (see `cronsun job export`), or JSON if the
    /// file name ends in .json. `-f -` reads stdin.
    Apply {
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: String,
    },
    /// Print every job as a TOML job file that `job apply` reads back.
    Export,
    /// Delete a job.
    #[command(visible_alias = "delete")]
    Rm { id: String },
    /// Pause a job: no scheduled runs until resumed.
    Pause {
        id: String,
        /// Why, shown with the job.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused job.
    Resume { id: String },
    /// Start a run now.
    Run {
        id: String,
        /// Run on this node (default: the scheduler picks).
        #[arg(long)]
        node: Option<String>,
        /// Follow the run's output until it ends and exit with its exit code.
        #[arg(long)]
        wait: bool,
    },
}

/// One line per job of an apply: `created`, `updated` or `unchanged`.
pub fn applied_lines(result: &cronsun_proto::api::ApplyResult) -> String {
    [
        ("created", &result.created),
        ("updated", &result.updated),
        ("unchanged", &result.unchanged),
    ]
    .iter()
    .flat_map(|(what, ids)| ids.iter().map(move |id| format!("{what:<9}  {id}")))
    .collect::<Vec<_>>()
    .join("\n")
}

/// How long `job run --wait` waits for a requested run to appear.
const RUN_START_WAIT: Duration = Duration::from_secs(15);

pub async fn run(ctx: &Ctx, cmd: JobCmd) -> Result<u8> {
    let client = ctx.client()?;
    match cmd {
        JobCmd::Ls => {
            let list = client.list_jobs().await?;
            if ctx.json() {
                output::json(&list)?;
            } else {
                output::emit(&output::table(
                    &[
                        "ID",
                        "GROUP",
                        "KIND",
                        "SCHEDULE(S)",
                        "NEXT RUN",
                        "LAST STATUS",
                        "PAUSED",
                    ],
                    list.jobs.iter().map(row),
                ))?;
            }
        }
        JobCmd::Show { id } => {
            let (view, revision) = client.get_job(&id).await?;
            if ctx.json() {
                output::json(&view)?;
            } else {
                output::emit(&show(&view, revision)?)?;
            }
        }
        JobCmd::Apply { file } => {
            let jobs = jobfile::read(&file)?;
            let ids: Vec<String> = jobs.iter().map(|j| j.id.clone()).collect();
            let result = client
                .apply_jobs(&ApplyRequest { jobs })
                .await
                .map_err(|e| explain_apply_error(e, &file, &ids))?;
            if ctx.json() {
                output::json(&result)?;
            } else {
                output::emit(&applied_lines(&result))?;
            }
        }
        JobCmd::Export => {
            let list = client.list_jobs().await?;
            let jobs: Vec<Job> = list.jobs.into_iter().map(|v| v.job).collect();
            if ctx.json() {
                output::json(&cronsun_proto::api::JobFile { job: jobs })?;
            } else {
                output::emit_raw(&jobfile::export(&jobs)?)?;
            }
        }
        JobCmd::Rm { id } => {
            client.delete_job(&id, None).await?;
            done(ctx, &format!("deleted job {id}"))?;
        }
        JobCmd::Pause { id, reason } => {
            let job = client.pause_job(&id, reason).await?;
            changed(ctx, &job, &format!("paused job {id}"))?;
        }
        JobCmd::Resume { id } => {
            let job = client.resume_job(&id).await?;
            changed(ctx, &job, &format!("resumed job {id}"))?;
        }
        JobCmd::Run { id, node, wait } => {
            let started = client.run_job(&id, node).await?;
            // An `all` job in a cluster starts one run per node.
            let line = match started.run_ids.as_slice() {
                [_, _, ..] => format!("started runs {}", started.run_ids.join(" ")),
                _ => format!("started run {}", started.run_id),
            };
            if !wait {
                if ctx.json() {
                    output::json(&started)?;
                } else {
                    output::emit(&line)?;
                }
                return Ok(0);
            }
            if !ctx.json() {
                eprintln!("{line}");
            }
            let record = follow(&client, &started.run_id, false, RUN_START_WAIT).await?;
            if ctx.json() {
                output::json(&record)?;
            } else {
                let mut summary = format!("run {} {}", record.record_id(), record.status);
                if let Some(c) = record.exit_code {
                    summary.push_str(&format!(" (exit {c})"));
                }
                if let Some(r) = &record.reason {
                    summary.push_str(&format!(": {r}"));
                }
                eprintln!("{summary}");
            }
            return Ok(exit_code_of(&record));
        }
    }
    Ok(0)
}

fn row(v: &JobView) -> Vec<String> {
    let j = &v.job;
    let schedules = j
        .rules
        .iter()
        .map(|r| match r.timezone.as_deref() {
            Some(tz) if tz != "UTC" => format!("{} ({tz})", r.schedule),
            _ => r.schedule.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let mut last = v
        .state
        .last_run
        .as_ref()
        .map_or("-".to_string(), |l| l.status.to_string());
    if v.state.running > 0 {
        last.push_str(&format!(" ({} running)", v.state.running));
    }
    let paused = match (&j.paused, j.paused_reason.as_deref()) {
        (true, Some(r)) if !r.is_empty() => format!("yes: {r}"),
        (p, _) => output::yes_no(*p),
    };
    vec![
        j.id.clone(),
        j.group.clone(),
        format!("{:?}", j.kind).to_lowercase(),
        schedules,
        if j.paused {
            "-".into()
        } else {
            output::time(v.state.next_run)
        },
        last,
        paused,
    ]
}

/// The job as a job file, preceded by its state as TOML comments.
fn show(v: &JobView, revision: u64) -> Result<String> {
    let s = &v.state;
    let mut text = format!("# job {} (revision {revision})\n", v.job.id);
    text.push_str(&format!("# next run: {}\n", output::time(s.next_run)));
    if let Some(l) = &s.last_run {
        text.push_str(&format!(
            "# last run: {}#{} {} (scheduled {})\n",
            l.run_id,
            l.attempt,
            l.status,
            output::time(Some(l.scheduled_at))
        ));
    }
    if s.running > 0 {
        text.push_str(&format!("# running: {}\n", s.running));
    }
    text.push_str(&jobfile::export(std::slice::from_ref(&v.job))?);
    Ok(text)
}

/// Names the job and file an apply error is about (`jobs[2].rules[0]` → job id).
fn explain_apply_error(e: ClientError, file: &str, ids: &[String]) -> anyhow::Error {
    let index = e
        .field()
        .and_then(|f| f.strip_prefix("jobs["))
        .and_then(|f| f.split_once(']'))
        .and_then(|(i, _)| i.parse::<usize>().ok());
    if e.status().is_none() {
        return e.into(); // not refused: it never got there
    }
    let file = if file == "-" { "<stdin>" } else { file };
    let what = match index.and_then(|i| ids.get(i)) {
        Some(id) => format!("{file}: job {id:?} was refused"),
        None => format!("{file}: nothing was applied"),
    };
    anyhow::Error::from(e).context(what)
}

fn done(ctx: &Ctx, message: &str) -> Result<()> {
    if ctx.json() {
        output::json(&serde_json::json!({}))
    } else {
        output::emit(message)
    }
}

fn changed(ctx: &Ctx, job: &Job, message: &str) -> Result<()> {
    if ctx.json() {
        output::json(job)
    } else {
        output::emit(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cronsun_proto::api::ApiError;
    use cronsun_proto::client::headers::StatusCode;

    #[test]
    fn apply_errors_name_the_job() {
        let err = ClientError::Api {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: ApiError {
                error: "bad_request".into(),
                message: "bad zone".into(),
                field: Some("jobs[1].rules[0].timezone".into()),
            },
        };
        let e = explain_apply_error(err, "jobs.toml", &["a".into(), "b".into()]);
        assert_eq!(
            format!("{e:#}"),
            "jobs.toml: job \"b\" was refused: bad zone (HTTP 422)"
        );
        assert_eq!(
            e.downcast_ref::<ClientError>().and_then(ClientError::field),
            Some("jobs[1].rules[0].timezone")
        );
    }
}
