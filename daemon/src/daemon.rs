//! The daemon's lifecycle: open state, start executor, scheduler and API,
//! handle signals (SIGTERM drains, SIGHUP reloads), stop in order. Every
//! long-running task is named here and owned by [`run`].

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UnixListener};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::api::{self, AppState, Auth, PeerCred, TokenCheck};
use crate::clock::Clock;
use crate::config::Config;
use crate::coord::duties::Duty;
use crate::exec::Executor;
use crate::metrics::Metrics;
use crate::node::{self, NodeFacts};
use crate::privsep::{self, notify};
use crate::reload;
use crate::scheduler::{ClusterView, NodeIdentity, Parts, Scheduler, SchedulerConfig};
use crate::store::etcd::{describe, ClusterParts, ClusterRuns, EtcdCoord, StartError};
use crate::store::mongo::MongoRunStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{AuthStore, CoordStore, Retention, RunStore};

/// How often the STATUS line is refreshed (and at most the watchdog period).
const STATUS_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// How often retention runs.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

/// The node id is registered by another live process: a configuration
/// error (exit 78, not restarted), not a crash.
#[derive(Debug, thiserror::Error)]
#[error("cannot join the cluster: {0}")]
pub struct NodeIdTaken(pub String);

/// Runs the daemon (both roles in this process) until SIGTERM/SIGINT,
/// then drains and returns.
pub async fn run(cfg: Config, config_path: &Path, clock: Clock) -> anyhow::Result<()> {
    run_with(cfg, config_path, clock, None).await
}

/// Runs the agent of a privilege-separated daemon: runs are started by the
/// executor process at the other end of `executor`.
pub async fn run_agent(
    cfg: Config,
    config_path: &Path,
    clock: Clock,
    executor: std::os::fd::OwnedFd,
) -> anyhow::Result<()> {
    run_with(cfg, config_path, clock, Some(executor)).await
}

async fn run_with(
    cfg: Config,
    config_path: &Path,
    clock: Clock,
    executor: Option<std::os::fd::OwnedFd>,
) -> anyhow::Result<()> {
    let state_dir = cfg.node.state_dir.clone();
    prepare_state_dir(&state_dir)?;
    let node_id = node::node_id(cfg.node.id.as_deref(), &state_dir)
        .with_context(|| format!("cannot persist the node id in {}", state_dir.display()))?;
    let hostname = node::hostname();
    let (token, token_path, created) = node::admin_token(&state_dir)
        .with_context(|| format!("cannot create the admin token in {}", state_dir.display()))?;
    if created {
        info!(path = %token_path.display(), "created the admin token (mode 0600)");
    }
    if executor.is_none() && !nix::unistd::geteuid().is_root() {
        let me = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .ok()
            .flatten()
            .map_or_else(|| "this user".to_string(), |u| u.name);
        warn!("running as non-root user {me}: jobs run as {me} only, and run_as of other users is refused");
    }

    let db = state_dir.join("cronsun.db");
    let store = Arc::new(
        SqliteStore::open(&db)
            .with_context(|| format!("cannot open the store {}", db.display()))?,
    );
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let retention = reload::retention(&cfg);
    // Before joining the cluster: the node record publishes the listener's
    // scheme and certificate fingerprint.
    let tls = listener_tls(&cfg, &state_dir)?;
    let api_url = cfg.etcd.as_ref().map(|e| {
        e.api_url
            .clone()
            .unwrap_or_else(|| api_url(cfg.web.listen, &hostname, tls.is_some()))
    });
    if let Some(u) = api_url.as_deref() {
        if u.starts_with("https://") != tls.is_some() {
            let listener = if tls.is_some() { "TLS" } else { "plain HTTP" };
            warn!(api_url = %u, "[etcd] api_url does not match the listener ({listener}): the other nodes cannot reach this node's API through it");
        }
    }
    // With [mongodb], run records go through the spool in the same SQLite
    // file to MongoDB; jobs and watermarks stay in SQLite (DESIGN §1).
    let mongo = match &cfg.mongodb {
        None => None,
        Some(m) => Some(
            MongoRunStore::start(
                store.clone(),
                m,
                retention,
                metrics.clone(),
                stop_rx.clone(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("cannot set up the MongoDB run store: {e}"))?,
        ),
    };
    // With [etcd], jobs, claims and nodes live in etcd (cluster mode).
    let cluster = match (&cfg.etcd, &mongo) {
        (Some(e), Some(m)) => Some(
            EtcdCoord::start(
                e,
                ClusterParts {
                    info: node_info(
                        &cfg,
                        &node_id,
                        &hostname,
                        clock.now(),
                        (api_url.clone(), tls.as_ref().map(|t| t.fingerprint.clone())),
                    ),
                    node: NodeIdentity {
                        id: node_id.clone(),
                        hostname: hostname.clone(),
                    },
                    mirror: store.clone(),
                    local: m.coord(),
                    runs: m.clone(),
                    clock_gauges: metrics.clock_gauges(),
                    api_url: api_url.clone().unwrap_or_default(),
                },
                stop_rx.clone(),
            )
            .await
            .map_err(|e| match e {
                StartError::IdTaken(m) => anyhow::Error::new(NodeIdTaken(m)),
                StartError::Other(m) => anyhow::anyhow!("cannot join the cluster: {m}"),
            })?,
        ),
        (Some(_), None) => anyhow::bail!("cluster mode ([etcd]) needs a [mongodb] section"),
        (None, _) => None,
    };
    // One admin token for the whole cluster (requests reach the leader
    // through any node).
    let token = match &cluster {
        None => token,
        Some(c) => match c.admin_token(&token).await {
            Ok((t, _)) if t == token => t,
            Ok((t, by)) => {
                node::write_private(&token_path, format!("{t}\n").as_bytes(), false)
                    .with_context(|| format!("cannot write {}", token_path.display()))?;
                info!(path = %token_path.display(), bootstrapped_by = %by, "using the cluster's admin token");
                t
            }
            Err(e) => {
                warn!("cannot agree on the cluster's admin token ({e}); this node's own token works on this node only");
                token
            }
        },
    };
    let (coord, runs): (Arc<dyn CoordStore>, Arc<dyn RunStore>) = match (&cluster, &mongo) {
        (Some(c), Some(m)) => (
            c.clone(),
            Arc::new(ClusterRuns {
                inner: m.clone(),
                coord: c.clone(),
            }),
        ),
        (_, None) => (store.clone(), store.clone()),
        (None, Some(m)) => (Arc::new(m.coord()), m.clone()),
    };
    let lead = cfg.etcd.as_ref().map_or(cfg.scheduler.lead.0, |e| e.lead.0);

    let (exec_tx, exec_rx) = tokio::sync::mpsc::unbounded_channel();
    let forward_tx = exec_tx.clone();
    let mut adopt_task = None;
    let mut adopted_keys = std::collections::HashSet::new();
    let exec = match executor {
        None => Executor::new(cfg.exec_policy(), &state_dir, exec_tx)
            .context("cannot start the executor")?,
        Some(fd) => {
            let (client, adopted) = privsep::ExecClient::connect(fd, exec_tx)
                .context("cannot reach the executor process")?;
            let relay = client.clone();
            notify::set_relay(Box::new(move |lines| relay.notify(lines)));
            // Results of runs a previous agent started reach the scheduler,
            // which re-adopts them (see `Scheduler::recover_lost`).
            adopted_keys = adopted.keys.clone();
            adopt_task = Some(tokio::spawn(privsep::forward_adopted(adopted, forward_tx)));
            Executor::Remote(client)
        }
    };
    let exec_for_reload = exec.clone();
    let (scheduler, handle) = Scheduler::new(Parts {
        cfg: SchedulerConfig {
            lead,
            drain_timeout: cfg.scheduler.drain_timeout.0,
            step_tolerance: cfg.scheduler.clock_step_tolerance.0,
            max_concurrent: cfg.scheduler.max_concurrent_runs,
            state_dir: state_dir.clone(),
        },
        clock: clock.clone(),
        node: NodeIdentity {
            id: node_id.clone(),
            hostname: hostname.clone(),
        },
        coord: coord.clone(),
        runs: runs.clone(),
        exec,
        exec_events: exec_rx,
        adopted: adopted_keys,
        metrics: metrics.clone(),
        cluster: cluster.clone().map(|c| c as Arc<dyn ClusterView>),
    })
    .await
    .context("cannot start the scheduler")?;

    // Accounts, tokens, the session key and the audit log: the node's
    // SQLite file standalone, etcd in a cluster (shared by every node).
    let (auth_store, cluster_auth): (Arc<dyn AuthStore>, _) = match &cluster {
        None => (store.clone(), None),
        Some(c) => {
            let a = Arc::new(c.auth_store());
            (a.clone(), Some(a))
        }
    };
    let node_in_cluster = cluster.as_ref().map(|_| node_id.as_str());
    let (auth, mut auth_tasks) = start_auth(
        &cfg,
        auth_store,
        &token,
        &state_dir,
        node_in_cluster,
        api_url.as_deref(),
        stop_rx.clone(),
    )
    .await?;
    let state = AppState {
        coord,
        runs: runs.clone(),
        sched: handle.clone(),
        clock: clock.clone(),
        default_tz: cfg.scheduler.timezone.clone(),
        node: Arc::new(NodeFacts {
            id: node_id.clone(),
            hostname,
            groups: cfg.node.groups.clone(),
            labels: cfg.node.labels.clone(),
            started_at: clock.now(),
        }),
        metrics: metrics.clone(),
        auth,
        state_dir: state_dir.clone(),
        cluster: cluster.clone(),
        proxy: Arc::new(crate::coord::proxy::Proxy::new(&token)),
    };
    let metrics_for_status = metrics.clone();
    let (http_stop_tx, http_stop_rx) = watch::channel(false);

    let tcp = TcpListener::bind(cfg.web.listen)
        .await
        .with_context(|| format!("cannot listen on {} ([web] listen)", cfg.web.listen))?;
    let app = api::router(state.clone());
    let mut servers = Vec::new();
    servers.push(match tls {
        None => tokio::spawn(serve_tcp(tcp, app.clone(), http_stop_rx.clone())),
        Some(tls) => tokio::spawn(crate::tls::serve(
            tcp,
            app.clone(),
            tls.acceptor,
            http_stop_rx.clone(),
        )),
    });
    if let Some(sock) = cfg.socket() {
        let listener = bind_socket(sock)?;
        servers.push(tokio::spawn(serve_unix(
            listener,
            app,
            http_stop_rx.clone(),
        )));
        info!(socket = %sock.display(), "local API socket ready");
    }
    let run_store = cfg.mongodb.as_ref().map_or_else(
        || "sqlite".to_string(),
        |m| format!("mongodb {} (database {})", m.redacted_uri(), m.database),
    );
    let mode = cfg.etcd.as_ref().map_or_else(
        || "standalone".to_string(),
        |e| format!("cluster, {}", describe(e)),
    );
    info!(node = %node_id, listen = %cfg.web.listen, state_dir = %state_dir.display(), run_store = %run_store, "cronsund ready ({mode})");

    let sched_task = tokio::spawn(scheduler.run(stop_rx.clone()));
    if let Some(c) = &cluster {
        c.start_ops(handle.clone(), stop_rx.clone()); // run-now, kill, drain via etcd
    }
    let (retention_tx, retention_rx) = watch::channel(retention);
    // Leader-only duties: retention and lost-run reconciliation.
    let duty = cluster
        .as_ref()
        .map_or(Duty::Always, |c| Duty::Leader(c.clone()));
    let retention_task = tokio::spawn(retention_loop(
        runs.clone(),
        clock.clone(),
        duty,
        retention_rx,
        stop_rx.clone(),
    ));
    let reconcile_task = match (&cluster, &cfg.etcd) {
        (Some(c), Some(e)) => Some(tokio::spawn(
            crate::coord::duties::Reconciler {
                coord: c.clone(),
                runs,
                sched: handle.clone(),
                clock: clock.clone(),
                metrics: metrics.clone(),
                every: e.lease_ttl.0,
                grace: e.lease_ttl.0 * 2,
            }
            .run(stop_rx.clone()),
        )),
        _ => None,
    };
    let live = reload::Live {
        sched: handle.clone(),
        exec: exec_for_reload,
        retention: retention_tx,
    };
    if let (Some(c), Some(a)) = (&cluster, cluster_auth) {
        let c = c.clone();
        auth_tasks.push(tokio::spawn(
            a.retention_loop(move || c.is_leader(), stop_rx.clone()),
        ));
    }
    let pause_task = cluster.as_ref().map(|c| {
        tokio::spawn(follow_pause(
            c.pause_feed(),
            handle.clone(),
            stop_rx.clone(),
        ))
    });
    notify_ready(&handle);
    let status_task = tokio::spawn(status_loop(metrics_for_status, stop_rx.clone()));

    wait_for_stop(config_path, cfg.clone(), &live).await;
    info!("stopping: no new runs; draining");
    notify::send("STOPPING=1\nSTATUS=draining: no new runs");
    let _ = stop_tx.send(true);
    let _ = status_task.await;
    if let Err(e) = sched_task.await {
        error!("scheduler task failed: {e}");
    }
    let _ = retention_task.await;
    if let Some(t) = reconcile_task {
        let _ = t.await;
    }
    if let Some(t) = pause_task {
        let _ = t.await;
    }
    for t in auth_tasks {
        let _ = t.await;
    }
    if let Some(c) = &cluster {
        c.stopped().await;
    }
    if let Some(t) = adopt_task {
        t.abort();
    }
    if let Some(m) = &mongo {
        m.stopped().await;
    }
    let _ = http_stop_tx.send(true);
    for s in servers {
        let _ = s.await;
    }
    if let Some(sock) = cfg.socket() {
        let _ = std::fs::remove_file(sock);
    }
    info!("cronsund stopped");
    Ok(())
}

/// Accounts, sessions and tokens: the session key, the first admin account
/// (its password file's path is logged, never the password). A cluster
/// node (`node`) that cannot reach etcd yet starts with a temporary session
/// key and bootstraps in the background (the returned task) until it can.
async fn start_auth(
    cfg: &Config,
    store: Arc<dyn AuthStore>,
    admin_token: &str,
    state_dir: &Path,
    node: Option<&str>,
    api_url: Option<&str>,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(Arc<Auth>, Vec<tokio::task::JoinHandle<()>>)> {
    let (key, tasks) =
        api::auth::bootstrap::bootstrap_or_later(store.clone(), state_dir, node, stop).await?;
    let auth = Arc::new(Auth {
        store,
        admin_token: TokenCheck::new(admin_token),
        key,
        limiter: Default::default(),
        session_ttl: cfg.web.session_ttl.0,
        secure: cfg.web.transport() != crate::config::Transport::Plain,
        hosts: allowed_hosts(cfg, api_url),
        default_run_as: cfg.security.default_run_as.clone(),
    });
    Ok((auth, tasks))
}

/// The TLS setup of the TCP listener (`None`: plain HTTP), logging what
/// it serves: the certificate's fingerprint, or that plain HTTP is exposed.
fn listener_tls(cfg: &Config, state_dir: &Path) -> anyhow::Result<Option<crate::tls::Tls>> {
    use crate::config::Transport;
    let tls = match cfg.web.transport() {
        Transport::Plain => {
            if !cfg.web.listen.ip().is_loopback() {
                warn!(listen = %cfg.web.listen, "serving plain HTTP on a non-loopback address because [web] insecure_plaintext = true: passwords, cookies and tokens cross the network unencrypted");
            }
            return Ok(None);
        }
        Transport::Tls { cert, key } => crate::tls::load(&cert, &key)?,
        Transport::SelfSigned => {
            let mut names: Vec<String> = cfg
                .web
                .allowed_hosts(&node::hostname())
                .into_iter()
                .filter(|h| !h.starts_with('['))
                .collect();
            if cfg.web.listen.ip().is_unspecified() {
                names.retain(|n| {
                    n.parse::<std::net::IpAddr>()
                        .map_or(true, |ip| !ip.is_unspecified())
                });
            }
            let (tls, created) = crate::tls::self_signed(state_dir, &names)?;
            if created {
                info!(cert = %tls.cert_path.display(), names = ?names, "created a self-signed TLS certificate");
            }
            tls
        }
    };
    info!(listen = %cfg.web.listen, cert = %tls.cert_path.display(), fingerprint = %tls.fingerprint, "serving HTTPS; certificate SHA-256 fingerprint");
    Ok(Some(tls))
}

/// `http://` or `https://` (`tls`) + the listen address (the hostname when
/// it listens on all addresses): how other nodes reach this one's API by
/// default.
fn api_url(listen: std::net::SocketAddr, hostname: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if listen.ip().is_unspecified() {
        format!("{scheme}://{hostname}:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}

/// The Host names the API accepts: `[web]`'s, plus the host of `[etcd]
/// api_url` (the Host proxied requests carry).
fn allowed_hosts(cfg: &Config, api_url: Option<&str>) -> Vec<String> {
    let mut hosts = cfg.web.allowed_hosts(&node::hostname());
    let host = api_url
        .and_then(|u| u.parse::<axum::http::Uri>().ok())
        .and_then(|u| u.host().map(str::to_ascii_lowercase));
    if let Some(h) = host {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts
}

/// This node's facts as registered in etcd.
fn node_info(
    cfg: &Config,
    id: &str,
    hostname: &str,
    now: jiff::Timestamp,
    (api_url, tls_fingerprint): (Option<String>, Option<String>),
) -> cronsun_proto::api::NodeInfo {
    cronsun_proto::api::NodeInfo {
        id: id.to_string(),
        hostname: hostname.to_string(),
        api_url,
        tls_fingerprint,
        version: env!("CARGO_PKG_VERSION").into(),
        tzdata: cronsun_proto::schedule::tzdata_version(),
        groups: cfg.node.groups.clone(),
        labels: cfg.node.labels.clone(),
        started_at: now,
        last_seen: now,
        alive: true,
        running: 0,
        clock_ok: false,
        draining: false,
        clock_offset_ms: None,
        clock_problem: None,
    }
}

/// Applies global pause changes made on any node to this node's scheduler.
async fn follow_pause(
    mut feed: watch::Receiver<cronsun_proto::api::GlobalPause>,
    sched: crate::scheduler::SchedulerHandle,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = feed.changed() => {
                if r.is_err() {
                    return;
                }
                let paused = feed.borrow_and_update().paused;
                if let Err(e) = sched.set_global_pause(paused).await {
                    warn!("cannot apply the cluster's pause switch: {e}");
                }
            }
            _ = stop.changed() => return,
        }
    }
}

fn prepare_state_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("output"))
        .with_context(|| format!("cannot create the state dir {}", dir.display()))?;
    // With privilege separation the executor owns and has set up the dir.
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(dir)?);
    if owner == nix::unistd::geteuid().as_raw() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))
            .with_context(|| format!("cannot set permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// Binds the local socket: removes a stale socket file (never anything
/// else), then restricts it to its owner and group `cronsun-admin`.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {} ([web] socket)", parent.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
        } else {
            anyhow::bail!(
                "{} exists and is not a socket ([web] socket)",
                path.display()
            );
        }
    }
    let l = UnixListener::bind(path).with_context(|| {
        format!(
            "cannot bind the local socket {} ([web] socket)",
            path.display()
        )
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Ok(Some(g)) = nix::unistd::Group::from_name(api::auth::ADMIN_GROUP) {
        let _ = nix::unistd::chown(path, None, Some(g.gid));
    }
    Ok(l)
}

async fn serve_tcp(l: TcpListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let r = axum::serve(
        l,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    })
    .await;
    if let Err(e) = r {
        error!("HTTP server failed: {e}");
    }
}

async fn serve_unix(l: UnixListener, app: axum::Router, mut stop: watch::Receiver<bool>) {
    let r = axum::serve(l, app.into_make_service_with_connect_info::<PeerCred>())
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await;
    if let Err(e) = r {
        error!("local socket server failed: {e}");
    }
}

fn notify_ready(handle: &crate::scheduler::SchedulerHandle) {
    notify::send(&format!(
        "READY=1\nSTATUS=ready; {} runs in progress",
        handle.running_total()
    ));
}

/// STATUS lines (jobs loaded, runs in progress; this standalone node is its
/// own leader) and, when systemd set `WatchdogSec=`, watchdog pings at half
/// the interval: the ping comes from the runtime, so a wedged runtime is
/// restarted. No-ops without systemd.
async fn status_loop(metrics: Metrics, mut stop: watch::Receiver<bool>) {
    let every = notify::watchdog().map_or(STATUS_EVERY, |w| (w / 2).min(STATUS_EVERY));
    let ping = if notify::watchdog().is_some() {
        "\nWATCHDOG=1"
    } else {
        ""
    };
    loop {
        notify::send(&format!(
            "STATUS={} jobs loaded, {} running; standalone (leader){ping}",
            metrics.jobs.get(),
            metrics.running.get()
        ));
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Waits for SIGTERM or SIGINT. SIGHUP reloads what can change at runtime
/// and says what needs a restart (see [`reload`]).
async fn wait_for_stop(config_path: &Path, mut running: Config, live: &reload::Live) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        error!("cannot install signal handlers; stopping");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => live.reload(config_path, &mut running).await,
        }
    }
}

/// Applies retention every hour, and at once when a reload changes it.
async fn retention_loop(
    runs: Arc<dyn RunStore>,
    clock: Clock,
    duty: Duty,
    mut policy: watch::Receiver<Retention>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let current = *policy.borrow_and_update();
        // One node prunes the shared run store: the leader (cluster mode).
        if duty.holds() {
            match runs.retain(current, clock.now()).await {
                Ok(0) => {}
                Ok(n) => info!(deleted = n, "retention removed old run records"),
                Err(e) => warn!("retention failed: {e}"),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(RETENTION_EVERY) => {}
            r = policy.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
