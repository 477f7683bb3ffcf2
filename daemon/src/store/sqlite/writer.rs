//! The single writer: one thread owns the write connection and applies
//! requests from a channel with group commit.
//!
//! Guarantees: requests are applied in the order they were sent; every request
//! queued when the thread wakes goes into one transaction, each inside its own
//! savepoint (a failing request is rolled back alone); replies and job events
//! are sent only after the transaction committed (and, with
//! `synchronous = FULL`, is on disk). Events go out in commit order, before
//! the replies of the same batch.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::store::{JobEvent, Result, StoreError};

/// Most requests folded into one transaction.
const MAX_BATCH: usize = 1024;
/// Requests waiting for the writer before senders wait (backpressure).
const QUEUE: usize = 4096;

/// What a write request returns when applied: its answer, and the job
/// events to publish once committed.
pub(super) type Applied<T> = (T, Vec<JobEvent>);

trait WriteOp: Send {
    /// Runs inside the batch's transaction; returns whether it succeeded.
    fn apply(&mut self, conn: &Connection, events: &mut Vec<JobEvent>) -> bool;
    /// Sends the answer; `commit` is the outcome of the whole batch.
    fn finish(self: Box<Self>, commit: &std::result::Result<(), String>);
}

struct Op<T, F> {
    f: Option<F>,
    out: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> WriteOp for Op<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<Applied<T>> + Send,
{
    fn apply(&mut self, conn: &Connection, events: &mut Vec<JobEvent>) -> bool {
        let Some(f) = self.f.take() else {
            return false;
        };
        let out = f(conn).map(|(v, ev)| {
            events.extend(ev);
            v
        });
        let ok = out.is_ok();
        self.out = Some(out);
        ok
    }

    fn finish(self: Box<Self>, commit: &std::result::Result<(), String>) {
        let out = match (commit, self.out) {
            (Err(e), _) => Err(StoreError::Backend(e.clone())),
            (Ok(()), Some(out)) => out,
            (Ok(()), None) => Err(StoreError::Backend("write was never applied".into())),
        };
        // The caller may have gone away; the write stands regardless.
        let _ = self.reply.send(out);
    }
}

/// Handle to the writer thread. Dropping it lets the thread finish the queue
/// and close the connection.
pub(super) struct Writer {
    tx: mpsc::Sender<Box<dyn WriteOp>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(
        conn: Connection,
        path: &Path,
        events: broadcast::Sender<JobEvent>,
    ) -> Result<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(conn, rx, events, path))
            .map_err(|e| {
                StoreError::Backend(format!("cannot start the store writer thread: {e}"))
            })?;
        Ok(Writer {
            tx,
            thread: Some(thread),
        })
    }

    /// Applies `f` in the next group transaction and returns its answer once
    /// committed.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<Applied<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Box<dyn WriteOp> = Box::new(Op {
            f: Some(f),
            out: None,
            reply,
        });
        self.tx
            .send(op)
            .await
            .map_err(|_| StoreError::Backend("the store writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Backend("the store writer stopped before answering".into()))?
    }

    /// Stops accepting writes and waits until everything queued is committed
    /// and the connection closed. Blocking: call from `spawn_blocking`.
    pub(super) fn close_blocking(mut self) {
        let thread = self.thread.take();
        drop(self);
        if let Some(t) = thread {
            if t.join().is_err() {
                tracing::error!("the store writer thread panicked");
            }
        }
    }
}

fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Box<dyn WriteOp>>,
    events: broadcast::Sender<JobEvent>,
    path: PathBuf,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let mut pending = Vec::new();
        let commit = apply_batch(&mut conn, &mut batch, &mut pending).map_err(|e| {
            let msg = format!("store {}: {e}", path.display());
            tracing::error!("{msg}");
            msg
        });
        if commit.is_ok() {
            for ev in pending {
                // No subscriber is fine.
                let _ = events.send(ev);
            }
        }
        for op in batch {
            op.finish(&commit);
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize;") {
        tracing::warn!("store {}: optimize at close failed: {e}", path.display());
    }
    if let Err((_, e)) = conn.close() {
        tracing::warn!("store {}: close failed: {e}", path.display());
    }
}

fn apply_batch(
    conn: &mut Connection,
    batch: &mut [Box<dyn WriteOp>],
    events: &mut Vec<JobEvent>,
) -> std::result::Result<(), String> {
    let mut tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| format!("begin transaction: {e}"))?;
    for op in batch.iter_mut() {
        let sp = tx
            .savepoint()
            .map_err(|e| format!("begin savepoint: {e}"))?;
        if op.apply(&sp, events) {
            sp.commit().map_err(|e| format!("release savepoint: {e}"))?;
        }
        // A failed request's savepoint rolls back when dropped.
    }
    tx.commit().map_err(|e| {
        events.clear();
        format!("commit: {e}")
    })
}
