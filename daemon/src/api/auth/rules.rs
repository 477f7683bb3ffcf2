//! The one list of what each route needs (the contract's role matrix). The
//! `authorize` middleware looks every request up here and refuses routes
//! that have no rule, so a new route is closed until it gets one; the
//! authorization table test checks this list against the OpenAPI document.

use cronsun_proto::auth::Role;

/// What a route needs before its handler runs. Handlers add the finer
/// checks: job groups, run output, privileged `run_as`, own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// No credentials (login, health, the API description).
    Anyone,
    /// Any authenticated caller.
    Login,
    /// At least this role.
    Role(Role),
}

/// `(method, route path as in the router, need)`.
pub const RULES: &[(&str, &str, Need)] = &[
    ("GET", "/healthz", Need::Anyone),
    ("GET", "/api/v1/openapi.json", Need::Anyone),
    ("GET", "/metrics", Need::Role(Role::Viewer)),
    ("POST", "/api/v1/session", Need::Anyone),
    ("GET", "/api/v1/session", Need::Login),
    ("DELETE", "/api/v1/session", Need::Login),
    ("POST", "/api/v1/session/token", Need::Anyone),
    ("GET", "/api/v1/jobs", Need::Role(Role::Viewer)),
    ("POST", "/api/v1/jobs", Need::Role(Role::Admin)),
    ("POST", "/api/v1/jobs/apply", Need::Role(Role::Admin)),
    ("GET", "/api/v1/jobs/{id}", Need::Role(Role::Viewer)),
    ("PUT", "/api/v1/jobs/{id}", Need::Role(Role::Admin)),
    ("DELETE", "/api/v1/jobs/{id}", Need::Role(Role::Admin)),
    (
        "POST",
        "/api/v1/jobs/{id}/pause",
        Need::Role(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/jobs/{id}/resume",
        Need::Role(Role::Operator),
    ),
    ("POST", "/api/v1/jobs/{id}/run", Need::Role(Role::Operator)),
    ("GET", "/api/v1/pause", Need::Role(Role::Viewer)),
    ("PUT", "/api/v1/pause", Need::Role(Role::Admin)),
    ("DELETE", "/api/v1/pause", Need::Role(Role::Admin)),
    ("GET", "/api/v1/runs", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/runs/{id}", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/runs/{id}/stream", Need::Role(Role::Viewer)),
    ("POST", "/api/v1/runs/{id}/kill", Need::Role(Role::Operator)),
    ("GET", "/api/v1/nodes", Need::Role(Role::Viewer)),
    (
        "POST",
        "/api/v1/nodes/{id}/drain",
        Need::Role(Role::Operator),
    ),
    (
        "POST",
        "/api/v1/nodes/{id}/undrain",
        Need::Role(Role::Operator),
    ),
    ("GET", "/api/v1/schedule/preview", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/stats/daily", Need::Role(Role::Viewer)),
    ("GET", "/api/v1/accounts", Need::Role(Role::Admin)),
    ("POST", "/api/v1/accounts", Need::Role(Role::Admin)),
    ("PUT", "/api/v1/accounts/{user}", Need::Role(Role::Admin)),
    ("DELETE", "/api/v1/accounts/{user}", Need::Role(Role::Admin)),
    ("POST", "/api/v1/accounts/{user}/password", Need::Login),
    ("GET", "/api/v1/tokens", Need::Role(Role::Admin)),
    ("POST", "/api/v1/tokens", Need::Role(Role::Admin)),
    ("DELETE", "/api/v1/tokens/{id}", Need::Role(Role::Admin)),
    ("GET", "/api/v1/audit", Need::Role(Role::Admin)),
];

/// The rule of a route (`HEAD` follows `GET`).
pub fn need(method: &str, path: &str) -> Option<Need> {
    let method = if method == "HEAD" { "GET" } else { method };
    RULES
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map(|(_, _, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_unique_and_found() {
        let mut seen = std::collections::HashSet::new();
        for (m, p, _) in RULES {
            assert!(seen.insert((m, p)), "{m} {p} listed twice");
        }
        assert_eq!(need("HEAD", "/api/v1/jobs"), Some(Need::Role(Role::Viewer)));
        assert_eq!(need("PATCH", "/api/v1/jobs"), None);
    }
}
