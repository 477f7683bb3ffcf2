//! API errors: always JSON ([`ApiError`]) with a code, a message and, when a
//! field caused it, the field.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cronsun_proto::api::ApiError;
use cronsun_proto::ValidationError;

use crate::scheduler::RequestError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct Failure {
    pub status: StatusCode,
    pub body: ApiError,
}

pub type ApiResult<T> = Result<T, Failure>;

impl Failure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Failure {
        let error = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid",
            StatusCode::SERVICE_UNAVAILABLE => "unavailable",
            StatusCode::MISDIRECTED_REQUEST => "wrong_host",
            StatusCode::TOO_MANY_REQUESTS => "rate_limited",
            _ => "internal",
        };
        Failure {
            status,
            body: ApiError {
                error: error.into(),
                message: message.into(),
                field: None,
            },
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> Failure {
        self.body.field = Some(field.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Failure {
        Failure::new(StatusCode::CONFLICT, message)
    }

    /// A job refused by validation; `prefix` locates it in a batch (`jobs[2].`).
    pub fn invalid(e: ValidationError, prefix: &str) -> Failure {
        let field = format!("{prefix}{}", e.field);
        Failure::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("{field}: {}", e.message),
        )
        .field(field)
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        let status = match &e {
            StoreError::Conflict { .. } | StoreError::Stale { .. } | StoreError::Exists(_) => {
                StatusCode::CONFLICT
            }
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::BadCursor => StatusCode::BAD_REQUEST,
            StoreError::Backend(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        let f = Failure::new(status, e.to_string());
        match e {
            StoreError::BadCursor => f.field("cursor"),
            _ => f,
        }
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Failure {
        let status = match &e {
            RequestError::NotFound(_) => StatusCode::NOT_FOUND,
            RequestError::Conflict(_) => StatusCode::CONFLICT,
            RequestError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Failure::new(status, e.to_string())
    }
}
