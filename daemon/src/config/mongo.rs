//! The `[mongodb]` section: where run records go when MongoDB is the run
//! store, and the local spool's bound.
//!
//! Guarantees: the URI's password never appears in `Debug` output or logs
//! ([`MongoSection::redacted_uri`]); a server that is not on loopback is
//! refused unless TLS and credentials are configured (DESIGN §5).

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use cronsun_proto::Dur;
use serde::Deserialize;

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSection {
    /// `mongodb://[user:password@]host[:port][,host...]/[?options]` or `mongodb+srv://`.
    pub uri: String,
    #[serde(default = "default_database")]
    pub database: String,
    /// Force TLS on (or off) regardless of the URI's `tls=` option.
    #[serde(default)]
    pub tls: Option<bool>,
    /// CA bundle (PEM) to verify the server with; default: the system roots.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for X.509 or mutual TLS.
    #[serde(default)]
    pub tls_cert_key_file: Option<PathBuf>,
    /// Database the credentials are defined in (the URI's `authSource`).
    #[serde(default)]
    pub auth_source: Option<String>,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: Dur,
    #[serde(default = "default_selection_timeout")]
    pub server_selection_timeout: Dur,
    #[serde(default = "default_pool")]
    pub max_pool_size: u32,
    /// Records shipped per batch.
    #[serde(default = "default_batch")]
    pub batch_size: u32,
    /// The spool sheds past either bound (output first, never failures).
    #[serde(default = "default_spool_bytes")]
    pub spool_max_bytes: u64,
    #[serde(default = "default_spool_records")]
    pub spool_max_records: u64,
}

fn default_database() -> String {
    "cronsun".into()
}
fn default_connect_timeout() -> Dur {
    Dur::secs(5)
}
fn default_selection_timeout() -> Dur {
    Dur::secs(5)
}
fn default_pool() -> u32 {
    10
}
fn default_batch() -> u32 {
    1000
}
fn default_spool_bytes() -> u64 {
    256 << 20
}
fn default_spool_records() -> u64 {
    1_000_000
}

impl fmt::Debug for MongoSection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoSection")
            .field("uri", &self.redacted_uri())
            .field("database", &self.database)
            .field("tls", &self.tls)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("tls_cert_key_file", &self.tls_cert_key_file)
            .field("auth_source", &self.auth_source)
            .field("connect_timeout", &self.connect_timeout)
            .field("server_selection_timeout", &self.server_selection_timeout)
            .field("max_pool_size", &self.max_pool_size)
            .field("batch_size", &self.batch_size)
            .field("spool_max_bytes", &self.spool_max_bytes)
            .field("spool_max_records", &self.spool_max_records)
            .finish()
    }
}

/// The parts of a MongoDB URI the checks need.
struct UriParts<'a> {
    srv: bool,
    user: Option<&'a str>,
    hosts: Vec<&'a str>,
    query: &'a str,
}

fn split_uri(uri: &str) -> Result<UriParts<'_>, String> {
    let (srv, rest) = if let Some(r) = uri.strip_prefix("mongodb+srv://") {
        (true, r)
    } else if let Some(r) = uri.strip_prefix("mongodb://") {
        (false, r)
    } else {
        return Err("must start with mongodb:// or mongodb+srv://".into());
    };
    let (authority, tail) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u.split(':').next().unwrap_or(u)), h),
        None => (None, authority),
    };
    if hosts.is_empty() {
        return Err("names no host".into());
    }
    let query = tail.split_once('?').map_or("", |(_, q)| q);
    Ok(UriParts {
        srv,
        user: user.filter(|u| !u.is_empty()),
        hosts: hosts.split(',').collect(),
        query,
    })
}

fn host_is_loopback(host_port: &str) -> bool {
    let host = if let Some(rest) = host_port.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host_port.rsplit_once(':').map_or(host_port, |(h, _)| h)
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn query_flag(query: &str, names: &[&str]) -> Option<bool> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        names
            .iter()
            .any(|n| k.eq_ignore_ascii_case(n))
            .then(|| v.eq_ignore_ascii_case("true"))
    })
}

impl MongoSection {
    /// The URI with any password replaced by `***`.
    pub fn redacted_uri(&self) -> String {
        let Some((scheme, rest)) = self.uri.split_once("://") else {
            return "<unparsable uri>".into();
        };
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        match rest[..end].rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let user = userinfo.split(':').next().unwrap_or("");
                format!("{scheme}://{user}:***@{hosts}{}", &rest[end..])
            }
            None => self.uri.clone(),
        }
    }

    /// Whether every host named is on loopback.
    pub fn is_loopback(&self) -> bool {
        split_uri(&self.uri)
            .map(|p| !p.srv && p.hosts.iter().all(|h| host_is_loopback(h)))
            .unwrap_or(false)
    }

    /// Checks the section; the error is `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let parts = split_uri(&self.uri).map_err(|m| {
            (
                "mongodb.uri",
                format!("{m} (e.g. \"mongodb://127.0.0.1:27017\")"),
            )
        })?;
        if self.database.is_empty()
            || self
                .database
                .contains(['/', '\\', '.', ' ', '"', '$', '\0'])
        {
            return Err((
                "mongodb.database",
                format!("{:?} is not a valid database name", self.database),
            ));
        }
        if !self.is_loopback() {
            let tls = self
                .tls
                .or_else(|| query_flag(parts.query, &["tls", "ssl"]))
                .unwrap_or(parts.srv);
            if !tls {
                return Err((
                    "mongodb.tls",
                    "the server is not on loopback: set tls = true (or tls=true in the uri); \
                     plaintext is only allowed to 127.0.0.0/8, ::1 and localhost"
                        .into(),
                ));
            }
            let x509 = self.tls_cert_key_file.is_some()
                && query_flag(parts.query, &["authMechanism"]).is_some();
            if parts.user.is_none() && !x509 && self.tls_cert_key_file.is_none() {
                return Err((
                    "mongodb.uri",
                    "the server is not on loopback: authentication is required; put the user \
                     in the uri (mongodb://user:password@host/) or use tls_cert_key_file with \
                     authMechanism=MONGODB-X509"
                        .into(),
                ));
            }
        } else if self.tls == Some(true) && self.tls_ca_file.is_none() {
            // Fine: system roots.
        }
        for (key, f) in [
            ("mongodb.tls_ca_file", &self.tls_ca_file),
            ("mongodb.tls_cert_key_file", &self.tls_cert_key_file),
        ] {
            if let Some(f) = f {
                if let Err(e) = std::fs::File::open(f) {
                    return Err((key, format!("cannot read {}: {e}", f.display())));
                }
            }
        }
        if self.max_pool_size == 0 {
            return Err(("mongodb.max_pool_size", "must be at least 1".into()));
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return Err(("mongodb.batch_size", "must be between 1 and 100000".into()));
        }
        if self.spool_max_records == 0 || self.spool_max_bytes < 4096 {
            return Err((
                "mongodb.spool_max_bytes",
                "the spool bound must allow at least one record (spool_max_records >= 1, \
                 spool_max_bytes >= 4096)"
                    .into(),
            ));
        }
        for (key, d) in [
            ("mongodb.connect_timeout", &self.connect_timeout),
            (
                "mongodb.server_selection_timeout",
                &self.server_selection_timeout,
            ),
        ] {
            if d.0.is_zero() {
                return Err((key, "must be greater than 0".into()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(uri: &str) -> MongoSection {
        toml::from_str(&format!("uri = {uri:?}")).expect("parse")
    }

    #[test]
    fn loopback_needs_nothing_remote_needs_tls_and_auth() {
        assert!(section("mongodb://127.0.0.1:27017").check().is_ok());
        assert!(section("mongodb://localhost").check().is_ok());
        assert!(section("mongodb://[::1]:27017/?x=1").check().is_ok());
        let e = section("mongodb://db.example:27017").check().unwrap_err();
        assert_eq!(e.0, "mongodb.tls");
        let e = section("mongodb://db.example:27017/?tls=true")
            .check()
            .unwrap_err();
        assert_eq!(e.0, "mongodb.uri");
        assert!(section("mongodb://u:p@db.example:27017/?tls=true")
            .check()
            .is_ok());
        assert!(section("mongodb://127.0.0.1,db.example/").check().is_err());
        assert_eq!(section("http://x").check().unwrap_err().0, "mongodb.uri");
    }

    #[test]
    fn tls_files_must_be_readable() {
        let e = section("mongodb://u:p@db.example/?tls=true");
        let e = MongoSection {
            tls_ca_file: Some("/nonexistent/ca.pem".into()),
            ..e
        }
        .check()
        .unwrap_err();
        assert_eq!(e.0, "mongodb.tls_ca_file");
        assert!(e.1.contains("/nonexistent/ca.pem"), "{}", e.1);
    }

    #[test]
    fn password_is_never_shown() {
        let s = section("mongodb://alice:s3cret@db.example:27017/?tls=true");
        assert_eq!(
            s.redacted_uri(),
            "mongodb://alice:***@db.example:27017/?tls=true"
        );
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
