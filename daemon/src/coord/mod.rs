//! Cluster coordination above the stores: serving the API from the web
//! leader (DESIGN §1: every other node reverse-proxies to it), over TLS
//! pinned to the certificate each node publishes, and node-local answers
//! (a run's live output) fetched from the node that owns them; the duties
//! only the leader does.

pub mod duties;
pub mod owner;
pub mod pin;
pub mod proxy;
