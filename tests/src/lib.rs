//! Harness for cronsun's end-to-end tests.
//!
//! Every test starts the real `cronsund` binary on its own temporary state
//! dir and free loopback port ([`Daemon`]) and drives it through the real
//! `cronsun` CLI ([`Daemon::cli`]) and plain HTTP ([`Daemon::api_get`] and
//! friends). Waiting is always bounded and always for an observable event
//! (an API answer, a process exit), never a bare sleep; every process a test
//! starts is stopped by its pid, also when the test fails.

pub mod auth;
pub mod bins;
pub mod cli;
pub mod cluster;
pub mod daemon;
pub mod etcd;
pub mod ferret;
pub mod http;
pub mod jobs;
pub mod netns;
pub mod pki;
pub mod procs;
pub mod tls;
pub mod wait;

pub use cli::{run_cli, CliOutput};
pub use daemon::{ConfigOverrides, Daemon};
pub use http::Response;
pub use jobs::{fmt_records, job, schedule_at, unique_id};
pub use procs::{MarkerGuard, ProcInfo};
pub use wait::poll_until;

pub use cronsun_proto::{Job, RunRecord, RunStatus, Trigger};
