//! `cronsun import cronsun`: jobs and node groups of a Go cronsun, read from
//! its etcd (through etcd's JSON gateway, `POST /v3/kv/range`) or from an
//! `etcdctl get --prefix /cronsun/ -w json` dump (for an etcd behind TLS
//! client certificates or auth), converted by [`gocronsun`] and applied all
//! or nothing with `job apply`'s endpoint — or printed as a job file with
//! `--dry-run`.

pub mod gocronsun;

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use base64::Engine;
use clap::Subcommand;
use cronsun_proto::api::ApplyRequest;
use cronsun_proto::client::Client;
use serde::{Deserialize, Serialize};

use crate::{jobfile, output, Ctx};

#[derive(Debug, Subcommand)]
pub enum ImportCmd {
    /// Jobs and node groups of a Go cronsun (its etcd keys under `cmd/` and `group/`).
    ///
    /// Go timers are seconds-first in the nodes' local time: give that zone
    /// with --timezone (asked for on a terminal). Every change of form is
    /// reported per job; `--dry-run` prints the job file instead of applying.
    Cronsun {
        /// etcd client URL of the Go cronsun, e.g. http://10.0.0.5:2379.
        #[arg(long, value_name = "URL", required_unless_present = "from_file")]
        etcd: Option<String>,
        /// The Go cronsun's key prefix.
        #[arg(long, default_value = "/cronsun/")]
        prefix: String,
        /// Read `etcdctl get --prefix <PREFIX> -w json` output instead of etcd.
        #[arg(long, value_name = "FILE", conflicts_with = "etcd")]
        from_file: Option<PathBuf>,
        /// IANA zone the Go nodes ran in, e.g. Asia/Shanghai.
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
        /// Print the converted jobs as a job file; apply nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A range answer of etcd (gateway JSON and `etcdctl -w json` alike).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RangeResponse {
    /// Always present in etcd's answers: tells a range answer from other JSON.
    header: Option<serde_json::Value>,
    kvs: Vec<Kv>,
    more: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Kv {
    key: String,
    value: String,
}

#[derive(Serialize)]
struct RangeRequest {
    key: String,
    range_end: String,
    limit: u32,
}

/// Keys read per request, and the bound on requests.
const PAGE: u32 = 500;
const MAX_PAGES: usize = 10_000;

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(what: &str, s: &str) -> Result<String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(s)
        .with_context(|| format!("{what} is not base64"))?;
    String::from_utf8(bytes).with_context(|| format!("{what} is not UTF-8"))
}

/// The first key after every key starting with `prefix` (etcd's `range_end`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

fn decode(resp: RangeResponse, into: &mut Vec<(String, String)>) -> Result<()> {
    for kv in resp.kvs {
        let key = unb64("a key", &kv.key)?;
        let value = unb64(&format!("the value of {key}"), &kv.value)?;
        into.push((key, value));
    }
    Ok(())
}

/// Every key under `prefix`, in key order.
async fn read_etcd(url: &str, prefix: &str) -> Result<Vec<(String, String)>> {
    let client = Client::new(url, None).with_context(|| format!("etcd {url}"))?;
    let end = b64(&prefix_end(prefix.as_bytes()));
    let mut from = prefix.as_bytes().to_vec();
    let mut out = Vec::new();
    for _ in 0..MAX_PAGES {
        let req = RangeRequest {
            key: b64(&from),
            range_end: end.clone(),
            limit: PAGE,
        };
        let resp: RangeResponse = client
            .post("/v3/kv/range", &req)
            .await
            .with_context(|| format!("cannot read {prefix} from etcd {url}"))?;
        let more = resp.more;
        let before = out.len();
        decode(resp, &mut out)?;
        match out.last() {
            Some((last, _)) if more && out.len() > before => {
                from = last.as_bytes().to_vec();
                from.push(0);
            }
            _ => return Ok(out),
        }
    }
    bail!("etcd {url} kept answering `more` after {MAX_PAGES} pages under {prefix}")
}

fn read_dump(path: &PathBuf) -> Result<Vec<(String, String)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let not_a_dump = || {
        format!(
            "{} is not the JSON of `etcdctl get --prefix /cronsun/ -w json`",
            path.display()
        )
    };
    let resp: RangeResponse = serde_json::from_str(&text).with_context(not_a_dump)?;
    if resp.header.is_none() {
        bail!(not_a_dump());
    }
    let mut out = Vec::new();
    decode(resp, &mut out)?;
    Ok(out)
}

/// The zone from the flag, or asked for on a terminal.
fn timezone(flag: Option<String>) -> Result<String> {
    let zone = match flag {
        Some(z) => z,
        None if std::io::stdin().is_terminal() => {
            let local = jiff::tz::TimeZone::system()
                .iana_name()
                .unwrap_or("UTC")
                .to_string();
            eprint!("Go cronsun timers are in the nodes' local time. Which zone did they run in? [{local}] ");
            std::io::stderr().flush()?;
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            let line = line.trim();
            if line.is_empty() {
                local
            } else {
                line.to_string()
            }
        }
        None => bail!(
            "--timezone is required: Go cronsun timers are in the nodes' local time (e.g. --timezone Asia/Shanghai)"
        ),
    };
    jiff::tz::TimeZone::get(&zone)
        .with_context(|| format!("--timezone {zone:?} is not an IANA time zone"))?;
    Ok(zone)
}

#[derive(Serialize)]
struct Report<'a> {
    jobs: Vec<&'a str>,
    notes: &'a [(String, String)],
    skipped: &'a [(String, String)],
    #[serde(skip_serializing_if = "Option::is_none")]
    applied: Option<cronsun_proto::api::ApplyResult>,
}

pub async fn run(ctx: &Ctx, cmd: ImportCmd) -> Result<u8> {
    let ImportCmd::Cronsun {
        etcd,
        prefix,
        from_file,
        timezone: zone,
        dry_run,
    } = cmd;
    let prefix = format!("/{}/", prefix.trim_matches('/'));
    let zone = timezone(zone)?;
    let keys = match (&etcd, &from_file) {
        (_, Some(path)) => read_dump(path)?,
        (Some(url), None) => read_etcd(url, &prefix).await?,
        (None, None) => bail!("give --etcd URL or --from-file FILE"),
    };
    let (mut jobs, mut groups) = (Vec::new(), Vec::new());
    for (key, value) in keys {
        match key.strip_prefix(&prefix) {
            Some(rest) if rest.starts_with("cmd/") => jobs.push((key, value)),
            Some(rest) if rest.starts_with("group/") => groups.push((key, value)),
            _ => {}
        }
    }
    if jobs.is_empty() {
        bail!("no Go cronsun jobs under {prefix}cmd/");
    }
    let conv = gocronsun::convert(
        &jobs,
        &groups,
        &gocronsun::Options {
            timezone: zone,
            now: jiff::Timestamp::now(),
        },
    );
    let mut report = Report {
        jobs: conv.jobs.iter().map(|j| j.id.as_str()).collect(),
        notes: &conv.notes,
        skipped: &conv.skipped,
        applied: None,
    };
    if !ctx.json() {
        for (key, note) in &conv.notes {
            eprintln!("note     {key}: {note}");
        }
        for (key, why) in &conv.skipped {
            eprintln!("skipped  {key}: {why}");
        }
    }
    if dry_run {
        if ctx.json() {
            output::json(&cronsun_proto::api::JobFile {
                job: conv.jobs.clone(),
            })?;
        } else {
            output::emit_raw(&jobfile::export(&conv.jobs)?)?;
        }
        return Ok(0);
    }
    if conv.jobs.is_empty() {
        bail!("nothing to import: every job was skipped");
    }
    let result = ctx
        .client()?
        .apply_jobs(&ApplyRequest {
            jobs: conv.jobs.clone(),
        })
        .await?;
    if ctx.json() {
        report.applied = Some(result);
        output::json(&report)?;
    } else {
        output::emit(&crate::job::applied_lines(&result))?;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end(b"/cronsun/"), b"/cronsun0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        assert_eq!(prefix_end(&[0xff]), vec![0]);
    }

    #[test]
    fn a_dump_decodes_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("dump.json");
        let dump = format!(
            r#"{{"header":{{"revision":7}},"kvs":[{{"key":"{}","create_revision":2,"value":"{}"}}],"count":1}}"#,
            b64(b"/cronsun/group/g"),
            b64(br#"{"id":"g","nids":["a"]}"#)
        );
        std::fs::write(&path, dump).expect("write");
        let kvs = read_dump(&path).expect("decodes");
        assert_eq!(kvs[0].0, "/cronsun/group/g");
        for bad in ["[]", "{\"jobs\": 1}", "not json"] {
            std::fs::write(&path, bad).expect("write");
            let e = read_dump(&path).expect_err("not a range answer");
            assert!(format!("{e:#}").contains("etcdctl get"), "{bad}: {e:#}");
        }
    }
}
