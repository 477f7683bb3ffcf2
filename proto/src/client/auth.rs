//! Client calls of the authentication routes: who am I, password login to
//! a token (`cronsun login`), accounts, API tokens and the audit log.

use http::Method;

use super::{encode_component, to_json, Client, ClientError};
use crate::auth::{
    AccountRequest, AccountView, AuditPage, AuditQuery, LoginTokenRequest, Me, PasswordChange,
    TokenCreated, TokenRequest, TokenView,
};

fn account_path(user: &str, tail: &str) -> String {
    format!("/api/v1/accounts/{}{tail}", encode_component(user))
}

fn audit_query_string(q: &AuditQuery) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={}", encode_component(&v)));
        }
    };
    add("actor", q.actor.clone());
    add("action", q.action.clone());
    add("target", q.target.clone());
    add("since", q.since.map(|t| t.to_string()));
    add("until", q.until.map(|t| t.to_string()));
    add("limit", q.limit.map(|l| l.to_string()));
    add("cursor", q.cursor.clone());
    if parts.is_empty() {
        String::new()
    } else {
        format!("?{}", parts.join("&"))
    }
}

impl Client {
    /// `GET /api/v1/session`: the caller as the daemon sees it.
    pub async fn me(&self) -> Result<Me, ClientError> {
        self.get("/api/v1/session").await
    }

    /// `POST /api/v1/session/token`: a password login answered with a token.
    pub async fn login_token(&self, req: &LoginTokenRequest) -> Result<TokenCreated, ClientError> {
        self.post("/api/v1/session/token", req).await
    }

    /// `GET /api/v1/accounts`.
    pub async fn list_accounts(&self) -> Result<Vec<AccountView>, ClientError> {
        self.get("/api/v1/accounts").await
    }

    /// `POST /api/v1/accounts`.
    pub async fn create_account(&self, req: &AccountRequest) -> Result<AccountView, ClientError> {
        self.post("/api/v1/accounts", req).await
    }

    /// `PUT /api/v1/accounts/{user}`.
    pub async fn update_account(&self, req: &AccountRequest) -> Result<AccountView, ClientError> {
        self.put(&account_path(&req.user, ""), req).await
    }

    /// `DELETE /api/v1/accounts/{user}`.
    pub async fn delete_account(&self, user: &str) -> Result<(), ClientError> {
        self.delete(&account_path(user, ""), None).await
    }

    /// `POST /api/v1/accounts/{user}/password`.
    pub async fn set_password(&self, user: &str, req: &PasswordChange) -> Result<(), ClientError> {
        self.exchange(
            Method::POST,
            &account_path(user, "/password"),
            Some(to_json(req)?),
            None,
        )
        .await
        .map(drop)
    }

    /// `GET /api/v1/tokens`.
    pub async fn list_tokens(&self) -> Result<Vec<TokenView>, ClientError> {
        self.get("/api/v1/tokens").await
    }

    /// `POST /api/v1/tokens`: the answer holds the secret, shown once.
    pub async fn create_token(&self, req: &TokenRequest) -> Result<TokenCreated, ClientError> {
        self.post("/api/v1/tokens", req).await
    }

    /// `DELETE /api/v1/tokens/{id}`: revokes it.
    pub async fn revoke_token(&self, id: &str) -> Result<(), ClientError> {
        self.delete(&format!("/api/v1/tokens/{}", encode_component(id)), None)
            .await
    }

    /// `GET /api/v1/audit?...`: newest first.
    pub async fn audit(&self, q: &AuditQuery) -> Result<AuditPage, ClientError> {
        self.get(&format!("/api/v1/audit{}", audit_query_string(q)))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_encoded() {
        assert_eq!(
            account_path("a b", "/password"),
            "/api/v1/accounts/a%20b/password"
        );
        let q = AuditQuery {
            action: Some("job.create".into()),
            limit: Some(5),
            ..Default::default()
        };
        assert_eq!(audit_query_string(&q), "?action=job.create&limit=5");
        assert_eq!(audit_query_string(&AuditQuery::default()), "");
    }
}
