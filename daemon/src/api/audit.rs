//! `/api/v1/audit`: the audit log (admins), newest first.

use axum::extract::State;
use axum::Json;
use cronsun_proto::auth::{AuditPage, AuditQuery};

use super::body::QueryArgs;
use super::error::{ApiResult, Failure};
use super::AppState;

#[utoipa::path(get, path = "/api/v1/audit", tag = "auth", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = cronsun_proto::api::ApiError)))]
pub async fn search(
    State(s): State<AppState>,
    QueryArgs(q): QueryArgs<AuditQuery>,
) -> ApiResult<Json<AuditPage>> {
    if q.limit.is_some_and(|l| l == 0 || l > 1000) {
        return Err(Failure::bad_request("limit must be between 1 and 1000").field("limit"));
    }
    Ok(Json(s.auth.store.audit(&q).await?))
}
