//! TLS for `https://` servers: the system's trust store plus, optionally, a
//! PEM file of certificates to trust — for cronsund's self-signed
//! certificate, `<state_dir>/tls/cert.pem` (its fingerprint is in the
//! daemon's log at every start). The host name is always checked.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

use super::ClientError;

/// Environment variable naming a PEM file of certificates to trust.
pub const CA_FILE_ENV: &str = "CRONSUN_CA_FILE";

/// The TLS side of a client (opaque in `Debug`).
#[derive(Clone)]
pub(crate) struct Tls(pub(crate) TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// A connector trusting the system's roots and the certificates in `ca_file`.
pub(crate) fn connector(ca_file: Option<&Path>) -> Result<Tls, ClientError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped; a missing store just
    // means only `ca_file` is trusted.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        let bad = |why: String| {
            ClientError::Request(format!(
                "{} ({CA_FILE_ENV} / --ca-file): {why}",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(bad("no certificate in the file".into()));
        }
        for c in certs {
            roots
                .add(c)
                .map_err(|e| bad(format!("certificate not usable: {e}")))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Request(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Tls(TlsConnector::from(Arc::new(config))))
}
