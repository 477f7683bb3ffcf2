//! Self-checks of the harness's process handling (no daemon needed): the
//! tests above rely on it to see and stop every process they cause.

use std::process::{Command, Stdio};
use std::time::Duration;

use cronsun_tests::{run_cli, MarkerGuard};

#[test]
fn marker_guard_sees_descendants_and_kills_them_on_drop() {
    let m = MarkerGuard::new("self-check");
    let mut child = Command::new("/bin/sh")
        .args(["-c", "sleep 1000 & sleep 1000; wait"])
        .env("E2E_MARKER", m.marker())
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn sh");
    let found = m.wait_present(3, Duration::from_secs(10), "sh and its two sleeps");
    assert!(
        found.iter().any(|p| p.pid == child.id() as i32),
        "{found:?}"
    );
    let marker = m.env_entry();
    drop(m);
    child.wait().expect("reap sh");
    cronsun_tests::procs::wait_until_gone(&marker, Duration::from_secs(5))
        .unwrap_or_else(|left| panic!("survivors after the guard dropped: {left:?}"));
}

#[test]
fn cli_runner_kills_a_command_that_hangs_and_fails() {
    let err = std::panic::catch_unwind(|| {
        run_cli(
            std::path::Path::new("/bin/sleep"),
            &["1000"],
            &[],
            Duration::from_millis(300),
        )
    })
    .expect_err("a hanging command fails the test");
    let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("did not finish within"), "{msg}");
}
