//! API access (DESIGN §5): always authenticated, also on loopback.
//!
//! - Unix socket: the peer's credentials (`SO_PEERCRED`) must be root, the
//!   daemon's own user, or a member of group `cronsun-admin`; checked per
//!   connection when it is accepted.
//! - HTTP: `Authorization: Bearer <token>`, compared in constant time with
//!   the admin token in `<state_dir>/admin.token`.
//!
//! Roles and accounts come with the web UI; today every authenticated caller
//! is an admin.

use std::sync::Arc;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::IncomingStream;
use sha2::{Digest, Sha256};
use tokio::net::UnixListener;

use super::error::Failure;
use super::AppState;

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

/// Middleware for every authenticated route.
pub async fn require_auth(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Result<Response, Failure> {
    if let Some(ConnectInfo(p)) = req.extensions().get::<ConnectInfo<PeerCred>>() {
        if peer_is_admin(p) {
            return Ok(next.run(req).await);
        }
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!("the local socket is for root and members of group {ADMIN_GROUP}"),
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(t) if state.token.accepts(t) => Ok(next.run(req).await),
        Some(_) => Err(Failure::new(StatusCode::UNAUTHORIZED, "invalid token")),
        None => Err(Failure::new(
            StatusCode::UNAUTHORIZED,
            "authentication required: send `Authorization: Bearer <token>` (the admin token is in admin.token in the state dir), or use the local socket as root or a member of cronsun-admin",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let t = TokenCheck::new("abc\n");
        assert!(t.accepts("abc"));
        assert!(!t.accepts("abd"));
        assert!(!t.accepts(""));
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
