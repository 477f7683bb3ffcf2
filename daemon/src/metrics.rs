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
        Metrics {
            registry: Arc::new(registry),
            runs,
            fire_latency,
            running,
            jobs,
            scheduler_lag,
            clock_steps,
            store_errors,
        }
    }

    pub fn count_run(&self, status: cronsun_proto::RunStatus) {
        self.runs
            .get_or_create(&StatusLabel {
                status: status.as_str().to_string(),
            })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
