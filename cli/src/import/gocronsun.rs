//! Conversion of Go-cronsun jobs and node groups (their etcd JSON under
//! `<prefix>cmd/<group>/<id>` and `<prefix>group/<id>`) into cronsun jobs.
//!
//! Faithful to what the Go cronsun did with them (see `docs/IMPORT.md`):
//! timers are seconds-first (5 fields = sec min hour dom month, 6 add dow)
//! in the node's local zone; `@every` takes a Go duration; `@at` lists local
//! times; commands are split without a shell at the first space, the rest
//! tokenised with quotes; kinds map common → all, alone → one + forbid,
//! interval → one + allow; a rule targets the union of its node ids and
//! its node groups' members, minus its exclusions, and a rule that targets
//! nothing never ran, so it is dropped. Everything that cannot be carried
//! over exactly is reported, per job.

use std::collections::{BTreeMap, BTreeSet};

use cronsun_proto::job::{CommandLine, Concurrency, JobKind, Notify, NotifyEvent, Rule, RunAs};
use cronsun_proto::{Dur, Job};
use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::Deserialize;

/// An etcd key and its value.
pub type Entry = (String, String);

/// `max_parallel` for Go's "unlimited" (`parallels = 0`).
pub const UNLIMITED_PARALLEL: u32 = 1000;

/// A Go-cronsun job as stored in etcd (unknown keys ignored).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GoJob {
    pub id: String,
    pub name: String,
    pub group: String,
    pub cmd: String,
    pub user: String,
    pub rules: Vec<GoRule>,
    pub pause: bool,
    pub timeout: i64,
    pub parallels: i64,
    pub retry: i64,
    pub interval: i64,
    pub kind: i64,
    pub fail_notify: bool,
    pub to: Vec<String>,
    pub log_expiration: i64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GoRule {
    pub id: String,
    pub timer: String,
    pub gids: Vec<String>,
    pub nids: Vec<String>,
    pub exclude_nids: Vec<String>,
}

/// A Go-cronsun node group: an explicit list of node ids.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct GoGroup {
    pub id: String,
    pub name: String,
    pub nids: Vec<String>,
}

/// The result: jobs to apply, what was adapted, what was left out.
#[derive(Debug, Default)]
pub struct Conversion {
    pub jobs: Vec<Job>,
    /// `(etcd key, note)`: a change of form the user should know about.
    pub notes: Vec<(String, String)>,
    /// `(etcd key, why)`: jobs that were not imported.
    pub skipped: Vec<(String, String)>,
}

/// How to read Go timers.
#[derive(Clone, Debug)]
pub struct Options {
    /// IANA zone the Go nodes ran in (their local time).
    pub timezone: String,
    pub now: Timestamp,
}

/// Converts every job (`(key, json)` pairs under `cmd/`) with the groups
/// (`(key, json)` under `group/`).
pub fn convert(jobs: &[Entry], groups: &[Entry], opts: &Options) -> Conversion {
    let mut out = Conversion::default();
    let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (key, text) in groups {
        match serde_json::from_str::<GoGroup>(text) {
            Ok(g) => {
                members.insert(g.id, g.nids);
            }
            Err(e) => out.notes.push((
                key.clone(),
                format!("node group not readable, ignored: {e}"),
            )),
        }
    }
    let mut ids = BTreeSet::new();
    for (key, text) in jobs {
        let go: GoJob = match serde_json::from_str(text) {
            Ok(j) => j,
            Err(e) => {
                out.skipped
                    .push((key.clone(), format!("not a Go-cronsun job: {e}")));
                continue;
            }
        };
        let mut notes = Vec::new();
        match convert_job(&go, &members, opts, &mut notes) {
            Ok(mut job) => {
                job.id = unique(slug(&go.name, &go.id), &mut ids);
                job.labels
                    .insert("imported-from".into(), format!("cronsun-go {key}"));
                out.jobs.push(job);
            }
            Err(why) => out.skipped.push((key.clone(), why)),
        }
        out.notes
            .extend(notes.into_iter().map(|n| (key.clone(), n)));
    }
    out
}

fn convert_job(
    go: &GoJob,
    members: &BTreeMap<String, Vec<String>>,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<Job, String> {
    let mut job: Job = serde_json::from_value(serde_json::json!({
        "id": "imported",
        "command": ["true"],
        "rules": [],
    }))
    .map_err(|e| format!("internal: {e}"))?;
    job.name = go.name.trim().to_string();
    job.group = group_name(&go.group, notes);
    job.command = CommandLine::Argv(split_command(&go.cmd)?);
    job.description = format!("Imported from Go cronsun (job {}).", go.id);
    for r in &go.rules {
        match convert_rule(r, members, opts, notes) {
            Ok(mut rules) => job.rules.append(&mut rules),
            Err(why) => notes.push(format!("rule {:?} dropped: {why}", r.timer)),
        }
    }
    if job.rules.is_empty() {
        return Err("no rule left that targets a node and fires in the future".into());
    }
    match go.kind {
        0 => {
            job.kind = JobKind::All;
            job.concurrency = Concurrency::Allow;
            job.max_parallel = match u32::try_from(go.parallels) {
                Ok(n) if n > 0 => n,
                _ => {
                    notes.push(format!(
                        "parallels {} (unlimited) → max_parallel {UNLIMITED_PARALLEL}",
                        go.parallels
                    ));
                    UNLIMITED_PARALLEL
                }
            };
        }
        1 => {
            job.kind = JobKind::One;
            job.concurrency = Concurrency::Forbid;
        }
        2 => {
            job.kind = JobKind::One;
            job.concurrency = Concurrency::Allow;
            job.max_parallel = UNLIMITED_PARALLEL;
        }
        k => return Err(format!("unknown kind {k} (expected 0, 1 or 2)")),
    }
    if !go.user.trim().is_empty() {
        job.run_as = Some(RunAs {
            user: go.user.trim().to_string(),
            group: None,
        });
    }
    if go.timeout > 0 {
        job.timeout = Some(Dur::secs(go.timeout.unsigned_abs()));
    }
    let retries = u32::try_from(go.retry.max(0)).unwrap_or(u32::MAX);
    job.retries = retries.min(cronsun_proto::job::MAX_RETRIES);
    if retries > job.retries {
        notes.push(format!(
            "retry {} capped at {}",
            go.retry,
            cronsun_proto::job::MAX_RETRIES
        ));
    }
    job.retry_delay = Dur::secs(go.interval.max(0).unsigned_abs());
    if go.pause {
        job.paused = true;
        job.paused_reason = Some("paused in Go cronsun".into());
    }
    if go.fail_notify {
        job.notify = Notify {
            on: vec![NotifyEvent::Failure, NotifyEvent::Timeout],
            mail: go.to.clone(),
            webhooks: Vec::new(),
        };
        if go.to.is_empty() {
            notes.push(
                "fail_notify went to Go's global Mail.To list only; add recipients to notify.mail"
                    .into(),
            );
        }
    } else if !go.to.is_empty() {
        notes.push("`to` recipients ignored: fail_notify was off".into());
    }
    if go.log_expiration > 0 {
        notes.push(format!(
            "log_expiration {} days not carried over: retention is global ([retention] max_age)",
            go.log_expiration
        ));
    }
    Ok(job)
}

fn convert_rule(
    r: &GoRule,
    members: &BTreeMap<String, Vec<String>>,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<Vec<Rule>, String> {
    let mut nodes: BTreeSet<String> = r.nids.iter().cloned().collect();
    for gid in &r.gids {
        match members.get(gid) {
            Some(m) => {
                nodes.extend(m.iter().cloned());
                notes.push(format!(
                    "node group {gid:?} expanded to its members at import time: {}",
                    m.join(", ")
                ));
            }
            None => notes.push(format!("node group {gid:?} does not exist; ignored")),
        }
    }
    for x in &r.exclude_nids {
        nodes.remove(x);
    }
    if nodes.is_empty() {
        return Err("it targets no node (Go cronsun never ran it)".into());
    }
    let schedules = convert_timer(&r.timer, opts, notes)?;
    Ok(schedules
        .into_iter()
        .map(|(schedule, zoned)| Rule {
            schedule,
            timezone: zoned.then(|| opts.timezone.clone()),
            nodes: nodes.iter().cloned().collect(),
            groups: Vec::new(),
            exclude_nodes: Vec::new(),
        })
        .collect())
}

/// Go timer → cronsun schedules, each with whether it is read in the zone.
pub fn convert_timer(
    timer: &str,
    opts: &Options,
    notes: &mut Vec<String>,
) -> Result<Vec<(String, bool)>, String> {
    let t = timer.trim();
    if let Some(rest) = strip_word(t, "@every") {
        let secs = go_duration_secs(rest)?;
        return Ok(vec![(format!("@every {secs}s"), false)]);
    }
    if let Some(rest) = strip_word(t, "@at") {
        let zone = TimeZone::get(&opts.timezone).map_err(|e| format!("time zone: {e}"))?;
        let mut out = Vec::new();
        for item in rest.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let civil: DateTime = item
                .parse()
                .map_err(|e| format!("@at {item:?} is not YYYY-MM-DD HH:MM:SS: {e}"))?;
            let zoned = zone
                .to_zoned_datetime(civil)
                .map_err(|e| format!("@at {item:?}: {e}"))?;
            if zoned.timestamp() <= opts.now {
                notes.push(format!("@at {item} is past; dropped"));
                continue;
            }
            out.push((
                format!("@at {}", zoned.strftime("%Y-%m-%dT%H:%M:%S%:z")),
                false,
            ));
        }
        return Ok(out);
    }
    if t.starts_with('@') {
        let known = [
            "@yearly",
            "@annually",
            "@monthly",
            "@weekly",
            "@daily",
            "@midnight",
            "@hourly",
        ];
        return if known.iter().any(|k| t.eq_ignore_ascii_case(k)) {
            Ok(vec![(t.to_ascii_lowercase(), true)])
        } else {
            Err(format!("unknown descriptor {t:?}"))
        };
    }
    let fields: Vec<String> = t.split_whitespace().map(|f| f.replace('?', "*")).collect();
    match fields.len() {
        5 => Ok(vec![(format!("{} *", fields.join(" ")), true)]),
        6 => Ok(vec![(fields.join(" "), true)]),
        n => Err(format!(
            "{n} fields; Go cronsun timers have 5 (sec min hour dom month) or 6 (… dow)"
        )),
    }
}

fn strip_word<'a>(s: &'a str, word: &str) -> Option<&'a str> {
    let head = s.get(..word.len())?;
    let rest = &s[word.len()..];
    (head.eq_ignore_ascii_case(word) && (rest.is_empty() || rest.starts_with(char::is_whitespace)))
        .then(|| rest.trim())
}

/// Go's `time.ParseDuration`, truncated to whole seconds as Go cronsun did
/// (at least one second).
pub fn go_duration_secs(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a Go duration such as 90s, 1h30m or 1.5h");
    let mut rest = s.trim();
    if rest.is_empty() {
        return Err(bad());
    }
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += value * scale;
        rest = &rest[unit_len..];
    }
    let secs = (nanos / 1e9).trunc();
    if secs < 1.0 {
        return Err(format!("{s:?} is shorter than one second"));
    }
    // Bounded by the check above and by f64's range; whole seconds.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok(secs as u64)
}

/// Go cronsun's command split: program up to the first space, verbatim;
/// the rest tokenised with quotes and backslash escapes, nothing expanded.
pub fn split_command(cmd: &str) -> Result<Vec<String>, String> {
    let cmd = cmd.trim();
    if cmd.is_empty() {
        return Err("the command is empty".into());
    }
    let (program, rest) = cmd.split_once(' ').unwrap_or((cmd, ""));
    let mut argv = vec![program.to_string()];
    argv.extend(
        shell_words::split(rest).map_err(|e| format!("command {cmd:?} cannot be split: {e}"))?,
    );
    Ok(argv)
}

fn group_name(go: &str, notes: &mut Vec<String>) -> String {
    let g = go.trim();
    if g.is_empty() {
        return "default".into();
    }
    let clean: String = g
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if clean != g {
        notes.push(format!("job group {g:?} renamed {clean:?}"));
    }
    clean
}

/// A job id from the Go name (`[a-z0-9][a-z0-9_-]*`), else the Go id.
fn slug(name: &str, go_id: &str) -> String {
    let mut s = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '_' {
            s.push(c);
        } else if !s.ends_with('-') {
            s.push('-');
        }
    }
    let s: String = s.trim_matches('-').chars().take(100).collect();
    if s.is_empty() || !cronsun_proto::ids::is_valid_job_id(&s) {
        go_id.to_ascii_lowercase()
    } else {
        s
    }
}

fn unique(id: String, taken: &mut BTreeSet<String>) -> String {
    let mut candidate = id.clone();
    let mut n = 2;
    while !taken.insert(candidate.clone()) {
        candidate = format!("{id}-{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/cronsun-go")
            .join(name);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn samples() -> (Vec<Entry>, Vec<Entry>) {
        let (mut jobs, mut groups) = (Vec::new(), Vec::new());
        for line in fixture("keys.txt").lines().filter(|l| !l.trim().is_empty()) {
            let (key, file) = line.split_once('\t').expect("KEY<TAB>FILE");
            let entry = (key.to_string(), fixture(file));
            if key.contains("/cmd/") {
                jobs.push(entry);
            } else {
                groups.push(entry);
            }
        }
        (jobs, groups)
    }

    fn opts() -> Options {
        Options {
            timezone: "Europe/Berlin".into(),
            now: "2026-11-25T12:00:00Z".parse().expect("now"),
        }
    }

    fn by_name<'a>(c: &'a Conversion, name: &str) -> &'a Job {
        c.jobs
            .iter()
            .find(|j| j.name == name)
            .unwrap_or_else(|| panic!("no job {name}: {c:#?}"))
    }

    #[test]
    fn the_samples_convert_faithfully() {
        let (jobs, groups) = samples();
        let c = convert(&jobs, &groups, &opts());
        assert!(c.skipped.is_empty(), "{:#?}", c.skipped);
        assert_eq!(c.jobs.len(), 4);

        let rotate = by_name(&c, "rotate-logs");
        assert_eq!(rotate.id, "rotate-logs");
        assert_eq!(rotate.group, "ops");
        assert_eq!(
            rotate.command,
            CommandLine::Argv(vec![
                "/usr/local/bin/rotate".into(),
                "--keep".into(),
                "7".into(),
                "/var/log/app dir".into()
            ])
        );
        assert_eq!(rotate.kind, JobKind::All);
        assert_eq!(rotate.concurrency, Concurrency::Allow);
        assert_eq!(rotate.rules.len(), 1);
        // Seconds-first, in the Go nodes' zone: 02:30:00 daily.
        assert_eq!(rotate.rules[0].schedule, "0 30 2 * * *");
        assert_eq!(rotate.rules[0].timezone.as_deref(), Some("Europe/Berlin"));
        // g-web's members minus the excluded node.
        let web = fixture("group-web.json");
        let g: GoGroup = serde_json::from_str(&web).expect("group");
        let expected: Vec<String> = g
            .nids
            .iter()
            .filter(|n| *n != "node-web-3")
            .cloned()
            .collect();
        assert_eq!(rotate.rules[0].nodes, expected);
        assert_eq!(rotate.retries, 2);
        assert_eq!(rotate.retry_delay, Dur::secs(30));
        assert_eq!(rotate.timeout, Some(Dur::secs(600)));
        assert_eq!(rotate.run_as.as_ref().map(|r| r.user.as_str()), Some("www"));
        assert_eq!(rotate.notify.mail, vec!["ops@example.com".to_string()]);
        assert!(c
            .notes
            .iter()
            .any(|(_, n)| n.contains("log_expiration 14 days")));

        let billing = by_name(&c, "billing-export");
        assert_eq!(
            (billing.kind, billing.concurrency),
            (JobKind::One, Concurrency::Forbid)
        );
        assert_eq!(billing.rules[0].schedule, "0 0 3 * * 1-5");
        assert_eq!(billing.rules[1].schedule, "@every 5400s");
        assert_eq!(billing.rules[1].timezone, None);

        let warm = by_name(&c, "cache-warm");
        // A 5-field Go timer is sec min hour dom month: every 10 seconds.
        assert_eq!(warm.rules[0].schedule, "*/10 * * * * *");
        assert_eq!(
            (warm.kind, warm.concurrency),
            (JobKind::One, Concurrency::Allow)
        );
        assert!(warm.paused);
        assert_eq!(
            warm.command,
            CommandLine::Argv(vec![
                "curl".into(),
                "-fsS".into(),
                "http://127.0.0.1:8080/warm?all=1".into()
            ])
        );

        let close = by_name(&c, "year-end-close");
        let at: Vec<&str> = close.rules.iter().map(|r| r.schedule.as_str()).collect();
        assert_eq!(
            at,
            [
                "@at 2026-12-31T23:00:00+01:00",
                "@at 2027-01-01T01:00:00+01:00"
            ]
        );

        // Every converted job passes cronsun's own validation.
        for j in &c.jobs {
            let mut j = j.clone();
            j.validate(&cronsun_proto::job::ValidateContext {
                default_timezone: "UTC".into(),
                now: opts().now,
                allow_past_at: false,
            })
            .unwrap_or_else(|e| panic!("{}: {e}", j.id));
        }
    }

    #[test]
    fn timers_durations_and_commands() {
        let mut notes = Vec::new();
        let o = opts();
        assert_eq!(
            convert_timer("0 0 * * * ?", &o, &mut notes).expect("6 fields"),
            vec![("0 0 * * * *".to_string(), true)]
        );
        assert_eq!(
            convert_timer("@Daily", &o, &mut notes).expect("macro"),
            vec![("@daily".to_string(), true)]
        );
        assert!(convert_timer("* * *", &o, &mut notes).is_err());
        assert!(convert_timer("@reboot", &o, &mut notes).is_err());
        // Past @at instants are dropped with a note.
        let r = convert_timer("@at 2020-01-01 00:00:00", &o, &mut notes).expect("past");
        assert!(r.is_empty() && notes.iter().any(|n| n.contains("past")));
        assert_eq!(go_duration_secs("1h30m"), Ok(5400));
        assert_eq!(go_duration_secs("1.5h"), Ok(5400));
        assert_eq!(go_duration_secs("90s"), Ok(90));
        assert_eq!(go_duration_secs("1500ms"), Ok(1));
        assert!(go_duration_secs("500ms").is_err());
        assert!(go_duration_secs("5 minutes").is_err());
        assert_eq!(
            split_command(r#"/bin/echo "a b" c\ d 'e'"#).expect("split"),
            ["/bin/echo", "a b", "c d", "e"]
        );
        assert!(split_command("   ").is_err());
        assert!(split_command("/bin/echo \"open").is_err());
    }

    #[test]
    fn rules_without_targets_and_bad_jobs_are_reported() {
        let jobs = vec![
            (
                "/cronsun/cmd/a/1".to_string(),
                r#"{"id":"1","name":"nowhere","cmd":"/bin/true","rules":[{"timer":"0 * * * * *"}]}"#
                    .to_string(),
            ),
            ("/cronsun/cmd/a/2".to_string(), "not json".to_string()),
            (
                "/cronsun/cmd/a/3".to_string(),
                r#"{"id":"3","name":"nowhere","cmd":"/bin/true","kind":0,"rules":[{"timer":"0 * * * * *","nids":["n1"]}]}"#
                    .to_string(),
            ),
        ];
        let c = convert(&jobs, &[], &opts());
        assert_eq!(c.skipped.len(), 2, "{:#?}", c.skipped);
        assert!(c.skipped[0].1.contains("no rule left"));
        assert!(c.skipped[1].1.contains("not a Go-cronsun job"));
        assert_eq!(c.jobs.len(), 1);
        assert_eq!(c.jobs[0].id, "nowhere");
        assert_eq!(c.jobs[0].max_parallel, UNLIMITED_PARALLEL);
    }
}
