//! The bench's view of one daemon's API: token, JSON calls that return
//! errors instead of panicking, and bulk operations (apply in batches,
//! paging through run records).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context as _};
use http::Method;
use jiff::Timestamp;
use serde::de::DeserializeOwned;

use cronsun_proto::api::{ApplyResult, RunPage};
use cronsun_proto::{Job, RunRecord};
use cronsun_tests::daemon::encode_query;
use cronsun_tests::http::{HttpClient, Response};
use cronsun_tests::Daemon;

/// Jobs per `POST /api/v1/jobs/apply`.
const APPLY_BATCH: usize = 1000;
/// Records per search page when paging through all of them.
const PAGE: u32 = 1000;
/// Bound on pages followed for one query.
const MAX_PAGES: usize = 2000;
const TIMEOUT: Duration = Duration::from_secs(120);

pub struct Api {
    http: HttpClient,
    token: String,
}

impl Api {
    pub fn new(d: &Daemon) -> Api {
        Api {
            http: HttpClient::new(([127, 0, 0, 1], d.port()).into()),
            token: d.token().to_string(),
        }
    }

    /// One request with the admin token; any status is returned.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Response> {
        self.http
            .request(method, path, Some(&self.token), &[], body, TIMEOUT)
    }

    /// Like [`Api::call`], also returning how long the whole exchange took.
    pub fn timed_get(&self, path: &str, want: u16) -> anyhow::Result<(Duration, Response)> {
        let t = Instant::now();
        let r = self.call(Method::GET, path, None)?;
        let took = t.elapsed();
        expect(&r, want)?;
        Ok((took, r))
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self.call(Method::GET, path, None)?;
        expect(&r, 200)?;
        parse(&r)
    }

    /// Creates or replaces `jobs` in batches.
    pub fn apply(&self, jobs: &[Job]) -> anyhow::Result<()> {
        for batch in jobs.chunks(APPLY_BATCH) {
            let body = serde_json::to_vec(&serde_json::json!({ "jobs": batch }))?;
            let r = self.call(Method::POST, "/api/v1/jobs/apply", Some(body))?;
            expect(&r, 200)?;
            let _: ApplyResult = parse(&r)?;
        }
        Ok(())
    }

    pub fn delete_jobs<'a>(&self, ids: impl IntoIterator<Item = &'a str>) -> anyhow::Result<()> {
        for id in ids {
            let r = self.call(Method::DELETE, &format!("/api/v1/jobs/{id}"), None)?;
            expect(&r, 204)?;
        }
        Ok(())
    }

    /// Every record scheduled in `[since, until)`, following cursors.
    pub fn runs_between(
        &self,
        since: Timestamp,
        until: Timestamp,
    ) -> anyhow::Result<Vec<RunRecord>> {
        let base = format!(
            "/api/v1/runs?since={}&until={}&limit={PAGE}",
            encode_query(&since.to_string()),
            encode_query(&until.to_string())
        );
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let path = match &cursor {
                Some(c) => format!("{base}&cursor={}", encode_query(c)),
                None => base.clone(),
            };
            let page: RunPage = self.get_json(&path)?;
            all.extend(page.runs);
            cursor = page.next_cursor;
            if cursor.is_none() {
                return Ok(all);
            }
        }
        bail!("more than {MAX_PAGES} pages of runs between {since} and {until}")
    }
}

/// Records per status, e.g. `success 10000, failed 2`.
pub fn count_by_status(runs: &[RunRecord]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in runs {
        *m.entry(r.status.to_string()).or_insert(0) += 1;
    }
    m
}

/// The most frequent `reason`s of records that did not succeed, with counts
/// (reasons cut at 100 characters), most frequent first.
pub fn top_reasons(runs: &[RunRecord], n: usize) -> Vec<(u64, String)> {
    let mut m: BTreeMap<String, u64> = BTreeMap::new();
    for r in runs
        .iter()
        .filter(|r| r.status != cronsun_proto::RunStatus::Success)
    {
        let reason = r.reason.as_deref().unwrap_or("(no reason)");
        let key = format!(
            "{}: {}",
            r.status,
            reason.chars().take(100).collect::<String>()
        );
        *m.entry(key).or_insert(0) += 1;
    }
    let mut v: Vec<(u64, String)> = m.into_iter().map(|(k, c)| (c, k)).collect();
    v.sort_by(|a, b| b.cmp(a));
    v.truncate(n);
    v
}

pub fn fmt_counts(m: &BTreeMap<String, u64>) -> String {
    if m.is_empty() {
        return "none".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn expect(r: &Response, want: u16) -> anyhow::Result<()> {
    if r.status != want {
        let body: String = r.text().chars().take(500).collect();
        bail!(
            "{} {}: expected {want}, got {}: {body}",
            r.method,
            r.path,
            r.status
        );
    }
    Ok(())
}

fn parse<T: DeserializeOwned>(r: &Response) -> anyhow::Result<T> {
    serde_json::from_slice(&r.body)
        .with_context(|| {
            format!(
                "{} {}: body is not a {}",
                r.method,
                r.path,
                std::any::type_name::<T>()
            )
        })
        .map_err(|e| anyhow!("{e:#}"))
}
