//! API access (DESIGN §5): always authenticated, also on loopback.
//!
//! Two middlewares, both in [`crate::api::router`]:
//! - [`identify`] (every request): checks the Host header against `[web]
//!   hosts` (DNS rebinding), finds the [`Principal`] once and puts it in the
//!   request's extensions, and checks the CSRF token of cookie-authenticated
//!   mutations. Credentials, in order:
//!   - Unix socket: the peer's credentials (`SO_PEERCRED`) must be root, the
//!     daemon's own user, or a member of group `cronsun-admin` (admin);
//!   - `Authorization: Bearer <token>`: the admin token in
//!     `<state_dir>/admin.token` (admin), or an API token `cst_<id>.<secret>`
//!     whose SHA-256 is stored (its role, groups, permissions, expiry);
//!   - the `cronsun_session` cookie ([`session`]), checked against the
//!     account's generation.
//! - [`authorize`] (API routes): the route's [`rules::Need`].

pub mod bootstrap;
mod credentials;
pub mod crypto;
pub mod limiter;
pub mod password;
pub mod principal;
pub mod rules;
pub mod session;

use std::net::SocketAddr;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use cronsun_proto::auth::{Permissions, Role, Via};
use tokio::net::UnixListener;

use super::error::Failure;
use super::AppState;
pub use credentials::{Auth, TokenCheck, TOKEN_PREFIX};
pub use principal::Principal;
use rules::Need;

/// Group whose members may use the local socket.
pub const ADMIN_GROUP: &str = "cronsun-admin";

/// Credentials of a Unix-socket peer, taken when the connection is accepted.
#[derive(Clone, Debug)]
pub struct PeerCred {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Connected<IncomingStream<'_, UnixListener>> for PeerCred {
    fn connect_info(stream: IncomingStream<'_, UnixListener>) -> Self {
        match stream.io().peer_cred() {
            Ok(c) => PeerCred {
                uid: Some(c.uid()),
                gid: Some(c.gid()),
            },
            Err(_) => PeerCred {
                uid: None,
                gid: None,
            },
        }
    }
}

/// Whether a local peer may administer cronsun.
pub fn peer_is_admin(p: &PeerCred) -> bool {
    let Some(uid) = p.uid else {
        return false;
    };
    if uid == 0 || uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    let Ok(Some(group)) = nix::unistd::Group::from_name(ADMIN_GROUP) else {
        return false;
    };
    if p.gid == Some(group.gid.as_raw()) {
        return true;
    }
    match nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)) {
        Ok(Some(user)) => user.gid == group.gid || group.mem.contains(&user.name),
        _ => false,
    }
}

fn is_mutation(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// The client's address as audit entries and login limits name it.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_addr(&parts.extensions)))
    }
}

fn client_addr(ext: &axum::http::Extensions) -> String {
    if ext.get::<ConnectInfo<PeerCred>>().is_some() {
        return "socket".into();
    }
    ext.get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string())
}

/// Why presented credentials were refused (the request went on anonymous).
#[derive(Clone)]
struct Refused(String);

/// Header carrying the CSRF token of cookie-authenticated mutations.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Middleware on every route: Host check, identification, CSRF.
pub async fn identify(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, Failure> {
    let auth = &state.auth;
    // Liveness says nothing secret: any Host, any peer, no credentials.
    if req.uri().path() == "/healthz" {
        return Ok(next.run(req).await);
    }
    if let Some(ConnectInfo(p)) = req.extensions().get::<ConnectInfo<PeerCred>>() {
        if !peer_is_admin(p) {
            return Err(Failure::new(
                StatusCode::FORBIDDEN,
                format!("the local socket is for root and members of group {ADMIN_GROUP}"),
            ));
        }
        let user = p
            .uid
            .and_then(|u| nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(u)).ok())
            .flatten()
            .map_or_else(|| format!("uid {:?}", p.uid), |u| u.name);
        let principal = Principal {
            user,
            role: Role::Admin,
            groups: vec![],
            permissions: Permissions {
                read_output: true,
                privileged_run_as: true,
            },
            via: Via::Socket,
            from: "socket".into(),
            session: None,
        };
        req.extensions_mut().insert(principal);
        return Ok(next.run(req).await);
    }
    auth.check_host(&req)?;
    let from = client_addr(req.extensions());
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let cookie = req
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie_value(h, session::COOKIE))
        .map(str::to_string);
    let principal = match (bearer, cookie) {
        (Some(t), _) => match auth.bearer(&t, from).await {
            Ok(p) => Some(p),
            // Public routes still answer; the others say why the token failed.
            Err(f) if f.status == StatusCode::UNAUTHORIZED => {
                req.extensions_mut().insert(Refused(f.body.message));
                None
            }
            Err(f) => return Err(f),
        },
        (None, Some(c)) if !c.is_empty() => auth.cookie(&c, from).await?,
        _ => None,
    };
    if let Some(p) = principal {
        if let Some((_, csrf)) = &p.session {
            let login = matches!(
                req.uri().path(),
                "/api/v1/session" | "/api/v1/session/token"
            ) && req.method() == Method::POST;
            if is_mutation(req.method()) && !login {
                let sent = req
                    .headers()
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !crypto::same(sent.as_bytes(), csrf.as_bytes()) {
                    return Err(Failure::new(
                        StatusCode::FORBIDDEN,
                        "missing or wrong CSRF token: send the csrf_token of GET /api/v1/session as X-CSRF-Token",
                    ));
                }
            }
        }
        req.extensions_mut().insert(p);
    }
    Ok(next.run(req).await)
}

/// Middleware on API routes: the route's rule ([`rules::RULES`]); routes
/// without one are refused.
pub async fn authorize(req: Request, next: Next) -> Result<Response, Failure> {
    let path = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
    let need = rules::need(req.method().as_str(), &path).ok_or_else(|| {
        Failure::new(
            StatusCode::FORBIDDEN,
            format!(
                "{} {path} has no authorization rule (api/auth/rules.rs)",
                req.method()
            ),
        )
    })?;
    if need != Need::Anyone {
        let p = req.extensions().get::<Principal>().ok_or_else(|| {
            match req.extensions().get::<Refused>() {
                Some(Refused(why)) => Failure::new(StatusCode::UNAUTHORIZED, why.clone()),
                None => principal::unauthenticated(),
            }
        })?;
        if let Need::Role(r) = need {
            p.require(r)?;
        }
    }
    Ok(next.run(req).await)
}
#[cfg(test)]
mod tests {
    use super::credentials::{is_ip_literal, strip_port};
    use super::*;

    #[test]
    fn token_check() {
        let t = TokenCheck::new("abc\n");
        assert!(t.accepts("abc"));
        assert!(!t.accepts("abd"));
        assert!(!t.accepts(""));
    }

    #[test]
    fn host_ports_are_stripped() {
        assert_eq!(strip_port("localhost:7079"), "localhost");
        assert_eq!(strip_port("[::1]:7079"), "[::1]");
        assert_eq!(strip_port("example.com"), "example.com");
        assert_eq!(strip_port("::1"), "::1");
        assert!(is_ip_literal("10.0.0.5") && is_ip_literal("[fe80::1]"));
        assert!(!is_ip_literal("evil.example") && !is_ip_literal("10.0.0.5.nip.io"));
    }

    #[test]
    fn root_and_self_are_admins() {
        assert!(peer_is_admin(&PeerCred {
            uid: Some(0),
            gid: Some(0)
        }));
        let me = nix::unistd::geteuid().as_raw();
        assert!(peer_is_admin(&PeerCred {
            uid: Some(me),
            gid: None
        }));
        assert!(!peer_is_admin(&PeerCred {
            uid: None,
            gid: None
        }));
    }
}
