use std::sync::Arc;

use tracecast_engine::Engine;
use tracecast_store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub engine: Arc<Engine>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// The bearer token `/metrics` requires, if any (`metrics_token`).
    pub metrics_token: Option<Arc<str>>,
    /// `[limits]` of the settings (per-tenant caps).
    pub limits: Arc<crate::settings::Limits>,
    /// Request rate limits per key and per tenant.
    pub rate_limiter: Arc<crate::rate_limit::RateLimiter>,
    /// API keys recently read from the store (see [`crate::auth::KeyCache`]).
    pub keys: Arc<crate::auth::KeyCache>,
}

impl AppState {
    /// Applies a configuration change to the running workers at once, on every node of a
    /// cluster (the periodic refresh would catch it within `config_refresh_ms` anyway).
    pub async fn reload(&self) {
        if let Err(e) = self.engine.changed().await {
            tracing::warn!(error = %e, "applying a configuration change to the workers failed; the periodic refresh retries");
        }
    }
}
