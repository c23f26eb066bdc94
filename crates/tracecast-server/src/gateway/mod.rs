//! The capturing gateway: OpenAI-compatible endpoints that forward each call to a configured
//! upstream and record it as a generation (see `docs/gateway.md`).
//!
//! - [`upstream`]: the `[gateway]` settings and which upstream serves a model;
//! - [`proxy`]: forwarding, faithfully, streamed or whole;
//! - [`stream`]: SSE event splitting and chat chunk assembly;
//! - [`models`]: `GET /models`, the union of the upstreams' lists;
//! - [`capture`]: the bounded, non-blocking hand-off to the ingest path;
//! - [`error`]: tracecast's own errors in OpenAI's shape;
//! - [`openapi`]: the gateway's part of the OpenAPI document.

pub mod api;
pub mod capture;
pub mod error;
pub mod models;
pub mod openapi;
pub mod pricing;
pub mod proxy;
pub mod stream;
pub mod upstream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::AppState;
use capture::Capturer;
use upstream::{GatewaySettings, Upstream, UpstreamSettings, Upstreams};
use uuid::Uuid;

/// How long a node keeps a workspace's upstreams before reading them again. A change through
/// the API applies at once on the node that took it, within this on the others.
const WORKSPACE_UPSTREAMS_TTL: Duration = Duration::from_secs(5);

/// What the gateway handlers reach.
#[derive(Clone)]
pub struct GatewayState {
    pub app: AppState,
    pub inner: Arc<Gateway>,
}

pub struct Gateway {
    /// The global upstreams of `tracecast.toml`.
    pub upstreams: Upstreams,
    /// Each workspace's own upstreams (managed through the API), as last read.
    workspace_cache: Mutex<HashMap<Uuid, (Instant, Arc<Upstreams>)>>,
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub capture: Capturer,
    pub prices: pricing::Prices,
}

/// The gateway's routes (`/api/v1/chat/completions`, `/completions`, `/responses`,
/// `/embeddings`, `GET /models`), with their own state and body limit.
/// Fails on invalid `[gateway]` settings. Starts the capture task.
pub fn routes(app: AppState, settings: &GatewaySettings) -> anyhow::Result<Router> {
    let upstreams = Upstreams::from_settings(settings).context("[gateway] settings")?;
    let prices = pricing::Prices::load(settings.prices_file.as_deref())?;
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Redirects are the client's business: pass them on, do not follow them.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the gateway's HTTP client")?;
    let capture = Capturer::start(app.clone(), settings.capture_queue);
    let state = GatewayState {
        app,
        inner: Arc::new(Gateway {
            upstreams,
            http,
            timeout: Duration::from_secs(settings.timeout_secs),
            max_request_bytes: settings.max_request_bytes,
            max_response_bytes: settings.max_response_bytes,
            capture,
            prices,
            workspace_cache: Mutex::new(HashMap::new()),
        }),
    };
    // Management routes: like the rest of the management API, a refusal (401, 429) is answered
    // after the body is read (`auth::refuse_before_body`). The call routes do the same in their
    // handler, where the refusal takes OpenAI's error shape.
    let management = Router::new()
        .route(
            "/api/v1/gateway/upstreams",
            get(api::list).post(api::create),
        )
        .route(
            "/api/v1/gateway/upstreams/{id}",
            get(api::get).patch(api::update).delete(api::delete),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            state.app.clone(),
            crate::auth::refuse_before_body,
        ));
    Ok(Router::new()
        .route("/api/v1/chat/completions", post(proxy::chat_completions))
        .route("/api/v1/completions", post(proxy::completions))
        .route("/api/v1/responses", post(proxy::responses))
        .route("/api/v1/embeddings", post(proxy::embeddings))
        .route("/api/v1/models", get(models::models))
        .merge(management)
        .layer(DefaultBodyLimit::disable())
        .layer(tower_http::trace::TraceLayer::new_for_http())
        // A handler panic answers 500 instead of dropping the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state))
}

impl Gateway {
    /// A workspace's own upstreams, from the cache when read within
    /// [`WORKSPACE_UPSTREAMS_TTL`]. A stored upstream that no longer validates is skipped (and
    /// logged), never a reason to fail a call.
    pub async fn workspace_upstreams(
        &self,
        app: &AppState,
        workspace: Uuid,
    ) -> Result<Arc<Upstreams>, tracecast_store::StoreError> {
        if let Some((at, list)) = self.cache().get(&workspace)
            && at.elapsed() < WORKSPACE_UPSTREAMS_TTL
        {
            return Ok(list.clone());
        }
        let rows = app.store.gateway_upstreams(workspace).await?;
        let mut list = Vec::with_capacity(rows.len());
        for (i, row) in rows.iter().enumerate() {
            let parsed = serde_json::from_value::<UpstreamSettings>(serde_json::Value::Object(
                row.config.clone(),
            ))
            .map_err(|e| e.to_string())
            .and_then(|u| Upstream::from_settings(i, &u).map_err(|e| e.to_string()));
            match parsed {
                Ok(u) => list.push(Arc::new(u)),
                Err(e) => {
                    tracing::warn!(upstream = %row.id, %workspace, error = %e, "a stored gateway upstream is invalid; skipped")
                }
            }
        }
        let list = Arc::new(Upstreams(list));
        self.cache()
            .insert(workspace, (Instant::now(), list.clone()));
        Ok(list)
    }

    /// Drops a workspace's cached upstreams (after a change through the API).
    pub fn forget(&self, workspace: Uuid) {
        self.cache().remove(&workspace);
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, Arc<Upstreams>)>> {
        self.workspace_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
