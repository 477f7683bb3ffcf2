//! The global pause switch: `cronsun pause --all`, `pause status`, `resume --all`.

use anyhow::Result;
use clap::{Args, Subcommand};
use cronsun_proto::api::GlobalPause;

use crate::output;
use crate::Ctx;

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct PauseArgs {
    /// Pause every job's scheduled runs (for incidents). To pause one job: `cronsun job pause ID`.
    #[arg(long, required = true)]
    all: bool,
    /// Why, shown to everyone who looks.
    #[arg(long)]
    reason: Option<String>,
    #[command(subcommand)]
    cmd: Option<PauseCmd>,
}

#[derive(Debug, Subcommand)]
pub enum PauseCmd {
    /// Show whether the global pause is on.
    Status,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Lift the global pause. To resume one job: `cronsun job resume ID`.
    #[arg(long, required = true)]
    all: bool,
}

pub async fn pause(ctx: &Ctx, args: PauseArgs) -> Result<u8> {
    let client = ctx.client()?;
    let state = match args.cmd {
        Some(PauseCmd::Status) => client.global_pause().await?,
        None => {
            debug_assert!(args.all);
            client.set_global_pause(args.reason).await?
        }
    };
    show(ctx, &state)
}

pub async fn resume(ctx: &Ctx, args: ResumeArgs) -> Result<u8> {
    debug_assert!(args.all);
    let state = ctx.client()?.clear_global_pause().await?;
    show(ctx, &state)
}

fn show(ctx: &Ctx, state: &GlobalPause) -> Result<u8> {
    if ctx.json() {
        output::json(state)?;
        return Ok(0);
    }
    let text = if state.paused {
        let mut s = format!("global pause: ON since {}", output::time(state.since));
        if let Some(r) = state.reason.as_deref().filter(|r| !r.is_empty()) {
            s.push_str(&format!(" — {r}"));
        }
        s.push_str("\nno scheduled runs start until `cronsun resume --all`");
        s
    } else {
        "global pause: off".to_string()
    };
    output::emit(&text)?;
    Ok(0)
}
