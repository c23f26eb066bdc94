//! tracecast's own gateway errors, in the shape OpenAI's SDKs parse:
//! `{"error":{"message","type","param","code"}}` (OpenAI API reference, "Error codes"; the
//! `openai` Python SDK reads `body["error"]` into `APIError.message/type/param/code`, see
//! `openai/_client.py` `_make_status_error`). Upstream errors never go through here: they reach
//! the client as the upstream sent them.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;

#[derive(Debug)]
pub struct GatewayError {
    pub status: StatusCode,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `api_error`, ...
    pub kind: &'static str,
    pub param: Option<&'static str>,
    pub code: Option<&'static str>,
    /// Seconds for a `retry-after` header (429).
    pub retry_after: Option<u64>,
}

impl GatewayError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> Self {
        GatewayError {
            status,
            message: message.into(),
            kind,
            param: None,
            code: None,
            retry_after: None,
        }
    }
    pub fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        GatewayError {
            param: Some(param),
            ..Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }
    pub fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    pub fn model_not_found(model: &str) -> Self {
        GatewayError {
            param: Some("model"),
            ..Self::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("No upstream serves the model {model:?}"),
            )
        }
        .code("model_not_found")
    }
    pub fn bad_gateway(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "api_error", message).code("upstream_error")
    }
    pub fn timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "api_error",
            "The upstream did not answer in time",
        )
        .code("upstream_timeout")
    }
}

/// The server's own authentication errors (from the shared `Caller` extractor), re-shaped.
impl From<ApiError> for GatewayError {
    fn from(e: ApiError) -> Self {
        let (kind, code) = match e.status {
            StatusCode::UNAUTHORIZED => ("authentication_error", Some("invalid_api_key")),
            StatusCode::FORBIDDEN => ("permission_error", None),
            // OpenAI's own rate-limit answer: `"type": "requests"`, `"code": "rate_limit_exceeded"`.
            StatusCode::TOO_MANY_REQUESTS => ("requests", Some("rate_limit_exceeded")),
            StatusCode::SERVICE_UNAVAILABLE => ("api_error", None),
            _ => ("invalid_request_error", None),
        };
        GatewayError {
            code,
            retry_after: e.retry_after,
            ..Self::new(e.status, kind, e.message)
        }
    }
}

/// The body of tracecast's own gateway errors: `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

/// OpenAI's error object.
#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `requests` (rate
    /// limit), `api_error`.
    #[serde(rename = "type")]
    #[schema(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault (`model`, `body`), else null.
    pub param: Option<&'static str>,
    /// `invalid_api_key`, `model_not_found`, `rate_limit_exceeded`, `upstream_error`,
    /// `upstream_timeout`, else null.
    pub code: Option<&'static str>,
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = OpenAiErrorBody {
            error: OpenAiError {
                message: self.message,
                kind: self.kind,
                param: self.param,
                code: self.code,
            },
        };
        let mut res = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}
