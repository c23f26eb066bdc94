//! Request extractors whose failures speak the API's error envelope and name the field.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Maximum request body: larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON body. Malformed JSON and wrong types get 400 naming the field; oversized bodies 413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| body_error(e, MAX_BODY_BYTES))?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// The answer to a body that could not be read: 413 over `max` bytes, 408 when the client
/// stopped sending it (`limits.body_timeout_secs`), else 400.
pub fn body_error(e: BytesRejection, max: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body is larger than {max} bytes"),
        );
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = source {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "The request body was not sent in time (limits.body_timeout_secs)",
            );
        }
        source = err.source();
    }
    ApiError::bad_request(format!("Could not read the request body: {e}"))
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("Request body must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.inner();
        let msg = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("Malformed JSON body: {msg}"))
        } else if let Some(rest) = msg.strip_prefix("unknown field ") {
            let (field, expected) = rest.split_once(", expected").unwrap_or((rest, ""));
            let field = field.trim_matches('`');
            let at = if path == "." || path == field {
                field.to_string()
            } else {
                path.clone()
            };
            ApiError::bad_request(format!("Unknown field {at} (expected{expected})"))
        } else if path == "." {
            ApiError::bad_request(format!("Invalid request body: {msg}"))
        } else {
            ApiError::bad_request(format!("Invalid value for {path}: {msg}"))
        }
    })
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

/// Query parameters, parsed by hand so that each bad value gets a message naming it.
pub struct QueryParams(HashMap<String, String>);

impl QueryParams {
    pub fn parse(raw: Option<&str>) -> Self {
        QueryParams(
            url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// An integer parameter within `[min, max]`, or `default` when absent (or `null`).
    pub fn int(&self, name: &str, default: u64, min: u64, max: u64) -> Result<u64, ApiError> {
        match self.str(name) {
            None | Some("null") => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(v),
                _ => Err(ApiError::bad_request(format!(
                    "{name} must be an integer between {min} and {max}, got {s:?}"
                ))),
            },
        }
    }

    pub fn bool(&self, name: &str, default: bool) -> Result<bool, ApiError> {
        match self.str(name) {
            None => Ok(default),
            Some("true") | Some("1") => Ok(true),
            Some("false") | Some("0") => Ok(false),
            Some(s) => Err(ApiError::bad_request(format!(
                "{name} must be true or false, got {s:?}"
            ))),
        }
    }
}

/// Deserialises a field that distinguishes "absent" (`None`) from `null` (`Some(None)`).
pub fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    use serde::Deserialize;
    Option::<T>::deserialize(d).map(Some)
}
