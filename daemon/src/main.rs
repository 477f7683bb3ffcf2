//! `cronsund [--config PATH]` runs the daemon in the foreground;
//! `cronsund validate [--config PATH]` checks the config (exit 0 or 78).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use cronsund::clock::Clock;
use cronsund::config::{Config, DEFAULT_PATH, EXIT_CONFIG};
use cronsund::privsep;
use std::os::fd::OwnedFd;

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
    /// Apply the agent's sandbox (Landlock, seccomp) to this process, try
    /// what it forbids, and print what this kernel enforces (exit 1 if a
    /// probe had an unexpected outcome).
    CheckSandbox,
    /// Write the cronsund(8) man page into DIR (for packaging).
    #[command(hide = true)]
    Manpage { dir: PathBuf },
}

fn main() -> ExitCode {
    cronsund::node::limit_malloc_arenas();
    let args = Args::parse();
    if let Some(Cmd::Manpage { dir }) = &args.command {
        return write_manpage(dir);
    }
    let explicit = args.config.is_some();
    let path = args.config.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
    let cfg = match Config::load(&path, explicit) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cronsund: invalid configuration: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
    };
    match args.command {
        Some(Cmd::Validate) => {
            println!("{}: ok", path.display());
            return ExitCode::SUCCESS;
        }
        Some(Cmd::CheckSandbox) => {
            let (report, ok) = privsep::sandbox::check(&privsep::sandbox::Spec::for_config(&cfg));
            print!("{report}");
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        _ => {}
    }
    if let Err(e) = cronsund::clock::check_test_offset() {
        eprintln!("cronsund: {e}");
        return ExitCode::from(EXIT_CONFIG as u8);
    }
    cronsund::logging::init(&cfg.log.level);
    let agent_fd = std::env::var(privsep::AGENT_FD_ENV).ok();
    if let Some(fd) = agent_fd {
        return run_agent(cfg, &path, &fd);
    }
    if nix::unistd::geteuid().is_root() {
        // No runtime and no thread exists yet: become the executor.
        privsep::notify::capture_watchdog();
        return privsep::run_executor(&cfg, &path);
    }
    privsep::notify::capture_watchdog();
    tracing::info!(
        "not started as root: this one process is both executor and agent (no privilege separation)"
    );
    run_daemon(|| cronsund::daemon::run(cfg, &path, Clock::System))
}

/// The agent: confine this process, then run the daemon against the
/// executor at the other end of the inherited socket.
fn run_agent(cfg: Config, path: &std::path::Path, fd: &str) -> ExitCode {
    std::env::remove_var(privsep::AGENT_FD_ENV);
    if fd.parse::<i32>().ok() != Some(privsep::AGENT_FD) {
        eprintln!(
            "cronsund: {}={fd:?} is not {}",
            privsep::AGENT_FD_ENV,
            privsep::AGENT_FD
        );
        return ExitCode::FAILURE;
    }
    // SAFETY: the executor placed its socket on this fd for us (dup2 before
    // exec, so it is not close-on-exec) and nothing else in this fresh
    // process owns it.
    #[allow(unsafe_code)]
    let sock = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(privsep::AGENT_FD) };
    if let Err(e) = nix::fcntl::fcntl(
        std::os::fd::AsFd::as_fd(&sock),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    ) {
        eprintln!("cronsund: cannot mark the executor socket close-on-exec: {e}");
        return ExitCode::FAILURE;
    }
    match privsep::agent::drop_privileges(&cfg.security.agent_user) {
        Ok(()) => {
            tracing::info!(user = %cfg.security.agent_user, "agent confined: no capabilities, no new privileges")
        }
        Err(e @ privsep::agent::DropError::MissingUser(_)) => {
            eprintln!("cronsund: {e}");
            return ExitCode::from(EXIT_CONFIG as u8);
        }
        Err(e) => {
            eprintln!("cronsund: {e}");
            return ExitCode::FAILURE;
        }
    }
    match privsep::sandbox::confine(&privsep::sandbox::Spec::for_config(&cfg)) {
        Ok(r) if r.complete => {
            tracing::info!(landlock = %r.landlock, seccomp = %r.seccomp, "agent sandboxed");
        }
        Ok(r) => tracing::warn!(
            landlock = %r.landlock,
            seccomp = %r.seccomp,
            "agent sandboxed only in part: this kernel lacks some Landlock features"
        ),
        Err(e) => {
            eprintln!("cronsund: cannot sandbox the agent: {e}");
            return ExitCode::FAILURE;
        }
    }
    run_daemon(|| cronsund::daemon::run_agent(cfg, path, Clock::System, sock))
}

fn run_daemon<F, Fut>(f: F) -> ExitCode
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
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
    match rt.block_on(f()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("cronsund: {e:#}");
            if e.downcast_ref::<cronsund::daemon::NodeIdTaken>().is_some() {
                return ExitCode::from(EXIT_CONFIG as u8);
            }
            ExitCode::FAILURE
        }
    }
}

fn write_manpage(dir: &std::path::Path) -> ExitCode {
    use clap::CommandFactory;
    let path = dir.join("cronsund.8");
    let mut out = Vec::new();
    let page = clap_mangen::Man::new(Args::command()).section("8");
    match page
        .render(&mut out)
        .and_then(|()| std::fs::write(&path, out))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cronsund: cannot write {}: {e}", path.display());
            ExitCode::FAILURE
        }
    }
}
