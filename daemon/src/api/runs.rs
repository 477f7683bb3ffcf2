//! `/api/v1/runs`: search, show, live output (SSE) and kill.

use std::convert::Infallible;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse as _, Response};
use axum::Json;
use cronsun_proto::api::{RunPage, RunQuery};
use cronsun_proto::RunRecord;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

use super::auth::Principal;
use super::body::QueryArgs;
use super::error::{ApiResult, Failure};
use super::AppState;

/// Poll interval of a followed output file while its run is going.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// Poll interval of the run store for a run on another node.
const REMOTE_POLL: Duration = Duration::from_millis(250);
/// Largest chunk sent in one SSE event.
const CHUNK: usize = 16 * 1024;

#[utoipa::path(get, path = "/api/v1/runs", tag = "runs", params(RunQuery),
    responses((status = 200, body = RunPage)))]
pub async fn search(
    State(s): State<AppState>,
    p: Principal,
    QueryArgs(q): QueryArgs<RunQuery>,
) -> ApiResult<Json<RunPage>> {
    if let Some(l) = q.limit {
        if l == 0 || l > 1000 {
            return Err(Failure::bad_request("limit must be between 1 and 1000").field("limit"));
        }
    }
    let mut page = s.runs.search(&q).await?;
    if !p.groups.is_empty() {
        // Group-scoped callers see the runs of their groups' jobs only (a
        // page may then hold fewer than `limit`; follow `next_cursor`).
        let visible: std::collections::HashSet<String> = s
            .coord
            .list_jobs()
            .await?
            .into_iter()
            .filter(|j| p.sees_group(&j.group))
            .map(|j| j.id)
            .collect();
        page.runs.retain(|r| visible.contains(&r.job_id));
    }
    // Running attempts on this node: the in-memory view is fresher.
    for r in page
        .runs
        .iter_mut()
        .filter(|r| r.status == cronsun_proto::RunStatus::Running)
    {
        if let Some(mut live) = s.sched.active(&r.record_id()) {
            live.output_head.clear();
            live.output_tail.clear();
            *r = live;
        }
    }
    Ok(Json(page))
}

/// A run the caller's groups cover (by its job's group; the runs of a
/// deleted job are visible to unscoped callers only).
async fn find(s: &AppState, p: &Principal, id: &str) -> ApiResult<RunRecord> {
    let rec = find_any(s, id).await?;
    if !p.groups.is_empty() {
        match s.coord.get_job(&rec.job_id).await? {
            Some(job) => p.require_job(&job)?,
            None => {
                return Err(super::auth::principal::forbidden(format!(
                    "run {id:?} belongs to job {:?}, which no longer exists: only callers without group scope see it",
                    rec.job_id
                )))
            }
        }
    }
    Ok(rec)
}

async fn find_any(s: &AppState, id: &str) -> ApiResult<RunRecord> {
    let rec = s
        .runs
        .get(id)
        .await?
        .ok_or_else(|| Failure::not_found(format!("run {id:?} not found")))?;
    // A running attempt's in-memory view is fresher than its `running` record.
    Ok(s.sched.active(&rec.record_id()).unwrap_or(rec))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "<run_id>#<attempt> (URL-encoded) or a run id")),
    responses((status = 200, body = RunRecord), (status = 404, body = cronsun_proto::api::ApiError)))]
pub async fn show(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RunRecord>> {
    let mut rec = find(&s, &p, &id).await?;
    if !p.may_read_output() {
        // Reading output is a permission of its own (DESIGN §5).
        rec.output_head.clear();
        rec.output_tail.clear();
    }
    Ok(Json(rec))
}

#[utoipa::path(post, path = "/api/v1/runs/{id}/kill", tag = "runs",
    responses((status = 202), (status = 404, body = cronsun_proto::api::ApiError),
              (status = 409, body = cronsun_proto::api::ApiError)))]
pub async fn kill(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let rec = find(&s, &p, &id).await?;
    let now = s.clock.now();
    let elsewhere = rec.node_id != s.node.id && s.sched.active(&rec.record_id()).is_none();
    let body = match &s.cluster {
        // Another node runs it: ask that node through etcd (`kill/`).
        Some(c) if elsewhere => {
            if rec.status.is_final() {
                return Err(Failure::conflict(format!(
                    "run {} already finished ({})",
                    rec.record_id(),
                    rec.status
                )));
            }
            c.request_kill(&rec, &p.user, now).await?;
            serde_json::json!({ "node": rec.node_id, "via": "etcd" })
        }
        _ => {
            s.sched.kill(&id).await?;
            serde_json::json!({ "node": s.node.id })
        }
    };
    s.auth
        .store
        .append_audit(p.audit("run.kill", &id, now))
        .await?;
    Ok((StatusCode::ACCEPTED, Json(body)))
}

#[utoipa::path(get, path = "/api/v1/runs/{id}/stream", tag = "runs",
    responses((status = 200, description = "text/event-stream: `output` events with JSON string chunks, then one `end` event with the final RunRecord")))]
pub async fn stream(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    p.require_output()?;
    // Subscribe before reading the status, so the end cannot slip between.
    let finished = s.sched.subscribe_finished();
    let rec = find(&s, &p, &id).await?;
    // Cluster mode: a run on another node streams from there.
    if let Some(resp) = crate::coord::owner::stream_from_owner(&s, &rec).await {
        return Ok(resp);
    }
    let (tx, rx) = mpsc::channel::<Event>(32);
    let path = crate::exec::output_path(&s.state_dir, &rec.record_id());
    let runs = s.runs.clone();
    let here = rec.node_id == s.node.id || s.sched.active(&rec.record_id()).is_some();
    if here || rec.status.is_final() {
        tokio::spawn(follow(rec, path, finished, runs, tx));
    } else {
        tokio::spawn(follow_elsewhere(rec.record_id(), runs, tx));
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn output_event(text: &str) -> Event {
    Event::default()
        .event("output")
        .data(serde_json::to_string(text).unwrap_or_default())
}

fn end_event(rec: &RunRecord) -> Event {
    Event::default()
        .event("end")
        .data(serde_json::to_string(rec).unwrap_or_default())
}

/// Streams a run's output file while it runs, then its final record. The
/// file is held open, so its removal after the run does not cut the tail.
async fn follow(
    rec: RunRecord,
    path: PathBuf,
    mut finished: tokio::sync::broadcast::Receiver<std::sync::Arc<RunRecord>>,
    runs: std::sync::Arc<dyn crate::store::RunStore>,
    tx: mpsc::Sender<Event>,
) {
    let key = rec.record_id();
    if rec.status.is_final() {
        let _ = tx.send(output_event(&rec.output_text())).await;
        let _ = tx.send(end_event(&rec)).await;
        return;
    }
    let mut file = tokio::fs::File::open(&path).await.ok();
    let mut sent: u64 = 0;
    let mut pending: Vec<u8> = Vec::new();
    loop {
        if file.is_none() {
            file = tokio::fs::File::open(&path).await.ok();
        }
        if let Some(f) = file.as_mut() {
            if !pump(f, &mut pending, &mut sent, &tx).await {
                return;
            }
        }
        tokio::select! {
            r = finished.recv() => match r {
                Ok(done) if done.record_id() == key => {
                    if let Some(f) = file.as_mut() {
                        pump(f, &mut pending, &mut sent, &tx).await;
                    }
                    if sent == 0 && done.output_bytes > 0 {
                        let _ = tx.send(output_event(&done.output_text())).await;
                    }
                    let _ = tx.send(end_event(&done)).await;
                    return;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    // We may have missed our end: ask the store.
                    if let Ok(Some(r)) = runs.get(&key).await {
                        if r.status.is_final() {
                            let _ = tx.send(end_event(&r)).await;
                            return;
                        }
                    }
                }
                Err(_) => return,
            },
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return,
        }
    }
}

/// A run on another node (cluster): its output file is there, so the
/// stream polls the run store and sends the output (head and tail) with
/// the end once the final record arrives.
async fn follow_elsewhere(
    key: String,
    runs: std::sync::Arc<dyn crate::store::RunStore>,
    tx: mpsc::Sender<Event>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(REMOTE_POLL) => {}
            _ = tx.closed() => return,
        }
        if let Ok(Some(r)) = runs.get(&key).await {
            if r.status.is_final() {
                let _ = tx.send(output_event(&r.output_text())).await;
                let _ = tx.send(end_event(&r)).await;
                return;
            }
        }
    }
}

/// Sends whatever the file has beyond what was sent. UTF-8 sequences split
/// across reads are held back until complete. Returns false if the client left.
async fn pump(
    f: &mut tokio::fs::File,
    pending: &mut Vec<u8>,
    sent: &mut u64,
    tx: &mpsc::Sender<Event>,
) -> bool {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match f.read(&mut buf).await {
            Ok(0) | Err(_) => return true,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let cut = match std::str::from_utf8(pending) {
            Ok(_) => pending.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        if cut == 0 {
            continue;
        }
        let text = String::from_utf8_lossy(&pending[..cut]).into_owned();
        pending.drain(..cut);
        *sent += cut as u64;
        if tx.send(output_event(&text)).await.is_err() {
            return false;
        }
    }
}
