//! Accounts, sessions, API tokens and the audit log: the bodies of the
//! `/api/v1/{session,accounts,tokens,audit}` routes (DESIGN §5,
//! `docs/auth-contract.md`).

use std::fmt;
use std::str::FromStr;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::duration::Dur;

/// What a caller may do; each role includes the ones before it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads jobs, runs (without output unless `read_output`), nodes.
    Viewer,
    /// Viewer + run now (no overrides), pause/resume a job, kill a run.
    Operator,
    /// Everything.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Role, String> {
        match s {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("{s:?} is not a role (viewer, operator, admin)")),
        }
    }
}

/// Permissions granted beside the role (admins have both regardless).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct Permissions {
    /// May read run output (`GET /runs/{id}` output fields, `/runs/{id}/stream`).
    pub read_output: bool,
    /// May create or update jobs whose `run_as` is root or not the default user.
    pub privileged_run_as: bool,
}

/// How a request was authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    Session,
    Token,
    Socket,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Session => "session",
            Via::Token => "token",
            Via::Socket => "socket",
        }
    }
}

/// The caller as the daemon sees it (`GET /api/v1/session`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Me {
    pub user: String,
    pub role: Role,
    /// Job groups the role applies to; empty = all groups.
    pub groups: Vec<String>,
    pub permissions: Permissions,
    /// Send as `X-CSRF-Token` with every cookie-authenticated mutation;
    /// `null` for Bearer tokens and the socket.
    pub csrf_token: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    pub via: Via,
}

/// `POST /api/v1/session`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

/// `POST /api/v1/session/token` (`cronsun login`): a password login that
/// answers with an API token acting as the account, instead of a cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LoginTokenRequest {
    pub user: String,
    pub password: String,
    /// Token name, e.g. `cli-alice@laptop`; default `login-<user>`.
    #[serde(default)]
    pub name: Option<String>,
    /// Lifetime (default 30 days).
    #[serde(default)]
    pub expires_in: Option<Dur>,
}

/// An account as the API shows it (never its password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountView {
    pub user: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub permissions: Permissions,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    pub disabled: bool,
    /// Changes with every write; send it back (`If-Match` or `revision`)
    /// to have an update refused with 409 if the account changed meanwhile.
    #[serde(default)]
    pub revision: u64,
}

/// `POST /api/v1/accounts` (password required) and `PUT /api/v1/accounts/{user}`
/// (password ignored; use the password route).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountRequest {
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub permissions: Permissions,
    #[serde(default)]
    pub disabled: bool,
    /// PUT only: the revision being replaced (as `If-Match`); absent: the
    /// update applies to whatever is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
}

/// `POST /api/v1/accounts/{user}/password`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PasswordChange {
    pub password: String,
    /// Required when changing one's own password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_password: Option<String>,
}

/// An API token as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub role: Role,
    pub groups: Vec<String>,
    pub permissions: Permissions,
    pub created_by: String,
    #[schema(value_type = String, format = DateTime)]
    pub created_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<Timestamp>,
    pub revoked: bool,
}

/// `POST /api/v1/tokens`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenRequest {
    pub name: String,
    pub role: Role,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(default)]
    pub permissions: Permissions,
    /// `"30d"`, `"12h"`, ...; `null` = never expires.
    #[serde(default)]
    pub expires_in: Option<Dur>,
}

/// `POST /api/v1/tokens` answer: the secret is shown once, here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TokenCreated {
    #[serde(flatten)]
    pub info: TokenView,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
}

/// One audited mutation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Assigned by the store; increasing.
    pub id: String,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    pub actor: String,
    pub via: Via,
    /// The client address (or `socket`).
    pub from: String,
    /// `job.create`, `job.update`, `job.delete`, `job.pause`, `run.kill`, ...
    pub action: String,
    pub target: String,
    /// The state before (jobs: the redacted job), if any.
    #[schema(value_type = Option<Object>)]
    pub before: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub after: Option<serde_json::Value>,
}

/// `GET /api/v1/audit` filters; newest first, cursor-paginated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[param(value_type = Option<String>)]
    pub since: Option<Timestamp>,
    #[schema(value_type = Option<String>, format = DateTime)]
    #[param(value_type = Option<String>)]
    pub until: Option<Timestamp>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

impl AuditPage {
    /// A page from up to `limit + 1` entries read in order: the extra one
    /// only tells that there is a next page, whose cursor is the last kept id.
    pub fn from_overfetch(mut entries: Vec<AuditEntry>, limit: usize) -> AuditPage {
        let next_cursor = if entries.len() > limit {
            entries.truncate(limit);
            entries.last().map(|e| e.id.clone())
        } else {
            None
        };
        AuditPage {
            entries,
            next_cursor,
        }
    }
}

/// Checks an account or token name: `[A-Za-z0-9_.@-]{1,64}`.
pub fn check_name(field: &str, s: &str) -> Result<(), crate::ValidationError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(crate::ValidationError::new(
            field,
            format!("{s:?} must be 1-64 characters of letters, digits, _ - . @"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_order_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!("operator".parse::<Role>(), Ok(Role::Operator));
        assert!("root".parse::<Role>().unwrap_err().contains("viewer"));
    }

    #[test]
    fn token_request_reads_human_durations() {
        let r: TokenRequest =
            serde_json::from_str(r#"{"name":"ci","role":"viewer","expires_in":"30d"}"#)
                .expect("parse");
        assert_eq!(r.expires_in, Some(Dur::secs(30 * 86_400)));
        assert_eq!(r.permissions, Permissions::default());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("user", "alice@example").is_ok());
        assert_eq!(check_name("user", "a b").unwrap_err().field, "user");
        assert!(check_name("user", "").is_err());
    }
}
