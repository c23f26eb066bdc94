//! From OTLP spans to generations (OpenRouter's record, `docs/generation.md`).
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
//! A convention fills a [`Draft`]: the typed [`Generation`] itself, field by field (the first
//! convention to give a field wins), never an intermediate JSON record. The generation then goes
//! through [`Generation::validated`], the same checks and derivations as a record of
//! `/api/v1/generations`, and keeps that endpoint's size rules (nesting depth, JSON values per
//! record and per request, [`budget`]). JSON text in attributes (messages, tool definitions,
//! request bodies) is parsed within the export's [`Budget`], so an export never parses more
//! JSON than one `/api/v1/generations` request may hold. The record's JSON is its stored form.
//!
//! Linking: the record keeps the span's trace id (`trace.trace_id`, 32 hex characters, which
//! OTLP-based destinations reuse as is), its parent (`trace.parent_span_id`) and its own span id
//! (`trace.otlp_span_id`, which `webhook` and `otel-collector` send as the generation span's id).
//! Its id is `otlp-<trace id>-<span id>`, so an OTLP retry is a duplicate. The OpenRouter shape
//! keeps the generation id it carries.

pub mod budget;
pub mod genai;
pub mod openinference;
pub mod openllmetry;
pub mod openrouter;
pub mod vercel;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use serde_json::{Map, Value, json};
use tracecast_model::generation::{
    CompletionTokensDetails, Generation, GenerationError, IngestContext, PromptTokensDetails, Usage,
};

use crate::api::generations::MAX_VALUES_PER_REQUEST;
pub use budget::Budget;

/// A span's (or resource's, or event's) attributes, indexed once: sorted by key (of a key sent
/// twice, the last value), so a key is a binary search and the keys under a prefix
/// (`llm.input_messages.`) are one contiguous run.
pub struct Attrs<'a> {
    kvs: Vec<(&'a str, &'a AnyValue)>,
    budget: &'a Budget,
}

impl<'a> Attrs<'a> {
    pub fn new(kvs: &'a [KeyValue], budget: &'a Budget) -> Self {
        let mut sorted: Vec<(&'a str, &'a AnyValue)> = kvs
            .iter()
            .filter_map(|kv| kv.value.as_ref().map(|v| (kv.key.as_str(), v)))
            .collect();
        // Stable: equal keys keep the order they were sent in, and the last one is kept.
        sorted.sort_by(|a, b| a.0.cmp(b.0));
        sorted.dedup_by(|later, kept| {
            let same = later.0 == kept.0;
            if same {
                *kept = *later;
            }
            same
        });
        Attrs {
            kvs: sorted,
            budget,
        }
    }

    fn get(&self, key: &str) -> Option<&'a AnyValue> {
        self.kvs
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| self.kvs[i].1)
    }

    /// The keys starting with `prefix`, in key order.
    fn under(&self, prefix: &str) -> &[(&'a str, &'a AnyValue)] {
        let start = self.kvs.partition_point(|(k, _)| *k < prefix);
        let len = self.kvs[start..]
            .iter()
            .take_while(|(k, _)| k.starts_with(prefix))
            .count();
        &self.kvs[start..start + len]
    }

    fn raw(&self, key: &str) -> Option<&'a Av> {
        self.get(key).and_then(|v| v.value.as_ref())
    }

    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
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

    /// The value as JSON; a string that holds a JSON object or array is parsed (within the
    /// export's [`Budget`]).
    pub fn json(&self, key: &str) -> Option<Value> {
        match self.raw(key)? {
            Av::StringValue(s) => Some(
                self.budget
                    .parse(key, s)
                    .unwrap_or_else(|| Value::String(s.clone())),
            ),
            other => Some(any_to_json(other)),
        }
    }

    /// A JSON object or array written as text in `key`, parsed; `None` for anything else.
    pub fn json_text(&self, key: &str) -> Option<Value> {
        match self.raw(key)? {
            Av::StringValue(s) => self.budget.parse(key, s),
            _ => None,
        }
    }

    /// The value as JSON, strings kept as strings.
    pub fn value(&self, key: &str) -> Option<Value> {
        self.raw(key).map(any_to_json)
    }

    /// `(rest of key, value)` for every key starting with `prefix`, in key order.
    pub fn with_prefix<'s>(
        &'s self,
        prefix: &'s str,
    ) -> impl Iterator<Item = (&'a str, Value)> + 's {
        self.under(prefix).iter().filter_map(move |(k, v)| {
            Some((&k[prefix.len()..], v.value.as_ref().map(any_to_json)?))
        })
    }

    /// Indices `N` of keys `<prefix>N.<...>`, sorted.
    pub fn indices(&self, prefix: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .under(prefix)
            .iter()
            .filter_map(|(k, _)| k[prefix.len()..].split('.').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The export's JSON budget (for text that is not an attribute value of its own).
    pub fn budget(&self) -> &'a Budget {
        self.budget
    }
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
    pub resource: &'a Attrs<'a>,
    pub siblings: &'a [Span],
}

impl<'a> SpanRef<'a> {
    /// The attributes of each event named `name`, in event order.
    pub fn event_attrs(&self, name: &str) -> Vec<Attrs<'a>> {
        let span: &'a Span = self.span;
        span.events
            .iter()
            .filter(|e| e.name == name)
            .map(|e| Attrs::new(&e.attributes, self.attrs.budget))
            .collect()
    }
}

/// A generation being built from a span: the conventions set its fields (the first to give a
/// field wins), the shared step ([`finish`]) completes it.
#[derive(Default)]
pub struct Draft {
    pub g: Generation,
    /// The assistant message and its finish reason, as `response.choices[0]`.
    pub output: Option<(Value, Option<String>)>,
}

/// Sets `slot` when nothing has yet.
pub fn first<T>(slot: &mut Option<T>, v: Option<T>) {
    if slot.is_none() {
        *slot = v;
    }
}

/// Sets a string field when nothing has yet.
pub fn first_text(slot: &mut Option<String>, v: Option<&str>) {
    if slot.is_none()
        && let Some(v) = v
    {
        *slot = Some(v.to_string());
    }
}

impl Draft {
    pub fn model(&mut self, v: Option<&str>) {
        if self.g.model.is_empty()
            && let Some(m) = v
        {
            self.g.model = m.to_string();
        }
    }

    pub fn id(&mut self, v: Option<&str>) {
        if self.g.id.is_empty()
            && let Some(id) = v
        {
            self.g.id = id.to_string();
        }
    }

    /// A token count of `usage`, when it has none yet.
    pub fn tokens(&mut self, field: fn(&mut Usage) -> &mut Option<u64>, v: Option<u64>) {
        if v.is_some() {
            first(field(self.g.usage.get_or_insert_with(Usage::default)), v);
        }
    }

    /// A count of `usage.prompt_tokens_details`, when it has none yet.
    pub fn prompt_detail(
        &mut self,
        field: fn(&mut PromptTokensDetails) -> &mut Option<u64>,
        v: Option<u64>,
    ) {
        if v.is_some() {
            let usage = self.g.usage.get_or_insert_with(Usage::default);
            let details = usage
                .prompt_tokens_details
                .get_or_insert_with(PromptTokensDetails::default);
            first(field(details), v);
        }
    }

    /// A count of `usage.completion_tokens_details`, when it has none yet.
    pub fn completion_detail(
        &mut self,
        field: fn(&mut CompletionTokensDetails) -> &mut Option<u64>,
        v: Option<u64>,
    ) {
        if v.is_some() {
            let usage = self.g.usage.get_or_insert_with(Usage::default);
            let details = usage
                .completion_tokens_details
                .get_or_insert_with(CompletionTokensDetails::default);
            first(field(details), v);
        }
    }

    pub fn request(&mut self) -> &mut Map<String, Value> {
        self.g.request.get_or_insert_with(Map::new)
    }

    pub fn response(&mut self) -> &mut Map<String, Value> {
        self.g.response.get_or_insert_with(Map::new)
    }

    pub fn trace(&mut self) -> &mut Map<String, Value> {
        self.g.trace.get_or_insert_with(Map::new)
    }

    pub fn has_request(&self, key: &str) -> bool {
        self.g.request.as_ref().is_some_and(|r| r.contains_key(key))
    }

    pub fn has_response(&self, key: &str) -> bool {
        self.g
            .response
            .as_ref()
            .is_some_and(|r| r.contains_key(key))
    }
}

/// What one span is.
pub enum Outcome {
    /// Not an LLM call: skipped.
    NotLlm,
    /// An LLM call, read into a draft, or the reason it cannot be used.
    Llm(Result<Box<Draft>, String>),
}

/// One usable span: its generation, and the generation's JSON (the stored form).
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

/// The export holds more JSON than one request may (413, nothing written).
#[derive(Debug)]
pub struct TooMuchJson;

impl std::fmt::Display for TooMuchJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "The export's JSON attributes hold more than {MAX_VALUES_PER_REQUEST} JSON values; export smaller batches"
        )
    }
}

/// Maps every span of an export request.
pub fn map_request(req: &ExportTraceServiceRequest) -> Result<MappedBatch, TooMuchJson> {
    let mut batch = MappedBatch::default();
    let ctx = IngestContext::default();
    let budget = Budget::default();
    for rs in &req.resource_spans {
        let resource_kvs: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let resource = Attrs::new(resource_kvs, &budget);
        for ss in &rs.scope_spans {
            for span in &ss.spans {
                let s = SpanRef {
                    span,
                    attrs: Attrs::new(&span.attributes, &budget),
                    resource: &resource,
                    siblings: &ss.spans,
                };
                let outcome = map_span(&s);
                if budget.request_exceeded() {
                    return Err(TooMuchJson);
                }
                let problem = budget.next_span();
                let result = match outcome {
                    Outcome::NotLlm => {
                        batch.skipped += 1;
                        continue;
                    }
                    Outcome::Llm(draft) => draft.and_then(|d| match problem {
                        Some(p) => Err(p),
                        None => record(&s, *d, &ctx),
                    }),
                };
                match result {
                    Ok(r) => batch.records.push(r),
                    Err(e) => batch.rejected.push(format!(
                        "span {} ({:?}): {e}",
                        hex::encode(&span.span_id),
                        truncate_name(&span.name)
                    )),
                }
            }
        }
    }
    Ok(batch)
}

/// The draft completed, validated as a `/api/v1/generations` record, and its stored form.
fn record(s: &SpanRef<'_>, d: Draft, ctx: &IngestContext) -> Result<MappedRecord, String> {
    let generation = finish(s, d)?.validated(ctx).map_err(|e| e.to_string())?;
    budget::check_record(&generation)?;
    let raw = serde_json::to_vec(&generation).map_err(|e| e.to_string())?;
    Ok(MappedRecord { generation, raw })
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

/// Fills what every convention shares from the span itself.
fn finish(s: &SpanRef<'_>, mut d: Draft) -> Result<Generation, String> {
    let span = s.span;
    if d.g.model.trim().is_empty() {
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
    if d.g.id.is_empty() {
        d.g.id = format!("otlp-{trace_id}-{span_id}");
    }
    if d.g.created_at.is_empty() {
        d.g.created_at =
            rfc3339(span.start_time_unix_nano).ok_or("start_time_unix_nano is out of range")?;
    }
    if d.g.latency.is_none() && span.end_time_unix_nano >= span.start_time_unix_nano {
        let ms = (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6;
        d.g.latency = Some(ms);
    }
    let trace = d.trace();
    trace
        .entry("trace_id")
        .or_insert_with(|| Value::String(trace_id));
    // The app's own span id: `webhook` and `otel-collector` send it as the generation span's
    // id (the other exporters derive theirs from the record id and keep this as metadata).
    trace
        .entry("otlp_span_id")
        .or_insert_with(|| Value::String(span_id));
    if span.parent_span_id.len() == 8 && !trace.contains_key("parent_span_id") {
        trace.insert(
            "parent_span_id".into(),
            hex::encode(&span.parent_span_id).into(),
        );
    }
    if d.g.error.is_none()
        && let Some(st) = span
            .status
            .as_ref()
            .filter(|st| st.code == StatusCode::Error as i32)
    {
        let message = Some(st.message.clone())
            .filter(|m| !m.is_empty())
            .or_else(|| {
                s.event_attrs("exception")
                    .first()
                    .and_then(|a| a.str("exception.message").map(str::to_string))
            })
            .unwrap_or_else(|| "error".to_string());
        d.g.error = Some(GenerationError {
            code: s
                .attrs
                .str("error.type")
                .filter(|t| *t != "_OTHER")
                .map(error_code),
            message,
        });
    }
    if let Some((message, finish_reason)) = d.output.take() {
        let mut choice = Map::new();
        choice.insert("index".into(), 0.into());
        if let Some(r) = finish_reason {
            choice.insert("finish_reason".into(), r.into());
        }
        choice.insert("message".into(), message);
        d.response()
            .entry("choices")
            .or_insert_with(|| Value::Array(vec![Value::Object(choice)]));
    }
    // A convention may set a trace key to null to keep the span's value out.
    if let Some(t) = &mut d.g.trace {
        t.retain(|_, v| !v.is_null());
    }
    for map in [&mut d.g.trace, &mut d.g.request, &mut d.g.response] {
        if map.as_ref().is_some_and(Map::is_empty) {
            *map = None;
        }
    }
    Ok(d.g)
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
        let batch = map_request(&req).unwrap();
        assert!(batch.rejected.is_empty(), "{:?}", batch.rejected);
        batch
            .records
            .first()
            .map(|r| serde_json::to_value(&r.generation).unwrap())
    }

    #[test]
    fn attributes_are_indexed_once_last_value_wins() {
        let kvs = vec![
            s("llm.input_messages.10.message.role", "user"),
            s("b", "first"),
            s("llm.input_messages.2.message.role", "system"),
            i("llm.token_count.prompt", 3),
            s("b", "second"),
            s("llm.input_messages.2.message.content", "x"),
        ];
        let budget = super::Budget::default();
        let a = super::Attrs::new(&kvs, &budget);
        assert_eq!(a.str("b"), Some("second"), "the last of a repeated key");
        assert_eq!(a.u64("llm.token_count.prompt"), Some(3));
        assert_eq!(a.str("missing"), None);
        assert_eq!(a.indices("llm.input_messages."), vec![2, 10]);
        let under: Vec<(&str, Value)> = a.with_prefix("llm.input_messages.2.").collect();
        assert_eq!(
            under,
            vec![
                ("message.content", json!("x")),
                ("message.role", json!("system"))
            ]
        );
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
