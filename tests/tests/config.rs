//! `cronsund validate` and start-up with a bad config: exit 78 with a
//! message naming file, line and key.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cronsun_tests::daemon::{ensure_agent_user, free_port};
use cronsun_tests::{bins, run_cli, unique_id, CliOutput, ConfigOverrides};

/// A config in its own temp dir; returns the dir guard, the file and its text.
fn write_config(o: &ConfigOverrides) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let text = o.render(
        &unique_id("cfg"),
        &dir.path().join("state"),
        listen,
        &dir.path().join("api.sock"),
    );
    let path = dir.path().join("cronsun.toml");
    std::fs::write(&path, &text).expect("write config");
    (dir, path, text)
}

/// 1-based line of the first line of `text` equal to `line`.
fn line_of(text: &str, line: &str) -> usize {
    text.lines()
        .position(|l| l.trim() == line)
        .unwrap_or_else(|| panic!("{line:?} not in\n{text}"))
        + 1
}

struct BadCase {
    what: &'static str,
    table: &'static str,
    key: &'static str,
    literal: &'static str,
}

const BAD: [BadCase; 3] = [
    BadCase {
        what: "unknown key",
        table: "web",
        key: "colour",
        literal: "\"red\"",
    },
    BadCase {
        what: "bad duration",
        table: "scheduler",
        key: "drain_timeout",
        literal: "\"ten seconds\"",
    },
    BadCase {
        what: "bad listen address",
        table: "web",
        key: "listen",
        literal: "\"not-an-address\"",
    },
];

#[track_caller]
fn assert_names_file_line_key(
    out: &CliOutput,
    case: &BadCase,
    path: &std::path::Path,
    line: usize,
) {
    out.assert_code(78);
    let location = format!("{}:{line}", path.display());
    assert!(
        out.stderr.contains(&location),
        "{}: stderr must name file and line ({location}): {out}",
        case.what
    );
    assert!(
        out.stderr.contains(case.key),
        "{}: stderr must name the key {}: {out}",
        case.what,
        case.key
    );
}

#[test]
fn validate_accepts_the_harness_config() {
    ensure_agent_user();
    let (_dir, path, _) = write_config(&ConfigOverrides::new());
    let p = path.to_string_lossy();
    run_cli(
        &bins::cronsund(),
        &["validate", "--config", &p],
        &[],
        Duration::from_secs(15),
    )
    .assert_success();
}

#[test]
fn validate_exits_78_naming_file_line_and_key() {
    ensure_agent_user();
    for case in &BAD {
        let (_dir, path, text) =
            write_config(&ConfigOverrides::new().set(case.table, case.key, case.literal));
        let line = line_of(&text, &format!("{} = {}", case.key, case.literal));
        let p = path.to_string_lossy();
        let out = run_cli(
            &bins::cronsund(),
            &["validate", "--config", &p],
            &[],
            Duration::from_secs(15),
        );
        assert_names_file_line_key(&out, case, &path, line);
    }
}

/// The daemon itself refuses to start on the same configs, with the same
/// exit code, instead of starting half-configured (or hanging).
#[test]
fn daemon_start_with_a_bad_config_exits_78() {
    ensure_agent_user();
    for case in &BAD {
        let (_dir, path, text) =
            write_config(&ConfigOverrides::new().set(case.table, case.key, case.literal));
        let line = line_of(&text, &format!("{} = {}", case.key, case.literal));
        let p = path.to_string_lossy();
        let out = run_cli(
            &bins::cronsund(),
            &["--config", &p],
            &[],
            Duration::from_secs(15),
        );
        assert_names_file_line_key(&out, case, &path, line);
    }
}
