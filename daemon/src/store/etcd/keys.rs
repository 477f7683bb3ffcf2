//! The key layout under the prefix (DESIGN §4) and the watermark's value.
//!
//! Guarantees: instant keys are fixed-width and byte-comparable, so etcd's
//! `value(claim/J) < T` compare orders instants; a watermark value always
//! starts with its instant key, so a value at instant T compares greater
//! than T's bare key (decided) and smaller than any later instant's.

use jiff::Timestamp;

/// Keys of one cluster (all under `prefix`).
#[derive(Clone, Debug)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_string(),
        }
    }

    pub(super) fn key(&self, parts: &[&str]) -> String {
        let mut k = self.prefix.clone();
        k.push_str(&parts.concat());
        k
    }

    pub fn jobs(&self) -> String {
        self.key(&["job/"])
    }
    pub fn job(&self, id: &str) -> String {
        self.key(&["job/", id])
    }
    pub fn claims(&self) -> String {
        self.key(&["claim/"])
    }
    pub fn claim(&self, job: &str) -> String {
        self.key(&["claim/", job])
    }
    pub fn nodes(&self) -> String {
        self.key(&["node/"])
    }
    pub fn node(&self, id: &str) -> String {
        self.key(&["node/", id])
    }
    /// Last facts of every node ever seen (no lease: kept after it dies).
    pub fn node_infos(&self) -> String {
        self.key(&["nodeinfo/"])
    }
    pub fn node_info(&self, id: &str) -> String {
        self.key(&["nodeinfo/", id])
    }
    pub fn running(&self, node: &str, run_id: &str) -> String {
        self.key(&["running/", node, "/", run_id])
    }
    /// The run in progress of a `forbid` job (under its node's lease).
    pub fn active(&self, job: &str) -> String {
        self.key(&["active/", job])
    }
    /// Who starts the retry of a lost run (`<run_id>#<attempt>`).
    pub fn retry(&self, record_id: &str) -> String {
        self.key(&["retry/", record_id])
    }
    pub fn paused(&self) -> String {
        self.key(&["paused"])
    }
    /// The admin token every node accepts (bootstrapped by the first node).
    pub fn admin_token(&self) -> String {
        self.key(&["admin-token"])
    }
    /// The web leader (under the leader's node lease).
    pub fn leader(&self) -> String {
        self.key(&["leader"])
    }
    /// Run-now requests (`once/<request>`, under a per-request lease).
    pub fn onces(&self) -> String {
        self.key(&["once/"])
    }
    pub fn once(&self, request: &str) -> String {
        self.key(&["once/", request])
    }
    /// Who starts a `one` job's run-now request (create-if-absent).
    pub fn once_claimed(&self, request: &str) -> String {
        self.key(&["once/", request, "/claimed"])
    }
    /// Kill requests for runs on other nodes (`kill/<record id>`, short lease).
    pub fn kills(&self) -> String {
        self.key(&["kill/"])
    }
    pub fn kill(&self, record_id: &str) -> String {
        self.key(&["kill/", record_id])
    }
    /// Drained nodes (`drain/<node>`, no lease: it survives restarts).
    pub fn drains(&self) -> String {
        self.key(&["drain/"])
    }
    pub fn drain(&self, node: &str) -> String {
        self.key(&["drain/", node])
    }

    /// The id part of a key under `folder` (e.g. `job/`), if it is one.
    pub fn id_in<'a>(&self, folder: &str, key: &'a [u8]) -> Option<&'a str> {
        let key = std::str::from_utf8(key).ok()?;
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(folder)
            .filter(|id| !id.is_empty())
    }
}

/// `YYYYMMDDTHHMMSS.nnnnnnnnnZ`: fixed width, byte order = time order.
pub fn instant_key(t: Timestamp) -> String {
    t.strftime("%Y%m%dT%H%M%S.%9fZ").to_string()
}

/// Inverse of [`instant_key`].
pub fn parse_instant_key(s: &str) -> Option<Timestamp> {
    let civil = s
        .strip_suffix('Z')
        .filter(|c| c.len() == 25 && c.is_ascii())?;
    let dt = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.f", civil).ok()?;
    jiff::tz::TimeZone::UTC.to_timestamp(dt).ok()
}

/// A watermark `claim/<job>`: the last decided instant, who decided it and
/// how (`node` is a node id, or `created`/`resumed`/`missed`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub instant: Timestamp,
    pub by: String,
    /// The deciding attempt's nonce (read back after an ambiguous reply).
    pub nonce: String,
    /// The decider's wall clock (ms since the epoch) when it decided.
    pub clock_ms: i64,
}

impl Watermark {
    pub fn encode(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            instant_key(self.instant),
            self.by,
            self.nonce,
            self.clock_ms
        )
    }

    /// Whether this watermark is a claim of instant `t` made by this boot
    /// of this node (`boot`): any attempt of it, including one whose reply
    /// was lost. A node claims an instant again only after its earlier
    /// attempt's outcome was unknown, so such a watermark means it won.
    pub fn claimed_by_boot(&self, boot: &str, t: Timestamp) -> bool {
        self.instant == t && self.nonce.split_once('.').is_some_and(|(b, _)| b == boot)
    }

    pub fn decode(v: &[u8]) -> Option<Watermark> {
        let s = std::str::from_utf8(v).ok()?;
        let mut it = s.splitn(4, '|');
        let instant = parse_instant_key(it.next()?)?;
        Some(Watermark {
            instant,
            by: it.next()?.to_string(),
            nonce: it.next().unwrap_or_default().to_string(),
            clock_ms: it.next().and_then(|c| c.parse().ok()).unwrap_or(0),
        })
    }
}

/// Rendezvous (highest random weight) rank of `node` among `nodes` for
/// instant `t` of `job`: 0 is the first to try. Every node computes the same
/// order from the same set, without talking to the others.
pub fn rank<'a>(
    job: &str,
    t: Timestamp,
    node: &str,
    nodes: impl IntoIterator<Item = &'a str>,
) -> Option<usize> {
    let score = |n: &str| {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(job.as_bytes());
        h.update([0]);
        h.update(t.as_nanosecond().to_be_bytes());
        h.update([0]);
        h.update(n.as_bytes());
        let d = h.finalize();
        let mut b = [0u8; 8];
        b.copy_from_slice(&d[..8]);
        (u64::from_be_bytes(b), n.to_string())
    };
    let mut scored: Vec<(u64, String)> = nodes.into_iter().map(score).collect();
    scored.sort_by(|a, b| b.cmp(a));
    scored.dedup_by(|a, b| a.1 == b.1);
    scored.iter().position(|(_, n)| n == node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn watermark_round_trips_and_orders_as_bytes() {
        let t: Timestamp = "2026-03-25T03:00:00.5Z".parse().expect("ts");
        let w = Watermark {
            instant: t,
            by: "web-1".into(),
            nonce: "ab12".into(),
            clock_ms: 42,
        };
        assert_eq!(Watermark::decode(w.encode().as_bytes()), Some(w.clone()));
        assert_eq!(instant_key(t), "20260325T030000.500000000Z");
        // A value at T is not below T (decided) but is below T + 1 ns.
        let at = w.encode();
        assert!(at.as_str() >= instant_key(t).as_str());
        let next = t + jiff::SignedDuration::from_nanos(1);
        assert!(at.as_str() < instant_key(next).as_str());
        assert_eq!(Watermark::decode(b"garbage"), None);
        let mine = Watermark {
            nonce: "b00t.7".into(),
            ..w.clone()
        };
        assert!(mine.claimed_by_boot("b00t", t));
        assert!(!mine.claimed_by_boot("b00t", next));
        assert!(!mine.claimed_by_boot("other", t));
        assert!(!w.claimed_by_boot("ab12", t), "a nonce without a boot part");
    }

    #[test]
    fn keys_and_ids() {
        let k = Keys::new("/cronsun/");
        assert_eq!(k.job("a"), "/cronsun/job/a");
        assert_eq!(k.id_in("job/", b"/cronsun/job/a"), Some("a"));
        assert_eq!(k.id_in("job/", b"/cronsun/claim/a"), None);
        assert_eq!(k.running("n1", "j~x"), "/cronsun/running/n1/j~x");
    }

    #[test]
    fn ranks_are_a_permutation_shared_by_all_nodes() {
        let nodes = ["a", "b", "c"];
        let t: Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let mut ranks: Vec<usize> = nodes
            .iter()
            .map(|n| rank("job", t, n, nodes.iter().copied()).expect("ranked"))
            .collect();
        ranks.sort_unstable();
        assert_eq!(ranks, vec![0, 1, 2]);
        assert_eq!(rank("job", t, "zz", nodes.iter().copied()), None);
        // Over many instants, every node is first sometimes (spreads load).
        let mut firsts = std::collections::BTreeSet::new();
        for s in 0..60 {
            let t = t + jiff::SignedDuration::from_secs(s);
            for n in nodes {
                if rank("job", t, n, nodes.iter().copied()) == Some(0) {
                    firsts.insert(n);
                }
            }
        }
        assert_eq!(firsts.len(), 3);
    }

    proptest! {
        #[test]
        fn instant_keys_order_like_instants(a in 0i64..4_000_000_000_000_000_000, b in 0i64..4_000_000_000_000_000_000) {
            let ta = Timestamp::from_nanosecond(i128::from(a)).expect("ts");
            let tb = Timestamp::from_nanosecond(i128::from(b)).expect("ts");
            prop_assert_eq!(instant_key(ta).cmp(&instant_key(tb)), ta.cmp(&tb));
            prop_assert_eq!(parse_instant_key(&instant_key(ta)), Some(ta));
        }
    }
}
