//! `/api/v1/accounts`: local accounts (admins), and each user's own password.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use cronsun_proto::auth::{check_name, AccountRequest, AccountView, PasswordChange, Role};

use super::auth::{password, principal::forbidden, ClientAddr, Principal};
use super::body::JsonBody;
use super::error::{ApiResult, Failure};
use super::AppState;
use crate::store::{Account, AccountWrite};

fn view(a: &Account) -> AccountView {
    AccountView {
        user: a.user.clone(),
        role: a.role,
        groups: a.groups.clone(),
        permissions: a.permissions,
        created_at: a.created_at,
        disabled: a.disabled,
        revision: a.revision,
    }
}

/// An account as audit entries show it (without the store's revision).
fn audit_value(a: &Account) -> Option<serde_json::Value> {
    let mut v = serde_json::to_value(view(a)).ok()?;
    if let Some(o) = v.as_object_mut() {
        o.remove("revision");
    }
    Some(v)
}

fn invalid(e: cronsun_proto::ValidationError) -> Failure {
    Failure::invalid(e, "")
}

/// Checks the names in a request (user and groups).
pub(super) fn check_names(user_field: &str, user: &str, groups: &[String]) -> ApiResult<()> {
    check_name(user_field, user).map_err(invalid)?;
    for (i, g) in groups.iter().enumerate() {
        check_name(&format!("groups[{i}]"), g).map_err(invalid)?;
    }
    Ok(())
}

fn check_password(pw: &str) -> ApiResult<()> {
    password::check_new(pw).map_err(|m| {
        Failure::new(StatusCode::UNPROCESSABLE_ENTITY, format!("password: {m}")).field("password")
    })
}

/// `written` as stored now (with its new revision); itself if the read fails.
async fn reread(s: &AppState, written: Account) -> Account {
    match s.auth.store.account(&written.user).await {
        Ok(Some(a)) => a,
        _ => written,
    }
}

async fn stored(s: &AppState, user: &str) -> ApiResult<Account> {
    s.auth
        .store
        .account(user)
        .await?
        .ok_or_else(|| Failure::not_found(format!("account {user:?} not found")))
}

/// 409 if removing or demoting `user` would leave no enabled admin.
async fn keep_an_admin(s: &AppState, user: &str) -> ApiResult<()> {
    let others = s
        .auth
        .store
        .accounts()
        .await?
        .into_iter()
        .any(|a| a.user != user && a.role == Role::Admin && !a.disabled);
    if others {
        return Ok(());
    }
    Err(Failure::conflict(format!(
        "{user:?} is the last enabled admin account; create another admin first"
    )))
}

#[utoipa::path(get, path = "/api/v1/accounts", tag = "auth",
    responses((status = 200, body = [AccountView])))]
pub async fn list(State(s): State<AppState>) -> ApiResult<Json<Vec<AccountView>>> {
    Ok(Json(
        s.auth.store.accounts().await?.iter().map(view).collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/accounts", tag = "auth", request_body = AccountRequest,
    responses((status = 201, body = AccountView), (status = 409, body = cronsun_proto::api::ApiError),
              (status = 422, body = cronsun_proto::api::ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    JsonBody(req): JsonBody<AccountRequest>,
) -> ApiResult<(StatusCode, Json<AccountView>)> {
    check_names("user", &req.user, &req.groups)?;
    let pw = req.password.clone().unwrap_or_default();
    check_password(&pw)?;
    let account = Account {
        user: req.user.clone(),
        password_hash: password::hash(pw)
            .await
            .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e))?,
        role: req.role,
        groups: req.groups,
        permissions: req.permissions,
        created_at: s.clock.now(),
        disabled: req.disabled,
        generation: 1,
        revision: 0,
    };
    let mut entry = p.audit("account.create", &account.user, s.clock.now());
    entry.after = audit_value(&account);
    s.auth
        .store
        .put_account(account.clone(), AccountWrite::Create, Some(entry))
        .await?;
    Ok((StatusCode::CREATED, Json(view(&reread(&s, account).await))))
}

#[utoipa::path(put, path = "/api/v1/accounts/{user}", tag = "auth", request_body = AccountRequest,
    params(("If-Match" = Option<String>, Header, description = "revision being replaced (or the body's `revision`)")),
    responses((status = 200, body = AccountView), (status = 404, body = cronsun_proto::api::ApiError),
              (status = 409, description = "it would leave no enabled admin, or the account changed since the named revision", body = cronsun_proto::api::ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
    headers: HeaderMap,
    JsonBody(req): JsonBody<AccountRequest>,
) -> ApiResult<Json<AccountView>> {
    if req.user != user {
        return Err(Failure::bad_request(format!(
            "the body's user {:?} differs from the path's {user:?}",
            req.user
        ))
        .field("user"));
    }
    check_names("user", &req.user, &req.groups)?;
    let expected = super::jobs::if_match(&headers)?.or(req.revision.filter(|r| *r != 0));
    let old = stored(&s, &user).await?;
    if let Some(want) = expected.filter(|w| *w != old.revision) {
        return Err(crate::store::StoreError::Stale {
            what: format!("account {user:?} (revision {want})"),
            current: old.revision,
        }
        .into());
    }
    if old.role == Role::Admin && (req.role != Role::Admin || req.disabled) {
        keep_an_admin(&s, &user).await?;
    }
    let mut new = Account {
        role: req.role,
        groups: req.groups,
        permissions: req.permissions,
        disabled: req.disabled,
        ..old.clone()
    };
    if new != old {
        // Sessions carry the generation: changed rights end them.
        new.generation += 1;
    }
    let mut entry = p.audit("account.update", &user, s.clock.now());
    entry.before = audit_value(&old);
    entry.after = audit_value(&new);
    s.auth
        .store
        .put_account(new.clone(), AccountWrite::Replace, Some(entry))
        .await?;
    Ok(Json(view(&reread(&s, new).await)))
}

#[utoipa::path(delete, path = "/api/v1/accounts/{user}", tag = "auth",
    responses((status = 204), (status = 404, body = cronsun_proto::api::ApiError),
              (status = 409, description = "it would leave no enabled admin", body = cronsun_proto::api::ApiError)))]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    let old = stored(&s, &user).await?;
    if old.role == Role::Admin {
        keep_an_admin(&s, &user).await?;
    }
    let mut entry = p.audit("account.delete", &user, s.clock.now());
    entry.before = audit_value(&old);
    s.auth.store.delete_account(&user, Some(entry)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/accounts/{user}/password", tag = "auth", request_body = PasswordChange,
    responses((status = 204), (status = 403, body = cronsun_proto::api::ApiError),
              (status = 422, body = cronsun_proto::api::ApiError)))]
pub async fn set_password(
    State(s): State<AppState>,
    p: Principal,
    ClientAddr(from): ClientAddr,
    Path(user): Path<String>,
    JsonBody(req): JsonBody<PasswordChange>,
) -> ApiResult<StatusCode> {
    let own = p.user == user && p.via != cronsun_proto::auth::Via::Socket;
    if !own && !p.is_admin() {
        return Err(forbidden(format!(
            "changing the password of {user:?} needs role admin"
        )));
    }
    check_password(&req.password)?;
    let mut account = stored(&s, &user).await?;
    if own {
        let limiter = &s.auth.limiter;
        if limiter.blocked(&from, &user).is_some() {
            return Err(Failure::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords; try again later",
            ));
        }
        let current = req.current_password.clone().unwrap_or_default();
        if !password::verify(current, Some(account.password_hash.clone())).await {
            limiter.failed(&from, &user);
            return Err(forbidden(
                "current_password is missing or wrong (needed to change your own password)".into(),
            )
            .field("current_password"));
        }
    }
    account.password_hash = password::hash(req.password)
        .await
        .map_err(|e| Failure::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    account.generation += 1;
    let entry = p.audit("account.password", &user, s.clock.now());
    s.auth
        .store
        .put_account(account, AccountWrite::Replace, Some(entry))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
