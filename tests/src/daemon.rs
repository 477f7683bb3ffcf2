//! One real `cronsund` process on a temporary state dir and a free loopback
//! port, with the API and CLI pointed at it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use http::Method;
use nix::sys::signal::Signal;
use serde::Serialize;
use tempfile::TempDir;

use cronsun_proto::api::{JobView, RunNowResponse, RunPage};
use cronsun_proto::{Job, RunRecord, RunStatus};

use crate::cli::{run_cli, CliOutput};
use crate::http::{HttpClient, Response, Trust};
use crate::jobs::{fmt_records, unique_id};
use crate::procs;
use crate::wait::poll_until;

/// The self-signed certificate under the state dir (as cronsund makes it).
const SELF_SIGNED_CERT: &str = "tls/cert.pem";
/// How long a daemon may take from spawn to answering `/healthz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound for one CLI invocation.
pub const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound for one API request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(15);
/// Default bound for a SIGTERM'd daemon to exit (harness `drain_timeout` is 5 s).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The name of the user running the tests (root in CI).
pub fn current_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::geteuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| "root".into())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn user_exists(name: &str) -> bool {
    nix::unistd::User::from_name(name).ok().flatten().is_some()
}

/// As root the daemon drops its agent to `[security] agent_user` (default
/// `cronsun`) and exits 78 if that user is missing (DESIGN §1). Make sure it
/// exists, as the packages would; `CRONSUN_TEST_AGENT_USER` names another
/// user instead (written into the config).
pub fn ensure_agent_user() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !is_root() || std::env::var_os("CRONSUN_TEST_AGENT_USER").is_some() {
            return;
        }
        if user_exists("cronsun") {
            return;
        }
        let out = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
                "cronsun",
            ])
            .output();
        if !user_exists("cronsun") {
            panic!(
                "the daemon's agent user `cronsun` does not exist and `useradd --system cronsun` failed: {out:?}; \
                 create it or set CRONSUN_TEST_AGENT_USER"
            );
        }
    });
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

fn toml_list(items: &[&str]) -> String {
    serde_json::to_string(items).expect("string lists serialise")
}

/// The config a test daemon runs with: the harness's defaults with the
/// test's changes on top. Keys are set per table (TOML forbids defining a
/// table twice); whole extra tables go into [`ConfigOverrides::extra_toml`].
#[derive(Clone, Debug, Default)]
pub struct ConfigOverrides {
    values: BTreeMap<String, BTreeMap<String, String>>,
    extra: String,
    env: Vec<(String, String)>,
    listen_ip: Option<std::net::IpAddr>,
    prefix: Vec<String>,
    tls_listener: bool,
}

impl ConfigOverrides {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `[table] key = <literal>` (a TOML literal, e.g. `"\"10s\""` or `["a"]`).
    pub fn set(mut self, table: &str, key: &str, toml_literal: &str) -> Self {
        self.values
            .entry(table.to_string())
            .or_default()
            .insert(key.to_string(), toml_literal.to_string());
        self
    }

    /// Sets `[table] key = "value"`.
    pub fn set_str(self, table: &str, key: &str, value: &str) -> Self {
        self.set(table, key, &toml_str(value))
    }

    /// `[scheduler] drain_timeout`.
    pub fn drain_timeout(self, d: &str) -> Self {
        self.set_str("scheduler", "drain_timeout", d)
    }

    /// `[security] allowed_users` (replaces the default: the current user).
    pub fn allowed_users(self, users: &[&str]) -> Self {
        self.set("security", "allowed_users", &toml_list(users))
    }

    /// Appends whole TOML tables after the generated ones.
    pub fn extra_toml(mut self, fragment: &str) -> Self {
        self.extra.push('\n');
        self.extra.push_str(fragment);
        self.extra.push('\n');
        self
    }

    /// Listen on all addresses (`0.0.0.0:<port>`), as packaged: the daemon
    /// serves TLS with the self-signed certificate it makes at first start,
    /// and the harness talks to it at `https://localhost:<port>` trusting
    /// that certificate (HTTP client and CLI alike).
    pub fn tls_listener(mut self) -> Self {
        self.tls_listener = true;
        self
    }

    /// An environment variable for the daemon process (e.g. `CRONSUN_FAULTS`).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Listens on `ip` instead of 127.0.0.1 (a test namespace's address).
    pub fn listen_ip(mut self, ip: std::net::IpAddr) -> Self {
        self.listen_ip = Some(ip);
        self
    }

    /// Runs the daemon through this command prefix (e.g. `ip netns exec NS`),
    /// which must exec it in place, so the pid stays the daemon's.
    pub fn command_prefix(mut self, prefix: Vec<String>) -> Self {
        self.prefix = prefix;
        self
    }

    /// Renders the config file text.
    pub fn render(
        &self,
        node_id: &str,
        state_dir: &Path,
        listen: SocketAddr,
        socket: &Path,
    ) -> String {
        let me = current_user();
        let mut tables: Vec<(String, BTreeMap<String, String>)> = Vec::new();
        let mut put = |t: &str, kv: &[(&str, String)]| {
            tables.push((
                t.to_string(),
                kv.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            ));
        };
        put(
            "node",
            &[
                ("id", toml_str(node_id)),
                ("state_dir", toml_str(&state_dir.to_string_lossy())),
            ],
        );
        put(
            "web",
            &[
                ("listen", toml_str(&listen.to_string())),
                ("socket", toml_str(&socket.to_string_lossy())),
            ],
        );
        put(
            "scheduler",
            &[
                ("timezone", toml_str("UTC")),
                ("drain_timeout", toml_str("5s")),
            ],
        );
        let mut security = vec![
            ("default_run_as", toml_str(&me)),
            ("allowed_users", toml_list(&[&me])),
        ];
        if let Ok(agent) = std::env::var("CRONSUN_TEST_AGENT_USER") {
            security.push(("agent_user", toml_str(&agent)));
        }
        put("security", &security);
        let level = std::env::var("CRONSUN_TEST_LOG").unwrap_or_else(|_| "info".into());
        put("log", &[("level", toml_str(&level))]);
        for (table, kv) in &self.values {
            match tables.iter_mut().find(|(t, _)| t == table) {
                Some((_, existing)) => existing.extend(kv.clone()),
                None => tables.push((table.clone(), kv.clone())),
            }
        }
        let mut out = String::from("# written by the cronsun end-to-end test harness\n");
        for (table, kv) in tables {
            out.push_str(&format!("\n[{table}]\n"));
            for (k, v) in kv {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out.push_str(&self.extra);
        out
    }
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral loopback port");
    l.local_addr().expect("local addr").port()
}

fn tail(path: &Path, max_lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(max_lines);
    lines[from..].join("\n")
}

/// A running (or stopped) `cronsund` owned by one test.
pub struct Daemon {
    dir: TempDir,
    port: u16,
    node_id: String,
    overrides: ConfigOverrides,
    config_path: PathBuf,
    child: Option<Child>,
    token: String,
    http: HttpClient,
    starts: u32,
}

impl Daemon {
    /// Starts a daemon with the harness defaults plus `overrides` and waits
    /// (at most 10 s) until `/healthz` answers and `admin.token` is written.
    #[track_caller]
    pub fn start(overrides: ConfigOverrides) -> Daemon {
        ensure_agent_user();
        let dir = tempfile::Builder::new()
            .prefix("cronsun-e2e-")
            .tempdir()
            .expect("create a temp dir");
        // The agent runs as an unprivileged user: let it reach its state dir
        // and create its socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod the temp dir");
        let run_dir = dir.path().join("run");
        std::fs::create_dir(&run_dir).expect("create the socket dir");
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o1777))
            .expect("chmod the socket dir");
        let port = free_port();
        let node_id = unique_id("node");
        let ip = overrides
            .listen_ip
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let addr = SocketAddr::new(ip, port);
        let listen = if overrides.tls_listener {
            ([0, 0, 0, 0], port).into()
        } else {
            addr
        };
        let config_path = dir.path().join("cronsun.toml");
        let text = overrides.render(
            &node_id,
            &dir.path().join("state"),
            listen,
            &run_dir.join("api.sock"),
        );
        let http = if overrides.tls_listener {
            HttpClient::with_tls(
                addr,
                Trust {
                    server_name: "localhost".into(),
                    ca_file: dir.path().join("state").join(SELF_SIGNED_CERT),
                },
            )
        } else {
            HttpClient::new(addr)
        };
        std::fs::write(&config_path, text).expect("write the config");
        std::fs::set_permissions(&config_path, std::fs::Permissions::from_mode(0o644))
            .expect("chmod the config");
        let mut d = Daemon {
            dir,
            port,
            node_id,
            overrides,
            config_path,
            child: None,
            token: String::new(),
            http,
            starts: 0,
        };
        d.spawn_and_wait_ready();
        d
    }

    /// [`Daemon::start`] with the harness defaults only.
    #[track_caller]
    pub fn start_default() -> Daemon {
        Self::start(ConfigOverrides::new())
    }

    #[track_caller]
    fn spawn_and_wait_ready(&mut self) {
        assert!(self.child.is_none(), "the daemon is already running");
        self.starts += 1;
        let out = File::create(self.log_path("out")).expect("create the stdout log");
        let err = File::create(self.log_path("err")).expect("create the stderr log");
        let mut cmd = match self.overrides.prefix.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(crate::bins::cronsund());
                c
            }
            None => Command::new(crate::bins::cronsund()),
        };
        cmd.arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env("RUST_BACKTRACE", "1");
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CRONSUN_") {
                cmd.env_remove(k);
            }
        }
        for (k, v) in &self.overrides.env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn cronsund");
        self.child = Some(child);

        let started = Instant::now();
        let ready = poll_until(READY_TIMEOUT, Duration::from_millis(50), || {
            if let Some(status) = self.try_wait() {
                panic!(
                    "cronsund exited with {status} before /healthz answered\n{}",
                    self.logs()
                );
            }
            let r = self.http.request(
                Method::GET,
                "/healthz",
                None,
                &[],
                None,
                Duration::from_secs(1),
            );
            matches!(r, Ok(ref r) if r.status == 200).then_some(())
        });
        assert!(
            ready.is_some(),
            "cronsund did not answer /healthz with 200 on {} within {READY_TIMEOUT:?}\n{}",
            self.http.addr(),
            self.logs()
        );
        let token_path = self.state_dir().join("admin.token");
        let token = poll_until(
            READY_TIMEOUT.saturating_sub(started.elapsed()),
            Duration::from_millis(50),
            || {
                std::fs::read_to_string(&token_path)
                    .ok()
                    .map(|t| t.trim().to_string())
                    .filter(|t| !t.is_empty())
            },
        );
        self.token = token.unwrap_or_else(|| {
            panic!(
                "{} was not written by the time /healthz answered\n{}",
                token_path.display(),
                self.logs()
            )
        });
    }

    fn log_path(&self, kind: &str) -> PathBuf {
        self.dir
            .path()
            .join(format!("cronsund.{}.{kind}.log", self.starts))
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(st)) => {
                self.child = None;
                Some(st)
            }
            _ => None,
        }
    }

    /// The last lines of every start's stdout and stderr.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        for n in 1..=self.starts {
            for kind in ["out", "err"] {
                let p = self.dir.path().join(format!("cronsund.{n}.{kind}.log"));
                s.push_str(&format!(
                    "----- {} (last 150 lines) -----\n{}\n",
                    p.display(),
                    tail(&p, 150)
                ));
            }
        }
        s
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://<listen address>:<port>`, or `https://localhost:<port>` with
    /// a [`ConfigOverrides::tls_listener`].
    pub fn url(&self) -> String {
        if self.overrides.tls_listener {
            format!("https://localhost:{}", self.port)
        } else {
            format!("http://{}", self.http.addr())
        }
    }

    /// The self-signed certificate a [`ConfigOverrides::tls_listener`]
    /// daemon serves (PEM), to trust with `--ca-file`.
    pub fn cert_path(&self) -> Option<PathBuf> {
        self.overrides
            .tls_listener
            .then(|| self.state_dir().join(SELF_SIGNED_CERT))
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The temp dir holding config, logs, socket dir and state dir.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Pid of the main daemon process while it runs.
    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    pub fn is_running(&mut self) -> bool {
        self.try_wait();
        self.child.is_some()
    }

    /// Sends `sig` to the main daemon process.
    pub fn signal(&self, sig: Signal) {
        let pid = self.pid().expect("the daemon is running");
        procs::signal_pids(&[pid], sig);
    }

    /// Waits (bounded) for the main process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        self.child.as_ref()?;
        let mut status = None;
        poll_until(timeout, Duration::from_millis(20), || {
            status = self.try_wait();
            status.map(|_| ())
        });
        status
    }

    /// SIGTERM, then waits at most [`STOP_TIMEOUT`] for the daemon to exit.
    #[track_caller]
    pub fn stop(&mut self) -> ExitStatus {
        self.stop_within(STOP_TIMEOUT)
    }

    /// SIGTERM, then waits at most `timeout`; a daemon still running then is
    /// SIGKILLed and the test fails.
    #[track_caller]
    pub fn stop_within(&mut self, timeout: Duration) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        match self.wait_exit(timeout) {
            Some(st) => {
                self.kill_leftovers();
                st
            }
            None => {
                self.kill9();
                panic!(
                    "cronsund did not exit within {timeout:?} of SIGTERM\n{}",
                    self.logs()
                );
            }
        }
    }

    /// Simulates a crash of the host's daemon: SIGKILL to the main process,
    /// then to every process it had started (agent, jobs) and to anything
    /// else still using this daemon's config or node id.
    pub fn kill9(&mut self) {
        let Some(pid) = self.pid() else {
            self.kill_leftovers();
            return;
        };
        let tree = procs::descendants(pid);
        procs::signal_pids(&[pid], Signal::SIGKILL);
        procs::signal_pids(&tree, Signal::SIGKILL);
        if self.wait_exit(Duration::from_secs(10)).is_none() {
            eprintln!("cronsund pid {pid} survived SIGKILL for 10 s");
        }
        self.kill_leftovers();
    }

    /// SIGKILLs processes that still carry this daemon's config path in
    /// their command line or its node id in their environment (an agent or a
    /// job whose parent is gone), and waits (bounded) until they are gone.
    fn kill_leftovers(&self) {
        let markers = [
            self.config_path.to_string_lossy().into_owned(),
            format!("CRONSUN_NODE={}", self.node_id),
        ];
        for m in &markers {
            procs::kill_matching(m);
        }
        for m in &markers {
            if let Err(left) = procs::wait_until_gone(m, Duration::from_secs(5)) {
                eprintln!(
                    "processes of daemon {} survived SIGKILL: {left:?}",
                    self.node_id
                );
            }
        }
    }

    /// Drops the extra environment (e.g. fault points) for the next start.
    pub fn clear_env(&mut self) {
        self.overrides.env.clear();
    }

    /// Starts the daemon again on the same state dir, config and port.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(
            !self.is_running(),
            "restart() needs a stopped daemon: call stop() or kill9() first"
        );
        self.spawn_and_wait_ready();
    }

    // ----- HTTP -----

    /// One request; a transport failure fails the test with the daemon's logs.
    #[track_caller]
    pub fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        match self
            .http
            .request(method, path, token, headers, body, HTTP_TIMEOUT)
        {
            Ok(r) => r,
            Err(e) => panic!("HTTP request failed: {e:#}\n{}", self.logs()),
        }
    }

    #[track_caller]
    fn authed(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Response {
        self.request(method, path, Some(&self.token), headers, body)
    }

    #[track_caller]
    pub fn api_get(&self, path: &str) -> Response {
        self.authed(Method::GET, path, &[], None)
    }

    #[track_caller]
    pub fn api_post(&self, path: &str, body: &impl Serialize) -> Response {
        self.authed(Method::POST, path, &[], Some(to_json(body)))
    }

    /// PUT with `If-Match: "<revision>"` when `if_match` is given.
    #[track_caller]
    pub fn api_put(&self, path: &str, body: &impl Serialize, if_match: Option<u64>) -> Response {
        let etag = if_match.map(|r| format!("\"{r}\""));
        let headers: Vec<(&str, &str)> = etag.iter().map(|e| ("if-match", e.as_str())).collect();
        self.authed(Method::PUT, path, &headers, Some(to_json(body)))
    }

    #[track_caller]
    pub fn api_delete(&self, path: &str) -> Response {
        self.authed(Method::DELETE, path, &[], None)
    }

    /// A request without any credentials.
    #[track_caller]
    pub fn anonymous(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Response {
        self.request(method, path, None, &[], body)
    }

    /// Which node served an authenticated GET (cluster mode names it in
    /// `x-cronsun-served-by`); `None` on a failure or another status.
    pub fn served_by(&self, path: &str) -> Option<String> {
        let r = self
            .http
            .request(
                Method::GET,
                path,
                Some(&self.token),
                &[],
                None,
                HTTP_TIMEOUT,
            )
            .ok()?;
        (r.status == 200).then(|| r.header("x-cronsun-served-by"))?
    }

    #[track_caller]
    pub fn anonymous_get(&self, path: &str) -> Response {
        self.anonymous(Method::GET, path, None)
    }

    // ----- jobs and runs -----

    /// POST /api/v1/jobs; expects 201 and returns the stored job.
    #[track_caller]
    pub fn create_job(&self, job: &Job) -> Job {
        self.api_post("/api/v1/jobs", job).expect_status(201).json()
    }

    /// GET /api/v1/jobs/{id}; `None` on 404.
    #[track_caller]
    pub fn get_job(&self, id: &str) -> Option<JobView> {
        let r = self.api_get(&format!("/api/v1/jobs/{id}"));
        match r.status {
            404 => None,
            200 => Some(r.json()),
            _ => panic!("unexpected answer: {r}"),
        }
    }

    /// Creates a shell job `id` tagged with `marker` that times out after 2 s
    /// (`kill_grace` 1 s), runs it now and waits until `procs` of its
    /// processes (`what`) exist. Returns the run id.
    #[track_caller]
    pub fn run_timing_out(
        &self,
        marker: &procs::MarkerGuard,
        id: &str,
        command: &str,
        procs: usize,
        what: &str,
    ) -> String {
        self.create_job(&crate::jobs::job(serde_json::json!({
            "id": id,
            "command": command,
            "shell": true,
            "env": marker.env_json(),
            "timeout": "2s",
            "kill_grace": "1s",
            "rules": [{ "schedule": "0 0 1 1 *" }],
        })));
        let run_id = self.run_now(id);
        marker.wait_present(procs, Duration::from_secs(10), what);
        run_id
    }

    /// POST /api/v1/jobs/{id}/run; expects 202 and returns the run id.
    #[track_caller]
    pub fn run_now(&self, job_id: &str) -> String {
        let r: RunNowResponse = self
            .api_post(
                &format!("/api/v1/jobs/{job_id}/run"),
                &serde_json::json!({}),
            )
            .expect_status(202)
            .json();
        r.run_id
    }

    /// Every record (all attempts) of `job_id`, oldest first by
    /// (scheduled_at, run_id, attempt). Search results carry no output.
    #[track_caller]
    pub fn runs(&self, job_id: &str) -> Vec<RunRecord> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..20 {
            let mut path = format!("/api/v1/runs?job={job_id}&limit=1000");
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={}", encode_query(c)));
            }
            let page: RunPage = self.api_get(&path).expect_status(200).json();
            all.extend(page.runs);
            cursor = page.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        all.sort_by(|a, b| {
            (a.scheduled_at, &a.run_id, a.attempt).cmp(&(b.scheduled_at, &b.run_id, b.attempt))
        });
        all
    }

    /// GET /api/v1/runs/{id} (with output): `id` is `<run_id>#<attempt>` or a
    /// bare run id (its latest attempt). `None` on 404.
    #[track_caller]
    pub fn record(&self, id: &str) -> Option<RunRecord> {
        let r = self.api_get(&format!("/api/v1/runs/{}", encode_path(id)));
        match r.status {
            404 => None,
            200 => Some(r.json()),
            _ => panic!("unexpected answer: {r}"),
        }
    }

    /// Polls the job's records until `pred` holds, at most `timeout`; fails
    /// printing the records otherwise.
    #[track_caller]
    pub fn wait_for_runs(
        &self,
        job_id: &str,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&[RunRecord]) -> bool,
    ) -> Vec<RunRecord> {
        let mut last = Vec::new();
        let found = poll_until(timeout, Duration::from_millis(200), || {
            last = self.runs(job_id);
            pred(&last).then(|| last.clone())
        });
        found.unwrap_or_else(|| {
            panic!(
                "job {job_id}: timed out after {timeout:?} waiting for {what}; records:\n{}\n{}",
                fmt_records(&last),
                self.logs()
            )
        })
    }

    /// Polls one record until it has `status`; fails early if it reaches
    /// another final status, or after `timeout`.
    #[track_caller]
    pub fn wait_for_status(&self, id: &str, status: RunStatus, timeout: Duration) -> RunRecord {
        let mut last = None;
        let found = poll_until(timeout, Duration::from_millis(100), || {
            last = self.record(id);
            match &last {
                Some(r) if r.status == status => Some(r.clone()),
                Some(r) if r.status.is_final() => panic!(
                    "run {id}: expected status {status}, but it ended {}:\n{}\n{}",
                    r.status,
                    fmt_records(std::slice::from_ref(r)),
                    self.logs()
                ),
                _ => None,
            }
        });
        found.unwrap_or_else(|| {
            panic!(
                "run {id}: timed out after {timeout:?} waiting for status {status}; last seen:\n{}\n{}",
                fmt_records(last.as_slice()),
                self.logs()
            )
        })
    }

    /// Polls one record until it is final (anything but `running`).
    #[track_caller]
    pub fn wait_for_final(&self, id: &str, timeout: Duration) -> RunRecord {
        let mut last = None;
        let found = poll_until(timeout, Duration::from_millis(100), || {
            last = self.record(id);
            last.clone().filter(|r| r.status.is_final())
        });
        found.unwrap_or_else(|| {
            panic!(
                "run {id}: not finished within {timeout:?}; last seen:\n{}\n{}",
                fmt_records(last.as_slice()),
                self.logs()
            )
        })
    }

    // ----- CLI -----

    /// Runs the real `cronsun` CLI against this daemon
    /// (`CRONSUN_URL`, `CRONSUN_TOKEN_FILE`), bounded by [`CLI_TIMEOUT`].
    #[track_caller]
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_within(args, CLI_TIMEOUT)
    }

    #[track_caller]
    pub fn cli_within(&self, args: &[&str], timeout: Duration) -> CliOutput {
        let url = self.url();
        let token_file = self.state_dir().join("admin.token");
        let token_file = token_file.to_string_lossy();
        let ca_file = self.cert_path().map(|p| p.to_string_lossy().into_owned());
        let mut envs = vec![
            ("CRONSUN_URL", url.as_str()),
            ("CRONSUN_TOKEN_FILE", &token_file),
        ];
        if let Some(ca) = &ca_file {
            envs.push(("CRONSUN_CA_FILE", ca));
        }
        run_cli(&crate::bins::cronsun(), args, &envs, timeout)
    }

    /// [`Daemon::cli`] with `--output json`; asserts exit 0 and parses stdout.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.extend(["--output", "json"]);
        let out = self.cli(&a);
        out.assert_success();
        out.json()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "===== cronsund {} on {} (dir {}) =====\n{}",
                self.node_id,
                self.url(),
                self.dir.path().display(),
                self.logs()
            );
        }
        self.kill9();
    }
}

fn to_json(body: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(body).expect("request bodies serialise")
}

/// Percent-encodes what is not unreserved in a path segment.
pub fn encode_path(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a query value.
pub fn encode_query(s: &str) -> String {
    encode_path(s)
}
