//! Request and response bodies of the HTTP API under `/api/v1` (DESIGN §8).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::job::Job;
use crate::run::{RunRecord, RunStatus};

/// Every API error: a machine-readable code, a message for humans, and the
/// field that caused it when there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApiError {
    /// `bad_request`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `unavailable`, `internal`.
    pub error: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A job with what the scheduler knows about it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub job: Job,
    pub state: JobState,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobState {
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_run: Option<Timestamp>,
    pub last_run: Option<LastRun>,
    pub running: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LastRun {
    pub run_id: String,
    pub attempt: u32,
    pub status: RunStatus,
    #[schema(value_type = String, format = DateTime)]
    pub scheduled_at: Timestamp,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub finished_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobList {
    pub jobs: Vec<JobView>,
}

/// `job apply`: all jobs are validated before any is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApplyRequest {
    pub jobs: Vec<Job>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApplyResult {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
}

/// A job file (`cronsun job apply -f jobs.toml`, `cronsun job export`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    #[serde(default)]
    pub job: Vec<Job>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PauseRequest {
    #[serde(default)]
    pub reason: Option<String>,
}

/// The global pause switch: while on, no node starts scheduled runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GlobalPause {
    pub paused: bool,
    #[serde(default)]
    pub reason: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<Timestamp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunNowRequest {
    #[serde(default)]
    pub node: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunNowResponse {
    /// The run to follow (`<job>~manual~<request>`; for an `all` job in a
    /// cluster, the first selected node's `<job>~manual~<request>~<node>`).
    pub run_id: String,
    /// Cluster mode: the run-now request (`once/<request>` in etcd).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Cluster mode: every run the request starts (one per selected node
    /// for an `all` job, one for a `one` job).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub run_ids: Vec<String>,
}

/// Run search; every filter optional, newest first, cursor-paginated.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RunQuery {
    pub job: Option<String>,
    pub node: Option<String>,
    pub status: Option<RunStatus>,
    /// Runs scheduled at or after this instant.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[param(value_type = Option<String>)]
    pub since: Option<Timestamp>,
    /// Runs scheduled before this instant.
    #[schema(value_type = Option<String>, format = DateTime)]
    #[param(value_type = Option<String>)]
    pub until: Option<Timestamp>,
    /// At most this many (default 50, at most 1000).
    pub limit: Option<u32>,
    /// Opaque cursor from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RunPage {
    /// Newest first; output fields are empty in search results.
    pub runs: Vec<RunRecord>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// Cluster mode: where the other nodes reach this node's API
    /// (`https://` when its listener speaks TLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_url: Option<String>,
    /// SHA-256 fingerprint (`AB:CD:…`) of the certificate this node's
    /// listener serves; the other nodes accept exactly this certificate
    /// from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_fingerprint: Option<String>,
    pub version: String,
    pub tzdata: String,
    pub groups: Vec<String>,
    pub labels: BTreeMap<String, String>,
    #[schema(value_type = String, format = DateTime)]
    pub started_at: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub last_seen: Timestamp,
    pub alive: bool,
    pub running: u32,
    pub clock_ok: bool,
    pub draining: bool,
    /// This node's clock minus the median of the cluster's clocks, ms
    /// (cluster mode, once measured).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset_ms: Option<i64>,
    /// Why `clock_ok` is false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_problem: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PreviewQuery {
    pub schedule: String,
    /// IANA zone; default the configured zone, else UTC.
    pub timezone: Option<String>,
    /// Instants strictly after this one (default now).
    #[schema(value_type = Option<String>, format = DateTime)]
    #[param(value_type = Option<String>)]
    pub from: Option<Timestamp>,
    /// How many (default 10, at most 1000).
    pub n: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Preview {
    /// RFC 3339 with the zone's offset.
    pub instants: Vec<String>,
    pub timezone: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unhealthy` (HTTP 503) with the reasons in `problems`.
    pub status: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
