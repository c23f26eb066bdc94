//! `arize`: OTLP/HTTP **binary protobuf** to Arize AX, with OpenInference attributes.
//!
//! Protocol choice and source: Arize AX ingests traces over OTLP (`https://otlp.arize.com`,
//! traces at `/v1/traces`; posting to `/v1` over HTTP is answered 200 but the spans are
//! discarded) and reads them through the OpenInference semantic conventions
//! (<https://github.com/Arize-ai/openinference/blob/main/spec/semantic_conventions.md>,
//! `destination-protocols.md` §8, `arize.mdx`). Arize's own client (`arize-otel`, and the
//! `@opentelemetry/exporter-trace-otlp-proto` setups in Arize's JS examples) sends binary
//! protobuf and names the project with the resource attribute `openinference.project.name`
//! (older clients: `model_id`); tracecast does the same and sends both project attributes.
//!
//! Credential headers: those of Arize's OTel client, PyPI `arize-otel` 0.13.0
//! (github.com/Arize-ai/arize-otel-python, `src/arize/otel/otel.py`, `_get_arize_auth_headers`):
//! `authorization: <apiKey>` (the key as is, no scheme), `arize-space-id: <spaceKey>` and
//! `arize-interface: otel`. That client still adds `api_key` and `space_id`, marked "deprecated,
//! will be removed in future versions"; tracecast does not send them: header names with `_` are
//! dropped by proxies by default (nginx's `underscores_in_headers off`).
//!
//! Config: `apiKey` (required, secret), `spaceKey` (required, secret), `modelId` (required: the
//! project name), `baseUrl` (default `https://otlp.arize.com`), `headers`.
//!
//! # Mapping
//!
//! The standard mapping of `docs/otlp.md` (span names and ids from `trace`, `gen_ai.*`,
//! `openrouter.*`) with these changes:
//!
//! - resource: `openinference.project.name` and `model_id` = `modelId`;
//! - custom `trace` metadata: `metadata.<key>` instead of `trace.metadata.<key>` (what
//!   `arize.mdx` documents), and all of it as one JSON object in OpenInference's `metadata`;
//! - `gen_ai.prompt`, `gen_ai.completion` and `gen_ai.tool.definitions` are not sent: the
//!   content goes in OpenInference's attributes instead;
//! - the intermediate span (`trace.span_name`) has `openinference.span.kind` = `CHAIN`;
//! - the generation span adds the OpenInference attributes:
//!
//! | key | source |
//! |---|---|
//! | `openinference.span.kind` | `LLM` (`EMBEDDING` for embeddings calls, with `embedding.model_name`) |
//! | `llm.model_name` | `model` |
//! | `llm.provider` | provider (else the model's author) as an OpenInference provider value (`openai`, `anthropic`, `google`, `aws`, `azure`, `mistralai`, `xai`, ...), else the name in lower case |
//! | `llm.system` | `openai`, `anthropic`, `cohere` or `mistralai` when the provider is one of those |
//! | `llm.token_count.prompt`, `.completion`, `.total` | usage |
//! | `llm.token_count.prompt_details.cache_read`, `.cache_write`, `.audio` | usage details |
//! | `llm.token_count.completion_details.reasoning`, `.audio` | usage details |
//! | `llm.cost.total` | `total_cost` |
//! | `llm.cost.prompt`, `llm.cost.completion`, `llm.cost.prompt_details.cache_read`, `llm.cost.prompt_details.cache_write`, `llm.cost.completion_details.reasoning` | cost-allocation group |
//! | `llm.finish_reason` | `finish_reason` |
//! | `llm.invocation_parameters` | model parameters as a JSON object |
//! | `user.id`, `session.id` | `user`, `session_id` (standard keys, shared with OpenInference) |
//! | `metadata` | custom `trace` keys as a JSON object |
//! | `tag.tags` | `trace.tags` when it is a string or an array of strings |
//! | `input.value`, `input.mime_type` | `{"messages":[...]}` as `application/json` (a completions prompt or a Responses `input` string as `text/plain`); **not in privacy mode** |
//! | `llm.input_messages.<i>.message.role`, `.content`, `.name`, `.tool_call_id`, `.contents.<j>.message_content.type` / `.text` / `.image.image.url`, `.tool_calls.<k>.tool_call.id` / `.function.name` / `.function.arguments` | each request message; **not in privacy mode** |
//! | `llm.tools.<i>.tool.json_schema` | each tool definition as JSON; **not in privacy mode** |
//! | `output.value`, `output.mime_type` | the completion as `text/plain` (the tool calls as `application/json` when there is no text); **not in privacy mode** |
//! | `llm.output_messages.0.message.role` (`assistant`), `.content`, `.tool_calls.<k>.tool_call.*` | the first choice; **not in privacy mode** |
//!
//! Privacy mode: [`TraceView::input`] and [`TraceView::output`] give nothing, so none of the
//! content attributes above is built; usage, cost, timing, model, ids and metadata are sent.
//!
//! Limits: Arize documents none for OTLP; tracecast cuts string values at 65,536 characters
//! with a visible marker (listed in `tracecast.truncated_attributes`, see
//! [`crate::attribute_limits`]) and splits request bodies over 4 MiB.
//!
//! Test connection: an empty `ExportTraceServiceRequest` (zero bytes of protobuf) with the
//! credentials; 2xx passes, 401/403 name the space key / API key pair.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

use crate::attribute_limits::{Unit, ValueLimits, truncate_attributes};
use crate::config::{optional_str, required_str};
use crate::endpoint::traces_url;
use crate::http::headers_with_credentials;
use crate::otlp::keys as k;
use crate::otlp::{
    AttributeKey, Attributes, Element, OtlpDialect, OtlpExporter, OtlpHttp, Probe, SpanRole,
    SpanSlot,
};
use crate::sized_otlp::SizedExporter;
use crate::{BatchLimits, ExportContext, ExportError, Exporter};

/// The `baseUrl` default.
pub const DEFAULT_BASE_URL: &str = "https://otlp.arize.com";
/// Header carrying the space key (`arize-otel`'s current name; `space_id` is deprecated).
pub const SPACE_ID_HEADER: &str = "arize-space-id";
/// Header carrying the API key, as is (`arize-otel`'s current name; `api_key` is deprecated).
pub const API_KEY_HEADER: &str = "authorization";
/// Header naming the kind of client, and its value (what `arize-otel` sends).
pub const INTERFACE_HEADER: (&str, &str) = ("arize-interface", "otel");
/// Most bytes in one request body.
pub const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;
/// tracecast's bound on one attribute (Arize documents none).
pub const LIMITS: ValueLimits = ValueLimits {
    max_value: 65_536,
    max_key: 1024,
    max_array_len: 1024,
    unit: Unit::Chars,
};

/// OpenInference attribute keys.
pub mod oi {
    pub const PROJECT_NAME: &str = "openinference.project.name";
    pub const MODEL_ID: &str = "model_id";
    pub const SPAN_KIND: &str = "openinference.span.kind";
    pub const LLM_MODEL_NAME: &str = "llm.model_name";
    pub const EMBEDDING_MODEL_NAME: &str = "embedding.model_name";
    pub const LLM_PROVIDER: &str = "llm.provider";
    pub const LLM_SYSTEM: &str = "llm.system";
    pub const TOKENS_PROMPT: &str = "llm.token_count.prompt";
    pub const TOKENS_COMPLETION: &str = "llm.token_count.completion";
    pub const TOKENS_TOTAL: &str = "llm.token_count.total";
    pub const TOKENS_CACHE_READ: &str = "llm.token_count.prompt_details.cache_read";
    pub const TOKENS_CACHE_WRITE: &str = "llm.token_count.prompt_details.cache_write";
    pub const TOKENS_PROMPT_AUDIO: &str = "llm.token_count.prompt_details.audio";
    pub const TOKENS_REASONING: &str = "llm.token_count.completion_details.reasoning";
    pub const TOKENS_COMPLETION_AUDIO: &str = "llm.token_count.completion_details.audio";
    pub const COST_TOTAL: &str = "llm.cost.total";
    pub const COST_PROMPT: &str = "llm.cost.prompt";
    pub const COST_COMPLETION: &str = "llm.cost.completion";
    pub const COST_CACHE_READ: &str = "llm.cost.prompt_details.cache_read";
    pub const COST_CACHE_WRITE: &str = "llm.cost.prompt_details.cache_write";
    pub const COST_REASONING: &str = "llm.cost.completion_details.reasoning";
    pub const FINISH_REASON: &str = "llm.finish_reason";
    pub const INVOCATION_PARAMETERS: &str = "llm.invocation_parameters";
    pub const METADATA: &str = "metadata";
    /// Prefix of custom metadata keys (`metadata.<key>`), as `arize.mdx` documents.
    pub const METADATA_PREFIX: &str = "metadata.";
    pub const TAGS: &str = "tag.tags";
    pub const INPUT_VALUE: &str = "input.value";
    pub const INPUT_MIME_TYPE: &str = "input.mime_type";
    pub const OUTPUT_VALUE: &str = "output.value";
    pub const OUTPUT_MIME_TYPE: &str = "output.mime_type";
    pub const INPUT_MESSAGES: &str = "llm.input_messages";
    pub const OUTPUT_MESSAGES: &str = "llm.output_messages";
    pub const TOOLS: &str = "llm.tools";
}

/// The OpenInference dialect for one Arize project.
#[derive(Debug, Clone)]
pub struct ArizeDialect {
    project: Arc<str>,
}

impl ArizeDialect {
    pub fn new(project: &str) -> Self {
        ArizeDialect {
            project: Arc::from(project),
        }
    }
}

impl OtlpDialect for ArizeDialect {
    /// Only a parent that can name a span of the user's own OTLP trace (see
    /// [`crate::otlp::carry_unsent_parent`] for any other).
    fn parent_span_id(&self, view: &TraceView<'_>) -> Option<[u8; 8]> {
        view.otlp_linkable_parent_span_id()
    }

    fn attribute_key(&self, element: Element, key: &str) -> AttributeKey {
        if element == Element::Span(SpanRole::Generation)
            && matches!(
                key,
                k::GEN_AI_PROMPT | k::GEN_AI_COMPLETION | k::GEN_AI_TOOL_DEFINITIONS
            )
        {
            return AttributeKey::Drop;
        }
        match key.strip_prefix(k::TRACE_METADATA_PREFIX) {
            Some(name) => {
                AttributeKey::Rename(Cow::Owned(format!("{}{name}", oi::METADATA_PREFIX)))
            }
            None => AttributeKey::Keep,
        }
    }

    fn resource_attributes<'a>(&self, _view: &TraceView<'a>, attrs: &mut Attributes<'a, '_>) {
        attrs
            .string(oi::PROJECT_NAME, self.project.to_string())
            .string(oi::MODEL_ID, self.project.to_string());
        truncate_attributes(attrs, &LIMITS);
    }

    fn span_attributes<'a>(
        &self,
        view: &TraceView<'a>,
        slot: SpanSlot,
        attrs: &mut Attributes<'a, '_>,
    ) {
        crate::otlp::carry_unsent_parent(view, slot, attrs);
        match slot.role {
            SpanRole::Intermediate => {
                attrs.string(oi::SPAN_KIND, "CHAIN");
            }
            SpanRole::Generation => generation_attributes(view, attrs),
        }
        truncate_attributes(attrs, &LIMITS);
    }
}

/// Lower case, runs of other characters than `[a-z0-9]` as one `_`.
fn normalise(s: &str) -> String {
    crate::ident::snake(s, false)
}

/// `llm.provider`: the OpenInference provider value (`OpenInferenceLLMProviderValues`) for the
/// provider that served the call, else for the model's author.
pub fn provider(view: &TraceView<'_>) -> String {
    let raw = view
        .provider()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| view.model().split_once('/').map(|(author, _)| author))
        .unwrap_or("unknown");
    let base = raw.split('(').next().unwrap_or(raw);
    let n = normalise(base);
    let known = |p: &str| n == p || n.starts_with(&format!("{p}_"));
    let v = if known("openai") {
        "openai"
    } else if known("azure") {
        "azure"
    } else if known("anthropic") {
        "anthropic"
    } else if known("amazon") || known("aws") || known("bedrock") {
        "aws"
    } else if known("google") || known("vertex") || known("gemini") {
        "google"
    } else if known("mistral") || known("mistralai") {
        "mistralai"
    } else if known("xai") || n == "x_ai" || known("grok") {
        "xai"
    } else if known("z_ai") || known("zai") || known("zhipu") {
        "zai"
    } else if known("meta") || known("meta_llama") {
        "meta"
    } else if known("moonshot") || known("moonshotai") {
        "moonshot"
    } else if known("together") {
        "together"
    } else if known("fireworks") {
        "fireworks"
    } else {
        for p in [
            "cohere",
            "deepseek",
            "groq",
            "cerebras",
            "perplexity",
            "ollama",
            "minimax",
            "oracle",
        ] {
            if known(p) {
                return p.to_owned();
            }
        }
        return n;
    };
    v.to_owned()
}

/// `llm.system` (`OpenInferenceLLMSystemValues`) for the providers that have one.
fn system(provider: &str) -> Option<&'static str> {
    match provider {
        "openai" | "azure" => Some("openai"),
        "anthropic" => Some("anthropic"),
        "cohere" => Some("cohere"),
        "mistralai" => Some("mistralai"),
        _ => None,
    }
}

fn generation_attributes<'a>(view: &TraceView<'a>, a: &mut Attributes<'a, '_>) {
    let embedding = matches!(view.api_type(), Some("embeddings" | "embedding"));
    a.string(oi::SPAN_KIND, if embedding { "EMBEDDING" } else { "LLM" });
    if embedding {
        a.string(oi::EMBEDDING_MODEL_NAME, view.model());
    }
    let provider = provider(view);
    if let Some(sys) = system(&provider) {
        a.string(oi::LLM_SYSTEM, sys);
    }
    a.string(oi::LLM_MODEL_NAME, view.model())
        .string(oi::LLM_PROVIDER, provider);

    let prompt_details = view.usage().and_then(|u| u.prompt_tokens_details.as_ref());
    let completion_details = view
        .usage()
        .and_then(|u| u.completion_tokens_details.as_ref());
    a.opt_uint(oi::TOKENS_PROMPT, view.prompt_tokens())
        .opt_uint(oi::TOKENS_COMPLETION, view.completion_tokens())
        .opt_uint(oi::TOKENS_TOTAL, view.total_tokens())
        .opt_uint(oi::TOKENS_CACHE_READ, view.cached_tokens())
        .opt_uint(oi::TOKENS_CACHE_WRITE, view.cache_write_tokens())
        .opt_uint(
            oi::TOKENS_PROMPT_AUDIO,
            prompt_details.and_then(|d| d.audio_tokens),
        )
        .opt_uint(oi::TOKENS_REASONING, view.reasoning_tokens())
        .opt_uint(
            oi::TOKENS_COMPLETION_AUDIO,
            completion_details.and_then(|d| d.audio_tokens),
        )
        .opt_double(oi::COST_TOTAL, view.total_cost());
    if let Some(alloc) = view.cost_allocation() {
        for part in &alloc.parts {
            let key = match part.kind {
                "prompt" => oi::COST_PROMPT,
                "completion" => oi::COST_COMPLETION,
                "cache_read" => oi::COST_CACHE_READ,
                "cache_write" => oi::COST_CACHE_WRITE,
                "reasoning" => oi::COST_REASONING,
                _ => continue,
            };
            a.double(key, part.cost);
        }
    }
    a.opt_string(oi::FINISH_REASON, view.finish_reason());

    let params = view.model_parameters();
    if !params.is_empty() {
        a.json(oi::INVOCATION_PARAMETERS, &params);
    }

    // Custom metadata as one JSON object, and tags.
    let metadata: BTreeMap<&str, &Value> = view.metadata().filter(|(_, v)| !v.is_null()).collect();
    if !metadata.is_empty() {
        a.json(oi::METADATA, &metadata);
    }
    match metadata.get("tags") {
        Some(Value::String(t)) => {
            a.strings(oi::TAGS, [t.as_str()]);
        }
        Some(Value::Array(items)) => {
            let tags: Vec<&'a str> = view
                .metadata()
                .find(|(k, _)| *k == "tags")
                .and_then(|(_, v)| v.as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            if !tags.is_empty() && tags.len() == items.len() {
                a.strings(oi::TAGS, tags);
            }
        }
        _ => {}
    }

    // Content: none in privacy mode.
    if let Some(input) = view.input() {
        if let Some(messages) = input.messages {
            a.json(oi::INPUT_VALUE, &json!({ "messages": messages }))
                .string(oi::INPUT_MIME_TYPE, "application/json");
            if let Value::Array(list) = messages {
                for (i, m) in list.iter().enumerate() {
                    message(a, &format!("{}.{i}.message.", oi::INPUT_MESSAGES), m);
                }
            }
        } else if let Some(p) = input.prompt.or(input.input) {
            match p {
                Value::String(s) => {
                    a.string(oi::INPUT_VALUE, s.as_str())
                        .string(oi::INPUT_MIME_TYPE, "text/plain");
                }
                other => {
                    a.json(oi::INPUT_VALUE, other)
                        .string(oi::INPUT_MIME_TYPE, "application/json");
                    // Responses-API input items with a role are messages.
                    if let Value::Array(list) = other {
                        for (i, m) in list.iter().filter(|m| m.get("role").is_some()).enumerate() {
                            message(a, &format!("{}.{i}.message.", oi::INPUT_MESSAGES), m);
                        }
                    }
                }
            }
        }
        if let Some(Value::Array(tools)) = input.tools {
            for (i, t) in tools.iter().enumerate() {
                a.json(format!("{}.{i}.tool.json_schema", oi::TOOLS), t);
            }
        }
    }
    if let Some(output) = view.output() {
        let prefix = format!("{}.0.message.", oi::OUTPUT_MESSAGES);
        a.string(format!("{prefix}role"), "assistant");
        if !output.completion.is_empty() {
            a.string(oi::OUTPUT_VALUE, output.completion.clone())
                .string(oi::OUTPUT_MIME_TYPE, "text/plain")
                .string(format!("{prefix}content"), output.completion);
        } else if let Some(calls) = output.tool_calls {
            a.json(oi::OUTPUT_VALUE, calls)
                .string(oi::OUTPUT_MIME_TYPE, "application/json");
        }
        if let Some(Value::Array(calls)) = output.tool_calls {
            tool_calls(a, &prefix, calls);
        }
    }
}

/// The `message.*` attributes of one chat message under `prefix` (ending in `message.`).
fn message<'a>(a: &mut Attributes<'a, '_>, prefix: &str, m: &'a Value) {
    if let Some(role) = m.get("role").and_then(Value::as_str) {
        a.string(format!("{prefix}role"), role);
    }
    match m.get("content") {
        Some(Value::String(s)) => {
            a.string(format!("{prefix}content"), s.as_str());
        }
        Some(Value::Array(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                let p = format!("{prefix}contents.{j}.message_content.");
                let ty = part.get("type").and_then(Value::as_str).unwrap_or("text");
                match ty {
                    "text" | "input_text" | "output_text" => {
                        a.string(format!("{p}type"), "text");
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            a.string(format!("{p}text"), t);
                        }
                    }
                    "image_url" | "input_image" => {
                        a.string(format!("{p}type"), "image");
                        let url = part
                            .get("image_url")
                            .and_then(|u| u.get("url").or(Some(u)))
                            .and_then(Value::as_str);
                        if let Some(url) = url {
                            a.string(format!("{p}image.image.url"), url);
                        }
                    }
                    other => {
                        a.string(format!("{p}type"), other);
                        if let Some(t) = part.get("text").and_then(Value::as_str) {
                            a.string(format!("{p}text"), t);
                        }
                    }
                }
            }
        }
        Some(v @ Value::Object(_)) => {
            a.json(format!("{prefix}content"), v);
        }
        _ => {}
    }
    if let Some(name) = m.get("name").and_then(Value::as_str) {
        a.string(format!("{prefix}name"), name);
    }
    if let Some(id) = m.get("tool_call_id").and_then(Value::as_str) {
        a.string(format!("{prefix}tool_call_id"), id);
    }
    if let Some(Value::Array(calls)) = m.get("tool_calls") {
        tool_calls(a, prefix, calls);
    }
}

/// `message.tool_calls.<k>.tool_call.*` under `prefix` (ending in `message.`).
fn tool_calls<'a>(a: &mut Attributes<'a, '_>, prefix: &str, calls: &'a [Value]) {
    for (k, c) in calls.iter().enumerate() {
        let p = format!("{prefix}tool_calls.{k}.tool_call.");
        if let Some(id) = c.get("id").and_then(Value::as_str) {
            a.string(format!("{p}id"), id);
        }
        let f = c.get("function").unwrap_or(c);
        if let Some(name) = f.get("name").and_then(Value::as_str) {
            a.string(format!("{p}function.name"), name);
        }
        match f.get("arguments") {
            Some(Value::String(s)) => {
                a.string(format!("{p}function.arguments"), s.as_str());
            }
            Some(Value::Null) | None => {}
            Some(other) => {
                a.json(format!("{p}function.arguments"), other);
            }
        }
    }
}

pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<SizedExporter<ArizeDialect>, ExportError> {
    let api_key = required_str(config, "apiKey")?;
    let space_key = required_str(config, "spaceKey")?;
    let project = required_str(config, "modelId")?;
    let base = optional_str(config, "baseUrl").unwrap_or(DEFAULT_BASE_URL);
    let url = traces_url(base, "");

    let mut headers = headers_with_credentials(
        config,
        &[
            (HeaderName::from_static(API_KEY_HEADER), api_key, "apiKey"),
            (
                HeaderName::from_static(SPACE_ID_HEADER),
                space_key,
                "spaceKey",
            ),
        ],
    )?;
    headers.insert(
        HeaderName::from_static(INTERFACE_HEADER.0),
        HeaderValue::from_static(INTERFACE_HEADER.1),
    );

    let http = OtlpHttp::new(ctx, Method::POST, &url, headers)
        .map_err(|e| ExportError::Config(format!("baseUrl: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Arize,
            config,
        ))
        .with_partial_success(true);
    let probe = Probe {
        credentials: "the space key / API key pair",
        hint_404: Some(
            "the base URL should be Arize's OTLP endpoint (default https://otlp.arize.com); traces go to /v1/traces",
        ),
        ..Probe::new("Arize AX")
    };
    let inner = OtlpExporter::new(http, ArizeDialect::new(project), "otlp-proto/arize", probe)
        .protobuf()
        .with_limits(BatchLimits {
            max_items: 500,
            max_bytes: MAX_REQUEST_BYTES,
        });
    Ok(SizedExporter::new(inner, "Arize AX", MAX_REQUEST_BYTES))
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
    use tracecast_model::generation::{Generation, IngestContext};
    use tracecast_model::trace::TraceOptions;

    fn view_provider(provider: Option<&str>, model: &str) -> String {
        let mut v = json!({"id": "g", "model": model, "created_at": "2026-01-01T00:00:00Z"});
        if let Some(p) = provider {
            v["provider_name"] = p.into();
        }
        let g = Generation::from_json(v, &IngestContext::default()).unwrap();
        provider_of(&g)
    }

    fn provider_of(g: &Generation) -> String {
        provider(&TraceView::new(g, TraceOptions::default()))
    }

    #[test]
    fn provider_values() {
        assert_eq!(view_provider(Some("OpenAI"), "openai/gpt-4o"), "openai");
        assert_eq!(view_provider(Some("Azure"), "openai/gpt-4o"), "azure");
        assert_eq!(view_provider(Some("Amazon Bedrock"), "anthropic/c"), "aws");
        assert_eq!(
            view_provider(Some("Google Vertex (Europe)"), "g/x"),
            "google"
        );
        assert_eq!(view_provider(Some("Google AI Studio"), "g/x"), "google");
        assert_eq!(view_provider(Some("Mistral"), "m/x"), "mistralai");
        assert_eq!(view_provider(Some("xAI"), "x-ai/grok"), "xai");
        assert_eq!(view_provider(Some("DeepSeek"), "d/x"), "deepseek");
        assert_eq!(view_provider(Some("Together"), "d/x"), "together");
        assert_eq!(view_provider(None, "meta-llama/llama-3"), "meta");
        assert_eq!(view_provider(Some("Some New Host"), "a/b"), "some_new_host");
        assert_eq!(view_provider(None, "nomodelauthor"), "unknown");
        assert_eq!(system("azure"), Some("openai"));
        assert_eq!(system("google"), None);
    }
}
