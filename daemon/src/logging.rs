//! Logging: `tracing` to stderr (the journal under systemd) with a filter
//! from `[log] level` that SIGHUP can change in place (colours only on a
//! terminal: the journal gets plain text). `CRONSUN_LOG`, when
//! set, wins over the config at start and at every reload.

use std::sync::OnceLock;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// Environment variable that overrides `[log] level`.
pub const ENV: &str = "CRONSUN_LOG";

static HANDLE: OnceLock<reload::Handle<EnvFilter, Registry>> = OnceLock::new();

/// Installs the global subscriber (once; later calls do nothing).
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_env(ENV)
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false);
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = HANDLE.set(handle);
    }
}

/// What [`set_level`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum LevelChange {
    Applied,
    /// `CRONSUN_LOG` is set and keeps precedence.
    OverriddenByEnv,
    /// No reloadable subscriber (tests, or `init` was not called).
    NotReloadable,
}

/// Replaces the filter with `level` (already validated by the config).
pub fn set_level(level: &str) -> Result<LevelChange, String> {
    if std::env::var_os(ENV).is_some() {
        return Ok(LevelChange::OverriddenByEnv);
    }
    let Some(handle) = HANDLE.get() else {
        return Ok(LevelChange::NotReloadable);
    };
    let filter = EnvFilter::try_new(level).map_err(|e| format!("log.level {level:?}: {e}"))?;
    handle
        .reload(filter)
        .map(|()| LevelChange::Applied)
        .map_err(|e| format!("cannot change the log level: {e}"))
}
