//! The `[etcd]` section: its presence selects cluster mode (DESIGN §1, §4).
//!
//! Guarantees: the password never appears in `Debug` output or logs; an
//! endpoint that is not on loopback is refused unless it speaks TLS
//! (`https://`) and credentials (user or client certificate) are set
//! (DESIGN §5); the claim timing (`lead`, `claim_delay`, lease TTL) is
//! consistent, so a dead first-ranked node is replaced within a lease.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use cronsun_proto::Dur;
use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdSection {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Every key lives under this prefix (ends with `/`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// CA bundle (PEM) that signed the members' certificates.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and its key (PEM) for mutual TLS.
    #[serde(default)]
    pub tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub tls_key_file: Option<PathBuf>,
    #[serde(default = "default_dial_timeout")]
    pub dial_timeout: Dur,
    /// Deadline of each request (watches and keep-alives excepted).
    #[serde(default = "default_request_timeout")]
    pub request_timeout: Dur,
    /// TTL of this node's lease: a node silent this long is dead.
    #[serde(default = "default_lease_ttl")]
    pub lease_ttl: Dur,
    /// Delay between the claim attempts of successive ranks (DESIGN §3).
    #[serde(default = "default_claim_delay")]
    pub claim_delay: Dur,
    /// How long before an instant the first-ranked node claims it (replaces
    /// `[scheduler] lead` in cluster mode).
    #[serde(default = "default_lead")]
    pub lead: Dur,
    /// Clock error above which a node leaves the claim ranking.
    #[serde(default = "default_max_skew")]
    pub max_skew: Dur,
    /// Require the kernel to report the clock synchronised (NTP) before the
    /// node claims `one` instants. Turn off only on hosts without NTP (tests,
    /// containers that share the host's clock).
    #[serde(default = "default_true")]
    pub require_clock_sync: bool,
    /// How the other nodes reach this node's API when it is the web leader
    /// (`http://host:port`); default: `http://` + `[web] listen`, with the
    /// hostname when it listens on all addresses.
    #[serde(default)]
    pub api_url: Option<String>,
}

fn default_prefix() -> String {
    "/cronsun/".into()
}
fn default_dial_timeout() -> Dur {
    Dur::secs(5)
}
fn default_request_timeout() -> Dur {
    Dur::secs(5)
}
fn default_lease_ttl() -> Dur {
    Dur::secs(10)
}
fn default_claim_delay() -> Dur {
    Dur::millis(500)
}
fn default_lead() -> Dur {
    Dur::millis(50)
}
fn default_max_skew() -> Dur {
    Dur::millis(500)
}
fn default_true() -> bool {
    true
}

impl fmt::Debug for EtcdSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSection")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_file", &self.tls_cert_file)
            .field("tls_key_file", &self.tls_key_file)
            .field("dial_timeout", &self.dial_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("lease_ttl", &self.lease_ttl)
            .field("claim_delay", &self.claim_delay)
            .field("lead", &self.lead)
            .field("max_skew", &self.max_skew)
            .field("require_clock_sync", &self.require_clock_sync)
            .field("api_url", &self.api_url)
            .finish()
    }
}

/// `(scheme is https, host is loopback)` of an endpoint URL.
fn endpoint_parts(url: &str) -> Result<(bool, bool), String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "{url:?} must start with http:// or https:// (e.g. \"http://127.0.0.1:2379\")"
        ));
    };
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = if let Some(r) = authority.strip_prefix('[') {
        r.split(']').next().unwrap_or(r)
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    Ok((tls, loopback))
}

impl EtcdSection {
    /// Whether any endpoint uses TLS.
    pub fn tls(&self) -> bool {
        self.endpoints.iter().any(|e| e.starts_with("https://"))
    }

    /// The lease keep-alive period: a third of the TTL.
    pub fn keepalive_interval(&self) -> Duration {
        self.lease_ttl.0 / 3
    }

    /// Checks the section; the error is `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.endpoints.is_empty() {
            return Err((
                "etcd.endpoints",
                "must name at least one member (e.g. [\"http://127.0.0.1:2379\"])".into(),
            ));
        }
        let mut tls_seen = None;
        for e in &self.endpoints {
            let (tls, loopback) = endpoint_parts(e).map_err(|m| ("etcd.endpoints", m))?;
            if *tls_seen.get_or_insert(tls) != tls {
                return Err((
                    "etcd.endpoints",
                    "mixes http:// and https:// members; use one scheme for all".into(),
                ));
            }
            if !loopback && !tls {
                return Err((
                    "etcd.endpoints",
                    format!(
                        "{e:?} is not on loopback: use https:// (with tls_ca_file) — plaintext \
                         is only allowed to 127.0.0.0/8, ::1 and localhost"
                    ),
                ));
            }
            if !loopback && self.username.is_none() && self.tls_cert_file.is_none() {
                return Err((
                    "etcd.username",
                    format!(
                        "{e:?} is not on loopback: authentication is required; set username \
                         and password, or tls_cert_file and tls_key_file"
                    ),
                ));
            }
        }
        if !(self.prefix.starts_with('/') && self.prefix.ends_with('/'))
            || self.prefix.contains(char::is_whitespace)
        {
            return Err((
                "etcd.prefix",
                format!(
                    "{:?} must start and end with \"/\" and contain no spaces (e.g. \"/cronsun/\")",
                    self.prefix
                ),
            ));
        }
        match (&self.username, &self.password) {
            (Some(u), Some(_)) if u.is_empty() => {
                return Err(("etcd.username", "must not be empty".into()))
            }
            (Some(_), None) => {
                return Err((
                    "etcd.password",
                    "username is set but password is not".into(),
                ))
            }
            (None, Some(_)) => {
                return Err((
                    "etcd.username",
                    "password is set but username is not".into(),
                ))
            }
            _ => {}
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err((
                "etcd.tls_cert_file",
                "tls_cert_file and tls_key_file go together".into(),
            ));
        }
        let tls_files = self.tls_ca_file.is_some() || self.tls_cert_file.is_some();
        if tls_files && !self.tls() {
            return Err((
                "etcd.endpoints",
                "TLS files are set but the endpoints use http://; use https://".into(),
            ));
        }
        for (key, d) in [
            ("etcd.dial_timeout", &self.dial_timeout),
            ("etcd.request_timeout", &self.request_timeout),
            ("etcd.claim_delay", &self.claim_delay),
            ("etcd.max_skew", &self.max_skew),
        ] {
            if d.0.is_zero() {
                return Err((key, "must be greater than 0".into()));
            }
        }
        let ttl = self.lease_ttl.0;
        if ttl < Duration::from_secs(2) || ttl > Duration::from_secs(300) {
            return Err((
                "etcd.lease_ttl",
                "must be between 2s and 5m (etcd leases have second granularity)".into(),
            ));
        }
        if ttl.subsec_nanos() != 0 {
            return Err(("etcd.lease_ttl", "must be a whole number of seconds".into()));
        }
        if let Some(u) = &self.api_url {
            endpoint_parts(u).map_err(|m| ("etcd.api_url", m))?;
        }
        if self.lead.0 > Duration::from_secs(5) {
            return Err(("etcd.lead", "must be at most 5s".into()));
        }
        if self.claim_delay.0 > ttl {
            return Err((
                "etcd.claim_delay",
                "must not exceed lease_ttl (a dead node's instants must be taken over before \
                 its lease could even expire)"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(extra: &str) -> EtcdSection {
        toml::from_str(&format!("endpoints = [\"http://127.0.0.1:2379\"]\n{extra}")).expect("parse")
    }

    #[test]
    fn defaults_are_valid() {
        let s = section("");
        assert!(s.check().is_ok());
        assert_eq!(s.prefix, "/cronsun/");
        assert_eq!(s.lease_ttl.0, Duration::from_secs(10));
    }

    #[test]
    fn remote_needs_tls_and_auth() {
        let s: EtcdSection = toml::from_str("endpoints = [\"http://10.0.0.1:2379\"]").expect("p");
        assert_eq!(s.check().unwrap_err().0, "etcd.endpoints");
        let s: EtcdSection = toml::from_str("endpoints = [\"https://10.0.0.1:2379\"]").expect("p");
        assert_eq!(s.check().unwrap_err().0, "etcd.username");
        let s: EtcdSection = toml::from_str(
            "endpoints = [\"https://10.0.0.1:2379\"]\nusername = \"n\"\npassword = \"p\"",
        )
        .expect("p");
        assert!(s.check().is_ok());
        let s: EtcdSection = toml::from_str("endpoints = [\"ftp://x\"]").expect("p");
        assert_eq!(s.check().unwrap_err().0, "etcd.endpoints");
    }

    #[test]
    fn bad_values_name_their_key() {
        for (extra, key) in [
            ("prefix = \"cronsun\"", "etcd.prefix"),
            ("username = \"u\"", "etcd.password"),
            ("password = \"p\"", "etcd.username"),
            ("lease_ttl = \"1s\"", "etcd.lease_ttl"),
            ("lease_ttl = \"2500ms\"", "etcd.lease_ttl"),
            ("claim_delay = \"0s\"", "etcd.claim_delay"),
            ("claim_delay = \"20s\"", "etcd.claim_delay"),
            ("lead = \"6s\"", "etcd.lead"),
            ("tls_ca_file = \"/ca.pem\"", "etcd.endpoints"),
            ("tls_cert_file = \"/c.pem\"", "etcd.tls_cert_file"),
            ("api_url = \"node1:7079\"", "etcd.api_url"),
        ] {
            assert_eq!(section(extra).check().unwrap_err().0, key, "{extra}");
        }
        let e: EtcdSection = toml::from_str("endpoints = []").expect("p");
        assert_eq!(e.check().unwrap_err().0, "etcd.endpoints");
    }

    #[test]
    fn password_is_never_shown() {
        let s = section("username = \"n\"\npassword = \"s3cret\"");
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
