//! The export view of a generation for one destination.
//!
//! Exporters read generations only through [`TraceView`], which applies the destination's
//! privacy mode and optional metadata groups in one place: an exporter cannot forget to strip a
//! prompt, because it never sees one when privacy mode is on.
//!
//! What is always there (the base trace): ids, timing, model, provider, finish reason, tokens,
//! `total_cost`, user, session, `trace` metadata, errors, and input/output unless privacy mode.
//! What the `broadcast_generation_*` flags add:
//! - cost ([`CostGroup`]): upstream cost, cache discount, BYOK, cost details;
//! - identity ([`IdentityGroup`]): API-key name and hash, workspace, external user;
//! - request context ([`RequestContext`]): referer, title, user agent, origin, request,
//!   upstream, router and preset ids, region;
//! - cost allocation ([`CostAllocation`]): per-token-kind usage and cost, only when the parts add
//!   up to `total_cost`.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::destination::Destination;
use crate::generation::{Generation, GenerationError, RESERVED_TRACE_KEYS, Usage};
use crate::region::Region;

/// Which parts of a generation a destination receives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TraceOptions {
    pub privacy_mode: bool,
    pub cost: bool,
    pub identity: bool,
    pub request_context: bool,
    pub cost_allocation: bool,
}

impl From<&Destination> for TraceOptions {
    fn from(d: &Destination) -> Self {
        TraceOptions {
            privacy_mode: d.privacy_mode,
            cost: d.broadcast_generation_cost,
            identity: d.broadcast_generation_identity,
            request_context: d.broadcast_generation_request_context,
            cost_allocation: d.broadcast_generation_cost_allocation,
        }
    }
}

/// A generation as one destination may see it.
#[derive(Clone, Copy)]
pub struct TraceView<'a> {
    g: &'a Generation,
    opts: TraceOptions,
}

/// The prompt side of a call (absent in privacy mode).
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// Chat `messages`.
    pub messages: Option<&'a Value>,
    /// Completions `prompt`.
    pub prompt: Option<&'a Value>,
    /// Responses-API `input`.
    pub input: Option<&'a Value>,
    /// Tool definitions offered to the model.
    pub tools: Option<&'a Value>,
}

/// The completion side of a call (absent in privacy mode).
#[derive(Debug, Clone)]
pub struct Output<'a> {
    /// The assistant's text (first choice), empty when it only called tools.
    pub completion: String,
    /// Reasoning text, when the model returned any.
    pub reasoning: Option<String>,
    /// Tool calls of the first choice, with their arguments.
    pub tool_calls: Option<&'a Value>,
    /// The whole `choices` array (or Responses-API `output`).
    pub choices: Option<&'a Value>,
}

/// `broadcast_generation_cost`.
#[derive(Debug, Clone, PartialEq)]
pub struct CostGroup<'a> {
    pub upstream_inference_cost: Option<f64>,
    pub cache_discount: Option<f64>,
    pub is_byok: Option<bool>,
    pub cost_details: Option<&'a Map<String, Value>>,
}

/// `broadcast_generation_identity`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentityGroup<'a> {
    pub api_key_name: Option<&'a str>,
    pub api_key_hash: Option<&'a str>,
    pub workspace_id: &'a str,
    pub external_user: Option<&'a str>,
}

/// `broadcast_generation_request_context`.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestContext<'a> {
    pub http_referer: Option<&'a str>,
    pub x_title: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub origin: Option<&'a str>,
    pub request_id: Option<&'a str>,
    pub upstream_id: Option<&'a str>,
    pub router: Option<&'a str>,
    pub preset_id: Option<&'a str>,
    pub data_region: Region,
}

/// One token kind of [`CostAllocation`].
#[derive(Debug, Clone, PartialEq)]
pub struct CostPart {
    /// `prompt`, `completion`, `cache_read`, `cache_write` or `reasoning`.
    pub kind: &'static str,
    pub tokens: Option<u64>,
    pub cost: f64,
}

/// `broadcast_generation_cost_allocation`: per-token-kind usage and cost, read from
/// `usage.cost_details` keys `prompt_cost`, `completion_cost`, `cache_read_cost`,
/// `cache_write_cost` and `reasoning_cost`, present only when those costs add up to
/// `total_cost` (within 1e-9 USD or 1e-6 relative).
#[derive(Debug, Clone, PartialEq)]
pub struct CostAllocation {
    pub parts: Vec<CostPart>,
}

/// `trace_name` when the record gives none (OpenRouter's default is the model name).
fn first_non_empty<'a>(a: Option<&'a str>, b: &'a str) -> &'a str {
    a.filter(|s| !s.is_empty()).unwrap_or(b)
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(*p)?;
    }
    cur.as_str()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()) && !s.bytes().all(|b| b == b'0')
}

/// The first `N` bytes of SHA-256 of `s`, never all zero: OTLP reserves the all-zero trace and
/// span ids as invalid, so the (2^-64-likely) all-zero prefix gets its last byte set to 1.
fn sha256_prefix<const N: usize>(s: &str) -> [u8; N] {
    let d = Sha256::digest(s.as_bytes());
    let mut out = [0u8; N];
    out.copy_from_slice(&d[..N]);
    if out.iter().all(|&b| b == 0) {
        out[N - 1] = 1;
    }
    out
}

/// Whether an id given by the user is a "nil" id: only zeros (and the dashes of a UUID), which
/// OTLP and UUID consumers read as "no id".
fn is_nil_id(s: &str) -> bool {
    s.bytes().any(|b| b == b'0') && s.bytes().all(|b| b == b'0' || b == b'-')
}

/// Whether `s` is a UUID in its canonical hyphenated form (`8-4-4-4-12` hex digits), not nil:
/// the form LangSmith run ids, legacy Braintrust span ids and Weave call ids take.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::try_parse(s).is_ok_and(|u| !u.is_nil())
}

fn hex_bytes<const N: usize>(s: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).expect("checked by is_hex");
    out
}

impl<'a> TraceView<'a> {
    pub fn new(g: &'a Generation, opts: TraceOptions) -> Self {
        TraceView { g, opts }
    }

    pub fn options(&self) -> TraceOptions {
        self.opts
    }

    // ---- ids and hierarchy ----

    /// The generation id.
    pub fn id(&self) -> &'a str {
        &self.g.id
    }

    /// What groups calls into one trace: `trace.trace_id`, else the generation id.
    pub fn trace_key(&self) -> &'a str {
        self.g.trace_str("trace_id").unwrap_or(&self.g.id)
    }

    /// OTLP trace id (16 bytes): `trace.trace_id` itself when it is already 32 hex characters,
    /// else the first 16 bytes of SHA-256 of the trace key (what OpenRouter sends).
    pub fn otlp_trace_id(&self) -> [u8; 16] {
        let key = self.trace_key();
        if is_hex(key, 32) {
            hex_bytes(key)
        } else {
            sha256_prefix(key)
        }
    }

    /// OTLP span id of the generation span: first 8 bytes of SHA-256 of the generation id.
    /// Stable across retries, restarts and destinations, so receivers can de-duplicate.
    pub fn otlp_span_id(&self) -> [u8; 8] {
        sha256_prefix(&self.g.id)
    }

    /// The span id the call had in the app's own OTLP trace: `trace.otlp_span_id` (what OTLP
    /// ingest keeps of an LLM span) when it is 16 hex characters, not all zero, and the
    /// generation is in an OTLP trace of the app (`trace.trace_id` is 32 hex characters). A
    /// destination that receives the app's other spans can then show the generation as that
    /// very span ([`Self::otlp_span_id`] is derived from the generation id instead).
    pub fn otlp_app_span_id(&self) -> Option<[u8; 8]> {
        let id = self.g.trace_str("otlp_span_id")?;
        (is_hex(id, 16) && is_hex(self.trace_key(), 32)).then(|| hex_bytes(id))
    }

    /// OTLP span id of the intermediate span named by `trace.span_name`: derived from the trace
    /// key and the span name, so calls sharing both share the span.
    pub fn otlp_intermediate_span_id(&self) -> Option<[u8; 8]> {
        let name = self.span_name()?;
        Some(sha256_prefix(&format!("{}\u{1f}{name}", self.trace_key())))
    }

    /// `trace.parent_span_id` as an OTLP span id: itself when it is 16 hex characters, else
    /// derived (first 8 bytes of its SHA-256). A nil id (only zeros, OTLP's "invalid span id")
    /// counts as no parent: it is never sent, as is or hashed.
    pub fn otlp_parent_span_id(&self) -> Option<[u8; 8]> {
        let p = self.parent_span_id()?;
        Some(if is_hex(p, 16) {
            hex_bytes(p)
        } else {
            sha256_prefix(p)
        })
    }

    /// The parent as an OTLP span id only when it can name a span the user sent to an
    /// OTLP-native platform: `trace.parent_span_id` is 16 hex characters and `trace.trace_id`
    /// 32 hex characters (neither all zero), so the generation joins the user's own OTLP trace
    /// under the user's own span. A parent in any other form (a UUID, a name, a hex id in a
    /// trace whose id tracecast derives) cannot name a span of that trace, and is `None`.
    pub fn otlp_linkable_parent_span_id(&self) -> Option<[u8; 8]> {
        let p = self.parent_span_id()?;
        (is_hex(p, 16) && is_hex(self.trace_key(), 32)).then(|| hex_bytes(p))
    }

    pub fn trace_name(&self) -> &'a str {
        first_non_empty(self.g.trace_str("trace_name"), &self.g.model)
    }

    pub fn span_name(&self) -> Option<&'a str> {
        self.g.trace_str("span_name")
    }

    pub fn generation_name(&self) -> &'a str {
        first_non_empty(self.g.trace_str("generation_name"), &self.g.model)
    }

    /// `trace.parent_span_id` as given; `None` when empty or nil (only zeros).
    pub fn parent_span_id(&self) -> Option<&'a str> {
        self.g
            .trace_str("parent_span_id")
            .filter(|p| !p.is_empty() && !is_nil_id(p))
    }

    /// Custom `trace` metadata: every key but the five that shape the hierarchy.
    pub fn metadata(&self) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.g
            .trace
            .iter()
            .flat_map(|t| t.iter())
            .filter(|(k, _)| !RESERVED_TRACE_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    }

    // ---- timing ----

    pub fn created_at(&self) -> &'a str {
        &self.g.created_at
    }

    /// Start time in ns since the Unix epoch.
    pub fn start_unix_nanos(&self) -> u64 {
        chrono::DateTime::parse_from_rfc3339(&self.g.created_at)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .map(|n| n.max(0) as u64)
            .unwrap_or(0)
    }

    /// Duration in ms: `latency`, else `generation_time`.
    pub fn duration_ms(&self) -> Option<f64> {
        self.g.latency.or(self.g.generation_time)
    }

    /// End time in ns: start plus [`Self::duration_ms`] (start when unknown).
    pub fn end_unix_nanos(&self) -> u64 {
        let d = self.duration_ms().unwrap_or(0.0);
        self.start_unix_nanos()
            .saturating_add((d * 1_000_000.0) as u64)
    }

    pub fn time_to_first_token_ms(&self) -> Option<f64> {
        self.g.time_to_first_token
    }

    pub fn generation_time_ms(&self) -> Option<f64> {
        self.g.generation_time
    }

    pub fn moderation_latency_ms(&self) -> Option<f64> {
        self.g.moderation_latency
    }

    // ---- model, outcome, usage ----

    pub fn model(&self) -> &'a str {
        &self.g.model
    }

    /// The model the response names (`response.model`), else the requested one.
    pub fn response_model(&self) -> &'a str {
        self.g
            .response
            .as_ref()
            .and_then(|r| r.get("model"))
            .and_then(Value::as_str)
            .unwrap_or(&self.g.model)
    }

    pub fn provider(&self) -> Option<&'a str> {
        self.g.provider_name.as_deref()
    }

    pub fn api_type(&self) -> Option<&'a str> {
        self.g.api_type.as_deref()
    }

    pub fn finish_reason(&self) -> Option<&'a str> {
        self.g.finish_reason.as_deref().or_else(|| {
            self.g
                .response
                .as_ref()
                .and_then(|r| r.get("choices"))
                .and_then(|c| c.get(0))
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str)
        })
    }

    pub fn native_finish_reason(&self) -> Option<&'a str> {
        self.g.native_finish_reason.as_deref()
    }

    pub fn streamed(&self) -> Option<bool> {
        self.g.streamed
    }

    pub fn cancelled(&self) -> Option<bool> {
        self.g.cancelled
    }

    pub fn usage(&self) -> Option<&'a Usage> {
        self.g.usage.as_ref()
    }

    pub fn prompt_tokens(&self) -> Option<u64> {
        self.usage().and_then(|u| u.prompt_tokens)
    }

    pub fn completion_tokens(&self) -> Option<u64> {
        self.usage().and_then(|u| u.completion_tokens)
    }

    pub fn total_tokens(&self) -> Option<u64> {
        self.usage().and_then(|u| u.total_tokens)
    }

    pub fn cached_tokens(&self) -> Option<u64> {
        self.usage()
            .and_then(|u| u.prompt_tokens_details.as_ref())
            .and_then(|d| d.cached_tokens)
    }

    pub fn cache_write_tokens(&self) -> Option<u64> {
        self.usage()
            .and_then(|u| u.prompt_tokens_details.as_ref())
            .and_then(|d| d.cache_write_tokens)
    }

    pub fn reasoning_tokens(&self) -> Option<u64> {
        self.usage()
            .and_then(|u| u.completion_tokens_details.as_ref())
            .and_then(|d| d.reasoning_tokens)
    }

    pub fn total_cost(&self) -> Option<f64> {
        self.g.total_cost
    }

    pub fn error(&self) -> Option<&'a GenerationError> {
        self.g.error.as_ref()
    }

    /// `error` set, or a cancelled call.
    pub fn is_error(&self) -> bool {
        self.g.error.is_some()
    }

    pub fn user(&self) -> Option<&'a str> {
        self.g.user.as_deref()
    }

    pub fn session_id(&self) -> Option<&'a str> {
        self.g.session_id.as_deref()
    }

    // ---- request parameters and tools (not content: kept in privacy mode) ----

    /// Model parameters of the request (`temperature`, `max_tokens`, `top_p`, ...): every
    /// scalar request field except the model, user, session and content.
    pub fn model_parameters(&self) -> Map<String, Value> {
        const NOT_PARAMS: &[&str] = &[
            "model",
            "messages",
            "prompt",
            "input",
            "tools",
            "user",
            "session_id",
            "trace",
            "stream",
            "metadata",
            "tool_choice",
            "response_format",
            "models",
            "provider",
        ];
        let mut out = Map::new();
        if let Some(req) = &self.g.request {
            for (k, v) in req {
                if !NOT_PARAMS.contains(&k.as_str())
                    && (v.is_number() || v.is_boolean() || v.is_string())
                {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        out
    }

    /// Whether the request offered tools.
    pub fn has_tools(&self) -> bool {
        self.g
            .request
            .as_ref()
            .and_then(|r| r.get("tools"))
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
    }

    /// Names of the tools the model called (arguments are content and are not included).
    pub fn tool_call_names(&self) -> Vec<&'a str> {
        self.first_message()
            .and_then(|m| m.get("tool_calls"))
            .and_then(Value::as_array)
            .map(|calls| {
                calls
                    .iter()
                    .filter_map(|c| {
                        str_at(c, &["function", "name"]).or_else(|| str_at(c, &["name"]))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn first_message(&self) -> Option<&'a Value> {
        self.g
            .response
            .as_ref()?
            .get("choices")?
            .get(0)?
            .get("message")
    }

    // ---- content (privacy mode strips it) ----

    /// The prompt side, or `None` in privacy mode (or when the record has no request).
    pub fn input(&self) -> Option<Input<'a>> {
        if self.opts.privacy_mode {
            return None;
        }
        let req = self.g.request.as_ref()?;
        let input = Input {
            messages: req.get("messages"),
            prompt: req.get("prompt"),
            input: req.get("input"),
            tools: req.get("tools"),
        };
        (input.messages.is_some() || input.prompt.is_some() || input.input.is_some())
            .then_some(input)
    }

    /// The completion side, or `None` in privacy mode (or when the record has no response).
    pub fn output(&self) -> Option<Output<'a>> {
        if self.opts.privacy_mode {
            return None;
        }
        let resp = self.g.response.as_ref()?;
        let choices = resp.get("choices").or_else(|| resp.get("output"));
        let msg = self.first_message();
        let completion = match msg.and_then(|m| m.get("content")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Array(parts)) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            _ => resp
                .get("choices")
                .and_then(|c| c.get(0))
                .and_then(|c| c.get("text"))
                .and_then(Value::as_str)
                .or_else(|| resp.get("output_text").and_then(Value::as_str))
                .map(str::to_string)
                .unwrap_or_else(|| responses_output_text(resp)),
        };
        let reasoning = msg
            .and_then(|m| m.get("reasoning").or_else(|| m.get("reasoning_content")))
            .and_then(Value::as_str)
            .map(str::to_string);
        Some(Output {
            completion,
            reasoning,
            tool_calls: msg.and_then(|m| m.get("tool_calls")),
            choices,
        })
    }

    /// The plain text of the input (all message texts, the prompt or the input), for filters.
    /// Not subject to privacy mode: routing runs before shaping.
    pub fn input_text(g: &Generation) -> String {
        let mut out = String::new();
        if let Some(req) = &g.request {
            for key in ["messages", "input"] {
                if let Some(Value::Array(items)) = req.get(key) {
                    for m in items {
                        push_content_text(&mut out, m.get("content").unwrap_or(m));
                    }
                } else if let Some(Value::String(s)) = req.get(key) {
                    push_text(&mut out, s);
                }
            }
            match req.get("prompt") {
                Some(Value::String(s)) => push_text(&mut out, s),
                Some(Value::Array(a)) => a
                    .iter()
                    .filter_map(Value::as_str)
                    .for_each(|s| push_text(&mut out, s)),
                _ => {}
            }
        }
        out
    }

    /// The plain text of the output, for filters.
    pub fn output_text(g: &Generation) -> String {
        let view = TraceView::new(g, TraceOptions::default());
        view.output().map(|o| o.completion).unwrap_or_default()
    }

    // ---- optional metadata groups ----

    pub fn cost_group(&self) -> Option<CostGroup<'a>> {
        self.opts.cost.then(|| CostGroup {
            upstream_inference_cost: self.g.upstream_inference_cost,
            cache_discount: self.g.cache_discount,
            is_byok: self.g.is_byok,
            cost_details: self.usage().and_then(|u| u.cost_details.as_ref()),
        })
    }

    /// Name of the API key the generation was ingested with, whatever the metadata groups
    /// say: for object-key templates (S3's `{apiKeyName}`), not for payloads.
    pub fn api_key_name(&self) -> Option<&'a str> {
        self.g.identity.api_key_name.as_deref()
    }

    /// The workspace that owns the generation, whatever the metadata groups say: for a
    /// warehouse table's owner column (`ENTITY_ID`), which OpenRouter always fills.
    pub fn workspace_id(&self) -> &'a str {
        &self.g.identity.workspace_id
    }

    pub fn identity_group(&self) -> Option<IdentityGroup<'a>> {
        self.opts.identity.then(|| IdentityGroup {
            api_key_name: self.g.identity.api_key_name.as_deref(),
            api_key_hash: self.g.identity.api_key_hash.as_deref(),
            workspace_id: &self.g.identity.workspace_id,
            external_user: self.g.external_user.as_deref(),
        })
    }

    pub fn request_context(&self) -> Option<RequestContext<'a>> {
        self.opts.request_context.then(|| RequestContext {
            http_referer: self.g.http_referer.as_deref(),
            x_title: self.g.x_title.as_deref(),
            user_agent: self.g.user_agent.as_deref(),
            origin: self.g.origin.as_deref(),
            request_id: self.g.request_id.as_deref(),
            upstream_id: self.g.upstream_id.as_deref(),
            router: self.g.router.as_deref(),
            preset_id: self.g.preset_id.as_deref(),
            data_region: self.g.region(),
        })
    }

    pub fn cost_allocation(&self) -> Option<CostAllocation> {
        if !self.opts.cost_allocation {
            return None;
        }
        let total = self.g.total_cost?;
        let details = self.usage()?.cost_details.as_ref()?;
        let kinds: [(&'static str, Option<u64>); 5] = [
            ("prompt", self.prompt_tokens()),
            ("completion", self.completion_tokens()),
            ("cache_read", self.cached_tokens()),
            ("cache_write", self.cache_write_tokens()),
            ("reasoning", self.reasoning_tokens()),
        ];
        let mut parts = Vec::new();
        for (kind, tokens) in kinds {
            if let Some(cost) = details.get(&format!("{kind}_cost")).and_then(Value::as_f64) {
                parts.push(CostPart { kind, tokens, cost });
            }
        }
        if parts.is_empty() {
            return None;
        }
        let sum: f64 = parts.iter().map(|p| p.cost).sum();
        let diff = (sum - total).abs();
        (diff <= 1e-9 || diff <= total.abs() * 1e-6).then_some(CostAllocation { parts })
    }
}

fn push_text(out: &mut String, s: &str) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(s);
}

fn push_content_text(out: &mut String, content: &Value) {
    match content {
        Value::String(s) => push_text(out, s),
        Value::Array(parts) => {
            for p in parts {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    push_text(out, t);
                } else if let Value::String(s) = p {
                    push_text(out, s);
                }
            }
        }
        _ => {}
    }
}

fn responses_output_text(resp: &Map<String, Value>) -> String {
    let mut out = String::new();
    if let Some(Value::Array(items)) = resp.get("output") {
        for item in items {
            if let Some(c) = item.get("content") {
                push_content_text(&mut out, c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::IngestContext;
    use serde_json::json;

    fn sample(extra: Value) -> Generation {
        let mut base = json!({
            "id": "gen-1", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00.000Z",
            "latency": 1500.0, "total_cost": 0.003,
            "request": {"messages": [{"role": "user", "content": "secret prompt"}], "temperature": 0.2, "tools": [{"type": "function", "function": {"name": "lookup"}}]},
            "response": {"choices": [{"finish_reason": "tool_calls", "message": {"role": "assistant", "content": "secret answer", "reasoning": "secret thought", "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{\"q\":\"secret\"}"}}]}}]},
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "cost_details": {"prompt_cost": 0.001, "completion_cost": 0.002}},
            "trace": {"trace_id": "workflow-1", "trace_name": "Doc", "span_name": "Step", "generation_name": "Gen", "parent_span_id": "00f067aa0ba902b7", "env": "prod"}
        });
        base.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        Generation::from_json(base, &IngestContext::default()).unwrap()
    }

    #[test]
    fn ids_are_deterministic_and_follow_openrouter() {
        let g = sample(json!({}));
        let v = TraceView::new(&g, TraceOptions::default());
        let expected: [u8; 16] = Sha256::digest(b"workflow-1")[..16].try_into().unwrap();
        assert_eq!(v.otlp_trace_id(), expected);
        let span: [u8; 8] = Sha256::digest(b"gen-1")[..8].try_into().unwrap();
        assert_eq!(v.otlp_span_id(), span);
        assert_eq!(
            v.otlp_parent_span_id(),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        assert_eq!(
            (v.trace_name(), v.span_name(), v.generation_name()),
            ("Doc", Some("Step"), "Gen")
        );
        assert_eq!(
            v.metadata().collect::<Vec<_>>(),
            vec![("env", &json!("prod"))]
        );
        assert_eq!(v.end_unix_nanos() - v.start_unix_nanos(), 1_500_000_000);
        let hex_id = sample(json!({"trace": {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}}));
        assert_eq!(
            hex::encode(TraceView::new(&hex_id, TraceOptions::default()).otlp_trace_id()),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn the_app_span_id_is_used_only_inside_the_apps_otlp_trace() {
        let view_of = |trace: Value| sample(json!({ "trace": trace }));
        let own = view_of(
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "otlp_span_id": "1000000000000001"}),
        );
        let v = TraceView::new(&own, TraceOptions::default());
        assert_eq!(v.otlp_app_span_id(), Some([0x10, 0, 0, 0, 0, 0, 0, 1]));
        assert_eq!(
            v.metadata().collect::<Vec<_>>(),
            vec![("otlp_span_id", &json!("1000000000000001"))],
            "still custom metadata"
        );
        for trace in [
            json!({"trace_id": "workflow-1", "otlp_span_id": "1000000000000001"}),
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "otlp_span_id": "0000000000000000"}),
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "otlp_span_id": "span-1"}),
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
        ] {
            let g = view_of(trace.clone());
            assert_eq!(
                TraceView::new(&g, TraceOptions::default()).otlp_app_span_id(),
                None,
                "{trace}"
            );
        }
    }

    #[test]
    fn nil_ids_are_never_sent_and_only_own_otlp_parents_link() {
        let view_of = |trace: Value| sample(json!({ "trace": trace }));
        // A nil parent is no parent; a nil trace id is hashed like any other non-id.
        for nil in ["0000000000000000", "00000000-0000-0000-0000-000000000000"] {
            let g = view_of(
                json!({"trace_id": "00000000000000000000000000000000", "parent_span_id": nil}),
            );
            let v = TraceView::new(&g, TraceOptions::default());
            assert_eq!(v.parent_span_id(), None, "{nil}");
            assert_eq!(v.otlp_parent_span_id(), None, "{nil}");
            assert_ne!(v.otlp_trace_id(), [0u8; 16]);
        }
        // A hex parent links only inside the user's own hex trace id.
        let own = view_of(
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "parent_span_id": "00f067aa0ba902b7"}),
        );
        let own = TraceView::new(&own, TraceOptions::default());
        assert_eq!(
            own.otlp_linkable_parent_span_id(),
            Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
        );
        let derived =
            view_of(json!({"trace_id": "workflow-1", "parent_span_id": "00f067aa0ba902b7"}));
        let derived = TraceView::new(&derived, TraceOptions::default());
        assert_eq!(derived.otlp_linkable_parent_span_id(), None);
        assert!(derived.otlp_parent_span_id().is_some());
        let uuid = view_of(
            json!({"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "parent_span_id": "0195f3c2-8d4e-7c1a-9b2f-3e4d5c6b7a89"}),
        );
        let uuid = TraceView::new(&uuid, TraceOptions::default());
        assert_eq!(uuid.otlp_linkable_parent_span_id(), None);
        assert!(is_uuid("0195f3c2-8d4e-7c1a-9b2f-3e4d5c6b7a89"));
        assert!(!is_uuid("00000000-0000-0000-0000-000000000000"));
        assert!(!is_uuid("0195f3c28d4e7c1a9b2f3e4d5c6b7a89"));
    }

    #[test]
    fn privacy_mode_strips_content_but_keeps_the_rest() {
        let g = sample(json!({}));
        let open = TraceView::new(&g, TraceOptions::default());
        let out = open.output().unwrap();
        assert_eq!(out.completion, "secret answer");
        assert_eq!(out.reasoning.as_deref(), Some("secret thought"));
        assert!(open.input().unwrap().messages.is_some());

        let private = TraceView::new(
            &g,
            TraceOptions {
                privacy_mode: true,
                ..Default::default()
            },
        );
        assert!(private.input().is_none());
        assert!(private.output().is_none());
        assert_eq!(private.total_tokens(), Some(15));
        assert_eq!(private.total_cost(), Some(0.003));
        assert_eq!(private.finish_reason(), Some("tool_calls"));
        assert_eq!(private.tool_call_names(), vec!["lookup"]);
        assert!(private.has_tools());
        assert_eq!(
            private.model_parameters().get("temperature"),
            Some(&json!(0.2))
        );
        assert_eq!(private.metadata().count(), 1);
    }

    #[test]
    fn groups_appear_only_when_enabled() {
        let g = sample(
            json!({"is_byok": true, "http_referer": "https://app.test", "external_user": "ext-1"}),
        );
        let none = TraceView::new(&g, TraceOptions::default());
        assert!(
            none.cost_group().is_none()
                && none.identity_group().is_none()
                && none.request_context().is_none()
                && none.cost_allocation().is_none()
        );
        let all = TraceView::new(
            &g,
            TraceOptions {
                cost: true,
                identity: true,
                request_context: true,
                cost_allocation: true,
                privacy_mode: false,
            },
        );
        assert_eq!(all.cost_group().unwrap().is_byok, Some(true));
        assert_eq!(all.identity_group().unwrap().external_user, Some("ext-1"));
        assert_eq!(
            all.request_context().unwrap().http_referer,
            Some("https://app.test")
        );
        let alloc = all.cost_allocation().unwrap();
        assert_eq!(alloc.parts.len(), 2);
        // Parts that do not add up to total_cost are not sent.
        let off = sample(json!({"total_cost": 0.5}));
        assert!(
            TraceView::new(&off, all.options())
                .cost_allocation()
                .is_none()
        );
    }

    #[test]
    fn filter_texts() {
        let g = sample(json!({}));
        assert_eq!(TraceView::input_text(&g), "secret prompt");
        assert_eq!(TraceView::output_text(&g), "secret answer");
    }
}
