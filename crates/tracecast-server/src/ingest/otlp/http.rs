//! The `POST /v1/traces` handler: OTLP/HTTP answers around decode → map → append.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

use super::decode::{self, Encoding};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/traces`.
pub async fn export(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    // Errors are answered in the request's encoding; JSON when it has none we know.
    let encoding = match decode::encoding(&headers) {
        Ok(e) => e,
        Err(e) => {
            return status_response(
                Encoding::Json,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &e.to_string(),
            );
        }
    };
    let result = export_inner(&state, caller, q, &headers, body, encoding).await;
    let status = match &result {
        Ok(_) => "200".to_string(),
        Err(e) => e.status.as_u16().to_string(),
    };
    metrics::counter!("tracecast_otlp_requests_total", "status" => status).increment(1);
    match result {
        Ok(answer) => answer_response(encoding, answer),
        Err(e) => status_response(encoding, e.status, &e.message),
    }
}

async fn export_inner(
    state: &AppState,
    caller: Result<Caller, ApiError>,
    q: Option<String>,
    headers: &HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
    encoding: Encoding,
) -> Result<ExportTraceServiceResponse, ApiError> {
    let caller = caller?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "The export is larger than {} bytes; export smaller batches",
                    decode::MAX_WIRE_BYTES
                ),
            )
        } else {
            ApiError::bad_request(format!("Could not read the request body: {e}"))
        }
    })?;
    let request = decode::decode(headers, encoding, &body).map_err(|e| {
        let status = if e.is_too_large() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if matches!(e, decode::DecodeError::ContentEncoding(_)) {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        } else {
            StatusCode::BAD_REQUEST
        };
        ApiError::new(status, e.to_string())
    })?;
    super::export::ingest(state, &caller, q, &request).await
}

fn answer_response(encoding: Encoding, answer: ExportTraceServiceResponse) -> Response {
    let body = match encoding {
        Encoding::Protobuf => answer.encode_to_vec(),
        // A field at its default is left out, as the protobuf JSON mapping does: `{}`.
        Encoding::Json if answer.partial_success.is_none() => b"{}".to_vec(),
        Encoding::Json => serde_json::to_vec(&answer).unwrap_or_else(|_| b"{}".to_vec()),
    };
    with_body(StatusCode::OK, encoding, body)
}

/// A `google.rpc.Status` answer: its `code` is the gRPC code matching the HTTP status.
fn status_response(encoding: Encoding, status: StatusCode, message: &str) -> Response {
    let code: i32 = match status.as_u16() {
        400 | 415 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        413 | 429 => 8,
        503 => 14,
        _ => 13,
    };
    let body = match encoding {
        Encoding::Protobuf => {
            let mut buf = Vec::with_capacity(message.len() + 8);
            prost::encoding::int32::encode(1, &code, &mut buf);
            prost::encoding::string::encode(2, &message.to_string(), &mut buf);
            buf
        }
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
                .unwrap_or_default()
        }
    };
    with_body(status, encoding, body)
}

fn with_body(status: StatusCode, encoding: Encoding, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type()),
    );
    r
}
