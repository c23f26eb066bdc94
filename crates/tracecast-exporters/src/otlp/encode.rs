//! From [`TraceView`]s to spans and request bodies.

use std::borrow::Cow;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::Value;
use tracecast_model::trace::TraceView;

use super::attributes::{Attributes, Element, KeyRule, SpanRole, join};
use super::dialect::{OtlpDialect, SERVICE_VERSION, SpanSlot};
use super::keys as k;
use super::model::{EventData, GenerationSpans, SpanData, push_json_str, push_json_value};
use crate::{ExportError, Payload};

/// The body of an OTLP export request with no spans, as JSON (what connection tests send).
pub const EMPTY_REQUEST_JSON: &str = r#"{"resourceSpans":[]}"#;

/// Wire encoding of an OTLP/HTTP request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum OtlpEncoding {
    /// OTLP/JSON (`application/json`): what OpenRouter sends to webhooks and collectors.
    #[default]
    Json,
    /// Binary protobuf (`application/x-protobuf`).
    Protobuf,
}

impl OtlpEncoding {
    pub fn content_type(self) -> &'static str {
        match self {
            OtlpEncoding::Json => "application/json",
            OtlpEncoding::Protobuf => "application/x-protobuf",
        }
    }
}

/// OTLP/JSON fragments for the engine's shared cache: one `ResourceSpans` object per trace,
/// assembled into `{"resourceSpans":[...]}`; [`encode`] with [`OtlpEncoding::Json`] builds its
/// body the same way.
pub struct JsonFragments<D: OtlpDialect> {
    dialect: D,
    key: &'static str,
}

impl<D: OtlpDialect> JsonFragments<D> {
    /// `key` must differ between dialects that name or shape anything differently.
    pub fn new(dialect: D, key: &'static str) -> Self {
        JsonFragments { dialect, key }
    }
}

impl<D: OtlpDialect> crate::FragmentEncoder for JsonFragments<D> {
    fn key(&self) -> &'static str {
        self.key
    }

    fn fragment(&self, view: &TraceView<'_>) -> Result<Bytes, ExportError> {
        json_fragment(view, &self.dialect)
    }

    fn assemble(&self, fragments: &[Bytes]) -> Payload {
        assemble_json(fragments)
    }
}

/// One generation's `ResourceSpans` as OTLP/JSON.
fn json_fragment(view: &TraceView<'_>, dialect: &dyn OtlpDialect) -> Result<Bytes, ExportError> {
    let mut out = Vec::with_capacity(4096);
    generation_spans(view, dialect)
        .write_json(&mut out)
        .map_err(|e| ExportError::Encode(format!("OTLP/JSON: {e}")))?;
    Ok(Bytes::from(out))
}

/// `{"resourceSpans":[...]}` from `ResourceSpans` fragments, in order.
fn assemble_json(fragments: &[Bytes]) -> Payload {
    let len: usize = fragments.iter().map(Bytes::len).sum::<usize>() + fragments.len() + 20;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(br#"{"resourceSpans":["#);
    for (i, f) in fragments.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(f);
    }
    out.extend_from_slice(b"]}");
    Payload {
        body: Bytes::from(out),
        content_type: OtlpEncoding::Json.content_type(),
        items: fragments.len(),
    }
}

/// Encodes a batch into one request body: one `ResourceSpans` per generation, in batch order.
///
/// JSON is assembled from per-generation fragments, exactly as the engine's fragment cache
/// does ([`JsonFragments`]), so there is one JSON path; protobuf goes through the
/// `opentelemetry-proto` messages.
pub fn encode(
    views: &[TraceView<'_>],
    dialect: &dyn OtlpDialect,
    encoding: OtlpEncoding,
) -> Result<Payload, ExportError> {
    match encoding {
        OtlpEncoding::Json => {
            let fragments = views
                .iter()
                .map(|v| json_fragment(v, dialect))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(assemble_json(&fragments))
        }
        OtlpEncoding::Protobuf => Ok(Payload {
            body: Bytes::from(prost::Message::encode_to_vec(&export_request(
                views, dialect,
            ))),
            content_type: encoding.content_type(),
            items: views.len(),
        }),
    }
}

/// The `ExportTraceServiceRequest` message of a batch.
pub fn export_request(
    views: &[TraceView<'_>],
    dialect: &dyn OtlpDialect,
) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: views.iter().map(|v| resource_spans(v, dialect)).collect(),
    }
}

/// The `ResourceSpans` message of one generation.
pub fn resource_spans(view: &TraceView<'_>, dialect: &dyn OtlpDialect) -> ResourceSpans {
    generation_spans(view, dialect).to_proto()
}

/// The spans of one generation: its resource (which carries the trace key) and one scope
/// with the intermediate span (when `trace.span_name` is set) and the generation span.
pub fn generation_spans<'a>(
    view: &TraceView<'a>,
    dialect: &dyn OtlpDialect,
) -> GenerationSpans<'a> {
    let keys = |element: Element, key: &str| dialect.attribute_key(element, key);
    let keys: &KeyRule<'_> = &keys;
    let mut resource = Attributes::new(keys, Element::Resource, 4);
    resource
        .string(k::SERVICE_NAME, dialect.service_name())
        .string(k::SERVICE_VERSION, SERVICE_VERSION)
        .string(k::OPENROUTER_TRACE_ID, view.trace_key());
    resource.verbatim();
    dialect.resource_attributes(view, &mut resource);

    let trace_id = view.otlp_trace_id();
    let start = view.start_unix_nanos();
    let end = view.end_unix_nanos().max(start);
    let parent = dialect.parent_span_id(view);
    let (status_code, status_message) = match view.error() {
        Some(e) => (StatusCode::Error, Cow::Borrowed(e.message.as_str())),
        None => (StatusCode::Ok, Cow::Borrowed("")),
    };

    let mut spans = Vec::with_capacity(2);
    let mut generation_parent = parent;
    if let Some(id) = view.otlp_intermediate_span_id() {
        let slot = SpanSlot {
            role: SpanRole::Intermediate,
            top_most: true,
            is_root: parent.is_none(),
        };
        let mut a = Attributes::new(keys, Element::Span(SpanRole::Intermediate), 6);
        intermediate_attributes(view, slot, &mut a);
        a.verbatim();
        dialect.span_attributes(view, slot, &mut a);
        spans.push(SpanData {
            trace_id,
            span_id: id,
            parent_span_id: parent,
            name: dialect.span_name(view, slot),
            kind: SpanKind::Internal,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes: a.into_vec(),
            events: Vec::new(),
            status_code,
            status_message: status_message.clone(),
        });
        generation_parent = Some(id);
    }
    let slot = SpanSlot {
        role: SpanRole::Generation,
        top_most: spans.is_empty(),
        is_root: spans.is_empty() && parent.is_none(),
    };
    let mut a = Attributes::new(keys, Element::Span(SpanRole::Generation), 64);
    generation_attributes(view, slot, &mut a);
    a.verbatim();
    dialect.span_attributes(view, slot, &mut a);
    spans.push(SpanData {
        trace_id,
        span_id: dialect.generation_span_id(view),
        parent_span_id: generation_parent,
        name: dialect.span_name(view, slot),
        kind: SpanKind::Client,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        attributes: a.into_vec(),
        events: exception_event(view, keys, end).into_iter().collect(),
        status_code,
        status_message,
    });

    GenerationSpans {
        resource: resource.into_vec(),
        scope_name: dialect.scope_name(),
        scope_version: dialect.scope_version(),
        spans,
    }
}

/// `error.type` / `exception.type`: the error's code as text, else `_OTHER` (the semantic
/// conventions' fallback).
fn error_type(code: Option<&Value>) -> Cow<'_, str> {
    match code {
        Some(Value::String(s)) if !s.is_empty() => Cow::Borrowed(s),
        Some(Value::Number(n)) => Cow::Owned(n.to_string()),
        Some(v @ (Value::Bool(_) | Value::Array(_) | Value::Object(_))) => {
            Cow::Owned(v.to_string())
        }
        _ => Cow::Borrowed("_OTHER"),
    }
}

fn exception_event<'a>(view: &TraceView<'a>, keys: &KeyRule<'_>, at: u64) -> Option<EventData<'a>> {
    let err = view.error()?;
    let mut a = Attributes::new(keys, Element::ExceptionEvent, 2);
    a.string(k::EXCEPTION_TYPE, error_type(err.code.as_ref()))
        .string(k::EXCEPTION_MESSAGE, err.message.as_str());
    Some(EventData {
        time_unix_nano: at,
        name: Cow::Borrowed(k::EXCEPTION_EVENT),
        attributes: a.into_vec(),
    })
}

fn intermediate_attributes<'a>(view: &TraceView<'a>, slot: SpanSlot, a: &mut Attributes<'a, '_>) {
    a.string(k::OPENROUTER_OBSERVATION_TYPE, "span");
    if slot.top_most {
        a.string(k::OPENROUTER_TRACE_NAME, view.trace_name());
    }
    a.opt_string(k::USER_ID, view.user())
        .opt_string(k::SESSION_ID, view.session_id());
}

/// `gen_ai.operation.name` from OpenRouter's `api_type`: chat for LLM calls (OpenRouter's
/// `completions` covers chat completions, Responses and Messages calls), `embeddings`, else the
/// `api_type` itself.
fn operation_name(api_type: Option<&str>) -> &str {
    match api_type {
        None
        | Some(
            "" | "completions" | "chat" | "chat.completions" | "chat_completions" | "responses"
            | "messages",
        ) => "chat",
        Some("text_completion") => "text_completion",
        Some("embeddings" | "embedding") => "embeddings",
        Some(other) => other,
    }
}

/// `gen_ai.provider.name` (and `gen_ai.system`): the well-known semantic-convention value for
/// the provider that served the call (`provider_name`), else for the model's author (the slug
/// before `/`); otherwise the name in lower case with runs of other characters as `_`.
fn provider_name<'a>(view: &TraceView<'a>) -> Cow<'a, str> {
    let raw = view
        .provider()
        .filter(|s| !s.trim().is_empty())
        .or_else(|| view.model().split_once('/').map(|(author, _)| author))
        .unwrap_or("openrouter");
    // Drop a qualifier such as "Google Vertex (Europe)".
    let base = raw.split('(').next().unwrap_or(raw).trim();
    let normal = normalise_name(base);
    let well_known = match normal.as_ref() {
        "openai" => "openai",
        "azure" | "azure_openai" | "azure_ai_openai" => "azure.ai.openai",
        "anthropic" => "anthropic",
        "amazon_bedrock" | "aws_bedrock" | "bedrock" => "aws.bedrock",
        "google_vertex" | "google_vertex_ai" | "vertex" | "vertex_ai" => "gcp.vertex_ai",
        "google" | "google_ai_studio" | "gemini" => "gcp.gemini",
        "mistral" | "mistralai" | "mistral_ai" => "mistral_ai",
        "xai" | "x_ai" => "x_ai",
        "deepseek" => "deepseek",
        "groq" => "groq",
        "perplexity" => "perplexity",
        "cohere" => "cohere",
        _ => return normal,
    };
    Cow::Borrowed(well_known)
}

/// Lower case, with each run of characters other than `[a-z0-9]` replaced by one `_`.
fn normalise_name(s: &str) -> Cow<'_, str> {
    let clean = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.starts_with('_')
        && !s.ends_with('_');
    if clean {
        return Cow::Borrowed(s);
    }
    Cow::Owned(crate::ident::snake(s, false))
}

/// The standard attributes of the generation span, in a fixed order (see the module docs).
fn generation_attributes<'a>(view: &TraceView<'a>, slot: SpanSlot, a: &mut Attributes<'a, '_>) {
    // Operation, provider, model, response.
    let provider = provider_name(view);
    a.string(k::GEN_AI_OPERATION_NAME, operation_name(view.api_type()))
        .string(k::GEN_AI_SYSTEM, provider.clone())
        .string(k::GEN_AI_PROVIDER_NAME, provider)
        .string(k::GEN_AI_REQUEST_MODEL, view.model())
        .string(k::GEN_AI_RESPONSE_MODEL, view.response_model())
        .string(k::GEN_AI_RESPONSE_ID, view.id());
    if let Some(reason) = view.finish_reason() {
        a.strings(k::GEN_AI_RESPONSE_FINISH_REASONS, [reason])
            .string(k::GEN_AI_RESPONSE_FINISH_REASON, reason);
    }

    // Usage and cost.
    let (prompt, completion) = (view.prompt_tokens(), view.completion_tokens());
    let (cached, cache_write, reasoning) = (
        view.cached_tokens(),
        view.cache_write_tokens(),
        view.reasoning_tokens(),
    );
    let prompt_details = view.usage().and_then(|u| u.prompt_tokens_details.as_ref());
    let completion_details = view
        .usage()
        .and_then(|u| u.completion_tokens_details.as_ref());
    a.opt_uint(k::GEN_AI_USAGE_INPUT_TOKENS, prompt)
        .opt_uint(k::GEN_AI_USAGE_OUTPUT_TOKENS, completion)
        .opt_uint(k::GEN_AI_USAGE_PROMPT_TOKENS, prompt)
        .opt_uint(k::GEN_AI_USAGE_COMPLETION_TOKENS, completion)
        .opt_uint(k::GEN_AI_USAGE_TOTAL_TOKENS, view.total_tokens())
        .opt_uint(k::GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS, cached)
        .opt_uint(k::GEN_AI_USAGE_INPUT_TOKENS_CACHED, cached)
        .opt_uint(k::GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS, cache_write)
        .opt_uint(k::GEN_AI_USAGE_INPUT_TOKENS_CACHE_WRITE, cache_write)
        .opt_uint(
            k::GEN_AI_USAGE_INPUT_TOKENS_AUDIO,
            prompt_details.and_then(|d| d.audio_tokens),
        )
        .opt_uint(k::GEN_AI_USAGE_REASONING_OUTPUT_TOKENS, reasoning)
        .opt_uint(k::GEN_AI_USAGE_OUTPUT_TOKENS_REASONING, reasoning)
        .opt_uint(
            k::GEN_AI_USAGE_OUTPUT_TOKENS_AUDIO,
            completion_details.and_then(|d| d.audio_tokens),
        )
        .opt_uint(
            k::GEN_AI_USAGE_OUTPUT_TOKENS_IMAGE,
            completion_details.and_then(|d| d.image_tokens),
        )
        .opt_double(k::GEN_AI_USAGE_COST, view.total_cost())
        .opt_double(k::GEN_AI_USAGE_TOTAL_COST, view.total_cost());

    // Request parameters.
    let params = view.model_parameters();
    let has_max_tokens = params.contains_key("max_tokens");
    for (name, value) in params {
        match (name.as_str(), value) {
            ("n", value) => {
                a.owned_value(k::GEN_AI_REQUEST_CHOICE_COUNT, value);
            }
            ("stop", Value::String(stop)) => {
                a.strings(k::GEN_AI_REQUEST_STOP_SEQUENCES, [stop]);
            }
            ("stop", value) => {
                a.owned_value(k::GEN_AI_REQUEST_STOP_SEQUENCES, value);
            }
            ("max_completion_tokens", value) if !has_max_tokens => {
                a.owned_value(k::GEN_AI_REQUEST_MAX_TOKENS, value.clone())
                    .owned_value(join(k::GEN_AI_REQUEST_PREFIX, &name), value);
            }
            (_, value) => {
                a.owned_value(join(k::GEN_AI_REQUEST_PREFIX, &name), value);
            }
        }
    }

    // User and session.
    a.opt_string(k::USER_ID, view.user())
        .opt_string(k::SESSION_ID, view.session_id())
        .opt_string(k::GEN_AI_CONVERSATION_ID, view.session_id());

    // OpenRouter's own fields.
    if slot.top_most {
        a.string(k::OPENROUTER_TRACE_NAME, view.trace_name());
    }
    a.string(k::OPENROUTER_OBSERVATION_TYPE, "generation")
        .opt_string(k::OPENROUTER_PROVIDER_NAME, view.provider())
        .opt_string(k::OPENROUTER_API_TYPE, view.api_type())
        .opt_string(
            k::OPENROUTER_NATIVE_FINISH_REASON,
            view.native_finish_reason(),
        )
        .opt_bool(k::OPENROUTER_STREAMED, view.streamed())
        .opt_bool(k::OPENROUTER_CANCELLED, view.cancelled())
        .bool(k::OPENROUTER_HAS_TOOLS, view.has_tools());
    let tool_calls = view.tool_call_names();
    if !tool_calls.is_empty() {
        a.strings(k::OPENROUTER_TOOL_CALL_NAMES, tool_calls);
    }
    a.opt_double(k::OPENROUTER_LATENCY_MS, view.duration_ms())
        .opt_double(k::OPENROUTER_GENERATION_TIME_MS, view.generation_time_ms())
        .opt_double(
            k::OPENROUTER_TIME_TO_FIRST_TOKEN_MS,
            view.time_to_first_token_ms(),
        )
        .opt_double(
            k::OPENROUTER_MODERATION_LATENCY_MS,
            view.moderation_latency_ms(),
        );

    // Custom metadata.
    for (name, value) in view.metadata() {
        a.value(join(k::TRACE_METADATA_PREFIX, name), value);
    }

    // Content: TraceView gives none in privacy mode. Written as serde_json would write
    // `PromptJson` / `CompletionJson` (the byte-for-byte test below holds them to it), with
    // the fast escaper.
    if let Some(input) = view.input() {
        a.json_text(k::GEN_AI_PROMPT, |out| {
            out.push('{');
            let fields = [
                ("messages", input.messages),
                ("prompt", input.prompt),
                ("input", input.input),
            ];
            let mut first = true;
            for (name, value) in fields {
                if let Some(value) = value {
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    push_json_str(out, name);
                    out.push(':');
                    push_json_value(out, value);
                }
            }
            out.push('}');
        });
        if let Some(tools) = input.tools {
            a.json(k::GEN_AI_TOOL_DEFINITIONS, tools);
        }
    }
    if let Some(output) = view.output() {
        a.json_text(k::GEN_AI_COMPLETION, |out| {
            out.push_str(r#"{"completion":"#);
            push_json_str(out, &output.completion);
            out.push_str(r#","reasoning":"#);
            match output.reasoning.as_deref() {
                Some(r) => push_json_str(out, r),
                None => out.push_str("null"),
            }
            if let Some(calls) = output.tool_calls {
                out.push_str(r#","tool_calls":"#);
                push_json_value(out, calls);
            }
            out.push('}');
        });
    }

    if let Some(err) = view.error() {
        a.string(k::ERROR_TYPE, error_type(err.code.as_ref()));
    }

    // Optional metadata groups.
    if let Some(c) = view.cost_group() {
        a.opt_double(
            k::OPENROUTER_UPSTREAM_INFERENCE_COST,
            c.upstream_inference_cost,
        )
        .opt_double(k::OPENROUTER_CACHE_DISCOUNT, c.cache_discount)
        .opt_bool(k::OPENROUTER_IS_BYOK, c.is_byok);
        for (name, value) in c.cost_details.into_iter().flatten() {
            a.value(join(k::OPENROUTER_COST_DETAILS_PREFIX, name), value);
        }
    }
    if let Some(i) = view.identity_group() {
        a.opt_string(k::OPENROUTER_API_KEY_NAME, i.api_key_name)
            .opt_string(k::OPENROUTER_API_KEY_HASH, i.api_key_hash)
            .opt_string(
                k::OPENROUTER_WORKSPACE_ID,
                Some(i.workspace_id).filter(|w| !w.is_empty()),
            )
            .opt_string(k::OPENROUTER_EXTERNAL_USER, i.external_user);
    }
    if let Some(r) = view.request_context() {
        a.opt_string(k::OPENROUTER_HTTP_REFERER, r.http_referer)
            .opt_string(k::OPENROUTER_X_TITLE, r.x_title)
            .opt_string(k::OPENROUTER_USER_AGENT, r.user_agent)
            .opt_string(k::OPENROUTER_ORIGIN, r.origin)
            .opt_string(k::OPENROUTER_REQUEST_ID, r.request_id)
            .opt_string(k::OPENROUTER_UPSTREAM_ID, r.upstream_id)
            .opt_string(k::OPENROUTER_ROUTER, r.router)
            .opt_string(k::OPENROUTER_PRESET_ID, r.preset_id)
            .string(k::OPENROUTER_DATA_REGION, r.data_region.as_str());
    }
    if let Some(alloc) = view.cost_allocation() {
        for part in &alloc.parts {
            let prefix = k::OPENROUTER_COST_ALLOCATION_PREFIX;
            a.opt_uint(format!("{prefix}{}.tokens", part.kind), part.tokens)
                .double(format!("{prefix}{}.cost", part.kind), part.cost);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::attributes::AttrValue;
    use serde::Serialize;

    // The documents serde_json wrote before the content attributes were written directly.
    #[derive(Serialize)]
    struct PromptJson<'a> {
        #[serde(skip_serializing_if = "Option::is_none")]
        messages: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        prompt: Option<&'a Value>,
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<&'a Value>,
    }

    #[derive(Serialize)]
    struct CompletionJson<'a> {
        completion: &'a str,
        reasoning: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        tool_calls: Option<&'a Value>,
    }

    #[test]
    fn content_attributes_are_what_serde_json_writes() {
        use tracecast_model::generation::{Generation, IngestContext};
        use tracecast_model::trace::TraceOptions;
        let records = [
            serde_json::json!({"request": {"messages": [{"role": "user", "content": "say \"hi\"\n\u{1}é"}], "tools": [{"type": "function"}]},
                "response": {"choices": [{"message": {"role": "assistant", "content": "hi \\ there", "reasoning": "because\t", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{\"a\":1.5}"}}]}}]}}),
            serde_json::json!({"request": {"prompt": ["a", 1, 2.25, null, {"b": false}], "input": "x"}, "response": {"choices": [{"text": "t"}]}}),
            serde_json::json!({"request": {"input": [{"role": "user", "content": [{"type": "input_text", "text": "q"}]}]}, "response": {"output": [{"type": "message", "content": [{"type": "output_text", "text": "a"}]}]}}),
        ];
        for mut raw in records {
            raw["id"] = "g".into();
            raw["model"] = "openai/gpt-4o".into();
            raw["created_at"] = "2026-01-01T00:00:00Z".into();
            let g = Generation::from_json(raw, &IngestContext::default()).unwrap();
            let view = TraceView::new(&g, TraceOptions::default());
            let spans = generation_spans(&view, &super::super::dialect::DefaultDialect);
            let attr = |key: &str| {
                spans
                    .spans
                    .last()
                    .unwrap()
                    .attributes
                    .iter()
                    .find(|a| a.key == key)
                    .map(|a| match &a.value {
                        AttrValue::String(s) => s.to_string(),
                        other => panic!("{key}: {other:?}"),
                    })
            };
            let input = view.input().unwrap();
            let prompt = PromptJson {
                messages: input.messages,
                prompt: input.prompt,
                input: input.input,
            };
            assert_eq!(
                attr(k::GEN_AI_PROMPT).unwrap(),
                serde_json::to_string(&prompt).unwrap()
            );
            let output = view.output().unwrap();
            let completion = CompletionJson {
                completion: &output.completion,
                reasoning: output.reasoning.as_deref(),
                tool_calls: output.tool_calls,
            };
            assert_eq!(
                attr(k::GEN_AI_COMPLETION).unwrap(),
                serde_json::to_string(&completion).unwrap()
            );
        }
    }

    #[test]
    fn operation_names() {
        assert_eq!(operation_name(None), "chat");
        assert_eq!(operation_name(Some("completions")), "chat");
        assert_eq!(operation_name(Some("embeddings")), "embeddings");
        assert_eq!(operation_name(Some("rerank")), "rerank");
    }

    #[test]
    fn name_normalisation() {
        assert_eq!(normalise_name("openai"), "openai");
        assert_eq!(normalise_name("Google AI Studio"), "google_ai_studio");
        assert_eq!(normalise_name("meta-llama"), "meta_llama");
        assert_eq!(normalise_name("  --Weird!!Name-- "), "weird_name");
        assert_eq!(normalise_name("???"), "unknown");
        assert_eq!(normalise_name(""), "unknown");
        assert_eq!(normalise_name("_x"), "x");
    }

    #[test]
    fn error_types() {
        assert_eq!(error_type(None), "_OTHER");
        assert_eq!(error_type(Some(&Value::from(429))), "429");
        assert_eq!(
            error_type(Some(&Value::from("rate_limited"))),
            "rate_limited"
        );
        assert_eq!(error_type(Some(&Value::from(""))), "_OTHER");
        assert_eq!(error_type(Some(&Value::Null)), "_OTHER");
        assert_eq!(error_type(Some(&serde_json::json!({"a": 1}))), r#"{"a":1}"#);
    }
}
