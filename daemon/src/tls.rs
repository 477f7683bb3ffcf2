//! TLS for the HTTP listener (DESIGN §5): a configured certificate, or a
//! self-signed one created at first start in `<state_dir>/tls/` (key mode
//! 0600) whose SHA-256 fingerprint is logged at every start, as Cockpit
//! does. rustls with the `ring` provider; connections are served by hyper
//! (HTTP/1.1) with the same router as plain HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::ConnectInfo;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

/// Where the self-signed certificate lives, under the state dir.
pub const SELF_SIGNED_DIR: &str = "tls";

/// A ready TLS configuration and the certificate's fingerprint.
pub struct Tls {
    pub acceptor: TlsAcceptor,
    /// `AB:CD:...` SHA-256 of the leaf certificate (DER).
    pub fingerprint: String,
    pub cert_path: PathBuf,
}

/// `AB:CD:...` SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    crate::coord::pin::Fingerprint::of(der).to_string()
}

/// Loads the configured certificate chain and key.
pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Tls> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("cannot read web.tls_cert {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("web.tls_cert {} is not a PEM certificate", cert.display()))?;
    let Some(leaf) = certs.first() else {
        anyhow::bail!("web.tls_cert {} holds no certificate", cert.display());
    };
    let fingerprint = fingerprint(leaf);
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("web.tls_key {} is not a PEM private key", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .context("web.tls_cert and web.tls_key do not form a usable pair")?;
    Ok(Tls {
        acceptor: TlsAcceptor::from(Arc::new(config)),
        fingerprint,
        cert_path: cert.to_path_buf(),
    })
}

/// The self-signed certificate in the state dir, created when missing for
/// `names` (host names and addresses); returns it loaded and whether it was
/// created now.
pub fn self_signed(state_dir: &Path, names: &[String]) -> anyhow::Result<(Tls, bool)> {
    let dir = state_dir.join(SELF_SIGNED_DIR);
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let created = !cert.exists() || !key.exists();
    if created {
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ck = rcgen::generate_simple_self_signed(names.to_vec())
            .context("cannot create a self-signed certificate")?;
        write_file(&key, ck.key_pair.serialize_pem().as_bytes(), 0o600)?;
        write_file(&cert, ck.cert.pem().as_bytes(), 0o644)?;
    }
    Ok((load(&cert, &key)?, created))
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    crate::node::replace_file(path, data, mode)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Serves `app` over TLS until `stop`; connections still open then are closed.
pub async fn serve(
    l: TcpListener,
    app: axum::Router,
    acceptor: TlsAcceptor,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        let (tcp, addr) = tokio::select! {
            r = l.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("TLS listener: accept failed: {e}");
                    continue;
                }
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        // Reap finished connections so the set stays small.
        while conns.try_join_next().is_some() {}
        conns.spawn(connection(tcp, addr, app.clone(), acceptor.clone()));
    }
    conns.shutdown().await;
}

async fn connection(
    tcp: tokio::net::TcpStream,
    addr: SocketAddr,
    app: axum::Router,
    acceptor: TlsAcceptor,
) {
    let tls = match acceptor.accept(tcp).await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(peer = %addr, "TLS handshake failed: {e}");
            return;
        }
    };
    let svc =
        hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(ConnectInfo(addr));
            app.clone().oneshot(req.map(axum::body::Body::new))
        });
    let io = hyper_util::rt::TokioIo::new(tls);
    if let Err(e) = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades()
        .await
    {
        tracing::debug!(peer = %addr, "TLS connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let names = vec!["localhost".to_string()];
        let (a, created) = self_signed(dir.path(), &names).expect("create");
        assert!(created);
        let (b, again) = self_signed(dir.path(), &names).expect("load");
        assert!(!again);
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.fingerprint.len(), 32 * 3 - 1);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("tls/key.pem"))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.pem");
        std::fs::write(&p, "not pem").expect("write");
        let e = load(&p, &p).err().expect("refused").to_string();
        assert!(e.contains("web.tls_"), "{e}");
    }
}
