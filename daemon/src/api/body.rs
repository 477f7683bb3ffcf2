//! Request extractors whose rejections are JSON [`ApiError`]s naming the
//! field (`rules[0].schedule: invalid type ...`), never plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use bytes_limit::MAX_BODY;
use serde::de::DeserializeOwned;

use super::error::Failure;

mod bytes_limit {
    /// Largest accepted request body (a job apply of a few thousand jobs).
    pub const MAX_BODY: usize = 16 * 1024 * 1024;
}

/// A JSON body.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Failure> {
        let body = read_body(req).await?;
        parse_json(&body).map(JsonBody)
    }
}

async fn read_body(req: Request) -> Result<axum::body::Bytes, Failure> {
    axum::body::to_bytes(req.into_body(), MAX_BODY)
        .await
        .map_err(|e| {
            Failure::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("cannot read body: {e}"),
            )
        })
}

/// Parses JSON, naming the path of the offending field.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Failure> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            Failure::bad_request(format!("invalid JSON body: {inner}"))
        } else {
            Failure::bad_request(format!("{path}: {inner}")).field(path)
        }
    })
}

/// Query parameters.
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Failure> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(QueryArgs)
            .map_err(|e| {
                let path = e.path().to_string();
                Failure::bad_request(format!("query parameter {path}: {}", e.into_inner()))
                    .field(path)
            })
    }
}

/// A JSON body that may be absent (empty body → `None`).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = Failure;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Failure> {
        let body = read_body(req).await?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(None));
        }
        parse_json(&body).map(|v| OptionalJson(Some(v)))
    }
}
