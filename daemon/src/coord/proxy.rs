//! Reverse proxy to the web leader (DESIGN §1, §4): in cluster mode a node
//! that does not lead forwards every HTTP request (UI and API) to the
//! leader — method, path, query, headers (`Cookie`, `Authorization`) and
//! body both ways, streamed — so browsers and tokens work through any node.
//! When no leader is known or it cannot be reached, it answers 503 naming
//! the leader. `/healthz` and `/metrics` (they describe this node) and the
//! local Unix socket are always served here.
//!
//! A leader whose API speaks TLS is reached over TLS pinned to the
//! certificate fingerprint it published ([`super::pin`]); a certificate
//! that does not match is a 503 naming the leader and the mismatch, never
//! a retry in plain HTTP. A plain-HTTP leader (loopback or
//! `insecure_plaintext`) is reached in plain HTTP.
//!
//! The browser talked to this node, so this node checks its `Host` (DNS
//! rebinding) and the leader gets the `Host` of its own `api_url`. The
//! client's address travels in `X-Forwarded-For` with a proof keyed by the
//! cluster's admin token; the leader uses it (login limits, audit) only
//! when the proof holds.

use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tracing::warn;

use super::pin::{self, Fingerprint, PinnedConnector};
use crate::api::auth::crypto;
use crate::api::AppState;
use crate::store::etcd::Leader;

/// How long connecting to the leader may take before answering 503.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Header naming the node that served a response (through any proxy).
pub const SERVED_BY: &str = "x-cronsun-served-by";

/// How long the leader may take to start answering a proxied request (its
/// body, e.g. a live output stream, may then take as long as it needs).
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// Header set on proxied requests: a leader never forwards them again
/// (two nodes that each think the other leads answer 503, not a loop).
const FORWARDED_BY: &str = "x-cronsun-forwarded-by";
/// The client's address, as the proxying node saw it.
const FORWARDED_FOR: &str = "x-forwarded-for";
/// HMAC of the proxying node and the client's address (see [`Proxy::proof`]).
const FORWARD_PROOF: &str = "x-cronsun-forward-proof";

/// The clients this node reaches the leader with, and the forwarding key.
pub struct Proxy {
    plain: Client<HttpConnector, Body>,
    /// One pooled client per pin: a new leader certificate gets fresh
    /// connections, verified against the new pin.
    pinned: Mutex<Option<(Fingerprint, Client<PinnedConnector, Body>)>>,
    proof_key: [u8; 32],
    /// The cluster's admin token: the credential of owner calls.
    admin_token: String,
    /// The last mismatch logged, so a polling browser does not flood the log.
    warned: Mutex<Option<(String, Fingerprint)>>,
}

impl Proxy {
    /// `admin_token`: the cluster's admin token (one per cluster), which
    /// keys the proof of forwarded client addresses.
    pub fn new(admin_token: &str) -> Proxy {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.set_nodelay(true);
        Proxy {
            plain: Client::builder(TokioExecutor::new()).build(http),
            pinned: Mutex::new(None),
            proof_key: crypto::hmac(
                admin_token.trim().as_bytes(),
                &[b"cronsun forwarded client"],
            ),
            admin_token: admin_token.trim().to_string(),
            warned: Mutex::new(None),
        }
    }

    /// Headers of an owner call from `node` for `path` (see [`super::owner`]).
    pub(super) fn owner_call_headers(&self, node: &str, path: &str) -> Vec<(&'static str, String)> {
        vec![
            ("authorization", format!("Bearer {}", self.admin_token)),
            (super::owner::OWNER_CALL, node.to_string()),
            (FORWARD_PROOF, self.proof(node, &format!("owner {path}"))),
        ]
    }

    /// Whether an owner call's proof holds for `path`.
    fn owner_call_ok(&self, headers: &HeaderMap, path: &str) -> bool {
        let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
        let (Some(node), Some(proof)) = (get(super::owner::OWNER_CALL), get(FORWARD_PROOF)) else {
            return false;
        };
        let want = self.proof(node, &format!("owner {path}"));
        crypto::same(want.as_bytes(), proof.as_bytes())
    }

    fn pinned(&self, want: Fingerprint) -> Client<PinnedConnector, Body> {
        let mut cur = self.pinned.lock().unwrap_or_else(|e| e.into_inner());
        match &*cur {
            Some((fp, c)) if *fp == want => c.clone(),
            _ => {
                let c = Client::builder(TokioExecutor::new())
                    .build(PinnedConnector::new(want, CONNECT_TIMEOUT));
                *cur = Some((want, c.clone()));
                c
            }
        }
    }

    /// Hex HMAC over the forwarding node and the client address.
    fn proof(&self, node: &str, client: &str) -> String {
        hex::encode(crypto::hmac(
            &self.proof_key,
            &[node.as_bytes(), b"\n", client.as_bytes()],
        ))
    }

    /// The client address a peer forwarded, when its proof holds.
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let get = |h: &str| headers.get(h).and_then(|v| v.to_str().ok());
        let (node, client, proof) = (get(FORWARDED_BY)?, get(FORWARDED_FOR)?, get(FORWARD_PROOF)?);
        let want = self.proof(node, client);
        crypto::same(want.as_bytes(), proof.as_bytes())
            .then(|| client.parse().ok())
            .flatten()
    }

    fn warn_mismatch(&self, to: &Target<'_>, m: &pin::Mismatch) {
        let mut last = self.warned.lock().unwrap_or_else(|e| e.into_inner());
        if last.as_ref() != Some(&(to.node.to_string(), m.seen)) {
            warn!(node = %to.node, url = %to.url, presented = %m.seen, published = %m.want,
                "certificate fingerprint mismatch: not forwarding to this node");
            *last = Some((to.node.to_string(), m.seen));
        }
    }
}

pub(super) fn unavailable(msg: String) -> Response {
    crate::api::Failure::new(StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
}

/// An error and its sources, `: `-separated.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

/// Middleware around the whole router.
pub async fn to_leader(State(s): State<AppState>, mut req: Request, next: Next) -> Response {
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
    // The leader asking this node for something only it has (a run's
    // live output): served here, never forwarded back.
    if !local_socket && req.headers().contains_key(super::owner::OWNER_CALL) {
        let pq = req.uri().path_and_query().map_or(path, |p| p.as_str());
        if !s.proxy.owner_call_ok(req.headers(), pq) {
            return crate::api::Failure::new(
                StatusCode::FORBIDDEN,
                "x-cronsun-owner-call without a valid proof: only the cluster's nodes make owner calls",
            )
            .into_response();
        }
        return serve_here(&s, req, next).await;
    }
    if local_socket || path == "/healthz" || path == "/metrics" || cluster.is_leader() {
        if !local_socket {
            if let Some(ip) = s.proxy.forwarded_client(req.headers()) {
                req.extensions_mut()
                    .insert(ConnectInfo(SocketAddr::new(ip, 0)));
            }
        }
        return serve_here(&s, req, next).await;
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
    // The browser talked to this node: its Host is checked here.
    if let Err(f) = s.auth.check_host(&req) {
        return f.into_response();
    }
    forward(&s, &leader, req).await
}

/// Serves `req` on this node, naming it in the answer.
async fn serve_here(s: &AppState, req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&s.node.id) {
        resp.headers_mut().insert(SERVED_BY, v);
    }
    resp
}

/// Where a peer's API is, as it published it.
pub struct Target<'a> {
    pub node: &'a str,
    pub url: &'a str,
    pub fingerprint: Option<&'a str>,
}

impl<'a> From<&'a Leader> for Target<'a> {
    fn from(l: &'a Leader) -> Target<'a> {
        Target {
            node: &l.node,
            url: &l.url,
            fingerprint: l.fingerprint.as_deref(),
        }
    }
}

impl Proxy {
    /// Sends `req` (its path and query, its headers but `Host`) to `to`
    /// over TLS pinned to its fingerprint (`https://`) or plain HTTP, and
    /// returns the answer, streamed; the error says why it could not
    /// (e.g. `cannot be reached: … certificate fingerprint mismatch …`).
    pub async fn send(&self, to: &Target<'_>, req: Request) -> Result<Response, String> {
        let pq = req
            .uri()
            .path_and_query()
            .map_or_else(|| req.uri().path().to_string(), |p| p.as_str().to_string());
        let uri: Uri = format!("{}{pq}", to.url.trim_end_matches('/'))
            .parse()
            .map_err(|e| format!("advertises an unusable URL {:?}: {e}", to.url))?;
        let (mut parts, body) = req.into_parts();
        if let Some(a) = uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(header::HOST, a);
        }
        let https = uri.scheme_str() == Some("https");
        parts.uri = uri;
        let req = Request::from_parts(parts, body);
        let sent = if https {
            let fp = to.fingerprint.ok_or_else(|| {
                "publishes no certificate fingerprint, so its certificate cannot be verified; \
                 not forwarding"
                    .to_string()
            })?;
            let want: Fingerprint = fp
                .parse()
                .map_err(|e| format!("publishes an unusable certificate fingerprint: {e}"))?;
            self.pinned(want).request(req)
        } else {
            self.plain.request(req)
        };
        match tokio::time::timeout(RESPONSE_TIMEOUT, sent).await {
            Ok(Ok(resp)) => Ok(resp.map(Body::new)),
            Ok(Err(e)) => {
                if let Some(m) = pin::mismatch_in(&e) {
                    self.warn_mismatch(to, m);
                }
                Err(format!("cannot be reached: {}", chain(&e)))
            }
            Err(_) => Err(format!("did not answer within {RESPONSE_TIMEOUT:?}")),
        }
    }
}

/// Sends `req` to the leader and streams its answer back.
async fn forward(s: &AppState, leader: &Leader, req: Request) -> Response {
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string());
    let (mut parts, body) = req.into_parts();
    let headers = &mut parts.headers;
    // Connection-scoped headers belong to this hop only.
    for h in [
        header::CONNECTION,
        header::UPGRADE,
        header::TE,
        header::TRAILER,
    ] {
        headers.remove(h);
    }
    // The leader gets the Host of its own api_url (set by `send`).
    if let Some(host) = headers.remove(header::HOST) {
        headers.insert("x-forwarded-host", host);
    }
    let proto = if s.auth.secure { "https" } else { "http" };
    headers.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    headers.remove(FORWARDED_FOR);
    headers.remove(FORWARD_PROOF);
    if let Ok(v) = HeaderValue::from_str(&s.node.id) {
        headers.insert(FORWARDED_BY, v);
    }
    if let Some(ip) = client {
        let proof = s.proxy.proof(&s.node.id, &ip);
        if let (Ok(ip), Ok(p)) = (HeaderValue::from_str(&ip), HeaderValue::from_str(&proof)) {
            headers.insert(FORWARDED_FOR, ip);
            headers.insert(FORWARD_PROOF, p);
        }
    }
    let req = Request::from_parts(parts, body);
    s.proxy
        .send(&leader.into(), req)
        .await
        .unwrap_or_else(|why| {
            unavailable(format!(
                "the web leader {} ({}) {why}",
                leader.node, leader.url
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(node: &str, client: &str, proof: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(FORWARDED_BY, HeaderValue::from_str(node).expect("node"));
        h.insert(
            FORWARDED_FOR,
            HeaderValue::from_str(client).expect("client"),
        );
        h.insert(FORWARD_PROOF, HeaderValue::from_str(proof).expect("proof"));
        h
    }

    #[test]
    fn a_forwarded_client_address_is_believed_only_with_its_proof() {
        let (a, b) = (Proxy::new("token-1\n"), Proxy::new("token-1"));
        let proof = a.proof("node-a", "10.0.0.7");
        let ip: IpAddr = "10.0.0.7".parse().expect("ip");
        assert_eq!(
            b.forwarded_client(&forwarded("node-a", "10.0.0.7", &proof)),
            Some(ip)
        );
        // Another address, another forwarding node, another cluster's key,
        // or no proof at all: the direct peer's address is used instead.
        assert_eq!(
            b.forwarded_client(&forwarded("node-a", "10.0.0.8", &proof)),
            None
        );
        assert_eq!(
            b.forwarded_client(&forwarded("node-b", "10.0.0.7", &proof)),
            None
        );
        let other = Proxy::new("token-2");
        assert_eq!(
            other.forwarded_client(&forwarded("node-a", "10.0.0.7", &proof)),
            None
        );
        let mut bare = forwarded("node-a", "10.0.0.7", &proof);
        bare.remove(FORWARD_PROOF);
        assert_eq!(b.forwarded_client(&bare), None);
        let junk = a.proof("node-a", "not an address");
        assert_eq!(
            b.forwarded_client(&forwarded("node-a", "not an address", &junk)),
            None
        );
    }

    #[test]
    fn an_owner_call_holds_only_for_its_path_and_cluster() {
        let a = Proxy::new("token-1");
        let path = "/api/v1/runs/j~1%23/stream";
        let mut h = HeaderMap::new();
        for (k, v) in a.owner_call_headers("node-a", path) {
            h.insert(k, HeaderValue::from_str(&v).expect("header"));
        }
        assert_eq!(
            h.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer token-1")
        );
        assert!(a.owner_call_ok(&h, path));
        assert!(!a.owner_call_ok(&h, "/api/v1/runs/other/stream"));
        assert!(!Proxy::new("token-2").owner_call_ok(&h, path));
        h.insert(
            super::super::owner::OWNER_CALL,
            HeaderValue::from_static("node-b"),
        );
        assert!(!a.owner_call_ok(&h, path));
    }

    #[test]
    fn error_chains_are_spelled_out_once() {
        let inner = std::io::Error::other("certificate fingerprint mismatch: x");
        let outer = anyhow::Error::new(inner).context("client error (Connect)");
        let e: &(dyn std::error::Error + 'static) = outer.as_ref();
        assert_eq!(
            chain(e),
            "client error (Connect): certificate fingerprint mismatch: x"
        );
    }
}
