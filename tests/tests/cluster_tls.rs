//! Node-to-node proxying over TLS with pinned certificates (issue 5,
//! DESIGN §4): three real `cronsund` listening on all addresses as packaged
//! (TLS with the self-signed certificate each makes at first start), one
//! real etcd, one FerretDB. Every node publishes its `https://` API URL and
//! its certificate's fingerprint; a non-leader forwards to the leader over
//! TLS accepting exactly the published certificate, so browsers (cookies,
//! CSRF), the CLI and live output work through any node trusting only that
//! node's certificate; a certificate that does not match the published
//! fingerprint is a 503 naming the leader; a restarted node's new
//! certificate is followed.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use cronsun_tests::cluster::{wait_for, Cluster};
use cronsun_tests::http::{HttpClient, Trust};
use cronsun_tests::jobs::whole_seconds_from_now;
use cronsun_tests::{
    bins, job, poll_until, run_cli, schedule_at, tls, unique_id, Daemon, Response, RunStatus,
};

/// `AB:CD:…` of the certificate a node serves now.
fn fingerprint_of(d: &Daemon) -> String {
    let pem = std::fs::read(d.cert_path().expect("a TLS node")).expect("the node's certificate");
    tls::fingerprint(&tls::pem_certs(&pem).expect("PEM")[0])
}

/// A client of node `d` over TLS trusting only `d`'s certificate,
/// connecting from `source` (a loopback address of the test's choosing).
fn client_of(d: &Daemon, source: &str) -> HttpClient {
    let addr: SocketAddr = ([127, 0, 0, 1], d.port()).into();
    let source: IpAddr = source.parse().expect("source address");
    HttpClient::with_tls(
        addr,
        Trust {
            server_name: "localhost".into(),
            ca_file: d.cert_path().expect("a TLS node"),
        },
    )
    .from_source(source)
}

#[track_caller]
fn send(
    c: &HttpClient,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Response {
    let body = body.map(|b| serde_json::to_vec(&b).expect("json"));
    c.request(method, path, None, headers, body, Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("{path}: {e:#}"))
}

/// The JSON value of an etcd key.
fn etcd_json(c: &Cluster, key: &str) -> Value {
    let v = c
        .etcd
        .value(&format!("{}{key}", c.prefix))
        .unwrap_or_else(|| panic!("no etcd key {key}"));
    serde_json::from_str(&v).expect("JSON value")
}

/// Writes `value` to the `leader` key under the lease the key already has
/// (what a tampered or stale leader record looks like to the others).
fn put_leader_keeping_lease(c: &Cluster, value: &Value) {
    let key = format!("{}leader", c.prefix);
    let got: Value =
        serde_json::from_str(&c.etcd.ctl(&["get", &key, "-w", "json"])).expect("etcdctl json");
    let lease = got["kvs"][0]["lease"]
        .as_i64()
        .expect("the leader key has a lease");
    c.etcd.ctl(&[
        "put",
        &format!("--lease={lease:x}"),
        &key,
        &value.to_string(),
    ]);
}

/// The first audit entry about `target`, read on the leader.
fn audit_from(leader: &Daemon, target: &str) -> String {
    let page: Value = leader
        .api_get("/api/v1/audit?limit=200")
        .expect_status(200)
        .json();
    let entries = page["entries"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .find(|e| e["target"].as_str().is_some_and(|t| t.contains(target)))
        .and_then(|e| e["from"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no audit entry about {target}: {page}"))
}

#[test]
fn the_api_works_through_any_node_over_tls_pinned_to_the_published_certificate() {
    // Node i also answers to `node<i>.example` (its own `[web] hosts`).
    let started = std::cell::Cell::new(0);
    let mut c = Cluster::start_adjusted(3, "", |cfg| {
        let i = started.replace(started.get() + 1);
        cfg.tls_listener()
            .set("web", "hosts", &format!("[\"node{i}.example\"]"))
    });
    // Every node's API answers, served by the leader: each non-leader
    // reached it over pinned TLS.
    let leader = c.wait_leader(Duration::from_secs(20));
    let li = c.index_of(&leader).expect("leader index");
    let (ni, mi) = ((li + 1) % 3, (li + 2) % 3);

    // Each node publishes its https:// API URL and its certificate.
    for d in &c.nodes {
        let rec = etcd_json(&c, &format!("node/{}", d.node_id()));
        assert_eq!(rec["tls_fingerprint"], fingerprint_of(d), "{rec}");
        let url = rec["api_url"].as_str().unwrap_or_default();
        assert!(
            url.starts_with("https://") && url.ends_with(&format!(":{}", d.port())),
            "{rec}"
        );
    }
    let published = etcd_json(&c, "leader");
    assert_eq!(
        published["fingerprint"],
        fingerprint_of(&c.nodes[li]),
        "{published}"
    );
    let listed = c.nodes[ni].cli_json(&["node", "ls"]);
    assert!(
        listed
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|n| n["tls_fingerprint"].is_string())),
        "node ls shows every node's fingerprint: {listed}"
    );

    // A browser talking to a non-leader, trusting only that node's
    // certificate: password login, a Secure cookie, CSRF-checked writes.
    let n = &c.nodes[ni];
    let browser = client_of(n, "127.0.0.7");
    let password = std::fs::read_to_string(c.nodes[li].state_dir().join("initial-admin-password"))
        .expect("the leader's initial admin password");
    let login = send(
        &browser,
        Method::POST,
        "/api/v1/session",
        &[],
        Some(json!({"user": "admin", "password": password.trim()})),
    );
    assert_eq!(login.status, 200, "{login}");
    assert_eq!(
        login.header("x-cronsun-served-by").as_deref(),
        Some(leader.as_str())
    );
    let set_cookie = login.header("set-cookie").expect("a session cookie");
    assert!(
        set_cookie.contains("Secure") && set_cookie.contains("HttpOnly"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap_or_default().to_string();
    let me = send(
        &browser,
        Method::GET,
        "/api/v1/session",
        &[("cookie", &cookie)],
        None,
    );
    assert_eq!(me.status, 200, "{me}");
    let csrf = me.json::<Value>()["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_string();
    let job_id = unique_id("tls");
    let new_job = json!({
        "id": job_id, "shell": true,
        "command": "echo first; sleep 0.3; echo second",
        "rules": [{ "schedule": "@yearly" }],
    });
    let refused = send(
        &browser,
        Method::POST,
        "/api/v1/jobs",
        &[("cookie", &cookie)],
        Some(new_job.clone()),
    );
    assert_eq!(refused.status, 403, "no CSRF token: {refused}");
    let created = send(
        &browser,
        Method::POST,
        "/api/v1/jobs",
        &[("cookie", &cookie), ("x-csrf-token", &csrf)],
        Some(new_job),
    );
    assert_eq!(created.status, 201, "{created}");
    // The leader saw the browser's address (forwarded with a proof), not
    // the proxying node's; a client's own X-Forwarded-For is not believed.
    assert_eq!(audit_from(&c.nodes[li], &job_id), "127.0.0.7");
    let forged_id = unique_id("forged");
    let forged = client_of(&c.nodes[li], "127.0.0.8")
        .request(
            Method::POST,
            "/api/v1/jobs",
            Some(c.nodes[li].token()),
            &[("x-forwarded-for", "10.9.9.9")],
            Some(
                serde_json::to_vec(&json!({
                    "id": forged_id, "command": ["true"], "rules": [{ "schedule": "@yearly" }],
                }))
                .expect("json"),
            ),
            Duration::from_secs(15),
        )
        .expect("direct request to the leader");
    assert_eq!(forged.status, 201, "{forged}");
    assert_eq!(audit_from(&c.nodes[li], &forged_id), "127.0.0.8");
    // A Host the node does not serve is refused by the node itself.
    let wrong = send(
        &browser,
        Method::GET,
        "/api/v1/session",
        &[("cookie", &cookie), ("host", "evil.example")],
        None,
    );
    assert_eq!(wrong.status, 421, "{wrong}");
    assert!(wrong.text().contains("evil.example"), "{wrong}");
    // Only nodes make owner calls (they prove it with the cluster's key).
    let bogus = send(
        &browser,
        Method::GET,
        "/api/v1/session",
        &[("cookie", &cookie), ("x-cronsun-owner-call", "someone")],
        None,
    );
    assert_eq!(bogus.status, 403, "{bogus}");
    // A Host only this node serves works: the node checked it, and the
    // leader got the host of its own api_url instead.
    let own_host = format!("node{ni}.example:{}", n.port());
    let own = send(
        &browser,
        Method::GET,
        "/api/v1/session",
        &[("cookie", &cookie), ("host", &own_host)],
        None,
    );
    assert_eq!(own.status, 200, "{own}");
    assert_eq!(
        own.header("x-cronsun-served-by").as_deref(),
        Some(leader.as_str())
    );

    // The CLI through the non-leader, trusting only its certificate:
    // login, a run followed live (SSE) to its end, run ls.
    let home = tempfile::tempdir().expect("config home");
    let url = n.url();
    let ca = n.cert_path().expect("cert").to_string_lossy().into_owned();
    let xdg = home.path().to_string_lossy().into_owned();
    let pw_file = c.nodes[li].state_dir().join("initial-admin-password");
    let envs = [
        ("CRONSUN_URL", url.as_str()),
        ("CRONSUN_CA_FILE", ca.as_str()),
        ("XDG_CONFIG_HOME", xdg.as_str()),
    ];
    let cli = |args: &[&str]| run_cli(&bins::cronsun(), args, &envs, Duration::from_secs(30));
    cli(&[
        "login",
        "-u",
        "admin",
        "--password-file",
        &pw_file.to_string_lossy(),
    ])
    .assert_success();
    assert!(token_saved(home.path()), "login saved no token");
    let followed = cli(&["job", "run", &job_id, "--wait"]);
    followed.assert_success();
    assert!(
        followed.stdout.contains("first") && followed.stdout.contains("second"),
        "live output through the proxy: {followed}"
    );
    let runs = cli(&["run", "ls", "--job", &job_id, "--output", "json"]);
    runs.assert_success();
    let runs = runs.json();
    assert!(
        runs["runs"][0]["status"] == "success",
        "run ls through the proxy: {runs}"
    );

    // Live output of a run on a node other than the leader, followed
    // through the third node: proxy → leader → owning node, each hop over
    // TLS pinned to the next node's published certificate. The job waits
    // for a gate file, so its first line can only arrive live.
    let gate = home.path().join("gate");
    let live_id = unique_id("live");
    c.nodes[li].create_job(&job(json!({
        "id": live_id, "kind": "all", "shell": true,
        "command": format!(
            "echo first; i=0; while [ ! -e {gate} ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; echo second",
            gate = gate.display()
        ),
        "rules": [{ "schedule": schedule_at(whole_seconds_from_now(2)) }],
    })));
    let owner = c.nodes[mi].node_id().to_string();
    let record = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        c.nodes[li]
            .runs(&live_id)
            .into_iter()
            .find(|r| r.node_id == owner && r.status == RunStatus::Running)
            .map(|r| r.record_id())
    })
    .unwrap_or_else(|| panic!("no running run of {live_id} on {owner}"));
    let mut follower = Follower::start(&["run", "logs", "--follow", &record], &envs);
    follower.wait_for_line("first", Duration::from_secs(15));
    std::fs::write(&gate, b"").expect("open the gate");
    let rest = follower.finish(Duration::from_secs(30));
    assert!(
        rest.contains("second"),
        "the rest of the live output: {rest}"
    );

    // A leader record whose fingerprint is not the certificate the leader
    // serves: the non-leaders answer 503 naming the leader and the cause,
    // and log it; never a plain-HTTP retry.
    let mut tampered = published.clone();
    tampered["fingerprint"] = json!(fingerprint_of(n));
    put_leader_keeping_lease(&c, &tampered);
    let mut last = None;
    let refused = wait_for(Duration::from_secs(10), || {
        let r = n.request(Method::GET, "/api/v1/nodes", Some(n.token()), &[], None);
        let hit = r.status == 503;
        last = Some(r);
        hit
    });
    let last = last.expect("a response");
    assert!(refused, "the mismatch was not refused: {last}");
    let msg = last.api_error().message;
    assert!(
        msg.contains(&leader) && msg.contains("certificate fingerprint mismatch"),
        "{msg}"
    );
    assert!(
        wait_for(Duration::from_secs(5), || n
            .logs()
            .contains("certificate fingerprint mismatch")),
        "the mismatch is logged\n{}",
        n.logs()
    );
    // The leader itself still serves; the true record makes the proxy work again.
    assert_eq!(
        c.nodes[li].served_by("/api/v1/nodes").as_deref(),
        Some(leader.as_str())
    );
    put_leader_keeping_lease(&c, &published);
    assert!(
        wait_for(Duration::from_secs(10), || n
            .served_by("/api/v1/nodes")
            .as_deref()
            == Some(leader.as_str())),
        "the proxy did not recover once the record was right"
    );

    // Rotation: the leader restarts with a new certificate; its record and
    // the pin follow. (The third node stops so that leadership is certain:
    // the old leader stops → N leads; it returns with a new certificate;
    // N stops → it leads again; N returns and reaches it.)
    let old = fingerprint_of(&c.nodes[li]);
    c.nodes[mi].stop();
    c.nodes[li].stop();
    assert_eq!(
        c.wait_leader(Duration::from_secs(15)),
        c.nodes[ni].node_id()
    );
    std::fs::remove_dir_all(c.nodes[li].state_dir().join("tls")).expect("remove the certificate");
    c.nodes[li].restart();
    let new = fingerprint_of(&c.nodes[li]);
    assert_ne!(old, new, "a new certificate was made");
    let id = c.nodes[li].node_id().to_string();
    assert!(
        wait_for(Duration::from_secs(10), || {
            c.registered(&id) && etcd_json(&c, &format!("node/{id}"))["tls_fingerprint"] == new
        }),
        "the node record did not follow the new certificate"
    );
    c.nodes[ni].stop();
    assert_eq!(c.wait_leader(Duration::from_secs(15)), id);
    assert_eq!(etcd_json(&c, "leader")["fingerprint"], new);
    c.nodes[ni].restart();
    assert_eq!(c.wait_leader(Duration::from_secs(15)), id);
}

/// A `cronsun` command whose output is read as it comes (a followed run);
/// killed by its pid if the test ends first.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follower {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Follower {
        let mut cmd = std::process::Command::new(bins::cronsun());
        cmd.args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CRONSUN_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(envs.iter().copied());
        let mut child = cmd.spawn().expect("spawn cronsun");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `text`, while the command still runs.
    #[track_caller]
    fn wait_for_line(&mut self, text: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        while !self.seen.iter().any(|l| l.contains(text)) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("no line with {text:?} within {timeout:?}: {:?}", self.seen),
            }
        }
        assert!(
            matches!(self.child.try_wait(), Ok(None)),
            "the command ended early: {:?}",
            self.seen
        );
    }

    /// Waits for the command to exit successfully; returns every line.
    #[track_caller]
    fn finish(&mut self, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                assert!(st.success(), "{st}: {:?}", self.seen);
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after {timeout:?}: {:?}",
                self.seen
            );
            if let Ok(l) = self.lines.recv_timeout(Duration::from_millis(100)) {
                self.seen.push(l);
            }
        }
        // The reader thread ends at EOF; take what it still holds.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(1)) {
            self.seen.push(l);
        }
        self.seen.join("\n")
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether `cronsun login` saved its token under this config home.
fn token_saved(home: &Path) -> bool {
    std::fs::metadata(home.join("cronsun").join("token")).is_ok_and(|m| m.len() > 0)
}
