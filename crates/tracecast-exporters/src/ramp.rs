//! `ramp`: OTLP/HTTP JSON POSTed to Ramp's OpenRouter AI-usage endpoint with the integration's
//! API key as a bearer token, for Ramp's AI spend tracking (cost and usage attribution).
//!
//! # Protocol and its sources
//!
//! - OpenRouter's Ramp destination (`ramp.mdx`): "Ramp receives traces via the OpenTelemetry
//!   Protocol (OTLP)", config `apiKey`, `baseUrl` (default
//!   `https://api.ramp.com/developer/v1/ai-usage/openrouter`, "only change if directed by
//!   Ramp"), `headers`; `gen_ai.*` for model, usage and cost; `user.id`, `session.id`,
//!   `trace.metadata.*`.
//! - Ramp's engineering write-up of the endpoint ("AI token spend management", builders.ramp.com,
//!   2026): `POST /developer/v1/ai-usage/openrouter` receives OpenRouter's OTLP trace export
//!   payloads, walks `resourceSpans → scopeSpans → spans[]` reading the JSON `AnyValue`s
//!   (`stringValue`, `intValue`, `doubleValue`, `boolValue`), validates OAuth2 bearer tokens, is
//!   idempotent, and reads `gen_ai.request.model`, `gen_ai.usage.input_tokens`,
//!   `gen_ai.usage.output_tokens`, `gen_ai.usage.input_tokens.cached`,
//!   `gen_ai.usage.output_tokens.reasoning`, `gen_ai.usage.total_cost` and `user.id`.
//!
//! So: OTLP/JSON POSTed to `baseUrl` itself (it is the endpoint, no `/v1/traces` is appended),
//! `Authorization: Bearer <apiKey>` (Ramp's developer API scheme; it replaces a custom
//! `Authorization` header), plus the custom `headers` on every request.
//!
//! # Dialect
//!
//! The shared OTLP mapping (`docs/otlp.md`) unchanged (span names from `trace_name` /
//! `span_name` / `generation_name` as `ramp.mdx` lists, the cost and usage attributes Ramp reads
//! under both their current and OpenRouter's names), plus, when the cost-allocation group is
//! on, `gen_ai.usage.input_cost` (prompt + cache read + cache write) and
//! `gen_ai.usage.output_cost` (completion + reasoning), OpenRouter's names for the split.
//!
//! # Limits and responses
//!
//! At most 50 traces (the batch size of Ramp's own published LiteLLM handler) or 1 MiB per
//! request. A content attribute (`gen_ai.prompt`, `gen_ai.completion`,
//! `gen_ai.tool.definitions`) longer than 64 KiB is shortened visibly (see
//! [`crate::json_fit`]). 429 and 5xx are retried (after `Retry-After` when given);
//! 401/403 pause the destination; other 4xx dead-letter the batch.
//!
//! # Test connection
//!
//! The empty request `{"resourceSpans":[]}` with the key (no span, so nothing reaches Ramp's
//! usage data). 2xx passes; so does 400, since Ramp checks the token before the body and may
//! refuse an empty export; 401/403 fail with "Ramp rejected the API key (401)".

use std::sync::Arc;

use reqwest::Method;
use reqwest::header::AUTHORIZATION;
use serde_json::{Map, Value};
use tracecast_model::trace::TraceView;

use crate::config::required_str;
use crate::http::headers_with_credentials;
use crate::json_fit::cap_content;
use crate::otlp::keys as k;
use crate::otlp::{Attributes, OtlpDialect, OtlpExporter, OtlpHttp, Probe, SpanRole, SpanSlot};
use crate::{BatchLimits, ExportContext, ExportError, Exporter};

/// The endpoint when `baseUrl` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.ramp.com/developer/v1/ai-usage/openrouter";
/// Longest content attribute sent as is.
pub const MAX_CONTENT_BYTES: usize = 64 * 1024;
/// Batch limits.
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 50,
    max_bytes: 1024 * 1024,
};
/// Cost of the input side (USD), with the cost-allocation group.
pub const GEN_AI_USAGE_INPUT_COST: &str = "gen_ai.usage.input_cost";
/// Cost of the output side (USD), with the cost-allocation group.
pub const GEN_AI_USAGE_OUTPUT_COST: &str = "gen_ai.usage.output_cost";

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}

/// The Ramp exporter (typed, for tests and tooling).
pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<OtlpExporter<RampDialect>, ExportError> {
    let api_key = required_str(config, "apiKey")?;
    let base_url = crate::config::optional_str(config, "baseUrl").unwrap_or(DEFAULT_BASE_URL);
    let auth = crate::http::bearer_auth(api_key);
    let headers = headers_with_credentials(config, &[(AUTHORIZATION, &auth, "apiKey")])?;
    let http = OtlpHttp::new(ctx, Method::POST, base_url, headers)
        .map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Ramp,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        credentials: "the API key",
        accept_400: true,
        hint_404: Some(
            "check baseUrl (default https://api.ramp.com/developer/v1/ai-usage/openrouter; change it only if Ramp says so)",
        ),
        ..Probe::new("Ramp")
    };
    Ok(OtlpExporter::new(http, RampDialect, "otlp-json/ramp", probe).with_limits(LIMITS))
}

/// Ramp's flavour of the OTLP mapping (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct RampDialect;

impl OtlpDialect for RampDialect {
    /// Only a parent that can name a span of the user's own OTLP trace (see
    /// [`crate::otlp::carry_unsent_parent`] for any other).
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        crate::otlp::carry_unsent_parent(view, slot, attrs);
        if slot.role != SpanRole::Generation {
            return;
        }
        if let Some(alloc) = view.cost_allocation() {
            let sum = |kinds: &[&str]| -> Option<f64> {
                let costs: Vec<f64> = alloc
                    .parts
                    .iter()
                    .filter(|p| kinds.contains(&p.kind))
                    .map(|p| p.cost)
                    .collect();
                (!costs.is_empty()).then(|| costs.iter().sum())
            };
            attrs
                .opt_double(
                    GEN_AI_USAGE_INPUT_COST,
                    sum(&["prompt", "cache_read", "cache_write"]),
                )
                .opt_double(GEN_AI_USAGE_OUTPUT_COST, sum(&["completion", "reasoning"]));
        }
        cap_content(
            attrs,
            &[
                k::GEN_AI_PROMPT,
                k::GEN_AI_COMPLETION,
                k::GEN_AI_TOOL_DEFINITIONS,
            ],
            MAX_CONTENT_BYTES,
        );
    }
}
