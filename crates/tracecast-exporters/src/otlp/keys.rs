//! Every attribute key the shared encoder emits, so that dialects can match on them in
//! [`super::OtlpDialect::attribute_key`] without repeating strings.
//!
//! Keys that end in `.` are prefixes: the encoder appends a name to them.

// ---- resource ----
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const OPENROUTER_TRACE_ID: &str = "openrouter.trace.id";

// ---- GenAI semantic conventions ----
pub const GEN_AI_OPERATION_NAME: &str = "gen_ai.operation.name";
pub const GEN_AI_SYSTEM: &str = "gen_ai.system";
pub const GEN_AI_PROVIDER_NAME: &str = "gen_ai.provider.name";
pub const GEN_AI_REQUEST_MODEL: &str = "gen_ai.request.model";
pub const GEN_AI_RESPONSE_MODEL: &str = "gen_ai.response.model";
pub const GEN_AI_RESPONSE_ID: &str = "gen_ai.response.id";
pub const GEN_AI_RESPONSE_FINISH_REASONS: &str = "gen_ai.response.finish_reasons";
pub const GEN_AI_RESPONSE_FINISH_REASON: &str = "gen_ai.response.finish_reason";
pub const GEN_AI_CONVERSATION_ID: &str = "gen_ai.conversation.id";

pub const GEN_AI_USAGE_INPUT_TOKENS: &str = "gen_ai.usage.input_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS: &str = "gen_ai.usage.output_tokens";
pub const GEN_AI_USAGE_PROMPT_TOKENS: &str = "gen_ai.usage.prompt_tokens";
pub const GEN_AI_USAGE_COMPLETION_TOKENS: &str = "gen_ai.usage.completion_tokens";
pub const GEN_AI_USAGE_TOTAL_TOKENS: &str = "gen_ai.usage.total_tokens";
pub const GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: &str = "gen_ai.usage.cache_read.input_tokens";
pub const GEN_AI_USAGE_INPUT_TOKENS_CACHED: &str = "gen_ai.usage.input_tokens.cached";
pub const GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS: &str =
    "gen_ai.usage.cache_creation.input_tokens";
pub const GEN_AI_USAGE_INPUT_TOKENS_CACHE_WRITE: &str = "gen_ai.usage.input_tokens.cache_write";
pub const GEN_AI_USAGE_INPUT_TOKENS_AUDIO: &str = "gen_ai.usage.input_tokens.audio";
pub const GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: &str = "gen_ai.usage.reasoning.output_tokens";
pub const GEN_AI_USAGE_OUTPUT_TOKENS_REASONING: &str = "gen_ai.usage.output_tokens.reasoning";
pub const GEN_AI_USAGE_OUTPUT_TOKENS_AUDIO: &str = "gen_ai.usage.output_tokens.audio";
pub const GEN_AI_USAGE_OUTPUT_TOKENS_IMAGE: &str = "gen_ai.usage.output_tokens.image";
pub const GEN_AI_USAGE_COST: &str = "gen_ai.usage.cost";
pub const GEN_AI_USAGE_TOTAL_COST: &str = "gen_ai.usage.total_cost";

/// Prefix of request parameters: `gen_ai.request.temperature`, `gen_ai.request.max_tokens`, ...
pub const GEN_AI_REQUEST_PREFIX: &str = "gen_ai.request.";
pub const GEN_AI_REQUEST_MAX_TOKENS: &str = "gen_ai.request.max_tokens";
pub const GEN_AI_REQUEST_CHOICE_COUNT: &str = "gen_ai.request.choice.count";
pub const GEN_AI_REQUEST_STOP_SEQUENCES: &str = "gen_ai.request.stop_sequences";

// ---- content (absent in privacy mode) ----
pub const GEN_AI_PROMPT: &str = "gen_ai.prompt";
pub const GEN_AI_COMPLETION: &str = "gen_ai.completion";
pub const GEN_AI_TOOL_DEFINITIONS: &str = "gen_ai.tool.definitions";

// ---- general registry ----
pub const USER_ID: &str = "user.id";
pub const SESSION_ID: &str = "session.id";
pub const ERROR_TYPE: &str = "error.type";
/// Prefix of custom `trace` metadata: `trace.metadata.<key>`.
pub const TRACE_METADATA_PREFIX: &str = "trace.metadata.";

// ---- exception event ----
pub const EXCEPTION_EVENT: &str = "exception";
pub const EXCEPTION_TYPE: &str = "exception.type";
pub const EXCEPTION_MESSAGE: &str = "exception.message";

// ---- openrouter.* (always sent) ----
pub const OPENROUTER_TRACE_NAME: &str = "openrouter.trace.name";
/// `trace.parent_span_id` as given, on the top-most span of a platform that was not sent it as
/// the OTLP parent (it could not name a span of the user's trace there).
pub const OPENROUTER_TRACE_PARENT_SPAN_ID: &str = "openrouter.trace.parent_span_id";
pub const OPENROUTER_OBSERVATION_TYPE: &str = "openrouter.observation.type";
pub const OPENROUTER_PROVIDER_NAME: &str = "openrouter.provider_name";
pub const OPENROUTER_API_TYPE: &str = "openrouter.api_type";
pub const OPENROUTER_NATIVE_FINISH_REASON: &str = "openrouter.native_finish_reason";
pub const OPENROUTER_STREAMED: &str = "openrouter.streamed";
pub const OPENROUTER_CANCELLED: &str = "openrouter.cancelled";
pub const OPENROUTER_HAS_TOOLS: &str = "openrouter.has_tools";
pub const OPENROUTER_TOOL_CALL_NAMES: &str = "openrouter.tool_call_names";
pub const OPENROUTER_LATENCY_MS: &str = "openrouter.latency_ms";
pub const OPENROUTER_GENERATION_TIME_MS: &str = "openrouter.generation_time_ms";
pub const OPENROUTER_TIME_TO_FIRST_TOKEN_MS: &str = "openrouter.time_to_first_token_ms";
pub const OPENROUTER_MODERATION_LATENCY_MS: &str = "openrouter.moderation_latency_ms";

// ---- openrouter.* optional groups ----
pub const OPENROUTER_UPSTREAM_INFERENCE_COST: &str = "openrouter.upstream_inference_cost";
pub const OPENROUTER_CACHE_DISCOUNT: &str = "openrouter.cache_discount";
pub const OPENROUTER_IS_BYOK: &str = "openrouter.is_byok";
/// Prefix of `usage.cost_details` entries: `openrouter.cost_details.<key>`.
pub const OPENROUTER_COST_DETAILS_PREFIX: &str = "openrouter.cost_details.";

pub const OPENROUTER_API_KEY_NAME: &str = "openrouter.api_key_name";
pub const OPENROUTER_API_KEY_HASH: &str = "openrouter.api_key_hash";
pub const OPENROUTER_WORKSPACE_ID: &str = "openrouter.workspace_id";
pub const OPENROUTER_EXTERNAL_USER: &str = "openrouter.external_user";

pub const OPENROUTER_HTTP_REFERER: &str = "openrouter.http_referer";
pub const OPENROUTER_X_TITLE: &str = "openrouter.x_title";
pub const OPENROUTER_USER_AGENT: &str = "openrouter.user_agent";
pub const OPENROUTER_ORIGIN: &str = "openrouter.origin";
pub const OPENROUTER_REQUEST_ID: &str = "openrouter.request_id";
pub const OPENROUTER_UPSTREAM_ID: &str = "openrouter.upstream_id";
pub const OPENROUTER_ROUTER: &str = "openrouter.router";
pub const OPENROUTER_PRESET_ID: &str = "openrouter.preset_id";
pub const OPENROUTER_DATA_REGION: &str = "openrouter.data_region";

/// Prefix of cost allocation entries: `openrouter.cost_allocation.<kind>.tokens` and
/// `openrouter.cost_allocation.<kind>.cost`.
pub const OPENROUTER_COST_ALLOCATION_PREFIX: &str = "openrouter.cost_allocation.";
