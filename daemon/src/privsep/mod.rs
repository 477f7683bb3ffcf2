//! Privilege separation and host integration (DESIGN §1, §6): the unit's
//! main process is the executor; it forks the agent, which does everything
//! else as an unprivileged user. See `docs/ARCHITECTURE.md`, "Host
//! integration".

pub mod notify;
