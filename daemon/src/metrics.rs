//! Prometheus metrics (`/metrics`). Labels are bounded (status, reason):
//! never per job, so cardinality stays fixed at 10,000 jobs (DESIGN §7).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::store::etcd::clock_health::ClockGauges;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    pub direction: String,
}

/// All metrics of one daemon; cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub runs: Family<StatusLabel, Counter>,
    /// Scheduled instant → process started, seconds.
    pub fire_latency: Histogram,
    pub running: Gauge,
    pub jobs: Gauge,
    /// How far behind its wake time the scheduler processed due jobs, seconds.
    pub scheduler_lag: Gauge<f64, AtomicU64>,
    pub clock_steps: Family<DirectionLabel, Counter>,
    pub store_errors: Counter,
    /// Run-record writes waiting in the spool, and their bytes (MongoDB mode).
    pub spool_depth: Gauge,
    pub spool_bytes: Gauge,
    /// Spool → MongoDB batch latency, seconds.
    pub ship_latency: Histogram,
    pub ship_errors: Counter,
    /// Writes that created or advanced a record in MongoDB.
    pub shipped: Counter,
    /// What the full spool shed, by reason (`output`, `success_all`).
    pub spool_drops: Family<ReasonLabel, Counter>,
    /// 1 while the MongoDB run store answers, 0 while it does not.
    pub run_store_up: Gauge,
    pub lost_reappeared: Counter,
    /// Claim asked → answered (including the first records' durable
    /// writes), seconds; one observation per chunk of claims asked together.
    pub claim_latency: Histogram,
    /// Claims answered only after their instant (the run started late).
    pub claims_late: Counter,
    clock: ClockGauges,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("cronsun");
        let runs = Family::<StatusLabel, Counter>::default();
        registry.register("runs", "Finished run attempts by status", runs.clone());
        let fire_latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "fire_latency_seconds",
            "Delay from a run's scheduled instant to its process start",
            fire_latency.clone(),
        );
        let running = Gauge::default();
        registry.register(
            "running_runs",
            "Runs in progress on this node",
            running.clone(),
        );
        let jobs = Gauge::default();
        registry.register("jobs_loaded", "Jobs known to the scheduler", jobs.clone());
        let scheduler_lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "scheduler_lag_seconds",
            "How late the scheduler handled its last due wake-up",
            scheduler_lag.clone(),
        );
        let clock_steps = Family::<DirectionLabel, Counter>::default();
        registry.register(
            "clock_steps",
            "Wall-clock steps detected against the monotonic clock",
            clock_steps.clone(),
        );
        let store_errors = Counter::default();
        registry.register(
            "store_errors",
            "Failed store operations",
            store_errors.clone(),
        );
        let spool_depth = Gauge::default();
        registry.register(
            "spool_records",
            "Run-record writes waiting in the spool for MongoDB",
            spool_depth.clone(),
        );
        let spool_bytes = Gauge::default();
        registry.register(
            "spool_bytes",
            "Bytes of run-record writes waiting in the spool",
            spool_bytes.clone(),
        );
        let ship_latency = Histogram::new(exponential_buckets(0.000_5, 2.0, 16));
        registry.register(
            "ship_latency_seconds",
            "Time to apply one spooled batch to MongoDB",
            ship_latency.clone(),
        );
        let ship_errors = Counter::default();
        registry.register(
            "ship_errors",
            "Spooled batches MongoDB failed to take (retried)",
            ship_errors.clone(),
        );
        let shipped = Counter::default();
        registry.register(
            "shipped_records",
            "Run-record writes applied to MongoDB",
            shipped.clone(),
        );
        let spool_drops = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "spool_drops",
            "What the full spool shed, by reason",
            spool_drops.clone(),
        );
        let run_store_up = Gauge::default();
        registry.register(
            "run_store_up",
            "1 while the MongoDB run store answers",
            run_store_up.clone(),
        );
        let lost_reappeared = Counter::default();
        registry.register(
            "lost_runs_reappeared",
            "Runs recorded lost that later reported a result",
            lost_reappeared.clone(),
        );
        let claim_latency = Histogram::new(exponential_buckets(0.000_1, 2.0, 18));
        registry.register(
            "claim_latency_seconds",
            "Time to claim a chunk of instants (up to 40, asked together) in the coordination store, first records durable",
            claim_latency.clone(),
        );
        let claims_late = Counter::default();
        registry.register(
            "claims_late",
            "Claims answered after their instant, so the run started late",
            claims_late.clone(),
        );
        let clock = ClockGauges::default();
        // Standalone nodes have no gate; cluster mode sets it at each refresh.
        clock.healthy.set(1);
        registry.register(
            "clock_offset_seconds",
            "This node's clock minus the median of the cluster's clocks (cluster mode)",
            clock.offset.clone(),
        );
        registry.register(
            "clock_healthy",
            "0 while cluster mode keeps this node out of the `one` claim ranking for its clock",
            clock.healthy.clone(),
        );
        Metrics {
            clock,
            registry: Arc::new(registry),
            claim_latency,
            claims_late,
            spool_depth,
            spool_bytes,
            ship_latency,
            ship_errors,
            shipped,
            spool_drops,
            run_store_up,
            lost_reappeared,
            runs,
            fire_latency,
            running,
            jobs,
            scheduler_lag,
            clock_steps,
            store_errors,
        }
    }

    /// The clock-health gauges, kept by the cluster membership.
    pub fn clock_gauges(&self) -> ClockGauges {
        self.clock.clone()
    }

    pub fn count_run(&self, status: cronsun_proto::RunStatus) {
        self.runs
            .get_or_create(&StatusLabel {
                status: status.as_str().to_string(),
            })
            .inc();
    }

    pub fn count_spool_drops(&self, reason: &str, n: u64) {
        if n > 0 {
            self.spool_drops
                .get_or_create(&ReasonLabel {
                    reason: reason.to_string(),
                })
                .inc_by(n);
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
