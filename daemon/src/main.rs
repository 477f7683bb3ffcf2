//! `cronsund [--config PATH]` runs the daemon in the foreground;
//! `cronsund validate [--config PATH]` checks the config (exit 0 or 78).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cronsund::clock::Clock;
use cronsund::config::{Config, DEFAULT_PATH, EXIT_CONFIG};

#[derive(Parser)]
#[command(
    name = "cronsund",
    version,
    about = "cronsun node daemon: schedules and runs jobs, serves the API on :7079"
)]
struct Args {
    /// Config file (TOML).
    #[arg(long, global = true, env = "CRONSUN_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Check the config and exit 0, or 78 naming file, line and key.
    Validate,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let explicit = args.config.is_some();
    let path = args.config.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let cfg = match Config::load(&path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cronsund: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    if let Some(Cmd::Validate) = args.command {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    init_logging(&cfg.log.level);
    cronsund::privsep::notify::capture_watchdog();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cronsund")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cronsund: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(cronsund::daemon::run(cfg, &path, Clock::System)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cronsund: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CRONSUN_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
