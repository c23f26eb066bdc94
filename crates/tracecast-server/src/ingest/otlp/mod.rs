//! OTLP ingest: `POST /v1/traces` (OTLP/HTTP, protobuf or JSON, gzip or not). Every LLM span
//! becomes a generation, appended through the same all-or-nothing durable path as
//! `/api/v1/generations`; other spans are counted and skipped. See `docs/otlp-ingest.md`.
//!
//! Protocol: the OTLP specification 1.x, "OTLP/HTTP"
//! (<https://opentelemetry.io/docs/specs/otlp/#otlphttp>): 200 with an
//! `ExportTraceServiceResponse` in the request's encoding, `partial_success` when spans were
//! rejected or skipped; 4xx/5xx with a `google.rpc.Status` (`code`, `message`) in the request's
//! encoding; 503 (retryable) when nothing could be made durable.

mod decode;
mod export;
pub mod grpc;
mod http;
pub mod mapping;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;

use crate::state::AppState;

pub use decode::{DecodeError, MAX_DECODED_BYTES, MAX_WIRE_BYTES};

/// The OTLP/HTTP routes, merged into the main router.
pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/v1/traces",
        post(http::export).layer(DefaultBodyLimit::max(MAX_WIRE_BYTES)),
    )
}
