//! Identifiers: job ids, run ids and their URL-safe formats (DESIGN §3).

use jiff::Timestamp;

/// Whether `id` is a valid job id: `[a-z0-9][a-z0-9_-]*`, at most 128 bytes.
pub fn is_valid_job_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}

/// Formats an instant as in run ids: `20260325T030000.000Z` (UTC, milliseconds).
pub fn instant_key(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%S.%3fZ").to_string()
}

/// `run_id` of a scheduled, retried or caught-up instant.
/// `node` is given for `all` jobs, whose instants run once per node.
pub fn scheduled_run_id(job: &str, instant: Timestamp, node: Option<&str>) -> String {
    match node {
        Some(n) => format!("{job}~{}~{n}", instant_key(instant)),
        None => format!("{job}~{}", instant_key(instant)),
    }
}

/// `run_id` of a manual run (`run now`).
pub fn manual_run_id(job: &str, request_id: &str) -> String {
    format!("{job}~manual~{request_id}")
}

/// `run_id` of one node's run of a cluster run-now request of an `all` job.
pub fn manual_node_run_id(job: &str, request_id: &str, node: &str) -> String {
    format!("{job}~manual~{request_id}~{node}")
}

/// The record id of one attempt of a run: `<run_id>#<attempt>`.
pub fn record_id(run_id: &str, attempt: u32) -> String {
    format!("{run_id}#{attempt}")
}

/// Splits a record id into run id and attempt.
pub fn split_record_id(id: &str) -> Option<(&str, u32)> {
    let (run, attempt) = id.rsplit_once('#')?;
    Some((run, attempt.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids() {
        assert!(is_valid_job_id("nightly-backup_2"));
        assert!(is_valid_job_id("0abc"));
        for bad in ["", "-a", "_a", "A", "a b", "a/b", "a.b", "ä"] {
            assert!(!is_valid_job_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn run_ids_are_url_safe_and_stable() {
        let t: Timestamp = "2026-03-25T03:00:00Z".parse().expect("ts");
        assert_eq!(scheduled_run_id("j", t, None), "j~20260325T030000.000Z");
        assert_eq!(
            scheduled_run_id("j", t, Some("web-1")),
            "j~20260325T030000.000Z~web-1"
        );
        assert_eq!(record_id("j~x", 2), "j~x#2");
        assert_eq!(split_record_id("j~x#2"), Some(("j~x", 2)));
    }
}
