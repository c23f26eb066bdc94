//! `datadog`: not implemented in this build yet.

use std::sync::Arc;

use serde_json::{Map, Value};
use tracecast_model::DestinationType;

use crate::{ExportContext, ExportError, Exporter};

pub fn build(
    _config: &Map<String, Value>,
    _ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Err(ExportError::Unsupported(DestinationType::Datadog))
}
