//! SIGHUP reloads what can change at runtime (DESIGN §6, issue 7): the
//! log level and the command policy take effect at once — the policy in the
//! executor, which re-reads the file itself when it runs as root — changes
//! that need a restart are named, and a config that does not validate
//! changes nothing.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;

use cronsun_tests::daemon::{is_root, ConfigOverrides};
use cronsun_tests::{job, poll_until, unique_id, Daemon, RunStatus};

const WAIT: Duration = Duration::from_secs(20);

/// Rewrites the running daemon's config file with `edit` applied.
fn edit_config(d: &Daemon, edit: impl FnOnce(String) -> String) {
    let text = std::fs::read_to_string(d.config_path()).expect("read the config");
    std::fs::write(d.config_path(), edit(text)).expect("write the config");
}

#[track_caller]
fn wait_for_log(d: &Daemon, needle: &str) {
    poll_until(WAIT, Duration::from_millis(50), || {
        d.logs().contains(needle).then_some(())
    })
    .unwrap_or_else(|| panic!("no log line containing {needle:?}:\n{}", d.logs()));
}

#[test]
fn sighup_applies_policy_and_log_level_and_names_what_needs_a_restart() {
    let d = Daemon::start(ConfigOverrides::new().set_str("log", "level", "warn"));
    let id = unique_id("reload");
    d.create_job(&job(json!({
        "id": id,
        "command": ["/bin/echo", "allowed"],
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let first = d.run_now(&id);
    let rec = d.wait_for_final(&first, WAIT);
    assert_eq!(rec.status, RunStatus::Success, "{rec:?}");
    assert!(
        !d.logs().contains("SIGHUP"),
        "nothing about SIGHUP before one"
    );

    // Narrow the command allow-list, raise the log level, move the listener.
    let other_port = cronsun_tests::daemon::free_port();
    let listen = format!("listen = \"127.0.0.1:{}\"", d.port());
    edit_config(&d, |t| {
        t.replace("level = \"warn\"", "level = \"info\"")
            .replace(
                "[security]\n",
                "[security]\nallowed_commands = [\"/bin/true\"]\n",
            )
            .replace(&listen, &format!("listen = \"127.0.0.1:{other_port}\""))
    });
    d.signal(Signal::SIGHUP);
    // An info line: it is only printed because the new level is applied.
    wait_for_log(&d, "SIGHUP: applied log.level, security.allowed_commands");
    wait_for_log(&d, "restart cronsund to apply the changes in [web]");
    if is_root() {
        wait_for_log(
            &d,
            "SIGHUP: executor reloaded the run_as and command policy",
        );
    }

    // The listener did not move (it needs a restart); the policy did.
    let second = d.run_now(&id);
    let rec = d.wait_for_final(&second, WAIT);
    assert_eq!(rec.status, RunStatus::Failed, "{rec:?}");
    let why = rec.reason.clone().unwrap_or_default();
    assert!(
        why.contains("refused by policy") && why.contains("allowed_commands"),
        "the run is refused naming the allow-list: {why:?}"
    );

    // A broken config changes nothing: the narrowed policy stays.
    edit_config(&d, |t| t.replace("level = \"info\"", "level = \"loud\""));
    d.signal(Signal::SIGHUP);
    wait_for_log(&d, "SIGHUP: new config rejected, nothing changed");
    wait_for_log(&d, "log.level: \"loud\" is not a log level");
    let third = d.run_now(&id);
    let rec = d.wait_for_final(&third, WAIT);
    assert_eq!(rec.status, RunStatus::Failed, "{rec:?}");
}
