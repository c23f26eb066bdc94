//! `GET /health`: liveness and readiness (readiness includes the store).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` when ready, `unavailable` otherwise.
    pub status: &'static str,
    /// The process is up and serving HTTP.
    pub live: bool,
    /// Every dependency answers.
    pub ready: bool,
    pub checks: Checks,
}

#[derive(Serialize, ToSchema)]
pub struct Checks {
    pub store: Check,
}

#[derive(Serialize, ToSchema)]
pub struct Check {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[utoipa::path(
    get, path = "/health", tag = "Service",
    responses((status = 200, body = Health, description = "Live and ready"), (status = 503, body = Health, description = "Live but not ready"))
)]
pub async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let store = match state.store.ping().await {
        Ok(()) => Check {
            status: "ok",
            error: None,
        },
        Err(e) => Check {
            status: "unavailable",
            error: Some(e.to_string()),
        },
    };
    let ready = store.error.is_none();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(Health {
            status: if ready { "ok" } else { "unavailable" },
            live: true,
            ready,
            checks: Checks { store },
        }),
    )
}
