//! `otel-collector`: OTLP/HTTP JSON POSTed to any OTLP traces endpoint (an OpenTelemetry
//! Collector, Axiom, Jaeger, Tempo, Honeycomb...) with the destination's custom headers.
//!
//! Config: `endpoint` (required, the full traces URL, usually ending in `/v1/traces`),
//! `headers`.
//!
//! A 200 answer with an OTLP `partialSuccess` is logged and counts as delivered (the OTLP
//! specification says not to retry it). Test connection: the empty payload
//! `{"resourceSpans":[]}`; any 2xx passes.

use reqwest::Method;
use serde_json::{Map, Value};

use crate::config::required_str;
use crate::otlp::{DefaultDialect, OtlpExporter, OtlpHttp, Probe};
use crate::{ExportContext, ExportError};

pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<OtlpExporter<DefaultDialect>, ExportError> {
    let endpoint = required_str(config, "endpoint")?;
    let headers = crate::config::custom_headers(config)?;
    let http = OtlpHttp::new(ctx, Method::POST, endpoint, headers)
        .map_err(|e| ExportError::Config(format!("endpoint: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::OtelCollector,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        hint_404: Some(
            "check that the endpoint is the full traces URL (usually ending in /v1/traces)",
        ),
        ..Probe::new("OpenTelemetry collector")
    };
    Ok(OtlpExporter::new(
        http,
        DefaultDialect,
        "otlp-json/default",
        probe,
    ))
}
