//! `cronsun user ls|add|rm|passwd|set-role`: local accounts (admins; anyone
//! may change their own password with `passwd`).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use cronsun_proto::auth::{AccountRequest, PasswordChange, Permissions, Role};

use crate::login::password;
use crate::output;
use crate::Ctx;

/// Role, group scope and extra permissions (accounts and tokens).
#[derive(Debug, Args)]
pub struct Grant {
    /// viewer, operator or admin
    #[arg(long, value_parser = parse_role)]
    pub role: Role,
    /// Limit the role to jobs of this group (repeatable; none = all groups).
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// May read run output.
    #[arg(long)]
    pub read_output: bool,
    /// May create/edit jobs that run as root or a non-default user.
    #[arg(long)]
    pub privileged_run_as: bool,
}

impl Grant {
    pub fn permissions(&self) -> Permissions {
        Permissions {
            read_output: self.read_output,
            privileged_run_as: self.privileged_run_as,
        }
    }
}

pub fn parse_role(s: &str) -> Result<Role, String> {
    s.parse()
}

/// Where a new password comes from.
#[derive(Debug, Args)]
pub struct PasswordSource {
    /// Read the password from the first line of FILE instead of asking.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// List accounts.
    #[command(visible_alias = "list")]
    Ls,
    /// Create an account (asks for its password).
    Add {
        user: String,
        #[command(flatten)]
        grant: Grant,
        #[command(flatten)]
        pw: PasswordSource,
    },
    /// Delete an account.
    Rm { user: String },
    /// Set a password: your own (asks the current one too) or, as an
    /// admin, anyone's [default USER: yourself].
    Passwd {
        user: Option<String>,
        #[command(flatten)]
        pw: PasswordSource,
        /// Read your current password from the first line of FILE.
        #[arg(long, value_name = "FILE")]
        current_password_file: Option<PathBuf>,
    },
    /// Change an account's role and group scope.
    SetRole {
        user: String,
        #[command(flatten)]
        grant: Grant,
    },
}

pub async fn run(ctx: &Ctx, cmd: UserCmd) -> Result<u8> {
    let client = ctx.client()?;
    match cmd {
        UserCmd::Ls => {
            let accounts = client.list_accounts().await?;
            if ctx.json() {
                output::json(&accounts)?;
                return Ok(0);
            }
            let rows = accounts.iter().map(|a| {
                vec![
                    a.user.clone(),
                    a.role.to_string(),
                    groups(&a.groups),
                    perms(&a.permissions),
                    output::yes_no(a.disabled),
                    output::time(Some(a.created_at)),
                ]
            });
            output::emit(&output::table(
                &[
                    "USER",
                    "ROLE",
                    "GROUPS",
                    "PERMISSIONS",
                    "DISABLED",
                    "CREATED",
                ],
                rows,
            ))?;
        }
        UserCmd::Add { user, grant, pw } => {
            let password = password("new password: ", pw.password_file.as_deref())?;
            let a = client
                .create_account(&AccountRequest {
                    user,
                    password: Some(password),
                    role: grant.role,
                    groups: grant.groups.clone(),
                    permissions: grant.permissions(),
                    disabled: false,
                    revision: None,
                })
                .await?;
            done(ctx, &a, &format!("created account {} ({})", a.user, a.role))?;
        }
        UserCmd::Rm { user } => {
            client.delete_account(&user).await?;
            output::emit(&format!("deleted account {user}"))?;
        }
        UserCmd::Passwd {
            user,
            pw,
            current_password_file,
        } => {
            let me = client.me().await?;
            let user = user.unwrap_or_else(|| me.user.clone());
            // Your own password needs the current one (an admin resetting
            // someone else's does not).
            let current = if user == me.user {
                Some(password(
                    "current password: ",
                    current_password_file.as_deref(),
                )?)
            } else {
                None
            };
            let new = password("new password: ", pw.password_file.as_deref())?;
            client
                .set_password(
                    &user,
                    &PasswordChange {
                        password: new,
                        current_password: current,
                    },
                )
                .await?;
            output::emit(&format!(
                "password of {user} changed; its sessions and logins have ended"
            ))?;
        }
        UserCmd::SetRole { user, grant } => {
            let old = client
                .list_accounts()
                .await?
                .into_iter()
                .find(|a| a.user == user)
                .with_context(|| format!("no account {user:?}"))?;
            let a = client
                .update_account(&AccountRequest {
                    user: old.user,
                    password: None,
                    role: grant.role,
                    groups: grant.groups.clone(),
                    permissions: grant.permissions(),
                    disabled: old.disabled,
                    // Refused (409) if someone changed it since the read.
                    revision: (old.revision != 0).then_some(old.revision),
                })
                .await?;
            done(
                ctx,
                &a,
                &format!("{} is now {} of {}", a.user, a.role, groups(&a.groups)),
            )?;
        }
    }
    Ok(0)
}

fn done<T: serde::Serialize>(ctx: &Ctx, value: &T, text: &str) -> Result<()> {
    if ctx.json() {
        output::json(value)
    } else {
        output::emit(text)
    }
}

pub fn groups(g: &[String]) -> String {
    if g.is_empty() {
        "all groups".into()
    } else {
        g.join(",")
    }
}

pub fn perms(p: &Permissions) -> String {
    let mut v = Vec::new();
    if p.read_output {
        v.push("read_output");
    }
    if p.privileged_run_as {
        v.push("privileged_run_as");
    }
    if v.is_empty() {
        "-".into()
    } else {
        v.join(",")
    }
}
