//! Reverse proxy to the web leader (DESIGN §1): in cluster mode a node that
//! does not lead forwards every HTTP request (UI and API) to the leader,
//! unchanged — method, path, query, headers (`Host`, `Cookie`,
//! `Authorization`) and body both ways, streamed — so browsers and tokens
//! work through any node. When no leader is known or it cannot be reached,
//! it answers 503 naming the leader. `/healthz` and `/metrics` (they
//! describe this node) and the local Unix socket are always served here.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::api::AppState;

/// How long connecting to the leader may take before answering 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The HTTP client nodes use to reach the leader.
pub type LeaderClient = Client<HttpConnector, Body>;

fn client() -> &'static LeaderClient {
    static CLIENT: std::sync::OnceLock<LeaderClient> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(http)
    })
}

/// Header naming the node that served a response (through any proxy).
pub const SERVED_BY: &str = "x-cronsun-served-by";

/// How long the leader may take to start answering a proxied request (its
/// body, e.g. a live output stream, may then take as long as it needs).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Header set on proxied requests: a leader never forwards them again
/// (two nodes that each think the other leads answer 503, not a loop).
const FORWARDED_BY: &str = "x-cronsun-forwarded-by";

fn unavailable(msg: String) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(serde_json::json!({ "error": msg })),
    )
        .into_response()
}

/// Middleware around the whole router.
pub async fn to_leader(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let Some(cluster) = &s.cluster else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    // The local socket is this host's admin door (peer credentials cannot
    // travel to another node): it is always served here.
    let local_socket = req
        .extensions()
        .get::<ConnectInfo<crate::api::PeerCred>>()
        .is_some();
    if local_socket || path == "/healthz" || path == "/metrics" || cluster.is_leader() {
        let mut resp = next.run(req).await;
        if let Ok(v) = HeaderValue::from_str(&s.node.id) {
            resp.headers_mut().insert(SERVED_BY, v);
        }
        return resp;
    }
    let Some(leader) = cluster.leader() else {
        return unavailable("no web leader is elected yet; retry in a moment".into());
    };
    if leader.node == s.node.id {
        // The key names this node but it is fenced: it must not serve.
        return unavailable(format!(
            "this node ({}) lost its etcd lease; the web leader is being re-elected",
            s.node.id
        ));
    }
    if req.headers().contains_key(FORWARDED_BY) {
        return unavailable(format!(
            "request forwarded to {} which does not lead (the leader is {})",
            s.node.id, leader.node
        ));
    }
    let pq = req
        .uri()
        .path_and_query()
        .map_or_else(|| path.to_string(), |p| p.as_str().to_string());
    let uri: Uri = match format!("{}{pq}", leader.url.trim_end_matches('/')).parse() {
        Ok(u) => u,
        Err(e) => {
            return unavailable(format!(
                "the web leader {} advertises an unusable URL {:?}: {e}",
                leader.node, leader.url
            ))
        }
    };
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    if let Ok(v) = HeaderValue::from_str(&s.node.id) {
        parts.headers.insert(FORWARDED_BY, v);
    }
    // Connection-scoped headers belong to this hop only.
    for h in [
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ] {
        parts.headers.remove(h);
    }
    let sent = client().request(Request::from_parts(parts, body));
    match tokio::time::timeout(RESPONSE_TIMEOUT, sent).await {
        Ok(Ok(resp)) => resp.map(Body::new),
        Ok(Err(e)) => unavailable(format!(
            "the web leader {} ({}) cannot be reached: {e}",
            leader.node, leader.url
        )),
        Err(_) => unavailable(format!(
            "the web leader {} ({}) did not answer within {RESPONSE_TIMEOUT:?}",
            leader.node, leader.url
        )),
    }
}
