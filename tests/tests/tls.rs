//! A non-loopback listener speaks TLS: at first start cronsund creates a
//! self-signed certificate in its state dir and logs its fingerprint; a
//! client trusting that certificate gets answers, cookies are `Secure`, and
//! plain HTTP gets none.

use std::os::unix::fs::PermissionsExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Method;
use serde_json::json;

use cronsun_tests::daemon::{ensure_agent_user, free_port};
use cronsun_tests::http::HttpClient;
use cronsun_tests::{bins, poll_until, run_cli, tls, unique_id, ConfigOverrides};

/// Stops the daemon by its pid when the test ends, also on failure.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = poll_until(Duration::from_secs(10), Duration::from_millis(50), || {
            matches!(self.0.try_wait(), Ok(Some(_))).then_some(())
        });
        if stopped.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// A daemon listening on all addresses (`0.0.0.0:port`), started and
/// stopped by the test (the harness's `Daemon` waits for plain HTTP).
struct Wide {
    dir: tempfile::TempDir,
    port: u16,
    _running: Running,
}

impl Wide {
    fn start(overrides: ConfigOverrides) -> Wide {
        ensure_agent_user();
        let dir = tempfile::Builder::new()
            .prefix("cronsun-tls-")
            .tempdir()
            .expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let port = free_port();
        let config = overrides.set_str("web", "socket", "").render(
            &unique_id("node"),
            &dir.path().join("state"),
            ([0, 0, 0, 0], port).into(),
            &dir.path().join("unused.sock"),
        );
        let config_path = dir.path().join("cronsun.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = std::fs::File::create(dir.path().join("cronsund.log")).expect("log");
        let child = Command::new(bins::cronsund())
            .arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn cronsund");
        Wide {
            dir,
            port,
            _running: Running(child),
        }
    }

    fn state(&self) -> std::path::PathBuf {
        self.dir.path().join("state")
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cronsund.log")).unwrap_or_default()
    }

    /// The first log line containing every one of `words` (waits up to 15 s).
    fn log_line(&self, words: &[&str]) -> String {
        poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
            self.logs()
                .lines()
                .find(|l| words.iter().all(|w| l.contains(w)))
                .map(str::to_string)
        })
        .unwrap_or_else(|| panic!("no log line with {words:?}:\n{}", self.logs()))
    }
}

#[test]
fn non_loopback_listener_serves_tls_with_a_self_signed_certificate() {
    let d = Wide::start(ConfigOverrides::new());
    let (port, state) = (d.port, d.state());

    let logged = d.log_line(&["serving HTTPS", "fingerprint"]);
    let cert_pem = std::fs::read(state.join("tls/cert.pem")).expect("the self-signed certificate");
    let der = tls::pem_certs(&cert_pem).expect("pem");
    let fp = tls::fingerprint(&der[0]);
    assert!(
        logged.contains(&fp),
        "the logged fingerprint is the certificate's ({fp}):\n{logged}"
    );
    let key_mode = std::fs::metadata(state.join("tls/key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(key_mode & 0o777, 0o600, "key mode {key_mode:o}");

    let addr = ([127, 0, 0, 1], port).into();
    let health = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        tls::request(
            addr,
            "localhost",
            &cert_pem,
            Method::GET,
            "/healthz",
            &[],
            None,
        )
        .ok()
    })
    .unwrap_or_else(|| panic!("no HTTPS answer\n{}", d.logs()));
    assert_eq!(health.status, 200, "{health}");

    let password = std::fs::read_to_string(state.join("initial-admin-password")).expect("password");
    let body =
        serde_json::to_vec(&json!({"user": "admin", "password": password.trim()})).expect("json");
    let login = tls::request(
        addr,
        "localhost",
        &cert_pem,
        Method::POST,
        "/api/v1/session",
        &[],
        Some(body),
    )
    .expect("login over TLS");
    assert_eq!(login.status, 200, "{login}");
    let cookie = login.header("set-cookie").expect("a session cookie");
    assert!(
        cookie.contains("Secure") && cookie.contains("HttpOnly"),
        "{cookie}"
    );

    // A client that does not trust the certificate is refused.
    let other = include_bytes!("data/unrelated-cert.pem");
    assert!(
        tls::request(addr, "localhost", other, Method::GET, "/healthz", &[], None).is_err(),
        "a client with other trust roots must fail the handshake"
    );
    // The CLI over https: refused until told to trust the certificate.
    let server = format!("https://localhost:{port}");
    let token_file = state.join("admin.token").to_string_lossy().to_string();
    let cert_file = state.join("tls/cert.pem").to_string_lossy().to_string();
    let envs = [
        ("CRONSUN_URL", server.as_str()),
        ("CRONSUN_TOKEN_FILE", token_file.as_str()),
    ];
    let untrusted = run_cli(
        &bins::cronsun(),
        &["job", "ls"],
        &envs,
        Duration::from_secs(30),
    );
    untrusted.assert_code(1);
    assert!(untrusted.stderr.contains("--ca-file"), "{untrusted}");
    run_cli(
        &bins::cronsun(),
        &["--ca-file", &cert_file, "job", "ls"],
        &envs,
        Duration::from_secs(30),
    )
    .assert_success();

    // Plain HTTP on the TLS port gets no API answer.
    let plain = HttpClient::new(addr).request(
        Method::GET,
        "/healthz",
        None,
        &[],
        None,
        Duration::from_secs(3),
    );
    assert!(
        !matches!(plain, Ok(ref r) if r.status == 200),
        "plain HTTP answered: {plain:?}"
    );
}

#[test]
fn insecure_plaintext_serves_http_on_all_addresses_and_says_so() {
    let d = Wide::start(ConfigOverrides::new().set("web", "insecure_plaintext", "true"));
    let warning = d.log_line(&["insecure_plaintext"]);
    assert!(warning.contains("WARN"), "{warning}");
    let addr = ([127, 0, 0, 1], d.port).into();
    let health = poll_until(Duration::from_secs(10), Duration::from_millis(100), || {
        HttpClient::new(addr)
            .request(
                Method::GET,
                "/healthz",
                None,
                &[],
                None,
                Duration::from_secs(3),
            )
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(health.is_some(), "no plain HTTP answer\n{}", d.logs());
    assert!(
        !d.state().join("tls").exists(),
        "no certificate is made for plain HTTP"
    );
}
