//! `grafana`: OTLP/HTTP **binary protobuf** to the Grafana Cloud OTLP gateway, with HTTP Basic
//! auth `instanceId:apiKey`; traces land in Grafana Cloud Traces (Tempo).
//!
//! Protocol choice and source: Grafana Cloud's recommended direct path for OpenTelemetry data
//! is its OTLP gateway (`https://otlp-gateway-prod-<region>.grafana.net/otlp`, Basic auth with
//! the OTLP instance id and an access-policy token;
//! <https://grafana.com/docs/grafana-cloud/send-data/otlp/send-data-otlp/>, notes §14).
//! OpenRouter's Grafana destination sends OTLP/HTTP JSON (`grafana.mdx`), but Grafana says OTLP
//! JSON is for low-traffic testing and recommends protobuf, so tracecast sends binary protobuf
//! (`application/x-protobuf`): same messages, smaller and cheaper to decode. The attributes are
//! the standard mapping of `docs/otlp.md`, which is what `grafana.mdx` lists
//! (`service.name = openrouter`, `gen_ai.*`, `user.id`, `session.id`, `trace.metadata.*`), so
//! OpenRouter's TraceQL examples work unchanged.
//!
//! Config: `apiKey` (required, secret: a token with `traces:write`), `instanceId` (required,
//! numeric), `baseUrl` (default `https://otlp-gateway-prod-us-west-0.grafana.net`), `headers`.
//! Traces go to `{baseUrl}/otlp/v1/traces`; a `baseUrl` that already ends in `/otlp` or
//! `/otlp/v1/traces` is used as given.
//!
//! Limits: Grafana Tempo's distributor cuts every attribute key and string value longer than
//! `max_attribute_bytes` bytes, 2048 by default, silently (no marker; only a server-side metric,
//! `tempo_distributor_attributes_truncated_total`). Sources: grafana/tempo
//! `modules/distributor/config.go` (`cfg.MaxAttributeBytes = 2048`) and `processAttributes` in
//! `modules/distributor/distributor.go` (main, August 2026: byte lengths, keys and string values
//! of resource, scope, span, event and link attributes);
//! <https://grafana.com/docs/tempo/latest/troubleshooting/out-of-memory-errors/>. tracecast
//! applies that limit first, visibly: keys and string values are cut to at most 2048 bytes on a
//! character boundary, values ending in `…[truncated: N bytes]`, and listed in
//! `tracecast.truncated_attributes` (see [`crate::attribute_limits`]). The `exception` event's
//! attributes are not reached by the dialect hooks: an error message over 2048 bytes is still
//! cut by Tempo. Grafana also limits the size of a whole trace (spans past it are discarded);
//! request bodies stay under 4 MiB (bigger ones are split, see [`crate::sized_otlp`]).
//!
//! Test connection: an empty `ExportTraceServiceRequest` (zero bytes of protobuf) with the
//! credentials; the gateway answers 200 when they are accepted and 401 when not.

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde_json::{Map, Value};
use tracecast_model::trace::TraceView;

use crate::attribute_limits::{Unit, ValueLimits, truncate_attributes};
use crate::config::{optional_str, required_str};
use crate::endpoint::traces_url;
use crate::http::{basic_auth, secret_value};
use crate::otlp::{Attributes, OtlpDialect, OtlpExporter, OtlpHttp, Probe, SpanSlot};
use crate::sized_otlp::SizedExporter;
use crate::{BatchLimits, ExportContext, ExportError, Exporter};

/// The `baseUrl` default (the config schema's).
pub const DEFAULT_BASE_URL: &str = "https://otlp-gateway-prod-us-west-0.grafana.net";
/// Grafana Tempo's default `max_attribute_bytes`.
pub const TEMPO_MAX_ATTRIBUTE_BYTES: usize = 2048;
/// Most bytes in one request body.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// Tempo's limit on keys and string values, in bytes; arrays are tracecast's own bound.
pub const LIMITS: ValueLimits = ValueLimits {
    max_value: TEMPO_MAX_ATTRIBUTE_BYTES,
    max_key: TEMPO_MAX_ATTRIBUTE_BYTES,
    max_array_len: 1024,
    unit: Unit::Bytes,
};

/// The standard OTLP mapping, with Tempo's attribute limit applied visibly (see the module
/// docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct GrafanaDialect;

impl OtlpDialect for GrafanaDialect {
    /// Only a parent that can name a span of the user's own OTLP trace (see
    /// [`crate::otlp::carry_unsent_parent`] for any other).
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn resource_attributes<'a>(&self, _view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
        truncate_attributes(attrs, &LIMITS);
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        crate::otlp::carry_unsent_parent(view, slot, attrs);
        truncate_attributes(attrs, &LIMITS);
    }
}

pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<SizedExporter<GrafanaDialect>, ExportError> {
    let api_key = required_str(config, "apiKey")?;
    let instance_id = required_str(config, "instanceId")?;
    if !instance_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ExportError::Config(
            "instanceId must be the numeric Grafana Cloud instance id".to_owned(),
        ));
    }
    let base = optional_str(config, "baseUrl").unwrap_or(DEFAULT_BASE_URL);
    let url = traces_url(base, "/otlp");

    let mut headers = crate::config::custom_headers(config)?;
    // `Basic base64(instanceId:apiKey)`.
    let auth = secret_value(
        &basic_auth(instance_id, api_key),
        "apiKey is not a valid header value",
    )?;
    headers.insert(AUTHORIZATION, auth);

    let http = OtlpHttp::new(ctx, Method::POST, &url, headers)
        .map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Grafana,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        credentials: "the instance ID / API token pair (the token needs the traces:write scope)",
        hint_404: Some(
            "the base URL must be the OTLP gateway, https://otlp-gateway-prod-<region>.grafana.net, not the Grafana dashboard URL",
        ),
        ..Probe::new("Grafana Cloud")
    };
    let inner = OtlpExporter::new(http, GrafanaDialect, "otlp-proto/grafana", probe)
        .protobuf()
        .with_limits(BatchLimits {
            max_items: 500,
            max_bytes: MAX_REQUEST_BYTES,
        });
    Ok(SizedExporter::new(
        inner,
        "Grafana Cloud",
        MAX_REQUEST_BYTES,
    ))
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}
