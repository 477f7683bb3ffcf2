//! A run's live output from the node that runs it (DESIGN §4: node-local
//! operations travel from the leader to the owning node through an
//! authenticated node-to-node call).
//!
//! The leader has identified and authorized the caller and found the run
//! in the run store, running on another live node. It then asks that node
//! for the stream over TLS pinned to the certificate the node published in
//! its `node/` record (plain HTTP for a plain-HTTP node), with the
//! cluster's admin token and `x-cronsun-owner-call`: an HMAC keyed by that
//! token over the calling node and the path, which makes the owner serve
//! the request itself instead of forwarding it back to the leader. The
//! stream is relayed as it comes, through any proxying node.

use axum::body::Body;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::Response;
use cronsun_proto::RunRecord;

use super::proxy::{unavailable, Target};
use crate::api::AppState;

/// Header naming the node making an owner call.
pub const OWNER_CALL: &str = "x-cronsun-owner-call";

/// The live output stream of `rec` from the node running it, when that is
/// another node of the cluster; `None`: this node serves it.
pub async fn stream_from_owner(s: &AppState, rec: &RunRecord) -> Option<Response> {
    let cluster = s.cluster.as_ref()?;
    if rec.status.is_final()
        || rec.node_id == s.node.id
        || s.sched.active(&rec.record_id()).is_some()
    {
        return None;
    }
    let Some(owner) = cluster.peer(&rec.node_id) else {
        return Some(unavailable(format!(
            "run {} runs on node {}, which is not registered now (stopped, or its lease \
             expired); its output is in its record once it ends",
            rec.record_id(),
            rec.node_id
        )));
    };
    let Some(url) = owner.api_url.as_deref() else {
        return Some(unavailable(format!(
            "run {} runs on node {}, which publishes no API URL (an older version)",
            rec.record_id(),
            rec.node_id
        )));
    };
    let id: String = form_urlencoded::byte_serialize(rec.record_id().as_bytes()).collect();
    let path = format!("/api/v1/runs/{id}/stream");
    let mut req = Request::get(path.as_str()).body(Body::empty()).ok()?;
    for (k, v) in s.proxy.owner_call_headers(&s.node.id, &path) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            req.headers_mut().insert(k, v);
        }
    }
    req.headers_mut()
        .insert("accept", HeaderValue::from_static("text/event-stream"));
    let to = Target {
        node: &owner.id,
        url,
        fingerprint: owner.tls_fingerprint.as_deref(),
    };
    Some(s.proxy.send(&to, req).await.unwrap_or_else(|why| {
        unavailable(format!(
            "run {} runs on node {} ({url}), which {why}",
            rec.record_id(),
            rec.node_id
        ))
    }))
}
