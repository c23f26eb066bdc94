//! The capturing gateway: OpenAI-compatible endpoints that forward each call to a configured
//! upstream and record it as a generation (see `docs/gateway.md`).
//!
//! - [`upstream`]: the `[gateway]` settings and which upstream serves a model;
//! - [`proxy`]: forwarding, faithfully, streamed or whole;
//! - [`stream`]: SSE event splitting and chat chunk assembly;
//! - [`capture`]: the bounded, non-blocking hand-off to the ingest path;
//! - [`error`]: tracecast's own errors in OpenAI's shape.

pub mod capture;
pub mod error;
pub mod proxy;
pub mod stream;
pub mod upstream;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};

use crate::state::AppState;
use capture::Capturer;
use upstream::{GatewaySettings, Upstreams};

/// What the gateway handlers reach.
#[derive(Clone)]
pub struct GatewayState {
    pub app: AppState,
    pub inner: Arc<Gateway>,
}

pub struct Gateway {
    pub upstreams: Upstreams,
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub max_request_bytes: usize,
    pub max_response_bytes: usize,
    pub capture: Capturer,
}

/// The gateway's routes (`/api/v1/chat/completions`, `/completions`, `/responses`,
/// `/embeddings`, `GET /models`), with their own state and body limit.
/// Fails on invalid `[gateway]` settings. Starts the capture task.
pub fn routes(app: AppState, settings: &GatewaySettings) -> anyhow::Result<Router> {
    let upstreams = Upstreams::from_settings(settings).context("[gateway] settings")?;
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
        }),
    };
    Ok(Router::new()
        .route("/api/v1/chat/completions", post(proxy::chat_completions))
        .route("/api/v1/completions", post(proxy::completions))
        .route("/api/v1/responses", post(proxy::responses))
        .route("/api/v1/embeddings", post(proxy::embeddings))
        .route("/api/v1/models", get(proxy::models))
        .layer(DefaultBodyLimit::disable())
        .with_state(state))
}
