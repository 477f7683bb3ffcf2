//! `cronsun node ls|drain|undrain`.

use anyhow::Result;
use clap::Subcommand;
use cronsun_proto::api::NodeInfo;

use crate::output;
use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// List nodes: liveness, last heartbeat, running runs, version.
    #[command(visible_alias = "list")]
    Ls,
    /// Drain a node (cluster): it starts no new runs, scheduled or manual;
    /// its running runs finish. `one` jobs run on the other nodes; `all`
    /// jobs skip it. Kept across restarts until `node undrain`.
    Drain { id: String },
    /// Undrain a node: it starts runs again.
    Undrain { id: String },
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
        NodeCmd::Drain { id } => set_drain(ctx, &id, true).await,
        NodeCmd::Undrain { id } => set_drain(ctx, &id, false).await,
    }
}

async fn set_drain(ctx: &Ctx, id: &str, on: bool) -> Result<u8> {
    let node = ctx.client()?.drain_node(id, on).await?;
    if ctx.json() {
        output::json(&node)?;
    } else {
        output::emit(&drain_line(&node))?;
    }
    Ok(0)
}

/// What a drain or undrain did, in one line.
fn drain_line(n: &NodeInfo) -> String {
    if n.draining {
        format!(
            "node {} draining: it starts no new runs; runs in progress finish",
            n.id
        )
    } else {
        format!("node {} undrained: it starts runs again", n.id)
    }
}
