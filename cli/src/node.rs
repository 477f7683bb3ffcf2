//! `cronsun node ls`.

use anyhow::Result;
use clap::Subcommand;

use crate::output;
use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List nodes: liveness, last heartbeat, running runs, version.
    #[command(visible_alias = "list")]
    Ls,
}

pub async fn run(ctx: &Ctx, cmd: NodeCmd) -> Result<u8> {
    match cmd {
        NodeCmd::Ls => {
            let nodes = ctx.client()?.list_nodes().await?;
            if ctx.json() {
                output::json(&nodes)?;
                return Ok(0);
            }
            let rows = nodes.iter().map(|n| {
                let mut alive = output::yes_no(n.alive);
                if n.draining {
                    alive.push_str(" (draining)");
                }
                if !n.clock_ok {
                    match &n.clock_problem {
                        Some(p) => alive.push_str(&format!(" (clock unhealthy: {p})")),
                        None => alive.push_str(" (clock unsynchronised)"),
                    }
                }
                vec![
                    n.id.clone(),
                    n.hostname.clone(),
                    alive,
                    output::time(Some(n.last_seen)),
                    n.running.to_string(),
                    n.version.clone(),
                ]
            });
            output::emit(&output::table(
                &["ID", "HOSTNAME", "ALIVE", "LAST SEEN", "RUNNING", "VERSION"],
                rows,
            ))?;
            Ok(0)
        }
    }
}
