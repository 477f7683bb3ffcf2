//! `/api/v1/session`: log in (cookie), who am I, log out.

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronsun_proto::auth::{LoginRequest, Me};

use super::auth::{password, session, ClientAddr, Principal};
use super::body::JsonBody;
use super::error::{ApiResult, Failure};
use super::AppState;

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

#[utoipa::path(post, path = "/api/v1/session", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = Me, description = "logged in; sets the cronsun_session cookie"),
              (status = 401, body = cronsun_proto::api::ApiError),
              (status = 429, body = cronsun_proto::api::ApiError, description = "too many failed logins; see Retry-After")))]
pub async fn login(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    JsonBody(req): JsonBody<LoginRequest>,
) -> ApiResult<Response> {
    let auth = &s.auth;
    if let Some(wait) = auth.limiter.blocked(&from, &req.user) {
        let secs = wait.as_secs().max(1);
        let mut r = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins; try again in {secs}s"),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Ok(r);
    }
    let account = auth.store.account(&req.user).await?;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let ok = password::verify(req.password, hash).await;
    let account = match account {
        Some(a) if ok && !a.disabled => a,
        _ => {
            auth.limiter.failed(&from, &req.user);
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                "wrong user or password",
            ));
        }
    };
    let (cookie, principal) = auth.start_session(&account, from);
    let cookie = session::set_cookie(&cookie, auth.session_ttl.as_secs(), auth.secure);
    Ok(with_cookie(Json(principal.me()).into_response(), &cookie))
}

#[utoipa::path(get, path = "/api/v1/session", tag = "auth",
    responses((status = 200, body = Me), (status = 401, body = cronsun_proto::api::ApiError)))]
pub async fn me(p: Principal) -> Json<Me> {
    Json(p.me())
}

#[utoipa::path(delete, path = "/api/v1/session", tag = "auth",
    responses((status = 204, description = "logged out; clears the cookie")))]
pub async fn logout(State(s): State<AppState>, _p: Principal, _h: HeaderMap) -> Response {
    with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &session::clear_cookie(s.auth.secure),
    )
}
