//! cronsun-proto: the one definition of cronsun's public types.
//!
//! The job model, its validation, schedule arithmetic, run records and the
//! HTTP API's request/response types live here and only here; the daemon,
//! the CLI and the tests all use these definitions, so a field means the same
//! thing everywhere (DESIGN §2, §3, §8).

pub mod api;
pub mod auth;
#[cfg(feature = "client")]
pub mod client;
pub mod duration;
pub mod ids;
pub mod job;
pub mod run;
pub mod schedule;

pub use duration::Dur;
pub use job::{Job, ValidationError};
pub use run::{RunRecord, RunStatus, Trigger};
