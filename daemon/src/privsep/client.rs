//! The agent's side of the socketpair: [`ExecClient`] offers the
//! executor's methods (synchronous, as the scheduler expects) by sending
//! requests and waiting for their replies; one reader thread routes
//! replies to their callers and run events to the scheduler (or, for runs a
//! previous agent started, to [`super::adopt`]).
//!
//! Guarantees: a reply goes to the request with its id; a lost executor
//! ends the agent (exit 70), since nothing can run without it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::wire::{read_frame, write_frame, Reply, Request, WireError};
use crate::exec::{ExecEvent, KillReason, LeftoverRun, RunSpec, SpawnError, Started, Usage};

/// How long a request waits for its reply before it is given up.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Exit status of an agent whose executor is gone (EX_SOFTWARE).
const EXIT_EXECUTOR_LOST: i32 = 70;

#[derive(Clone)]
pub struct ExecClient {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<UnixStream>,
    next_id: AtomicU64,
    waiting: Mutex<HashMap<u64, std_mpsc::Sender<Reply>>>,
    live: Mutex<BTreeSet<String>>,
    uses_cgroups: bool,
}

/// Runs the executor was already supervising when this agent connected
/// (started by a previous agent), and their finished events.
pub struct Adopted {
    pub keys: HashSet<String>,
    pub events: UnboundedReceiver<ExecEvent>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl ExecClient {
    /// Greets the executor on `fd` and starts the reader thread; events of
    /// runs this agent starts go to `events`.
    pub fn connect(
        fd: OwnedFd,
        events: UnboundedSender<ExecEvent>,
    ) -> std::io::Result<(ExecClient, Adopted)> {
        let mut stream = UnixStream::from(fd);
        let io = |e: WireError| std::io::Error::other(format!("executor link: {e}"));
        write_frame(&mut stream, &Request::Hello).map_err(io)?;
        let (running, uses_cgroups) = match read_frame::<Reply>(&mut stream).map_err(io)? {
            Reply::Welcome {
                running,
                uses_cgroups,
            } => (running, uses_cgroups),
            other => {
                return Err(std::io::Error::other(format!(
                    "executor link: expected Welcome, got {other:?}"
                )))
            }
        };
        let keys: HashSet<String> = running.iter().cloned().collect();
        let inner = Arc::new(Inner {
            writer: Mutex::new(stream.try_clone()?),
            next_id: AtomicU64::new(1),
            waiting: Mutex::new(HashMap::new()),
            live: Mutex::new(running.into_iter().collect()),
            uses_cgroups,
        });
        let (adopted_tx, adopted_rx) = unbounded_channel();
        let reader_inner = inner.clone();
        let adopted_keys = keys.clone();
        std::thread::Builder::new()
            .name("executor link".into())
            .spawn(move || read_loop(stream, &reader_inner, &adopted_keys, &events, &adopted_tx))?;
        Ok((
            ExecClient { inner },
            Adopted {
                keys,
                events: adopted_rx,
            },
        ))
    }

    fn ask(&self, make: impl FnOnce(u64) -> Request) -> Option<Reply> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std_mpsc::channel();
        guard(&self.inner.waiting).insert(id, tx);
        let sent = write_frame(&mut *guard(&self.inner.writer), &make(id));
        if let Err(e) = sent {
            guard(&self.inner.waiting).remove(&id);
            tracing::error!("cannot reach the executor: {e}");
            return None;
        }
        let r = rx.recv_timeout(REPLY_TIMEOUT).ok();
        guard(&self.inner.waiting).remove(&id);
        r
    }

    pub fn uses_cgroups(&self) -> bool {
        self.inner.uses_cgroups
    }

    pub fn spawn(&self, spec: RunSpec) -> Result<Started, SpawnError> {
        let key = spec.key.clone();
        match self.ask(|id| Request::Spawn { id, spec }) {
            Some(Reply::Spawned { result, .. }) => {
                if result.is_ok() {
                    guard(&self.inner.live).insert(key);
                }
                result
            }
            _ => Err(SpawnError::Failed(
                "the executor did not answer the spawn request".into(),
            )),
        }
    }

    pub fn kill(&self, key: &str, reason: KillReason) -> bool {
        let key = key.to_string();
        matches!(
            self.ask(|id| Request::Kill { id, key, reason }),
            Some(Reply::Killed { found: true, .. })
        )
    }

    pub fn usage(&self, key: &str) -> Option<Usage> {
        let key = key.to_string();
        match self.ask(|id| Request::Usage { id, key }) {
            Some(Reply::Usage { usage, .. }) => usage,
            _ => None,
        }
    }

    pub fn running(&self) -> Vec<String> {
        guard(&self.inner.live).iter().cloned().collect()
    }

    pub fn recover_leftovers(&self) -> Vec<LeftoverRun> {
        match self.ask(|id| Request::Recover { id }) {
            Some(Reply::Recovered { leftovers, .. }) => leftovers,
            _ => Vec::new(),
        }
    }

    /// Forwards systemd notification lines through the executor.
    pub fn notify(&self, lines: String) {
        let _ = write_frame(&mut *guard(&self.inner.writer), &Request::Notify { lines });
    }
}

fn read_loop(
    mut stream: UnixStream,
    inner: &Inner,
    adopted: &HashSet<String>,
    events: &UnboundedSender<ExecEvent>,
    adopted_tx: &UnboundedSender<ExecEvent>,
) {
    loop {
        let reply = match read_frame::<Reply>(&mut stream) {
            Ok(r) => r,
            Err(WireError::Malformed(why)) => {
                tracing::error!("malformed frame from the executor: {why}");
                continue;
            }
            Err(e) => {
                tracing::error!("the executor is gone ({e}); the agent exits");
                std::process::exit(EXIT_EXECUTOR_LOST);
            }
        };
        let id = match &reply {
            Reply::Event(ev) => {
                let ExecEvent::Finished { key, .. } = ev;
                guard(&inner.live).remove(key);
                let to = if adopted.contains(key) {
                    adopted_tx
                } else {
                    events
                };
                let _ = to.send(ev.clone());
                continue;
            }
            Reply::Refused { reason } => {
                tracing::error!("the executor refused a request: {reason}");
                continue;
            }
            Reply::Welcome { .. } => continue,
            Reply::Spawned { id, .. }
            | Reply::Killed { id, .. }
            | Reply::Usage { id, .. }
            | Reply::Recovered { id, .. } => *id,
        };
        if let Some(tx) = guard(&inner.waiting).remove(&id) {
            let _ = tx.send(reply);
        }
    }
}
