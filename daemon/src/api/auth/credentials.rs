//! Credentials: the admin token, API tokens, session cookies and the Host
//! check, each turned into a [`Principal`] or a refusal.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use cronsun_proto::auth::{Permissions, Role, Via};
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use super::session::{Claims, SessionKey};
use super::{crypto, limiter, Principal};
use crate::api::error::Failure;
use crate::store::{Account, AuthStore};

/// The secret the HTTP API accepts, stored hashed so comparisons are
/// constant-time and the token is not kept in memory in clear.
#[derive(Clone)]
pub struct TokenCheck {
    digest: Arc<[u8; 32]>,
}

impl TokenCheck {
    pub fn new(token: &str) -> TokenCheck {
        TokenCheck {
            digest: Arc::new(Sha256::digest(token.trim().as_bytes()).into()),
        }
    }

    pub fn accepts(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        d.iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Prefix of API token secrets.
pub const TOKEN_PREFIX: &str = "cst_";

/// The authentication state every request can reach (one field of
/// [`crate::api::AppState`]).
pub struct Auth {
    pub store: Arc<dyn AuthStore>,
    pub admin_token: TokenCheck,
    pub key: SessionKey,
    pub limiter: limiter::LoginLimiter,
    pub session_ttl: Duration,
    /// Cookies get `Secure` (the listener speaks TLS).
    pub secure: bool,
    /// Host names (lowercase, no port) the Host header may carry.
    pub hosts: Vec<String>,
    /// `[security] default_run_as`: other `run_as` users are privileged.
    pub default_run_as: String,
}

impl Auth {
    /// A principal for an account (cookie sessions).
    fn account_principal(a: &Account, from: String, session: (Timestamp, String)) -> Principal {
        Principal {
            user: a.user.clone(),
            role: a.role,
            groups: a.groups.clone(),
            permissions: a.permissions,
            via: Via::Session,
            from,
            session: Some(session),
        }
    }

    /// The caller behind a Bearer token, or why it is refused.
    pub(super) async fn bearer(&self, presented: &str, from: String) -> Result<Principal, Failure> {
        if self.admin_token.accepts(presented) {
            return Ok(Principal {
                user: "admin.token".into(),
                role: Role::Admin,
                groups: vec![],
                permissions: Permissions {
                    read_output: true,
                    privileged_run_as: true,
                },
                via: Via::Token,
                from,
                session: None,
            });
        }
        let invalid = || Failure::new(StatusCode::UNAUTHORIZED, "invalid token");
        let (id, secret) = presented
            .trim()
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|t| t.split_once('.'))
            .ok_or_else(invalid)?;
        let t = self.store.token(id).await?.ok_or_else(invalid)?;
        let digest = crypto::sha256_hex(secret.as_bytes());
        if !crypto::same(digest.as_bytes(), t.secret_sha256.as_bytes()) {
            return Err(invalid());
        }
        if t.revoked {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                format!("token {id} was revoked"),
            ));
        }
        if t.expires_at.is_some_and(|e| e <= Timestamp::now()) {
            return Err(Failure::new(
                StatusCode::UNAUTHORIZED,
                format!("token {id} has expired"),
            ));
        }
        if let Some(user) = &t.account {
            let ended = || {
                Failure::new(
                    StatusCode::UNAUTHORIZED,
                    format!("token {id} was a login of {user:?}, which has ended (password or rights changed, or account removed); log in again"),
                )
            };
            let a = self.store.account(user).await?.ok_or_else(ended)?;
            if a.disabled || a.generation != t.generation {
                return Err(ended());
            }
            return Ok(Principal {
                via: Via::Token,
                session: None,
                ..Self::account_principal(&a, from, (Timestamp::MAX, String::new()))
            });
        }
        Ok(Principal {
            user: format!("token:{}", t.name),
            role: t.role,
            groups: t.groups,
            permissions: t.permissions,
            via: Via::Token,
            from,
            session: None,
        })
    }

    /// The caller behind a session cookie; `None` when the cookie is
    /// forged, expired or revoked (the request is then anonymous).
    pub(super) async fn cookie(
        &self,
        value: &str,
        from: String,
    ) -> Result<Option<Principal>, Failure> {
        let Some(c) = self.key.open(value) else {
            return Ok(None);
        };
        let Ok(expires) = Timestamp::from_second(c.exp) else {
            return Ok(None);
        };
        if expires <= Timestamp::now() {
            return Ok(None);
        }
        let Some(a) = self.store.account(&c.u).await? else {
            return Ok(None);
        };
        if a.disabled || a.generation != c.g {
            return Ok(None);
        }
        let csrf = self.key.csrf(&c);
        Ok(Some(Self::account_principal(&a, from, (expires, csrf))))
    }

    /// A new session for `a`: the cookie value and the principal it stands for.
    pub fn start_session(&self, a: &Account, from: String) -> (String, Principal) {
        let ttl = i64::try_from(self.session_ttl.as_secs()).unwrap_or(i64::MAX);
        let exp = Timestamp::now().as_second().saturating_add(ttl);
        let claims = Claims {
            u: a.user.clone(),
            g: a.generation,
            exp,
            n: crypto::random_b64(18),
        };
        let expires = Timestamp::from_second(exp).unwrap_or(Timestamp::MAX);
        let csrf = self.key.csrf(&claims);
        (
            self.key.seal(&claims),
            Self::account_principal(a, from, (expires, csrf)),
        )
    }

    /// 421 unless the Host header names one of the allowed hosts.
    pub(crate) fn check_host(&self, req: &Request) -> Result<(), Failure> {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().host())
            .unwrap_or("");
        let name = strip_port(host).to_ascii_lowercase();
        if self.hosts.contains(&name) || is_ip_literal(&name) {
            return Ok(());
        }
        Err(Failure::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {host:?} is not served here (allowed: {}); add it to [web] hosts",
                self.hosts.join(", ")
            ),
        ))
    }
}

/// An address literal (`10.0.0.5`, `[fe80::1]`): DNS rebinding needs a
/// name in the Host header, so literals (the machine reached by address,
/// e.g. a `0.0.0.0` listener) are always accepted.
pub(super) fn is_ip_literal(name: &str) -> bool {
    let bare = name
        .strip_prefix('[')
        .and_then(|n| n.strip_suffix(']'))
        .unwrap_or(name);
    bare.parse::<std::net::IpAddr>().is_ok()
}

/// `name:port`, `[v6]:port` or a bare name → the name (`[v6]` keeps brackets).
pub(super) fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.contains(':') => {
            name
        }
        _ => host,
    }
}
