//! The shared OTLP encoder: generations as OpenTelemetry spans, in OTLP/HTTP JSON (what
//! OpenRouter sends to webhooks and collectors) or protobuf.
//!
//! Every OTLP-based destination uses this module: `webhook` and `otel-collector` with
//! [`DefaultDialect`], and the platforms that speak OTLP with their own attribute names
//! (Langfuse, LangSmith, Arize, Grafana, New Relic, Sentry, Ramp) with an [`OtlpDialect`] of
//! their own. Messages are the `opentelemetry-proto` crate's types, so what is sent is exactly
//! what OTLP receivers decode. `docs/otlp.md` has the same tables as this page.
//!
//! # Shape
//!
//! A batch is one `ExportTraceServiceRequest` (`{"resourceSpans":[...]}`) with one
//! `ResourceSpans` per generation, in batch order. Its resource carries the trace key, and its
//! single scope (`openrouter`) holds one or two spans:
//!
//! ```text
//! [parent_span_id: the caller's span, not emitted]
//! └── span_name            kind INTERNAL   only when trace.span_name is set
//!     └── generation       kind CLIENT     always
//! ```
//!
//! | | value |
//! |---|---|
//! | trace id | [`TraceView::otlp_trace_id`]: `trace.trace_id` if it is 32 hex characters, else the first 16 bytes of SHA-256 of the trace key (`trace.trace_id`, else the generation id) |
//! | generation span id | [`OtlpDialect::generation_span_id`]; by default [`TraceView::otlp_span_id`]: first 8 bytes of SHA-256 of the generation id. webhook and otel-collector ([`DefaultDialect`]) keep the app's own span id of a generation taken from the app's OTLP trace ([`TraceView::otlp_app_span_id`]: `trace.otlp_span_id`, 16 hex characters, in a 32-hex `trace.trace_id`) |
//! | intermediate span id | [`TraceView::otlp_intermediate_span_id`]: derived from the trace key and `span_name`, so calls sharing both share the span |
//! | parent of the top-most span | [`OtlpDialect::parent_span_id`]; by default (webhook, otel-collector: OpenRouter's behaviour) [`TraceView::otlp_parent_span_id`]: `trace.parent_span_id` if it is 16 hex characters, else the first 8 bytes of its SHA-256; none when unset or all zeros |
//! | parent of the generation span | the intermediate span when there is one, else as above |
//! | intermediate span name | `trace.span_name` |
//! | generation span name | `trace.generation_name`; but when the generation span is a root (no intermediate span, no `parent_span_id`) and has no `generation_name` of its own, `trace.trace_name`. Both default to the model slug. |
//! | `trace.trace_name` | always the attribute `openrouter.trace.name` on the top-most span |
//! | times | start = `created_at`; end = start + `latency` (else `generation_time`); same on both spans |
//! | status | ERROR with the error message when the generation has an `error`, else OK; the intermediate span mirrors it |
//! | events | on error, an `exception` event at the end time with `exception.type` and `exception.message` |
//!
//! Ids are the same on every retry, every restart and every destination, so receivers that
//! upsert by id de-duplicate. No id is all zeros (OTLP's invalid id; see [`TraceView`]). OTLP/JSON specifics, all checked in tests against
//! `opentelemetry-proto`'s own serde types: keys in lowerCamelCase, ids in lower-case hex,
//! `*UnixNano` and `intValue` as decimal strings, enums (`kind`, `status.code`) as integers.
//! Fields at their default value are left out, as the protobuf JSON mapping allows (a root span
//! has no `parentSpanId`, a successful span no `status.message`, no span has `events` unless it
//! failed).
//!
//! # Resource attributes
//!
//! | key | type | value |
//! |---|---|---|
//! | `service.name` | string | `openrouter` ([`OtlpDialect::service_name`]), kept for compatibility with OpenRouter's traces |
//! | `service.version` | string | `1.0.0`, OpenRouter's value (versions the trace shape, not tracecast) |
//! | `openrouter.trace.id` | string | the trace key as given (`trace.trace_id`, else the generation id) |
//!
//! # Generation span attributes
//!
//! In this order; attributes whose source is absent are not sent.
//!
//! | key | type | source |
//! |---|---|---|
//! | `gen_ai.operation.name` | string | `chat` for LLM calls (`api_type` unset or `completions`), `embeddings`, else `api_type` |
//! | `gen_ai.system`, `gen_ai.provider.name` | string | provider (`provider_name`, else the model slug's author) as its semantic-convention value (`openai`, `anthropic`, `aws.bedrock`, `gcp.vertex_ai`, `gcp.gemini`, `azure.ai.openai`, `mistral_ai`, `x_ai`, ...), else lower-cased with `_` separators |
//! | `gen_ai.request.model` | string | `model` |
//! | `gen_ai.response.model` | string | `response.model`, else `model` |
//! | `gen_ai.response.id` | string | the generation id |
//! | `gen_ai.response.finish_reasons` | string array | `[finish_reason]` |
//! | `gen_ai.response.finish_reason` | string | `finish_reason` |
//! | `gen_ai.usage.input_tokens`, `gen_ai.usage.prompt_tokens` | int | `usage.prompt_tokens` |
//! | `gen_ai.usage.output_tokens`, `gen_ai.usage.completion_tokens` | int | `usage.completion_tokens` |
//! | `gen_ai.usage.total_tokens` | int | `usage.total_tokens` |
//! | `gen_ai.usage.cache_read.input_tokens`, `gen_ai.usage.input_tokens.cached` | int | `usage.prompt_tokens_details.cached_tokens` |
//! | `gen_ai.usage.cache_creation.input_tokens`, `gen_ai.usage.input_tokens.cache_write` | int | `usage.prompt_tokens_details.cache_write_tokens` |
//! | `gen_ai.usage.input_tokens.audio` | int | `usage.prompt_tokens_details.audio_tokens` |
//! | `gen_ai.usage.reasoning.output_tokens`, `gen_ai.usage.output_tokens.reasoning` | int | `usage.completion_tokens_details.reasoning_tokens` |
//! | `gen_ai.usage.output_tokens.audio` | int | `usage.completion_tokens_details.audio_tokens` |
//! | `gen_ai.usage.output_tokens.image` | int | `usage.completion_tokens_details.image_tokens` |
//! | `gen_ai.usage.cost`, `gen_ai.usage.total_cost` | double | `total_cost` (USD) |
//! | `gen_ai.request.<param>` | typed | each scalar model parameter of the request ([`TraceView::model_parameters`]: `temperature`, `max_tokens`, `top_p`, `top_k`, `seed`, `frequency_penalty`, ...) |
//! | `gen_ai.request.choice.count` | int | request `n` |
//! | `gen_ai.request.stop_sequences` | string array | request `stop` (a string) |
//! | `gen_ai.request.max_tokens` | int | request `max_completion_tokens` when `max_tokens` is absent (also sent as `gen_ai.request.max_completion_tokens`) |
//! | `user.id` | string | `user` |
//! | `session.id`, `gen_ai.conversation.id` | string | `session_id` |
//! | `openrouter.trace.name` | string | `trace.trace_name` (default: the model slug); top-most span only |
//! | `openrouter.observation.type` | string | `generation` (`span` on the intermediate span) |
//! | `openrouter.provider_name` | string | `provider_name` as given |
//! | `openrouter.api_type` | string | `api_type` |
//! | `openrouter.native_finish_reason` | string | `native_finish_reason` |
//! | `openrouter.streamed`, `openrouter.cancelled` | bool | `streamed`, `cancelled` |
//! | `openrouter.has_tools` | bool | the request offered tools |
//! | `openrouter.tool_call_names` | string array | names of the tools the model called (no arguments) |
//! | `openrouter.latency_ms` | double | `latency`, else `generation_time` |
//! | `openrouter.generation_time_ms`, `openrouter.time_to_first_token_ms`, `openrouter.moderation_latency_ms` | double | `generation_time`, `time_to_first_token`, `moderation_latency` |
//! | `trace.metadata.<key>` | typed | each custom `trace` key: string → `stringValue`, integer → `intValue`, other number → `doubleValue`, bool → `boolValue`, object or array → JSON `stringValue`; `null` is skipped |
//! | `gen_ai.prompt` | string (JSON) | `{"messages":[...]}` (or `"prompt"` / `"input"` for completions and Responses calls); **not in privacy mode** |
//! | `gen_ai.tool.definitions` | string (JSON) | the request's `tools`; **not in privacy mode** |
//! | `gen_ai.completion` | string (JSON) | `{"completion":"...","reasoning":"..."\|null}` plus `"tool_calls":[...]` when the model called tools; **not in privacy mode** |
//! | `error.type` | string | the error's `code` as text, else `_OTHER`; failed calls only |
//! | `openrouter.upstream_inference_cost`, `openrouter.cache_discount` | double | cost group (`broadcast_generation_cost`) |
//! | `openrouter.is_byok` | bool | cost group |
//! | `openrouter.cost_details.<key>` | typed | cost group: each `usage.cost_details` entry |
//! | `openrouter.api_key_name`, `openrouter.api_key_hash`, `openrouter.workspace_id`, `openrouter.external_user` | string | identity group (`broadcast_generation_identity`) |
//! | `openrouter.http_referer`, `openrouter.x_title`, `openrouter.user_agent`, `openrouter.origin`, `openrouter.request_id`, `openrouter.upstream_id`, `openrouter.router`, `openrouter.preset_id`, `openrouter.data_region` | string | request-context group (`broadcast_generation_request_context`) |
//! | `openrouter.cost_allocation.<kind>.tokens` (int), `openrouter.cost_allocation.<kind>.cost` (double) | | cost-allocation group (`broadcast_generation_cost_allocation`), kinds `prompt`, `completion`, `cache_read`, `cache_write`, `reasoning`, only when the parts add up to `total_cost` |
//!
//! The intermediate span carries `openrouter.observation.type` = `span`, `openrouter.trace.name`
//! (it is the top-most span), `user.id` and `session.id`.
//!
//! # Privacy mode
//!
//! [`TraceView::input`] and [`TraceView::output`] return nothing in privacy mode, so
//! `gen_ai.prompt`, `gen_ai.tool.definitions` and `gen_ai.completion` are never built. Tool
//! *names*, model parameters, usage, cost, timing, ids and custom metadata are still sent, as
//! OpenRouter does.
//!
//! # Dialects
//!
//! An [`OtlpDialect`] changes the mapping without copying it: [`OtlpDialect::parent_span_id`]
//! decides whether the user's `parent_span_id` is sent as the OTLP parent (a platform that stores
//! spans sends only a parent it can receive, else the span is a root and
//! [`SpanSlot::unsent_parent`] carries the value), [`OtlpDialect::attribute_key`]
//! renames or drops any standard attribute, [`OtlpDialect::span_name`] names spans,
//! [`OtlpDialect::resource_attributes`] and [`OtlpDialect::span_attributes`] add platform
//! attributes (and may remove standard ones), [`OtlpDialect::service_name`],
//! [`OtlpDialect::scope_name`] and [`OtlpDialect::scope_version`] set the resource and scope
//! names.
//!
//! # Cost
//!
//! Encoding runs for every generation and destination, so the JSON path avoids the message
//! types: [`generation_spans`] builds the spans as borrowed data ([`GenerationSpans`]: `'static`
//! keys, values borrowed from the generation, so few allocations), and
//! [`GenerationSpans::write_json`] writes them straight into the body. Protobuf, and
//! [`export_request`] / [`resource_spans`], convert the same data into `opentelemetry-proto`
//! messages; tests check that both encodings decode to the same message. The ignored test
//! `encoding_rate` in `tests/otlp_encoding.rs` measures the rate (one core, release build):
//! about 6 µs per generation with content and every metadata group, under 2 µs for a small one
//! in privacy mode.

mod attributes;
mod dialect;
mod encode;
mod exporter;
pub mod keys;
mod model;
mod transport;

pub use attributes::{Attr, AttrValue, AttributeKey, Attributes, Element, KeyRule, SpanRole};
pub use dialect::{
    DefaultDialect, OtlpDialect, SCOPE_NAME, SERVICE_NAME, SERVICE_VERSION, SpanSlot,
    carry_unsent_parent, default_span_name,
};
pub use encode::{
    EMPTY_REQUEST_JSON, JsonFragments, OtlpEncoding, encode, export_request, generation_spans,
    resource_spans,
};
pub use exporter::{OtlpExporter, Probe};
pub use model::{EventData, GenerationSpans, SpanData};
/// The OTLP message types (`opentelemetry-proto`), for dialects and tests.
pub use opentelemetry_proto::tonic as proto;
pub(crate) use transport::snippet;
pub use transport::{OtlpHttp, RawAnswer, partial_success};

#[cfg(doc)]
use tracecast_model::trace::TraceView;
