//! Accounts, sessions, tokens and the audit log against a real cronsund:
//! the first-start password, login limits, password changes ending
//! sessions, token expiry and revocation, audit entries committed with
//! their change, and the `cronsun login|user|token` commands.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use cronsun_tests::auth::Caller;
use cronsun_tests::{bins, poll_until, run_cli, ConfigOverrides, Daemon};

#[test]
fn initial_admin_password_is_private_works_and_survives_restarts() {
    let mut d = Daemon::start_default();
    let path = d.state_dir().join("initial-admin-password");
    let mode = std::fs::metadata(&path)
        .expect("password file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    let pw = d.initial_admin_password();
    assert!(pw.len() >= 16, "a strong random password: {pw:?}");
    assert!(!d.logs().contains(&pw), "the password must not be logged");
    let s = d.session("admin", &pw);
    assert_eq!(s.me.role, cronsun_proto::auth::Role::Admin);
    d.stop();
    d.restart();
    assert_eq!(
        d.initial_admin_password(),
        pw,
        "not rewritten at a later start"
    );
    d.session("admin", &pw);
}

#[test]
fn failed_logins_are_rate_limited_per_user() {
    let d = Daemon::start_default();
    let pw = d.initial_admin_password();
    for i in 0..5 {
        let r = d.login("admin", "wrong-password");
        assert_eq!(r.status, 401, "attempt {i}: {r}");
    }
    let r = d.login("admin", "wrong-password");
    assert_eq!(r.status, 429, "{r}");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("Retry-After in seconds: {r}"));
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(
        d.login("admin", &pw).status,
        429,
        "even the right password waits"
    );
    // Other users are not locked out by admin's failures.
    d.add_account("carol", "carol-password", "viewer", &[], json!({}));
    d.session("carol", "carol-password");
}

#[test]
fn password_change_needs_the_current_one_and_ends_sessions() {
    let d = Daemon::start_default();
    d.add_account("alice", "alice-password", "viewer", &[], json!({}));
    let alice = Caller::session("alice", "alice-password", true);
    let me: Value = alice
        .send(&d, Method::GET, "/api/v1/session", None)
        .expect_status(200)
        .json();
    assert_eq!(me["via"], "session");
    let old = d.session("alice", "alice-password");

    let wrong = alice.send(
        &d,
        Method::POST,
        "/api/v1/accounts/alice/password",
        Some(&json!({"password": "new-password-1", "current_password": "nope"})),
    );
    assert_eq!(wrong.status, 403, "{wrong}");
    assert_eq!(wrong.api_error().field.as_deref(), Some("current_password"));
    let short = alice.send(
        &d,
        Method::POST,
        "/api/v1/accounts/alice/password",
        Some(&json!({"password": "short", "current_password": "alice-password"})),
    );
    assert_eq!(short.status, 422, "{short}");
    alice
        .send(
            &d,
            Method::POST,
            "/api/v1/accounts/alice/password",
            Some(&json!({"password": "new-password-1", "current_password": "alice-password"})),
        )
        .expect_status(204);
    let after = Caller::Cookie(old.cookie).send(&d, Method::GET, "/api/v1/session", None);
    assert_eq!(
        after.status, 401,
        "sessions from before the change end: {after}"
    );
    assert_eq!(d.login("alice", "alice-password").status, 401);
    d.session("alice", "new-password-1");
    // An admin resets anyone's password without the current one.
    d.api_post(
        "/api/v1/accounts/alice/password",
        &json!({"password": "reset-by-admin"}),
    )
    .expect_status(204);
    d.session("alice", "reset-by-admin");
    let audit = d.audit("action=account.password&target=alice");
    assert_eq!(audit.len(), 2, "{audit:?}");
    assert!(
        !format!("{audit:?}").contains("reset-by-admin"),
        "no passwords in the audit log"
    );
}

#[test]
fn tokens_expire_and_are_revoked() {
    let d = Daemon::start_default();
    let short = d.add_token("short", "viewer", &[], Some("1s"));
    let long = d.add_token("long", "viewer", &[], Some("1h"));
    let listed: Value = d.api_get("/api/v1/tokens").expect_status(200).json();
    assert!(
        !listed.to_string().contains(&long.token),
        "secrets are never listed"
    );
    assert_eq!(
        Caller::Bearer(long.token.clone())
            .send(&d, Method::GET, "/api/v1/jobs", None)
            .status,
        200
    );
    let expired = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        let r = Caller::Bearer(short.token.clone()).send(&d, Method::GET, "/api/v1/jobs", None);
        (r.status == 401).then_some(r)
    })
    .expect("the 1s token expires");
    assert!(expired.api_error().message.contains("expired"), "{expired}");
    d.api_delete(&format!("/api/v1/tokens/{}", long.info.id))
        .expect_status(204);
    let r = Caller::Bearer(long.token.clone()).send(&d, Method::GET, "/api/v1/jobs", None);
    assert_eq!(r.status, 401, "{r}");
    assert!(r.api_error().message.contains("revoked"), "{r}");
    // A forged secret for a real id is refused.
    let forged = format!("cst_{}.AAAA", short.info.id);
    assert_eq!(
        Caller::Bearer(forged)
            .send(&d, Method::GET, "/api/v1/jobs", None)
            .status,
        401
    );
}

fn secret_job(rev: Option<u64>) -> Value {
    let mut j = json!({"id": "audited", "command": ["true"], "rules": [{"schedule": "0 0 1 1 *"}],
                       "env": {"API_KEY": {"value": "hunter2-secret", "secret": true}, "MODE": "x"}});
    if let Some(r) = rev {
        j["revision"] = json!(r);
        j["name"] = json!("renamed");
    }
    j
}

#[test]
fn every_job_write_has_exactly_one_audit_entry_and_failed_ones_none() {
    let d = Daemon::start_default();
    let created: Value = d
        .api_post("/api/v1/jobs", &secret_job(None))
        .expect_status(201)
        .json();
    let rev = created["revision"].as_u64().expect("revision");
    assert_eq!(d.api_post("/api/v1/jobs", &secret_job(None)).status, 409);
    let invalid = json!({"id": "audited", "command": [], "rules": []});
    assert_eq!(d.api_post("/api/v1/jobs", &invalid).status, 422);
    let creates = d.audit("action=job.create&target=audited");
    assert_eq!(
        creates.len(),
        1,
        "the refused creates left no entry: {creates:?}"
    );
    let e = &creates[0];
    assert_eq!(
        (e.actor.as_str(), e.via),
        ("admin.token", cronsun_proto::auth::Via::Token)
    );
    assert_eq!(e.from, "127.0.0.1");
    let after = e.after.clone().expect("after");
    assert_eq!(after["env"]["API_KEY"], json!({"secret": true}));
    assert_eq!(after["revision"].as_u64(), Some(rev));

    assert_eq!(
        d.api_put(
            "/api/v1/jobs/audited",
            &secret_job(Some(rev + 100)),
            Some(rev + 100)
        )
        .status,
        409
    );
    assert!(
        d.audit("action=job.update").is_empty(),
        "a conflicting update left no entry"
    );
    d.api_put("/api/v1/jobs/audited", &secret_job(Some(rev)), Some(rev))
        .expect_status(200);
    let updates = d.audit("action=job.update&target=audited");
    assert_eq!(updates.len(), 1, "{updates:?}");
    let u = &updates[0];
    assert_eq!(u.before.as_ref().expect("before")["name"], "audited");
    assert_eq!(u.after.as_ref().expect("after")["name"], "renamed");

    d.api_post("/api/v1/jobs/audited/pause", &json!({"reason": "r"}))
        .expect_status(200);
    d.api_delete("/api/v1/jobs/audited").expect_status(204);
    assert_eq!(d.api_delete("/api/v1/jobs/audited").status, 404);
    let deletes = d.audit("action=job.delete");
    assert_eq!(deletes.len(), 1, "{deletes:?}");
    assert_eq!(deletes[0].before.as_ref().expect("before")["paused"], true);
    assert_eq!(d.audit("action=job.pause").len(), 1);

    let journaled = poll_until(Duration::from_secs(5), Duration::from_millis(50), || {
        d.logs()
            .contains("action=job.delete target=audited")
            .then_some(())
    });
    assert!(
        journaled.is_some(),
        "audit entries reach the journal\n{}",
        d.logs()
    );
    let all = d.audit("limit=1000");
    let text = serde_json::to_string(&all).expect("json");
    assert!(
        !text.contains("hunter2"),
        "secret values never reach the audit log: {text}"
    );
    // Newest first, with a working cursor.
    let page: cronsun_proto::auth::AuditPage =
        d.api_get("/api/v1/audit?limit=2").expect_status(200).json();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].action, "job.delete");
    let cursor = page.next_cursor.expect("more entries");
    let next: cronsun_proto::auth::AuditPage = d
        .api_get(&format!("/api/v1/audit?limit=2&cursor={cursor}"))
        .expect_status(200)
        .json();
    let id = |e: &cronsun_proto::auth::AuditEntry| e.id.parse::<u64>().expect("numeric id");
    assert!(!next.entries.is_empty());
    assert!(
        next.entries.iter().all(|e| id(e) < id(&page.entries[1])),
        "{next:?}"
    );
}

/// Runs the CLI with its own config dir and no admin token.
fn cli(d: &Daemon, home: &std::path::Path, args: &[&str]) -> cronsun_tests::CliOutput {
    let url = d.url();
    let home = home.to_string_lossy();
    run_cli(
        &bins::cronsun(),
        args,
        &[("CRONSUN_URL", &url), ("XDG_CONFIG_HOME", &home)],
        Duration::from_secs(30),
    )
}

#[test]
fn cli_login_user_and_token_commands() {
    let d = Daemon::start(ConfigOverrides::new());
    let home = tempfile::tempdir().expect("config home");
    let pw_file = home.path().join("admin.pw");
    std::fs::write(&pw_file, format!("{}\n", d.initial_admin_password())).expect("write");
    let pw = pw_file.to_string_lossy().to_string();

    // Without a login, the API refuses and says how to log in.
    let out = cli(&d, home.path(), &["job", "ls"]);
    out.assert_code(1);
    assert!(out.stderr.contains("cronsun login"), "{out}");

    cli(
        &d,
        home.path(),
        &["login", "--user", "admin", "--password-file", &pw],
    )
    .assert_success();
    let token_file = home.path().join("cronsun/token");
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "mode {mode:o}");
    cli(&d, home.path(), &["job", "ls"]).assert_success();

    let bob_pw = home.path().join("bob.pw");
    std::fs::write(&bob_pw, "bob-password-1\n").expect("write");
    let bob_pw = bob_pw.to_string_lossy().to_string();
    cli(
        &d,
        home.path(),
        &[
            "user",
            "add",
            "bob",
            "--role",
            "viewer",
            "--password-file",
            &bob_pw,
        ],
    )
    .assert_success();
    cli(
        &d,
        home.path(),
        &[
            "user", "set-role", "bob", "--role", "operator", "--group", "db",
        ],
    )
    .assert_success();
    let users = cli(&d, home.path(), &["user", "ls", "-o", "json"]);
    users.assert_success();
    let bob = users
        .json()
        .as_array()
        .expect("list")
        .iter()
        .find(|a| a["user"] == "bob")
        .cloned()
        .expect("bob listed");
    assert_eq!(
        (bob["role"].as_str(), bob["groups"].clone()),
        (Some("operator"), json!(["db"]))
    );

    let created = cli(
        &d,
        home.path(),
        &[
            "token",
            "create",
            "ci",
            "--role",
            "viewer",
            "--expires-in",
            "1h",
            "-o",
            "json",
        ],
    );
    created.assert_success();
    let secret = created.json()["token"].as_str().expect("token").to_string();
    let id = created.json()["id"].as_str().expect("id").to_string();
    assert_eq!(
        Caller::Bearer(secret.clone())
            .send(&d, Method::GET, "/api/v1/jobs", None)
            .status,
        200
    );
    let ls = cli(&d, home.path(), &["token", "ls"]);
    ls.assert_success();
    assert!(
        ls.stdout.contains(&id) && !ls.stdout.contains(&secret),
        "{ls}"
    );
    cli(&d, home.path(), &["token", "revoke", &id]).assert_success();
    assert_eq!(
        Caller::Bearer(secret)
            .send(&d, Method::GET, "/api/v1/jobs", None)
            .status,
        401
    );

    // bob logs in from his own config dir; his login follows his account.
    let bob_home = tempfile::tempdir().expect("bob home");
    cli(
        &d,
        bob_home.path(),
        &["login", "--user", "bob", "--password-file", &bob_pw],
    )
    .assert_success();
    let denied = cli(&d, bob_home.path(), &["user", "ls"]);
    denied.assert_code(1);
    assert!(denied.stderr.contains("403"), "{denied}");
    let new_pw = bob_home.path().join("new.pw");
    std::fs::write(&new_pw, "bob-password-2\n").expect("write");
    let new_pw = new_pw.to_string_lossy().to_string();
    cli(
        &d,
        bob_home.path(),
        &[
            "user",
            "passwd",
            "--password-file",
            &new_pw,
            "--current-password-file",
            &bob_pw,
        ],
    )
    .assert_success();
    let ended = cli(&d, bob_home.path(), &["job", "ls"]);
    ended.assert_code(1);
    assert!(
        ended.stderr.contains("log in again"),
        "the password change ended bob's login: {ended}"
    );
    d.session("bob", "bob-password-2");

    cli(&d, home.path(), &["user", "rm", "bob"]).assert_success();
    assert_eq!(d.login("bob", "bob-password-2").status, 401);
    cli(&d, home.path(), &["logout"]).assert_success();
    assert!(!token_file.exists());
}
