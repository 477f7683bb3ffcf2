//! The client against a tiny local hyper server, over TCP and a Unix socket.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use super::*;

const TOKEN: &str = "s3cret";

/// What the test server saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: String,
    authorization: Option<String>,
    if_match: Option<String>,
    body: String,
}

type Log = Arc<Mutex<Vec<Seen>>>;
type Body = BoxBody<Bytes, Infallible>;

fn json(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())).boxed());
    *r.status_mut() = status;
    r
}

fn job_json() -> serde_json::Value {
    serde_json::json!({
        "id": "backup", "command": ["/bin/true"], "rules": [{"schedule": "0 3 * * *", "timezone": "UTC"}],
        "revision": 7
    })
}

fn run_json() -> serde_json::Value {
    serde_json::json!({
        "run_id": "backup~manual~r1", "attempt": 1, "job_id": "backup", "job_revision": 7, "job_name": "backup",
        "node_id": "n1", "hostname": "h1", "trigger": "manual", "scheduled_at": "2026-03-28T00:00:00Z",
        "started_at": "2026-03-28T00:00:00Z", "finished_at": "2026-03-28T00:00:01Z", "duration_ms": 1000,
        "status": "failed", "exit_code": 3, "signal": null, "argv": ["/bin/false"], "run_as": "nobody",
        "env_keys": [], "output_head": "", "output_tail": "", "output_bytes": 0, "truncated": false,
        "peak_memory": null, "cpu_ms": null, "io_bytes": null, "oom_kills": null, "peak_pids": null,
        "fence": null, "seq": 3
    })
}

/// The event stream sent in awkward pieces: split inside a field name, a
/// `\r\n` and a multi-byte character.
fn stream_body() -> Body {
    let end = format!("event: end\r\ndata: {}\r\n\r\n", run_json());
    let text = format!(": hi\r\nevent: output\r\ndata: \"hällo\\n\"\r\n\r\nevent: output\r\ndata: \"world\"\r\n\r\n{end}");
    let bytes = text.into_bytes();
    let (mut tx, body) = http_body_util::channel::Channel::<Bytes, Infallible>::new(4);
    tokio::spawn(async move {
        for piece in bytes.chunks(5) {
            if tx
                .send(Frame::data(Bytes::copy_from_slice(piece)))
                .await
                .is_err()
            {
                return;
            }
            tokio::task::yield_now().await;
        }
    });
    body.boxed()
}

async fn handle(req: Request<Incoming>, log: Log) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let header = |n: http::header::HeaderName| {
        parts
            .headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(String::from)
    };
    let seen = Seen {
        method: parts.method.clone(),
        uri: parts.uri.to_string(),
        authorization: header(AUTHORIZATION),
        if_match: header(IF_MATCH),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let authorized = seen.authorization.as_deref() == Some(&format!("Bearer {TOKEN}"));
    log.lock().expect("log").push(seen);
    if parts.uri.path() == "/healthz" {
        return Ok(json(
            StatusCode::OK,
            serde_json::json!({"status": "ok", "version": "0.1.0"}),
        ));
    }
    if !authorized {
        return Ok(json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"error": "unauthorized", "message": "missing or invalid token"}),
        ));
    }
    let resp = match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/api/v1/jobs") => json(StatusCode::OK, serde_json::json!({"jobs": []})),
        ("GET", "/api/v1/jobs/backup") => {
            let mut r = json(
                StatusCode::OK,
                serde_json::json!({"job": job_json(), "state": {"next_run": null, "last_run": null, "running": 0}}),
            );
            r.headers_mut()
                .insert(ETAG, HeaderValue::from_static("\"9\""));
            r
        }
        ("PUT", "/api/v1/jobs/backup") => json(StatusCode::OK, job_json()),
        ("DELETE", "/api/v1/jobs/backup") => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Full::new(Bytes::new()).boxed())
            .unwrap_or_default(),
        ("POST", "/api/v1/jobs/apply") => json(
            StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({"error": "bad_request", "message": "no such zone \"Mars/Olympus\"", "field": "jobs[1].rules[0].timezone"}),
        ),
        ("POST", "/api/v1/runs/backup~manual~r1%231/kill") => {
            json(StatusCode::ACCEPTED, serde_json::json!({}))
        }
        ("GET", "/api/v1/runs/backup~manual~r1%231/stream") => Response::new(stream_body()),
        ("GET", "/api/v1/runs") => json(
            StatusCode::OK,
            serde_json::json!({"runs": [run_json()], "next_cursor": null}),
        ),
        ("GET", "/api/v1/broken") => Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Full::new(Bytes::from("<html>upstream down</html>")).boxed())
            .unwrap_or_default(),
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found", "message": "no such thing"}),
        ),
    };
    Ok(resp)
}

fn serve_conn<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: IO, log: Log) {
    tokio::spawn(async move {
        let svc = service_fn(move |req| handle(req, log.clone()));
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), svc)
            .await;
    });
}

async fn tcp_server() -> (String, Log) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            serve_conn(s, l.clone());
        }
    });
    (format!("http://{addr}"), log)
}

async fn unix_server(dir: &std::path::Path) -> (String, Log) {
    let path = dir.join("api.sock");
    let listener = tokio::net::UnixListener::bind(&path).expect("bind unix");
    let log = Log::default();
    let l = log.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            serve_conn(s, l.clone());
        }
    });
    (format!("unix:{}", path.display()), log)
}

async fn exercise(server: &str, log: &Log) {
    let c = Client::new(server, Some(TOKEN.into())).expect("client");
    assert_eq!(c.health().await.expect("health").status, "ok");
    assert!(c.list_jobs().await.expect("jobs").jobs.is_empty());
    assert_eq!(
        log.lock()
            .expect("log")
            .last()
            .and_then(|s| s.authorization.clone())
            .as_deref(),
        Some("Bearer s3cret")
    );

    let (view, rev) = c.get_job("backup").await.expect("job");
    assert_eq!((view.job.id.as_str(), rev), ("backup", 9));
    c.update_job(&view.job, rev).await.expect("update");
    let put = log.lock().expect("log").last().cloned().expect("seen");
    assert_eq!(
        (put.method, put.if_match.as_deref()),
        (Method::PUT, Some("\"9\""))
    );
    assert!(put.body.contains("\"backup\""), "{}", put.body);
    c.delete_job("backup", None).await.expect("delete");

    let err = c.get_job("nope").await.expect_err("404");
    assert_eq!(err.status(), Some(StatusCode::NOT_FOUND));
    assert_eq!(err.to_string(), "no such thing (HTTP 404)");

    let err = c
        .apply_jobs(&ApplyRequest { jobs: vec![] })
        .await
        .expect_err("422");
    assert_eq!(err.field(), Some("jobs[1].rules[0].timezone"));
    assert!(err.to_string().contains("Mars/Olympus"), "{err}");

    let page = c
        .search_runs(&RunQuery {
            job: Some("backup".into()),
            limit: Some(5),
            ..RunQuery::default()
        })
        .await
        .expect("runs");
    assert_eq!(page.runs.len(), 1);
    assert_eq!(
        log.lock()
            .expect("log")
            .last()
            .map(|s| s.uri.clone())
            .as_deref(),
        Some("/api/v1/runs?job=backup&limit=5")
    );

    c.kill_run("backup~manual~r1#1").await.expect("kill");

    let mut s = c.stream_run("backup~manual~r1#1").await.expect("stream");
    let mut output = String::new();
    let mut end = None;
    while let Some(ev) = s.next().await {
        match ev.expect("event") {
            RunEvent::Output(t) => output.push_str(&t),
            RunEvent::End(r) => end = Some(r),
        }
    }
    assert_eq!(output, "hällo\nworld");
    assert_eq!(end.and_then(|r| r.exit_code), Some(3));

    let err = c
        .get::<serde_json::Value>("/api/v1/broken")
        .await
        .expect_err("502");
    assert!(
        err.to_string()
            .contains("Bad Gateway: <html>upstream down</html> (HTTP 502)"),
        "{err}"
    );
}

#[tokio::test]
async fn talks_to_a_tcp_server() {
    let (server, log) = tcp_server().await;
    exercise(&server, &log).await;
}

#[tokio::test]
async fn talks_to_a_unix_socket_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, log) = unix_server(dir.path()).await;
    exercise(&server, &log).await;
}

#[tokio::test]
async fn missing_token_gets_a_helpful_401() {
    let (server, log) = tcp_server().await;
    let c = Client::new(&server, None).expect("client");
    let err = c.list_jobs().await.expect_err("401");
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let msg = err.to_string();
    assert!(
        msg.contains("missing or invalid token")
            && msg.contains("CRONSUN_TOKEN")
            && msg.contains("--token-file"),
        "{msg}"
    );
    assert_eq!(
        log.lock()
            .expect("log")
            .last()
            .and_then(|s| s.authorization.clone()),
        None
    );
}

#[tokio::test]
async fn connection_refused_names_the_server() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let server = format!("http://{addr}");
    let err = Client::new(&server, None)
        .expect("client")
        .health()
        .await
        .expect_err("refused");
    assert_eq!(err.to_string(), format!("cannot connect to {server}: connection refused — is cronsund running? (choose another with --server or CRONSUN_URL)"));

    let dir = tempfile::tempdir().expect("tempdir");
    let sock = format!("unix:{}/none.sock", dir.path().display());
    let err = Client::new(&sock, None)
        .expect("client")
        .health()
        .await
        .expect_err("missing");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot connect to {sock}: no such socket")),
        "{err}"
    );
}

#[tokio::test]
async fn slow_servers_time_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    // Accepts but never answers.
    let _keep = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let c = Client::new(&format!("http://{addr}"), None)
        .expect("client")
        .with_timeouts(Duration::from_secs(1), Duration::from_millis(200));
    let err = c.health().await.expect_err("timeout");
    assert!(
        matches!(
            err,
            ClientError::Timeout {
                during: "request",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn tokens_must_fit_a_header() {
    let err = Client::new("http://127.0.0.1:1", Some("bad\ntoken".into())).expect_err("newline");
    assert!(err.to_string().contains("CRONSUN_TOKEN"), "{err}");
    assert!(Client::new("http://127.0.0.1:1", Some("  ".into())).is_ok());
}

#[test]
fn etags() {
    assert_eq!(parse_etag("\"12\""), Some(12));
    assert_eq!(parse_etag("W/\"3\""), Some(3));
    assert_eq!(parse_etag("4"), Some(4));
    assert_eq!(parse_etag("\"x\""), None);
}
