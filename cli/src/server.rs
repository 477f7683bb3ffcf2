//! Which server to talk to and with which token: `--server`/`CRONSUN_URL`,
//! else the configured local socket, else the configured listener (over
//! TLS when it is not on loopback, trusting the daemon's own certificate),
//! else `http://127.0.0.1:7079`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;

/// The daemon's config file when `--config`/`CRONSUN_CONFIG` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/cronsun/cronsun.toml";
/// The daemon's socket when the config does not name one.
pub const DEFAULT_SOCKET: &str = "/run/cronsun/api.sock";
/// The daemon's HTTP listener when nothing else is known.
pub const DEFAULT_URL: &str = "http://127.0.0.1:7079";

/// The part of the daemon's config the CLI reads; other sections and keys are ignored.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    node: NodeSection,
    #[serde(default)]
    web: WebSection,
}

#[derive(Debug, Default, Deserialize)]
struct NodeSection {
    state_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
struct WebSection {
    listen: Option<String>,
    socket: Option<String>,
    tls_cert: Option<PathBuf>,
    #[serde(default)]
    insecure_plaintext: bool,
    /// Filled from `[node] state_dir`: where a self-signed certificate lives.
    #[serde(skip)]
    state_dir: Option<PathBuf>,
}

/// The daemon's state dir when the config does not name one.
const DEFAULT_STATE_DIR: &str = "/var/lib/cronsun";

/// Where to connect, and what certificate to trust for it.
#[derive(Debug, PartialEq, Eq)]
pub struct Server {
    pub url: String,
    /// The daemon's own certificate, for a URL derived from its config.
    pub ca_file: Option<PathBuf>,
}

/// The server URL: the flag (or env) when given, else derived from the
/// daemon's config (an explicit `config` that cannot be read is an error;
/// the default one is only a hint).
pub fn resolve_server(flag: Option<&str>, config: Option<&Path>) -> Result<Server> {
    if let Some(s) = flag.map(str::trim).filter(|s| !s.is_empty()) {
        return Ok(Server {
            url: s.to_string(),
            ca_file: None,
        });
    }
    let web = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?;
            parse_web(&text).with_context(|| format!("cannot parse config {}", path.display()))?
        }
        None => std::fs::read_to_string(DEFAULT_CONFIG)
            .ok()
            .and_then(|t| parse_web(&t).ok())
            .unwrap_or_default(),
    };
    Ok(choose_server(&web, |p| p.exists()))
}

fn parse_web(text: &str) -> Result<WebSection> {
    let cfg = toml::from_str::<ConfigFile>(text)?;
    Ok(WebSection {
        state_dir: cfg.node.state_dir,
        ..cfg.web
    })
}

fn plain(url: String) -> Server {
    Server { url, ca_file: None }
}

/// The local socket if it exists (`socket = ""` disables it), else the
/// configured listener (loopback: HTTP; otherwise HTTPS unless
/// `insecure_plaintext`, trusting the configured or self-signed
/// certificate), else [`DEFAULT_URL`].
fn choose_server(web: &WebSection, exists: impl Fn(&Path) -> bool) -> Server {
    let socket = match web.socket.as_deref() {
        Some("") => None,
        Some(s) => Some(s),
        None => Some(DEFAULT_SOCKET),
    };
    if let Some(s) = socket {
        if exists(Path::new(s)) {
            return plain(format!("unix:{s}"));
        }
    }
    let Some(addr) = web
        .listen
        .as_deref()
        .and_then(|l| l.parse::<SocketAddr>().ok())
    else {
        return plain(DEFAULT_URL.to_string());
    };
    let ip = addr.ip();
    if ip.is_loopback() {
        return plain(format!("http://{addr}"));
    }
    // The wildcard address is reached via loopback (the certificate names it).
    let host = match ip {
        _ if !ip.is_unspecified() => addr.to_string(),
        std::net::IpAddr::V4(_) => format!("127.0.0.1:{}", addr.port()),
        std::net::IpAddr::V6(_) => format!("[::1]:{}", addr.port()),
    };
    if web.insecure_plaintext {
        return plain(format!("http://{host}"));
    }
    let cert = web.tls_cert.clone().unwrap_or_else(|| {
        web.state_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
            .join("tls/cert.pem")
    });
    Server {
        url: format!("https://{host}"),
        ca_file: exists(&cert).then_some(cert),
    }
}

/// The Bearer token: `--token`/`CRONSUN_TOKEN`, else the trimmed content of
/// `--token-file`/`CRONSUN_TOKEN_FILE`, else none (the local socket needs none).
pub fn resolve_token(token: Option<&str>, token_file: Option<&Path>) -> Result<Option<String>> {
    if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty()) {
        return Ok(Some(t.to_string()));
    }
    let Some(path) = token_file.filter(|p| !p.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read token file {}", path.display()))?;
    let t = text.trim();
    if t.is_empty() {
        bail!("token file {} is empty", path.display());
    }
    Ok(Some(t.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(toml_text: &str) -> WebSection {
        parse_web(toml_text).expect("config parses")
    }

    #[test]
    fn flag_wins() {
        let s =
            resolve_server(Some(" http://h:1 "), Some(Path::new("/nonexistent"))).expect("flag");
        assert_eq!(s.url, "http://h:1");
        assert_eq!(s.ca_file, None);
    }

    #[test]
    fn configured_socket_then_default_socket_then_url() {
        let cfg = web(
            "[node]\nid = \"x\"\n[web]\nsocket = \"/tmp/x.sock\"\nlisten = \"127.0.0.1:8000\"\n",
        );
        let url = |cfg: &WebSection, exists: &dyn Fn(&Path) -> bool| choose_server(cfg, exists).url;
        assert_eq!(url(&cfg, &|_| true), "unix:/tmp/x.sock");
        assert_eq!(url(&cfg, &|_| false), "http://127.0.0.1:8000");
        assert_eq!(
            url(&web(""), &|p| p == Path::new(DEFAULT_SOCKET)),
            format!("unix:{DEFAULT_SOCKET}")
        );
        assert_eq!(url(&web(""), &|_| false), DEFAULT_URL);
        assert_eq!(url(&web("[web]\nsocket = \"\"\n"), &|_| true), DEFAULT_URL);
    }

    #[test]
    fn non_loopback_listeners_are_reached_over_tls_trusting_the_daemons_certificate() {
        let cfg = web("[node]\nstate_dir = \"/srv/cs\"\n[web]\nlisten = \"0.0.0.0:9000\"\n");
        let own = Path::new("/srv/cs/tls/cert.pem");
        assert_eq!(
            choose_server(&cfg, |p| p == own),
            Server {
                url: "https://127.0.0.1:9000".into(),
                ca_file: Some(own.to_path_buf())
            }
        );
        // Not readable here: the system's roots only.
        assert_eq!(choose_server(&cfg, |_| false).ca_file, None);
        let cfg = web("[web]\nlisten = \"10.0.0.1:7079\"\ntls_cert = \"/etc/c.pem\"\n");
        assert_eq!(
            choose_server(&cfg, |p| p == Path::new("/etc/c.pem")),
            Server {
                url: "https://10.0.0.1:7079".into(),
                ca_file: Some("/etc/c.pem".into())
            }
        );
        let cfg = web("[web]\nlisten = \"[::]:7079\"\ninsecure_plaintext = true\n");
        assert_eq!(choose_server(&cfg, |_| false).url, "http://[::1]:7079");
    }

    #[test]
    fn explicit_config_must_be_readable() {
        let e = resolve_server(None, Some(Path::new("/nonexistent/cronsun.toml")))
            .expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/cronsun.toml"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.toml");
        let sock = dir.path().join("api.sock");
        std::fs::write(
            &path,
            format!("[web]\nsocket = {:?}\n", sock.display().to_string()),
        )
        .expect("write");
        assert_eq!(
            resolve_server(None, Some(&path)).expect("resolves").url,
            DEFAULT_URL
        );
        std::fs::write(&sock, "").expect("touch");
        assert_eq!(
            resolve_server(None, Some(&path)).expect("resolves").url,
            format!("unix:{}", sock.display())
        );
    }

    #[test]
    fn tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("admin.token");
        std::fs::write(&file, "  abc123\n").expect("write");
        assert_eq!(
            resolve_token(Some("t"), Some(&file)).expect("flag"),
            Some("t".into())
        );
        assert_eq!(
            resolve_token(Some(""), Some(&file)).expect("file"),
            Some("abc123".into())
        );
        assert_eq!(resolve_token(None, None).expect("none"), None);
        std::fs::write(&file, "\n").expect("write");
        let e = resolve_token(None, Some(&file)).expect_err("empty");
        assert!(e.to_string().contains("is empty"), "{e}");
        let e = resolve_token(None, Some(&dir.path().join("nope"))).expect_err("missing");
        assert!(e.to_string().contains("cannot read token file"), "{e}");
    }
}
