//! Install smoke test of the .deb (runs only with CRONSUN_PACKAGE_TESTS=1,
//! as root, after `scripts/package.sh`): dpkg -i; the unit verifies; the
//! daemon started the way the unit's ExecStart does (systemd is not PID 1
//! in CI) runs its executor as root and its agent as `cronsun`; the API
//! answers; a job runs as an allowed user and is refused for a disallowed
//! one; dpkg --purge leaves nothing behind. The .rpm is inspected with
//! `rpm -qlp` / `rpm -qp --scripts` when `rpm` is installed.
//!
//! It changes the host (packages, /usr/bin, the `cronsun` user), which is
//! why it is opt-in; a `cronsun` user that existed before is re-created.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cronsun_tests::daemon::{free_port, is_root};
use cronsun_tests::poll_until;

fn enabled() -> bool {
    if std::env::var("CRONSUN_PACKAGE_TESTS").as_deref() != Ok("1") {
        eprintln!("skipped: set CRONSUN_PACKAGE_TESTS=1 (after scripts/package.sh) to run the package tests");
        return false;
    }
    if !is_root() {
        eprintln!("skipped: installing packages needs root");
        return false;
    }
    true
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn find(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/package.sh first)", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .unwrap_or_else(|| panic!("no .{ext} in {}", dir.display()))
}

fn sh(cmd: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn exists(user_or_group: &str, db: &str) -> bool {
    sh("getent", &[db, user_or_group]).0
}

/// The daemon as the unit starts it; stopped by pid on drop.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let gone = poll_until(Duration::from_secs(20), Duration::from_millis(50), || {
            self.0.try_wait().ok().flatten()
        });
        if gone.is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// What both packages install.
const CONTENT: [&str; 7] = [
    "/usr/bin/cronsund",
    "/usr/bin/cronsun",
    "/usr/lib/systemd/system/cronsun.service",
    "/usr/lib/sysusers.d/cronsun.conf",
    "/usr/lib/tmpfiles.d/cronsun.conf",
    "/etc/cronsun/cronsun.toml",
    "/usr/share/man/man8/cronsund.8",
];

#[test]
fn deb_installs_runs_and_purges() {
    if !enabled() {
        return;
    }
    // Ids of a `cronsun` user and groups that existed before, to restore
    // them exactly after the purge (other tests on this host use them).
    let before = |name: &str, db: &str| {
        sh("getent", &[db, name])
            .1
            .split(':')
            .nth(2)
            .map(|s| s.trim().to_string())
    };
    let old_uid = before("cronsun", "passwd");
    let old_gid = before("cronsun", "group");
    let old_admin = before("cronsun-admin", "group");
    let deb = find(&target_dir().join("debian"), "deb");
    let (ok, out) = sh("dpkg", &["-i", &deb.to_string_lossy()]);
    assert!(ok, "dpkg -i failed:\n{out}");
    let (_, files) = sh("dpkg", &["-L", "cronsun"]);
    for f in CONTENT.iter().chain(&[
        "/usr/share/man/man1/cronsun.1",
        "/usr/share/bash-completion/completions/cronsun",
    ]) {
        assert!(files.contains(f), "{f} not in the package:\n{files}");
    }
    let (_, conffiles) = sh("dpkg-query", &["-W", "-f=${Conffiles}", "cronsun"]);
    assert!(
        conffiles.contains("/etc/cronsun/cronsun.toml"),
        "{conffiles}"
    );
    assert!(exists("cronsun", "passwd"), "postinst created user cronsun");
    assert!(
        exists("cronsun-admin", "group"),
        "postinst created group cronsun-admin"
    );
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (_, out) = sh(
            "systemd-analyze",
            &["verify", "/usr/lib/systemd/system/cronsun.service"],
        );
        assert_eq!(out.trim(), "", "systemd-analyze verify is silent");
    }
    let (ok, out) = sh(
        "/usr/bin/cronsund",
        &["validate", "--config", "/etc/cronsun/cronsun.toml"],
    );
    assert!(ok, "ExecStartPre (validate) fails:\n{out}");

    // ExecStart, on a free port (the conffile's 7079 may be taken here).
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("cronsun.toml");
    let text = std::fs::read_to_string("/etc/cronsun/cronsun.toml").expect("conffile");
    std::fs::write(
        &cfg,
        text.replace("0.0.0.0:7079", &format!("0.0.0.0:{port}")),
    )
    .expect("write config");
    let log = std::fs::File::create(dir.path().join("daemon.log")).expect("log");
    let child = Command::new("/usr/bin/cronsund")
        .arg("--config")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start cronsund");
    let exec_pid = child.id();
    let daemon = Started(child);
    let logs = || std::fs::read_to_string(dir.path().join("daemon.log")).unwrap_or_default();
    let token = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        std::fs::read_to_string("/var/lib/cronsun/admin.token").ok()
    })
    .unwrap_or_else(|| panic!("no admin token\n{}", logs()));
    // The shipped config listens on every interface, so it speaks TLS with
    // a self-signed certificate that the CLI is told to trust.
    let server = format!("https://127.0.0.1:{port}");
    let ca = "/var/lib/cronsun/tls/cert.pem";
    let cli = |args: &[&str]| {
        let mut all = vec![
            "--server",
            server.as_str(),
            "--ca-file",
            ca,
            "--token",
            token.trim(),
        ];
        all.extend_from_slice(args);
        sh("/usr/bin/cronsun", &all)
    };
    let up = poll_until(Duration::from_secs(15), Duration::from_millis(100), || {
        cli(&["job", "ls"]).0.then_some(())
    });
    assert!(up.is_some(), "the API does not answer\n{}", logs());
    assert!(
        logs().contains("serving HTTPS") && logs().contains("fingerprint"),
        "the certificate's fingerprint is logged\n{}",
        logs()
    );

    let (_, ps) = sh(
        "ps",
        &["-o", "user=,comm=", "--ppid", &exec_pid.to_string()],
    );
    let (_, me) = sh("ps", &["-o", "user=", "-p", &exec_pid.to_string()]);
    assert_eq!(me.trim(), "root", "the executor runs as root");
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["cronsun", "cronsund"]),
        "the agent runs as cronsun: {ps}"
    );

    let jobs = dir.path().join("jobs.toml");
    std::fs::write(
        &jobs,
        r#"
[[job]]
id = "pkg-allowed"
name = "runs as nobody"
command = ["/usr/bin/id", "-un"]
run_as = "nobody"
[[job.rules]]
schedule = "0 0 1 1 *"

[[job]]
id = "pkg-root"
name = "root is not allowed"
command = ["/usr/bin/id", "-un"]
run_as = "root"
[[job.rules]]
schedule = "0 0 1 1 *"
"#,
    )
    .expect("write jobs");
    let (ok, out) = cli(&["job", "apply", "-f", &jobs.to_string_lossy()]);
    assert!(ok, "{out}");
    let (ok, out) = cli(&["job", "run", "pkg-allowed", "--wait"]);
    assert!(ok, "an allowed user runs: {out}\n{}", logs());
    let (ok, out) = cli(&["job", "run", "pkg-root", "--wait"]);
    assert!(!ok && out.contains("refused"), "root is refused: {out}");
    drop(daemon);

    let (ok, out) = sh("dpkg", &["--purge", "cronsun"]);
    assert!(ok, "dpkg --purge failed:\n{out}");
    for gone in [
        "/usr/bin/cronsund",
        "/usr/bin/cronsun",
        "/etc/cronsun/cronsun.toml",
        "/var/lib/cronsun",
    ] {
        assert!(!Path::new(gone).exists(), "{gone} left after purge");
    }
    let user_left = exists("cronsun", "passwd");
    if let Some(gid) = &old_admin {
        let _ = sh("groupadd", &["--system", "-g", gid, "cronsun-admin"]);
    }
    if let Some(gid) = &old_gid {
        let _ = sh("groupadd", &["--system", "-g", gid, "cronsun"]);
    }
    if let (Some(uid), Some(gid)) = (&old_uid, &old_gid) {
        let _ = sh(
            "useradd",
            &[
                "--system",
                "-u",
                uid,
                "-g",
                gid,
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                "cronsun",
            ],
        );
    }
    assert!(!user_left, "purge removes user cronsun");
}

#[test]
fn rpm_has_the_same_content_and_scriptlets() {
    if !enabled() {
        return;
    }
    if !Path::new("/usr/bin/rpm").exists() {
        eprintln!("skipped: rpm is not installed (apt-get install -y rpm)");
        return;
    }
    let rpm = find(&target_dir().join("generate-rpm"), "rpm");
    let rpm = rpm.to_string_lossy();
    let (ok, files) = sh("rpm", &["-qlp", &rpm]);
    assert!(ok, "{files}");
    for f in CONTENT {
        assert!(files.contains(f), "{f} not in the rpm:\n{files}");
    }
    let (ok, scripts) = sh("rpm", &["-qp", "--scripts", &rpm]);
    assert!(ok, "{scripts}");
    for s in [
        "preinstall",
        "postinstall",
        "preuninstall",
        "postuninstall",
        "useradd",
        "systemctl",
    ] {
        assert!(
            scripts.contains(s),
            "{s} missing from the scriptlets:\n{scripts}"
        );
    }
    let (_, cfg) = sh("rpm", &["-qcp", &rpm]);
    assert!(
        cfg.contains("/etc/cronsun/cronsun.toml"),
        "config file: {cfg}"
    );
}
