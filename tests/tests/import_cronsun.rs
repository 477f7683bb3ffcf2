//! `cronsun import cronsun` against a real etcd holding keys in Go
//! cronsun's exact format (tests/fixtures/cronsun-go, written with
//! etcdctl), into a real cronsund: the jobs arrive converted, a second
//! import changes nothing, and an `etcdctl -w json` dump imports the same.

use cronsun_tests::etcd::Etcd;
use cronsun_tests::Daemon;

fn fixtures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cronsun-go")
}

/// Puts every `KEY<TAB>FILE` of keys.txt into etcd.
fn load_samples(etcd: &Etcd) -> usize {
    let keys = std::fs::read_to_string(fixtures().join("keys.txt")).expect("keys.txt");
    let mut n = 0;
    for line in keys.lines().filter(|l| !l.trim().is_empty()) {
        let (key, file) = line.split_once('\t').expect("KEY<TAB>FILE");
        let value = std::fs::read_to_string(fixtures().join(file)).expect("sample");
        etcd.ctl(&["put", key, value.trim_end()]);
        n += 1;
    }
    // Another application's key under the prefix is ignored.
    etcd.ctl(&["put", "/cronsun/node/node-web-1", "12345"]);
    n
}

#[test]
fn go_cronsun_jobs_import_from_etcd_and_from_a_dump() {
    let etcd = Etcd::start();
    assert_eq!(load_samples(&etcd), 6);
    let d = Daemon::start_default();
    let endpoint = etcd.endpoint();
    let import = |extra: &[&str]| {
        let mut args = vec!["import", "cronsun", "--timezone", "Asia/Shanghai"];
        args.extend_from_slice(extra);
        d.cli(&args)
    };

    // Without a zone and without a terminal: refused, naming the flag.
    let out = d.cli(&["import", "cronsun", "--etcd", &endpoint]);
    assert!(
        !out.status.success() && out.stderr.contains("--timezone"),
        "{out}"
    );

    let out = import(&["--etcd", &endpoint]);
    out.assert_success();
    for id in [
        "rotate-logs",
        "billing-export",
        "cache-warm",
        "year-end-close",
    ] {
        assert!(
            out.stdout.contains(&format!("created    {id}")),
            "{id}: {out}"
        );
    }
    assert!(
        out.stderr.contains("log_expiration 14 days"),
        "notes go to stderr: {out}"
    );

    let rotate = d.get_job("rotate-logs").expect("imported").job;
    assert_eq!(rotate.rules[0].schedule, "0 30 2 * * *");
    assert_eq!(rotate.rules[0].timezone.as_deref(), Some("Asia/Shanghai"));
    let warm = d.get_job("cache-warm").expect("imported").job;
    assert_eq!(warm.rules[0].schedule, "*/10 * * * * *", "seconds-first");
    assert!(warm.paused);
    // The schedule really fires every 10 seconds in the daemon's view.
    let next = d.cli_json(&["cron", "next", "*/10 * * * * *", "-n", "2"]);
    assert_eq!(next.as_array().map(Vec::len), Some(2), "{next}");

    // Importing again changes nothing.
    let again = import(&["--etcd", &endpoint]);
    again.assert_success();
    assert_eq!(again.stdout.matches("unchanged").count(), 4, "{again}");

    // An etcdctl dump converts to the same job file as the live etcd.
    let dump = d.dir().join("cronsun-go.json");
    std::fs::write(
        &dump,
        etcd.ctl(&["get", "--prefix", "/cronsun/", "-w", "json"]),
    )
    .expect("write the dump");
    let from_dump = import(&["--from-file", &dump.to_string_lossy(), "--dry-run"]);
    let from_etcd = import(&["--etcd", &endpoint, "--dry-run"]);
    from_dump.assert_success();
    from_etcd.assert_success();
    assert_eq!(from_dump.stdout, from_etcd.stdout);
    assert!(from_dump.stdout.contains("[[job]]"), "{from_dump}");

    // A dead etcd is named.
    drop(etcd);
    let out = import(&["--etcd", &endpoint]);
    assert!(
        !out.status.success() && out.stderr.contains(&endpoint),
        "{out}"
    );
}
