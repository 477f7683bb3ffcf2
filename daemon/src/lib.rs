//! cronsund: the cronsun node daemon as a library; `main.rs` is a thin shell.
//!
//! Codemap: see `docs/ARCHITECTURE.md`.

pub mod api;
pub mod clock;
pub mod config;
pub mod coord;
pub mod daemon;
pub mod exec;
pub mod faults;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod privsep;
pub mod reload;
pub mod scheduler;
pub mod store;
#[cfg(test)]
mod testing;
pub mod tls;
