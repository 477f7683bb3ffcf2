//! `cronsun token create|ls|revoke`: API tokens (admins). The secret is
//! printed once, at creation.

use anyhow::Result;
use clap::Subcommand;
use cronsun_proto::auth::TokenRequest;
use cronsun_proto::Dur;

use crate::output;
use crate::user::{groups, perms, Grant};
use crate::Ctx;

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create a token and print its secret (shown only this once).
    Create {
        name: String,
        #[command(flatten)]
        grant: Grant,
        /// Lifetime, e.g. `30d` [default: never expires]
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<Dur>,
    },
    /// List tokens (never their secrets).
    #[command(visible_alias = "list")]
    Ls,
    /// Revoke a token by id.
    Revoke { id: String },
}

pub async fn run(ctx: &Ctx, cmd: TokenCmd) -> Result<u8> {
    let client = ctx.client()?;
    match cmd {
        TokenCmd::Create {
            name,
            grant,
            expires_in,
        } => {
            let t = client
                .create_token(&TokenRequest {
                    name,
                    role: grant.role,
                    groups: grant.groups.clone(),
                    permissions: grant.permissions(),
                    expires_in,
                })
                .await?;
            if ctx.json() {
                output::json(&t)?;
            } else {
                output::emit(&format!(
                    "{}\n(token {} \"{}\", role {}; this is the only time the secret is shown)",
                    t.token, t.info.id, t.info.name, t.info.role
                ))?;
            }
        }
        TokenCmd::Ls => {
            let tokens = client.list_tokens().await?;
            if ctx.json() {
                output::json(&tokens)?;
                return Ok(0);
            }
            let rows = tokens.iter().map(|t| {
                vec![
                    t.id.clone(),
                    t.name.clone(),
                    t.role.to_string(),
                    groups(&t.groups),
                    perms(&t.permissions),
                    t.created_by.clone(),
                    output::time(t.expires_at),
                    output::yes_no(t.revoked),
                ]
            });
            output::emit(&output::table(
                &[
                    "ID",
                    "NAME",
                    "ROLE",
                    "GROUPS",
                    "PERMISSIONS",
                    "CREATED BY",
                    "EXPIRES",
                    "REVOKED",
                ],
                rows,
            ))?;
        }
        TokenCmd::Revoke { id } => {
            client.revoke_token(&id).await?;
            output::emit(&format!("revoked token {id}"))?;
        }
    }
    Ok(0)
}
