//! `GET /metrics`: Prometheus text.
//!
//! Series: `tracecast_ingest_records_total{result}`, `tracecast_ingest_requests_total{status}`,
//! `tracecast_delivery_records_total{type,outcome}` (delivered, filtered, sampled_out,
//! dead_lettered, dropped, discarded), `tracecast_delivery_failed_attempts_total{type}`,
//! `tracecast_queue_depth{destination,type}` and the histogram
//! `tracecast_delivery_latency_seconds{type}` (ingest to delivered).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

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
    responses((status = 200, description = "Prometheus text exposition (tracecast extension)", content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}
