//! Traceloop OpenLLMetry (`traceloop-sdk`, `opentelemetry-instrumentation-openai`): the GenAI
//! attributes plus indexed content `gen_ai.prompt.N.*` / `gen_ai.completion.N.*`, `llm.usage.*`,
//! `llm.request.type`, `llm.is_streaming` and `traceloop.*` association properties.
//!
//! Source: `opentelemetry-semantic-conventions-ai` (`SpanAttributes` in
//! `opentelemetry/semconv_ai/__init__.py`) and
//! `packages/opentelemetry-instrumentation-openai/.../shared/chat_wrappers.py`
//! (traceloop/openllmetry, 0.4x).

use serde_json::{Map, Value};

use super::{Attrs, Draft, Outcome, SpanRef, first, first_text, genai, tool_call};

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let a = &s.attrs;
    let marked = a.has("llm.request.type")
        || !a.indices("gen_ai.prompt.").is_empty()
        || !a.indices("gen_ai.completion.").is_empty();
    if !marked {
        return None;
    }
    if let Some(t) = a.str("llm.request.type")
        && !matches!(t, "chat" | "completion" | "embedding")
    {
        return Some(Outcome::NotLlm);
    }
    let mut d = Draft::default();
    if a.str("llm.request.type") == Some("embedding") {
        d.g.api_type = Some("embeddings".into());
    }
    let messages = indexed_messages(a, "gen_ai.prompt.");
    if !messages.is_empty() {
        d.request()
            .insert("messages".into(), Value::Array(messages));
    }
    if let Some(first) = indexed_messages(a, "gen_ai.completion.").into_iter().next() {
        let reason = a.str("gen_ai.completion.0.finish_reason");
        d.output = Some((first, reason.map(str::to_string)));
        first_text(&mut d.g.finish_reason, reason);
    }
    let functions: Vec<Value> = a
        .indices("llm.request.functions.")
        .into_iter()
        .map(|i| {
            let p = format!("llm.request.functions.{i}.");
            let mut f = Map::new();
            f.insert(
                "name".into(),
                a.str(&format!("{p}name")).unwrap_or("").into(),
            );
            if let Some(desc) = a.str(&format!("{p}description")) {
                f.insert("description".into(), desc.into());
            }
            if let Some(params) = a.json(&format!("{p}parameters")) {
                f.insert("parameters".into(), params);
            }
            serde_json::json!({"type": "function", "function": f})
        })
        .collect();
    if !functions.is_empty() {
        d.request().insert("tools".into(), Value::Array(functions));
    }
    first(&mut d.g.streamed, a.bool("llm.is_streaming"));
    d.tokens(|u| &mut u.total_tokens, a.u64("llm.usage.total_tokens"));
    let props = "traceloop.association.properties.";
    first_text(
        &mut d.g.user,
        a.str("traceloop.association.properties.user_id")
            .or_else(|| a.str("llm.user")),
    );
    first_text(
        &mut d.g.session_id,
        a.str("traceloop.association.properties.session_id"),
    );
    for (k, v) in a.with_prefix(props) {
        if k != "user_id" && k != "session_id" {
            d.trace().insert(k.to_string(), v);
        }
    }
    if let Some(w) = a.str("traceloop.workflow.name") {
        d.trace().insert("trace_name".into(), w.into());
    }
    genai::read(s, &mut d);
    Some(Outcome::Llm(Ok(Box::new(d))))
}

/// `<prefix>N.role`, `.content` (text, or JSON content parts), `.tool_calls.M.*`,
/// `.tool_call_id`, as OpenAI chat messages in index order.
fn indexed_messages(a: &Attrs<'_>, prefix: &str) -> Vec<Value> {
    a.indices(prefix)
        .into_iter()
        .map(|i| {
            let p = format!("{prefix}{i}.");
            let mut m = Map::new();
            let role = a
                .str(&format!("{p}role"))
                .unwrap_or(if prefix.contains("completion") {
                    "assistant"
                } else {
                    "user"
                });
            m.insert("role".into(), role.into());
            let key = format!("{p}content");
            let content = match a.str(&key) {
                Some(text) => a
                    .budget()
                    .parse(&key, text)
                    .filter(Value::is_array)
                    .unwrap_or_else(|| Value::String(text.to_string())),
                None => Value::Null,
            };
            m.insert("content".into(), content);
            let mut calls: Vec<Value> = a
                .indices(&format!("{p}tool_calls."))
                .into_iter()
                .map(|k| {
                    let t = format!("{p}tool_calls.{k}.");
                    tool_call(
                        a.str(&format!("{t}id")),
                        a.str(&format!("{t}name")).unwrap_or(""),
                        a.value(&format!("{t}arguments")),
                    )
                })
                .collect();
            if let Some(name) = a.str(&format!("{p}function_call.name")) {
                calls.push(tool_call(
                    None,
                    name,
                    a.value(&format!("{p}function_call.arguments")),
                ));
            }
            if !calls.is_empty() {
                m.insert("tool_calls".into(), Value::Array(calls));
            }
            if let Some(id) = a.str(&format!("{p}tool_call_id")) {
                m.insert("tool_call_id".into(), id.into());
            }
            Value::Object(m)
        })
        .collect()
}
