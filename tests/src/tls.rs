//! A one-request HTTPS client that trusts exactly one certificate (the
//! daemon's self-signed one), for the TLS tests.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};

use crate::http::Response;

/// The DER certificates of a PEM file.
pub fn pem_certs(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("parse PEM certificates")
}

/// `AB:CD:...` SHA-256 of a DER certificate, as cronsund logs it.
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Connects TLS over `tcp`, verifying the server against `trusted` (PEM)
/// for `server_name`.
pub async fn handshake(
    tcp: tokio::net::TcpStream,
    server_name: &str,
    trusted: &[u8],
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(trusted)? {
        roots.add(c).context("add the trusted certificate")?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(server_name.to_string()).context("server name")?;
    connector.connect(name, tcp).await.context("TLS handshake")
}

/// Sends one request over TLS to `addr`, verifying the server against
/// `trusted` (PEM) for `server_name`.
pub fn request(
    addr: SocketAddr,
    server_name: &str,
    trusted: &[u8],
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> anyhow::Result<Response> {
    let mut req = Request::builder()
        .method(method.clone())
        .uri(path)
        .header(http::header::HOST, format!("{server_name}:{}", addr.port()));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if body.is_some() {
        req = req.header(http::header::CONTENT_TYPE, "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let fut = async move {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        let tls = handshake(tcp, server_name, trusted).await?;
        crate::http::exchange(tls, req).await
    };
    let (parts, body) = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), fut).await })
        .context("no TLS answer within 10s")??;
    Ok(Response {
        method,
        path: path.to_string(),
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body.to_vec(),
    })
}
