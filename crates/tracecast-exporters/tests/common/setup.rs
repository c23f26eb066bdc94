//! Building exporters the way the tests do: a context, a config from JSON, every metadata group.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tracecast_exporters::{ExportContext, Exporter, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceOptions;

/// Trace options with every metadata group enabled and privacy mode off.
pub const ALL_GROUPS: TraceOptions = TraceOptions {
    privacy_mode: false,
    cost: true,
    identity: true,
    request_context: true,
    cost_allocation: true,
};

/// An export context with a 5 s request timeout.
pub fn ctx() -> ExportContext {
    ExportContext::new(Duration::from_secs(5))
}

/// A destination config from a JSON object.
pub fn config(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("config object")
}

/// The exporter of `ty` for `cfg` in [`ctx`] (panics, naming the type, when the config is
/// refused).
pub fn exporter(ty: DestinationType, cfg: Value) -> Arc<dyn Exporter> {
    exporter_in(&ctx(), ty, cfg)
}

/// [`exporter`] in the context `ctx`.
pub fn exporter_in(ctx: &ExportContext, ty: DestinationType, cfg: Value) -> Arc<dyn Exporter> {
    match build(ty, &config(cfg), ctx) {
        Ok(e) => e,
        Err(e) => panic!("{} exporter: {e}", ty.as_str()),
    }
}
