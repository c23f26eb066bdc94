//! From OTLP spans to generation records (OpenRouter's shape, `docs/generation.md`).
//!
//! Each convention has its own module and is tried in this order, the first whose marker the
//! span carries decides whether it is an LLM call:
//!
//! | convention | marker | LLM span when |
//! |---|---|---|
//! | [`openrouter`] (OpenRouter Broadcast / tracecast's OTLP exporter) | `openrouter.observation.type` | it is `generation` |
//! | [`vercel`] (Vercel AI SDK) | `ai.operationId` | it is a provider call (`*.doGenerate`, `*.doStream`) |
//! | [`openinference`] (Arize OpenInference) | `openinference.span.kind` | it is `LLM` |
//! | [`openllmetry`] (Traceloop OpenLLMetry) | `llm.request.type`, `gen_ai.prompt.N.*`, `gen_ai.completion.N.*` | always |
//! | [`genai`] (OpenTelemetry GenAI semantic conventions) | `gen_ai.operation.name`, else `gen_ai.request.model` | chat, text completion, generate_content or embeddings |
//!
//! Every other span is skipped and counted. A span that is an LLM call but cannot become a valid
//! record (no model, no trace id, no start time, a field the record rejects) is rejected with a
//! message naming the span and the field.
//!
//! Linking: the record keeps the span's trace id (`trace.trace_id`, 32 hex characters, which
//! OTLP-based destinations reuse as is), its parent (`trace.parent_span_id`) and its own span id
//! (`trace.otlp_span_id`). Its id is `otlp-<trace id>-<span id>`, so an OTLP retry is a
//! duplicate. The OpenRouter shape keeps the generation id it carries.

pub mod genai;
pub mod openinference;
pub mod openllmetry;
pub mod openrouter;
pub mod vercel;

use std::collections::HashMap;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Value, json};
use tracecast_model::generation::{Generation, IngestContext};

/// A span's (or resource's) attributes by key.
pub struct Attrs<'a>(HashMap<&'a str, &'a AnyValue>);

impl<'a> Attrs<'a> {
    pub fn new(kvs: &'a [KeyValue]) -> Self {
        Attrs(
            kvs.iter()
                .filter_map(|kv| kv.value.as_ref().map(|v| (kv.key.as_str(), v)))
                .collect(),
        )
    }

    fn raw(&self, key: &str) -> Option<&'a Av> {
        self.0.get(key).and_then(|v| v.value.as_ref())
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// A non-empty string.
    pub fn str(&self, key: &str) -> Option<&'a str> {
        match self.raw(key)? {
            Av::StringValue(s) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        }
    }

    /// A non-negative integer (an integral double or a decimal string also count).
    pub fn u64(&self, key: &str) -> Option<u64> {
        match self.raw(key)? {
            Av::IntValue(i) => u64::try_from(*i).ok(),
            Av::DoubleValue(d) if d.fract() == 0.0 && *d >= 0.0 && *d < 9.0e15 => Some(*d as u64),
            Av::StringValue(s) => s.trim().parse().ok(),
            _ => None,
        }
    }

    /// A finite number (integer, double or decimal string).
    pub fn f64(&self, key: &str) -> Option<f64> {
        let v = match self.raw(key)? {
            Av::IntValue(i) => *i as f64,
            Av::DoubleValue(d) => *d,
            Av::StringValue(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        v.is_finite().then_some(v)
    }

    pub fn bool(&self, key: &str) -> Option<bool> {
        match self.raw(key)? {
            Av::BoolValue(b) => Some(*b),
            Av::StringValue(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// The first string of a string array (or the string itself).
    pub fn first_str(&self, key: &str) -> Option<&'a str> {
        match self.raw(key)? {
            Av::StringValue(s) if !s.is_empty() => Some(s),
            Av::ArrayValue(a) => a.values.iter().find_map(|v| match &v.value {
                Some(Av::StringValue(s)) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            }),
            _ => None,
        }
    }

    /// The value as JSON; a string that holds a JSON object or array is parsed.
    pub fn json(&self, key: &str) -> Option<Value> {
        let v = any_to_json(self.raw(key)?);
        Some(match v {
            Value::String(s) => parse_json_text(&s).unwrap_or(Value::String(s)),
            other => other,
        })
    }

    /// The value as JSON, strings kept as strings.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.raw(key).map(any_to_json)
    }

    /// `(rest of key, value)` for every key starting with `prefix`.
    pub fn with_prefix<'s>(
        &'s self,
        prefix: &'s str,
    ) -> impl Iterator<Item = (&'a str, Value)> + 's {
        self.0.iter().filter_map(move |(k, v)| {
            let rest = k.strip_prefix(prefix)?;
            Some((rest, v.value.as_ref().map(any_to_json)?))
        })
    }

    /// Indices `N` of keys `<prefix>N.<...>`, sorted.
    pub fn indices(&self, prefix: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .0
            .keys()
            .filter_map(|k| k.strip_prefix(prefix)?.split('.').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// A JSON object or array written as text.
pub fn parse_json_text(s: &str) -> Option<Value> {
    let t = s.trim_start();
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str(s).ok()
}

pub fn any_to_json(v: &Av) -> Value {
    match v {
        Av::StringValue(s) => Value::String(s.clone()),
        Av::BoolValue(b) => Value::Bool(*b),
        Av::IntValue(i) => Value::from(*i),
        Av::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        Av::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .map(|x| x.value.as_ref().map_or(Value::Null, any_to_json))
                .collect(),
        ),
        Av::KvlistValue(l) => Value::Object(
            l.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value
                            .as_ref()
                            .and_then(|v| v.value.as_ref())
                            .map_or(Value::Null, any_to_json),
                    )
                })
                .collect(),
        ),
        Av::BytesValue(b) => Value::String(hex::encode(b)),
        // A profiles-only string-table index: no text to read in a trace.
        Av::StringValueStrindex(_) => Value::Null,
    }
}

/// One span with what the conventions read: its attributes, its resource's and its scope
/// siblings (the OpenRouter shape names the generation after an intermediate span).
pub struct SpanRef<'a> {
    pub span: &'a Span,
    pub attrs: Attrs<'a>,
    pub resource: Attrs<'a>,
    pub siblings: &'a [Span],
}

impl SpanRef<'_> {
    pub fn event_attrs(&self, name: &str) -> Vec<Attrs<'_>> {
        self.span
            .events
            .iter()
            .filter(|e| e.name == name)
            .map(|e| Attrs::new(&e.attributes))
            .collect()
    }
}

/// A generation record being built: top-level fields and the objects that group others.
#[derive(Default)]
pub struct Draft {
    pub top: Map<String, Value>,
    pub request: Map<String, Value>,
    pub response: Map<String, Value>,
    pub usage: Map<String, Value>,
    pub trace: Map<String, Value>,
    /// The assistant message and its finish reason, as `response.choices[0]`.
    pub output: Option<(Value, Option<String>)>,
}

impl Draft {
    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.top.insert(key.into(), v.into());
    }
    pub fn set_opt<T: Into<Value>>(&mut self, key: &str, v: Option<T>) {
        if let Some(v) = v
            && !self.top.contains_key(key)
        {
            self.top.insert(key.into(), v.into());
        }
    }
    pub fn usage_opt(&mut self, key: &str, v: Option<u64>) {
        if let Some(v) = v
            && !self.usage.contains_key(key)
        {
            self.usage.insert(key.into(), v.into());
        }
    }
    pub fn usage_detail(&mut self, group: &str, key: &str, v: Option<u64>) {
        if let Some(v) = v {
            let g = self
                .usage
                .entry(group.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(o) = g.as_object_mut() {
                o.entry(key.to_string()).or_insert(v.into());
            }
        }
    }
    pub fn model(&self) -> Option<&str> {
        self.top.get("model").and_then(Value::as_str)
    }
}

/// What one span is.
pub enum Outcome {
    /// Not an LLM call: skipped.
    NotLlm,
    /// An LLM call, read into a draft, or the reason it cannot be used.
    Llm(Result<Draft, String>),
}

/// One usable span: its record, parsed and as JSON.
pub struct MappedRecord {
    pub generation: Generation,
    pub raw: Vec<u8>,
}

/// What an export request holds.
#[derive(Default)]
pub struct MappedBatch {
    pub records: Vec<MappedRecord>,
    /// One message per rejected span.
    pub rejected: Vec<String>,
    /// Spans that are not LLM calls.
    pub skipped: usize,
}

impl MappedBatch {
    /// The `partial_success.error_message`, when some spans were rejected or skipped.
    pub fn partial_success_message(&self) -> Option<String> {
        let mut parts = Vec::new();
        if !self.rejected.is_empty() {
            let shown: Vec<&str> = self.rejected.iter().take(3).map(String::as_str).collect();
            let more = self.rejected.len() - shown.len();
            let mut s = format!(
                "{} LLM span(s) rejected: {}",
                self.rejected.len(),
                shown.join("; ")
            );
            if more > 0 {
                s.push_str(&format!("; and {more} more"));
            }
            parts.push(s);
        }
        if self.skipped > 0 {
            parts.push(format!(
                "{} span(s) are not LLM calls and were skipped (see docs/otlp-ingest.md)",
                self.skipped
            ));
        }
        (!parts.is_empty()).then(|| parts.join(". "))
    }
}

/// Maps every span of an export request.
pub fn map_request(req: &ExportTraceServiceRequest) -> MappedBatch {
    let mut batch = MappedBatch::default();
    let ctx = IngestContext::default();
    for rs in &req.resource_spans {
        let resource_kvs: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let s = SpanRef {
                    span,
                    attrs: Attrs::new(&span.attributes),
                    resource: Attrs::new(resource_kvs),
                    siblings: &ss.spans,
                };
                let who = || {
                    format!(
                        "span {} ({:?})",
                        hex::encode(&span.span_id),
                        truncate_name(&span.name)
                    )
                };
                match map_span(&s) {
                    Outcome::NotLlm => batch.skipped += 1,
                    Outcome::Llm(Err(e)) => batch.rejected.push(format!("{}: {e}", who())),
                    Outcome::Llm(Ok(draft)) => match finish(&s, draft) {
                        Err(e) => batch.rejected.push(format!("{}: {e}", who())),
                        Ok(record) => {
                            let raw = serde_json::to_vec(&record).unwrap_or_default();
                            match Generation::from_json(record, &ctx) {
                                Ok(generation) => {
                                    batch.records.push(MappedRecord { generation, raw })
                                }
                                Err(e) => batch.rejected.push(format!("{}: {e}", who())),
                            }
                        }
                    },
                }
            }
        }
    }
    batch
}

fn truncate_name(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The convention that decides, in the order of the module table.
pub fn map_span(s: &SpanRef<'_>) -> Outcome {
    if let Some(o) = openrouter::map(s) {
        return o;
    }
    if let Some(o) = vercel::map(s) {
        return o;
    }
    if let Some(o) = openinference::map(s) {
        return o;
    }
    if let Some(o) = openllmetry::map(s) {
        return o;
    }
    genai::map(s).unwrap_or(Outcome::NotLlm)
}

/// RFC 3339 (UTC, `Z`, as many fractional digits as needed) of Unix nanoseconds.
pub fn rfc3339(nanos: u64) -> Option<String> {
    let t = chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).ok()?);
    Some(t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
}

/// Fills what every convention shares from the span itself and builds the record.
fn finish(s: &SpanRef<'_>, mut d: Draft) -> Result<Value, String> {
    let span = s.span;
    if d.model().is_none_or(|m| m.trim().is_empty()) {
        return Err("no model (gen_ai.request.model or the convention's model attribute)".into());
    }
    if span.trace_id.len() != 16 || span.trace_id.iter().all(|b| *b == 0) {
        return Err("trace_id must be 16 bytes, not all zero".into());
    }
    if span.span_id.len() != 8 || span.span_id.iter().all(|b| *b == 0) {
        return Err("span_id must be 8 bytes, not all zero".into());
    }
    if span.start_time_unix_nano == 0 {
        return Err("start_time_unix_nano is missing".into());
    }
    let trace_id = hex::encode(&span.trace_id);
    let span_id = hex::encode(&span.span_id);
    if !d.top.contains_key("id") {
        d.set("id", format!("otlp-{trace_id}-{span_id}"));
    }
    if !d.top.contains_key("created_at") {
        d.set(
            "created_at",
            rfc3339(span.start_time_unix_nano).ok_or("start_time_unix_nano is out of range")?,
        );
    }
    if !d.top.contains_key("latency") && span.end_time_unix_nano >= span.start_time_unix_nano {
        let ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
        d.set("latency", ms);
    }
    d.trace
        .entry("trace_id")
        .or_insert_with(|| Value::String(trace_id));
    // Exporters derive the generation span's id from the record id; the app's own span id is
    // kept as metadata.
    d.trace
        .entry("otlp_span_id")
        .or_insert_with(|| Value::String(span_id));
    if span.parent_span_id.len() == 8 && !d.trace.contains_key("parent_span_id") {
        d.trace.insert(
            "parent_span_id".into(),
            hex::encode(&span.parent_span_id).into(),
        );
    }
    if !d.top.contains_key("error")
        && span.status.as_ref().map(|st| st.code) == Some(StatusCode::Error as i32)
    {
        let message = span
            .status
            .as_ref()
            .map(|st| st.message.clone())
            .filter(|m| !m.is_empty())
            .or_else(|| {
                s.event_attrs("exception")
                    .first()
                    .and_then(|a| a.str("exception.message").map(str::to_string))
            })
            .unwrap_or_else(|| "error".to_string());
        let mut err = Map::new();
        if let Some(t) = s.attrs.str("error.type").filter(|t| *t != "_OTHER") {
            err.insert("code".into(), error_code(t));
        }
        err.insert("message".into(), message.into());
        d.set("error", Value::Object(err));
    }
    if let Some((message, finish_reason)) = d.output.take() {
        let mut choice = Map::new();
        choice.insert("index".into(), 0.into());
        if let Some(r) = finish_reason {
            choice.insert("finish_reason".into(), r.into());
        }
        choice.insert("message".into(), message);
        d.response
            .entry("choices")
            .or_insert_with(|| Value::Array(vec![Value::Object(choice)]));
    }
    // A convention may set a trace key to null to keep the span's value out.
    d.trace.retain(|_, v| !v.is_null());
    let mut record = d.top;
    if !d.usage.is_empty() {
        record.insert("usage".into(), Value::Object(d.usage));
    }
    if !d.trace.is_empty() {
        record.insert("trace".into(), Value::Object(d.trace));
    }
    if !d.request.is_empty() {
        record.insert("request".into(), Value::Object(d.request));
    }
    if !d.response.is_empty() {
        record.insert("response".into(), Value::Object(d.response));
    }
    Ok(Value::Object(record))
}

/// `error.type` back to an error code: a number when it is one.
pub fn error_code(t: &str) -> Value {
    t.parse::<i64>()
        .map(Value::from)
        .unwrap_or_else(|_| t.into())
}

/// An OpenAI tool call from a name, arguments (text or JSON) and an id.
pub fn tool_call(id: Option<&str>, name: &str, arguments: Option<Value>) -> Value {
    let arguments = match arguments {
        Some(Value::String(s)) => s,
        Some(v) => v.to_string(),
        None => "{}".to_string(),
    };
    let mut call = json!({"type": "function", "function": {"name": name, "arguments": arguments}});
    if let Some(id) = id {
        call["id"] = id.into();
    }
    call
}

#[cfg(test)]
mod tests {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::trace::v1::span::Event;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
    use serde_json::{Value, json};

    use super::map_request;

    fn s(key: &str, v: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.into())),
            }),
            ..Default::default()
        }
    }
    fn i(key: &str, v: i64) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::IntValue(v)),
            }),
            ..Default::default()
        }
    }

    fn span(attributes: Vec<KeyValue>, events: Vec<Event>) -> Span {
        Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "llm".into(),
            start_time_unix_nano: 1_788_000_000_000_000_000,
            end_time_unix_nano: 1_788_000_001_000_000_000,
            attributes,
            events,
            ..Default::default()
        }
    }

    /// Maps one span; the stored record as JSON (None when skipped).
    fn one(sp: Span) -> Option<Value> {
        let req = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![sp],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        let batch = map_request(&req);
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        batch
            .records
            .first()
            .map(|r| serde_json::to_value(&r.generation).unwrap())
    }

    #[test]
    fn genai_event_based_form() {
        let event = |name: &str, attrs: Vec<KeyValue>| Event {
            name: name.into(),
            attributes: attrs,
            ..Default::default()
        };
        let g = one(span(
            vec![
                s("gen_ai.system", "openai"),
                s("gen_ai.request.model", "gpt-4o"),
                i("gen_ai.usage.prompt_tokens", 5),
            ],
            vec![
                event("gen_ai.system.message", vec![s("content", "Be brief.")]),
                event("gen_ai.user.message", vec![s("content", "Hi")]),
                event(
                    "gen_ai.choice",
                    vec![
                        s("message", r#"{"content":"Hello","role":"assistant"}"#),
                        s("finish_reason", "stop"),
                    ],
                ),
            ],
        ))
        .unwrap();
        assert_eq!(
            g["request"]["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        );
        assert_eq!(
            g["response"]["choices"][0],
            json!({"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "Hello"}})
        );
        assert_eq!(g["usage"]["prompt_tokens"], 5);
        assert_eq!(g["provider_name"], "openai");
    }

    #[test]
    fn openllmetry_indexed_form() {
        let g = one(span(
            vec![
                s("llm.request.type", "chat"),
                s("gen_ai.system", "OpenAI"),
                s("gen_ai.request.model", "gpt-4o"),
                s("gen_ai.prompt.0.role", "user"),
                s("gen_ai.prompt.0.content", "What is 2+2?"),
                s("gen_ai.completion.0.role", "assistant"),
                s("gen_ai.completion.0.finish_reason", "tool_calls"),
                s("gen_ai.completion.0.tool_calls.0.id", "call_9"),
                s("gen_ai.completion.0.tool_calls.0.name", "add"),
                s(
                    "gen_ai.completion.0.tool_calls.0.arguments",
                    r#"{"a":2,"b":2}"#,
                ),
                i("gen_ai.usage.prompt_tokens", 9),
                i("gen_ai.usage.completion_tokens", 3),
                i("llm.usage.total_tokens", 12),
                s("traceloop.association.properties.user_id", "u-7"),
                s("traceloop.association.properties.tenant", "acme"),
                s("traceloop.workflow.name", "math"),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(
            g["request"]["messages"],
            json!([{"role": "user", "content": "What is 2+2?"}])
        );
        let choice = &g["response"]["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert_eq!(
            choice["message"]["tool_calls"],
            json!([{"id": "call_9", "type": "function", "function": {"name": "add", "arguments": "{\"a\":2,\"b\":2}"}}])
        );
        assert_eq!(g["usage"]["total_tokens"], 12);
        assert_eq!(g["user"], "u-7");
        assert_eq!(g["trace"]["tenant"], "acme");
        assert_eq!(g["trace"]["trace_name"], "math");
    }

    #[test]
    fn openinference_messages_without_bodies() {
        let g = one(span(
            vec![
                s("openinference.span.kind", "LLM"),
                s("llm.model_name", "claude-sonnet-4"),
                s("llm.provider", "anthropic"),
                s("llm.input_messages.0.message.role", "user"),
                s(
                    "llm.input_messages.0.message.contents.0.message_content.type",
                    "text",
                ),
                s(
                    "llm.input_messages.0.message.contents.0.message_content.text",
                    "Describe",
                ),
                s("llm.output_messages.0.message.role", "assistant"),
                s("llm.output_messages.0.message.content", "A cat."),
                i("llm.token_count.prompt", 30),
                i("llm.token_count.completion", 4),
                i("llm.token_count.prompt_details.cache_read", 10),
                s("session.id", "sess-1"),
                s("metadata", r#"{"env":"prod"}"#),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(g["model"], "claude-sonnet-4");
        assert_eq!(
            g["request"]["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Describe"}]}])
        );
        assert_eq!(g["response"]["choices"][0]["message"]["content"], "A cat.");
        assert_eq!(g["usage"]["prompt_tokens_details"]["cached_tokens"], 10);
        assert_eq!(g["session_id"], "sess-1");
        assert_eq!(g["trace"]["env"], "prod");
    }

    #[test]
    fn wrappers_tools_and_agents_are_skipped() {
        for attrs in [
            vec![
                s("ai.operationId", "ai.generateText"),
                s("ai.model.id", "gpt-4o"),
            ],
            vec![
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.request.model", "gpt-4o"),
            ],
            vec![s("openinference.span.kind", "CHAIN")],
            vec![s("llm.request.type", "rerank")],
            vec![s("openrouter.observation.type", "span")],
            vec![s("http.request.method", "POST")],
        ] {
            assert!(one(span(attrs.clone(), vec![])).is_none(), "{attrs:?}");
        }
    }

    #[test]
    fn vercel_provider_call() {
        let g = one(span(
            vec![
                s("ai.operationId", "ai.streamText.doStream"),
                s("ai.model.id", "gpt-4o-mini"),
                s("ai.model.provider", "openai.chat"),
                s(
                    "ai.prompt.messages",
                    r#"[{"role":"user","content":[{"type":"text","text":"Hi"}]}]"#,
                ),
                s("ai.response.text", "Hello"),
                s("ai.response.finishReason", "stop"),
                i("ai.usage.inputTokens", 3),
                i("ai.usage.outputTokens", 1),
                i("ai.usage.reasoningTokens", 0),
                s("ai.telemetry.metadata.userId", "u-1"),
            ],
            vec![],
        ))
        .unwrap();
        assert_eq!(g["streamed"], true);
        assert_eq!(g["provider_name"], "openai");
        assert_eq!(
            g["request"]["messages"],
            json!([{"role": "user", "content": "Hi"}])
        );
        assert_eq!(g["response"]["choices"][0]["message"]["content"], "Hello");
        assert_eq!(
            g["usage"]["completion_tokens_details"]["reasoning_tokens"],
            0
        );
        assert_eq!(g["user"], "u-1");
    }
}
