//! `cronsun login` / `logout`: a password login that stores an API token
//! acting as the account (`POST /api/v1/session/token`) in
//! `$XDG_CONFIG_HOME/cronsun/token` (default `~/.config/cronsun/token`, mode
//! 0600). Later commands send it when no `--token`/`--token-file` is given.
//! The token ends when it expires (30 days unless `--expires-in`) or when
//! the account's password or rights change.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use clap::Args;
use cronsun_proto::auth::LoginTokenRequest;
use cronsun_proto::Dur;

use crate::output;
use crate::Ctx;

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Account name [default: asked]
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// Read the password from the first line of FILE instead of asking.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Token lifetime, e.g. `8h`, `30d` [default: 30d]
    #[arg(long, value_name = "DURATION")]
    expires_in: Option<Dur>,
}

/// Where the login token is kept.
pub fn token_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("cronsun").join("token"))
}

/// The saved login token, if there is one.
pub fn saved_token() -> Option<String> {
    let text = std::fs::read_to_string(token_path()?).ok()?;
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn save_token(path: &Path, token: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(f, "{token}").with_context(|| format!("cannot write {}", path.display()))
}

/// One line from stdin, after printing `prompt` when stdin is a terminal.
pub fn ask(prompt: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}");
        std::io::stderr().flush().ok();
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read stdin")?;
    let line = line.trim_end_matches(['\r', '\n']).to_string();
    if line.is_empty() {
        bail!(
            "no answer to {:?} on stdin",
            prompt.trim().trim_end_matches(':')
        );
    }
    Ok(line)
}

/// A password: the first line of `file`, else asked without echo on a
/// terminal, else one line of stdin.
pub fn password(prompt: &str, file: Option<&Path>) -> Result<String> {
    if let Some(f) = file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read password file {}", f.display()))?;
        let pw = text.lines().next().unwrap_or("").to_string();
        if pw.is_empty() {
            bail!("password file {} is empty", f.display());
        }
        return Ok(pw);
    }
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).context("cannot read the password");
    }
    ask(prompt)
}

pub async fn login(ctx: &Ctx, args: LoginArgs) -> Result<u8> {
    let user = match args.user {
        Some(u) => u,
        None => ask("user: ")?,
    };
    let password = password("password: ", args.password_file.as_deref())?;
    let host = nix_hostname();
    let created = ctx
        .client_without_token()?
        .login_token(&LoginTokenRequest {
            user: user.clone(),
            password,
            name: Some(format!("cli-{user}@{host}")),
            expires_in: args.expires_in,
        })
        .await?;
    let path = token_path().context("cannot find a config dir: set HOME or XDG_CONFIG_HOME")?;
    save_token(&path, &created.token)?;
    if ctx.json() {
        output::json(&created.info)?;
        return Ok(0);
    }
    output::emit(&format!(
        "logged in as {user} ({}); token {} saved to {} (expires {})",
        created.info.role,
        created.info.id,
        path.display(),
        output::time(created.info.expires_at)
    ))?;
    Ok(0)
}

/// Forgets the saved login token.
pub fn logout() -> Result<u8> {
    let path = token_path().context("cannot find a config dir: set HOME or XDG_CONFIG_HOME")?;
    match std::fs::remove_file(&path) {
        Ok(()) => output::emit(&format!("removed {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => output::emit("not logged in")?,
        Err(e) => bail!("cannot remove {}: {e}", path.display()),
    }
    Ok(0)
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        })
        .unwrap_or_else(|| "host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("cronsun").join("token");
        save_token(&p, "cst_x.y").expect("save");
        let mode = std::fs::metadata(&p).expect("file").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        save_token(&p, "cst_z.w").expect("replace");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "cst_z.w\n");
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = dir.path().join("pw");
        std::fs::write(&f, "s3cret pass\nignored\n").expect("write");
        assert_eq!(password("p", Some(&f)).expect("pw"), "s3cret pass");
        std::fs::write(&f, "\n").expect("write");
        assert!(password("p", Some(&f)).is_err());
    }
}
