//! TLS to a peer node with its certificate pinned (DESIGN §4, §5).
//!
//! Every node publishes the SHA-256 fingerprint of the certificate its
//! listener serves (in its `node/` record and, for the web leader, in the
//! `leader` key). A node connecting to a peer accepts exactly that
//! certificate: no trust store and no host name are consulted, so a
//! self-signed certificate works, and so does one signed by an operator's
//! CA (its fingerprint is as exact). The handshake signature is still
//! checked against the pinned certificate's key, so a server that merely
//! copied the certificate cannot pass.
//!
//! Guarantees: a certificate whose fingerprint differs fails the handshake
//! with [`Mismatch`] (both fingerprints named); nothing here ever falls back
//! to plain HTTP or to an unverified connection.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use sha2::{Digest as _, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A SHA-256 certificate fingerprint.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of a DER certificate.
    pub fn of(der: &[u8]) -> Fingerprint {
        Fingerprint(Sha256::digest(der).into())
    }

    /// Constant-time comparison.
    fn matches(&self, other: &Fingerprint) -> bool {
        crate::api::auth::crypto::same(&self.0, &other.0)
    }
}

/// `AB:CD:…`, as `crate::tls::fingerprint` logs it.
impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// 64 hex digits, in either case, with or without `:` between bytes.
impl FromStr for Fingerprint {
    type Err = String;

    fn from_str(s: &str) -> Result<Fingerprint, String> {
        let hex: String = s.chars().filter(|c| *c != ':').collect();
        let mut out = [0u8; 32];
        hex::decode_to_slice(&hex, &mut out).map_err(|_| {
            format!("{s:?} is not a SHA-256 fingerprint (32 hex bytes, e.g. \"AB:CD:…\")")
        })?;
        Ok(Fingerprint(out))
    }
}

/// The peer presented another certificate than the one it published.
#[derive(Clone, Debug, thiserror::Error)]
#[error("certificate fingerprint mismatch: it presented {seen}, its record publishes {want}")]
pub struct Mismatch {
    pub want: Fingerprint,
    pub seen: Fingerprint,
}

/// Accepts exactly the certificate with the pinned fingerprint.
#[derive(Debug)]
struct PinnedVerifier {
    want: Fingerprint,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let seen = Fingerprint::of(end_entity);
        if seen.matches(&self.want) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(Mismatch {
                want: self.want,
                seen,
            })),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A TLS client configuration that trusts only `want`.
pub fn client_config(want: Fingerprint) -> rustls::ClientConfig {
    let provider = rustls::crypto::ring::default_provider();
    let algs = provider.signature_verification_algorithms;
    // The ring provider supports every safe protocol version, so the
    // builder cannot fail here.
    rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| unreachable!("ring supports TLS 1.2 and 1.3"))
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier { want, algs }))
        .with_no_client_auth()
}

/// The [`Mismatch`] behind an error, if a pin failed somewhere in its chain.
pub fn mismatch_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Mismatch> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(m) = e.downcast_ref::<Mismatch>() {
            return Some(m);
        }
        if let Some(io) = e.downcast_ref::<io::Error>() {
            if let Some(m) = io.get_ref().and_then(|i| mismatch_in(i)) {
                return Some(m);
            }
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(o))) =
            e.downcast_ref::<rustls::Error>()
        {
            if let Some(m) = o.0.downcast_ref::<Mismatch>() {
                return Some(m);
            }
        }
        cur = e.source();
    }
    None
}

/// The connector of hyper-util's pooled client: TCP, then TLS pinned to one
/// fingerprint (a client is built per pin, so pooled connections never
/// outlive the pin they were verified against).
#[derive(Clone)]
pub struct PinnedConnector {
    tcp: HttpConnector,
    tls: TlsConnector,
}

impl PinnedConnector {
    pub fn new(want: Fingerprint, connect_timeout: std::time::Duration) -> PinnedConnector {
        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_connect_timeout(Some(connect_timeout));
        tcp.set_nodelay(true);
        PinnedConnector {
            tcp,
            tls: TlsConnector::from(Arc::new(client_config(want))),
        }
    }
}

/// The name sent in the handshake (SNI for a DNS name; unchecked).
fn server_name(uri: &Uri) -> io::Result<ServerName<'static>> {
    let host = uri.host().unwrap_or_default();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    ServerName::try_from(bare.to_string())
        .map_err(|e| io::Error::other(format!("{uri} names no usable host: {e}")))
}

impl tower::Service<Uri> for PinnedConnector {
    type Response = PinnedStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<PinnedStream>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.tcp.poll_ready(cx).map_err(io::Error::other)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let mut tcp = self.tcp.clone();
        let tls = self.tls.clone();
        Box::pin(async move {
            if uri.scheme_str() != Some("https") {
                return Err(io::Error::other(format!(
                    "{uri}: a pinned connection needs an https:// URL"
                )));
            }
            let name = server_name(&uri)?;
            let stream = tcp.call(uri).await.map_err(io::Error::other)?;
            let tls =
                tls.connect(name, stream.into_inner()).await.map_err(|e| {
                    match mismatch_in(&e) {
                        Some(m) => io::Error::other(m.clone()),
                        None => io::Error::other(format!("TLS handshake failed: {e}")),
                    }
                })?;
            Ok(PinnedStream(TokioIo::new(tls)))
        })
    }
}

/// A pinned TLS connection, as hyper reads and writes it.
pub struct PinnedStream(TokioIo<TlsStream<TcpStream>>);

impl Connection for PinnedStream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for PinnedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for PinnedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    struct Made {
        der: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    }

    fn cert() -> Made {
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("rcgen");
        Made {
            der: ck.cert.der().clone(),
            key: PrivateKeyDer::try_from(ck.key_pair.serialize_der()).expect("key"),
        }
    }

    /// Serves one TLS connection presenting `chain` signed with `key` (which
    /// need not belong to it: an impostor); echoes one line.
    async fn server(
        chain: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> std::net::SocketAddr {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing = provider
            .key_provider
            .load_private_key(key)
            .expect("signing key");
        let certified = Arc::new(rustls::sign::CertifiedKey::new(vec![chain], signing));
        #[derive(Debug)]
        struct One(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for One {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(One(certified)));
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            let Ok((tcp, _)) = l.accept().await else {
                return;
            };
            if let Ok(mut tls) = acceptor.accept(tcp).await {
                let mut buf = [0u8; 5];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(&buf).await;
                    let _ = tls.shutdown().await;
                }
            }
        });
        addr
    }

    /// Connects pinned to `want` and exchanges "hello".
    async fn exchange(addr: std::net::SocketAddr, want: Fingerprint) -> io::Result<()> {
        let mut c = PinnedConnector::new(want, std::time::Duration::from_secs(3));
        let uri: Uri = format!("https://{addr}/").parse().expect("uri");
        let s = tower::Service::call(&mut c, uri).await?;
        let mut io = s.0.into_inner();
        io.write_all(b"hello").await?;
        let mut back = [0u8; 5];
        io.read_exact(&mut back).await?;
        assert_eq!(&back, b"hello");
        Ok(())
    }

    #[tokio::test]
    async fn the_pinned_certificate_is_accepted() {
        let a = cert();
        let want = Fingerprint::of(&a.der);
        let addr = server(a.der, a.key).await;
        exchange(addr, want).await.expect("pinned handshake");
    }

    #[tokio::test]
    async fn another_certificate_is_refused_naming_both_fingerprints() {
        let (a, b) = (cert(), cert());
        let want = Fingerprint::of(&a.der);
        let seen = Fingerprint::of(&b.der);
        let addr = server(b.der, b.key).await;
        let e = exchange(addr, want).await.expect_err("refused");
        let m = mismatch_in(&e).expect("a mismatch");
        assert_eq!((m.want, m.seen), (want, seen));
        let text = e.to_string();
        assert!(
            text.contains("certificate fingerprint mismatch")
                && text.contains(&want.to_string())
                && text.contains(&seen.to_string()),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_copied_certificate_without_its_key_is_refused() {
        let (a, b) = (cert(), cert());
        let want = Fingerprint::of(&a.der);
        // Presents A's certificate but signs the handshake with B's key.
        let addr = server(a.der, b.key).await;
        let e = exchange(addr, want).await.expect_err("refused");
        assert!(mismatch_in(&e).is_none(), "not a fingerprint problem: {e}");
        assert!(e.to_string().contains("TLS handshake failed"), "{e}");
    }

    #[tokio::test]
    async fn plain_http_urls_are_refused() {
        let a = cert();
        let mut c =
            PinnedConnector::new(Fingerprint::of(&a.der), std::time::Duration::from_secs(1));
        let uri: Uri = "http://127.0.0.1:9/".parse().expect("uri");
        let e = tower::Service::call(&mut c, uri)
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("https://"), "{e}");
    }

    #[test]
    fn fingerprints_parse_as_logged_and_in_other_spellings() {
        let a = cert();
        let fp = Fingerprint::of(&a.der);
        let logged = crate::tls::fingerprint(&a.der);
        assert_eq!(fp.to_string(), logged);
        assert_eq!(logged.parse::<Fingerprint>(), Ok(fp));
        let bare = logged.replace(':', "").to_ascii_lowercase();
        assert_eq!(bare.parse::<Fingerprint>(), Ok(fp));
        for bad in [
            "",
            "AB:CD",
            &format!("{logged}:00"),
            &format!("G{}", &logged[1..]),
        ] {
            let e = bad.parse::<Fingerprint>().expect_err(bad);
            assert!(e.contains("SHA-256 fingerprint"), "{e}");
        }
    }
}
