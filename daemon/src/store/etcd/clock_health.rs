//! The peer half of the clock-health gate (DESIGN §3): this node's clock
//! offset to the cluster, measured through etcd with a bounded error.
//!
//! Measurement (NTP's four timestamps, carried by the node records): at each
//! refresh a node publishes a [`Stamp`] in `node/<id>`: its wall clock when
//! it sent the record (`sent`), and for each peer whose record it has seen,
//! that peer's `sent` and its own clock when it received it (an [`Echo`]).
//! When A receives B's record holding an echo of A's stamp:
//!
//! ```text
//! c = A's sent (echoed)   r = B's receipt of it (echoed)
//! s = B's sent            a = A's receipt of B's record (now)
//! offset(B − A) = ((r − c) + (s − a)) / 2     delay = (a − c) − (s − r)
//! ```
//!
//! `delay` is the two trips through etcd (put + watch) without the time B
//! held the echo, and the true offset lies within `delay / 2` of the
//! estimate whatever the asymmetry of the trips. Per peer the sample with
//! the smallest delay among the last [`SAMPLES`] fresh ones is kept (NTP's
//! clock filter); a sample whose error bound exceeds half of `max_skew`
//! is dropped as too uncertain to judge.
//!
//! Rule: this node's offset is its clock minus the median of the clocks of
//! the live nodes it measured, itself included (offset 0). The median is
//! robust: one wrong clock among three or more moves no other node out of
//! the ranking; with two nodes, neither can tell whose clock is wrong and
//! each is blamed for half the difference. A node whose offset exceeds
//! `max_skew` is unhealthy: it publishes `clock_ok = false` (peers drop it
//! from the ranking) and claims nothing.
//!
//! Guarantees: a node that joins a cluster whose peers publish stamps
//! claims only once it has measured at least one of them (or found none
//! publishing); until its peer view is loaded it claims nothing. Once it
//! has measured, a node whose samples all went stale (etcd slow) is judged
//! by the kernel check alone until fresh ones arrive.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jiff::SignedDuration;
use prometheus_client::metrics::gauge::Gauge;
use serde::{Deserialize, Serialize};

/// How many recent samples per peer the filter keeps.
pub const SAMPLES: usize = 4;

/// What a node publishes for the offset measurement (in its node record).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// Wall clock when the record was sent, ms since the epoch.
    pub sent_ms: i64,
    /// Per peer id: the last stamp of that peer this node received.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub echoes: BTreeMap<String, Echo>,
}

/// A peer's stamp as this node received it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// The peer's `sent_ms`.
    pub sent_ms: i64,
    /// This node's clock when it received it, ms since the epoch.
    pub received_ms: i64,
}

/// One offset measurement against one peer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The peer's clock minus this node's, ms.
    pub offset_ms: f64,
    /// Round trip through etcd, ms; the error bound is half of it.
    pub delay_ms: i64,
    pub at: Instant,
}

/// The verdict of the last evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    /// This node's clock minus the cluster median; `None` before any sample.
    pub offset: Option<SignedDuration>,
    /// Why the clock is not healthy; `None` when it is.
    pub problem: Option<String>,
}

impl Verdict {
    pub fn ok(&self) -> bool {
        self.problem.is_none()
    }
}

/// The offset sample of A given B's stamp, received at A's `now_ms`;
/// `None` when B's stamp carries no echo of A.
pub fn sample(me: &str, theirs: &Stamp, now_ms: i64, at: Instant) -> Option<Sample> {
    let e = theirs.echoes.get(me)?;
    let (c, r, s, a) = (e.sent_ms, e.received_ms, theirs.sent_ms, now_ms);
    let offset_ms = ((r - c) as f64 + (s - a) as f64) / 2.0;
    let delay_ms = ((a - c) - (s - r)).max(0);
    Some(Sample {
        offset_ms,
        delay_ms,
        at,
    })
}

/// The median of `values` (the mean of the two middle ones for an even count).
pub fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Some(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

/// Gauges this module keeps current.
#[derive(Clone, Default)]
pub struct ClockGauges {
    /// `cronsun_clock_offset_seconds`: this node minus the cluster median.
    pub offset: Gauge<f64, AtomicU64>,
    /// `cronsun_clock_healthy`: 1 while this node may claim.
    pub healthy: Gauge,
}

struct State {
    /// Per peer: its last stamp as received here (echoed back).
    seen: BTreeMap<String, Echo>,
    samples: BTreeMap<String, VecDeque<Sample>>,
    /// The peer view has been loaded once.
    synced: bool,
    /// Measured a peer once, or found no peer publishing stamps.
    measured: bool,
    verdict: Verdict,
}

/// This node's measurements and verdict.
pub struct ClockHealth {
    me: String,
    max_skew: Duration,
    /// Samples older than this are stale.
    max_age: Duration,
    state: Mutex<State>,
    gauges: ClockGauges,
}

impl ClockHealth {
    /// `max_age`: how long a sample stays usable (a few refresh periods).
    pub fn new(me: &str, max_skew: Duration, max_age: Duration, gauges: ClockGauges) -> Self {
        gauges.healthy.set(0);
        ClockHealth {
            me: me.to_string(),
            max_skew,
            max_age,
            state: Mutex::new(State {
                seen: BTreeMap::new(),
                samples: BTreeMap::new(),
                synced: false,
                measured: false,
                verdict: Verdict {
                    offset: None,
                    problem: Some("the peer view is not loaded yet".into()),
                },
            }),
            gauges,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The stamp to publish now (`now_ms`: this node's wall clock).
    pub fn stamp(&self, now_ms: i64) -> Stamp {
        Stamp {
            sent_ms: now_ms,
            echoes: self.lock().seen.clone(),
        }
    }

    /// A peer's record arrived at `now_ms` (this node's wall clock).
    pub fn observe(&self, peer: &str, stamp: &Stamp, now_ms: i64, at: Instant) {
        if peer == self.me {
            return;
        }
        let mut st = self.lock();
        st.seen.insert(
            peer.to_string(),
            Echo {
                sent_ms: stamp.sent_ms,
                received_ms: now_ms,
            },
        );
        if let Some(s) = sample(&self.me, stamp, now_ms, at) {
            let q = st.samples.entry(peer.to_string()).or_default();
            if q.len() == SAMPLES {
                q.pop_front();
            }
            q.push_back(s);
        }
    }

    /// A peer left: forget it.
    pub fn forget(&self, peer: &str) {
        let mut st = self.lock();
        st.seen.remove(peer);
        st.samples.remove(peer);
    }

    /// Re-judges against the live peers (`stamped`: the ones publishing
    /// stamps) and returns the verdict.
    pub fn evaluate<'a>(
        &self,
        stamped: impl IntoIterator<Item = &'a str>,
        now: Instant,
    ) -> Verdict {
        let mut st = self.lock();
        st.synced = true;
        let stamped: Vec<&str> = stamped.into_iter().filter(|p| *p != self.me).collect();
        let max_error_ms = self.max_skew.as_secs_f64() * 1000.0 / 2.0;
        let mut offsets = vec![0.0];
        let mut uncertain = 0usize;
        for p in &stamped {
            let best = st.samples.get(*p).and_then(|q| {
                q.iter()
                    .filter(|s| now.saturating_duration_since(s.at) <= self.max_age)
                    .min_by_key(|s| s.delay_ms)
            });
            match best {
                Some(s) if (s.delay_ms as f64) / 2.0 <= max_error_ms => offsets.push(s.offset_ms),
                Some(_) => uncertain += 1,
                None => {}
            }
        }
        let measured_now = offsets.len() - 1;
        if measured_now > 0 || stamped.is_empty() {
            st.measured = true;
        }
        let median_ms = median(&mut offsets).unwrap_or(0.0);
        // This node minus the median of all clocks.
        let mine_ms = -median_ms;
        let offset = (measured_now > 0).then(|| SignedDuration::from_secs_f64(mine_ms / 1000.0));
        let problem = if !st.measured {
            Some(format!(
                "measuring the clock offset to {} peer(s) ({uncertain} sample(s) too uncertain so far)",
                stamped.len()
            ))
        } else if mine_ms.abs() > self.max_skew.as_secs_f64() * 1000.0 {
            Some(format!(
                "clock offset {:+.0} ms to the median of {} clocks (this node and {measured_now} peer(s)) exceeds max_skew {} ms",
                mine_ms,
                measured_now + 1,
                self.max_skew.as_millis()
            ))
        } else {
            None
        };
        st.verdict = Verdict { offset, problem };
        self.gauges.offset.set(mine_ms / 1000.0);
        st.verdict.clone()
    }

    /// The last verdict (cheap: read at every claim).
    pub fn verdict(&self) -> Verdict {
        self.lock().verdict.clone()
    }

    /// Sets the health gauge (the overall verdict includes the kernel check).
    pub fn set_healthy(&self, ok: bool) {
        self.gauges.healthy.set(i64::from(ok));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_millis(500);
    const AGE: Duration = Duration::from_secs(10);

    fn health(me: &str) -> ClockHealth {
        ClockHealth::new(me, SKEW, AGE, ClockGauges::default())
    }

    /// Simulates one exchange A → B → A: B's clock is `b_minus_a` ms ahead
    /// of A's; each trip takes `up`/`down` ms; B holds the echo `hold` ms.
    fn exchange(a: &ClockHealth, b: &ClockHealth, b_minus_a: i64, up: i64, down: i64, hold: i64) {
        let t0 = 1_000_000; // true time when A sends
        let now = Instant::now();
        let sa = a.stamp(t0);
        b.observe(&a.me, &sa, t0 + up + b_minus_a, now);
        let sb = b.stamp(t0 + up + hold + b_minus_a);
        a.observe(&b.me, &sb, t0 + up + hold + down, now);
    }

    #[test]
    fn ntp_estimate_is_exact_for_symmetric_trips_and_bounded_otherwise() {
        let (a, b) = (health("a"), health("b"));
        exchange(&a, &b, 2000, 5, 5, 700);
        let s = a.lock().samples["b"][0];
        assert_eq!(s.offset_ms, 2000.0);
        assert_eq!(s.delay_ms, 10);
        let (a, b) = (health("a"), health("b"));
        exchange(&a, &b, -300, 2, 40, 100);
        let s = a.lock().samples["b"][0];
        assert!(
            (s.offset_ms - -300.0).abs() <= s.delay_ms as f64 / 2.0,
            "{s:?}"
        );
        assert_eq!(s.delay_ms, 42);
    }

    #[test]
    fn no_echo_no_sample() {
        let a = health("a");
        let stamp = Stamp {
            sent_ms: 5,
            echoes: BTreeMap::new(),
        };
        assert!(sample("a", &stamp, 10, Instant::now()).is_none());
        a.observe("b", &stamp, 10, Instant::now());
        assert!(!a.lock().samples.contains_key("b"));
        assert_eq!(
            a.stamp(11).echoes["b"],
            Echo {
                sent_ms: 5,
                received_ms: 10
            }
        );
    }

    #[test]
    fn median_is_robust_to_one_wrong_clock() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3.0, -1.0, 0.0]), Some(0.0));
        assert_eq!(median(&mut [0.0, 2000.0]), Some(1000.0));
    }

    /// Three nodes, `c` 2 s ahead: only `c` is unhealthy.
    #[test]
    fn the_skewed_node_of_three_alone_is_unhealthy() {
        let nodes = [health("a"), health("b"), health("c")];
        let clock = |n: &str| if n == "c" { 2000 } else { 0 };
        for _ in 0..2 {
            for x in &nodes {
                for y in &nodes {
                    if x.me != y.me {
                        exchange(x, y, clock(&y.me) - clock(&x.me), 3, 4, 200);
                    }
                }
            }
        }
        let now = Instant::now();
        for n in &nodes {
            let v = n.evaluate(["a", "b", "c"], now);
            if n.me == "c" {
                let p = v.problem.expect("c is unhealthy");
                assert!(
                    p.contains("+2000 ms") && p.contains("max_skew 500 ms"),
                    "{p}"
                );
                assert_eq!(v.offset, Some(SignedDuration::from_secs(2)));
            } else {
                assert!(v.ok(), "{}: {v:?}", n.me);
                assert_eq!(v.offset, Some(SignedDuration::ZERO));
            }
        }
    }

    #[test]
    fn a_joining_node_waits_for_its_first_sample_and_a_lone_node_does_not() {
        let a = health("a");
        assert!(!a.verdict().ok(), "unsynced view");
        assert!(a.evaluate(["a"], Instant::now()).ok(), "alone");
        let b = health("b");
        let v = b.evaluate(["a", "b"], Instant::now());
        assert!(v.problem.is_some_and(|p| p.contains("measuring")));
        // a, measured (alone) before, stays healthy while b is new.
        assert!(a.evaluate(["a", "b"], Instant::now()).ok());
        exchange(&b, &a, 100, 1, 1, 10);
        assert!(b.evaluate(["a", "b"], Instant::now()).ok());
    }

    #[test]
    fn uncertain_and_stale_samples_do_not_count() {
        let (a, b) = (health("a"), health("b"));
        // Round trip 600 ms: error bound 300 ms > max_skew / 2.
        exchange(&a, &b, 5000, 300, 300, 10);
        let v = a.evaluate(["a", "b"], Instant::now());
        assert!(v
            .problem
            .is_some_and(|p| p.contains("1 sample(s) too uncertain")));
        let (a, b) = (health("a"), health("b"));
        exchange(&a, &b, 5000, 1, 1, 10);
        let later = Instant::now() + AGE + Duration::from_secs(1);
        assert!(!a.evaluate(["a", "b"], Instant::now()).ok());
        assert!(
            a.evaluate(["a", "b"], later).ok(),
            "a stale sample is ignored"
        );
    }

    #[test]
    fn forgotten_peers_are_not_echoed() {
        let (a, b) = (health("a"), health("b"));
        exchange(&a, &b, 0, 1, 1, 1);
        assert!(a.stamp(0).echoes.contains_key("b"));
        a.forget("b");
        assert!(a.stamp(0).echoes.is_empty());
    }
}
