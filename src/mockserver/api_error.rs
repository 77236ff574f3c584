//! Error answers of the mock server, in the protocol's shape:
//! `{"error": {"code": "...", "message": "..."}}`.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::model::{ErrorKind, ModelError};
use crate::protocol::{ErrorBody, ErrorDetail};

/// An HTTP error answer with a status, a stable code and a message for a person.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The jobs the refusal is about, answered as `error.jobs` when there are any.
    pub jobs: Vec<String>,
}

/// A request whose content breaks a rule: `422` with the message.
pub fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            jobs: Vec::new(),
        }
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid token is required: Authorization: Bearer <token>",
        )
    }
}

impl From<ModelError> for ApiError {
    fn from(err: ModelError) -> Self {
        let status = match err.kind {
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::Unavailable => StatusCode::GATEWAY_TIMEOUT,
        };
        ApiError {
            jobs: err.jobs,
            ..ApiError::new(status, err.code, err.message)
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::new(rejection.status(), "bad_request", rejection.body_text())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut body = serde_json::to_value(body).unwrap_or_default();
        if !self.jobs.is_empty() {
            body["error"]["jobs"] = serde_json::json!(self.jobs);
        }
        (self.status, Json(body)).into_response()
    }
}

/// A JSON body whose rejections answer in the protocol's error shape.
#[derive(axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);
