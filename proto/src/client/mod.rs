//! The async HTTP/1.1 client of the cronsun API, used by the CLI, the tests
//! and the benchmark.
//!
//! It speaks to `http://host:port` over TCP or to `unix:/path/to/api.sock`
//! over a Unix socket, one connection per request, with an optional Bearer
//! token. Every error says what to do about it: which server could not be
//! reached, or which credential is missing.

mod auth;
mod endpoint;
mod query;
mod sse;
mod tls;

pub use tls::CA_FILE_ENV;

use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, ETAG, HOST, IF_MATCH, USER_AGENT,
};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::api::{
    ApiError, ApplyRequest, ApplyResult, GlobalPause, Health, JobList, JobView, NodeInfo,
    PauseRequest, Preview, PreviewQuery, RunNowRequest, RunNowResponse, RunPage, RunQuery,
};
use crate::job::Job;
use crate::run::RunRecord;
use endpoint::Endpoint;

pub use query::{encode_component, job_path, preview_query_string, run_path, run_query_string};
pub use sse::{RunEvent, RunStream, SseError, SseEvent, SseParser, SseStream};

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a whole request may take (streams: until the response headers).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest response body read into memory.
pub const MAX_BODY: usize = 64 * 1024 * 1024;

/// Everything that can go wrong talking to the API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error.
    #[error("{}", describe_api_error(*status, error))]
    Api { status: StatusCode, error: ApiError },
    /// The server could not be reached.
    #[error("cannot connect to {server}: {}", describe_connect_error(.source))]
    Connect {
        server: String,
        #[source]
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("no answer from {server} within {}s{}", .after.as_secs(), timeout_hint(during))]
    Timeout {
        server: String,
        during: &'static str,
        after: Duration,
    },
    /// The `--server` string is not a usable address.
    #[error("invalid server address {server:?}: {reason}")]
    InvalidServer { server: String, reason: String },
    /// The request could not be built (e.g. the token contains invalid characters).
    #[error("{0}")]
    Request(String),
    /// The server's answer did not follow the protocol.
    #[error("{0}")]
    Protocol(String),
}

impl ClientError {
    /// The API error's status, if the server answered with one.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request field the API named as the cause, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => error.field.as_deref(),
            _ => None,
        }
    }
}

fn describe_api_error(status: StatusCode, e: &ApiError) -> String {
    let message = if e.message.is_empty() {
        &e.error
    } else {
        &e.message
    };
    let hint = match status {
        StatusCode::UNAUTHORIZED => {
            ": run `cronsun login`, or set CRONSUN_TOKEN or --token-file to an API token (the admin token is in <state_dir>/admin.token), \
             or use the local socket as root or a member of group cronsun-admin"
        }
        StatusCode::FORBIDDEN => ": your token's role does not allow this",
        _ => "",
    };
    format!("{message} (HTTP {}){hint}", status.as_u16())
}

fn timeout_hint(during: &str) -> &'static str {
    if during == "connect" {
        " while connecting — is cronsund running and reachable?"
    } else {
        " — is cronsund overloaded or stuck?"
    }
}

fn describe_connect_error(e: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::ConnectionRefused => "connection refused — is cronsund running? (choose another with --server or CRONSUN_URL)".into(),
        ErrorKind::NotFound => "no such socket — is cronsund running? (choose another with --server or CRONSUN_URL)".into(),
        ErrorKind::PermissionDenied => {
            "permission denied — run as root or a member of group cronsun-admin, or use --server http://… with a token".into()
        }
        _ => format!("{e} — is the address right? (--server or CRONSUN_URL)"),
    }
}

/// An API client bound to one server and one credential. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Client {
    endpoint: Endpoint,
    /// For `https://` servers.
    tls: Option<tls::Tls>,
    server: String,
    token: Option<HeaderValue>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl Client {
    /// A client for `server` (`http://host:port` or `unix:/path`), sending
    /// `token` as a Bearer token when given.
    pub fn new(server: &str, token: Option<String>) -> Result<Client, ClientError> {
        let ca_file = std::env::var_os(CA_FILE_ENV)
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        Self::with_ca_file(server, token, ca_file.as_deref())
    }

    /// [`Client::new`] trusting, for `https://`, the certificates in
    /// `ca_file` besides the system's (instead of `CRONSUN_CA_FILE`).
    pub fn with_ca_file(
        server: &str,
        token: Option<String>,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client, ClientError> {
        let endpoint = Endpoint::parse(server)?;
        let token = match token
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        {
            None => None,
            Some(t) => {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    ClientError::Request("the API token contains characters not allowed in an HTTP header; check CRONSUN_TOKEN or --token-file".into())
                })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let tls = match &endpoint {
            Endpoint::Tcp { tls: true, .. } => Some(tls::connector(ca_file)?),
            _ => None,
        };
        Ok(Client {
            endpoint,
            tls,
            server: server.trim().trim_end_matches('/').to_string(),
            token,
            connect_timeout: CONNECT_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
        })
    }

    /// Overrides the connect and request timeouts.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Client {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The server as given (for messages).
    pub fn server(&self) -> &str {
        &self.server
    }

    // ----- generic requests -------------------------------------------------

    /// `GET path`: status, headers and body, whatever the status.
    pub async fn get_raw(&self, path: &str) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        self.exchange(Method::GET, path, None, None).await
    }

    /// `GET path`, decoding the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let r = self.exchange(Method::GET, path, None, None).await?;
        self.decode(r)
    }

    /// `POST path` with a JSON body, decoding the JSON answer.
    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let r = self
            .exchange(Method::POST, path, Some(to_json(body)?), None)
            .await?;
        self.decode(r)
    }

    /// `PUT path` with a JSON body, decoding the JSON answer.
    pub async fn put<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let r = self
            .exchange(Method::PUT, path, Some(to_json(body)?), None)
            .await?;
        self.decode(r)
    }

    /// `PUT path` naming the revision it changes (`If-Match: "<revision>"`).
    pub async fn put_if_match<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        revision: u64,
    ) -> Result<T, ClientError> {
        let r = self
            .exchange(Method::PUT, path, Some(to_json(body)?), Some(revision))
            .await?;
        self.decode(r)
    }

    /// `DELETE path`, optionally only if the resource is still at `if_match`.
    pub async fn delete(&self, path: &str, if_match: Option<u64>) -> Result<(), ClientError> {
        self.exchange(Method::DELETE, path, None, if_match)
            .await
            .map(drop)
    }

    /// `GET path` as a `text/event-stream`; the request timeout covers only
    /// the response headers.
    pub async fn stream(&self, path: &str) -> Result<SseStream, ClientError> {
        let req = self.request(Method::GET, path, None, None, "text/event-stream")?;
        let resp = self
            .within(self.request_timeout, "request", self.send(req))
            .await?;
        let (parts, body) = resp.into_parts();
        if !parts.status.is_success() {
            let bytes = self
                .within(self.request_timeout, "request", self.collect(body))
                .await?;
            return Err(api_error(parts.status, &bytes));
        }
        Ok(SseStream::new(body, self.server.clone()))
    }

    // ----- routes of the API contract ------------------------------------

    /// `GET /healthz`.
    pub async fn health(&self) -> Result<Health, ClientError> {
        self.get("/healthz").await
    }

    /// `GET /api/v1/jobs`.
    pub async fn list_jobs(&self) -> Result<JobList, ClientError> {
        self.get("/api/v1/jobs").await
    }

    /// `GET /api/v1/jobs/{id}`: the job and the revision from its `ETag`.
    pub async fn get_job(&self, id: &str) -> Result<(JobView, u64), ClientError> {
        let r = self
            .exchange(Method::GET, &job_path(id, None), None, None)
            .await?;
        let etag =
            r.1.get(ETAG)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_etag);
        let view: JobView = self.decode(r)?;
        let revision = etag.unwrap_or(view.job.revision);
        Ok((view, revision))
    }

    /// `POST /api/v1/jobs`: creates a job (409 if the id exists).
    pub async fn create_job(&self, job: &Job) -> Result<Job, ClientError> {
        self.post("/api/v1/jobs", job).await
    }

    /// `PUT /api/v1/jobs/{id}` at `revision` (409 if it changed meanwhile).
    pub async fn update_job(&self, job: &Job, revision: u64) -> Result<Job, ClientError> {
        self.put_if_match(&job_path(&job.id, None), job, revision)
            .await
    }

    /// `DELETE /api/v1/jobs/{id}`.
    pub async fn delete_job(&self, id: &str, if_match: Option<u64>) -> Result<(), ClientError> {
        self.delete(&job_path(id, None), if_match).await
    }

    /// `POST /api/v1/jobs/apply`: validates all, then creates or replaces by id.
    pub async fn apply_jobs(&self, req: &ApplyRequest) -> Result<ApplyResult, ClientError> {
        self.post("/api/v1/jobs/apply", req).await
    }

    /// `POST /api/v1/jobs/{id}/pause`.
    pub async fn pause_job(&self, id: &str, reason: Option<String>) -> Result<Job, ClientError> {
        self.post(&job_path(id, Some("pause")), &PauseRequest { reason })
            .await
    }

    /// `POST /api/v1/jobs/{id}/resume`.
    pub async fn resume_job(&self, id: &str) -> Result<Job, ClientError> {
        let r = self
            .exchange(Method::POST, &job_path(id, Some("resume")), None, None)
            .await?;
        self.decode(r)
    }

    /// `POST /api/v1/jobs/{id}/run`: starts a manual run, optionally on `node`.
    pub async fn run_job(
        &self,
        id: &str,
        node: Option<String>,
    ) -> Result<RunNowResponse, ClientError> {
        self.post(&job_path(id, Some("run")), &RunNowRequest { node })
            .await
    }

    /// `GET /api/v1/pause`: the global pause switch.
    pub async fn global_pause(&self) -> Result<GlobalPause, ClientError> {
        self.get("/api/v1/pause").await
    }

    /// `PUT /api/v1/pause`: pauses every scheduled run.
    pub async fn set_global_pause(
        &self,
        reason: Option<String>,
    ) -> Result<GlobalPause, ClientError> {
        self.put("/api/v1/pause", &PauseRequest { reason }).await
    }

    /// `DELETE /api/v1/pause`: lifts the global pause.
    pub async fn clear_global_pause(&self) -> Result<GlobalPause, ClientError> {
        let r = self
            .exchange(Method::DELETE, "/api/v1/pause", None, None)
            .await?;
        self.decode(r)
    }

    /// `GET /api/v1/runs?...`: newest first, output fields empty.
    pub async fn search_runs(&self, q: &RunQuery) -> Result<RunPage, ClientError> {
        self.get(&format!("/api/v1/runs{}", run_query_string(q)))
            .await
    }

    /// `GET /api/v1/runs/{id}`: a record with its output; `id` is
    /// `<run_id>#<attempt>` or a bare run id (latest attempt).
    pub async fn get_run(&self, id: &str) -> Result<RunRecord, ClientError> {
        self.get(&run_path(id, None)).await
    }

    /// `GET /api/v1/runs/{id}/stream`: live output, then the final record.
    pub async fn stream_run(&self, id: &str) -> Result<RunStream, ClientError> {
        self.stream(&run_path(id, Some("stream")))
            .await
            .map(RunStream::new)
    }

    /// `POST /api/v1/runs/{id}/kill`.
    pub async fn kill_run(&self, id: &str) -> Result<(), ClientError> {
        self.exchange(Method::POST, &run_path(id, Some("kill")), None, None)
            .await
            .map(drop)
    }

    /// `GET /api/v1/nodes`.
    pub async fn list_nodes(&self) -> Result<Vec<NodeInfo>, ClientError> {
        self.get("/api/v1/nodes").await
    }

    /// `POST /api/v1/nodes/{id}/drain` (`on`) or `/undrain`: the node's
    /// state afterwards.
    pub async fn drain_node(&self, id: &str, on: bool) -> Result<NodeInfo, ClientError> {
        let action = if on { "drain" } else { "undrain" };
        let path = format!("/api/v1/nodes/{}/{action}", query::encode_component(id));
        self.post(&path, &serde_json::json!({})).await
    }

    /// `GET /api/v1/schedule/preview?...`.
    pub async fn preview(&self, q: &PreviewQuery) -> Result<Preview, ClientError> {
        self.get(&format!(
            "/api/v1/schedule/preview{}",
            preview_query_string(q)
        ))
        .await
    }

    // ----- plumbing -------------------------------------------------------

    /// Sends one request and reads the whole answer; non-2xx becomes [`ClientError::Api`].
    async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<u64>,
    ) -> Result<(StatusCode, HeaderMap, Bytes), ClientError> {
        let req = self.request(method, path, body, if_match, "application/json")?;
        self.within(self.request_timeout, "request", async {
            let resp = self.send(req).await?;
            let (parts, body) = resp.into_parts();
            let bytes = self.collect(body).await?;
            if !parts.status.is_success() {
                return Err(api_error(parts.status, &bytes));
            }
            Ok((parts.status, parts.headers, bytes))
        })
        .await
    }

    fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        if_match: Option<u64>,
        accept: &'static str,
    ) -> Result<Request<Full<Bytes>>, ClientError> {
        let uri = format!("{}{path}", self.endpoint.base());
        let mut b = Request::builder()
            .method(method)
            .uri(&uri)
            .header(HOST, self.endpoint.host_header())
            .header(USER_AGENT, concat!("cronsun/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, accept);
        if let Some(t) = &self.token {
            b = b.header(AUTHORIZATION, t.clone());
        }
        if let Some(rev) = if_match {
            b = b.header(IF_MATCH, format!("\"{rev}\""));
        }
        if body.is_some() {
            b = b.header(CONTENT_TYPE, "application/json");
        }
        b.body(Full::new(body.unwrap_or_default()))
            .map_err(|e| ClientError::Request(format!("cannot build request for {uri:?}: {e}")))
    }

    async fn send(&self, req: Request<Full<Bytes>>) -> Result<Response<Incoming>, ClientError> {
        let mut sender = match &self.endpoint {
            Endpoint::Tcp { host, port, .. } => {
                let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
                let stream = self.connect(connect).await?;
                // Small requests: do not wait for Nagle.
                let _ = stream.set_nodelay(true);
                match &self.tls {
                    None => self.handshake(stream).await?,
                    Some(tls) => {
                        let name =
                            rustls_pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                                ClientError::Request(format!(
                                    "{host:?} is not a TLS server name: {e}"
                                ))
                            })?;
                        let stream = self
                            .connect(tls.0.connect(name, stream))
                            .await
                            .map_err(|e| self.tls_hint(e))?;
                        self.handshake(stream).await?
                    }
                }
            }
            Endpoint::Unix { path } => {
                let stream = self.connect(tokio::net::UnixStream::connect(path)).await?;
                self.handshake(stream).await?
            }
        };
        sender
            .send_request(req)
            .await
            .map_err(|e| ClientError::Protocol(format!("request to {} failed: {e}", self.server)))
    }

    /// A TLS failure, with what to do about an untrusted certificate.
    fn tls_hint(&self, e: ClientError) -> ClientError {
        match e {
            ClientError::Connect { source, .. }
                if source.to_string().contains("certificate") =>
            {
                ClientError::Request(format!(
                    "TLS with {} failed: {source} — a cronsund with a self-signed certificate is trusted with \
                     {CA_FILE_ENV}=/var/lib/cronsun/tls/cert.pem (or --ca-file; its fingerprint is in the daemon's log)",
                    self.server
                ))
            }
            other => other,
        }
    }

    async fn connect<S>(
        &self,
        fut: impl std::future::Future<Output = std::io::Result<S>>,
    ) -> Result<S, ClientError> {
        match tokio::time::timeout(self.connect_timeout, fut).await {
            Err(_) => Err(ClientError::Timeout {
                server: self.server.clone(),
                during: "connect",
                after: self.connect_timeout,
            }),
            Ok(Err(source)) => Err(ClientError::Connect {
                server: self.server.clone(),
                source,
            }),
            Ok(Ok(s)) => Ok(s),
        }
    }

    async fn handshake<IO>(
        &self,
        io: IO,
    ) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, ClientError>
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| {
                ClientError::Protocol(format!("HTTP handshake with {} failed: {e}", self.server))
            })?;
        // The connection task ends when the response body is done or dropped.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    async fn collect(&self, body: Incoming) -> Result<Bytes, ClientError> {
        Limited::new(body, MAX_BODY)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .map_err(|e| {
                ClientError::Protocol(format!(
                    "reading the answer from {} failed: {e}",
                    self.server
                ))
            })
    }

    async fn within<T>(
        &self,
        limit: Duration,
        during: &'static str,
        fut: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
            Err(ClientError::Timeout {
                server: self.server.clone(),
                during,
                after: limit,
            })
        })
    }

    fn decode<T: DeserializeOwned>(
        &self,
        (status, _, body): (StatusCode, HeaderMap, Bytes),
    ) -> Result<T, ClientError> {
        // 204 and empty bodies decode as `null` so `()` and `Option<_>` work.
        let body: &[u8] = if body.is_empty() { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| {
            ClientError::Protocol(format!(
                "unexpected answer from {} (HTTP {}): {e} — is the server a cronsund of the same version?",
                self.server,
                status.as_u16()
            ))
        })
    }
}

fn to_json<B: Serialize + ?Sized>(body: &B) -> Result<Bytes, ClientError> {
    serde_json::to_vec(body)
        .map(Bytes::from)
        .map_err(|e| ClientError::Request(format!("cannot encode the request body: {e}")))
}

/// Turns a non-2xx answer into [`ClientError::Api`]; a body that is not an
/// [`ApiError`] (e.g. from a proxy) is summarised.
fn api_error(status: StatusCode, body: &[u8]) -> ClientError {
    let error = serde_json::from_slice::<ApiError>(body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(body);
        let text: String = text.trim().chars().take(200).collect();
        let reason = status.canonical_reason().unwrap_or("error");
        ApiError {
            error: reason.to_lowercase().replace(' ', "_"),
            message: if text.is_empty() {
                reason.to_string()
            } else {
                format!("{reason}: {text}")
            },
            field: None,
        }
    });
    ClientError::Api { status, error }
}

/// `"12"`, `W/"12"` or `12` → 12.
fn parse_etag(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_prefix("W/").unwrap_or(v);
    v.trim_matches('"').parse().ok()
}

/// Headers callers may want to name without depending on `http` directly.
pub mod headers {
    pub use http::header::{AUTHORIZATION, ETAG, IF_MATCH};
    /// Re-exported for matching on [`super::ClientError::Api`].
    pub use http::StatusCode;
}

#[cfg(test)]
mod tests;
