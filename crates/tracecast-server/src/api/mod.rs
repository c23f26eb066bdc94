//! The HTTP API: routes, shared response shapes and the OpenAPI document.

pub mod delivery;
pub mod destinations;
pub mod generations;
pub mod health;
pub mod keys;
pub mod metrics;
pub mod workspaces;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use crate::error::ApiError;
use crate::extract::MAX_BODY_BYTES;
use crate::state::AppState;

/// Every error: `{"error":{"code":<status>,"message":"..."}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The error answers of an endpoint that reads one resource by id: bad or missing key (401),
/// a workspace key where a management key is needed (403), no such id in the caller's tenant
/// (404). Shared by the `utoipa::path` attributes so each lists only what is its own.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built: handlers answer through ApiError
pub enum ItemErrors {
    #[response(status = 401, description = "Missing or invalid API key")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "This key may not do this")]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "No such resource in the caller's tenant")]
    NotFound(ErrorBody),
}

/// [`ItemErrors`] plus 400 for an invalid request body or query.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built: handlers answer through ApiError
pub enum RequestErrors {
    #[response(
        status = 400,
        description = "Invalid request: the message names the field"
    )]
    BadRequest(ErrorBody),
    #[response(status = 401, description = "Missing or invalid API key")]
    Unauthorized(ErrorBody),
    #[response(status = 403, description = "This key may not do this")]
    Forbidden(ErrorBody),
    #[response(status = 404, description = "No such resource in the caller's tenant")]
    NotFound(ErrorBody),
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: u16,
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct Deleted {
    /// Always `true` on success.
    pub deleted: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tracecast",
        description = "Self-hosted OpenRouter Broadcast: manage observability destinations with OpenRouter's API. Paths and shapes follow OpenRouter's /api/v1; tracecast extensions are marked in their descriptions.",
        license(name = "Apache-2.0")
    ),
    paths(
        destinations::list, destinations::create, destinations::get, destinations::update, destinations::delete,
        delivery::status, delivery::dead_letters, delivery::replay, delivery::test_new, delivery::test_existing,
        generations::ingest,
        workspaces::list, workspaces::create, workspaces::get, workspaces::update, workspaces::delete,
        keys::list, keys::create, keys::get, keys::update, keys::delete, keys::current,
        health::health, metrics::metrics,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "Observability", description = "Observability destinations (OpenRouter Broadcast)"),
        (name = "Ingest", description = "tracecast extension: generations in"),
        (name = "Workspaces", description = "Workspaces of the caller's tenant"),
        (name = "API Keys", description = "Workspace API keys"),
        (name = "Service", description = "tracecast extension: health, metrics and the OpenAPI document"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = ApiDoc::openapi();
    doc.merge(crate::gateway::openapi::GatewayDoc::openapi());
    Json(doc)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "Resource not found")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "Method not allowed")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    tracing::error!("a request handler panicked");
    axum::response::IntoResponse::into_response(ApiError::internal())
}

pub fn router(state: AppState) -> Router {
    let v1 = Router::new()
        .route(
            "/observability/destinations",
            get(destinations::list).post(destinations::create),
        )
        .route(
            "/observability/destinations/{id}",
            get(destinations::get)
                .patch(destinations::update)
                .delete(destinations::delete),
        )
        .route(
            "/workspaces",
            get(workspaces::list).post(workspaces::create),
        )
        .route(
            "/workspaces/{id}",
            get(workspaces::get)
                .patch(workspaces::update)
                .delete(workspaces::delete),
        )
        .route("/keys", get(keys::list).post(keys::create))
        .route(
            "/keys/{hash}",
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route("/key", get(keys::current))
        .route(
            "/generations",
            post(generations::ingest).layer(DefaultBodyLimit::max(generations::MAX_BYTES)),
        )
        .route("/observability/destinations/test", post(delivery::test_new))
        .route(
            "/observability/destinations/{id}/test",
            post(delivery::test_existing),
        )
        .route(
            "/observability/destinations/{id}/status",
            get(delivery::status),
        )
        .route(
            "/observability/destinations/{id}/dead-letters",
            get(delivery::dead_letters),
        )
        .route(
            "/observability/destinations/{id}/dead-letters/replay",
            post(delivery::replay),
        )
        .route("/openapi.json", get(openapi_json));
    Router::new()
        .nest("/api/v1", v1)
        .route("/health", get(health::health))
        .route("/metrics", get(metrics::metrics))
        .merge(crate::ingest::otlp::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::auth::refuse_before_body,
        ))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http())
        .layer(CatchPanicLayer::custom(panic_response))
        .with_state(state)
}
