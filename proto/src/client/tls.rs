//! HTTPS for the client: the Mozilla roots (`webpki-roots`) plus, with
//! [`super::Client::with_ca_cert`], the certificates of a PEM file — e.g. a
//! daemon's self-signed `<state_dir>/tls/cert.pem`.

use std::fmt;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use tokio_rustls::TlsConnector;

use super::ClientError;

/// A TLS connector (cheap to clone).
#[derive(Clone)]
pub(crate) struct Tls(pub(crate) TlsConnector);

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Tls")
    }
}

/// A connector trusting the public roots and the certificates in `extra_pem`.
pub(crate) fn connector(extra_pem: Option<&[u8]>) -> Result<Tls, ClientError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_pem {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ClientError::Request(format!("--ca-cert: not a PEM certificate: {e}")))?;
        if certs.is_empty() {
            return Err(ClientError::Request(
                "--ca-cert: the file holds no PEM certificate".into(),
            ));
        }
        for c in certs {
            roots.add(c).map_err(|e| {
                ClientError::Request(format!("--ca-cert: unusable certificate: {e}"))
            })?;
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
