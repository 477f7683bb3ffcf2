//! Who is calling ([`Principal`], found once per request by the
//! `identify` middleware) and what the role matrix lets them do.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::StatusCode;
use cronsun_proto::auth::{AuditEntry, Me, Permissions, Role, Via};
use cronsun_proto::Job;
use jiff::Timestamp;

use crate::api::error::{ApiResult, Failure};

/// The authenticated caller of one request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user: String,
    pub role: Role,
    /// Job groups the role applies to; empty = all.
    pub groups: Vec<String>,
    pub permissions: Permissions,
    pub via: Via,
    /// Client address (`socket` for the Unix socket).
    pub from: String,
    /// Cookie sessions: expiry and CSRF token.
    pub session: Option<(Timestamp, String)>,
}

impl Principal {
    pub fn me(&self) -> Me {
        Me {
            user: self.user.clone(),
            role: self.role,
            groups: self.groups.clone(),
            permissions: Permissions {
                read_output: self.may_read_output(),
                privileged_run_as: self.may_run_privileged(),
            },
            csrf_token: self.session.as_ref().map(|(_, c)| c.clone()),
            expires_at: self.session.as_ref().map(|(t, _)| *t),
            via: self.via,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// 403 unless the role is at least `role`.
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            return Ok(());
        }
        Err(forbidden(format!(
            "this needs role {role} (you are {} with role {})",
            self.user, self.role
        )))
    }

    pub fn may_read_output(&self) -> bool {
        self.is_admin() || self.permissions.read_output
    }

    pub fn may_run_privileged(&self) -> bool {
        self.is_admin() || self.permissions.privileged_run_as
    }

    /// 403 unless the caller may read run output.
    pub fn require_output(&self) -> ApiResult<()> {
        if self.may_read_output() {
            return Ok(());
        }
        Err(forbidden(format!(
            "reading run output needs permission read_output ({} does not have it)",
            self.user
        )))
    }

    /// Whether the caller's groups cover `group`.
    pub fn sees_group(&self, group: &str) -> bool {
        self.groups.is_empty() || self.groups.iter().any(|g| g == group)
    }

    /// 403 unless the job's group is within the caller's groups.
    pub fn require_job(&self, job: &Job) -> ApiResult<()> {
        if self.sees_group(&job.group) {
            return Ok(());
        }
        Err(forbidden(format!(
            "job {:?} is in group {:?}, outside your groups {:?}",
            job.id, job.group, self.groups
        )))
    }

    /// 403 if `job` runs as a privileged user (root, or anyone but
    /// `default_run_as`) and the caller lacks `privileged_run_as`.
    pub fn require_run_as(&self, job: &Job, default_run_as: &str) -> ApiResult<()> {
        let privileged = job
            .run_as
            .as_ref()
            .is_some_and(|r| r.user == "root" || r.user != default_run_as);
        if !privileged || self.may_run_privileged() {
            return Ok(());
        }
        Err(forbidden(format!(
            "job {:?} runs as {:?}: that needs permission privileged_run_as",
            job.id,
            job.run_as.as_ref().map(|r| r.user.as_str()).unwrap_or("")
        ))
        .field("run_as"))
    }

    /// An audit entry of this caller's action.
    pub fn audit(&self, action: &str, target: &str, at: Timestamp) -> AuditEntry {
        AuditEntry {
            id: String::new(),
            at,
            actor: self.user.clone(),
            via: self.via,
            from: self.from.clone(),
            action: action.into(),
            target: target.into(),
            before: None,
            after: None,
        }
    }
}

pub fn forbidden(message: String) -> Failure {
    Failure::new(StatusCode::FORBIDDEN, message)
}

pub fn unauthenticated() -> Failure {
    Failure::new(
        StatusCode::UNAUTHORIZED,
        "authentication required: log in (POST /api/v1/session), send `Authorization: Bearer <token>` (an API token, or admin.token in the state dir), or use the local socket as root or a member of cronsun-admin",
    )
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(unauthenticated)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn principal(role: Role, groups: &[&str]) -> Principal {
        Principal {
            user: "u".into(),
            role,
            groups: groups.iter().map(|g| g.to_string()).collect(),
            permissions: Permissions::default(),
            via: Via::Token,
            from: "127.0.0.1".into(),
            session: None,
        }
    }

    fn job(group: &str, run_as: Option<&str>) -> Job {
        let mut v = serde_json::json!({
            "id": "j", "group": group, "command": ["true"], "rules": [{"schedule": "@hourly"}]
        });
        if let Some(u) = run_as {
            v["run_as"] = serde_json::json!(u);
        }
        serde_json::from_value(v).expect("job")
    }

    #[test]
    fn roles_and_groups() {
        let op = principal(Role::Operator, &["db"]);
        assert!(op.require(Role::Viewer).is_ok());
        assert_eq!(
            op.require(Role::Admin).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(op.require_job(&job("db", None)).is_ok());
        assert!(op.require_job(&job("web", None)).is_err());
        assert!(principal(Role::Viewer, &[]).sees_group("anything"));
    }

    #[test]
    fn privileged_run_as_and_output_are_separate_permissions() {
        let mut op = principal(Role::Operator, &[]);
        assert!(op.require_run_as(&job("g", None), "nobody").is_ok());
        assert!(op
            .require_run_as(&job("g", Some("nobody")), "nobody")
            .is_ok());
        assert!(op
            .require_run_as(&job("g", Some("root")), "nobody")
            .is_err());
        assert!(op.require_output().is_err());
        op.permissions.privileged_run_as = true;
        assert!(op.require_run_as(&job("g", Some("root")), "nobody").is_ok());
        assert!(op.require_output().is_err());
        assert!(principal(Role::Admin, &[]).require_output().is_ok());
    }
}
