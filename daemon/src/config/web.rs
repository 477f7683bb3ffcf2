//! Checks and derived values of `[web]`: session lifetime, allowed Host
//! names and whether the listener speaks TLS (DESIGN §5).

use cronsun_proto::Dur;

use super::WebSection;

pub(super) fn default_session_ttl() -> Dur {
    Dur::secs(12 * 3600)
}

/// Longest accepted `session_ttl`.
const MAX_SESSION_TTL: Dur = Dur::secs(30 * 86_400);

/// How the TCP listener is served.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP: a loopback address, or `insecure_plaintext = true`.
    Plain,
    /// TLS with the configured certificate and key.
    Tls {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
    /// TLS with the self-signed certificate kept in the state dir.
    SelfSigned,
}

impl WebSection {
    pub(super) fn check(&self) -> Result<(), (&'static str, String)> {
        if self.session_ttl.0.as_secs() < 1 || self.session_ttl > MAX_SESSION_TTL {
            return Err((
                "web.session_ttl",
                format!(
                    "{} is out of range: use 1s to {MAX_SESSION_TTL}",
                    self.session_ttl
                ),
            ));
        }
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(("web.tls_cert", "needs web.tls_key as well".into()));
            }
            (None, Some(_)) => {
                return Err(("web.tls_key", "needs web.tls_cert as well".into()));
            }
            _ => {}
        }
        for (i, h) in self.hosts.iter().enumerate() {
            if h.is_empty() || h.contains(['/', ' ', '@']) {
                return Err((
                    "web.hosts",
                    format!("hosts[{i}] = {h:?} is not a host name (e.g. \"cron.example.com\")"),
                ));
            }
        }
        Ok(())
    }

    /// Plain HTTP on loopback unless a certificate is configured; TLS (a
    /// configured or self-signed certificate) elsewhere unless
    /// `insecure_plaintext`.
    pub fn transport(&self) -> Transport {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            return Transport::Tls {
                cert: cert.clone(),
                key: key.clone(),
            };
        }
        if self.listen.ip().is_loopback() || self.insecure_plaintext {
            Transport::Plain
        } else {
            Transport::SelfSigned
        }
    }

    /// Host names (without port) the Host header may carry: localhost, the
    /// listen address, this machine's hostname and `[web] hosts`.
    pub fn allowed_hosts(&self, hostname: &str) -> Vec<String> {
        let mut out: Vec<String> = ["localhost", "127.0.0.1", "::1", "[::1]"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        out.push(self.listen.ip().to_string());
        if !hostname.is_empty() {
            out.push(hostname.to_string());
        }
        out.extend(self.hosts.iter().cloned());
        for h in &mut out {
            *h = h.to_ascii_lowercase();
        }
        out.sort();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web(listen: &str) -> WebSection {
        WebSection {
            listen: listen.parse().expect("addr"),
            ..WebSection::default()
        }
    }

    #[test]
    fn non_loopback_needs_tls() {
        assert_eq!(web("127.0.0.1:7079").transport(), Transport::Plain);
        assert_eq!(web("0.0.0.0:7079").transport(), Transport::SelfSigned);
        let mut w = web("0.0.0.0:7079");
        w.insecure_plaintext = true;
        assert_eq!(w.transport(), Transport::Plain);
    }

    #[test]
    fn default_hosts_include_listen_and_hostname() {
        let h = web("10.0.0.5:7079").allowed_hosts("Box1");
        assert!(h.contains(&"10.0.0.5".to_string()), "{h:?}");
        assert!(h.contains(&"box1".to_string()), "{h:?}");
        assert!(h.contains(&"localhost".to_string()), "{h:?}");
        let mut w = web("0.0.0.0:7079");
        w.hosts = vec!["Cron.Example.com".into()];
        let h = w.allowed_hosts("box1");
        assert!(
            h.contains(&"cron.example.com".to_string()) && h.contains(&"box1".to_string()),
            "{h:?}"
        );
    }

    #[test]
    fn checks_name_the_key() {
        let mut w = web("127.0.0.1:1");
        w.tls_cert = Some("/x.pem".into());
        assert_eq!(w.check().unwrap_err().0, "web.tls_cert");
        let mut w = web("127.0.0.1:1");
        w.session_ttl = Dur::secs(0);
        assert_eq!(w.check().unwrap_err().0, "web.session_ttl");
    }
}
