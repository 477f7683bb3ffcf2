//! A small pool of read-only connections used from `spawn_blocking`.
//!
//! WAL mode lets readers run beside the writer; each read sees the last
//! transaction committed before it started, so a read issued after a write
//! returned sees that write.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use super::schema;
use crate::store::{Result, StoreError};

pub(super) struct ReadPool {
    path: PathBuf,
    idle: Arc<Mutex<Vec<Connection>>>,
    permits: Arc<Semaphore>,
}

impl ReadPool {
    pub(super) fn new(path: PathBuf, size: usize) -> ReadPool {
        ReadPool {
            path,
            idle: Arc::new(Mutex::new(Vec::with_capacity(size))),
            permits: Arc::new(Semaphore::new(size)),
        }
    }

    /// Runs `f` on a pooled connection on the blocking thread pool.
    pub(super) async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Backend("the store reader pool is closed".into()))?;
        let idle = Arc::clone(&self.idle);
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let pooled = idle.lock().ok().and_then(|mut v| v.pop());
            let conn = match pooled {
                Some(c) => c,
                None => schema::open_reader(&path)?,
            };
            let out = f(&conn);
            if let Ok(mut v) = idle.lock() {
                v.push(conn);
            }
            out
        })
        .await
        .map_err(|e| StoreError::Backend(format!("store read task failed: {e}")))?
    }
}
