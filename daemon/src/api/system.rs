//! Health, metrics, nodes, schedule preview and the global pause switch.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use cronsun_proto::api::{GlobalPause, Health, NodeInfo, PauseRequest, Preview, PreviewQuery};
use cronsun_proto::schedule;

use super::auth::Principal;
use super::body::{OptionalJson, QueryArgs};
use super::error::{ApiResult, Failure};
use super::AppState;
use crate::store::CoordOp;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// 503 while the node cannot start runs (e.g. its state disk fails).
#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(s): State<AppState>) -> (StatusCode, Json<Health>) {
    let problems: Vec<String> = s.runs.healthy().err().into_iter().collect();
    let (code, status) = if problems.is_empty() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unhealthy")
    };
    let h = Health {
        status: status.into(),
        version: VERSION.into(),
        problems,
    };
    (code, Json(h))
}

pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", responses((status = 200, body = [NodeInfo])))]
pub async fn nodes(State(s): State<AppState>) -> ApiResult<Json<Vec<NodeInfo>>> {
    if let Some(c) = &s.cluster {
        let mut nodes = c.nodes().await?;
        for n in nodes.iter_mut().filter(|n| n.id == s.node.id) {
            n.running = s.sched.running_total();
        }
        return Ok(Json(nodes));
    }
    let now = s.clock.now();
    Ok(Json(vec![NodeInfo {
        id: s.node.id.clone(),
        hostname: s.node.hostname.clone(),
        api_url: None,
        tls_fingerprint: None,
        version: VERSION.into(),
        tzdata: schedule::tzdata_version(),
        groups: s.node.groups.clone(),
        labels: s.node.labels.clone(),
        started_at: s.node.started_at,
        last_seen: now,
        alive: true,
        running: s.sched.running_total(),
        clock_ok: crate::node::clock_synchronised(),
        draining: false,
        clock_offset_ms: None,
        clock_problem: None,
    }]))
}

#[utoipa::path(get, path = "/api/v1/schedule/preview", tag = "jobs", params(PreviewQuery),
    responses((status = 200, body = Preview), (status = 400, body = cronsun_proto::api::ApiError)))]
pub async fn preview(
    State(s): State<AppState>,
    QueryArgs(q): QueryArgs<PreviewQuery>,
) -> ApiResult<Json<Preview>> {
    let n = q.n.unwrap_or(10);
    if n == 0 || n > 1000 {
        return Err(Failure::bad_request("n must be between 1 and 1000").field("n"));
    }
    let tz = q.timezone.unwrap_or_else(|| s.default_tz.clone());
    let from = q.from.unwrap_or_else(|| s.clock.now());
    let instants = schedule::preview(&q.schedule, &tz, from, n as usize)
        .map_err(|e| Failure::bad_request(e.to_string()).field("schedule"))?;
    Ok(Json(Preview {
        instants: instants
            .iter()
            .map(|z| z.timestamp().display_with_offset(z.offset()).to_string())
            .collect(),
        timezone: tz,
    }))
}

#[utoipa::path(get, path = "/api/v1/pause", tag = "system", responses((status = 200, body = GlobalPause)))]
pub async fn pause_state(State(s): State<AppState>) -> ApiResult<Json<GlobalPause>> {
    Ok(Json(s.coord.global_pause().await?))
}

#[utoipa::path(put, path = "/api/v1/pause", tag = "system", request_body = PauseRequest,
    responses((status = 200, body = GlobalPause)))]
pub async fn pause_all(
    State(s): State<AppState>,
    p: Principal,
    OptionalJson(body): OptionalJson<PauseRequest>,
) -> ApiResult<Json<GlobalPause>> {
    set_pause(&s, &p, true, body.and_then(|b| b.reason)).await
}

#[utoipa::path(delete, path = "/api/v1/pause", tag = "system", responses((status = 200, body = GlobalPause)))]
pub async fn resume_all(State(s): State<AppState>, p: Principal) -> ApiResult<Json<GlobalPause>> {
    set_pause(&s, &p, false, None).await
}

async fn set_pause(
    s: &AppState,
    who: &Principal,
    paused: bool,
    reason: Option<String>,
) -> ApiResult<Json<GlobalPause>> {
    let p = GlobalPause {
        paused,
        reason,
        since: paused.then(|| s.clock.now()),
    };
    let now = s.clock.now();
    let action = if paused { "pause.set" } else { "pause.clear" };
    let mut entry = who.audit(action, "pause", now);
    entry.before = serde_json::to_value(s.coord.global_pause().await?).ok();
    entry.after = serde_json::to_value(&p).ok();
    s.coord
        .apply_audited(vec![CoordOp::SetGlobalPause(p.clone())], entry, now)
        .await?;
    s.sched.set_global_pause(paused).await?;
    Ok(Json(p))
}
