//! `otel-collector`: OTLP/HTTP JSON POSTed to any OTLP traces endpoint (an OpenTelemetry
//! Collector, Axiom, Jaeger, Tempo, Honeycomb...) with the destination's custom headers.
//!
//! Config: `endpoint` (required, the full traces URL, usually ending in `/v1/traces`),
//! `headers`.
//!
//! A 200 answer with an OTLP `partialSuccess` is logged and counts as delivered (the OTLP
//! specification says not to retry it). Test connection: the empty payload
//! `{"resourceSpans":[]}`; any 2xx passes.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use serde_json::{Map, Value};
use tracecast_model::trace::TraceView;

use crate::otlp::{self, DefaultDialect, EMPTY_REQUEST_JSON, OtlpEncoding, OtlpHttp, snippet};
use crate::{ExportContext, ExportError, Exporter, Outcome, Payload};

pub struct OtelCollectorExporter {
    http: OtlpHttp,
    fragments: otlp::JsonFragments<DefaultDialect>,
}

impl OtelCollectorExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let endpoint = config
            .get("endpoint")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ExportError::Config("endpoint is required".into()))?;
        let headers =
            crate::http::custom_headers(config.get("headers").and_then(Value::as_object))?;
        let http = OtlpHttp::new(ctx, Method::POST, endpoint, headers)
            .map_err(|e| ExportError::Config(format!("endpoint: {e}")))?
            .with_partial_success(true);
        Ok(OtelCollectorExporter {
            http,
            fragments: otlp::JsonFragments::new(DefaultDialect, "otlp-json/default"),
        })
    }
}

#[async_trait]
impl Exporter for OtelCollectorExporter {
    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        otlp::encode(traces, &DefaultDialect, OtlpEncoding::Json)
    }

    fn fragments(&self) -> Option<&dyn crate::FragmentEncoder> {
        Some(&self.fragments)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        self.http.send(payload).await
    }

    async fn test_connection(&self) -> Result<String, String> {
        let answer = self
            .http
            .send_raw(
                Bytes::from_static(EMPTY_REQUEST_JSON.as_bytes()),
                OtlpEncoding::Json,
                &[],
            )
            .await
            .map_err(|e| format!("OpenTelemetry collector could not be reached: {e}"))?;
        let code = answer.status.as_u16();
        match code {
            200..=299 => Ok(format!(
                "OpenTelemetry collector accepted an empty OTLP payload ({code})"
            )),
            401 | 403 => Err(format!(
                "OpenTelemetry collector rejected the credentials ({code})"
            )),
            404 => Err(format!(
                "OpenTelemetry collector answered 404: check that the endpoint is the full traces URL (usually ending in /v1/traces){}",
                snippet(&answer.body)
            )),
            _ => Err(format!(
                "OpenTelemetry collector answered {code} to an empty OTLP payload{}",
                snippet(&answer.body)
            )),
        }
    }
}
