//! The shipper: one task that moves spooled writes to MongoDB in batches.
//!
//! Guarantees: entries are applied in spool order and removed from the
//! spool only after MongoDB acknowledged them (a crash in between replays
//! them, which the seq guard makes harmless); a failing server is retried
//! with backoff (100 ms doubling to 5 s) without losing or reordering
//! anything; each change between reachable and unreachable is logged once,
//! with its cause.

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::{apply, connect, ShipParts};

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Longest a batch (or the start-up ping and index creation) may take
/// before it counts as failed and is retried: a hung server is "down".
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often index creation is retried while it fails.
const INDEX_RETRY: Duration = Duration::from_secs(60);
/// Spool metrics are refreshed at least this often when idle.
const IDLE_TICK: Duration = Duration::from_secs(1);

/// Runs until `stop` turns true.
pub(super) async fn run(p: ShipParts, mut stop: watch::Receiver<bool>) {
    let mut ready = false;
    let mut backoff = BACKOFF_MIN;
    let mut down: Option<String> = None;
    let mut last_drops = (0u64, 0u64);
    let mut indexes = Indexes::default();
    loop {
        if *stop.borrow() {
            return;
        }
        if !ready {
            let r = tokio::time::timeout(CALL_TIMEOUT, connect::ping(&p.db))
                .await
                .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))
                .and_then(|r| r);
            match r {
                Ok(()) => {
                    ready = true;
                    p.metrics.run_store_up.set(1);
                    down = None;
                    indexes.due = Some(Instant::now());
                }
                Err(e) => {
                    p.metrics.ship_errors.inc();
                    refresh_spool_metrics(&p, &mut last_drops).await;
                    report_down(&p, &mut down, e);
                    if wait(&mut stop, &p, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    continue;
                }
            }
        }
        indexes.ensure(&p).await;
        let entries = match p.spool.spool_peek(p.batch).await {
            Ok(e) => e,
            Err(e) => {
                error!("cannot read the spool: {e}");
                if wait(&mut stop, &p, BACKOFF_MAX).await {
                    return;
                }
                continue;
            }
        };
        refresh_spool_metrics(&p, &mut last_drops).await;
        if entries.is_empty() {
            if wait(&mut stop, &p, IDLE_TICK).await {
                return;
            }
            continue;
        }
        let t0 = Instant::now();
        let applied =
            tokio::time::timeout(CALL_TIMEOUT, apply::apply_batch(&p.db, &entries, p.max_age))
                .await
                .unwrap_or_else(|_| {
                    Err(apply::ShipError(format!(
                        "no answer within {CALL_TIMEOUT:?}"
                    )))
                });
        match applied {
            Ok(done) => {
                let positions = entries.iter().map(|e| e.pos).collect();
                if let Err(e) = p.spool.spool_ack(positions).await {
                    error!("cannot remove shipped entries from the spool: {e}");
                }
                p.metrics.ship_latency.observe(t0.elapsed().as_secs_f64());
                p.metrics.shipped.inc_by(done.applied);
                p.metrics.run_store_up.set(1);
                for id in &done.reappeared {
                    p.metrics.lost_reappeared.inc();
                    warn!(run = %id, "lost run reappeared: a run recorded lost finished after all");
                }
                if down.take().is_some() {
                    info!(target_store = %p.target, "MongoDB is reachable again; shipping the spool");
                }
                backoff = BACKOFF_MIN;
            }
            Err(e) => {
                p.metrics.ship_errors.inc();
                report_down(&p, &mut down, e.to_string());
                if wait(&mut stop, &p, backoff).await {
                    return;
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Index creation: done once the server first answers, retried every
/// [`INDEX_RETRY`] while it fails. Shipping does not wait for it (records
/// are correct without the secondary indexes, only slower to search).
#[derive(Default)]
struct Indexes {
    due: Option<Instant>,
    failed: Option<String>,
}

impl Indexes {
    async fn ensure(&mut self, p: &ShipParts) {
        if self.due.is_none_or(|d| Instant::now() < d) {
            return;
        }
        let r = tokio::time::timeout(CALL_TIMEOUT, connect::ensure_indexes(&p.db))
            .await
            .map_err(|_| format!("no answer within {CALL_TIMEOUT:?}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        match r {
            Ok(()) => {
                self.due = None;
                self.failed = None;
                info!(target_store = %p.target, "MongoDB run store ready (indexes in place)");
            }
            Err(e) => {
                if self.failed.as_deref() != Some(e.as_str()) {
                    warn!(
                        target_store = %p.target,
                        "cannot create the run store's indexes: {e}; records are shipped \
                         anyway (searches may be slow); retrying every {INDEX_RETRY:?}"
                    );
                }
                self.failed = Some(e);
                self.due = Some(Instant::now() + INDEX_RETRY);
            }
        }
    }
}

fn report_down(p: &ShipParts, down: &mut Option<String>, cause: String) {
    p.metrics.run_store_up.set(0);
    if down.as_deref() != Some(cause.as_str()) {
        error!(
            target_store = %p.target,
            "MongoDB run store unavailable: {cause}; runs go on and their records wait \
             in the spool until it answers"
        );
        *down = Some(cause);
    }
}

async fn refresh_spool_metrics(p: &ShipParts, last_drops: &mut (u64, u64)) {
    match p.spool.spool_stats().await {
        Ok(s) => {
            p.metrics
                .spool_depth
                .set(i64::try_from(s.rows).unwrap_or(i64::MAX));
            p.metrics
                .spool_bytes
                .set(i64::try_from(s.bytes).unwrap_or(i64::MAX));
            let output = s.dropped_output.saturating_sub(last_drops.0);
            let success = s.dropped_success_all.saturating_sub(last_drops.1);
            p.metrics
                .count_spool_drops(crate::store::sqlite::spool::DROP_OUTPUT, output);
            p.metrics
                .count_spool_drops(crate::store::sqlite::spool::DROP_SUCCESS_ALL, success);
            if output + success > 0 && *last_drops != (0, 0) {
                warn!(
                    output_shed = output,
                    records_dropped = success,
                    "the spool is full: shed output of old records and successful `all` records"
                );
            }
            *last_drops = (s.dropped_output, s.dropped_success_all);
        }
        Err(e) => error!("cannot read the spool's size: {e}"),
    }
}

/// Waits `d` or the stop signal, and while idle (`d` is [`IDLE_TICK`]) also
/// a new write; returns whether to stop.
async fn wait(stop: &mut watch::Receiver<bool>, p: &ShipParts, d: Duration) -> bool {
    let idle = d == IDLE_TICK;
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = p.wake.notified(), if idle => false,
        r = stop.wait_for(|s| *s) => { let _ = r; true }
    }
}
