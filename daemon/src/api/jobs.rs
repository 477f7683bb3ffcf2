//! `/api/v1/jobs`: list, show, create, update (with revision), apply,
//! delete, pause, resume, run now.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronsun_proto::api::{
    ApplyRequest, ApplyResult, JobList, JobState, JobView, PauseRequest, RunNowRequest,
    RunNowResponse,
};
use cronsun_proto::job::ValidateContext;
use cronsun_proto::Job;

use super::auth::Principal;
use super::body::{JsonBody, OptionalJson};
use super::error::{ApiResult, Failure};
use super::AppState;
use crate::store::{CoordOp, Expect};

impl AppState {
    fn validate_ctx(&self) -> ValidateContext {
        ValidateContext {
            default_timezone: self.default_tz.clone(),
            now: self.clock.now(),
            allow_past_at: false,
        }
    }

    async fn view(&self, job: Job, last: Option<cronsun_proto::api::LastRun>) -> JobView {
        JobView {
            state: JobState {
                next_run: self.sched.next_run(&job.id),
                last_run: last,
                running: self.sched.running_count(&job.id),
            },
            job: job.redacted(),
        }
    }

    async fn stored_job(&self, id: &str) -> ApiResult<Job> {
        self.coord
            .get_job(id)
            .await?
            .ok_or_else(|| Failure::not_found(format!("job {id:?} not found")))
    }

    /// A stored job the caller's groups cover.
    pub(super) async fn visible_job(&self, p: &Principal, id: &str) -> ApiResult<Job> {
        let job = self.stored_job(id).await?;
        p.require_job(&job)?;
        Ok(job)
    }

    /// Refuses a job the caller may not write: outside their groups, or
    /// with a privileged `run_as` without that permission.
    fn check_writable(&self, p: &Principal, job: &Job) -> ApiResult<()> {
        p.require_job(job)?;
        p.require_run_as(job, &self.auth.default_run_as)
    }

    /// Applies `ops` with an audit entry of `action` on `target`.
    async fn audited(
        &self,
        p: &Principal,
        action: &str,
        target: &str,
        before: Option<serde_json::Value>,
        ops: Vec<CoordOp>,
    ) -> ApiResult<Vec<Job>> {
        let now = self.clock.now();
        let mut entry = p.audit(action, target, now);
        entry.before = before;
        Ok(self.coord.apply_audited(ops, entry, now).await?)
    }
}

/// A job as audit entries show it (secrets redacted).
pub(super) fn audit_value(job: &Job) -> Option<serde_json::Value> {
    serde_json::to_value(job.redacted()).ok()
}

/// The first stored job of an audited write.
fn first(stored: Vec<Job>) -> ApiResult<Job> {
    stored.into_iter().next().ok_or_else(|| {
        Failure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store returned no job",
        )
    })
}

#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs", responses((status = 200, body = JobList)))]
pub async fn list(State(s): State<AppState>, p: Principal) -> ApiResult<Json<JobList>> {
    let mut jobs = s.coord.list_jobs().await?;
    jobs.retain(|j| p.sees_group(&j.group));
    let mut latest: HashMap<String, _> = s.runs.latest_per_job().await?.into_iter().collect();
    let mut out = Vec::with_capacity(jobs.len());
    for j in jobs {
        let last = latest.remove(&j.id);
        out.push(s.view(j, last).await);
    }
    Ok(Json(JobList { jobs: out }))
}

#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs",
    responses((status = 200, body = JobView), (status = 404, body = cronsun_proto::api::ApiError)))]
pub async fn show(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let job = s.visible_job(&p, &id).await?;
    let rev = job.revision;
    let last = s
        .runs
        .latest_per_job()
        .await?
        .into_iter()
        .find(|(j, _)| *j == id)
        .map(|(_, l)| l);
    let view = s.view(job, last).await;
    Ok(with_etag(rev, Json(view)))
}

fn with_etag(rev: u64, body: impl IntoResponse) -> Response {
    let mut r = body.into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{rev}\"")) {
        r.headers_mut().insert(header::ETAG, v);
    }
    r
}

#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs", request_body = Job,
    responses((status = 201, body = Job), (status = 409, body = cronsun_proto::api::ApiError),
              (status = 422, body = cronsun_proto::api::ApiError)))]
pub async fn create(
    State(s): State<AppState>,
    p: Principal,
    JsonBody(mut job): JsonBody<Job>,
) -> ApiResult<Response> {
    job.validate(&s.validate_ctx())
        .map_err(|e| Failure::invalid(e, ""))?;
    s.check_writable(&p, &job)?;
    let id = job.id.clone();
    let stored = first(
        s.audited(
            &p,
            "job.create",
            &id,
            None,
            vec![CoordOp::PutJob(Box::new(job), Expect::Absent)],
        )
        .await?,
    )?;
    let rev = stored.revision;
    Ok(with_etag(
        rev,
        (StatusCode::CREATED, Json(stored.redacted())),
    ))
}

/// The revision an `If-Match: "<n>"` header names, if there is one.
pub(super) fn if_match(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .unwrap_or("")
        .trim()
        .trim_start_matches("W/")
        .trim_matches('"');
    s.parse().map(Some).map_err(|_| {
        Failure::bad_request(format!(
            "If-Match must be a revision such as \"12\", got {s:?}"
        ))
        .field("If-Match")
    })
}

/// The revision an update names: `If-Match: "<n>"`, else the body's `revision`.
fn expected_revision(headers: &HeaderMap, body_rev: u64) -> ApiResult<u64> {
    if let Some(r) = if_match(headers)? {
        return Ok(r);
    }
    if body_rev != 0 {
        return Ok(body_rev);
    }
    Err(Failure::conflict(
        "an update must name the revision it changes: send If-Match: \"<revision>\" (from GET's ETag) or the job's revision field",
    )
    .field("revision"))
}

#[utoipa::path(put, path = "/api/v1/jobs/{id}", tag = "jobs", request_body = Job,
    params(("If-Match" = String, Header, description = "revision being replaced")),
    responses((status = 200, body = Job), (status = 409, body = cronsun_proto::api::ApiError),
              (status = 422, body = cronsun_proto::api::ApiError)))]
pub async fn update(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonBody(mut job): JsonBody<Job>,
) -> ApiResult<Response> {
    if job.id != id {
        return Err(Failure::bad_request(format!(
            "the body's id {:?} differs from the path's {id:?}",
            job.id
        ))
        .field("id"));
    }
    let rev = expected_revision(&headers, job.revision)?;
    let stored = s.visible_job(&p, &id).await?;
    job.keep_secrets_from(&stored);
    job.validate(&s.validate_ctx())
        .map_err(|e| Failure::invalid(e, ""))?;
    s.check_writable(&p, &job)?;
    let saved = first(
        s.audited(
            &p,
            "job.update",
            &id,
            audit_value(&stored),
            vec![CoordOp::PutJob(Box::new(job), Expect::Revision(rev))],
        )
        .await?,
    )?;
    let rev = saved.revision;
    Ok(with_etag(rev, Json(saved.redacted())))
}

#[utoipa::path(post, path = "/api/v1/jobs/apply", tag = "jobs", request_body = ApplyRequest,
    responses((status = 200, body = ApplyResult), (status = 422, body = cronsun_proto::api::ApiError)))]
pub async fn apply(
    State(s): State<AppState>,
    p: Principal,
    JsonBody(req): JsonBody<ApplyRequest>,
) -> ApiResult<Json<ApplyResult>> {
    let ctx = s.validate_ctx();
    let mut seen = std::collections::HashSet::new();
    let mut jobs = req.jobs;
    for (i, job) in jobs.iter_mut().enumerate() {
        job.validate(&ctx)
            .map_err(|e| Failure::invalid(e, &format!("jobs[{i}].")))?;
        if !seen.insert(job.id.clone()) {
            return Err(Failure::invalid(
                cronsun_proto::ValidationError::new("id", format!("{:?} appears twice", job.id)),
                &format!("jobs[{i}]."),
            ));
        }
        s.check_writable(&p, job)?;
    }
    let existing: HashMap<String, Job> = s
        .coord
        .list_jobs()
        .await?
        .into_iter()
        .map(|j| (j.id.clone(), j))
        .collect();
    let mut result = ApplyResult::default();
    let mut writes = Vec::new();
    let mut before = serde_json::Map::new();
    for mut job in jobs {
        match existing.get(&job.id) {
            Some(old) => {
                p.require_job(old)?;
                job.keep_secrets_from(old);
                if job.same_definition(&Job {
                    revision: job.revision,
                    ..old.clone()
                }) {
                    result.unchanged.push(job.id.clone());
                    continue;
                }
                result.updated.push(job.id.clone());
                before.insert(job.id.clone(), audit_value(old).unwrap_or_default());
                writes.push(CoordOp::PutJob(
                    Box::new(job),
                    Expect::Revision(old.revision),
                ));
            }
            None => {
                result.created.push(job.id.clone());
                writes.push(CoordOp::PutJob(Box::new(job), Expect::Absent));
            }
        }
    }
    if !writes.is_empty() {
        let before = Some(serde_json::Value::Object(before));
        s.audited(&p, "job.apply", "jobs", before, writes).await?;
    }
    crate::node::release_free_memory();
    Ok(Json(result))
}

#[utoipa::path(delete, path = "/api/v1/jobs/{id}", tag = "jobs",
    responses((status = 204), (status = 404, body = cronsun_proto::api::ApiError)))]
pub async fn delete(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    let stored = s.visible_job(&p, &id).await?;
    // The revision checked is the one audited as `before`.
    let rev = if headers.contains_key(header::IF_MATCH) {
        expected_revision(&headers, 0)?
    } else {
        stored.revision
    };
    s.audited(
        &p,
        "job.delete",
        &id,
        audit_value(&stored),
        vec![CoordOp::DeleteJob(id.clone(), Expect::Revision(rev))],
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/pause", tag = "jobs", request_body = PauseRequest,
    responses((status = 200, body = Job)))]
pub async fn pause(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<PauseRequest>,
) -> ApiResult<Json<Job>> {
    let reason = body.and_then(|b| b.reason);
    set_paused(&s, &p, &id, Some(reason)).await
}

/// Pauses (`Some(reason)`) or resumes (`None`) a job. Resuming moves the
/// watermark to now: paused time is never missed.
async fn set_paused(
    s: &AppState,
    p: &Principal,
    id: &str,
    pause: Option<Option<String>>,
) -> ApiResult<Json<Job>> {
    let mut job = s.visible_job(p, id).await?;
    let before = audit_value(&job);
    let rev = job.revision;
    let mut ops = Vec::new();
    if pause.is_none() && job.paused {
        ops.push(CoordOp::SetWatermark(id.to_string(), s.clock.now()));
    }
    let action = if pause.is_some() {
        "job.pause"
    } else {
        "job.resume"
    };
    job.paused = pause.is_some();
    job.paused_reason = pause.flatten();
    ops.push(CoordOp::PutJob(Box::new(job), Expect::Revision(rev)));
    let saved = first(s.audited(p, action, id, before, ops).await?)?;
    Ok(Json(saved.redacted()))
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", tag = "jobs", responses((status = 200, body = Job)))]
pub async fn resume(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Job>> {
    set_paused(&s, &p, &id, None).await
}

#[utoipa::path(post, path = "/api/v1/jobs/{id}/run", tag = "jobs", request_body = RunNowRequest,
    responses((status = 202, body = RunNowResponse), (status = 409, body = cronsun_proto::api::ApiError)))]
pub async fn run_now(
    State(s): State<AppState>,
    p: Principal,
    Path(id): Path<String>,
    OptionalJson(body): OptionalJson<RunNowRequest>,
) -> ApiResult<(StatusCode, Json<RunNowResponse>)> {
    let job = s.visible_job(&p, &id).await?;
    if let Some(RunNowRequest { node: Some(_) }) = &body {
        p.require(cronsun_proto::auth::Role::Admin)
            .map_err(|e| e.field("node"))?;
    }
    if let Some(c) = &s.cluster {
        let node = body.and_then(|b| b.node);
        let accepted = c
            .request_run(&job, node.as_deref(), &p.user, s.clock.now())
            .await
            .map_err(|e| {
                // A refusal of a named node names the field.
                let f = Failure::from(e);
                match &node {
                    Some(_) if f.status != StatusCode::SERVICE_UNAVAILABLE => f.field("node"),
                    _ => f,
                }
            })?;
        let mut entry = p.audit("job.run", &id, s.clock.now());
        entry.after = Some(serde_json::json!({
            "request": accepted.request,
            "run_ids": accepted.run_ids,
        }));
        s.auth.store.append_audit(entry).await?;
        let run_id = accepted.run_ids.first().cloned().unwrap_or_default();
        return Ok((
            StatusCode::ACCEPTED,
            Json(RunNowResponse {
                run_id,
                request: Some(accepted.request),
                run_ids: accepted.run_ids,
            }),
        ));
    }
    if let Some(RunNowRequest { node: Some(n) }) = &body {
        if *n != s.node.id {
            return Err(Failure::bad_request(format!(
                "node {n:?} is not known here; this standalone node is {:?}",
                s.node.id
            ))
            .field("node"));
        }
    }
    let run_id = s.sched.run_now(&id).await?;
    let mut entry = p.audit("job.run", &id, s.clock.now());
    entry.after = Some(serde_json::json!({ "run_id": run_id }));
    s.auth.store.append_audit(entry).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(RunNowResponse {
            run_id,
            request: None,
            run_ids: Vec::new(),
        }),
    ))
}
