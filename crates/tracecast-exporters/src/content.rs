//! What a generation's content, cost and metadata look like as JSON and text, shared by the
//! exporters that send them as JSON values (`opik`, `weave`) or as chat messages (`datadog`,
//! `posthog`): the prompt and completion sides, OpenRouter metadata, the cost, the visible
//! truncation of oversized content, and a few text helpers.

use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

/// The prompt side as one JSON object: `messages` (or `prompt` / `input` for completions and
/// Responses calls) and the offered `tools`. `None` in privacy mode.
pub(crate) fn input_json(view: &TraceView<'_>) -> Option<Map<String, Value>> {
    let input = view.input()?;
    let mut m = Map::new();
    for (k, v) in [
        ("messages", input.messages),
        ("prompt", input.prompt),
        ("input", input.input),
        ("tools", input.tools),
    ] {
        if let Some(v) = v {
            m.insert(k.to_owned(), v.clone());
        }
    }
    Some(m)
}

/// The completion side as one JSON object, in the shape OpenRouter sends as
/// `gen_ai.completion`: `completion`, `reasoning` (or null) and, when the model called tools,
/// `tool_calls`. `None` in privacy mode.
pub(crate) fn output_json(view: &TraceView<'_>) -> Option<Map<String, Value>> {
    let out = view.output()?;
    let mut m = Map::new();
    m.insert("completion".into(), Value::String(out.completion));
    m.insert(
        "reasoning".into(),
        out.reasoning.map(Value::String).unwrap_or(Value::Null),
    );
    if let Some(calls) = out.tool_calls {
        m.insert("tool_calls".into(), calls.clone());
    }
    Some(m)
}

/// `{"total": total_cost, "input": ..., "output": ...}` in USD. `input` and `output` come from
/// the cost allocation group (`prompt` / `completion` parts) or, failing that, from the cost
/// group's `cost_details` (`prompt_cost` / `completion_cost`), so they only appear when the
/// destination enabled one of those groups. `None` when no cost is known.
pub(crate) fn cost_json(view: &TraceView<'_>) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    if let Some(total) = view.total_cost().filter(|c| c.is_finite()) {
        m.insert("total".into(), json!(total));
    }
    let mut part = |name: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            m.insert(name.into(), json!(v));
        }
    };
    if let Some(alloc) = view.cost_allocation() {
        let of = |kind: &str| alloc.parts.iter().find(|p| p.kind == kind).map(|p| p.cost);
        part("input", of("prompt"));
        part("output", of("completion"));
    } else if let Some(details) = view.cost_group().and_then(|c| c.cost_details) {
        part("input", details.get("prompt_cost").and_then(Value::as_f64));
        part(
            "output",
            details.get("completion_cost").and_then(Value::as_f64),
        );
    }
    (!m.is_empty()).then_some(m)
}

/// Custom `trace` metadata (every key but the hierarchy keys), `null` values skipped.
pub(crate) fn custom_metadata(view: &TraceView<'_>) -> Map<String, Value> {
    view.metadata()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
}

fn put_str(m: &mut Map<String, Value>, k: &str, v: Option<&str>) {
    if let Some(v) = v {
        m.insert(k.to_owned(), Value::String(v.to_owned()));
    }
}

fn put_f64(m: &mut Map<String, Value>, k: &str, v: Option<f64>) {
    if let Some(v) = v.filter(|v| v.is_finite()) {
        m.insert(k.to_owned(), json!(v));
    }
}

/// What the metadata groups (`broadcast_generation_*`) add, flat, with OpenRouter's field names;
/// empty when no group is enabled.
pub(crate) fn group_metadata(view: &TraceView<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    if let Some(c) = view.cost_group() {
        put_f64(&mut m, "upstream_inference_cost", c.upstream_inference_cost);
        put_f64(&mut m, "cache_discount", c.cache_discount);
        if let Some(b) = c.is_byok {
            m.insert("is_byok".into(), Value::Bool(b));
        }
        if let Some(d) = c.cost_details {
            m.insert("cost_details".into(), Value::Object(d.clone()));
        }
    }
    if let Some(i) = view.identity_group() {
        put_str(&mut m, "api_key_name", i.api_key_name);
        put_str(&mut m, "api_key_hash", i.api_key_hash);
        put_str(
            &mut m,
            "workspace_id",
            Some(i.workspace_id).filter(|s| !s.is_empty()),
        );
        put_str(&mut m, "external_user", i.external_user);
    }
    if let Some(r) = view.request_context() {
        put_str(&mut m, "http_referer", r.http_referer);
        put_str(&mut m, "x_title", r.x_title);
        put_str(&mut m, "user_agent", r.user_agent);
        put_str(&mut m, "origin", r.origin);
        put_str(&mut m, "request_id", r.request_id);
        put_str(&mut m, "upstream_id", r.upstream_id);
        put_str(&mut m, "router", r.router);
        put_str(&mut m, "preset_id", r.preset_id);
        m.insert("data_region".into(), json!(r.data_region));
    }
    if let Some(a) = view.cost_allocation() {
        let parts: Map<String, Value> = a
            .parts
            .iter()
            .map(|p| {
                (
                    p.kind.to_owned(),
                    json!({"tokens": p.tokens, "cost": p.cost}),
                )
            })
            .collect();
        m.insert("cost_allocation".into(), Value::Object(parts));
    }
    m
}

/// Call facts that are not content (kept in privacy mode): response model, provider, finish
/// reasons, streaming, timing and tool names, under OpenRouter's names.
pub(crate) fn call_metadata(view: &TraceView<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("model".into(), json!(view.model()));
    m.insert("response_model".into(), json!(view.response_model()));
    put_str(&mut m, "provider_name", view.provider());
    put_str(&mut m, "api_type", view.api_type());
    if let Some(r) = view.finish_reason() {
        m.insert("finish_reason".into(), json!(r));
        m.insert("finish_reasons".into(), json!([r]));
    }
    put_str(&mut m, "native_finish_reason", view.native_finish_reason());
    if let Some(b) = view.streamed() {
        m.insert("streamed".into(), Value::Bool(b));
    }
    if let Some(b) = view.cancelled() {
        m.insert("cancelled".into(), Value::Bool(b));
    }
    put_f64(&mut m, "latency_ms", view.duration_ms());
    put_f64(&mut m, "generation_time_ms", view.generation_time_ms());
    put_f64(
        &mut m,
        "time_to_first_token_ms",
        view.time_to_first_token_ms(),
    );
    put_f64(
        &mut m,
        "moderation_latency_ms",
        view.moderation_latency_ms(),
    );
    if view.has_tools() {
        m.insert("has_tools".into(), Value::Bool(true));
    }
    let names = view.tool_call_names();
    if !names.is_empty() {
        m.insert("tool_call_names".into(), json!(names));
    }
    m
}

/// The error of a failed call: its code as text (else `Error`) and its message.
pub(crate) fn error_parts(view: &TraceView<'_>) -> Option<(String, String)> {
    let e = view.error()?;
    let ty = match &e.code {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::Null) | None => "Error".to_owned(),
        Some(Value::String(_)) => "Error".to_owned(),
        Some(other) => other.to_string(),
    };
    Some((ty, e.message.clone()))
}

/// Replaces a content value whose JSON is longer than `limit` bytes by a small marker object,
/// `{"truncated": true, "reason": "...", "original_bytes": N}` (plus `extra` keys, e.g. Opik's
/// own `opik_truncated` flag). Returns whether it did.
pub(crate) fn truncate_if_over(value: &mut Value, limit: usize, extra: &[(&str, Value)]) -> bool {
    let len = serde_json::to_vec(value)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if len <= limit {
        return false;
    }
    let mut marker = Map::new();
    for (k, v) in extra {
        marker.insert((*k).to_owned(), v.clone());
    }
    marker.insert("truncated".into(), Value::Bool(true));
    marker.insert(
        "reason".into(),
        json!(format!(
            "omitted by tracecast: {len} bytes of JSON exceed the {limit}-byte limit per field"
        )),
    );
    marker.insert("original_bytes".into(), json!(len));
    *value = Value::Object(marker);
    true
}

/// The provider that served the call as a lower-case identifier (`OpenAI` -> `openai`,
/// `Google Vertex (Europe)` -> `google_vertex`, `Together AI` -> `together_ai`); without a
/// provider, the model slug's author (`anthropic/claude` -> `anthropic`).
pub(crate) fn provider_id(provider: Option<&str>, model: &str) -> String {
    let raw = provider
        .filter(|s| !s.trim().is_empty())
        .or_else(|| model.split_once('/').map(|(author, _)| author))
        .unwrap_or("openrouter");
    let base = raw.split('(').next().unwrap_or(raw);
    crate::ident::snake(base, true)
}

/// The text of a chat message `content`: a string as is, the `text` of each part of an array
/// joined with newlines (other parts as `[<type>]`), anything else as JSON.
pub(crate) fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(parts) => {
            let mut out = Vec::with_capacity(parts.len());
            for p in parts {
                match p {
                    Value::String(s) => out.push(s.clone()),
                    Value::Object(o) => match o.get("text").and_then(Value::as_str) {
                        Some(t) => out.push(t.to_string()),
                        None => out.push(format!(
                            "[{}]",
                            o.get("type").and_then(Value::as_str).unwrap_or("part")
                        )),
                    },
                    other => out.push(other.to_string()),
                }
            }
            out.join("\n")
        }
        other => other.to_string(),
    }
}

/// A JSON value's text for a string-only field: strings as is, others as JSON.
pub(crate) fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An excerpt of an answer's body for a message: `": <first 300 characters>"`, or nothing.
pub(crate) fn snippet(body: &str) -> String {
    let t = body.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {}", crate::truncate::prefix(t, 300))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_text() {
        assert_eq!(provider_id(Some("OpenAI"), "x"), "openai");
        assert_eq!(
            provider_id(Some("Google Vertex (Europe)"), "x"),
            "google_vertex"
        );
        assert_eq!(provider_id(None, "anthropic/claude"), "anthropic");
        assert_eq!(provider_id(Some("  "), "gpt"), "openrouter");
        assert_eq!(provider_id(Some("!!"), "gpt"), "unknown");
        assert_eq!(
            content_text(
                &serde_json::json!([{"type": "text", "text": "a"}, {"type": "image_url"}])
            ),
            "a\n[image_url]"
        );
    }
}
