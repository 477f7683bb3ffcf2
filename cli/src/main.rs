//! `cronsun`: the command-line client of cronsund (DESIGN §8).
//!
//! Exit codes: 0 ok, 1 API or runtime error, 2 usage error; `job run --wait`
//! exits with the run's exit code.

mod cron;
mod import;
mod job;
mod jobfile;
mod login;
mod manpages;
mod node;
mod output;
mod pause;
mod run;
mod server;
mod token;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use cronsun_proto::client::{Client, ClientError};

use output::Output;

/// Command-line client of cronsun, the distributed cron.
#[derive(Debug, Parser)]
#[command(
    name = "cronsun",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    #[command(flatten)]
    conn: Connection,
    /// Output format: `table` for humans, `json` for the API's objects.
    #[arg(long, short = 'o', global = true, help_heading = "Global options", value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

/// How to reach the daemon.
#[derive(Debug, clap::Args)]
struct Connection {
    /// Server: http://host:port or unix:/path/to/api.sock [default: the local
    /// socket from the config if it exists, else http://127.0.0.1:7079]
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CRONSUN_URL",
        value_name = "URL"
    )]
    server: Option<String>,
    /// API token (Bearer); not needed on the local socket as root or group cronsun-admin.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CRONSUN_TOKEN",
        hide_env_values = true
    )]
    token: Option<String>,
    /// File holding the API token, e.g. <state_dir>/admin.token.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CRONSUN_TOKEN_FILE",
        value_name = "FILE"
    )]
    token_file: Option<PathBuf>,
    /// PEM certificates to trust for https:// besides the system's, e.g. a
    /// cronsund's self-signed <state_dir>/tls/cert.pem.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CRONSUN_CA_FILE",
        value_name = "FILE"
    )]
    ca_file: Option<PathBuf>,
    /// The daemon's config, read to find its socket [default: /etc/cronsun/cronsun.toml].
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "CRONSUN_CONFIG",
        value_name = "PATH"
    )]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List, show, apply, export, pause and run jobs.
    #[command(subcommand)]
    Job(job::JobCmd),
    /// Search runs, show them, read or follow their output, kill them.
    #[command(subcommand)]
    Run(run::RunCmd),
    /// List the cluster's nodes.
    #[command(subcommand)]
    Node(node::NodeCmd),
    /// Pause every scheduled run (`--all`), or show the switch (`status`).
    Pause(pause::PauseArgs),
    /// Lift the global pause (`--all`).
    Resume(pause::ResumeArgs),
    /// Log in with a password; saves a token for later commands.
    Login(login::LoginArgs),
    /// Forget the token saved by `login`.
    Logout,
    /// Local accounts: list, add, remove, set passwords and roles.
    #[command(subcommand)]
    User(user::UserCmd),
    /// API tokens: create, list, revoke.
    #[command(subcommand)]
    Token(token::TokenCmd),
    /// Offline schedule tools.
    #[command(subcommand)]
    Cron(cron::CronCmd),
    /// Import jobs from another scheduler (Go cronsun).
    #[command(subcommand)]
    Import(import::ImportCmd),
    /// Print a shell completion script (bash, zsh, fish, ...).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write man pages and completions under DIR (for packaging).
    #[command(hide = true)]
    GenerateDocs { dir: PathBuf },
}

/// What every command gets: the output format and a way to reach the server.
pub struct Ctx {
    pub output: Output,
    conn: Connection,
}

impl Ctx {
    /// A client for the resolved server and token.
    pub fn client(&self) -> Result<Client> {
        let token =
            server::resolve_token(self.conn.token.as_deref(), self.conn.token_file.as_deref())?
                .or_else(login::saved_token);
        self.client_with(token)
    }

    /// A client sending no token (password logins).
    pub fn client_without_token(&self) -> Result<Client> {
        self.client_with(None)
    }

    fn client_with(&self, token: Option<String>) -> Result<Client> {
        let server =
            server::resolve_server(self.conn.server.as_deref(), self.conn.config.as_deref())?;
        let ca_file = self.conn.ca_file.clone().or(server.ca_file);
        Ok(Client::with_ca_file(
            &server.url,
            token,
            ca_file.as_deref(),
        )?)
    }

    pub fn json(&self) -> bool {
        self.output == Output::Json
    }
}

async fn dispatch(cli: Cli) -> Result<u8> {
    let ctx = Ctx {
        output: cli.output,
        conn: cli.conn,
    };
    match cli.command {
        Command::Job(cmd) => job::run(&ctx, cmd).await,
        Command::Run(cmd) => run::run(&ctx, cmd).await,
        Command::Node(cmd) => node::run(&ctx, cmd).await,
        Command::Pause(args) => pause::pause(&ctx, args).await,
        Command::Resume(args) => pause::resume(&ctx, args).await,
        Command::Login(args) => login::login(&ctx, args).await,
        Command::Logout => login::logout(),
        Command::User(cmd) => user::run(&ctx, cmd).await,
        Command::Token(cmd) => token::run(&ctx, cmd).await,
        Command::Cron(cmd) => cron::run(&ctx, cmd),
        Command::Import(cmd) => import::run(&ctx, cmd).await,
        Command::Completions { shell } => {
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cronsun", &mut out);
            output::emit_raw(&String::from_utf8_lossy(&out))?;
            Ok(0)
        }
        Command::GenerateDocs { dir } => manpages::generate(Cli::command(), &dir).map(|()| 0),
    }
}

/// Prints `error: <message>` (and the field the API named) on stderr.
fn report(e: &anyhow::Error) {
    // A client error's message already explains its cause; stop the chain there.
    let mut parts = Vec::new();
    for cause in e.chain() {
        parts.push(cause.to_string());
        if cause.downcast_ref::<ClientError>().is_some() {
            break;
        }
    }
    eprintln!("error: {}", parts.join(": "));
    if let Some(field) = e.downcast_ref::<ClientError>().and_then(ClientError::field) {
        eprintln!("  field: {field}");
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn main() -> ExitCode {
    // Usage errors exit 2, --help and --version 0 (clap's convention).
    let cli = Cli::try_parse().unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
