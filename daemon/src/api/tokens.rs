//! `/api/v1/tokens`: API tokens (admins). Only the SHA-256 of a token's
//! secret is stored; the secret is shown once, when created.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use cronsun_proto::auth::{TokenCreated, TokenRequest, TokenView};

use super::accounts::check_names;
use super::auth::{crypto, Principal, TOKEN_PREFIX};
use super::body::JsonBody;
use super::error::{ApiResult, Failure};
use super::AppState;
use crate::store::{Account, StoredToken};

fn view(t: &StoredToken) -> TokenView {
    TokenView {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role,
        groups: t.groups.clone(),
        permissions: t.permissions,
        created_by: t.created_by.clone(),
        created_at: t.created_at,
        expires_at: t.expires_at,
        revoked: t.revoked,
    }
}

#[utoipa::path(get, path = "/api/v1/tokens", tag = "auth", responses((status = 200, body = [TokenView])))]
pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(
        s.auth.store.tokens().await?.iter().map(view).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/tokens", tag = "auth", request_body = TokenRequest,
    responses((status = 201, body = TokenCreated), (status = 422, body = cronsun_proto::api::ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    JsonBody(req): JsonBody<TokenRequest>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    Ok((StatusCode::CREATED, Json(issue(&s, &p, req, None).await?)))
}

/// Creates a token (audited); with `account`, a login token acting as it.
pub(super) async fn issue(
    s: &AppState,
    p: &Principal,
    req: TokenRequest,
    account: Option<&Account>,
) -> ApiResult<TokenCreated> {
    check_names("name", &req.name, &req.groups)?;
    let now = s.clock.now();
    let expires_at = match req.expires_in {
        None => None,
        Some(d) => Some(
            jiff::SignedDuration::try_from(d.0)
                .ok()
                .and_then(|d| now.checked_add(d).ok())
                .filter(|_| !d.0.is_zero())
                .ok_or_else(|| {
                    Failure::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!("expires_in: {d} is not a usable lifetime"),
                    )
                    .field("expires_in")
                })?,
        ),
    };
    let id = crypto::random_hex(8);
    let secret = crypto::random_b64(32);
    let token = StoredToken {
        id: id.clone(),
        name: req.name,
        secret_sha256: crypto::sha256_hex(secret.as_bytes()),
        role: req.role,
        groups: req.groups,
        permissions: req.permissions,
        created_by: p.user.clone(),
        created_at: now,
        expires_at,
        revoked: false,
        account: account.map(|a| a.user.clone()),
        generation: account.map_or(0, |a| a.generation),
    };
    let info = view(&token);
    let mut entry = p.audit("token.create", &id, now);
    entry.after = serde_json::to_value(&info).ok();
    s.auth.store.put_token(token, Some(entry)).await?;
    Ok(TokenCreated {
        info,
        token: format!("{TOKEN_PREFIX}{id}.{secret}"),
    })
}

#[utoipa::path(delete, path = "/api/v1/tokens/{id}", tag = "auth",
    responses((status = 204, description = "revoked"), (status = 404, body = cronsun_proto::api::ApiError)))]
pub async fn revoke(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let mut t = s
        .auth
        .store
        .token(&id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("token {id:?} not found")))?;
    let mut entry = p.audit("token.revoke", &id, s.clock.now());
    entry.before = serde_json::to_value(view(&t)).ok();
    t.revoked = true;
    entry.after = serde_json::to_value(view(&t)).ok();
    s.auth.store.put_token(t, Some(entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}
