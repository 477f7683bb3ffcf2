//! The `cronsun` CLI against a live daemon (job files, runs, logs) and the
//! job API's write rules (revisions, validation, all-or-nothing apply).

use std::time::Duration;

use serde_json::{json, Value};

use cronsun_proto::api::{ApplyResult, JobView};
use cronsun_tests::{bins, fmt_records, job, run_cli, unique_id, Daemon, RunStatus};

/// `{"jobs": [...]}` or a bare array, as `job ls --output json` may print.
fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .unwrap_or(v)
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_else(|| panic!("expected a list of {key}: {v}"))
}

/// The job inside a JobView, or the value itself when it is a Job.
fn job_of(v: &Value) -> &Value {
    v.get("job").unwrap_or(v)
}

fn listed_job_ids(v: &Value) -> Vec<String> {
    list(v, "jobs")
        .iter()
        .filter_map(|j| job_of(j)["id"].as_str().map(str::to_string))
        .collect()
}

fn write_file(d: &Daemon, name: &str, text: &str) -> String {
    let p = d.dir().join(name);
    std::fs::write(&p, text).expect("write job file");
    p.to_string_lossy().into_owned()
}

/// `job apply -f`, `job ls`, `job show`, `job pause/resume`, `job rm`.
#[test]
fn job_file_round_trip_through_the_cli() {
    let d = Daemon::start_default();
    let a = unique_id("file-a");
    let b = unique_id("file-b");
    let file = write_file(
        &d,
        "jobs.toml",
        &format!(
            r#"
[[job]]
id = "{a}"
name = "File job A"
command = ["true"]
timeout = "30m"
retries = 2

[[job.rules]]
schedule = "0 3 * * *"
timezone = "Europe/Berlin"

[[job]]
id = "{b}"
command = "echo 'hello world'"

[[job.rules]]
schedule = "@daily"
"#
        ),
    );
    d.cli(&["job", "apply", "-f", &file]).assert_success();

    let ids = listed_job_ids(&d.cli_json(&["job", "ls"]));
    assert!(
        ids.contains(&a) && ids.contains(&b),
        "job ls shows both: {ids:?}"
    );

    let shown = d.cli_json(&["job", "show", &a]);
    let j = job_of(&shown);
    assert_eq!(j["id"], json!(a), "{shown}");
    assert_eq!(j["name"], json!("File job A"), "{shown}");
    assert_eq!(j["retries"], json!(2), "{shown}");
    assert_eq!(j["rules"][0]["timezone"], json!("Europe/Berlin"), "{shown}");
    assert!(
        j["revision"].as_u64().unwrap_or(0) > 0,
        "stored with a revision: {shown}"
    );
    let stored_b = d.get_job(&b).expect("b stored");
    assert_eq!(
        stored_b.job.rules[0].timezone.as_deref(),
        Some("UTC"),
        "a rule without a zone is stored with the configured one"
    );

    d.cli(&["job", "pause", &a]).assert_success();
    let view = d.get_job(&a).expect("a exists");
    assert!(view.job.paused, "paused via the CLI: {:?}", view.job);
    assert_eq!(
        job_of(&d.cli_json(&["job", "show", &a]))["paused"],
        json!(true)
    );
    d.cli(&["job", "resume", &a]).assert_success();
    assert!(
        !d.get_job(&a).expect("a exists").job.paused,
        "resumed via the CLI"
    );

    d.cli(&["job", "rm", &b]).assert_success();
    assert!(d.get_job(&b).is_none(), "job rm deleted {b}");
    let ids = listed_job_ids(&d.cli_json(&["job", "ls"]));
    assert!(ids.contains(&a) && !ids.contains(&b), "after rm: {ids:?}");
    let missing = d.cli(&["job", "show", &b]);
    assert!(
        !missing.status.success(),
        "show of a deleted job fails: {missing}"
    );
}

/// `job run ID --wait` exits 0 for a successful run and non-zero for a
/// failed one; `run ls --job` and `run show` report it.
#[test]
fn job_run_wait_exit_code_and_run_ls() {
    let d = Daemon::start_default();
    let ok = unique_id("wait-ok");
    let bad = unique_id("wait-bad");
    for (id, cmd) in [(&ok, "true"), (&bad, "exit 3")] {
        d.create_job(&job(json!({
            "id": id, "command": cmd, "shell": true, "rules": [{ "schedule": "0 0 1 1 *" }],
        })));
    }
    d.cli(&["job", "run", &ok, "--wait"]).assert_success();
    let failed = d.cli(&["job", "run", &bad, "--wait"]);
    assert!(
        failed.code().is_some_and(|c| c != 0),
        "a failed run makes `--wait` exit non-zero: {failed}"
    );

    let listed = d.cli_json(&["run", "ls", "--job", &bad]);
    let runs = list(&listed, "runs");
    assert_eq!(runs.len(), 1, "one run of {bad}: {listed}");
    assert_eq!(runs[0]["status"], json!("failed"), "{listed}");
    assert_eq!(runs[0]["exit_code"], json!(3), "{listed}");
    assert_eq!(runs[0]["trigger"], json!("manual"), "{listed}");
    let run_id = runs[0]["run_id"].as_str().expect("run_id").to_string();
    let shown = d.cli_json(&["run", "show", &run_id]);
    assert_eq!(shown["run_id"], json!(run_id), "{shown}");
    assert_eq!(shown["status"], json!("failed"), "{shown}");

    let ok_runs = d.runs(&ok);
    assert!(
        ok_runs.len() == 1 && ok_runs[0].status == RunStatus::Success,
        "{}",
        fmt_records(&ok_runs)
    );
}

/// `run logs` prints a run's output; `run logs --follow` streams a running
/// run's output and returns when the run ends.
#[test]
fn run_logs_and_follow_until_the_run_ends() {
    let d = Daemon::start_default();
    let id = unique_id("logs");
    d.create_job(&job(json!({
        "id": id,
        "command": "echo line-1; sleep 1; echo line-2; sleep 1; echo line-3; echo done-marker",
        "shell": true,
        "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let run_id = d.run_now(&id);
    let followed = d.cli_within(
        &["run", "logs", &run_id, "--follow"],
        Duration::from_secs(30),
    );
    followed.assert_success();
    let rec = d.record(&run_id).expect("the run exists");
    assert!(
        rec.status.is_final(),
        "--follow returned only when the run ended: {followed}\n{}",
        fmt_records(std::slice::from_ref(&rec))
    );
    let pos: Vec<Option<usize>> = ["line-1", "line-2", "line-3", "done-marker"]
        .iter()
        .map(|l| followed.stdout.find(l))
        .collect();
    assert!(
        pos.iter().all(Option::is_some) && pos.windows(2).all(|w| w[0] < w[1]),
        "all lines, in order: {followed}"
    );

    let logs = d.cli(&["run", "logs", &run_id]);
    logs.assert_success();
    assert!(
        logs.stdout.contains("line-1") && logs.stdout.contains("done-marker"),
        "{logs}"
    );

    let stream = d.api_get(&format!(
        "/api/v1/runs/{}/stream",
        cronsun_tests::daemon::encode_path(&run_id)
    ));
    assert_eq!(stream.status, 200, "{stream}");
    let text = stream.text();
    assert!(
        text.contains("event: output")
            && text.contains("event: end")
            && text.contains("done-marker"),
        "the stream of a finished run is its output then `end`: {text}"
    );
}

/// Updates must name the revision they change: a stale `If-Match` or none
/// at all is 409 and changes nothing.
#[test]
fn update_with_a_stale_revision_is_409() {
    let d = Daemon::start_default();
    let id = unique_id("rev");
    let created = d.create_job(&job(json!({
        "id": id, "command": ["true"], "rules": [{ "schedule": "0 0 1 1 *" }],
    })));
    let r1 = created.revision;
    assert!(r1 > 0, "stored with a revision: {created:?}");
    let view = d.api_get(&format!("/api/v1/jobs/{id}")).expect_status(200);
    assert_eq!(view.header("etag"), Some(format!("\"{r1}\"")), "{view}");

    let mut changed = created.clone();
    changed.description = "first edit".into();
    let updated: cronsun_proto::Job = d
        .api_put(&format!("/api/v1/jobs/{id}"), &changed, Some(r1))
        .expect_status(200)
        .json();
    let r2 = updated.revision;
    assert!(r2 > r1, "an update bumps the revision ({r1} -> {r2})");

    let mut stale = created.clone();
    stale.description = "lost update".into();
    let conflict = d.api_put(&format!("/api/v1/jobs/{id}"), &stale, Some(r1));
    assert_eq!(conflict.status, 409, "stale If-Match: {conflict}");
    assert_eq!(conflict.api_error().error, "conflict", "{conflict}");

    stale.revision = 0;
    let none = d.api_put(&format!("/api/v1/jobs/{id}"), &stale, None);
    assert_eq!(none.status, 409, "no revision at all: {none}");

    let now: JobView = d.api_get(&format!("/api/v1/jobs/{id}")).json();
    assert_eq!(
        now.job.description, "first edit",
        "the stale updates changed nothing"
    );
    assert_eq!(now.job.revision, r2);
}

/// An invalid job is 422 naming the field, and nothing is stored.
#[test]
fn invalid_job_is_422_naming_the_field_and_not_stored() {
    let d = Daemon::start_default();
    for (schedule, why) in [
        ("61 * * * *", "minute out of range"),
        ("0 0 30 2 *", "can never fire"),
    ] {
        let id = unique_id("invalid");
        let r = d.api_post(
            "/api/v1/jobs",
            &json!({ "id": id, "command": ["true"], "rules": [{ "schedule": schedule }] }),
        );
        assert_eq!(r.status, 422, "{why}: {r}");
        assert_eq!(
            r.api_error().field.as_deref(),
            Some("rules[0].schedule"),
            "{why}: {r}"
        );
        assert!(d.get_job(&id).is_none(), "{why}: nothing stored");
    }
    let r = d.api_post(
        "/api/v1/jobs",
        &json!({ "id": "Not Valid", "command": ["true"], "rules": [{ "schedule": "@daily" }] }),
    );
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(r.api_error().field.as_deref(), Some("id"), "{r}");
    let jobs = d.api_get("/api/v1/jobs").expect_status(200).json::<Value>();
    assert!(list(&jobs, "jobs").is_empty(), "nothing was stored: {jobs}");
}

/// `job apply` validates everything before writing anything: one bad job
/// among good ones applies none (CLI and HTTP).
#[test]
fn apply_with_one_bad_job_applies_none() {
    let d = Daemon::start_default();
    let good1 = unique_id("good1");
    let bad = unique_id("bad");
    let good2 = unique_id("good2");
    let file = write_file(
        &d,
        "mixed.toml",
        &format!(
            r#"
[[job]]
id = "{good1}"
command = ["true"]
[[job.rules]]
schedule = "@daily"

[[job]]
id = "{bad}"
command = ["true"]
[[job.rules]]
schedule = "not a schedule"

[[job]]
id = "{good2}"
command = ["true"]
[[job.rules]]
schedule = "@hourly"
"#
        ),
    );
    let out = d.cli(&["job", "apply", "-f", &file]);
    assert!(!out.status.success(), "apply with a bad job fails: {out}");
    assert!(
        out.stderr.contains("rules[0].schedule"),
        "the error names the field: {out}"
    );
    for id in [&good1, &bad, &good2] {
        assert!(d.get_job(id).is_none(), "{id} must not be stored: {out}");
    }

    let body = json!({ "jobs": [
        { "id": good1, "command": ["true"], "rules": [{ "schedule": "@daily" }] },
        { "id": bad, "command": ["true"], "rules": [{ "schedule": "not a schedule" }] },
    ]});
    let r = d.api_post("/api/v1/jobs/apply", &body);
    assert_eq!(r.status, 422, "{r}");
    assert_eq!(
        r.api_error().field.as_deref(),
        Some("jobs[1].rules[0].schedule"),
        "{r}"
    );
    assert!(
        d.get_job(&good1).is_none(),
        "nothing written by the failed apply"
    );

    // The good ones alone apply.
    let body = json!({ "jobs": [
        { "id": good1, "command": ["true"], "rules": [{ "schedule": "@daily" }] },
    ]});
    let res: ApplyResult = d
        .api_post("/api/v1/jobs/apply", &body)
        .expect_status(200)
        .json();
    assert_eq!(res.created, vec![good1.clone()], "{res:?}");
    let again: ApplyResult = d
        .api_post("/api/v1/jobs/apply", &body)
        .expect_status(200)
        .json();
    assert_eq!(
        again.unchanged,
        vec![good1],
        "re-applying changes nothing: {again:?}"
    );
}

const BERLIN_FALL_BACK: [&str; 4] = [
    "2026-10-25T00:00:00+02:00",
    "2026-10-25T02:00:00+02:00",
    "2026-10-25T02:00:00+01:00",
    "2026-10-25T04:00:00+01:00",
];

fn cron_next(from: &str) -> Vec<String> {
    let out = run_cli(
        &bins::cronsun(),
        &[
            "cron",
            "next",
            "0 */2 * * *",
            "--tz",
            "Europe/Berlin",
            "--from",
            from,
            "-n",
            "4",
            "--output",
            "json",
        ],
        &[],
        Duration::from_secs(15),
    );
    out.assert_success();
    serde_json::from_value(out.json())
        .unwrap_or_else(|e| panic!("not a list of strings ({e}): {out}"))
}

/// `cron next` runs offline; `0 */2 * * *` (real-instant: the hour field
/// starts with `*`) fires at both passes of the repeated hour (DESIGN §2).
/// Instants are strictly after `--from`.
#[test]
fn cron_next_over_the_berlin_fall_back() {
    // 21:00Z = 23:00+02:00 on the 24th: the next is midnight local.
    assert_eq!(cron_next("2026-10-24T21:00:00Z"), BERLIN_FALL_BACK);
    // 22:00Z is midnight local itself; strictly after it starts at 02:00+02:00.
    let mut shifted: Vec<String> = BERLIN_FALL_BACK[1..]
        .iter()
        .map(|s| s.to_string())
        .collect();
    shifted.push("2026-10-25T06:00:00+01:00".into());
    assert_eq!(cron_next("2026-10-24T22:00:00Z"), shifted);
}

/// The API's preview uses the same schedule code as the CLI.
#[test]
fn schedule_preview_api_matches_cron_next() {
    let d = Daemon::start_default();
    let r = d.api_get(
        "/api/v1/schedule/preview?schedule=0%20%2A%2F2%20%2A%20%2A%20%2A&timezone=Europe%2FBerlin&from=2026-10-24T21%3A00%3A00Z&n=4",
    );
    let p: cronsun_proto::api::Preview = r.expect_status(200).json();
    assert_eq!(p.instants, BERLIN_FALL_BACK);
    assert_eq!(p.timezone, "Europe/Berlin");
}
