//! Accounts, tokens, sessions and the audit log in cluster mode: real
//! cronsund processes against one real etcd (and FerretDB for runs), on
//! loopback. What one node writes every node serves; a session cookie
//! outlives a kill -9 of the web leader; audit entries commit with their
//! change, once, in etcd.

use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use cronsun_proto::auth::{AccountView, AuditEntry, TokenCreated};
use cronsun_tests::cluster::{wait_for, Cluster};
use cronsun_tests::{job, unique_id, Daemon};

const PASSWORD: &str = "correct horse battery";

/// `GET /api/v1/session` with a session cookie.
fn me_with_cookie(d: &Daemon, cookie: &str) -> u16 {
    d.request(
        Method::GET,
        "/api/v1/session",
        None,
        &[("cookie", &format!("cronsun_session={cookie}"))],
        None,
    )
    .status
}

/// The audit entries matching `query`, as node `d` serves them.
fn audit(d: &Daemon, query: &str) -> Vec<AuditEntry> {
    d.audit(&format!("{query}&limit=1000"))
}

fn account(d: &Daemon, user: &str) -> AccountView {
    let all: Vec<AccountView> = d.api_get("/api/v1/accounts").expect_status(200).json();
    all.into_iter()
        .find(|a| a.user == user)
        .unwrap_or_else(|| panic!("no account {user:?} through {}", d.node_id()))
}

#[test]
fn accounts_tokens_sessions_and_audit_are_shared_by_the_cluster() {
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(Duration::from_secs(15));
    let li = c.index_of(&leader).expect("the leader is one of ours");
    let others: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    let (x, y) = (others[0], others[1]);

    // One initial admin password, cluster-wide; it works through every node.
    let with_file: Vec<usize> = (0..3)
        .filter(|&i| {
            c.nodes[i]
                .state_dir()
                .join("initial-admin-password")
                .exists()
        })
        .collect();
    assert_eq!(
        with_file.len(),
        1,
        "nodes with a password file: {with_file:?}"
    );
    let first = c.nodes[with_file[0]].node_id().to_string();
    for (i, d) in c
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != with_file[0])
    {
        let said = d.logs().lines().any(|l| {
            l.contains("the cluster has its accounts")
                && l.contains(&format!("bootstrapped_by={first}"))
        });
        assert!(
            said,
            "node {i} does not say which node created admin\n{}",
            d.logs()
        );
    }
    let admin_pw = c.nodes[with_file[0]].initial_admin_password();
    for d in &c.nodes {
        d.login("admin", &admin_pw).expect_status(200);
    }
    assert!(
        c.etcd.value(&format!("{}session/key", c.prefix)).is_some(),
        "the session key is in etcd"
    );

    // An account and a token made through one node work through the others.
    let user = unique_id("carol");
    c.nodes[x].add_account(&user, PASSWORD, "operator", &[], json!({}));
    let token: TokenCreated = c.nodes[x].add_token("ci", "viewer", &[], None);
    for &i in &[li, y] {
        let d = &c.nodes[i];
        let s = d.session(&user, PASSWORD);
        assert_eq!(s.me.user, user);
        let r = d.request(Method::GET, "/api/v1/jobs", Some(&token.token), &[], None);
        assert_eq!(r.status, 200, "token through {}: {r}", d.node_id());
    }
    assert!(c
        .etcd
        .value(&format!("{}account/{user}", c.prefix))
        .is_some_and(|v| v.contains("$argon2id$") && !v.contains(PASSWORD)));
    assert!(c
        .etcd
        .value(&format!("{}token/{}", c.prefix, token.info.id))
        .is_some_and(|v| !v.contains(token.token.as_str())));

    // Figures (printed, not asserted): a token-authenticated request reads
    // the token from etcd on the leader, directly or through the proxy.
    for (what, i) in [("leader", li), ("follower, proxied", x)] {
        let d = &c.nodes[i];
        let n = 50;
        let t0 = std::time::Instant::now();
        for _ in 0..n {
            let r = d.request(
                Method::GET,
                "/api/v1/session",
                Some(&token.token),
                &[],
                None,
            );
            assert_eq!(r.status, 200, "{r}");
        }
        println!(
            "GET /api/v1/session with an API token through the {what}: {:?} per request (mean of {n})",
            t0.elapsed() / n
        );
    }

    // An account edit names the revision it read; a stale one gets 409.
    let acc = account(&c.nodes[y], &user);
    assert!(acc.revision > 0, "{acc:?}");
    let edit =
        |rev: u64, role: &str| json!({"user": user, "role": role, "groups": [], "revision": rev});
    let path = format!("/api/v1/accounts/{user}");
    let updated: AccountView = c.nodes[y]
        .api_put(&path, &edit(acc.revision, "viewer"), None)
        .expect_status(200)
        .json();
    assert!(updated.revision > acc.revision, "{updated:?}");
    let stale = c.nodes[x].api_put(&path, &edit(acc.revision, "admin"), Some(acc.revision));
    assert_eq!(stale.status, 409, "{stale}");
    assert!(
        stale.api_error().message.contains("changed meanwhile"),
        "{stale}"
    );
    assert_eq!(account(&c.nodes[li], &user).role.to_string(), "viewer");
    c.nodes[x]
        .api_put(&path, &edit(0, "operator"), Some(updated.revision))
        .expect_status(200);

    // A job edit is audited once, in etcd: every node shows the same entry.
    let id = unique_id("audited");
    let created = c.nodes[x].create_job(&job(json!({
        "id": id, "command": ["true"], "rules": [{"schedule": "0 0 1 1 *"}],
        "env": {"TOKEN": {"value": "hunter2", "secret": true}},
    })));
    let mut changed = created.clone();
    changed.description = "edited".into();
    let saved: Value = c.nodes[y]
        .api_put(
            &format!("/api/v1/jobs/{id}"),
            &changed,
            Some(created.revision),
        )
        .expect_status(200)
        .json();
    c.nodes[li]
        .api_post(&format!("/api/v1/jobs/{id}/pause"), &json!({}))
        .expect_status(200);
    c.nodes[x]
        .api_post(&format!("/api/v1/jobs/{id}/resume"), &json!({}))
        .expect_status(200);
    // A refused write (stale revision) leaves no entry.
    let refused = c.nodes[y].api_put(
        &format!("/api/v1/jobs/{id}"),
        &changed,
        Some(created.revision),
    );
    assert_eq!(refused.status, 409, "{refused}");
    let mut seen = Vec::new();
    for d in &c.nodes {
        let updates = audit(d, &format!("action=job.update&target={id}"));
        assert_eq!(updates.len(), 1, "through {}: {updates:?}", d.node_id());
        let after = updates[0].after.as_ref().expect("after");
        assert_eq!(after["description"], "edited");
        assert_eq!(after["revision"], saved["revision"], "{after}");
        assert!(!after.to_string().contains("hunter2"), "{after}");
        for action in ["job.create", "job.pause", "job.resume"] {
            let n = audit(d, &format!("action={action}&target={id}")).len();
            assert_eq!(n, 1, "{action} through {}", d.node_id());
        }
        seen.push(updates[0].id.clone());
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
    let account_edits = audit(&c.nodes[x], &format!("action=account.update&target={user}"));
    assert_eq!(account_edits.len(), 2, "{account_edits:?}");

    // Paging: newest first, and a cursor continues after its entry.
    let page: cronsun_proto::auth::AuditPage = c.nodes[y]
        .api_get("/api/v1/audit?limit=2")
        .expect_status(200)
        .json();
    assert_eq!(page.entries.len(), 2);
    assert_eq!(page.entries[0].action, "job.resume");
    let cursor = page.next_cursor.expect("more entries");
    let next: cronsun_proto::auth::AuditPage = c.nodes[x]
        .api_get(&format!("/api/v1/audit?limit=2&cursor={cursor}"))
        .expect_status(200)
        .json();
    assert!(!next.entries.is_empty());
    assert!(
        next.entries.iter().all(|e| e.id < page.entries[1].id),
        "{next:?}"
    );
    assert_eq!(c.nodes[x].api_get("/api/v1/audit?cursor=bogus").status, 400);

    // A batch too large for one etcd transaction commits in parts, each
    // with its own entry naming its jobs: every job is in exactly one.
    let batch: Vec<Value> = (0..130)
        .map(|i| {
            json!({"id": format!("{id}-b{i}"), "command": ["true"],
                        "rules": [{"schedule": "0 0 1 1 *"}]})
        })
        .collect();
    let applied: Value = c.nodes[y]
        .api_post("/api/v1/jobs/apply", &json!({ "jobs": batch }))
        .expect_status(200)
        .json();
    assert_eq!(applied["created"].as_array().map(Vec::len), Some(130));
    let parts = audit(&c.nodes[x], "action=job.apply");
    assert!(parts.len() > 1, "{} parts", parts.len());
    let mut ids: Vec<String> = parts
        .iter()
        .flat_map(|e| {
            let after = e.after.as_ref().and_then(Value::as_object);
            after
                .map(|o| o.keys().cloned().collect::<Vec<_>>())
                .unwrap_or_default()
        })
        .collect();
    ids.sort();
    let mut want: Vec<String> = (0..130).map(|i| format!("{id}-b{i}")).collect();
    want.sort();
    assert_eq!(ids, want);

    // A session from a login through one node outlives a kill -9 of the
    // leader: once another node leads, the cookie works through any node.
    let s = c.nodes[x].session(&user, PASSWORD);
    assert_eq!(me_with_cookie(&c.nodes[y], &s.cookie), 200);
    c.nodes[li].kill9();
    let new_leader = c.wait_leader(Duration::from_secs(20));
    assert_ne!(new_leader, leader);
    for &i in &[x, y] {
        let d = &c.nodes[i];
        let ok = wait_for(Duration::from_secs(10), || {
            me_with_cookie(d, &s.cookie) == 200
        });
        assert!(
            ok,
            "the session cookie is refused through {} after failover\n{}",
            d.node_id(),
            c.logs()
        );
        let r = d.request(Method::GET, "/api/v1/jobs", Some(&token.token), &[], None);
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(
            audit(d, &format!("action=job.update&target={id}")).len(),
            1,
            "the audit log survives the leader"
        );
    }
}

fn entry(at: jiff::Timestamp, actor: &str, target: &str) -> AuditEntry {
    AuditEntry {
        id: String::new(),
        at,
        actor: actor.into(),
        via: cronsun_proto::auth::Via::Token,
        from: "127.0.0.1".into(),
        action: "run.kill".into(),
        target: target.into(),
        before: None,
        after: None,
    }
}

/// The audit log's paging, filters and retention on a real etcd (the
/// store alone: retention runs hourly on the leader, too slow to await).
#[test]
fn audit_pages_filters_and_retention_on_a_real_etcd() {
    use cronsun_proto::auth::AuditQuery;
    use cronsund::store::etcd::{keys::Keys, Etcd as Client, EtcdAuth};
    use cronsund::store::AuthStore as _;

    let etcd = cronsun_tests::etcd::Etcd::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let cfg: cronsund::config::EtcdSection =
            serde_json::from_value(json!({"endpoints": [etcd.endpoint()], "prefix": "/t/"}))
                .expect("etcd section");
        let client = Client::connect(&cfg).await.expect("connect");
        let store = EtcdAuth::new(client, Keys::new("/t/"));
        let now = jiff::Timestamp::now();
        let hours = |i: i64| now - jiff::SignedDuration::from_hours(i);
        // 30 entries, one per hour back from now; every third one by bob.
        for i in 0..30 {
            let actor = if i % 3 == 0 { "bob" } else { "alice" };
            store
                .append_audit(entry(hours(i), actor, &format!("t{i}")))
                .await
                .expect("append");
        }
        let targets = |p: &cronsun_proto::auth::AuditPage| {
            p.entries
                .iter()
                .map(|e| e.target.clone())
                .collect::<Vec<_>>()
        };
        // A filtered query, three per page, follows its cursor to the end.
        let mut bobs = Vec::new();
        let mut cursor = None;
        for _ in 0..10 {
            let page = store
                .audit(&AuditQuery {
                    actor: Some("bob".into()),
                    limit: Some(3),
                    cursor: cursor.clone(),
                    ..Default::default()
                })
                .await
                .expect("page");
            bobs.extend(targets(&page));
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        let want: Vec<String> = (0..30).step_by(3).map(|i| format!("t{i}")).collect();
        assert_eq!(bobs, want, "newest first, each once");
        // since is inclusive, until exclusive.
        let window = store
            .audit(&AuditQuery {
                since: Some(hours(5)),
                until: Some(hours(1)),
                ..Default::default()
            })
            .await
            .expect("window");
        assert_eq!(targets(&window), ["t2", "t3", "t4", "t5"]);
        // Retention: entries at or before 20 h ago go (10), then all but
        // the newest 5 (15 more).
        let deleted = store
            .retain(5, Duration::from_secs(20 * 3600), now)
            .await
            .expect("retain");
        assert_eq!(deleted, 25);
        let left = store.audit(&AuditQuery::default()).await.expect("all");
        assert_eq!(targets(&left), ["t0", "t1", "t2", "t3", "t4"]);
        assert_eq!(
            store
                .retain(5, Duration::from_secs(20 * 3600), now)
                .await
                .expect("again"),
            0
        );
    });
}
