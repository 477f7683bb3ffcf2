//! The API against a fuzzer (DESIGN §5: bad input gets a clear error, never
//! a panic): Schemathesis generates requests from `/api/v1/openapi.json` —
//! valid, boundary and malformed ones, plus stateful sequences — against a
//! real cronsund, and checks that no answer is a server error, that every
//! status and content type is documented and that bodies match their
//! schemas. The daemon may only run `/bin/true` as `nobody`, so whatever
//! jobs the fuzzer manages to create cannot do anything.

use std::path::PathBuf;
use std::process::Command;

use cronsun_tests::daemon::ConfigOverrides;
use cronsun_tests::Daemon;

/// `st` from `CRONSUN_SCHEMATHESIS`, else the install script's cache.
fn schemathesis() -> PathBuf {
    if let Some(p) = std::env::var_os("CRONSUN_SCHEMATHESIS") {
        return PathBuf::from(p);
    }
    let out = Command::new("scripts/services/schemathesis.sh")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .arg("path")
        .output()
        .expect("run scripts/services/schemathesis.sh path");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn fuzzed_requests_get_documented_answers_and_never_a_server_error() {
    let st = schemathesis();
    assert!(
        st.exists(),
        "{} is missing: run scripts/services/schemathesis.sh install (scripts/test.sh does)",
        st.display()
    );
    let d = Daemon::start(
        ConfigOverrides::new()
            .set_str("security", "default_run_as", "nobody")
            .allowed_users(&["nobody"])
            .set("security", "allowed_commands", "[\"/bin/true\"]"),
    );
    let out = Command::new(&st)
        .arg("run")
        .arg(format!("{}/api/v1/openapi.json", d.url()))
        .args(["--url", &d.url()])
        .args(["-H", &format!("Authorization: Bearer {}", d.token())])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--request-timeout",
            "10",
        ])
        .env("NO_COLOR", "1")
        // Its cache (.schemathesis/) goes with the test's temp dir.
        .current_dir(d.dir())
        .output()
        .expect("run schemathesis");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Vec<&str> = report
        .lines()
        .filter(|l| l.contains("generated") || l.contains("Seed:"))
        .collect();
    eprintln!("schemathesis: {}", summary.join("; "));
    assert!(
        out.status.success(),
        "schemathesis found problems (replay with the seed):\n{report}\n{}",
        d.logs()
    );
    assert!(
        !d.logs().contains("panicked"),
        "the daemon panicked:\n{}",
        d.logs()
    );
}
