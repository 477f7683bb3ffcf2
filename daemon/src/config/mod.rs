//! Daemon configuration (`/etc/cronsun/cronsun.toml`, DESIGN §8).
//!
//! Guarantees: unknown keys are rejected; every value is validated at load;
//! every error names the file, the line and the key ([`ConfigError`]). A
//! missing file at the default path means "all defaults" so that a fresh
//! install runs standalone; a missing file named with `--config` is an error.

mod etcd;
mod locate;
mod mongo;
mod web;

pub use web::Transport;

pub use etcd::EtcdSection;
pub use mongo::MongoSection;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use cronsun_proto::Dur;
use serde::Deserialize;

use locate::KeyMap;

/// Where the daemon looks when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/cronsun/cronsun.toml";

/// Exit status for bad configuration (sysexits EX_CONFIG).
pub const EXIT_CONFIG: i32 = 78;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub node: NodeSection,
    #[serde(default)]
    pub web: WebSection,
    #[serde(default)]
    pub scheduler: SchedulerSection,
    #[serde(default)]
    pub security: SecuritySection,
    #[serde(default)]
    pub retention: RetentionSection,
    #[serde(default)]
    pub log: LogSection,
    /// Cluster mode: jobs, claims and nodes in etcd (runs in MongoDB).
    #[serde(default)]
    pub etcd: Option<EtcdSection>,
    /// Run records in MongoDB (through the local spool).
    #[serde(default)]
    pub mongodb: Option<MongoSection>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// Node id; default: the id persisted in the state dir (from the hostname).
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

impl Default for NodeSection {
    fn default() -> Self {
        NodeSection {
            id: None,
            state_dir: default_state_dir(),
            groups: Vec::new(),
            labels: BTreeMap::new(),
        }
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/cronsun")
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebSection {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Unix socket for local admin access; empty disables it.
    #[serde(default = "default_socket")]
    pub socket: PathBuf,
    /// How long a browser session lasts after login.
    #[serde(default = "web::default_session_ttl")]
    pub session_ttl: Dur,
    /// Names the Host header may carry besides localhost names, the listen
    /// address and this machine's hostname (IP literals always pass).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// PEM certificate chain and key for TLS; without them a non-loopback
    /// listener uses a self-signed certificate made at first start.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Serve plain HTTP on a non-loopback address (logged at every start).
    #[serde(default)]
    pub insecure_plaintext: bool,
}

impl Default for WebSection {
    fn default() -> Self {
        WebSection {
            listen: default_listen(),
            socket: default_socket(),
            session_ttl: web::default_session_ttl(),
            hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
            insecure_plaintext: false,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7079))
}
fn default_socket() -> PathBuf {
    PathBuf::from("/run/cronsun/api.sock")
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSection {
    /// Zone given to rules that name none.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// How long SIGTERM waits for running runs before killing them.
    #[serde(default = "default_drain")]
    pub drain_timeout: Dur,
    /// How long before an instant its claim is made, so the start is not
    /// delayed by the store.
    #[serde(default = "default_lead")]
    pub lead: Dur,
    /// A wall-clock jump larger than this (against the monotonic clock) is a
    /// clock step: forward counts as downtime, backward never re-fires.
    #[serde(default = "default_step_tolerance")]
    pub clock_step_tolerance: Dur,
    /// Runs this node starts at most at once (further instants are `skipped`).
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_runs: u32,
}

impl Default for SchedulerSection {
    fn default() -> Self {
        SchedulerSection {
            timezone: default_timezone(),
            drain_timeout: default_drain(),
            lead: default_lead(),
            clock_step_tolerance: default_step_tolerance(),
            max_concurrent_runs: default_max_concurrent(),
        }
    }
}

fn default_timezone() -> String {
    "UTC".into()
}
fn default_drain() -> Dur {
    Dur::secs(30)
}
fn default_lead() -> Dur {
    Dur::millis(5)
}
fn default_step_tolerance() -> Dur {
    Dur::secs(2)
}
fn default_max_concurrent() -> u32 {
    256
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    /// User for jobs that name none; root is never implied.
    #[serde(default = "default_run_as")]
    pub default_run_as: String,
    /// Users jobs may name in `run_as`; `root` only if listed.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    /// Absolute paths jobs may run; empty means any command.
    #[serde(default)]
    pub allowed_commands: Vec<PathBuf>,
    /// The unprivileged user the network-facing agent runs as when the
    /// daemon starts as root (privilege separation, DESIGN §1).
    #[serde(default = "default_agent_user")]
    pub agent_user: String,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            default_run_as: default_run_as(),
            allowed_users: Vec::new(),
            allowed_commands: Vec::new(),
            agent_user: default_agent_user(),
        }
    }
}

fn default_run_as() -> String {
    "nobody".into()
}
fn default_agent_user() -> String {
    "cronsun".into()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSection {
    #[serde(default = "default_max_age")]
    pub max_age: Dur,
    #[serde(default = "default_max_runs")]
    pub max_runs_per_job: u32,
}

impl Default for RetentionSection {
    fn default() -> Self {
        RetentionSection {
            max_age: default_max_age(),
            max_runs_per_job: default_max_runs(),
        }
    }
}

fn default_max_age() -> Dur {
    Dur::secs(30 * 86_400)
}
fn default_max_runs() -> u32 {
    1000
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// `error`, `warn`, `info`, `debug`, `trace`, or a tracing filter.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: default_level(),
        }
    }
}

fn default_level() -> String {
    "info".into()
}

/// A configuration error: `file:line: key: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        f.write_str(": ")?;
        if let Some(k) = &self.key {
            write!(f, "{k}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Loads `path`; `explicit` says whether the user named it (a missing
    /// default file means defaults).
    pub fn load(path: &Path, explicit: bool) -> Result<Config, ConfigError> {
        let src = match std::fs::read_to_string(path) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                let mut c = Config::default();
                c.finish(path, "")?;
                return Ok(c);
            }
            Err(e) => {
                return Err(ConfigError {
                    file: path.to_path_buf(),
                    line: None,
                    key: None,
                    message: format!("cannot read: {e}"),
                })
            }
        };
        Config::parse(path, &src)
    }

    /// Parses and validates `src`, attributing errors to `file`.
    pub fn parse(file: &Path, src: &str) -> Result<Config, ConfigError> {
        let keys = KeyMap::new(src);
        let mut cfg: Config = toml::from_str(src).map_err(|e| {
            let offset = e.span().map(|s| s.start);
            ConfigError {
                file: file.to_path_buf(),
                line: offset.map(|o| keys.line_of(o)),
                key: offset.and_then(|o| keys.key_at(o)).map(str::to_string),
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.finish(file, src)?;
        Ok(cfg)
    }

    /// Cross-field validation and normalisation after parsing.
    fn finish(&mut self, file: &Path, src: &str) -> Result<(), ConfigError> {
        let keys = KeyMap::new(src);
        let err = |key: &str, message: String| ConfigError {
            file: file.to_path_buf(),
            line: keys.line_of_key(key),
            key: Some(key.to_string()),
            message,
        };
        if let Some(e) = &self.etcd {
            e.check().map_err(|(key, msg)| err(key, msg))?;
            if self.mongodb.is_none() {
                return Err(err(
                    "etcd",
                    "cluster mode keeps run records in MongoDB: add a [mongodb] section \
                     (uri = \"mongodb://...\"), or remove [etcd] to run standalone"
                        .into(),
                ));
            }
        }
        if let Some(m) = &self.mongodb {
            m.check().map_err(|(key, msg)| err(key, msg))?;
        }
        self.web.check().map_err(|(key, msg)| err(key, msg))?;
        if let Some(id) = &self.node.id {
            if !is_node_id(id) {
                return Err(err(
                    "node.id",
                    format!("{id:?} is not a valid node id: use 1-64 characters of [A-Za-z0-9_.-]"),
                ));
            }
        }
        if self.node.state_dir.as_os_str().is_empty() {
            return Err(err("node.state_dir", "must not be empty".into()));
        }
        // Relative paths are relative to the directory the daemon was started
        // from (development use); they are made absolute once, here.
        if let Ok(cwd) = std::env::current_dir() {
            for p in [&mut self.node.state_dir, &mut self.web.socket] {
                if p.is_relative() && !p.as_os_str().is_empty() {
                    *p = cwd.join(&*p);
                }
            }
        }
        for (i, g) in self.node.groups.iter().enumerate() {
            if !is_node_id(g) {
                return Err(err(
                    &format!("node.groups[{i}]"),
                    format!("{g:?} is not a valid group name"),
                ));
            }
        }
        if let Err(e) =
            cronsun_proto::schedule::Schedule::parse("@hourly", &self.scheduler.timezone, "config")
        {
            return Err(err("scheduler.timezone", e.to_string()));
        }
        if self.scheduler.lead.0 > std::time::Duration::from_secs(5) {
            return Err(err("scheduler.lead", "must be at most 5s".into()));
        }
        if self.scheduler.max_concurrent_runs == 0 {
            return Err(err(
                "scheduler.max_concurrent_runs",
                "must be at least 1".into(),
            ));
        }
        if self.security.agent_user.is_empty() || self.security.agent_user == "root" {
            return Err(err(
                "security.agent_user",
                "must name an unprivileged user (default \"cronsun\")".into(),
            ));
        }
        if self.security.default_run_as.is_empty() {
            return Err(err("security.default_run_as", "must name a user".into()));
        }
        for (i, c) in self.security.allowed_commands.iter().enumerate() {
            if !c.is_absolute() {
                return Err(err(
                    &format!("security.allowed_commands[{i}]"),
                    format!("{} is not an absolute path", c.display()),
                ));
            }
        }
        if !is_log_filter(&self.log.level) {
            return Err(err(
                "log.level",
                format!(
                    "{:?} is not a log level (error, warn, info, debug, trace)",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// The run-as policy the executor enforces.
    pub fn exec_policy(&self) -> crate::exec::ExecPolicy {
        crate::exec::ExecPolicy {
            default_run_as: self.security.default_run_as.clone(),
            allowed_users: self.security.allowed_users.clone(),
            allowed_commands: if self.security.allowed_commands.is_empty() {
                None
            } else {
                Some(self.security.allowed_commands.clone())
            },
        }
    }

    /// The Unix socket path, if enabled.
    pub fn socket(&self) -> Option<&Path> {
        if self.web.socket.as_os_str().is_empty() {
            None
        } else {
            Some(&self.web.socket)
        }
    }
}

/// A level name, or `EnvFilter` directives where each bare word is a level
/// (`"info,cronsund::exec=debug"`); a bare word that is not a level would be
/// taken as a target name and silence everything else.
fn is_log_filter(s: &str) -> bool {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    !s.trim().is_empty()
        && tracing_subscriber::EnvFilter::try_new(s).is_ok()
        && s.split(',').all(|d| {
            let d = d.trim();
            d.contains('=') || LEVELS.contains(&d.to_ascii_lowercase().as_str())
        })
}

/// Node ids and group names: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_node_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("/etc/cronsun/cronsun.toml"), src)
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let e = parse("[web]\nlisten = \"127.0.0.1:1\"\ncolour = 1\n").unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("web.colour"), "{e}");
        assert!(e.message.contains("colour"), "{e}");
        assert!(e
            .to_string()
            .starts_with("/etc/cronsun/cronsun.toml:3: web.colour: "));
    }

    #[test]
    fn bad_values_name_line_and_key() {
        let e = parse("[scheduler]\n\ndrain_timeout = \"soon\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("scheduler.drain_timeout")),
            "{e}"
        );
        let e = parse("[web]\nlisten = \"localhost\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("web.listen")),
            "{e}"
        );
        let e = parse("[node]\nid = \"bad id\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(2), Some("node.id")),
            "{e}"
        );
        let e = parse("[log]\nlevel = \"\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("log.level"), "{e}");
        // A bare word that is not a level would filter by target and silence the daemon.
        let e = parse("[log]\nlevel = \"loud\"\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("log.level"), "{e}");
        for ok in ["debug", "WARN", "info,cronsund::exec=trace", "off"] {
            parse(&format!("[log]\nlevel = {ok:?}\n")).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("[web\nlisten = 1\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn defaults_are_standalone_on_loopback() {
        let c = parse("").expect("empty config is valid");
        assert_eq!(c.web.listen.to_string(), "127.0.0.1:7079");
        assert_eq!(c.security.default_run_as, "nobody");
        assert!(c.etcd.is_none());
    }

    #[test]
    fn cluster_mode_needs_mongodb_and_names_etcd_keys() {
        let e = parse("[node]\nid = \"a\"\n\n[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n")
            .unwrap_err();
        assert_eq!((e.line, e.key.as_deref()), (Some(4), Some("etcd")), "{e}");
        assert!(e.message.contains("[mongodb]"), "{e}");
        let mongo = "[mongodb]\nuri = \"mongodb://127.0.0.1:1\"\n";
        let ok = parse(&format!(
            "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\n{mongo}"
        ))
        .expect("valid cluster config");
        assert_eq!(ok.etcd.expect("etcd").prefix, "/cronsun/");
        let e = parse(&format!(
            "[etcd]\nendpoints = [\"http://127.0.0.1:2379\"]\nlease_ttl = \"1s\"\n{mongo}"
        ))
        .unwrap_err();
        assert_eq!(
            (e.line, e.key.as_deref()),
            (Some(3), Some("etcd.lease_ttl")),
            "{e}"
        );
        let e = parse("[etcd]\nendpoint = []\n").unwrap_err();
        assert_eq!(e.key.as_deref(), Some("etcd.endpoint"), "{e}");
    }

    #[test]
    fn sample_cluster_config_is_valid() {
        let c = Config::parse(
            Path::new("conf/cluster.toml"),
            include_str!("../../../conf/cluster.toml"),
        )
        .expect("conf/cluster.toml is valid");
        assert!(c.etcd.is_some() && c.mongodb.is_some());
    }

    #[test]
    fn missing_default_file_means_defaults_but_explicit_is_an_error() {
        let p = Path::new("/nonexistent/cronsun.toml");
        assert!(Config::load(p, false).is_ok());
        let e = Config::load(p, true).unwrap_err();
        assert!(e.message.contains("cannot read"), "{e}");
    }
}
