//! `langsmith`: generations as OTLP/HTTP protobuf spans POSTed to LangSmith's OpenTelemetry
//! endpoint, `{endpoint}/otel/v1/traces`, with LangSmith's own attribute names on top of the
//! GenAI semantic conventions.
//!
//! # Protocol choice and sources
//!
//! OTLP is what OpenRouter's LangSmith destination sends ("LangSmith uses the OTEL endpoint at
//! `/otel/v1/traces` for receiving trace data", `openrouter/broadcast/langsmith.mdx`) and what
//! LangSmith documents for new non-LangChain integrations ("Trace with OpenTelemetry",
//! <https://docs.langchain.com/langsmith/trace-with-opentelemetry>; see
//! `notes/destination-protocols.md` §4.5). The runs batch API (`/runs/batch`, §4.2) would need
//! client-side `dotted_order` bookkeeping for the same result. Auth and routing headers
//! (§4.1, §4.5): `x-api-key: <apiKey>`, `Langsmith-Project: <project>`, and
//! `x-tenant-id: <workspaceId>` when a workspace is configured. The `langsmith.*` attribute
//! names are the ones the `langsmith` Python SDK's own OTel exporter writes
//! (`langsmith/_internal/otel/_otel_exporter.py`: `langsmith.span.kind`, `langsmith.trace.name`,
//! `langsmith.metadata.<key>`, `langsmith.span.tags` as a `", "`-joined string);
//! `tests/vendors/test_langsmith.py` checks the golden payload against that module.
//!
//! The body is binary protobuf, the encoding both LangSmith SDKs export
//! (langsmith-sdk `js/src/experimental/otel/exporter.ts` uses `exporter-trace-otlp-proto`).
//! Parents and reasoning tokens follow "Trace with OpenTelemetry"
//! (<https://docs.langchain.com/langsmith/trace-with-opentelemetry>, `langchain-ai/docs`
//! `src/langsmith/trace-with-opentelemetry.mdx`): LangSmith holds a span whose OTLP parent it
//! has not received and drops it, after a 200, if the parent never comes; an OTLP parent span id
//! cannot name a run (a UUID); `langsmith.trace.id` / `langsmith.span.parent_id` nest a span
//! under an existing run (also written by the SDK's own OTLP forwarder, langsmith 0.14.17
//! `langsmith/wrappers/_openai_agents_api.py`); reasoning tokens are read from
//! `gen_ai.usage.details.reasoning_tokens`.
//!
//! # Config
//!
//! | field | default | use |
//! |---|---|---|
//! | `apiKey` (secret) | required | `x-api-key` header |
//! | `endpoint` | `https://api.smith.langchain.com` | base URL (regional or self-hosted); `/otel/v1/traces` is appended unless already there |
//! | `project` | `main` | `Langsmith-Project` header |
//! | `workspaceId` | none | `x-tenant-id` header, for keys that span workspaces |
//! | `headers` | none | sent with every request, including the connection test; the three headers above win over custom ones of the same name |
//!
//! # Mapping (on top of the shared OTLP mapping, `docs/otlp.md`)
//!
//! | OpenRouter | LangSmith attribute | LangSmith field |
//! |---|---|---|
//! | `trace.trace_id` | OTLP trace id | Trace ID |
//! | `trace.trace_name`, `trace.span_name`, `trace.generation_name` | span name and `langsmith.trace.name` | Run Name (see below) |
//! | `trace.parent_span_id` | never the OTLP parent: with a UUID `trace.trace_id` and a UUID parent (a run), `langsmith.span.parent_id` on the top-most span and `langsmith.trace.id` on every span ([`parent_run`]); otherwise `langsmith.metadata.parent_span_id` on the top-most span, a root run | Parent Run ID / metadata |
//! | reasoning tokens | `gen_ai.usage.details.reasoning_tokens` (besides the shared attributes) | token usage |
//! | observation type | `langsmith.span.kind`: `llm` (generation), `chain` (the `span_name` span) | Run type |
//! | `user` | `langsmith.metadata.user_id` (and `user.id`) | User ID |
//! | `session_id` | `langsmith.metadata.session_id` (and `session.id`, `gen_ai.conversation.id`) | Session / thread |
//! | custom `trace` keys | `langsmith.metadata.<key>` (instead of `trace.metadata.<key>`) | metadata |
//! | string arrays in custom metadata | `langsmith.span.tags` (`", "`-joined; commas inside a tag become spaces) | tags |
//! | provider, model | `langsmith.metadata.ls_provider` (the `gen_ai.system` value), `langsmith.metadata.ls_model_name` (the model slug without its `author/` prefix, e.g. `gpt-4o`, as LangSmith's price table names models); the full slug stays in `gen_ai.request.model` | cost tracking |
//! | prompt, completion | `gen_ai.prompt`, `gen_ai.completion` (JSON) | inputs, outputs |
//!
//! Run names: the `span_name` span is named `trace.span_name`; the generation span
//! `trace.generation_name`, or `trace.trace_name` when the generation is itself the root run and
//! has no `generation_name`. The top-most span also carries `langsmith.metadata.trace_name`, so
//! the trace name stays visible when a `span_name` or `generation_name` names the root run.
//! `langsmith.trace.session_id` is deliberately not set from `session_id`: in LangSmith's run
//! model a run's "session" is its project (tracer session), which the `Langsmith-Project`
//! header already names. OpenRouter's third run type (EVENT -> `tool`) does not occur: a
//! generation emits no event observations.
//! Fields set from the generation (`user_id`, `session_id`, `trace_name`, `ls_provider`,
//! `ls_model_name`, `truncated`) win over custom metadata keys of the same name.
//!
//! # Privacy mode
//!
//! `gen_ai.prompt`, `gen_ai.completion` and `gen_ai.tool.definitions` are never built (the
//! shared encoder gets no content from [`TraceView`]); everything else is sent.
//!
//! # Limits and truncation
//!
//! At most 100 generations and 5 MiB per request. Any string attribute over 1 MiB (in practice
//! `gen_ai.prompt`, `gen_ai.completion`, `gen_ai.tool.definitions`, or an outsized custom
//! metadata value) is replaced by a JSON marker
//! `{"truncated":true,"original_bytes":…,"kept_bytes":…,"note":…,"preview":"<first 64 KiB>"}`
//! and the span gets `langsmith.metadata.truncated = true` and `tracecast.truncated = true`.
//!
//! # Responses
//!
//! The shared classification: 2xx delivered; 401/403 pause the destination; 408, 429 (with
//! `Retry-After`) and 5xx are retried; other 4xx are dead-lettered. An OTLP `partialSuccess`
//! is logged and counts as delivered (the OTLP specification says not to retry it); LangSmith
//! has no per-item answers on this endpoint.
//!
//! # Test connection
//!
//! An empty OTLP export request (zero bytes of protobuf) to the traces URL with the same
//! headers: it proves the URL, the API key and the workspace at once and creates nothing.
//! 401/403 read "LangSmith rejected the API key (401)".

use std::borrow::Cow;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value};
use tracecast_model::trace::{TraceView, is_uuid};

use crate::config::{custom_headers, optional_str, required_str};
use crate::endpoint::{join_url, set_header};
use crate::otlp::keys as k;
use crate::otlp::{
    AttrValue, AttributeKey, Attributes, Element, OtlpDialect, OtlpExporter, OtlpHttp, Probe,
    SpanRole, SpanSlot, default_span_name,
};
use crate::{BatchLimits, ExportContext, ExportError, Exporter};

/// The default `endpoint`.
pub const DEFAULT_ENDPOINT: &str = "https://api.smith.langchain.com";
/// The default `project`.
pub const DEFAULT_PROJECT: &str = "main";
/// The path of LangSmith's OTLP traces endpoint under `endpoint`.
pub const TRACES_PATH: &str = "/otel/v1/traces";

/// Prefix of LangSmith run metadata attributes.
pub const METADATA_PREFIX: &str = "langsmith.metadata.";
pub const SPAN_KIND: &str = "langsmith.span.kind";
pub const TRACE_NAME: &str = "langsmith.trace.name";
pub const SPAN_TAGS: &str = "langsmith.span.tags";
/// The trace (root run) a span belongs to, a UUID; overrides the one derived from the OTLP
/// trace id.
pub const TRACE_ID: &str = "langsmith.trace.id";
/// The run a span nests under, a UUID: how a span links to a run LangSmith already has.
pub const PARENT_RUN_ID: &str = "langsmith.span.parent_id";
/// Reasoning tokens, where LangSmith reads them.
pub const USAGE_REASONING_TOKENS: &str = "gen_ai.usage.details.reasoning_tokens";
/// Set on a span whose content was truncated.
pub const TRACECAST_TRUNCATED: &str = crate::truncate::TRUNCATED;

/// Largest string attribute (prompt, completion, tool definitions) sent as is, in bytes; a
/// larger one is replaced by a truncation marker, so one generation stays far below request
/// limits.
pub const CONTENT_CAP: usize = 1024 * 1024;
/// How many bytes of the original value a truncation marker keeps as its `preview`.
pub const PREVIEW_BYTES: usize = 64 * 1024;
/// Generations per request: the LangSmith SDK batches at most 100 runs per call.
pub const MAX_ITEMS: usize = 100;
/// Request bodies stay under 5 MiB (OTLP's recommended receiver limit is 20 MiB; LangSmith
/// documents no lower one).
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

/// LangSmith's flavour of OTLP (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct LangsmithDialect;

fn meta(name: &str) -> String {
    format!("{METADATA_PREFIX}{name}")
}

/// The run the generation nests under, as `(trace id, parent run id)`: only when both
/// `trace.trace_id` and `trace.parent_span_id` are UUIDs, the form of LangSmith's trace and run
/// ids (a run's trace is needed to place it; a parent in another form cannot name a run).
pub fn parent_run<'a>(view: &TraceView<'a>) -> Option<(&'a str, &'a str)> {
    let parent = view.parent_span_id()?;
    let trace = view.trace_key();
    (is_uuid(parent) && is_uuid(trace)).then_some((trace, parent))
}

impl OtlpDialect for LangsmithDialect {
    /// Never the user's parent: an OTLP parent span id cannot name a LangSmith run, and LangSmith
    /// drops a span whose OTLP parent it never receives. The parent goes in
    /// `langsmith.span.parent_id` (a run id) or in metadata instead.
    fn parent_span_id(&self, _view: &TraceView<'_>) -> Option<[u8; 8]> {
        None
    }

    fn attribute_key(&self, _element: Element, key: &str) -> AttributeKey {
        match key.strip_prefix(k::TRACE_METADATA_PREFIX) {
            Some(name) => AttributeKey::Rename(Cow::Owned(meta(name))),
            None => AttributeKey::Keep,
        }
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        let kind = match slot.role {
            SpanRole::Intermediate => "chain",
            SpanRole::Generation => "llm",
        };
        attrs.set(SPAN_KIND, AttrValue::String(Cow::Borrowed(kind)));
        let run = parent_run(view);
        if let Some((trace, _)) = run {
            attrs.set(TRACE_ID, AttrValue::String(Cow::Borrowed(trace)));
        }
        if let Some(parent) = slot.unsent_parent(view) {
            match run {
                Some((_, run_id)) => {
                    attrs.set(PARENT_RUN_ID, AttrValue::String(Cow::Borrowed(run_id)))
                }
                None => attrs.set(
                    meta("parent_span_id"),
                    AttrValue::String(Cow::Borrowed(parent)),
                ),
            };
        }
        attrs.set(TRACE_NAME, AttrValue::String(default_span_name(view, slot)));
        if slot.top_most {
            attrs.set(
                meta("trace_name"),
                AttrValue::String(Cow::Borrowed(view.trace_name())),
            );
        }
        if let Some(user) = view.user() {
            attrs.set(meta("user_id"), AttrValue::String(Cow::Borrowed(user)));
        }
        if let Some(session) = view.session_id() {
            attrs.set(
                meta("session_id"),
                AttrValue::String(Cow::Borrowed(session)),
            );
        }
        let tags = crate::tags::from_metadata(view);
        if !tags.is_empty() {
            let joined = tags
                .iter()
                .map(|t| t.replace(',', " "))
                .collect::<Vec<_>>()
                .join(", ");
            attrs.set(SPAN_TAGS, AttrValue::String(Cow::Owned(joined)));
        }
        if slot.role == SpanRole::Generation {
            if let Some(reasoning) = view.reasoning_tokens() {
                let n = i64::try_from(reasoning).unwrap_or(i64::MAX);
                attrs.set(USAGE_REASONING_TOKENS, AttrValue::Int(n));
            }
            let provider = match attrs.get(k::GEN_AI_SYSTEM) {
                Some(AttrValue::String(p)) => Some(p.clone()),
                _ => None,
            };
            if let Some(p) = provider {
                attrs.set(meta("ls_provider"), AttrValue::String(p));
            }
            // LangSmith's price table knows models by their own name ("gpt-4o"), not by
            // OpenRouter's slug ("openai/gpt-4o").
            let model = view.model();
            let name = model.split_once('/').map_or(model, |(_, name)| name);
            attrs.set(
                meta("ls_model_name"),
                AttrValue::String(Cow::Borrowed(name)),
            );
        }
        if crate::truncate::replace_oversized(attrs, CONTENT_CAP, PREVIEW_BYTES) {
            attrs.set(meta("truncated"), AttrValue::Bool(true));
            attrs.set(TRACECAST_TRUNCATED, AttrValue::Bool(true));
        }
    }
}

/// The traces URL for a configured `endpoint`: `/otel/v1/traces` appended, unless the endpoint
/// already is the traces URL.
pub fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with(TRACES_PATH) {
        base.to_owned()
    } else {
        format!("{base}{TRACES_PATH}")
    }
}

/// The exporter for a (validated, decrypted) `langsmith` config.
pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<OtlpExporter<LangsmithDialect>, ExportError> {
    let api_key = required_str(config, "apiKey")?;
    let endpoint = optional_str(config, "endpoint").unwrap_or(DEFAULT_ENDPOINT);
    let project = optional_str(config, "project").unwrap_or(DEFAULT_PROJECT);
    let url = join_url(&traces_url(endpoint), "", "endpoint")?;

    let mut headers: HeaderMap = custom_headers(config)?;
    set_header(&mut headers, "x-api-key", api_key, "apiKey", true)?;
    set_header(&mut headers, "langsmith-project", project, "project", false)?;
    if let Some(ws) = optional_str(config, "workspaceId") {
        set_header(&mut headers, "x-tenant-id", ws, "workspaceId", false)?;
    }
    let http = OtlpHttp::new(ctx, Method::POST, url.as_str(), headers)
        .map_err(|e| ExportError::Config(format!("endpoint: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Langsmith,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        credentials: "the API key",
        hint_404: Some(
            "check the endpoint: it is the LangSmith API base URL (e.g. https://api.smith.langchain.com, or https://<host>/api/v1 when self-hosted)",
        ),
        ..Probe::new("LangSmith")
    };
    Ok(
        OtlpExporter::new(http, LangsmithDialect, "otlp-json/langsmith", probe)
            .protobuf()
            .with_limits(BatchLimits {
                max_items: MAX_ITEMS,
                max_bytes: MAX_BYTES,
            }),
    )
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traces_urls() {
        assert_eq!(
            traces_url("https://api.smith.langchain.com"),
            "https://api.smith.langchain.com/otel/v1/traces"
        );
        assert_eq!(
            traces_url("https://eu.api.smith.langchain.com/"),
            "https://eu.api.smith.langchain.com/otel/v1/traces"
        );
        assert_eq!(
            traces_url("https://ls.corp/api/v1"),
            "https://ls.corp/api/v1/otel/v1/traces"
        );
        assert_eq!(
            traces_url("https://ls.corp/api/v1/otel/v1/traces/"),
            "https://ls.corp/api/v1/otel/v1/traces"
        );
    }
}
