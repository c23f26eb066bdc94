//! `weave`: W&B Weave through its OTLP/HTTP endpoint, with a dialect that puts each field where
//! Weave's OTLP converter turns it into the call OpenRouter's Weave destination documents.
//!
//! # Protocol (choice and source)
//!
//! Weave ingests OpenTelemetry traces at `POST {baseUrl}/otel/v1/traces` (multi-tenant
//! `https://trace.wandb.ai`; dedicated and self-managed `https://<host>/traces`), body an OTLP
//! `ExportTraceServiceRequest` in binary protobuf, the documented content type (reference notes
//! §6.1, "W&B Weave"; <https://docs.wandb.ai/weave/guides/tracking/otel>; the `weave` SDK's
//! generated client posts to the same route, `weave_server_sdk/resources/otel.py`). This is the
//! integration path W&B documents for producers that are not the Python/TypeScript SDK, and it
//! is stable across the SDK's move from `call/upsert_batch` to the `calls/complete` route
//! (projects in "calls complete" mode reject the older call start/end batches). So tracecast
//! uses OTLP through the shared encoder ([`OtlpExporter`]) with [`WeaveDialect`].
//!
//! Auth and routing, sent in both documented forms so that old and current servers accept
//! them: `Authorization: Basic base64("api:<apiKey>")` with `project_id: <entity>/<project>`
//! (older docs, still accepted) and `wandb-api-key: <apiKey>` with the resource attributes
//! `wandb.entity` and `wandb.project` (current docs). Custom `headers` go on every request
//! (tracecast's own auth headers win over custom ones of the same name).
//!
//! # What Weave makes of a generation
//!
//! Weave's converter (`weave.trace_server.opentelemetry.python_spans.Span.to_call`, checked in
//! `tests/vendors/test_weave.py` by running the golden payload through Weave's own in-memory
//! trace server) turns each span into a call:
//!
//! | Weave call | from |
//! |---|---|
//! | `op_name` | the span name: `trace.generation_name`, else `trace.trace_name` on a root span (both default to the model slug); the `trace.span_name` span is a parent call named after it, with `attributes.agent_name` = the span name (`gen_ai.agent.name`) |
//! | `display_name` | `trace.trace_name` on a root call whose `op_name` is a `span_name` or `generation_name` (Weave's call list shows it) |
//! | `attributes.trace_name` | `trace.trace_name` (default: the model slug), on the top-most call |
//! | `attributes.kind` | `llm` on the generation's call (`weave.span.kind`) |
//! | `attributes.user_id`, `attributes.session_id` | `user`, `session_id` (span attribute `wandb.attributes`, a JSON object Weave merges into the call's attributes) |
//! | `attributes.openrouter_trace_id` | the trace key (`trace.trace_id`, else the generation id) |
//! | `attributes.openrouter_observation_id` | the generation id |
//! | `attributes.<key>` | each custom `trace` key |
//! | `attributes.cost` | `{total, input?, output?}` in USD (Weave's summary costs come from its own price table, which OTLP cannot set) |
//! | `attributes.openrouter` | call facts that are not content (`response_model`, `provider_name`, `finish_reasons`, `streamed`, `latency_ms`, `time_to_first_token_ms`, `tool_call_names`, ...) and the enabled metadata groups' fields |
//! | `attributes.model`, `.provider`, `.model_parameters`, `.operation_name`, `.response_id`, `.finish_reasons`, `.system` | the standard `gen_ai.*` attributes |
//! | `inputs` | `{"messages": [...], "tools": [...], "model": ..., <model parameters>}` (span attribute `inputs`); in privacy mode only the model and its parameters |
//! | `output` | `{"completion", "reasoning", "tool_calls"?}` (span attribute `output`); absent in privacy mode |
//! | `summary.usage[<model>]` | `prompt_tokens`, `completion_tokens`, `input_tokens`, `output_tokens`, `total_tokens`, cache read/creation tokens |
//! | `summary.weave` | status (error when the generation failed), latency |
//! | `thread_id`, `turn_id` | `session_id` (`gen_ai.conversation.id`): a session is a Weave thread, each call a turn |
//! | `exception` | the error message of a failed generation |
//! | `parent_id` | `trace.parent_span_id` only when it can name a call the user sent through OTLP (16 hex characters in the user's own 32-hex trace id); a Weave SDK call id is a UUID no OTLP parent can name. Otherwise the top call is a root call (Weave's call list shows roots) and the value is `attributes.parent_span_id` |
//!
//! The standard attributes whose dotted names would collide in Weave's nested attribute tree
//! (`gen_ai.usage.input_tokens` with `gen_ai.usage.input_tokens.cached`, which Weave rejects
//! with `AttributePathConflictError`) are left out, as are `trace.metadata.*` (sent in
//! `wandb.attributes` instead, so dotted custom keys cannot collide) and the content
//! attributes `gen_ai.prompt` / `gen_ai.tool.definitions` (sent in `inputs`). A final pass
//! drops any remaining attribute whose key is a dotted prefix of another's.
//!
//! # Limits, truncation, answers
//!
//! Batches of up to 500 generations / 4 MiB of records (Weave's client caps requests at 31 MiB,
//! OTLP receivers at 20 MiB). `inputs` or `output` whose JSON exceeds [`MAX_FIELD_BYTES`] is
//! replaced by `{"truncated": true, "reason": "...", "original_bytes": N}` and
//! `wandb.attributes` gets `truncated: true` and `truncated_fields`. A 200 with an OTLP
//! `partialSuccess` (spans Weave rejected) is logged and counts as delivered, as the OTLP
//! specification says; 401/403 pause the destination; 408/429/5xx retry (honouring
//! `Retry-After`); other 4xx dead-letter the batch.
//!
//! # Test connection
//!
//! An empty export request (zero bytes of protobuf, which every OTLP receiver must accept) to
//! the traces endpoint with the real headers: it proves the URL and the API key.

use std::borrow::Cow;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

use crate::config::required_str;
use crate::content::{
    call_metadata, cost_json, custom_metadata, group_metadata, input_json, output_json,
    truncate_if_over,
};
use crate::http::{basic_auth, secret_value};
use crate::otlp::keys as k;
use crate::otlp::{
    Attr, AttributeKey, Attributes, Element, OtlpDialect, OtlpExporter, OtlpHttp, Probe, SpanRole,
    SpanSlot,
};
use crate::{BatchLimits, ExportContext, ExportError, Exporter};

/// The multi-tenant Weave trace server.
pub const DEFAULT_BASE_URL: &str = "https://trace.wandb.ai";
/// Path of the OTLP traces endpoint under `baseUrl`.
pub const TRACES_PATH: &str = "/otel/v1/traces";
/// Largest `inputs` or `output` JSON sent as is; bigger ones are replaced by a marker.
pub const MAX_FIELD_BYTES: usize = 4 * 1024 * 1024;

/// Span attribute holding a JSON object that Weave merges into the call's attributes.
pub const WANDB_ATTRIBUTES: &str = "wandb.attributes";
/// Span attribute Weave reads the call's `inputs` from (lowest-priority generic key, de-nested).
pub const INPUTS: &str = "inputs";
/// Span attribute Weave reads the call's `output` from (generic key, de-nested).
pub const OUTPUT: &str = "output";
/// Span attribute Weave reads `total_tokens` from.
pub const LLM_USAGE_TOTAL_TOKENS: &str = "llm.usage.total_tokens";
/// Weave's call kind attribute (`attributes.kind`, one of Weave's op kinds).
pub const WEAVE_SPAN_KIND: &str = "weave.span.kind";
/// GenAI agent name (`attributes.agent_name` in Weave), set on the `trace.span_name` span.
pub const GEN_AI_AGENT_NAME: &str = "gen_ai.agent.name";
/// The call's display name in Weave's call list.
pub const WANDB_DISPLAY_NAME: &str = "wandb.display_name";
pub const WANDB_ENTITY: &str = "wandb.entity";
pub const WANDB_PROJECT: &str = "wandb.project";

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(exporter(config, ctx)?))
}

/// The Weave exporter: OTLP/HTTP protobuf with [`WeaveDialect`].
pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<OtlpExporter<WeaveDialect>, ExportError> {
    let api_key = required_str(config, "apiKey")?;
    let entity = required_str(config, "entity")?;
    let project = required_str(config, "project")?;
    let base = crate::config::optional_str(config, "baseUrl")
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    let url = format!("{base}{TRACES_PATH}");

    let mut headers: HeaderMap = crate::config::custom_headers(config)?;
    const KEY_ERROR: &str = "apiKey is not a valid header value";
    headers.insert(
        AUTHORIZATION,
        secret_value(&basic_auth("api", api_key), KEY_ERROR)?,
    );
    headers.insert(
        HeaderName::from_static("wandb-api-key"),
        secret_value(api_key, KEY_ERROR)?,
    );
    headers.insert(
        HeaderName::from_static("project_id"),
        HeaderValue::from_str(&format!("{entity}/{project}")).map_err(|_| {
            ExportError::Config("entity and project must be valid header values".into())
        })?,
    );

    let http = OtlpHttp::new(ctx, Method::POST, &url, headers)
        .map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Weave,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        credentials: "the API key",
        hint_404: Some(
            "check baseUrl (https://trace.wandb.ai, or https://<host>/traces for dedicated W&B)",
        ),
        ..Probe::new("W&B Weave")
    };
    let dialect = WeaveDialect {
        entity: Arc::from(entity),
        project: Arc::from(project),
    };
    Ok(OtlpExporter::new(http, dialect, "otlp-json/weave", probe)
        .protobuf()
        .with_limits(BatchLimits {
            max_items: 500,
            max_bytes: 4 * 1024 * 1024,
        }))
}

/// Weave's flavour of OTLP (see the module docs).
#[derive(Debug, Clone)]
pub struct WeaveDialect {
    entity: Arc<str>,
    project: Arc<str>,
}

impl WeaveDialect {
    pub fn new(entity: &str, project: &str) -> Self {
        WeaveDialect {
            entity: Arc::from(entity),
            project: Arc::from(project),
        }
    }
}

impl OtlpDialect for WeaveDialect {
    /// The user's parent only when it can name a call the user sent Weave through OTLP (Weave
    /// makes a call's id, trace and parent from the OTLP span ids): a 16-hex span id in the
    /// user's own 32-hex trace id. A Weave SDK call id is a UUID, which no OTLP parent can name;
    /// a parent Weave never receives would hide the call from Weave's call list, which shows
    /// root calls. So the generation is then a root call and the parent goes in
    /// `attributes.parent_span_id`.
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn attribute_key(&self, element: Element, key: &str) -> AttributeKey {
        if !matches!(element, Element::Span(_)) {
            return AttributeKey::Keep;
        }
        match key {
            // Content goes in `inputs` / `output`.
            k::GEN_AI_PROMPT | k::GEN_AI_TOOL_DEFINITIONS => AttributeKey::Drop,
            k::GEN_AI_COMPLETION => AttributeKey::Rename(Cow::Borrowed(OUTPUT)),
            // Children of `gen_ai.usage.input_tokens` / `output_tokens` (ints): Weave rejects a
            // span that has both `a` and `a.b`.
            k::GEN_AI_USAGE_INPUT_TOKENS_CACHED
            | k::GEN_AI_USAGE_INPUT_TOKENS_CACHE_WRITE
            | k::GEN_AI_USAGE_INPUT_TOKENS_AUDIO
            | k::GEN_AI_USAGE_OUTPUT_TOKENS_REASONING
            | k::GEN_AI_USAGE_OUTPUT_TOKENS_AUDIO
            | k::GEN_AI_USAGE_OUTPUT_TOKENS_IMAGE => AttributeKey::Drop,
            // Custom metadata goes in `wandb.attributes` (dotted custom keys cannot collide
            // there).
            _ if key.starts_with(k::TRACE_METADATA_PREFIX) => AttributeKey::Drop,
            _ => AttributeKey::Keep,
        }
    }

    fn resource_attributes<'a>(&self, _view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
        attrs
            .string(WANDB_ENTITY, self.entity.to_string())
            .string(WANDB_PROJECT, self.project.to_string());
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        let mut wandb = custom_metadata(view);
        wandb.insert("openrouter_trace_id".into(), json!(view.trace_key()));
        if let Some(u) = view.user() {
            wandb.insert("user_id".into(), json!(u));
        }
        if let Some(s) = view.session_id() {
            wandb.insert("session_id".into(), json!(s));
        }
        if let Some(parent) = slot.unsent_parent(view) {
            wandb.insert("parent_span_id".into(), json!(parent));
        }
        if slot.top_most {
            let trace_name = view.trace_name();
            wandb.insert("trace_name".into(), json!(trace_name));
            // A root call whose op_name is not the trace name (a span_name or generation_name
            // names it) shows the trace name in Weave's call list.
            if slot.is_root && self.span_name(view, slot) != trace_name {
                attrs.string(WANDB_DISPLAY_NAME, trace_name);
            }
        }
        if slot.role == SpanRole::Intermediate {
            // Gives the parent call a Weave attribute of its own (`agent_name`): without any,
            // Weave stores the raw attribute tree instead of merging `wandb.attributes`.
            attrs.opt_string(GEN_AI_AGENT_NAME, view.span_name());
        }
        if slot.role == SpanRole::Generation {
            attrs.string(WEAVE_SPAN_KIND, "llm");
            wandb.insert("openrouter_observation_id".into(), json!(view.id()));
            if let Some(c) = cost_json(view) {
                wandb.insert("cost".into(), Value::Object(c));
            }
            let mut facts = call_metadata(view);
            facts.extend(group_metadata(view));
            wandb.insert("openrouter".into(), Value::Object(facts));

            let mut truncated: Vec<&'static str> = Vec::new();
            let mut inputs = input_json(view).unwrap_or_default();
            inputs.insert("model".into(), json!(view.model()));
            inputs.extend(view.model_parameters());
            let mut inputs = Value::Object(inputs);
            if truncate_if_over(&mut inputs, MAX_FIELD_BYTES, &[]) {
                truncated.push("inputs");
            }
            attrs.json(INPUTS, &inputs);
            // `output` was added by the encoder (renamed from `gen_ai.completion`); check its size.
            if attrs.get(OUTPUT).is_some() {
                let mut out = output_json(view).map(Value::Object).unwrap_or(Value::Null);
                if truncate_if_over(&mut out, MAX_FIELD_BYTES, &[]) {
                    truncated.push("output");
                    attrs.remove(OUTPUT);
                    attrs.json(OUTPUT, &out);
                }
            }
            if !truncated.is_empty() {
                wandb.insert("truncated".into(), Value::Bool(true));
                wandb.insert("truncated_fields".into(), json!(truncated));
            }
            if let Some(total) = view.total_tokens() {
                attrs.int(
                    LLM_USAGE_TOTAL_TOKENS,
                    i64::try_from(total).unwrap_or(i64::MAX),
                );
            }
        }
        attrs.json(WANDB_ATTRIBUTES, &Value::Object(wandb));
        drop_path_conflicts(attrs);
    }
}

/// Drops every attribute whose key is a dotted prefix of another attribute's key (`a` when
/// `a.b` exists): Weave nests attributes by their dotted keys and rejects such a span.
fn drop_path_conflicts(attrs: &mut Attributes<'_, '_>) {
    let mut keys: Vec<&str> = attrs.iter().map(|a| a.key.as_ref()).collect();
    keys.sort_unstable();
    keys.dedup();
    // In sorted order the keys starting with `a.` form one run, found by binary search.
    let mut prefix = String::new();
    let conflicting: Vec<String> = keys
        .iter()
        .filter(|key| {
            prefix.clear();
            prefix.push_str(key);
            prefix.push('.');
            let at = keys.partition_point(|k| *k < prefix.as_str());
            keys.get(at).is_some_and(|k| k.starts_with(prefix.as_str()))
        })
        .map(|k| (*k).to_owned())
        .collect();
    if !conflicting.is_empty() {
        attrs.retain(|a: &Attr<'_>| !conflicting.iter().any(|c| a.key == c.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_prefixes_are_dropped() {
        let d = WeaveDialect::new("e", "p");
        let keys = |e: Element, k: &str| d.attribute_key(e, k);
        let mut a = Attributes::new(&keys, Element::Span(SpanRole::Generation), 8);
        a.verbatim();
        a.int("a", 1)
            .int("a-c", 2)
            .int("a.b", 3)
            .int("ab", 4)
            .int("x.y", 5)
            .int("x.y.z", 6)
            .int("q", 7);
        drop_path_conflicts(&mut a);
        let keys: Vec<&str> = a.iter().map(|k| k.key.as_ref()).collect();
        assert_eq!(keys, vec!["a-c", "a.b", "ab", "x.y.z", "q"]);
    }
}
