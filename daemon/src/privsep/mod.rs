//! Privilege separation and host integration (DESIGN §1, §6): started as
//! root, the unit's main process is the executor ([`run_executor`]: no
//! network, no runtime); it re-executes this binary as the agent (marked
//! by [`AGENT_FD_ENV`]), which drops to `[security] agent_user`
//! ([`agent::drop_privileges`]) and does everything else, reaching the
//! executor through [`ExecClient`]. See `docs/ARCHITECTURE.md`, "Host
//! integration".

pub mod adopt;
pub use adopt::forward_adopted;
pub mod agent;
mod client;
pub mod notify;
pub mod sandbox;
mod supervisor;
pub mod wire;

pub use client::{Adopted, ExecClient};
pub use supervisor::run_executor;

/// Environment variable that marks the agent and names its socket fd.
pub const AGENT_FD_ENV: &str = "CRONSUN_PRIVSEP_FD";
/// The fd the agent's end of the socketpair is placed on.
pub const AGENT_FD: i32 = 3;

#[cfg(test)]
mod tests;
