//! Follows a key or prefix: a full read, then a watch from the read's
//! revision; a broken watch (compaction, etcd restart, leader loss) starts
//! over with a full read. Consumers get [`Feed::Snapshot`] (the whole set
//! as of a revision) or [`Feed::Events`] (changes after it), in order, so
//! no change is missed and none is applied twice out of order.

use std::time::Duration;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::client::Etcd;

/// Backoff between attempts after an error (doubles up to the max).
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(2);

/// One change seen by the watch.
#[derive(Debug)]
pub enum Change {
    Put(KeyValue),
    Deleted(Vec<u8>),
}

#[derive(Debug)]
pub enum Feed {
    /// Every key present at `revision` (replaces what the consumer had).
    Snapshot { kvs: Vec<KeyValue>, revision: i64 },
    /// Changes of one watch response, in revision order.
    Events { changes: Vec<Change>, revision: i64 },
}

/// Runs until `stop` turns true or the consumer is gone.
pub async fn follow(
    etcd: Etcd,
    key: String,
    prefix: bool,
    out: mpsc::Sender<Feed>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let round = follow_once(&etcd, &key, prefix, &out);
        let r = tokio::select! {
            r = round => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match r {
            Ok(()) => return, // consumer gone
            Err(e) => {
                warn!(key = %key, "etcd watch broken, re-reading: {e}");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
        if out.is_closed() {
            return;
        }
    }
}

/// One read + watch; `Ok` only when the consumer went away.
async fn follow_once(
    etcd: &Etcd,
    key: &str,
    prefix: bool,
    out: &mpsc::Sender<Feed>,
) -> Result<(), String> {
    let mut kv = etcd.client.kv_client();
    let opts = prefix.then(|| GetOptions::new().with_prefix());
    let mut resp = etcd
        .call("read", kv.get(key, opts))
        .await
        .map_err(|e| e.to_string())?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let kvs = resp.take_kvs();
    if out.send(Feed::Snapshot { kvs, revision }).await.is_err() {
        return Ok(());
    }
    let mut wopts = WatchOptions::new()
        .with_start_revision(revision + 1)
        .with_progress_notify();
    if prefix {
        wopts = wopts.with_prefix();
    }
    let mut wc = etcd.client.watch_client();
    let mut stream = etcd
        .call("watch", wc.watch(key, Some(wopts)))
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let msg = stream
            .message()
            .await
            .map_err(|e| format!("watch {key}: {e}"))?;
        let Some(resp) = msg else {
            return Err(format!("watch {key}: the stream ended"));
        };
        if resp.canceled() || resp.compact_revision() != 0 {
            return Err(format!(
                "watch {key} cancelled (compacted at {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            ));
        }
        if resp.events().is_empty() {
            continue; // created / progress notification
        }
        let revision = resp.header().map_or(0, |h| h.revision());
        let changes: Vec<Change> = resp
            .events()
            .iter()
            .filter_map(|ev| {
                let kv = ev.kv()?.clone();
                Some(match ev.event_type() {
                    EventType::Put => Change::Put(kv),
                    EventType::Delete => Change::Deleted(kv.key().to_vec()),
                })
            })
            .collect();
        debug!(key = %key, n = changes.len(), revision, "etcd changes");
        if out.send(Feed::Events { changes, revision }).await.is_err() {
            return Ok(());
        }
    }
}
