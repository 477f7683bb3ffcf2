//! Values shared by unit tests of pure logic.

use cronsun_proto::api::NodeInfo;
use jiff::Timestamp;

/// A node's facts as `node ls` shows them, with only what tests vary.
pub fn node_info(id: &str, alive: bool, draining: bool, last_seen: Timestamp) -> NodeInfo {
    NodeInfo {
        id: id.into(),
        hostname: id.into(),
        api_url: None,
        tls_fingerprint: None,
        clock_offset_ms: None,
        clock_problem: None,
        version: String::new(),
        tzdata: String::new(),
        groups: Vec::new(),
        labels: Default::default(),
        started_at: Timestamp::UNIX_EPOCH,
        last_seen,
        alive,
        running: 0,
        clock_ok: true,
        draining,
    }
}
