//! Where the API lives: a TCP address (`http://host:port`, `https://…`) or a Unix socket
//! (`unix:/path/to/api.sock`), parsed once from the `--server` string.

use std::path::PathBuf;

use super::ClientError;

/// A parsed server address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `http://host[:port][/base]`; `host` keeps IPv6 brackets for the Host header.
    Tcp {
        host: String,
        port: u16,
        authority: String,
        base: String,
        /// `https://`.
        tls: bool,
    },
    /// `unix:/path` (also `unix:///path`).
    Unix { path: PathBuf },
}

impl Endpoint {
    /// Parses a server string, saying what form is expected when it is wrong.
    pub(crate) fn parse(server: &str) -> Result<Endpoint, ClientError> {
        let bad = |reason: &str| ClientError::InvalidServer {
            server: server.to_string(),
            reason: reason.to_string(),
        };
        let s = server.trim();
        if let Some(rest) = s.strip_prefix("unix:") {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(bad(
                    "a Unix socket needs an absolute path, e.g. unix:/run/cronsun/api.sock",
                ));
            }
            return Ok(Endpoint::Unix {
                path: PathBuf::from(path),
            });
        }
        let (tls, rest) = match (s.strip_prefix("https://"), s.strip_prefix("http://")) {
            (Some(rest), _) => (true, rest),
            (None, Some(rest)) => (false, rest),
            (None, None) => {
                return Err(bad(
                    "use https://host:port, http://host:port or unix:/path/to/api.sock",
                ))
            }
        };
        let (authority, base) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(bad("the host is missing"));
        }
        if authority.contains('@') {
            return Err(bad(
                "user names in the URL are not supported; use --token or --token-file",
            ));
        }
        if base.contains(['?', '#']) {
            return Err(bad("a query or fragment is not allowed in the server URL"));
        }
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })
            .ok_or_else(|| bad("expected host:port with a port between 1 and 65535"))?;
        Ok(Endpoint::Tcp {
            host,
            port,
            authority: authority.to_string(),
            base: base.trim_end_matches('/').to_string(),
            tls,
        })
    }

    /// The value of the `Host` header.
    pub(crate) fn host_header(&self) -> &str {
        match self {
            Endpoint::Tcp { authority, .. } => authority,
            Endpoint::Unix { .. } => "localhost",
        }
    }

    /// The path prefix every request path is appended to.
    pub(crate) fn base(&self) -> &str {
        match self {
            Endpoint::Tcp { base, .. } => base,
            Endpoint::Unix { .. } => "",
        }
    }
}

/// Splits `host[:port]` (`[v6]:port` too); the port defaults to 80.
fn split_host_port(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (h, after) = rest.split_once(']')?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':')?),
        };
        (h, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.contains(['[', ']']) {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return None,
            Ok(p) => p,
        },
    };
    Some((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> (String, u16, String) {
        match Endpoint::parse(s) {
            Ok(Endpoint::Tcp {
                host, port, base, ..
            }) => (host, port, base),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn parses_tcp_forms() {
        assert_eq!(
            tcp("http://127.0.0.1:7079"),
            ("127.0.0.1".into(), 7079, String::new())
        );
        assert_eq!(
            tcp("http://localhost:7079/"),
            ("localhost".into(), 7079, String::new())
        );
        assert_eq!(
            tcp("http://h/cronsun/"),
            ("h".into(), 80, "/cronsun".into())
        );
        assert_eq!(
            tcp("http://[::1]:7079"),
            ("::1".into(), 7079, String::new())
        );
    }

    #[test]
    fn parses_unix_forms() {
        for s in ["unix:/run/cronsun/api.sock", "unix:///run/cronsun/api.sock"] {
            assert_eq!(
                Endpoint::parse(s).ok(),
                Some(Endpoint::Unix {
                    path: "/run/cronsun/api.sock".into()
                })
            );
        }
    }

    #[test]
    fn rejects_bad_servers_with_a_hint() {
        for s in [
            "",
            "127.0.0.1:7079",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://u@h:1",
            "unix:rel.sock",
            "ftp://x",
        ] {
            let e = Endpoint::parse(s).expect_err(s).to_string();
            assert!(e.contains("invalid server address"), "{s}: {e}");
        }
        assert!(matches!(
            Endpoint::parse("https://h:7079"),
            Ok(Endpoint::Tcp { tls: true, .. })
        ));
        assert!(matches!(
            Endpoint::parse("https://h"),
            Ok(Endpoint::Tcp { port: 443, .. })
        ));
        assert!(matches!(
            Endpoint::parse("http://h:7079"),
            Ok(Endpoint::Tcp { tls: false, .. })
        ));
    }
}
