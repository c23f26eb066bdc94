//! `GET /metrics`: Prometheus text.
//!
//! Series: `tracecast_ingest_records_total{result}`, `tracecast_ingest_requests_total{status}`,
//! `tracecast_delivery_records_total{type,outcome}` (delivered, filtered, sampled_out,
//! dead_lettered, dropped, discarded), `tracecast_delivery_failed_attempts_total{type}`,
//! `tracecast_queue_depth{destination,type}` and the histogram
//! `tracecast_delivery_latency_seconds{type}` (ingest to delivered).
//!
//! The series name every tenant's destination ids, so with `metrics_token` set the endpoint
//! answers only `Authorization: Bearer <metrics_token>` (compared in constant time) and 401
//! otherwise. Without it, it is open to whoever reaches the listen address.

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::state::AppState;

/// The process-wide recorder (installed once; every server in the process shares it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("tracecast_delivery_latency_seconds".into()),
                    &[
                        0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                        3600.0,
                    ],
                )
                .expect("static buckets are valid")
                .build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (e.g. by an embedding test); then this
            // handle simply renders nothing of ours.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

#[utoipa::path(
    get, path = "/metrics", tag = "Service",
    responses(
        (status = 200, description = "Prometheus text exposition (tracecast extension)", content_type = "text/plain"),
        (status = 401, body = super::ErrorBody, description = "metrics_token is set and was not presented"),
    )
)]
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    if let Some(token) = &state.metrics_token {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .unwrap_or_default();
        // Hashing first makes the comparison constant-time whatever the lengths.
        let ok: bool = Sha256::digest(presented.as_bytes())
            .as_slice()
            .ct_eq(Sha256::digest(token.as_bytes()).as_slice())
            .into();
        if !ok {
            return Err(ApiError::unauthorized(
                "/metrics requires the metrics token: Authorization: Bearer <metrics_token>",
            ));
        }
    }
    Ok((
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    ))
}

/// Shortest accepted `metrics_token`.
pub const MIN_TOKEN_CHARS: usize = 32;

/// Checks the `metrics_token` setting at start.
pub fn check_token_setting(token: &str) -> anyhow::Result<()> {
    if token.chars().count() < MIN_TOKEN_CHARS || token.chars().any(char::is_whitespace) {
        anyhow::bail!(
            "metrics_token (TRACECAST_METRICS_TOKEN) must be at least {MIN_TOKEN_CHARS} characters without spaces"
        );
    }
    Ok(())
}
