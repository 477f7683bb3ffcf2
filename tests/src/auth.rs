//! Accounts, sessions and tokens for the authentication tests: helpers on
//! [`Daemon`] that set them up through the API (as the admin token), and
//! [`Caller`], one way of calling the API (anonymous, a token, a session
//! cookie with or without its CSRF token, a wrong Host).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{json, Value};

use cronsun_proto::auth::{Me, TokenCreated};

use crate::daemon::Daemon;
use crate::http::Response;

/// A logged-in browser: the session cookie and its CSRF token.
#[derive(Clone, Debug)]
pub struct Session {
    pub cookie: String,
    pub csrf: String,
    pub me: Me,
}

impl Session {
    /// The `Cookie` header value.
    pub fn cookie_header(&self) -> String {
        format!("cronsun_session={}", self.cookie)
    }
}

impl Daemon {
    /// The password of the first-start `admin` account.
    #[track_caller]
    pub fn initial_admin_password(&self) -> String {
        let p = self.state_dir().join("initial-admin-password");
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("read {}: {e}\n{}", p.display(), self.logs()))
            .trim()
            .to_string()
    }

    /// Creates an account (as the admin token); expects 201.
    #[track_caller]
    pub fn add_account(
        &self,
        user: &str,
        password: &str,
        role: &str,
        groups: &[&str],
        perms: Value,
    ) {
        self.api_post(
            "/api/v1/accounts",
            &json!({"user": user, "password": password, "role": role,
                    "groups": groups, "permissions": perms}),
        )
        .expect_status(201);
    }

    /// Creates an API token (as the admin token); expects 201.
    #[track_caller]
    pub fn add_token(
        &self,
        name: &str,
        role: &str,
        groups: &[&str],
        expires_in: Option<&str>,
    ) -> TokenCreated {
        self.api_post(
            "/api/v1/tokens",
            &json!({"name": name, "role": role, "groups": groups, "expires_in": expires_in}),
        )
        .expect_status(201)
        .json()
    }

    /// `POST /api/v1/session`.
    #[track_caller]
    pub fn login(&self, user: &str, password: &str) -> Response {
        let body = serde_json::to_vec(&json!({"user": user, "password": password})).expect("json");
        self.anonymous(Method::POST, "/api/v1/session", Some(body))
    }

    /// Logs in; expects 200 and a `cronsun_session` cookie.
    #[track_caller]
    pub fn session(&self, user: &str, password: &str) -> Session {
        let r = self.login(user, password).expect_status(200);
        let set = r
            .header("set-cookie")
            .unwrap_or_else(|| panic!("no Set-Cookie: {r}"));
        let cookie = set
            .split(';')
            .next()
            .and_then(|kv| kv.strip_prefix("cronsun_session="))
            .unwrap_or_else(|| panic!("not a session cookie: {set}"))
            .to_string();
        let me: Me = r.json();
        Session {
            cookie,
            csrf: me
                .csrf_token
                .clone()
                .expect("a cookie session has a CSRF token"),
            me,
        }
    }

    /// The newest audit entries (as the admin token) matching `query`.
    #[track_caller]
    pub fn audit(&self, query: &str) -> Vec<cronsun_proto::auth::AuditEntry> {
        let page: cronsun_proto::auth::AuditPage = self
            .api_get(&format!("/api/v1/audit?{query}"))
            .expect_status(200)
            .json();
        page.entries
    }
}

/// Sessions older than this are renewed before use (tests run with short
/// session lifetimes).
const RENEW_AFTER: Duration = Duration::from_secs(2);

/// One way of calling the API.
pub enum Caller {
    Anonymous,
    Bearer(String),
    /// A session renewed by logging in again when older than [`RENEW_AFTER`];
    /// `csrf` says whether mutations carry the CSRF token.
    Session {
        user: String,
        password: String,
        csrf: bool,
        current: RefCell<Option<Box<(Instant, Session)>>>,
    },
    /// A fixed cookie (e.g. an expired session).
    Cookie(String),
    /// A Bearer token with a foreign Host header.
    WrongHost(String),
}

impl Caller {
    pub fn session(user: &str, password: &str, csrf: bool) -> Caller {
        Caller::Session {
            user: user.into(),
            password: password.into(),
            csrf,
            current: RefCell::new(None),
        }
    }

    #[track_caller]
    pub fn send(&self, d: &Daemon, method: Method, path: &str, body: Option<&Value>) -> Response {
        let body = body.map(|b| serde_json::to_vec(b).expect("json"));
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut token = None;
        match self {
            Caller::Anonymous => {}
            Caller::Bearer(t) => token = Some(t.clone()),
            Caller::WrongHost(t) => {
                token = Some(t.clone());
                headers.push(("host".into(), "evil.example:80".into()));
            }
            Caller::Cookie(c) => headers.push(("cookie".into(), format!("cronsun_session={c}"))),
            Caller::Session {
                user,
                password,
                csrf,
                current,
            } => {
                let mut cur = current.borrow_mut();
                if cur.as_ref().is_none_or(|b| b.0.elapsed() > RENEW_AFTER) {
                    *cur = Some(Box::new((Instant::now(), d.session(user, password))));
                }
                let s = &cur.as_ref().expect("a session").1;
                headers.push(("cookie".into(), s.cookie_header()));
                if *csrf {
                    headers.push(("x-csrf-token".into(), s.csrf.clone()));
                }
            }
        }
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        d.request(method, path, token.as_deref(), &h, body)
    }
}
