//! The connection to etcd: options from `[etcd]` (TLS, user, keep-alive,
//! require-leader) and per-call deadlines.
//!
//! A client-wide timeout would also cut long-lived streams (watches,
//! keep-alives), so every unary call gets its own deadline instead
//! ([`Etcd::call`]); errors name the endpoints and the operation.

use std::future::Future;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::config::EtcdSection;
use crate::store::StoreError;

/// A connected client with the section's deadlines.
#[derive(Clone)]
pub struct Etcd {
    pub client: Client,
    pub request_timeout: Duration,
    endpoints: String,
}

fn read_pem(path: &std::path::Path, key: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {} ([etcd] {key}): {e}", path.display()))
}

impl Etcd {
    /// Builds the client. The connection itself is lazy: an unreachable
    /// cluster is not an error here (calls fail and are retried).
    pub async fn connect(cfg: &EtcdSection) -> Result<Etcd, String> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.dial_timeout.0)
            .with_keep_alive(Duration::from_secs(5), cfg.request_timeout.0)
            .with_keep_alive_while_idle(true)
            // A member cut off from the quorum answers with an error instead
            // of stale data (watches included).
            .with_require_leader(true);
        if let (Some(u), Some(p)) = (&cfg.username, &cfg.password) {
            opts = opts.with_user(u.clone(), p.clone());
        }
        if cfg.tls() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &cfg.tls_ca_file {
                tls = tls.ca_certificate(Certificate::from_pem(read_pem(ca, "tls_ca_file")?));
            }
            if let (Some(c), Some(k)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
                tls = tls.identity(Identity::from_pem(
                    read_pem(c, "tls_cert_file")?,
                    read_pem(k, "tls_key_file")?,
                ));
            }
            opts = opts.with_tls(tls);
        }
        let endpoints = cfg.endpoints.join(",");
        let client = tokio::time::timeout(
            cfg.dial_timeout.0 + cfg.request_timeout.0,
            Client::connect(&cfg.endpoints, Some(opts)),
        )
        .await
        .map_err(|_| {
            format!("etcd {endpoints}: no answer within the dial timeout (authenticating)")
        })?
        .map_err(|e| format!("etcd {endpoints}: {e}"))?;
        Ok(Etcd {
            client,
            request_timeout: cfg.request_timeout.0,
            endpoints,
        })
    }

    /// Runs one unary call with the request deadline; errors name `what`.
    pub async fn call<T, F>(&self, what: &str, f: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, etcd_client::Error>>,
    {
        match tokio::time::timeout(self.request_timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(StoreError::Backend(format!(
                "etcd {}: {what}: {e}",
                self.endpoints
            ))),
            Err(_) => Err(StoreError::Backend(format!(
                "etcd {}: {what}: no answer within {:?} (request_timeout)",
                self.endpoints, self.request_timeout
            ))),
        }
    }

    /// The endpoints, for messages.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }
}
