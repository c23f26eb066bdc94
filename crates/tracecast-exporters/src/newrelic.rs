//! `newrelic`: OTLP/HTTP **binary protobuf** to New Relic's native OTLP endpoint, with the
//! license key in the `api-key` header.
//!
//! Protocol choice and source: New Relic recommends native OTLP ingest as the preferred way to
//! send OpenTelemetry data, and OTLP/HTTP binary protobuf over the other OTLP variants
//! (<https://docs.newrelic.com/docs/opentelemetry/best-practices/opentelemetry-otlp/>; see
//! `destination-protocols.md` §15). OpenRouter's New Relic destination is OTLP with the common
//! mapping (`newrelic.mdx`), so the attributes are the standard ones of `docs/otlp.md`
//! (`gen_ai.*`, `user.id`, `session.id`, `trace.metadata.*`, span names and ids from `trace`).
//!
//! Config: `licenseKey` (required, secret), `region` (`us`, default, or `eu`), `headers`.
//!
//! | region | endpoint |
//! |---|---|
//! | `us` | `https://otlp.nr-data.net/v1/traces` |
//! | `eu` | `https://otlp.eu01.nr-data.net/v1/traces` |
//!
//! The `newrelic` endpoint override (`delivery.endpoint_overrides`, for egress proxies, FedRAMP
//! (`https://gov-otlp.nr-data.net`) and tests) replaces the regional base URL.
//!
//! Limits (New Relic's documented OTLP limits): a request body under 1 MB (10^6 bytes), else
//! it is rejected: bigger bodies are split (see [`crate::sized_otlp`]); attribute
//! values of at most 4095 characters, names of at most 255, arrays of at most 64 entries (New
//! Relic drops violations asynchronously): longer values are cut with a visible marker and
//! listed in `tracecast.truncated_attributes` (see [`crate::attribute_limits`]). Answers: success has no body, 429 is retried
//! with `Retry-After`, 401/403 pause the destination.
//!
//! Test connection: an empty `ExportTraceServiceRequest` (zero bytes of protobuf) with the
//! license key, which New Relic answers 200 when the key is valid and 401/403 when not.

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::HeaderName;
use serde_json::{Map, Value};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;

use crate::attribute_limits::{Unit, ValueLimits, truncate_attributes};
use crate::config::{optional_str, required_str};
use crate::endpoint::traces_url;
use crate::otlp::{Attributes, OtlpDialect, OtlpExporter, OtlpHttp, Probe, SpanSlot};
use crate::sized_otlp::SizedExporter;
use crate::{BatchLimits, ExportContext, ExportError, Exporter};

/// New Relic's US OTLP endpoint (base URL).
pub const US_ENDPOINT: &str = "https://otlp.nr-data.net";
/// New Relic's EU OTLP endpoint (base URL).
pub const EU_ENDPOINT: &str = "https://otlp.eu01.nr-data.net";
/// The header that carries the license key.
pub const API_KEY_HEADER: &str = "api-key";
/// New Relic rejects OTLP requests of 1 MB (10^6 bytes) or more.
pub const MAX_REQUEST_BYTES: usize = 1_000_000 - 1;
/// New Relic's attribute limits.
pub const LIMITS: ValueLimits = ValueLimits {
    max_value: 4095,
    max_key: 255,
    max_array_len: 64,
    unit: Unit::Chars,
};

/// The standard OTLP mapping with New Relic's attribute limits applied.
#[derive(Debug, Clone, Copy, Default)]
pub struct NewRelicDialect;

impl OtlpDialect for NewRelicDialect {
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

/// The base URL for a region (`us` or `eu`).
pub fn region_endpoint(region: &str) -> Result<&'static str, ExportError> {
    match region.to_ascii_lowercase().as_str() {
        "us" => Ok(US_ENDPOINT),
        "eu" => Ok(EU_ENDPOINT),
        other => Err(ExportError::Config(format!(
            "region must be \"us\" or \"eu\", got {other:?}"
        ))),
    }
}

pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<SizedExporter<NewRelicDialect>, ExportError> {
    let license_key = required_str(config, "licenseKey")?;
    let region = optional_str(config, "region").unwrap_or("us");
    let regional = region_endpoint(region)?;
    let base = ctx
        .endpoint_override(DestinationType::Newrelic)
        .unwrap_or(regional);
    let url = traces_url(base, "");

    let mut headers = crate::config::custom_headers(config)?;
    let key = crate::http::secret_value(license_key, "licenseKey is not a valid header value")?;
    headers.insert(HeaderName::from_static(API_KEY_HEADER), key);

    let http = OtlpHttp::new(ctx, Method::POST, &url, headers)
        .map_err(|e| ExportError::Config(format!("endpoint: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Newrelic,
            config,
        ));
    let probe = Probe {
        credentials: "the license key (use an Ingest - License key for this account and region)",
        ..Probe::new("New Relic")
    };
    let inner = OtlpExporter::new(http, NewRelicDialect, "otlp-proto/newrelic", probe)
        .protobuf()
        .with_limits(BatchLimits {
            max_items: 500,
            max_bytes: MAX_REQUEST_BYTES,
        });
    Ok(SizedExporter::new(inner, "New Relic", MAX_REQUEST_BYTES))
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}
