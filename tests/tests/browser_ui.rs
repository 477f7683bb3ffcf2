//! Browser tests of the web UI (issue 6): a real `cronsund` on a temp state
//! dir and a free loopback port, driven by Debian chromium through
//! playwright-core (`tests/browser/*.test.js`, Node's test runner).
//! Screenshots of every page at laptop and phone width land in
//! `target/screenshots/`. Needs `scripts/services/chromium.sh install`.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use cronsun_tests::{poll_until, Daemon};

/// Upper bound of the whole browser suite (it takes well under a minute).
const SUITE_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn chromium() -> PathBuf {
    std::env::var_os("CRONSUN_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

#[test]
fn web_ui_in_chromium() {
    let repo = repo();
    let browser_dir = repo.join("tests/browser");
    assert!(
        chromium().exists() && browser_dir.join("node_modules/playwright-core").exists(),
        "the browser tests need {} and tests/browser/node_modules: run scripts/services/chromium.sh install",
        chromium().display()
    );
    let mut d = Daemon::start_default();
    let screenshots = repo.join("target/screenshots");
    // Node and the chromiums it starts get their own process group, so all
    // of them can be stopped by the group's id if the suite overruns.
    let mut node = Command::new("node")
        .args([
            "--test",
            "--test-concurrency=1",
            "--test-reporter=spec",
            "i18n.test.js",
            "ui.test.js",
        ])
        .current_dir(&browser_dir)
        .env("CRONSUN_URL", d.url())
        .env("CRONSUN_STATE_DIR", d.state_dir())
        .env("CRONSUN_SCREENSHOTS", &screenshots)
        .env("CRONSUN_CHROMIUM", chromium())
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .expect("start node (install nodejs: scripts/services/chromium.sh install)");
    let pid = node.id() as i32;
    let status = poll_until(SUITE_TIMEOUT, Duration::from_millis(200), || {
        node.try_wait().ok().flatten()
    });
    let status = match status {
        Some(s) => s,
        None => {
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = node.wait();
            d.stop();
            panic!("the browser tests did not finish within {SUITE_TIMEOUT:?}");
        }
    };
    // Chromium helpers left behind by a failed test: stop the group by its id.
    let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
    d.stop();
    assert!(
        status.success(),
        "browser tests failed ({status}); screenshots in {}\n{}",
        screenshots.display(),
        d.logs()
    );
}
