//! Delivery control for a destination (tracecast extensions): status, dead letters, replay,
//! and connection tests.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde::{Deserialize, Serialize};
use tracecast_engine::{DestinationStatus, TestResult};
use tracecast_model::Destination;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, QueryParams};
use crate::state::AppState;

use super::destinations::{CreateDestinationRequest, find_destination, validate_new};
use super::{ItemErrors, RequestErrors};

async fn load(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Destination> {
    find_destination(state, caller, id).await
}

pub(crate) fn engine_error(e: tracecast_engine::EngineError) -> ApiError {
    tracing::error!(error = %e, "delivery engine error");
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "The delivery engine is unavailable; try again",
    )
}

/// Delivery status of a destination.
#[derive(Serialize, ToSchema)]
pub struct StatusResponse {
    #[schema(value_type = Object)]
    pub data: DestinationStatus,
}

#[utoipa::path(
    get, path = "/api/v1/observability/destinations/{id}/status", tag = "Observability",
    description = "tracecast extension. Counts (received, filtered, sampled_out, delivered, failed_attempts, dead_lettered, dropped, discarded); the queue: depth, bytes, the age of the oldest pending record, dead letters, and the outage budget (`budget_bytes`: how large the backlog may grow before its oldest records are dropped, `budget_used`, and `secs_until_drop` at the current ingest rate if nothing more is delivered); the last success, the last error, and the state: `active`, `paused` (credentials rejected, or the type cannot deliver) or `disabled`.",
    params(("id" = Uuid, Path, description = "The destination id")),
    responses((status = 200, body = StatusResponse), ItemErrors),
    security(("bearer" = []))
)]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<StatusResponse>> {
    let d = load(&state, &caller, &id).await?;
    let data = destination_status(&state, &d).await?;
    Ok(Json(StatusResponse { data }))
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterOut {
    /// Dead-letter id, for replay.
    pub id: i64,
    pub generation_id: String,
    pub model: String,
    pub created_at: String,
    /// The last error, with the platform's answer.
    pub error: String,
    pub status: Option<u16>,
    pub attempts: u32,
    pub failed_at: String,
    pub replay_requested: bool,
}

#[derive(Serialize, ToSchema)]
pub struct DeadLetterList {
    pub data: Vec<DeadLetterOut>,
    pub total_count: u64,
}

#[utoipa::path(
    get, path = "/api/v1/observability/destinations/{id}/dead-letters", tag = "Observability",
    description = "tracecast extension. Generations this destination refused (a 4xx other than 401/403, or retries exhausted), oldest first, kept 7 days by default.",
    params(
        ("id" = Uuid, Path, description = "The destination id"),
        ("offset" = Option<u64>, Query, description = "Number of records to skip (default 0)"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 100 (default 50)"),
    ),
    responses((status = 200, body = DeadLetterList), RequestErrors),
    security(("bearer" = []))
)]
pub async fn dead_letters(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<DeadLetterList>> {
    let q = QueryParams::parse(q.as_deref());
    let offset = q.int("offset", 0, 0, u64::MAX >> 1)?;
    let limit = q.int("limit", 50, 1, 100)?;
    let (data, total) = list_dead_letters(&state, &caller, &id, offset, limit).await?;
    Ok(Json(DeadLetterList {
        data,
        total_count: total,
    }))
}

/// The status of a destination already loaded for the caller.
pub async fn destination_status(state: &AppState, d: &Destination) -> ApiResult<DestinationStatus> {
    state.engine.status(d).await.map_err(engine_error)
}

/// A page of a destination's dead letters (oldest first) and their total.
pub async fn list_dead_letters(
    state: &AppState,
    caller: &Caller,
    id: &str,
    offset: u64,
    limit: u64,
) -> ApiResult<(Vec<DeadLetterOut>, u64)> {
    let d = load(state, caller, id).await?;
    let (letters, total) = state
        .engine
        .dead_letters(d.id, offset, limit)
        .await
        .map_err(engine_error)?;
    let data = letters
        .into_iter()
        .map(|l| DeadLetterOut {
            id: l.id,
            generation_id: l.generation_id,
            model: l.model,
            created_at: l.created_at,
            error: l.error,
            status: l.status,
            attempts: l.attempts,
            failed_at: chrono::DateTime::<chrono::Utc>::from_timestamp_millis(l.failed_at_ms)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            replay_requested: l.replay_requested,
        })
        .collect();
    Ok((data, total))
}

/// Queues a destination's dead letters (all, or `ids`) for redelivery; returns how many.
pub async fn replay_dead_letters(
    state: &AppState,
    caller: &Caller,
    id: &str,
    ids: Option<Vec<i64>>,
) -> ApiResult<u64> {
    let d = load(state, caller, id).await?;
    state.engine.replay(d.id, ids).await.map_err(engine_error)
}

/// Validates a create body and tests its connection, saving nothing.
pub async fn test_new_destination(
    state: &AppState,
    caller: &Caller,
    req: &CreateDestinationRequest,
) -> ApiResult<TestResult> {
    caller.management()?;
    let new = validate_new(state, caller, req).await?;
    Ok(state.engine.test_connection(new.ty, &new.config).await)
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Dead-letter ids to replay; omitted or null replays all of the destination's.
    pub ids: Option<Vec<i64>>,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayResult {
    /// How many dead letters were queued for redelivery.
    pub replayed: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayResponse {
    pub data: ReplayResult,
}

#[utoipa::path(
    post, path = "/api/v1/observability/destinations/{id}/dead-letters/replay", tag = "Observability",
    description = "tracecast extension. Redelivers dead letters (all, or the given ids). Delivered ones leave the dead-letter store; ones that fail again come back with their new error.",
    params(("id" = Uuid, Path, description = "The destination id")),
    request_body(content = ReplayRequest, description = "Optional; an empty body replays all"),
    responses((status = 200, body = ReplayResponse), RequestErrors),
    security(("bearer" = []))
)]
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<ReplayResponse>> {
    load(&state, &caller, &id).await?;
    let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    let replayed = replay_dead_letters(&state, &caller, &id, req.ids).await?;
    Ok(Json(ReplayResponse {
        data: ReplayResult { replayed },
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TestResponse {
    #[schema(value_type = Object)]
    pub data: TestResult,
}

#[utoipa::path(
    post, path = "/api/v1/observability/destinations/test", tag = "Observability",
    description = "tracecast extension. Validates a create body and sends the type's test payload without saving anything. Answers `{data:{ok,status,message,latency_ms}}`.",
    request_body = CreateDestinationRequest,
    responses((status = 200, body = TestResponse), RequestErrors),
    security(("bearer" = []))
)]
pub async fn test_new(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateDestinationRequest>,
) -> ApiResult<Json<TestResponse>> {
    let data = test_new_destination(&state, &caller, &req).await?;
    Ok(Json(TestResponse { data }))
}

#[utoipa::path(
    post, path = "/api/v1/observability/destinations/{id}/test", tag = "Observability",
    description = "tracecast extension. Sends the type's test payload with the stored config.",
    params(("id" = Uuid, Path, description = "The destination id")),
    responses((status = 200, body = TestResponse), ItemErrors),
    security(("bearer" = []))
)]
pub async fn test_existing(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<TestResponse>> {
    let d = load(&state, &caller, &id).await?;
    let data = state.engine.test_connection(d.ty, &d.config).await;
    Ok(Json(TestResponse { data }))
}
