//! `/api/v1/nodes/{id}/drain` and `/undrain`: a drained node starts no new
//! runs (scheduled or manual) and lets its running runs finish; the state
//! lives in etcd (`drain/<node>`), so it survives restarts. Standalone mode
//! answers 409: the only node cannot hand its runs to another (use the
//! global pause instead).

use axum::extract::{Path, State};
use axum::Json;
use cronsun_proto::api::NodeInfo;

use super::auth::Principal;
use super::error::{ApiResult, Failure};
use super::AppState;

#[utoipa::path(post, path = "/api/v1/nodes/{id}/drain", tag = "nodes",
    params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = NodeInfo), (status = 404, body = cronsun_proto::api::ApiError),
              (status = 409, body = cronsun_proto::api::ApiError)))]
pub async fn drain(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeInfo>> {
    set(&s, &p, &id, true).await
}

#[utoipa::path(post, path = "/api/v1/nodes/{id}/undrain", tag = "nodes",
    params(("id" = String, Path, description = "node id")),
    responses((status = 200, body = NodeInfo), (status = 404, body = cronsun_proto::api::ApiError),
              (status = 409, body = cronsun_proto::api::ApiError)))]
pub async fn undrain(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeInfo>> {
    set(&s, &p, &id, false).await
}

async fn set(s: &AppState, p: &Principal, id: &str, on: bool) -> ApiResult<Json<NodeInfo>> {
    if !p.groups.is_empty() {
        // A node runs every group's jobs: only unscoped callers drain it.
        return Err(super::auth::principal::forbidden(format!(
            "draining a node affects every job group; {} is scoped to {}",
            p.user,
            p.groups.join(", ")
        )));
    }
    let Some(c) = &s.cluster else {
        return Err(Failure::conflict(format!(
            "standalone mode: node {:?} is the only node, so nothing can take its runs; use the global pause (cronsun pause --all) to stop new runs",
            s.node.id
        )));
    };
    let now = s.clock.now();
    let info = c.set_drain(id, on, &p.user, now).await?;
    let action = if on { "node.drain" } else { "node.undrain" };
    let mut entry = p.audit(action, id, now);
    entry.after = Some(serde_json::json!({ "draining": on }));
    s.auth.store.append_audit(entry).await?;
    Ok(Json(info))
}
