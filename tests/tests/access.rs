//! Who may call the API, and as whom jobs run.

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use http::Method;
use serde_json::json;

use cronsun_proto::api::Health;
use cronsun_tests::daemon::{current_user, is_root};
use cronsun_tests::{fmt_records, job, unique_id, ConfigOverrides, Daemon, RunStatus};

/// Every `/api/v1` route needs credentials, also on loopback; `/healthz`
/// does not and says nothing secret; the admin token file is 0600.
#[test]
fn anonymous_api_calls_get_401_and_healthz_is_open() {
    let d = Daemon::start_default();
    for (method, path) in [
        (Method::GET, "/api/v1/jobs"),
        (Method::GET, "/api/v1/runs"),
        (Method::GET, "/api/v1/nodes"),
        (Method::GET, "/api/v1/pause"),
        (Method::POST, "/api/v1/jobs"),
        (Method::GET, "/metrics"),
    ] {
        let body = (method == Method::POST).then(|| {
            serde_json::to_vec(&json!({
                "id": "sneaky", "command": ["true"], "rules": [{ "schedule": "* * * * *" }]
            }))
            .expect("json")
        });
        let r = d.anonymous(method.clone(), path, body);
        assert_eq!(r.status, 401, "anonymous {method} {path}: {r}");
        if path.starts_with("/api/") {
            let e = r.api_error();
            assert_eq!(e.error, "unauthorized", "{r}");
        }
    }
    let bad = d.request(
        Method::GET,
        "/api/v1/jobs",
        Some("not-the-token"),
        &[],
        None,
    );
    assert_eq!(bad.status, 401, "a wrong token: {bad}");
    assert!(
        d.get_job("sneaky").is_none(),
        "the anonymous POST stored nothing"
    );

    let ok = d.api_get("/api/v1/jobs");
    assert_eq!(ok.status, 200, "the admin token works: {ok}");

    let h = d.anonymous_get("/healthz").expect_status(200);
    let health: Health = h.json();
    assert_eq!(health.status, "ok", "{h}");
    assert!(
        !h.text().contains(d.token()),
        "/healthz must not reveal the token: {h}"
    );

    let openapi = d.anonymous_get("/api/v1/openapi.json");
    assert_eq!(
        openapi.status, 200,
        "the OpenAPI document is public: {openapi}"
    );

    let token_file = d.state_dir().join("admin.token");
    let mode = std::fs::metadata(&token_file)
        .expect("admin.token exists")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "{} mode {mode:o}",
        token_file.display()
    );
}

fn id_output(args: &[&str]) -> String {
    let out = Command::new("id").args(args).output().expect("run id(1)");
    assert!(out.status.success(), "id {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `run_as` user outside `allowed_users` is refused: the record is
/// `failed` with no exit code and a reason saying "refused"; an allowed user
/// runs with its own uid and groups.
#[test]
fn run_as_is_limited_to_allowed_users_and_uses_their_uid_and_groups() {
    if !is_root() {
        eprintln!("skipped: run_as needs the daemon to run as root");
        return;
    }
    let me = current_user();
    let d = Daemon::start(ConfigOverrides::new().allowed_users(&[&me, "nobody"]));

    let refused = unique_id("refused");
    d.create_job(&job(json!({
        "id": refused,
        "command": "id -u",
        "run_as": "daemon",
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run = d.run_now(&refused);
    let r = d.wait_for_final(&run, Duration::from_secs(15));
    let desc = fmt_records(std::slice::from_ref(&r));
    assert_eq!(r.status, RunStatus::Failed, "{desc}");
    assert_eq!(r.exit_code, None, "nothing was executed: {desc}");
    assert_eq!(r.output_bytes, 0, "nothing was executed: {desc}");
    assert!(
        r.reason.as_deref().unwrap_or("").contains("refused"),
        "the reason says the spawn was refused: {desc}"
    );

    let allowed = unique_id("allowed");
    d.create_job(&job(json!({
        "id": allowed,
        "command": "id -u; id -G; id -un",
        "shell": true,
        "run_as": "nobody",
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run = d.run_now(&allowed);
    let r = d.wait_for_status(&run, RunStatus::Success, Duration::from_secs(15));
    let lines: Vec<&str> = r.output_head.lines().collect();
    let sorted_words = |s: &str| {
        let mut v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        v.sort();
        v
    };
    let want_groups = sorted_words(&id_output(&["-G", "nobody"]));
    let got_groups = sorted_words(lines.get(1).copied().unwrap_or(""));
    assert_eq!(
        lines.first().copied(),
        Some(id_output(&["-u", "nobody"]).as_str()),
        "uid of nobody: {}",
        fmt_records(std::slice::from_ref(&r))
    );
    assert_eq!(
        got_groups,
        want_groups,
        "groups of nobody: {}",
        fmt_records(std::slice::from_ref(&r))
    );
    assert_eq!(
        lines.get(2).copied(),
        Some("nobody"),
        "{}",
        fmt_records(std::slice::from_ref(&r))
    );
    assert!(
        r.run_as.starts_with("nobody"),
        "the record names the user: {}",
        fmt_records(std::slice::from_ref(&r))
    );
}
