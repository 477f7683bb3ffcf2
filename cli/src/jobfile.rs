//! Job files (`cronsun job apply -f`, `cronsun job export`): TOML `[[job]]`
//! tables as DESIGN §8, or JSON. Errors name the file, line, column and key.

use std::collections::HashMap;
use std::fmt;
use std::io::Read as _;

use anyhow::{Context as _, Result};
use cronsun_proto::api::{ApplyRequest, JobFile};
use cronsun_proto::Job;

/// Why a job file was refused, with where in it.
#[derive(Debug, PartialEq, Eq)]
pub struct JobFileError {
    pub file: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// The key path, e.g. `job[1].rules[0].timezone`.
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for JobFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if let Some(key) = &self.key {
            write!(f, ": {key}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for JobFileError {}

/// Reads `path` (`-` = stdin) and parses it: JSON if it ends in `.json`, else TOML.
pub fn read(path: &str) -> Result<Vec<Job>> {
    let (name, text) = if path == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("cannot read the job file from stdin")?;
        ("<stdin>".to_string(), s)
    } else {
        let s = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read job file {path}"))?;
        (path.to_string(), s)
    };
    let json =
        path.ends_with(".json") || (path == "-" && text.trim_start().starts_with(['{', '[']));
    Ok(parse(&name, &text, json)?)
}

/// Parses a job file's text; `name` is used in messages.
pub fn parse(name: &str, text: &str, json: bool) -> Result<Vec<Job>, JobFileError> {
    let jobs = if json {
        parse_json(name, text)?
    } else {
        parse_toml(name, text)?
    };
    let err = |message: String| JobFileError {
        file: name.to_string(),
        position: None,
        key: None,
        message,
    };
    if jobs.is_empty() {
        return Err(err(
            "no jobs in this file (write [[job]] tables, see `cronsun job export`)".into(),
        ));
    }
    let mut seen = HashMap::new();
    for (i, job) in jobs.iter().enumerate() {
        if let Some(first) = seen.insert(job.id.as_str(), i) {
            return Err(err(format!(
                "job id {:?} appears twice (job[{first}] and job[{i}])",
                job.id
            )));
        }
    }
    Ok(jobs)
}

fn parse_toml(name: &str, text: &str) -> Result<Vec<Job>, JobFileError> {
    let de = toml::Deserializer::parse(text).map_err(|e| toml_error(name, text, &e, None))?;
    serde_path_to_error::deserialize::<_, JobFile>(de)
        .map(|f| f.job)
        .map_err(|e| {
            let key = key_path(e.path());
            toml_error(name, text, e.inner(), key)
        })
}

fn toml_error(name: &str, text: &str, e: &toml::de::Error, key: Option<String>) -> JobFileError {
    JobFileError {
        file: name.to_string(),
        position: e.span().map(|s| line_col(text, s.start)),
        key,
        message: e.message().trim().to_string(),
    }
}

/// A JSON job file: `{"job": [...]}` (as exported), `{"jobs": [...]}` (an
/// apply request), a bare array of jobs, or one job.
fn parse_json(name: &str, text: &str) -> Result<Vec<Job>, JobFileError> {
    let err = |e: serde_path_to_error::Error<serde_json::Error>| {
        let inner = e.inner();
        JobFileError {
            file: name.to_string(),
            position: (inner.line() > 0).then(|| (inner.line(), inner.column())),
            key: key_path(e.path()),
            message: strip_json_position(&inner.to_string()),
        }
    };
    let de = &mut serde_json::Deserializer::from_str(text);
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return serde_path_to_error::deserialize::<_, Vec<Job>>(de).map_err(err);
    }
    // Decide the shape from the top-level keys, then parse again for precise errors.
    let keys: Vec<String> =
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
    if keys.iter().any(|k| k == "jobs") {
        serde_path_to_error::deserialize::<_, ApplyRequest>(de)
            .map(|r| r.jobs)
            .map_err(err)
    } else if keys.iter().any(|k| k == "job") {
        serde_path_to_error::deserialize::<_, JobFile>(de)
            .map(|f| f.job)
            .map_err(err)
    } else {
        serde_path_to_error::deserialize::<_, Job>(de)
            .map(|j| vec![j])
            .map_err(err)
    }
}

/// serde_json appends " at line L column C"; the position is printed separately.
fn strip_json_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn key_path(path: &serde_path_to_error::Path) -> Option<String> {
    let s = path.to_string();
    (s != "." && !s.is_empty()).then_some(s)
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, col)
}

/// A TOML job file of `jobs` that `read` parses back to the same definitions:
/// store-managed fields (revision, timestamps) are left out.
pub fn export(jobs: &[Job]) -> Result<String> {
    let file = JobFile {
        job: jobs
            .iter()
            .map(|j| Job {
                revision: 0,
                created_at: None,
                updated_at: None,
                ..j.clone()
            })
            .collect(),
    };
    let text = toml::to_string(&file).context("cannot write the jobs as TOML")?;
    // `revision` is always serialised; 0 means "none" and only adds noise.
    // Env values and labels are strings, so this line can only be the job key.
    Ok(text
        .lines()
        .filter(|l| *l != "revision = 0")
        .map(|l| format!("{l}\n"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[job]]
id = "nightly-backup"
name = "Nightly backup"
command = ["/usr/local/bin/backup", "--full"]
kind = "one"
timeout = "30m"
retries = 2
run_as = "backup"
env = { A = "1", TOKEN = { value = "x", secret = true } }

[[job.rules]]
schedule = "0 3 * * *"
timezone = "Europe/Berlin"
groups = ["db"]

[[job]]
id = "hourly"
command = "echo 'hi there'"
limits = { memory = "512MiB", cpu = 0.5 }
labels = { team = "ops" }

[[job.rules]]
schedule = "@hourly"
"#;

    #[test]
    fn parses_the_design_example() {
        let jobs = parse("jobs.toml", GOOD, false).expect("parses");
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0].rules[0].groups, vec!["db"]);
        assert_eq!(jobs[0].retries, 2);
    }

    #[test]
    fn toml_errors_name_file_line_and_key() {
        let bad = GOOD.replace("retries = 2", "retries = \"two\"");
        let e = parse("jobs.toml", &bad, false).expect_err("bad type");
        assert_eq!(e.position.map(|p| p.0), Some(8), "{e}");
        assert_eq!(e.key.as_deref(), Some("job[0].retries"), "{e}");
        assert!(e.to_string().starts_with("jobs.toml:8:"), "{e}");

        let bad = GOOD.replace(
            "labels = { team = \"ops\" }",
            "labels = { team = \"ops\" }\ncolour = \"red\"",
        );
        let e = parse("jobs.toml", &bad, false).expect_err("unknown key");
        assert_eq!(e.position.map(|p| p.0), Some(22), "{e}");
        assert!(e.message.contains("colour"), "{e}");

        let e = parse(
            "jobs.toml",
            "[[job]]\nid = \"x\"\ncommand = [\"a\"\n",
            false,
        )
        .expect_err("syntax");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");

        let e = parse("jobs.toml", "[[job.rules]]\nschedule = 3\n", false).expect_err("type");
        assert!(e.position.is_some(), "{e}");
    }

    #[test]
    fn json_forms_and_errors() {
        let one = r#"{"id":"a","command":["true"],"rules":[{"schedule":"@daily"}]}"#;
        for text in [
            one.to_string(),
            format!("[{one}]"),
            format!("{{\"job\":[{one}]}}"),
            format!("{{\"jobs\":[{one}]}}"),
        ] {
            assert_eq!(parse("j.json", &text, true).expect(&text)[0].id, "a");
        }
        let bad = "{\"job\": [\n {\"id\": \"a\", \"command\": [\"true\"],\n  \"rules\": [{\"schedule\": 5}]}]}";
        let e = parse("j.json", bad, true).expect_err("bad");
        assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
        assert_eq!(e.key.as_deref(), Some("job[0].rules[0].schedule"), "{e}");
    }

    #[test]
    fn empty_files_and_duplicate_ids_are_refused() {
        assert!(parse("e.toml", "", false)
            .expect_err("empty")
            .message
            .contains("no jobs"));
        let twice = format!("{GOOD}\n[[job]]\nid = \"hourly\"\ncommand = \"x\"\n[[job.rules]]\nschedule = \"@daily\"\n");
        let e = parse("d.toml", &twice, false).expect_err("dup");
        assert!(e.message.contains("job[1] and job[2]"), "{e}");
    }

    #[test]
    fn export_round_trips() {
        let mut jobs = parse("jobs.toml", GOOD, false).expect("parses");
        jobs[0].revision = 12;
        let text = export(&jobs).expect("export");
        assert!(!text.contains("revision"), "{text}");
        let back = parse("export.toml", &text, false).expect("re-parses");
        assert_eq!(back.len(), 2);
        for (a, b) in jobs.iter().zip(&back) {
            assert!(a.same_definition(b), "{a:?}\n{b:?}");
        }
    }

    #[test]
    fn line_col_counts_characters() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("é\nx", 3), (2, 1));
        assert_eq!(line_col("x", 99), (1, 2));
    }
}
