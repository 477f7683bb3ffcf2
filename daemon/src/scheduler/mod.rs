//! The scheduler: decides which instants run, claims them, hands them to the
//! launcher, and turns executor outcomes into durable run records.
//!
//! Guarantees (DESIGN §2, §3):
//! - every instant of a live job is decided exactly once through the store's
//!   per-job watermark: started (claim + `running` record in one
//!   transaction), `skipped` (concurrency), or `missed` (not startable by its
//!   start deadline), so a restart knows exactly which instants were missed;
//! - a backward clock step never re-fires a decided instant; a forward step
//!   beyond the tolerance counts as downtime (the `missed` policy applies);
//! - the terminal record is durable before the run is reported finished;
//! - paused time (job or global) is never counted as missed.
//!
//! All time is read through [`Clock`]; one task owns all state, so there is
//! no locking on the scheduling path.

mod cluster;
mod launcher;
mod plan;
pub mod records;
#[cfg(test)]
mod tests;
mod timeline;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use cronsun_proto::job::{Concurrency, JobKind, OnLost};
use cronsun_proto::run::{RunRecord, RunStatus, Trigger};
use cronsun_proto::schedule::JobSchedule;
use cronsun_proto::{ids, Job};
use futures::stream::{FuturesUnordered, StreamExt};
use jiff::{SignedDuration, Timestamp};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tracing::{debug, error, info, warn};

use crate::clock::Clock;
use crate::exec::{ExecEvent, Executor, KillReason, RunSpec, SpawnError};
use crate::faults;
use crate::metrics::{DirectionLabel, Metrics};
use crate::store::{ClaimOutcome, ClaimRequest, CoordStore, Expect, JobEvent, RunStore};

pub use cluster::ClusterView;
pub use launcher::{Launch, Launched, Launcher};
pub use plan::{default_start_deadline, plan, DuePlan, PlanInput};
pub use records::NodeIdentity;

/// Scheduler settings from config `[scheduler]`.
#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    pub lead: Duration,
    pub drain_timeout: Duration,
    pub step_tolerance: Duration,
    pub max_concurrent: u32,
    pub state_dir: std::path::PathBuf,
}

/// Requests from the API.
pub enum Command {
    RunNow {
        job_id: String,
        /// Cluster run-now requests name the run; `None`: a local request.
        requested: Option<Requested>,
        reply: oneshot::Sender<Result<String, RequestError>>,
    },
    Kill {
        id: String,
        reply: oneshot::Sender<Result<(), RequestError>>,
    },
    SetGlobalPause {
        paused: bool,
        reply: oneshot::Sender<()>,
    },
    /// A run recorded `lost` elsewhere (the leader, for a node that died
    /// for good): retried here if its job says `on_lost = "retry"`.
    AdoptLost { record: Box<RunRecord> },
    /// New limits from a config reload (SIGHUP).
    SetLimits {
        limits: Limits,
        reply: oneshot::Sender<()>,
    },
}

/// A manual run asked for through the cluster (`once/<request>`): its run
/// id is fixed by the request, so a replayed request never starts twice
/// (the `running` write of an existing record does not apply).
#[derive(Clone, Debug)]
pub struct Requested {
    pub run_id: String,
    /// The job's revision when the run was asked for; an older local copy
    /// is re-read first.
    pub job_revision: u64,
    /// When it was asked for (the record's `scheduled_at`, so a late start
    /// shows).
    pub at: Timestamp,
    /// `one` jobs: the revision of the claim transaction (`CRONSUN_FENCE`).
    pub fence: Option<u64>,
}

/// The `[scheduler]` settings that a reload changes in place; `lead` and
/// the state dir need a restart (timers already set use the old lead).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub drain_timeout: Duration,
    pub step_tolerance: Duration,
    pub max_concurrent: u32,
}

/// Why a request from the API was refused.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
}

/// State the API reads without asking the scheduler task.
pub struct Shared {
    next_runs: RwLock<HashMap<String, Timestamp>>,
    active: RwLock<HashMap<String, RunRecord>>,
    finished: broadcast::Sender<Arc<RunRecord>>,
}

/// The API's handle on the scheduler.
#[derive(Clone)]
pub struct SchedulerHandle {
    cmd: mpsc::Sender<Command>,
    shared: Arc<Shared>,
}

impl SchedulerHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, RequestError> {
        let (tx, rx) = oneshot::channel();
        self.cmd
            .send(make(tx))
            .await
            .map_err(|_| RequestError::Unavailable("the scheduler is shutting down".into()))?;
        rx.await
            .map_err(|_| RequestError::Unavailable("the scheduler is shutting down".into()))
    }

    /// Starts a manual run now; returns its run id.
    pub async fn run_now(&self, job_id: &str) -> Result<String, RequestError> {
        let job_id = job_id.to_string();
        self.ask(|reply| Command::RunNow {
            job_id,
            requested: None,
            reply,
        })
        .await?
    }

    /// Starts the run a cluster run-now request names (or records it
    /// `skipped` with the reason, e.g. `concurrency = "forbid"`).
    pub async fn run_requested(&self, job_id: &str, r: Requested) -> Result<String, RequestError> {
        let job_id = job_id.to_string();
        self.ask(|reply| Command::RunNow {
            job_id,
            requested: Some(r),
            reply,
        })
        .await?
    }

    /// Kills a running run by record id or run id.
    pub async fn kill(&self, id: &str) -> Result<(), RequestError> {
        let id = id.to_string();
        self.ask(|reply| Command::Kill { id, reply }).await?
    }

    pub async fn set_global_pause(&self, paused: bool) -> Result<(), RequestError> {
        self.ask(|reply| Command::SetGlobalPause { paused, reply })
            .await
    }

    /// Applies reloaded limits; returns once the scheduler uses them.
    /// Hands over a run recorded `lost` for a dead node (no answer awaited).
    pub async fn adopt_lost(&self, record: RunRecord) {
        let _ = self
            .cmd
            .send(Command::AdoptLost {
                record: Box::new(record),
            })
            .await;
    }

    pub async fn set_limits(&self, limits: Limits) -> Result<(), RequestError> {
        self.ask(|reply| Command::SetLimits { limits, reply }).await
    }

    pub fn next_run(&self, job_id: &str) -> Option<Timestamp> {
        read(&self.shared.next_runs).get(job_id).copied()
    }

    /// Running attempts of a job on this node.
    pub fn running_count(&self, job_id: &str) -> u32 {
        let n = read(&self.shared.active)
            .values()
            .filter(|r| r.job_id == job_id)
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    pub fn running_total(&self) -> u32 {
        u32::try_from(read(&self.shared.active).len()).unwrap_or(u32::MAX)
    }

    /// The in-memory view of a running attempt (fresher than the store's `running` record).
    pub fn active(&self, record_id: &str) -> Option<RunRecord> {
        read(&self.shared.active).get(record_id).cloned()
    }

    /// Finished records, as soon as they are durable.
    pub fn subscribe_finished(&self) -> broadcast::Receiver<Arc<RunRecord>> {
        self.shared.finished.subscribe()
    }
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

struct JobSlot {
    job: Arc<Job>,
    schedule: JobSchedule,
    /// Every instant at or before this one is decided.
    cursor: Timestamp,
    start_deadline: Duration,
}

struct Active {
    job: Arc<Job>,
    record: RunRecord,
    /// A kill asked for before the executor had the process (it is sent on start).
    kill_pending: Option<KillReason>,
    /// Runs this one replaces; it starts when they have all ended.
    waiting_on: Vec<String>,
}

/// Claims asked of the store together (one etcd transaction in cluster mode).
const CLAIM_CHUNK: usize = 40;

/// An instant of a busy second ready to claim: the job, the instant, how it
/// may start and its first record.
type Due = (Arc<Job>, Timestamp, Admission, RunRecord);

/// Everything the scheduler task needs.
pub struct Parts {
    pub cfg: SchedulerConfig,
    pub clock: Clock,
    pub node: NodeIdentity,
    pub coord: Arc<dyn CoordStore>,
    pub runs: Arc<dyn RunStore>,
    pub exec: Executor,
    pub exec_events: mpsc::UnboundedReceiver<ExecEvent>,
    /// Runs a previous agent started that the executor still reports (privsep).
    pub adopted: std::collections::HashSet<String>,
    pub metrics: Metrics,
    /// Cluster mode: claim ranking and self-fencing of `one` jobs.
    pub cluster: Option<Arc<dyn ClusterView>>,
}

pub struct Scheduler {
    cfg: SchedulerConfig,
    clock: Clock,
    node: NodeIdentity,
    coord: Arc<dyn CoordStore>,
    runs: Arc<dyn RunStore>,
    exec: Executor,
    launcher: Launcher,
    metrics: Metrics,
    jobs: HashMap<String, JobSlot>,
    timeline: Timeline,
    retries: BinaryHeap<Reverse<(Timestamp, String)>>,
    pending_retries: HashMap<String, (Arc<Job>, RunRecord)>,
    active: HashMap<String, Active>,
    global_paused: bool,
    shared: Arc<Shared>,
    last_tick: (Timestamp, Duration),
    exec_events: mpsc::UnboundedReceiver<ExecEvent>,
    launched: mpsc::UnboundedReceiver<Launched>,
    launched_tx: mpsc::UnboundedSender<Launched>,
    recorded: mpsc::UnboundedReceiver<Recorded>,
    recorded_tx: mpsc::UnboundedSender<Recorded>,
    /// Terminal writes in flight.
    recording: usize,
    commands: mpsc::Receiver<Command>,
    job_events: broadcast::Receiver<JobEvent>,
    cluster: Option<Arc<dyn ClusterView>>,
    /// Fence epochs of the cluster view (never changes in standalone mode).
    fences: watch::Receiver<u64>,
}

use timeline::Timeline;

impl Scheduler {
    /// Builds the scheduler: marks runs a previous daemon left `running` as
    /// `lost`, loads jobs and watermarks. Call [`Scheduler::run`] next.
    pub async fn new(p: Parts) -> anyhow::Result<(Scheduler, SchedulerHandle)> {
        let (launched_tx, launched) = mpsc::unbounded_channel();
        let launcher = Launcher::start(p.exec.clone(), launched_tx.clone(), p.clock.is_system())?;
        let (cmd_tx, commands) = mpsc::channel(256);
        let (recorded_tx, recorded) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            next_runs: RwLock::new(HashMap::new()),
            active: RwLock::new(HashMap::new()),
            finished: broadcast::channel(1024).0,
        });
        let job_events = p.coord.subscribe();
        let fences = p
            .cluster
            .as_ref()
            .map_or_else(|| watch::channel(0).1, |c| c.fences());
        let p_adopted = p.adopted;
        let now = p.clock.now();
        let mono = p.clock.monotonic();
        let mut s = Scheduler {
            global_paused: p.coord.global_pause().await?.paused,
            cfg: p.cfg,
            clock: p.clock,
            node: p.node,
            coord: p.coord,
            runs: p.runs,
            exec: p.exec,
            launcher,
            metrics: p.metrics,
            jobs: HashMap::new(),
            timeline: Timeline::default(),
            retries: BinaryHeap::new(),
            pending_retries: HashMap::new(),
            active: HashMap::new(),
            shared: shared.clone(),
            last_tick: (now, mono),
            exec_events: p.exec_events,
            launched,
            launched_tx,
            recorded,
            recorded_tx,
            recording: 0,
            commands,
            job_events,
            cluster: p.cluster,
            fences,
        };
        s.resync().await?;
        s.recover_lost(p_adopted).await?;
        Ok((
            s,
            SchedulerHandle {
                cmd: cmd_tx,
                shared,
            },
        ))
    }

    /// Runs until `shutdown` turns true, then drains (DESIGN §6).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        info!(
            jobs = self.jobs.len(),
            paused = self.global_paused,
            "scheduler started"
        );
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = shutdown.changed() => break,
                Some(ev) = self.exec_events.recv() => self.on_exec_event(ev).await,
                Some(l) = self.launched.recv() => self.on_launched(l).await,
                Some(r) = self.recorded.recv() => self.on_recorded(r).await,
                Some(cmd) = self.commands.recv() => self.on_command(cmd).await,
                ev = self.job_events.recv() => self.on_job_event(ev).await,
                Ok(()) = self.fences.changed() => self.on_fenced(),
                _ = self.clock.sleep_until(wake) => self.on_tick().await,
            }
        }
        self.drain().await;
    }

    fn next_wake(&mut self) -> Timestamp {
        let far = self.clock.now() + SignedDuration::from_secs(3600);
        let job = self.timeline.peek().unwrap_or(far);
        let retry = self.retries.peek().map_or(far, |Reverse((t, _))| *t);
        job.min(retry)
    }

    // ---- jobs -----------------------------------------------------------

    /// Reads every job from the store and rebuilds the schedule.
    async fn resync(&mut self) -> anyhow::Result<()> {
        let jobs = self.coord.list_jobs().await?;
        let ids: std::collections::HashSet<String> = jobs.iter().map(|j| j.id.clone()).collect();
        let gone: Vec<String> = self
            .jobs
            .keys()
            .filter(|id| !ids.contains(*id))
            .cloned()
            .collect();
        for id in gone {
            self.remove_job(&id);
        }
        let marks = self.coord.watermarks().await?;
        for job in jobs {
            let mark = marks.get(&job.id).copied();
            self.put_job(job, Known::Watermark(mark)).await;
        }
        Ok(())
    }

    async fn on_job_event(&mut self, ev: Result<JobEvent, broadcast::error::RecvError>) {
        match ev {
            Ok(JobEvent::Put(job)) => self.put_job(*job, Known::FromFeed).await,
            Ok(JobEvent::Deleted(id)) => self.remove_job(&id),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                warn!(
                    missed_events = n,
                    "job change feed lagged; re-reading all jobs"
                );
                if let Err(e) = self.resync().await {
                    error!("cannot re-read jobs: {e:#}");
                }
            }
            Err(broadcast::error::RecvError::Closed) => {
                // The store is gone; nothing more will change. Avoid a busy loop.
                self.job_events = self.coord.subscribe();
            }
        }
    }

    /// Adds or replaces a job; `known` says what the caller already knows of
    /// its watermark.
    async fn put_job(&mut self, job: Job, known: Known) {
        // A re-read (resync after a lagged feed) of a job we already have.
        if self
            .jobs
            .get(&job.id)
            .is_some_and(|s| s.job.revision == job.revision)
        {
            return;
        }
        let schedule = match job.schedule() {
            Ok(s) => s,
            Err(e) => {
                error!(job = %job.id, "stored job has an invalid schedule, not scheduling it: {e}");
                self.remove_job(&job.id);
                return;
            }
        };
        let now = self.clock.now();
        let previous = self.jobs.get(&job.id).map(|s| s.cursor);
        // A job just created (the change feed's first word of it) has its
        // watermark at its creation time, set in the same transaction; no
        // instant of it can have been claimed since. Saves one store read
        // per job when thousands are applied at once.
        let just_created = matches!(known, Known::FromFeed)
            && previous.is_none()
            && job.created_at.is_some()
            && job.created_at == job.updated_at;
        let watermark = match known {
            Known::Watermark(w) => w,
            _ if just_created => job.created_at,
            _ => match self.coord.watermark(&job.id).await {
                Ok(w) => w,
                Err(e) => {
                    error!(job = %job.id, "cannot read watermark: {e}");
                    None
                }
            },
        };
        let cursor = match (previous, watermark) {
            (Some(a), Some(b)) => a.max(b),
            (a, b) => a.or(b).unwrap_or(now),
        };
        let start_deadline = match job.start_deadline {
            Some(d) => d.0,
            // `@at`: if missed it still runs once, unless start_deadline says otherwise.
            None if schedule.is_one_shot() => Duration::from_secs(100 * 365 * 86_400),
            None => default_start_deadline(&schedule),
        };
        let id = job.id.clone();
        self.jobs.insert(
            id.clone(),
            JobSlot {
                job: Arc::new(job),
                schedule,
                cursor,
                start_deadline,
            },
        );
        self.metrics
            .jobs
            .set(i64::try_from(self.jobs.len()).unwrap_or(i64::MAX));
        self.reschedule(&id);
    }

    // ---- cluster ------------------------------------------------------------

    /// How long after `t - lead` this node tries to claim `t` (cluster
    /// `one` jobs wait for their rank; everything else claims at once).
    fn claim_offset(&self, id: &str, t: Timestamp) -> Duration {
        self.cluster_turn(id, t).flatten().unwrap_or_default()
    }

    /// `None`: not a cluster `one` job. `Some(None)`: this node does not
    /// try instant `t` (another node decides it).
    fn cluster_turn(&self, id: &str, t: Timestamp) -> Option<Option<Duration>> {
        let c = self.cluster.as_ref()?;
        let slot = self.jobs.get(id)?;
        match slot.job.kind {
            JobKind::One => Some(c.claim_offset(id, t)),
            JobKind::All => c.draining().then_some(None),
        }
    }

    fn decided_elsewhere(&self, id: &str, t: Timestamp) -> bool {
        matches!(self.cluster_turn(id, t), Some(None))
    }

    /// The node lost its lease: another node may claim its `one` jobs' next
    /// instants, so its running `one` runs are killed at once.
    fn on_fenced(&mut self) {
        let keys: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| a.job.kind == JobKind::One)
            .map(|(k, _)| k.clone())
            .collect();
        if keys.is_empty() {
            return;
        }
        warn!(
            runs = keys.len(),
            "self-fenced: killing this node's `one` runs"
        );
        for key in keys {
            if let Some(a) = self.active.get_mut(&key) {
                a.record.reason = Some(
                    "self-fenced: this node's etcd lease was not renewed in time, so another node may run the job"
                        .into(),
                );
            }
            self.kill_run(&key, KillReason::Requested);
        }
    }

    fn remove_job(&mut self, id: &str) {
        self.jobs.remove(id);
        self.timeline.set(id, None);
        write(&self.shared.next_runs).remove(id);
        self.metrics
            .jobs
            .set(i64::try_from(self.jobs.len()).unwrap_or(i64::MAX));
    }

    /// Puts the job's next instant on the timeline (or takes it off).
    fn reschedule(&mut self, id: &str) {
        let next = self.jobs.get(id).and_then(|slot| {
            if slot.job.paused || self.global_paused {
                None
            } else {
                slot.schedule.next_after(slot.cursor)
            }
        });
        let lead = signed(self.cfg.lead);
        let offset = next.map_or(SignedDuration::ZERO, |t| signed(self.claim_offset(id, t)));
        self.timeline.set(id, next.map(|t| t - lead + offset));
        let mut nr = write(&self.shared.next_runs);
        match next {
            Some(t) => nr.insert(id.to_string(), t),
            None => nr.remove(id),
        };
    }

    // ---- time -----------------------------------------------------------

    async fn on_tick(&mut self) {
        let now = self.clock.now();
        self.detect_clock_step(now);
        if !self.global_paused {
            let due = self.timeline.pop_due(now + signed(self.cfg.lead));
            let rest = self.start_due_together(due, now).await;
            for (job, plan) in rest {
                self.on_due(job, plan, now).await;
            }
        }
        while let Some(Reverse((t, _))) = self.retries.peek() {
            if *t > now {
                break;
            }
            if let Some(Reverse((_, key))) = self.retries.pop() {
                self.start_retry(&key, now).await;
            }
        }
    }

    fn detect_clock_step(&mut self, now: Timestamp) {
        let mono = self.clock.monotonic();
        let (last_wall, last_mono) = self.last_tick;
        self.last_tick = (now, mono);
        let wall = now.duration_since(last_wall);
        let elapsed = signed(mono.saturating_sub(last_mono));
        let drift = wall - elapsed;
        let tol = signed(self.cfg.step_tolerance);
        let direction = if drift > tol {
            "forward"
        } else if drift < -tol {
            "backward"
        } else {
            return;
        };
        warn!(
            %direction,
            step_seconds = drift.as_secs_f64(),
            "wall clock stepped; decided instants never re-fire, skipped time follows each job's missed policy"
        );
        self.metrics
            .clock_steps
            .get_or_create(&DirectionLabel {
                direction: direction.into(),
            })
            .inc();
    }

    /// Decides every instant of `id` up to `now + lead`.
    /// The job's due instants up to `now + lead`, unless it is gone or paused.
    fn plan_for(&self, id: &str, now: Timestamp) -> Option<(Arc<Job>, DuePlan)> {
        let slot = self.jobs.get(id).filter(|s| !s.job.paused)?;
        let due = plan(&PlanInput {
            schedule: &slot.schedule,
            after: slot.cursor,
            now,
            lead: self.cfg.lead,
            start_deadline: slot.start_deadline,
            missed: slot.job.missed,
            max_catchup: slot.job.max_catchup,
        });
        Some((slot.job.clone(), due))
    }

    /// Decides the planned instants of one job (the general path: missed
    /// instants, catch-ups, several instants at once).
    async fn on_due(&mut self, job: Arc<Job>, due: DuePlan, now: Timestamp) {
        if let Some(first) = due.start.first().or(due.missed.first()) {
            let lag = now.duration_since(*first).as_secs_f64().max(0.0);
            self.metrics.scheduler_lag.set(lag);
        }
        let Some(through) = due.decided_through else {
            self.reschedule(&job.id);
            return;
        };
        if self.apply_plan(&job, &due, now).await {
            self.decided(&job.id, through);
        } else {
            self.retry_later(&job.id, now);
        }
    }

    /// Moves a job's cursor past `through` and puts its next instant on the timeline.
    fn decided(&mut self, id: &str, through: Timestamp) {
        if let Some(slot) = self.jobs.get_mut(id) {
            slot.cursor = slot.cursor.max(through);
        }
        self.reschedule(id);
    }

    /// Re-plans a job shortly (its instants stay undecided), unless it was
    /// removed or rescheduled meanwhile.
    fn retry_later(&mut self, id: &str, now: Timestamp) {
        if self.jobs.contains_key(id) {
            self.timeline.set(id, Some(now + signed(STORE_RETRY)));
        }
    }

    /// The common case of a busy second: many jobs with exactly one instant
    /// to start and nothing missed. Their claims go to the store together
    /// (one group commit instead of one per job), then they are launched.
    /// Returns the jobs that need the general path.
    async fn start_due_together(
        &mut self,
        due: Vec<String>,
        now: Timestamp,
    ) -> Vec<(Arc<Job>, DuePlan)> {
        let mut rest = Vec::new();
        let mut batch = Vec::new();
        for id in due {
            let Some((job, p)) = self.plan_for(&id, now) else {
                continue;
            };
            let single = p.missed.is_empty() && p.summarised.is_none() && p.start.len() == 1;
            if !single {
                rest.push((job, p));
                continue;
            }
            let t = p.start[0];
            if self.decided_elsewhere(&id, t) {
                self.decided(&id, t);
                continue;
            }
            let admission = self.admission(&job);
            let rec = self.instant_record(&job, t, RunStatus::Running);
            let rec = match &admission {
                Admission::Skip(reason) => {
                    records::settled(rec, RunStatus::Skipped, reason.clone(), now)
                }
                _ => rec,
            };
            batch.push((job, t, admission, rec));
        }
        if let Some((_, t, _, _)) = batch.first() {
            self.metrics
                .scheduler_lag
                .set(now.duration_since(*t).as_secs_f64().max(0.0));
        }
        // Claims go to the store in chunks, all at once; each chunk's
        // answers are acted on as they arrive: a won claim goes to the
        // launcher at once instead of waiting for the slowest chunk (the
        // launcher still starts it at its instant, not earlier).
        let mut answers: FuturesUnordered<_> = FuturesUnordered::new();
        let mut batch = batch.into_iter().peekable();
        while batch.peek().is_some() {
            let chunk: Vec<_> = batch.by_ref().take(CLAIM_CHUNK).collect();
            let coord = self.coord.clone();
            let asked = std::time::Instant::now();
            answers.push(async move {
                let reqs = chunk
                    .iter()
                    .map(|(job, t, _, rec)| claim_request(job, *t, rec))
                    .collect();
                let res = coord.claim_many(reqs).await;
                (chunk, res, asked.elapsed())
            });
        }
        while let Some((chunk, res, took)) = answers.next().await {
            self.metrics.claim_latency.observe(took.as_secs_f64());
            self.act_on_claims(chunk, res, now).await;
        }
        rest
    }

    /// Launches the won claims of a chunk and moves each job on.
    async fn act_on_claims(
        &mut self,
        chunk: Vec<Due>,
        answers: Vec<crate::store::Result<ClaimOutcome>>,
        now: Timestamp,
    ) {
        for ((job, t, admission, mut rec), res) in chunk.into_iter().zip(answers) {
            match self.claim_outcome(&job, t, &rec, res).await {
                ClaimResult::Won(fence, previous) => {
                    if rec.status == RunStatus::Running {
                        faults::hit("die_after_claim");
                        if self.clock.now() > t {
                            self.metrics.claims_late.inc();
                        }
                        rec.fence = Some(fence);
                        self.launch(job.clone(), rec, t, &admission);
                    }
                    self.decided(&job.id, t);
                    self.record_gap(&job, previous, t, now).await;
                }
                ClaimResult::Decided => self.decided(&job.id, t),
                ClaimResult::JobChanged => {}
                ClaimResult::StoreFailed => self.retry_later(&job.id, now),
            }
        }
    }

    /// Records missed instants, starts catch-ups and claims startable
    /// instants, in an order that is safe to repeat after a crash at any
    /// point. Returns false if the job changed meanwhile (it is re-read).
    async fn apply_plan(&mut self, job: &Arc<Job>, due: &DuePlan, now: Timestamp) -> bool {
        let deadline = self
            .jobs
            .get(&job.id)
            .map_or(Duration::ZERO, |s| s.start_deadline);
        let missed_reason = format!(
            "not started within its start deadline ({}) — the daemon was down, the clock stepped, or the node was overloaded",
            cronsun_proto::Dur(deadline)
        );
        // Cluster `one` jobs: only claimed decisions. Writes without a claim
        // (older missed instants, summaries, catch-ups) could come from every
        // node, or contradict the node that ran the instant.
        let claimed_only = self.cluster_turn(&job.id, now).is_some();
        if !claimed_only {
            let older = due.missed.split_last().map_or(&[][..], |(_, o)| o);
            self.record_missed(
                job,
                due.summarised,
                older,
                &due.catchup,
                &missed_reason,
                now,
            )
            .await;
        }
        let last_missed = due.missed.last().copied();
        // The last missed instant moves the watermark with its record.
        if let Some(t) = last_missed.filter(|t| !self.decided_elsewhere(&job.id, *t)) {
            let rec = self.instant_record(job, t, RunStatus::Missed);
            let rec = records::settled(rec, RunStatus::Missed, missed_reason.clone(), now);
            match self.claim(job, t, rec).await {
                ClaimResult::JobChanged | ClaimResult::StoreFailed => return false,
                ClaimResult::Won(_, previous) => self.record_gap(job, previous, t, now).await,
                ClaimResult::Decided => {}
            }
        }
        for t in &due.start {
            if !self.start_instant(job, *t).await {
                return false;
            }
        }
        true
    }

    /// Writes missed instants (a summary of the oldest, then one record
    /// each) and starts the catch-up runs the `missed` policy asks for.
    /// Idempotent: run ids are the instants', so a replay writes nothing new.
    async fn record_missed(
        &mut self,
        job: &Arc<Job>,
        summarised: Option<(u64, Timestamp, Timestamp)>,
        missed: &[Timestamp],
        catchup: &[Timestamp],
        missed_reason: &str,
        now: Timestamp,
    ) {
        if let Some((count, first, last)) = summarised {
            let run_id = format!(
                "{}~missed~{}~{}",
                job.id,
                ids::instant_key(first),
                ids::instant_key(last)
            );
            let rec = records::new_record(
                job,
                &self.node,
                run_id,
                1,
                Trigger::Schedule,
                last,
                RunStatus::Missed,
            );
            let reason = format!("{count} instants from {first} to {last} were missed and are summarised here; {missed_reason}");
            self.write(records::settled(rec, RunStatus::Missed, reason, now))
                .await;
        }
        for t in missed {
            let rec = self.instant_record(job, *t, RunStatus::Missed);
            self.write(records::settled(
                rec,
                RunStatus::Missed,
                missed_reason.to_string(),
                now,
            ))
            .await;
        }
        for t in catchup {
            let run_id = records::scheduled_run_id(job, *t, &self.node);
            let rec = records::new_record(
                job,
                &self.node,
                run_id,
                2,
                Trigger::Catchup,
                *t,
                RunStatus::Running,
            );
            self.start_unclaimed(job, rec, now).await;
        }
    }

    /// Cluster `one` jobs: the instants between the watermark a won claim
    /// moved past and the claimed instant were decided by nobody (etcd was
    /// unreachable, or every node was fenced, draining or clock-unhealthy)
    /// and can no longer be claimed. The winner records them `missed` and
    /// applies the job's `missed` policy (DESIGN §3).
    async fn record_gap(
        &mut self,
        job: &Arc<Job>,
        previous: Option<Timestamp>,
        t: Timestamp,
        now: Timestamp,
    ) {
        let Some(previous) =
            previous.filter(|_| self.cluster.is_some() && job.kind == JobKind::One)
        else {
            return;
        };
        let Some(slot) = self.jobs.get(&job.id) else {
            return;
        };
        let gap = plan(&PlanInput {
            schedule: &slot.schedule,
            after: previous,
            now: t - SignedDuration::from_nanos(1),
            lead: Duration::ZERO,
            start_deadline: Duration::ZERO,
            missed: job.missed,
            max_catchup: job.max_catchup,
        });
        let missed: Vec<Timestamp> = gap.missed.iter().chain(&gap.start).copied().collect();
        if missed.is_empty() && gap.summarised.is_none() {
            return;
        }
        warn!(job = %job.id, from = %previous, to = %t, "instants nobody claimed are recorded missed");
        let reason = "no node claimed it before a later instant was claimed — etcd was unreachable, or every node was fenced, draining or clock-unhealthy";
        self.record_missed(job, gap.summarised, &missed, &gap.catchup, reason, now)
            .await;
    }

    fn instant_record(&self, job: &Job, t: Timestamp, status: RunStatus) -> RunRecord {
        let run_id = records::scheduled_run_id(job, t, &self.node);
        records::new_record(job, &self.node, run_id, 1, Trigger::Schedule, t, status)
    }

    /// Claims instant `t` and launches it (or records it `skipped`).
    /// Returns false if the job changed meanwhile.
    async fn start_instant(&mut self, job: &Arc<Job>, t: Timestamp) -> bool {
        if self.decided_elsewhere(&job.id, t) {
            return true;
        }
        let now = self.clock.now();
        let mut rec = self.instant_record(job, t, RunStatus::Running);
        let admission = self.admission(job);
        if let Admission::Skip(reason) = &admission {
            let rec = records::settled(rec, RunStatus::Skipped, reason.clone(), now);
            return matches!(
                self.claim(job, t, rec).await,
                ClaimResult::Won(..) | ClaimResult::Decided
            );
        }
        // `started_at` stays empty until the process exists (the in-memory
        // view and the terminal record carry the real start).
        match self.claim(job, t, rec.clone()).await {
            ClaimResult::Won(fence, previous) => {
                faults::hit("die_after_claim");
                rec.fence = Some(fence);
                self.launch(job.clone(), rec, t, &admission);
                self.record_gap(job, previous, t, now).await;
                true
            }
            ClaimResult::Decided => true,
            ClaimResult::JobChanged | ClaimResult::StoreFailed => false,
        }
    }

    /// Starts a run whose record is written without a claim (manual runs,
    /// retries, catch-ups): only if the write applied, so a replay after a
    /// crash never starts the same attempt twice.
    async fn start_unclaimed(&mut self, job: &Arc<Job>, rec: RunRecord, now: Timestamp) -> bool {
        match self.admission(job) {
            Admission::Skip(reason) => {
                let rec = records::settled(rec, RunStatus::Skipped, reason, now);
                self.write(rec).await;
                false
            }
            admission => {
                if !self.write(rec.clone()).await {
                    return false;
                }
                self.launch(job.clone(), rec, now, &admission);
                true
            }
        }
    }

    async fn claim(&mut self, job: &Job, t: Timestamp, record: RunRecord) -> ClaimResult {
        let res = self.coord.claim(claim_request(job, t, &record)).await;
        self.claim_outcome(job, t, &record, res).await
    }

    /// Interprets a claim's answer: announces a settled record that won,
    /// re-reads a job that changed, counts store errors.
    async fn claim_outcome(
        &mut self,
        job: &Job,
        t: Timestamp,
        record: &RunRecord,
        res: crate::store::Result<ClaimOutcome>,
    ) -> ClaimResult {
        match res {
            Ok(ClaimOutcome::Won { fence, previous }) => {
                self.announce(record);
                ClaimResult::Won(fence, previous)
            }
            Ok(ClaimOutcome::Decided { .. }) => {
                debug!(job = %job.id, instant = %t, "instant already decided");
                ClaimResult::Decided
            }
            Ok(ClaimOutcome::JobChanged) => {
                debug!(job = %job.id, "job changed while scheduling; re-reading");
                match self.coord.get_job(&job.id).await {
                    Ok(Some(j)) => self.put_job(j, Known::Nothing).await,
                    Ok(None) => self.remove_job(&job.id),
                    Err(e) => error!(job = %job.id, "cannot re-read job: {e}"),
                }
                ClaimResult::JobChanged
            }
            Err(e) => {
                // The instant stays undecided; it is re-planned after a
                // short backoff and becomes `missed` if the store stays down
                // past its start deadline.
                self.metrics.store_errors.inc();
                error!(job = %job.id, instant = %t, "cannot claim instant: {e}");
                ClaimResult::StoreFailed
            }
        }
    }

    // ---- concurrency ------------------------------------------------------

    fn admission(&self, job: &Job) -> Admission {
        let mine: Vec<String> = self
            .active
            .iter()
            .filter(|(_, a)| a.job.id == job.id)
            .map(|(k, _)| k.clone())
            .collect();
        if self.active.len() >= self.cfg.max_concurrent as usize
            && job.concurrency != Concurrency::Replace
        {
            return Admission::Skip(format!(
                "this node is at its limit of {} concurrent runs",
                self.cfg.max_concurrent
            ));
        }
        match job.concurrency {
            _ if mine.is_empty() => Admission::Start,
            Concurrency::Forbid => Admission::Skip(format!(
                "previous run still running ({}) and concurrency = \"forbid\"",
                mine.join(", ")
            )),
            Concurrency::Allow if mine.len() >= job.max_parallel as usize => {
                Admission::Skip(format!(
                    "{} runs still running and max_parallel = {}",
                    mine.len(),
                    job.max_parallel
                ))
            }
            Concurrency::Allow => Admission::Start,
            Concurrency::Replace => Admission::Replace(mine),
        }
    }

    fn replace(&mut self, keys: &[String], by: &str) {
        for key in keys {
            if let Some(a) = self.active.get_mut(key) {
                a.record.reason = Some(format!("replaced by {by} (concurrency = \"replace\")"));
            }
            self.kill_run(key, KillReason::Requested);
        }
    }

    // ---- runs ---------------------------------------------------------------

    fn spec(&self, job: &Job, rec: &RunRecord) -> Result<RunSpec, String> {
        let argv = job.argv().map_err(|e| e.to_string())?;
        let mut env: Vec<(String, String)> = job
            .env
            .iter()
            .filter_map(|(k, v)| v.value.clone().map(|v| (k.clone(), v)))
            .collect();
        env.extend([
            ("CRONSUN_JOB_ID".to_string(), job.id.clone()),
            ("CRONSUN_RUN_ID".to_string(), rec.run_id.clone()),
            (
                "CRONSUN_SCHEDULED_AT".to_string(),
                rec.scheduled_at.to_string(),
            ),
            ("CRONSUN_ATTEMPT".to_string(), rec.attempt.to_string()),
            ("CRONSUN_NODE".to_string(), self.node.id.clone()),
            (
                "CRONSUN_FENCE".to_string(),
                rec.fence.map(|f| f.to_string()).unwrap_or_default(),
            ),
        ]);
        Ok(RunSpec {
            key: rec.record_id(),
            argv,
            run_as: job.run_as.clone(),
            env,
            workdir: job.workdir.clone(),
            timeout: job.timeout.map(|d| d.0),
            kill_grace: job.kill_grace.0,
            output_limit: job.output_limit.0,
            limits: job.limits.clone(),
        })
    }

    /// Hands a recorded run to the launcher, to start at `at`.
    /// Under `replace`, the runs it replaces are killed first and the start
    /// waits until they have ended ("kill the running run, then start").
    fn launch(&mut self, job: Arc<Job>, rec: RunRecord, at: Timestamp, admission: &Admission) {
        let key = rec.record_id();
        let waiting_on = match admission {
            Admission::Replace(keys) => keys.clone(),
            _ => Vec::new(),
        };
        self.active.insert(
            key.clone(),
            Active {
                job,
                record: rec.clone(),
                kill_pending: None,
                waiting_on: waiting_on.clone(),
            },
        );
        write(&self.shared.active).insert(key.clone(), rec.clone());
        self.metrics
            .running
            .set(i64::try_from(self.active.len()).unwrap_or(i64::MAX));
        if waiting_on.is_empty() {
            self.hand_to_launcher(&key, at);
        } else {
            self.replace(&waiting_on, &rec.run_id);
        }
    }

    /// Starts runs that were waiting for `ended` to end.
    fn release_waiters(&mut self, ended: &str) {
        let now = self.clock.now();
        let mut ready = Vec::new();
        for (key, a) in self.active.iter_mut() {
            if a.waiting_on.iter().any(|k| k == ended) {
                a.waiting_on.retain(|k| k != ended);
                if a.waiting_on.is_empty() {
                    ready.push(key.clone());
                }
            }
        }
        for key in ready {
            self.hand_to_launcher(&key, now);
        }
    }

    fn hand_to_launcher(&mut self, key: &str, at: Timestamp) {
        let Some(a) = self.active.get(key) else {
            return;
        };
        let key = key.to_string();
        let spec = self.spec(&a.job, &a.record);
        let err = match spec {
            Ok(spec) => {
                if self.launcher.launch(Launch { at, spec }) {
                    return;
                }
                SpawnError::Failed("the launcher has stopped".into())
            }
            Err(e) => SpawnError::Failed(e),
        };
        // Reported through the same path as a failed spawn.
        let _ = self.launched_tx.send(Launched {
            key,
            at: self.clock.now(),
            result: Err(err),
        });
    }

    /// Kills an active run, or remembers the kill until its process exists.
    fn kill_run(&mut self, key: &str, reason: KillReason) {
        if !self.exec.kill(key, reason) {
            if let Some(a) = self.active.get_mut(key) {
                a.kill_pending = Some(reason);
            }
        }
    }

    async fn on_launched(&mut self, l: Launched) {
        match l.result {
            Ok(started) => {
                faults::hit("die_after_spawn");
                if let Some(reason) = self
                    .active
                    .get_mut(&l.key)
                    .and_then(|a| a.kill_pending.take())
                {
                    self.exec.kill(&l.key, reason);
                }
                if let Some(a) = self.active.get_mut(&l.key) {
                    a.record.started_at = Some(started.started_at);
                    a.record.run_as = started.user.clone();
                    write(&self.shared.active).insert(l.key.clone(), a.record.clone());
                }
            }
            Err(e) => {
                let Some(a) = self.active.remove(&l.key) else {
                    return;
                };
                self.forget_active(&l.key);
                let now = self.clock.now();
                let mut rec = records::settled(a.record, RunStatus::Failed, e.to_string(), now);
                rec.started_at = None;
                warn!(run = %l.key, "run did not start: {e}");
                let retry = matches!(e, SpawnError::Failed(_));
                self.finish(a.job, rec, retry, None);
            }
        }
    }

    async fn on_exec_event(&mut self, ev: ExecEvent) {
        let ExecEvent::Finished { key, outcome } = ev;
        let Some(a) = self.active.remove(&key) else {
            warn!(run = %key, "executor reported an unknown run finished");
            return;
        };
        self.forget_active(&key);
        let rec = records::finished(a.record, &outcome);
        let output = crate::exec::output_path(&self.cfg.state_dir, &key);
        self.finish(a.job, rec, true, Some(output));
    }

    fn forget_active(&mut self, key: &str) {
        self.release_waiters(key);
        write(&self.shared.active).remove(key);
        self.metrics
            .running
            .set(i64::try_from(self.active.len()).unwrap_or(i64::MAX));
    }

    /// Writes a terminal record durably, then announces it and applies
    /// retries and one-shot completion. Returns whether it was stored.
    fn finish(&mut self, job: Arc<Job>, rec: RunRecord, may_retry: bool, output: Option<PathBuf>) {
        // Writes go to the store concurrently (group commit); the result
        // comes back as `Recorded`, in which everything that must follow
        // durability happens.
        self.recording += 1;
        let runs = self.runs.clone();
        let tx = self.recorded_tx.clone();
        tokio::spawn(async move {
            let stored = runs.write(rec.clone()).await;
            let _ = tx.send(Recorded {
                job,
                rec,
                stored: stored.map(|_| ()).map_err(|e| e.to_string()),
                may_retry,
                output,
            });
        });
    }

    /// A terminal record is durable (or failed to be): announce it, remove
    /// its output file, apply retries and one-shot completion.
    async fn on_recorded(&mut self, r: Recorded) {
        self.recording = self.recording.saturating_sub(1);
        let Recorded {
            job,
            rec,
            stored,
            may_retry,
            output,
        } = r;
        match stored {
            Ok(()) => {
                if let Some(path) = output {
                    if let Err(e) = tokio::fs::remove_file(&path).await {
                        if e.kind() != std::io::ErrorKind::NotFound {
                            warn!(run = %rec.record_id(), "cannot remove output file {}: {e}", path.display());
                        }
                    }
                }
            }
            Err(e) => {
                // The output file is kept: it is the only copy of the output.
                self.metrics.store_errors.inc();
                error!(run = %rec.record_id(), "cannot store the run's result: {e}");
            }
        }
        self.metrics.count_run(rec.status);
        if let (Trigger::Schedule, Some(started)) = (rec.trigger, rec.started_at) {
            let latency = started.duration_since(rec.scheduled_at).as_secs_f64();
            self.metrics.fire_latency.observe(latency.max(0.0));
        }
        info!(run = %rec.record_id(), status = %rec.status, exit_code = ?rec.exit_code, "run finished");
        self.announce(&rec);
        let current = self.jobs.get(&job.id).map(|s| s.job.clone());
        if may_retry {
            if let Some(j) = &current {
                if records::wants_retry(j, &rec) {
                    let at = self.clock.now() + signed(j.retry_delay.0);
                    self.queue_retry(j.clone(), rec, at);
                    return;
                }
            }
        }
        if let Some(j) = current {
            if self
                .jobs
                .get(&j.id)
                .is_some_and(|s| s.schedule.is_one_shot())
                && rec.trigger != Trigger::Manual
            {
                self.complete_one_shot(&j).await;
            }
        }
    }

    /// The record of the attempt after `prev` (a retry).
    fn next_attempt(&self, job: &Job, prev: &RunRecord, status: RunStatus) -> RunRecord {
        records::new_record(
            job,
            &self.node,
            prev.run_id.clone(),
            prev.attempt + 1,
            Trigger::Retry,
            prev.scheduled_at,
            status,
        )
    }

    /// Queues the retry of a lost run of another node, if its job asks.
    fn adopt_lost(&mut self, lost: RunRecord) {
        let Some(job) = self.jobs.get(&lost.job_id).map(|s| s.job.clone()) else {
            return;
        };
        // An `all` run belongs to its node: nobody else runs its share.
        if job.kind == JobKind::One && job.on_lost == OnLost::Retry && lost.attempt <= job.retries {
            info!(run = %lost.record_id(), "retrying a lost run of a dead node (on_lost = \"retry\")");
            let at = self.clock.now() + signed(job.retry_delay.0);
            self.queue_retry(job, lost, at);
        }
    }

    fn queue_retry(&mut self, job: Arc<Job>, prev: RunRecord, at: Timestamp) {
        let key = prev.record_id();
        self.retries.push(Reverse((at, key.clone())));
        self.pending_retries.insert(key, (job, prev));
    }

    async fn start_retry(&mut self, key: &str, now: Timestamp) {
        let Some((_, prev)) = self.pending_retries.remove(key) else {
            return;
        };
        let Some(job) = self.jobs.get(&prev.job_id).map(|s| s.job.clone()) else {
            return;
        };
        if job.paused || self.global_paused {
            let rec = self.next_attempt(&job, &prev, RunStatus::Skipped);
            self.write(records::settled(
                rec,
                RunStatus::Skipped,
                "the job was paused before its retry was due".into(),
                now,
            ))
            .await;
            return;
        }
        let mut rec = records::new_record(
            &job,
            &self.node,
            prev.run_id.clone(),
            prev.attempt + 1,
            Trigger::Retry,
            prev.scheduled_at,
            RunStatus::Running,
        );
        rec.fence = prev.fence;
        // A lost run may be retried by the leader and by its own node when
        // it comes back: one of them wins the retry key.
        if prev.status == RunStatus::Lost {
            match self.coord.claim_retry(&rec.record_id()).await {
                Ok(true) => {}
                Ok(false) => {
                    info!(run = %rec.record_id(), "another node started this retry");
                    return;
                }
                Err(e) => {
                    self.metrics.store_errors.inc();
                    warn!(run = %rec.record_id(), "cannot claim the retry, trying again: {e}");
                    self.queue_retry(job, prev, now + signed(STORE_RETRY));
                    return;
                }
            }
        }
        self.start_unclaimed(&job, rec, now).await;
    }

    /// An `@at` job is done after its run: paused with reason `completed`.
    async fn complete_one_shot(&mut self, job: &Job) {
        let mut done = job.clone();
        done.paused = true;
        done.paused_reason = Some("completed".into());
        let now = self.clock.now();
        if let Err(e) = self
            .coord
            .put_job(done, Expect::Revision(job.revision), now)
            .await
        {
            warn!(job = %job.id, "cannot mark one-shot job completed: {e}");
        }
    }

    /// Tells followers (SSE, tests) that a record became final.
    fn announce(&self, rec: &RunRecord) {
        if rec.status.is_final() {
            let _ = self.shared.finished.send(Arc::new(rec.clone()));
        }
    }

    async fn write(&mut self, rec: RunRecord) -> bool {
        match self.runs.write(rec.clone()).await {
            Ok(applied) => {
                if applied {
                    self.announce(&rec);
                }
                applied
            }
            Err(e) => {
                self.metrics.store_errors.inc();
                error!("cannot write run record: {e}");
                false
            }
        }
    }

    /// Runs a previous daemon left `running` are `lost` (their processes were
    /// killed by the executor's leftover pass); `on_lost = retry` retries them.
    ///
    /// Runs the executor still has (the agent was restarted, the executor
    /// was not) are re-adopted instead: they count for concurrency, can be
    /// killed, and their results are recorded when they end.
    async fn recover_lost(
        &mut self,
        mut live: std::collections::HashSet<String>,
    ) -> anyhow::Result<()> {
        live.extend(self.exec.running());
        let leftovers = self.exec.recover_leftovers();
        let now = self.clock.now();
        for r in self.runs.running_on(&self.node.id).await? {
            let key = r.record_id();
            if live.contains(&key) {
                if let Some(job) = self.jobs.get(&r.job_id).map(|s| s.job.clone()) {
                    info!(run = %key, "re-adopted a run the previous agent started");
                    write(&self.shared.active).insert(key.clone(), r.clone());
                    self.active.insert(
                        key,
                        Active {
                            job,
                            record: r,
                            kill_pending: None,
                            waiting_on: Vec::new(),
                        },
                    );
                    continue;
                }
            }
            let killed = leftovers.iter().any(|l| l.key == key && l.killed);
            let reason = if killed {
                "the daemon stopped while the run was in progress; its leftover processes were killed at restart"
            } else {
                "the daemon stopped while the run was in progress"
            };
            let mut lost = r.clone();
            lost.status = RunStatus::Lost;
            lost.seq = RunStatus::Lost.seq();
            lost.finished_at = Some(now);
            lost.reason = Some(reason.to_string());
            warn!(run = %key, "run lost: {reason}");
            self.write(lost.clone()).await;
            self.metrics.count_run(RunStatus::Lost);
            let _ =
                tokio::fs::remove_file(crate::exec::output_path(&self.cfg.state_dir, &key)).await;
            if let Some(job) = self.jobs.get(&r.job_id).map(|s| s.job.clone()) {
                if job.on_lost == OnLost::Retry && lost.attempt <= job.retries {
                    self.queue_retry(job, lost, now);
                }
            }
        }
        Ok(())
    }

    // ---- commands -----------------------------------------------------------

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::RunNow {
                job_id,
                requested,
                reply,
            } => {
                let r = self.run_now(&job_id, requested).await;
                let _ = reply.send(r);
            }
            Command::Kill { id, reply } => {
                let r = self.kill(&id).await;
                let _ = reply.send(r);
            }
            Command::SetGlobalPause { paused, reply } => {
                self.set_global_pause(paused).await;
                let _ = reply.send(());
            }
            Command::AdoptLost { record } => self.adopt_lost(*record),
            Command::SetLimits { limits, reply } => {
                self.cfg.drain_timeout = limits.drain_timeout;
                self.cfg.step_tolerance = limits.step_tolerance;
                self.cfg.max_concurrent = limits.max_concurrent;
                let _ = reply.send(());
            }
        }
    }

    async fn run_now(
        &mut self,
        job_id: &str,
        requested: Option<Requested>,
    ) -> Result<String, RequestError> {
        let stale = requested.as_ref().is_some_and(|r| {
            self.jobs
                .get(job_id)
                .is_some_and(|s| s.job.revision < r.job_revision)
        });
        if !self.jobs.contains_key(job_id) || stale {
            // Created a moment ago: the change feed may not have brought it yet.
            match self.coord.get_job(job_id).await {
                Ok(Some(j)) => self.put_job(j, Known::Nothing).await,
                Ok(None) => {}
                Err(e) => return Err(RequestError::Unavailable(e.to_string())),
            }
        }
        let job = self
            .jobs
            .get(job_id)
            .map(|s| s.job.clone())
            .ok_or_else(|| RequestError::NotFound(format!("job {job_id:?} not found")))?;
        let now = self.clock.now();
        let from_cluster = requested.is_some();
        let (run_id, at, fence) = match requested {
            // Refusals become a `skipped` record the requester can find.
            Some(r) => (r.run_id, r.at, r.fence),
            None => {
                if let Admission::Skip(reason) = self.admission(&job) {
                    return Err(RequestError::Conflict(format!(
                        "cannot start {job_id} now: {reason}"
                    )));
                }
                let request = format!("{}-{:04x}", ids::instant_key(now), rand::random::<u16>());
                (ids::manual_run_id(job_id, &request), now, None)
            }
        };
        let mut rec = records::new_record(
            &job,
            &self.node,
            run_id.clone(),
            1,
            Trigger::Manual,
            at,
            RunStatus::Running,
        );
        rec.fence = fence;
        if self.start_unclaimed(&job, rec, now).await {
            Ok(run_id)
        } else if from_cluster {
            Err(RequestError::Conflict(format!(
                "run {run_id} was not started: skipped (see its record) or already recorded"
            )))
        } else {
            Err(RequestError::Unavailable(
                "the run could not be recorded; see the daemon's log".into(),
            ))
        }
    }

    async fn kill(&mut self, id: &str) -> Result<(), RequestError> {
        let key = if self.active.contains_key(id) {
            Some(id.to_string())
        } else {
            self.active
                .iter()
                .filter(|(_, a)| a.record.run_id == id)
                .max_by_key(|(_, a)| a.record.attempt)
                .map(|(k, _)| k.clone())
        };
        if let Some(key) = key {
            self.kill_run(&key, KillReason::Requested);
            return Ok(());
        }
        match self.runs.get(id).await {
            Ok(Some(r)) if r.status.is_final() => Err(RequestError::Conflict(format!(
                "run {} already finished ({})",
                r.record_id(),
                r.status
            ))),
            Ok(Some(r)) => Err(RequestError::NotFound(format!(
                "run {} is not running on this node",
                r.record_id()
            ))),
            Ok(None) => Err(RequestError::NotFound(format!("run {id:?} not found"))),
            Err(e) => Err(RequestError::Unavailable(e.to_string())),
        }
    }

    async fn set_global_pause(&mut self, paused: bool) {
        let was = self.global_paused;
        self.global_paused = paused;
        if was && !paused {
            // Paused time is never missed: every job starts afresh from now.
            let now = self.clock.now();
            let ids: Vec<String> = self.jobs.keys().cloned().collect();
            for id in &ids {
                if let Err(e) = self.coord.set_watermark(id, now).await {
                    error!(job = %id, "cannot reset watermark: {e}");
                }
                if let Some(s) = self.jobs.get_mut(id) {
                    s.cursor = s.cursor.max(now);
                }
            }
        }
        let ids: Vec<String> = self.jobs.keys().cloned().collect();
        for id in ids {
            self.reschedule(&id);
        }
    }

    // ---- shutdown -------------------------------------------------------------

    /// Lets running runs finish up to the drain deadline, then kills and
    /// records the rest.
    async fn drain(mut self) {
        let n = self.active.len();
        if n > 0 {
            info!(running = n, deadline = %cronsun_proto::Dur(self.cfg.drain_timeout), "draining: waiting for running runs");
        }
        let deadline = tokio::time::Instant::now() + self.cfg.drain_timeout;
        self.wait_for_runs(deadline).await;
        if !self.active.is_empty() {
            let grace = self
                .active
                .values()
                .map(|a| a.job.kill_grace.0)
                .max()
                .unwrap_or_default();
            warn!(
                running = self.active.len(),
                "drain deadline reached; killing remaining runs"
            );
            let keys: Vec<String> = self.active.keys().cloned().collect();
            for key in keys {
                self.kill_run(&key, KillReason::Shutdown);
            }
            let deadline = tokio::time::Instant::now() + grace + Duration::from_secs(5);
            self.wait_for_runs(deadline).await;
        }
        // Retries that were still waiting will not run: say so.
        let now = self.clock.now();
        let pending: Vec<(Arc<Job>, RunRecord)> =
            self.pending_retries.drain().map(|(_, v)| v).collect();
        for (job, prev) in pending {
            let rec = self.next_attempt(&job, &prev, RunStatus::Missed);
            self.write(records::settled(
                rec,
                RunStatus::Missed,
                "the daemon stopped before this retry was due".into(),
                now,
            ))
            .await;
        }
        for key in self.active.keys() {
            error!(run = %key, "run did not end after SIGKILL; it will be recorded lost at next start");
        }
        info!("scheduler stopped");
    }

    async fn wait_for_runs(&mut self, deadline: tokio::time::Instant) {
        while !self.active.is_empty() || self.recording > 0 {
            tokio::select! {
                Some(ev) = self.exec_events.recv() => self.on_exec_event(ev).await,
                Some(l) = self.launched.recv() => self.on_launched(l).await,
                Some(r) = self.recorded.recv() => self.on_recorded(r).await,
                _ = tokio::time::sleep_until(deadline) => return,
            }
        }
    }
}

enum Admission {
    Start,
    Skip(String),
    Replace(Vec<String>),
}

/// What `put_job`'s caller knows of the job's watermark.
enum Known {
    /// Nothing: read it from the store.
    Nothing,
    /// The job came on the change feed (a fresh one needs no read).
    FromFeed,
    /// Read in bulk by the caller.
    Watermark(Option<Timestamp>),
}

/// The answer of a terminal write started by `finish`.
struct Recorded {
    job: Arc<Job>,
    rec: RunRecord,
    stored: Result<(), String>,
    may_retry: bool,
    output: Option<PathBuf>,
}

enum ClaimResult {
    /// Won, with the fence and the watermark the claim moved past.
    Won(u64, Option<Timestamp>),
    Decided,
    JobChanged,
    StoreFailed,
}

fn claim_request(job: &Job, t: Timestamp, record: &RunRecord) -> ClaimRequest {
    ClaimRequest {
        job_id: job.id.clone(),
        job_revision: job.revision,
        instant: t,
        record: record.clone(),
    }
}

/// Back-off before re-planning a job whose claim failed in the store.
const STORE_RETRY: Duration = Duration::from_secs(1);

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}
