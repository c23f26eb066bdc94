//! The trace document (one JSON object per generation) and its object key.
//!
//! The document follows OpenRouter's S3 destination page: a trace-level `id` (`trace.trace_id`,
//! else the generation id), `name` (`trace.trace_name`, else the model), `userId` (the request's
//! `user`), `sessionId`, `metadata` (the custom `trace` keys), and `observations`: the
//! generation (named by `trace.generation_name`) with its input, output, usage, cost and timing,
//! preceded by a `SPAN` observation when `trace.span_name` is set. Privacy mode leaves out
//! `input` and `output` (and the tool-call arguments inside them); everything else stays.

use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

/// Characters kept as they are in a key segment filled from a variable or an id; every other
/// character becomes `_`.
fn safe_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A value substituted into the key: only `[A-Za-z0-9._-]`, at most `max` characters, never
/// empty, `.` or `..` (which S3 consoles and tools treat as path navigation).
pub(crate) fn sanitize_segment(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .map(|c| if safe_char(c) { c } else { '_' })
        .take(max)
        .collect();
    if out.is_empty() {
        out.push_str("unknown");
    }
    if out.chars().all(|c| c == '.') {
        out = out.replace('.', "_");
    }
    out
}

/// Splits a user-written path (prefix or template text) into its non-empty segments.
fn push_path(out: &mut Vec<String>, path: &str) {
    for seg in path.split('/') {
        let seg = seg.trim();
        if !seg.is_empty() && seg != "." && seg != ".." {
            // Control characters (a newline, say) have no place in a key.
            out.push(
                seg.chars()
                    .map(|c| if c.is_control() { '_' } else { c })
                    .collect(),
            );
        }
    }
}

/// A parsed `pathTemplate`: literal text and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Part {
    Text(String),
    Var(Var),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Var {
    Prefix,
    Date,
    Year,
    Month,
    Day,
    ApiKeyName,
}

/// Parses a `pathTemplate`, naming the offending variable when one is unknown (the config
/// validation in `tracecast-model` rejects the same templates when a destination is saved).
pub(crate) fn parse_template(s: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = s;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(Part::Text(rest[..open].to_string()));
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("pathTemplate has an unclosed '{{' in {s:?}"))?;
        let var = match &after[..close] {
            "prefix" => Var::Prefix,
            "date" => Var::Date,
            "year" => Var::Year,
            "month" => Var::Month,
            "day" => Var::Day,
            "apiKeyName" => Var::ApiKeyName,
            other => {
                return Err(format!(
                    "pathTemplate uses unknown variable {{{other}}}; allowed: {{prefix}}, {{date}}, {{year}}, {{month}}, {{day}}, {{apiKeyName}}"
                ));
            }
        };
        parts.push(Part::Var(var));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        parts.push(Part::Text(rest.to_string()));
    }
    Ok(parts)
}

/// The key layout of a destination: `{expanded pathTemplate}/{traceId}-{timestamp}.json`.
#[derive(Debug, Clone)]
pub(crate) struct KeyLayout {
    pub prefix: String,
    pub template: Vec<Part>,
}

/// What a key needs from a generation.
pub(crate) struct KeyInputs<'a> {
    pub trace_id: &'a str,
    pub generation_id: &'a str,
    /// Unix seconds of `created_at`.
    pub unix_secs: i64,
    pub api_key_name: Option<&'a str>,
}

impl<'a> KeyInputs<'a> {
    pub fn of(trace: &TraceView<'a>) -> Self {
        KeyInputs {
            trace_id: trace.trace_key(),
            generation_id: trace.id(),
            unix_secs: (trace.start_unix_nanos() / 1_000_000_000) as i64,
            api_key_name: trace.api_key_name(),
        }
    }
}

/// At most this many characters of the trace id go into a file name (S3 keys are capped at
/// 1024 bytes).
const MAX_ID_CHARS: usize = 200;

impl KeyLayout {
    /// The object key of one generation. Deterministic: a retry overwrites the same object.
    pub fn key(&self, k: &KeyInputs<'_>) -> String {
        let date = chrono::DateTime::from_timestamp(k.unix_secs, 0).unwrap_or_default();
        let (y, m, d) = (
            date.format("%Y").to_string(),
            date.format("%m").to_string(),
            date.format("%d").to_string(),
        );
        let mut expanded = String::new();
        for part in &self.template {
            match part {
                Part::Text(t) => expanded.push_str(t),
                Part::Var(Var::Prefix) => expanded.push_str(&self.prefix),
                Part::Var(Var::Date) => expanded.push_str(&format!("{y}-{m}-{d}")),
                Part::Var(Var::Year) => expanded.push_str(&y),
                Part::Var(Var::Month) => expanded.push_str(&m),
                Part::Var(Var::Day) => expanded.push_str(&d),
                Part::Var(Var::ApiKeyName) => expanded.push_str(&sanitize_segment(
                    k.api_key_name.unwrap_or("unknown"),
                    MAX_ID_CHARS,
                )),
            }
        }
        let mut segments = Vec::new();
        push_path(&mut segments, &expanded);
        let trace_id = sanitize_segment(k.trace_id, MAX_ID_CHARS);
        // A custom `trace.trace_id` may group several generations: the generation id keeps
        // their objects apart (without it, two calls of one trace in the same second would
        // overwrite each other).
        let file = if k.trace_id == k.generation_id {
            format!("{trace_id}-{}.json", k.unix_secs)
        } else {
            format!(
                "{trace_id}-{}-{}.json",
                k.unix_secs,
                sanitize_segment(k.generation_id, MAX_ID_CHARS)
            )
        };
        segments.push(file);
        segments.join("/")
    }

    /// The directory the connection test writes into: the prefix.
    pub fn test_key(&self, nonce: &str) -> String {
        let mut segments = Vec::new();
        push_path(&mut segments, &self.prefix);
        segments.push(format!("tracecast-connection-test-{nonce}.json"));
        segments.join("/")
    }
}

fn rfc3339_nanos(nanos: u64) -> Value {
    let t = chrono::DateTime::from_timestamp(
        (nanos / 1_000_000_000) as i64,
        (nanos % 1_000_000_000) as u32,
    )
    .unwrap_or_default();
    Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

fn opt<T: Into<Value>>(v: Option<T>) -> Value {
    v.map(Into::into).unwrap_or(Value::Null)
}

/// Inserts `v` unless it is null.
fn put(m: &mut Map<String, Value>, k: &str, v: Value) {
    if !v.is_null() {
        m.insert(k.to_string(), v);
    }
}

/// The custom `trace` metadata.
fn custom_metadata(t: &TraceView<'_>) -> Map<String, Value> {
    t.metadata()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// The trace document of one generation.
pub(crate) fn document(t: &TraceView<'_>) -> Value {
    let start = t.start_unix_nanos();
    let end = t.end_unix_nanos();
    let trace_id = t.trace_key();

    let mut observations = Vec::new();
    let span_id = t.otlp_intermediate_span_id().map(hex::encode);
    if let (Some(name), Some(id)) = (t.span_name(), span_id.as_ref()) {
        let mut span = Map::new();
        span.insert("id".into(), json!(id));
        span.insert("traceId".into(), json!(trace_id));
        span.insert("type".into(), json!("SPAN"));
        span.insert("name".into(), json!(name));
        put(&mut span, "parentObservationId", opt(t.parent_span_id()));
        span.insert("startTime".into(), rfc3339_nanos(start));
        span.insert("endTime".into(), rfc3339_nanos(end));
        observations.push(Value::Object(span));
    }

    let mut g = Map::new();
    g.insert("id".into(), json!(t.id()));
    g.insert("traceId".into(), json!(trace_id));
    g.insert("type".into(), json!("GENERATION"));
    g.insert("name".into(), json!(t.generation_name()));
    put(
        &mut g,
        "parentObservationId",
        opt(span_id.as_deref().or(t.parent_span_id())),
    );
    g.insert("startTime".into(), rfc3339_nanos(start));
    g.insert("endTime".into(), rfc3339_nanos(end));
    if let Some(ttft) = t.time_to_first_token_ms() {
        g.insert(
            "completionStartTime".into(),
            rfc3339_nanos(start.saturating_add((ttft.max(0.0) * 1_000_000.0) as u64)),
        );
    }
    g.insert("model".into(), json!(t.response_model()));
    g.insert("requestedModel".into(), json!(t.model()));
    put(&mut g, "provider", opt(t.provider()));
    put(&mut g, "apiType", opt(t.api_type()));
    g.insert(
        "modelParameters".into(),
        Value::Object(t.model_parameters()),
    );

    if let Some(input) = t.input() {
        let mut i = Map::new();
        put(&mut i, "messages", opt(input.messages.cloned()));
        put(&mut i, "prompt", opt(input.prompt.cloned()));
        put(&mut i, "input", opt(input.input.cloned()));
        put(&mut i, "tools", opt(input.tools.cloned()));
        g.insert("input".into(), Value::Object(i));
    }
    if let Some(output) = t.output() {
        let mut o = Map::new();
        o.insert("role".into(), json!("assistant"));
        o.insert("content".into(), json!(output.completion));
        put(&mut o, "reasoning", opt(output.reasoning));
        put(&mut o, "toolCalls", opt(output.tool_calls.cloned()));
        g.insert("output".into(), Value::Object(o));
    }
    let tools = t.tool_call_names();
    if !tools.is_empty() {
        g.insert("toolCallNames".into(), json!(tools));
    }

    let mut usage = Map::new();
    put(&mut usage, "input", opt(t.prompt_tokens()));
    put(&mut usage, "output", opt(t.completion_tokens()));
    put(&mut usage, "total", opt(t.total_tokens()));
    put(&mut usage, "cachedInput", opt(t.cached_tokens()));
    put(&mut usage, "cacheWrite", opt(t.cache_write_tokens()));
    put(&mut usage, "reasoning", opt(t.reasoning_tokens()));
    g.insert("usage".into(), Value::Object(usage));

    let mut cost = Map::new();
    put(&mut cost, "total", opt(t.total_cost()));
    cost.insert("currency".into(), json!("USD"));
    if let Some(c) = t.cost_group() {
        put(
            &mut cost,
            "upstreamInferenceCost",
            opt(c.upstream_inference_cost),
        );
        put(&mut cost, "cacheDiscount", opt(c.cache_discount));
        put(&mut cost, "isByok", opt(c.is_byok));
        put(
            &mut cost,
            "details",
            opt(c.cost_details.cloned().map(Value::Object)),
        );
    }
    if let Some(alloc) = t.cost_allocation() {
        let parts: Map<String, Value> = alloc
            .parts
            .iter()
            .map(|p| {
                (
                    p.kind.to_string(),
                    json!({"tokens": p.tokens, "cost": p.cost}),
                )
            })
            .collect();
        cost.insert("allocation".into(), Value::Object(parts));
    }
    g.insert("cost".into(), Value::Object(cost));

    let mut timing = Map::new();
    put(&mut timing, "latencyMs", opt(t.duration_ms()));
    put(
        &mut timing,
        "timeToFirstTokenMs",
        opt(t.time_to_first_token_ms()),
    );
    put(&mut timing, "generationTimeMs", opt(t.generation_time_ms()));
    put(
        &mut timing,
        "moderationLatencyMs",
        opt(t.moderation_latency_ms()),
    );
    g.insert("timing".into(), Value::Object(timing));

    put(&mut g, "finishReason", opt(t.finish_reason()));
    put(&mut g, "nativeFinishReason", opt(t.native_finish_reason()));
    put(&mut g, "streamed", opt(t.streamed()));
    put(&mut g, "cancelled", opt(t.cancelled()));
    match t.error() {
        Some(e) => {
            g.insert("level".into(), json!("ERROR"));
            g.insert("statusMessage".into(), json!(e.message));
            put(&mut g, "errorCode", opt(e.code.clone()));
        }
        None => {
            g.insert("level".into(), json!("DEFAULT"));
        }
    }

    let mut obs_meta = custom_metadata(t);
    if let Some(i) = t.identity_group() {
        put(&mut obs_meta, "apiKeyName", opt(i.api_key_name));
        put(&mut obs_meta, "apiKeyHash", opt(i.api_key_hash));
        put(
            &mut obs_meta,
            "workspaceId",
            opt(Some(i.workspace_id).filter(|w| !w.is_empty())),
        );
        put(&mut obs_meta, "externalUser", opt(i.external_user));
    }
    if let Some(r) = t.request_context() {
        put(&mut obs_meta, "httpReferer", opt(r.http_referer));
        put(&mut obs_meta, "xTitle", opt(r.x_title));
        put(&mut obs_meta, "userAgent", opt(r.user_agent));
        put(&mut obs_meta, "origin", opt(r.origin));
        put(&mut obs_meta, "requestId", opt(r.request_id));
        put(&mut obs_meta, "upstreamId", opt(r.upstream_id));
        put(&mut obs_meta, "router", opt(r.router));
        put(&mut obs_meta, "presetId", opt(r.preset_id));
        obs_meta.insert(
            "dataRegion".into(),
            serde_json::to_value(r.data_region).unwrap_or(Value::Null),
        );
    }
    g.insert("metadata".into(), Value::Object(obs_meta));
    observations.push(Value::Object(g));

    let mut doc = Map::new();
    doc.insert("id".into(), json!(trace_id));
    doc.insert("name".into(), json!(t.trace_name()));
    doc.insert("timestamp".into(), rfc3339_nanos(start));
    doc.insert("userId".into(), opt(t.user()));
    doc.insert("sessionId".into(), opt(t.session_id()));
    doc.insert("metadata".into(), Value::Object(custom_metadata(t)));
    doc.insert("observations".into(), Value::Array(observations));
    Value::Object(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(prefix: &str, template: &str) -> KeyLayout {
        KeyLayout {
            prefix: prefix.into(),
            template: parse_template(template).unwrap(),
        }
    }

    fn inputs<'a>(trace: &'a str, generation: &'a str, key: Option<&'a str>) -> KeyInputs<'a> {
        KeyInputs {
            trace_id: trace,
            generation_id: generation,
            unix_secs: 1_705_312_800,
            api_key_name: key,
        }
    }

    #[test]
    fn default_layout_matches_openrouter_example() {
        assert_eq!(
            layout("openrouter-traces", "{prefix}/{date}").key(&inputs("abc123", "abc123", None)),
            "openrouter-traces/2024-01-15/abc123-1705312800.json"
        );
    }

    #[test]
    fn every_variable_expands() {
        let l = layout("p/q/", "{prefix}/{year}/{month}/{day}/{apiKeyName}/x");
        assert_eq!(
            l.key(&inputs("t", "t", Some("Prod key/1"))),
            "p/q/2024/01/15/Prod_key_1/x/t-1705312800.json"
        );
        assert_eq!(
            l.key(&inputs("t", "t", None)),
            "p/q/2024/01/15/unknown/x/t-1705312800.json"
        );
    }

    #[test]
    fn shared_trace_ids_keep_generations_apart_and_ids_are_sanitized() {
        let l = layout("pre", "{prefix}");
        assert_eq!(
            l.key(&inputs("order/../1", "gen-9", None)),
            "pre/order_.._1-1705312800-gen-9.json"
        );
        assert_eq!(l.key(&inputs("..", "..", None)), "pre/__-1705312800.json");
        assert_eq!(
            l.key(&inputs("", "g", None)),
            "pre/unknown-1705312800-g.json"
        );
    }

    #[test]
    fn unknown_variables_are_rejected() {
        let e = parse_template("{prefix}/{hour}").unwrap_err();
        assert!(e.contains("{hour}"), "{e}");
        assert!(parse_template("{prefix").is_err());
        assert!(parse_template("static/{date}").is_ok());
    }
}
