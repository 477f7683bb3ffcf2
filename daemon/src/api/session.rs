//! `/api/v1/session`: log in (cookie), who am I, log out.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronsun_proto::auth::{
    check_name, LoginRequest, LoginTokenRequest, Me, TokenCreated, TokenRequest, Via,
};
use cronsun_proto::Dur;

use super::auth::{password, session, ClientAddr, Principal};
use super::body::JsonBody;
use super::error::{ApiResult, Failure};
use super::{tokens, AppState};
use crate::store::Account;

fn with_cookie(mut r: Response, cookie: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(cookie) {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    r
}

/// Checks a password login under the rate limits: the account, or the
/// answer to send (401, or 429 with `Retry-After`).
async fn check_login(
    s: &AppState,
    from: &str,
    user: &str,
    password: String,
) -> Result<Account, Response> {
    let auth = &s.auth;
    if let Some(wait) = auth.limiter.blocked(from, user) {
        let secs = wait.as_secs().max(1);
        let mut r = Failure::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many failed logins; try again in {secs}s"),
        )
        .into_response();
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return Err(r);
    }
    let account = auth
        .store
        .account(user)
        .await
        .map_err(|e| Failure::from(e).into_response())?;
    let hash = account.as_ref().map(|a| a.password_hash.clone());
    let ok = password::verify(password, hash).await;
    match account {
        Some(a) if ok && !a.disabled => Ok(a),
        _ => {
            auth.limiter.failed(from, user);
            Err(Failure::new(StatusCode::UNAUTHORIZED, "wrong user or password").into_response())
        }
    }
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
    let account = match check_login(&s, &from, &req.user, req.password).await {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let auth = &s.auth;
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
pub async fn logout(State(s): State<AppState>, _p: Principal) -> Response {
    with_cookie(
        StatusCode::NO_CONTENT.into_response(),
        &session::clear_cookie(s.auth.secure),
    )
}

/// Default lifetime of a login token.
const LOGIN_TOKEN_TTL: Dur = Dur::secs(30 * 86_400);

#[utoipa::path(post, path = "/api/v1/session/token", tag = "auth", request_body = LoginTokenRequest,
    responses((status = 201, body = TokenCreated, description = "a token acting as the account until it expires or the account's password or rights change"),
              (status = 401, body = cronsun_proto::api::ApiError),
              (status = 429, body = cronsun_proto::api::ApiError)))]
pub async fn login_token(
    State(s): State<AppState>,
    ClientAddr(from): ClientAddr,
    JsonBody(req): JsonBody<LoginTokenRequest>,
) -> ApiResult<Response> {
    let name = req
        .name
        .clone()
        .unwrap_or_else(|| format!("login-{}", req.user));
    check_name("name", &name).map_err(|e| Failure::invalid(e, ""))?;
    let account = match check_login(&s, &from, &req.user, req.password).await {
        Ok(a) => a,
        Err(r) => return Ok(r),
    };
    let p = Principal {
        via: Via::Session,
        ..s.auth.start_session(&account, from).1
    };
    let mut created = tokens::issue(
        &s,
        &p,
        TokenRequest {
            name,
            role: account.role,
            groups: account.groups.clone(),
            permissions: account.permissions,
            expires_in: Some(req.expires_in.unwrap_or(LOGIN_TOKEN_TTL)),
        },
        Some(&account),
    )
    .await?;
    created.info.created_by = account.user;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}
