//! The systemd notification protocol (`Type=notify`, `WatchdogSec=`) as
//! systemd sees it: the test plays systemd's side with a real datagram
//! socket in `NOTIFY_SOCKET` and a `WATCHDOG_USEC`, and reads what the
//! daemon's main process sends: READY once the API answers, STATUS lines,
//! watchdog pings, STOPPING at SIGTERM. Jobs never see the socket.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use cronsun_tests::daemon::ConfigOverrides;
use cronsun_tests::{job, unique_id, Daemon, RunStatus};

/// Messages from the daemon, each a set of `KEY=value` lines.
struct Systemd {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Systemd {
    /// Reads datagrams until one satisfies `pred` (at most `timeout`).
    #[track_caller]
    fn wait_for(&mut self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no notification {what} within {timeout:?}; got {:#?}",
                self.seen
            );
            self.sock
                .set_read_timeout(Some(left))
                .expect("set the read timeout");
            if let Ok(n) = self.sock.recv(&mut buf) {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                self.seen.push(msg.clone());
                if pred(&msg) {
                    return msg;
                }
            }
        }
    }
}

#[test]
fn ready_status_watchdog_and_stopping_reach_systemd() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    // Root's executor or the single-process daemon writes to it.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .expect("chmod the notify socket");
    let mut systemd = Systemd {
        sock,
        seen: Vec::new(),
    };
    let mut d = Daemon::start(
        ConfigOverrides::new()
            .env("NOTIFY_SOCKET", &path.to_string_lossy())
            // 2 s: pings are due every second.
            .env("WATCHDOG_USEC", "2000000"),
    );
    systemd.wait_for("READY=1", Duration::from_secs(20), |m| {
        m.lines().any(|l| l == "READY=1")
    });
    // READY came after the listeners: the API answers.
    d.api_get("/api/v1/jobs").expect_status(200);
    systemd.wait_for("a STATUS line", Duration::from_secs(20), |m| {
        m.contains("STATUS=") && m.contains("jobs loaded")
    });
    for n in 1..=2 {
        systemd.wait_for(
            &format!("watchdog ping {n}"),
            Duration::from_secs(10),
            |m| m.lines().any(|l| l == "WATCHDOG=1"),
        );
    }

    // A job's environment carries nothing of the daemon's supervision.
    let id = unique_id("notify-env");
    d.create_job(&job(json!({
        "id": id,
        "command": "env",
        "shell": true,
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run = d.run_now(&id);
    let rec = d.wait_for_final(&run, Duration::from_secs(20));
    assert_eq!(rec.status, RunStatus::Success, "{rec:?}");
    let env = d.record(&run).expect("the record").output_text();
    for leaked in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
        assert!(
            !env.contains(leaked),
            "{leaked} leaked into the job:\n{env}"
        );
    }

    d.signal(Signal::SIGTERM);
    systemd.wait_for("STOPPING=1", Duration::from_secs(20), |m| {
        m.lines().any(|l| l == "STOPPING=1")
    });
    let status = d.stop_within(Duration::from_secs(20));
    assert!(status.success(), "{status}\n{}", d.logs());
    assert!(
        !systemd.seen.iter().any(|m| m.contains("MAINPID=")),
        "the daemon never moves the unit's main pid: {:#?}",
        systemd.seen
    );
}
