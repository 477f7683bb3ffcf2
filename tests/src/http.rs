//! A small blocking HTTP/1.1 client for the API: one connection per request,
//! every request bounded by a timeout, in plain HTTP or over TLS trusting
//! one PEM file. Independent of the CLI's client so the tests check the
//! wire contract itself.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use bytes::Bytes;
use http::{HeaderMap, Method, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncWrite};

use cronsun_proto::api::ApiError;

/// A complete response.
#[derive(Clone, Debug)]
pub struct Response {
    pub method: Method,
    pub path: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl fmt::Display for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} -> {}: {}",
            self.method,
            self.path,
            self.status,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Response {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// Panics (printing the response) unless the status is `want`.
    #[track_caller]
    pub fn expect_status(self, want: u16) -> Self {
        assert_eq!(self.status, want, "unexpected status: {self}");
        self
    }

    /// The body as `T`; panics with the body when it does not parse.
    #[track_caller]
    pub fn json<T: DeserializeOwned>(&self) -> T {
        match serde_json::from_slice(&self.body) {
            Ok(v) => v,
            Err(e) => panic!(
                "response body is not a {}: {e}\n{self}",
                std::any::type_name::<T>()
            ),
        }
    }

    /// The body as an [`ApiError`]; panics when it is not one.
    #[track_caller]
    pub fn api_error(&self) -> ApiError {
        self.json()
    }
}

/// How a TLS client checks the server: against the certificates of
/// `ca_file` (read at every request, so a daemon restarted with a new
/// certificate is followed), for `server_name`.
#[derive(Clone, Debug)]
pub struct Trust {
    pub server_name: String,
    pub ca_file: PathBuf,
}

/// Blocking client for one daemon's loopback address.
pub struct HttpClient {
    rt: tokio::runtime::Runtime,
    addr: SocketAddr,
    tls: Option<Trust>,
    source: Option<IpAddr>,
}

/// Sends `req` on a connected stream and reads the whole response.
pub async fn exchange<T>(
    io: T,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<(http::response::Parts, Bytes)>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP handshake")?;
    let conn = tokio::spawn(conn);
    let resp = sender
        .send_request(req)
        .await
        .context("sending the request")?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.context("reading the body")?.to_bytes();
    conn.abort();
    Ok((parts, body))
}

async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(ip) = source else {
        return tokio::net::TcpStream::connect(addr).await;
    };
    let socket = match ip {
        IpAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        IpAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime for the test HTTP client");
        HttpClient {
            rt,
            addr,
            tls: None,
            source: None,
        }
    }

    /// Connects from `ip` (another loopback address, e.g. `127.0.0.7`, so
    /// the server sees a client other than the test's other connections).
    pub fn from_source(self, ip: IpAddr) -> Self {
        HttpClient {
            source: Some(ip),
            ..self
        }
    }

    /// A client speaking TLS to `addr`, verifying the server with `trust`.
    pub fn with_tls(addr: SocketAddr, trust: Trust) -> Self {
        HttpClient {
            tls: Some(trust),
            ..HttpClient::new(addr)
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends one request and reads the whole response within `timeout`.
    /// `path` includes the query string. A body is sent as JSON.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> anyhow::Result<Response> {
        let addr = self.addr;
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(http::header::ACCEPT, "application/json");
        // A caller's own Host header (tests of the Host check) replaces ours.
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
            let host = match &self.tls {
                Some(t) => format!("{}:{}", t.server_name, addr.port()),
                None => addr.to_string(),
            };
            req = req.header(http::header::HOST, host);
        }
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header(http::header::CONTENT_TYPE, "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .context("building the request")?;
        let tls = self.tls.clone();
        let source = self.source;
        let fut = async move {
            let stream = connect(addr, source)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            match tls {
                None => exchange(stream, req).await,
                Some(t) => {
                    let pem = std::fs::read(&t.ca_file)
                        .with_context(|| format!("reading {}", t.ca_file.display()))?;
                    let stream = crate::tls::handshake(stream, &t.server_name, &pem).await?;
                    exchange(stream, req).await
                }
            }
        };
        let (parts, body) = self
            .rt
            .block_on(async { tokio::time::timeout(timeout, fut).await })
            .map_err(|_| anyhow!("{method} {path}: no complete response within {timeout:?}"))??;
        Ok(Response {
            method,
            path: path.to_string(),
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: body.to_vec(),
        })
    }
}
