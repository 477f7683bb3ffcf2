//! The HTTP API under `/api/v1` (axum), served on TCP with Bearer tokens and
//! on a Unix socket authorised by peer credentials. Routes and bodies are
//! listed in `docs/ARCHITECTURE.md`; the OpenAPI document at
//! `/api/v1/openapi.json` is generated from the same handlers and types.

mod accounts;
mod audit;
pub mod auth;
mod body;
mod error;
mod jobs;
mod nodes;
mod openapi;
mod runs;
mod session;
mod stats;
mod system;
mod tokens;
mod ui;

use std::path::PathBuf;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use utoipa::OpenApi;

pub use auth::{Auth, PeerCred, Principal, TokenCheck};
pub use error::Failure;
use openapi::CommonResponses;
pub use system::VERSION;

use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::node::NodeFacts;
use crate::scheduler::SchedulerHandle;
use crate::store::{CoordStore, RunStore};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub coord: Arc<dyn CoordStore>,
    pub runs: Arc<dyn RunStore>,
    pub sched: SchedulerHandle,
    pub clock: Clock,
    pub default_tz: String,
    pub node: Arc<NodeFacts>,
    pub metrics: Metrics,
    pub auth: Arc<Auth>,
    pub state_dir: PathBuf,
    /// Cluster mode: the etcd coordination (node directory).
    pub cluster: Option<Arc<crate::store::etcd::EtcdCoord>>,
    /// Cluster mode: how this node reaches the web leader.
    pub proxy: Arc<crate::coord::proxy::Proxy>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cronsun API",
        description = "Distributed cron: jobs, runs, nodes."
    ),
    paths(
        jobs::list,
        jobs::show,
        jobs::create,
        jobs::update,
        jobs::apply,
        jobs::delete,
        jobs::pause,
        jobs::resume,
        jobs::run_now,
        runs::search,
        runs::show,
        runs::kill,
        runs::stream,
        stats::daily,
        system::health,
        system::nodes,
        nodes::drain,
        nodes::undrain,
        system::preview,
        system::pause_state,
        system::pause_all,
        system::resume_all,
        session::login,
        session::me,
        session::logout,
        session::login_token,
        accounts::list,
        accounts::create,
        accounts::update,
        accounts::delete,
        accounts::set_password,
        tokens::list,
        tokens::create,
        tokens::revoke,
        audit::search,
    ),
    components(schemas(cronsun_proto::api::ApiError)),
    modifiers(&CommonResponses)
)]
pub struct ApiDoc;

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".into())
}

/// Every route. `auth::identify` wraps all of them (Host check, who is
/// calling, CSRF); `auth::authorize` applies each API route's rule.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/v1/jobs", get(jobs::list).post(jobs::create))
        .route("/api/v1/jobs/apply", post(jobs::apply))
        .route(
            "/api/v1/jobs/{id}",
            get(jobs::show).put(jobs::update).delete(jobs::delete),
        )
        .route("/api/v1/jobs/{id}/pause", post(jobs::pause))
        .route("/api/v1/jobs/{id}/resume", post(jobs::resume))
        .route("/api/v1/jobs/{id}/run", post(jobs::run_now))
        .route(
            "/api/v1/pause",
            get(system::pause_state)
                .put(system::pause_all)
                .delete(system::resume_all),
        )
        .route("/api/v1/runs", get(runs::search))
        .route("/api/v1/runs/{id}", get(runs::show))
        .route("/api/v1/runs/{id}/stream", get(runs::stream))
        .route("/api/v1/runs/{id}/kill", post(runs::kill))
        .route("/api/v1/stats/daily", get(stats::daily))
        .route("/api/v1/nodes", get(system::nodes))
        .route("/api/v1/nodes/{id}/drain", post(nodes::drain))
        .route("/api/v1/nodes/{id}/undrain", post(nodes::undrain))
        .route("/api/v1/schedule/preview", get(system::preview))
        .route("/metrics", get(system::metrics))
        .route(
            "/api/v1/session",
            get(session::me)
                .post(session::login)
                .delete(session::logout),
        )
        .route("/api/v1/session/token", post(session::login_token))
        .route(
            "/api/v1/accounts",
            get(accounts::list).post(accounts::create),
        )
        .route(
            "/api/v1/accounts/{user}",
            axum::routing::put(accounts::update).delete(accounts::delete),
        )
        .route(
            "/api/v1/accounts/{user}/password",
            post(accounts::set_password),
        )
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{id}", axum::routing::delete(tokens::revoke))
        .route("/api/v1/audit", get(audit::search))
        .route_layer(axum::middleware::from_fn(auth::authorize));
    let doc = openapi_json();
    Router::new()
        .route("/healthz", get(system::health))
        .route(
            "/api/v1/openapi.json",
            get(move || async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    doc,
                )
            }),
        )
        .merge(api)
        .merge(ui::routes())
        .fallback(|| async { Failure::not_found("no such route; see /api/v1/openapi.json") })
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::identify,
        ))
        // Outermost: a node that is not the web leader hands the request on.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::coord::proxy::to_leader,
        ))
        .with_state(state)
}
