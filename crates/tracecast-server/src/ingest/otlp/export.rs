//! One decoded export, whichever transport brought it: its LLM spans mapped to generations,
//! appended durably through `/api/v1/generations`' own path, and OTLP's answer.

use axum::http::StatusCode;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};

use super::mapping;
use crate::api::generations::{IngestTarget, MAX_RECORDS, append};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Maps, appends (all usable spans or none) and answers; the answer comes once durable.
pub async fn ingest(
    state: &AppState,
    caller: &Caller,
    q: Option<String>,
    request: &ExportTraceServiceRequest,
) -> Result<ExportTraceServiceResponse, ApiError> {
    let target = IngestTarget::resolve(state, caller, q).await?;
    let mut batch = mapping::map_request(request)
        .map_err(|e| ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
    if batch.records.len() > MAX_RECORDS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "At most {MAX_RECORDS} LLM spans per export ({} sent); export smaller batches",
                batch.records.len()
            ),
        ));
    }
    let accepted = batch.records.len();
    if accepted > 0 {
        let (generations, raws): (Vec<_>, Vec<_>) = std::mem::take(&mut batch.records)
            .into_iter()
            .map(|r| (r.generation, r.raw))
            .unzip();
        let records = generations
            .into_iter()
            .zip(raws.iter().map(Vec::as_slice))
            .collect();
        append(state, &target, records, None).await?;
    }
    metrics::counter!("tracecast_otlp_spans_total", "outcome" => "accepted")
        .increment(accepted as u64);
    metrics::counter!("tracecast_otlp_spans_total", "outcome" => "rejected")
        .increment(batch.rejected.len() as u64);
    metrics::counter!("tracecast_otlp_spans_total", "outcome" => "skipped")
        .increment(batch.skipped as u64);
    Ok(ExportTraceServiceResponse {
        partial_success: batch
            .partial_success_message()
            .map(|message| ExportTracePartialSuccess {
                rejected_spans: batch.rejected.len() as i64,
                error_message: message,
            }),
    })
}
