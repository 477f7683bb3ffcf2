//! Paths and query strings of the API routes, percent-encoded so any id or
//! filter value reaches the server as written (`#` in record ids becomes `%23`).

use std::fmt::Write as _;

use crate::api::{PreviewQuery, RunQuery};

/// Percent-encodes everything but RFC 3986 unreserved characters, so the
/// result is safe as one path segment or one query value.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Builds `?k=v&k=v`, skipping absent values.
#[derive(Default)]
struct QueryString(String);

impl QueryString {
    fn push(&mut self, key: &str, value: Option<impl ToString>) {
        if let Some(v) = value {
            self.0.push(if self.0.is_empty() { '?' } else { '&' });
            self.0.push_str(key);
            self.0.push('=');
            self.0.push_str(&encode_component(&v.to_string()));
        }
    }
}

/// `?job=..&status=..&since=<RFC 3339>...` for `GET /api/v1/runs`.
pub fn run_query_string(q: &RunQuery) -> String {
    let mut qs = QueryString::default();
    qs.push("job", q.job.as_ref());
    qs.push("node", q.node.as_ref());
    qs.push("status", q.status);
    qs.push("since", q.since);
    qs.push("until", q.until);
    qs.push("limit", q.limit);
    qs.push("cursor", q.cursor.as_ref());
    qs.0
}

/// `?schedule=..&timezone=..&from=..&n=..` for `GET /api/v1/schedule/preview`.
pub fn preview_query_string(q: &PreviewQuery) -> String {
    let mut qs = QueryString::default();
    qs.push("schedule", Some(&q.schedule));
    qs.push("timezone", q.timezone.as_ref());
    qs.push("from", q.from);
    qs.push("n", q.n);
    qs.0
}

/// `/api/v1/jobs/{id}` plus an optional action segment.
pub fn job_path(id: &str, action: Option<&str>) -> String {
    let mut p = format!("/api/v1/jobs/{}", encode_component(id));
    if let Some(a) = action {
        p.push('/');
        p.push_str(a);
    }
    p
}

/// `/api/v1/runs/{id}` plus an optional action segment; `id` is a run id or
/// a record id `<run_id>#<attempt>`.
pub fn run_path(id: &str, action: Option<&str>) -> String {
    let mut p = format!("/api/v1/runs/{}", encode_component(id));
    if let Some(a) = action {
        p.push('/');
        p.push_str(a);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::RunStatus;

    #[test]
    fn encodes_reserved_characters() {
        assert_eq!(encode_component("a-b_c.d~e"), "a-b_c.d~e");
        assert_eq!(encode_component("j~manual~x#2"), "j~manual~x%232");
        assert_eq!(
            encode_component("a b/c?d&e=f+g"),
            "a%20b%2Fc%3Fd%26e%3Df%2Bg"
        );
        assert_eq!(encode_component("é"), "%C3%A9");
    }

    #[test]
    fn run_query_encodes_every_filter() {
        assert_eq!(run_query_string(&RunQuery::default()), "");
        let q = RunQuery {
            job: Some("backup".into()),
            node: Some("web 1".into()),
            status: Some(RunStatus::Failed),
            since: Some("2026-03-28T00:00:00Z".parse().expect("ts")),
            until: None,
            limit: Some(20),
            cursor: Some("a+b/c=".into()),
        };
        assert_eq!(
            run_query_string(&q),
            "?job=backup&node=web%201&status=failed&since=2026-03-28T00%3A00%3A00Z&limit=20&cursor=a%2Bb%2Fc%3D"
        );
    }

    #[test]
    fn preview_query_and_paths() {
        let q = PreviewQuery {
            schedule: "0 2 * * *".into(),
            timezone: Some("Europe/Berlin".into()),
            from: None,
            n: Some(3),
        };
        assert_eq!(
            preview_query_string(&q),
            "?schedule=0%202%20%2A%20%2A%20%2A&timezone=Europe%2FBerlin&n=3"
        );
        assert_eq!(
            run_path("j~manual~r1#2", Some("stream")),
            "/api/v1/runs/j~manual~r1%232/stream"
        );
        assert_eq!(
            job_path("nightly", Some("pause")),
            "/api/v1/jobs/nightly/pause"
        );
    }
}
