//! cronsund: the cronsun node daemon as a library; `main.rs` is a thin shell.
//!
//! Codemap: see `docs/ARCHITECTURE.md`.

pub mod exec;
pub mod store;
