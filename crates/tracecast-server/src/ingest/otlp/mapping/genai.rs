//! The OpenTelemetry GenAI semantic conventions: the current form (content in
//! `gen_ai.input.messages` / `gen_ai.output.messages` / `gen_ai.system_instructions`, JSON with
//! typed `parts`) and the older event-based form (span events `gen_ai.system.message`,
//! `gen_ai.user.message`, `gen_ai.assistant.message`, `gen_ai.tool.message`, `gen_ai.choice`;
//! and semconv 1.26's `gen_ai.content.prompt` / `gen_ai.content.completion`).
//!
//! Source: semantic-conventions `docs/gen-ai/gen-ai-spans.md`, `gen-ai-events.md` and
//! `gen-ai-input-messages.json` / `gen-ai-output-messages.json` (open-telemetry/semantic-conventions
//! v1.37.0), and what `opentelemetry-instrumentation-openai-v2` records.

use serde_json::{Map, Value, json};

use super::{Attrs, Draft, Outcome, SpanRef, first, first_text, tool_call};

/// Operations that are model calls.
const LLM_OPERATIONS: &[&str] = &["chat", "text_completion", "generate_content", "embeddings"];

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let a = &s.attrs;
    match a.str("gen_ai.operation.name") {
        Some(op) if LLM_OPERATIONS.contains(&op) => {}
        Some(_) => return Some(Outcome::NotLlm),
        None if a.has("gen_ai.request.model") => {}
        None => return None,
    }
    let mut d = Draft::default();
    read(s, &mut d);
    Some(Outcome::Llm(Ok(Box::new(d))))
}

/// Reads every GenAI attribute and event the span has into the draft (fields already set win).
pub fn read(s: &SpanRef<'_>, d: &mut Draft) {
    let a = &s.attrs;
    d.model(
        a.str("gen_ai.request.model")
            .or_else(|| a.str("gen_ai.response.model")),
    );
    let g = &mut d.g;
    first_text(
        &mut g.provider_name,
        a.str("gen_ai.provider.name")
            .or_else(|| a.str("gen_ai.system")),
    );
    match a.str("gen_ai.operation.name") {
        Some("embeddings") => first_text(&mut g.api_type, Some("embeddings")),
        Some("chat" | "text_completion" | "generate_content") => {
            first_text(&mut g.api_type, Some("completions"))
        }
        _ => {}
    }
    first(
        &mut g.streamed,
        a.bool("gen_ai.is_streaming")
            .or_else(|| a.bool("llm.is_streaming")),
    );
    let finish = a.first_str("gen_ai.response.finish_reasons");
    first_text(&mut g.finish_reason, finish);
    first_text(
        &mut g.user,
        a.str("user.id").or_else(|| a.str("enduser.id")),
    );
    first_text(
        &mut g.session_id,
        a.str("gen_ai.conversation.id")
            .or_else(|| a.str("session.id")),
    );
    first(&mut g.total_cost, a.f64("gen_ai.usage.cost"));

    d.tokens(
        |u| &mut u.prompt_tokens,
        a.u64("gen_ai.usage.input_tokens")
            .or_else(|| a.u64("gen_ai.usage.prompt_tokens")),
    );
    d.tokens(
        |u| &mut u.completion_tokens,
        a.u64("gen_ai.usage.output_tokens")
            .or_else(|| a.u64("gen_ai.usage.completion_tokens")),
    );
    d.tokens(|u| &mut u.total_tokens, a.u64("gen_ai.usage.total_tokens"));
    d.prompt_detail(
        |p| &mut p.cached_tokens,
        a.u64("gen_ai.usage.cache_read.input_tokens")
            .or_else(|| a.u64("gen_ai.usage.input_tokens.cached"))
            .or_else(|| a.u64("gen_ai.usage.cache_read_input_tokens")),
    );
    d.prompt_detail(
        |p| &mut p.cache_write_tokens,
        a.u64("gen_ai.usage.cache_creation.input_tokens")
            .or_else(|| a.u64("gen_ai.usage.cache_creation_input_tokens")),
    );
    d.completion_detail(
        |c| &mut c.reasoning_tokens,
        a.u64("gen_ai.usage.reasoning.output_tokens")
            .or_else(|| a.u64("gen_ai.usage.output_tokens.reasoning"))
            .or_else(|| a.u64("gen_ai.usage.reasoning_tokens")),
    );

    // Request parameters.
    for (name, key) in [
        ("temperature", "gen_ai.request.temperature"),
        ("max_tokens", "gen_ai.request.max_tokens"),
        ("top_p", "gen_ai.request.top_p"),
        ("top_k", "gen_ai.request.top_k"),
        ("frequency_penalty", "gen_ai.request.frequency_penalty"),
        ("presence_penalty", "gen_ai.request.presence_penalty"),
        ("seed", "gen_ai.request.seed"),
        ("n", "gen_ai.request.choice.count"),
        ("stop", "gen_ai.request.stop_sequences"),
    ] {
        if let Some(v) = a.value(key) {
            d.request().entry(name).or_insert(v);
        }
    }
    if let Some(tools) = a.json("gen_ai.tool.definitions").filter(Value::is_array) {
        d.request().entry("tools").or_insert(tools);
    }

    // Response.
    if let Some(id) = a.str("gen_ai.response.id") {
        d.response().entry("id").or_insert(id.into());
    }
    if let Some(m) = a.str("gen_ai.response.model") {
        d.response().entry("model").or_insert(m.into());
    }

    // Content: current attributes first, then the event-based form.
    if !d.has_request("messages") {
        let mut messages = Vec::new();
        if let Some(Value::Array(parts)) = a.json_text("gen_ai.system_instructions") {
            let text = parts_text(parts);
            if !text.is_empty() {
                messages.push(json!({"role": "system", "content": text}));
            }
        }
        if let Some(Value::Array(input)) = a.json_text("gen_ai.input.messages") {
            for m in input {
                semconv_message(m, &mut messages);
            }
        }
        if messages.is_empty() {
            messages = event_messages(s);
        }
        if !messages.is_empty() {
            d.request()
                .insert("messages".into(), Value::Array(messages));
        }
    }
    if d.output.is_none() && !d.has_response("choices") {
        if let Some(Value::Array(out)) = a.json_text("gen_ai.output.messages")
            && let Some(first) = out.into_iter().next()
        {
            let reason = first
                .get("finish_reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            let mut converted = Vec::with_capacity(1);
            semconv_message(first, &mut converted);
            if let Some(m) = converted.into_iter().next() {
                d.output = Some((m, reason.or_else(|| finish.map(str::to_string))));
            }
        } else if let Some(choice) = s.event_attrs("gen_ai.choice").first() {
            let message = choice.json("message").unwrap_or(Value::Null);
            let mut m = Map::new();
            m.insert("role".into(), "assistant".into());
            m.insert(
                "content".into(),
                message.get("content").cloned().unwrap_or(Value::Null),
            );
            if let Some(calls) = message.get("tool_calls").filter(|c| c.is_array()) {
                m.insert("tool_calls".into(), openai_tool_calls(calls));
            }
            let reason = choice.str("finish_reason").or(finish).map(str::to_string);
            d.output = Some((Value::Object(m), reason));
        } else if let Some(v) = s
            .event_attrs("gen_ai.content.completion")
            .first()
            .and_then(|c| c.json("gen_ai.completion"))
        {
            let content = match v {
                Value::Array(items) if !items.is_empty() => match items.into_iter().next() {
                    Some(Value::Object(mut first)) => {
                        first.remove("content").unwrap_or(Value::Null)
                    }
                    Some(other) => other,
                    None => Value::Null,
                },
                other => other,
            };
            d.output = Some((
                json!({"role": "assistant", "content": content}),
                finish.map(str::to_string),
            ));
        }
    }
}

/// The text of `[{type: text, content}]` parts.
fn parts_text(parts: Vec<Value>) -> String {
    let mut texts = parts.into_iter().filter_map(|p| match p {
        Value::Object(mut p) if p.get("type").and_then(Value::as_str) == Some("text") => {
            match p.remove("content") {
                Some(Value::String(t)) => Some(t),
                _ => None,
            }
        }
        _ => None,
    });
    join_texts(&mut texts)
}

/// Texts joined by newlines; one text is moved, not copied.
fn join_texts(texts: &mut dyn Iterator<Item = String>) -> String {
    let Some(mut out) = texts.next() else {
        return String::new();
    };
    for t in texts {
        out.push('\n');
        out.push_str(&t);
    }
    out
}

/// A semconv message (`{role, parts: [...]}`) as OpenAI chat messages, appended to `out`: text
/// parts become the content, `tool_call` parts `tool_calls`, each `tool_call_response` part a
/// `tool` message. The parsed message is taken apart, not copied.
pub fn semconv_message(m: Value, out: &mut Vec<Value>) {
    let Value::Object(mut m) = m else {
        return;
    };
    let parts = match m.remove("parts") {
        Some(Value::Array(parts)) => parts,
        other => {
            // Already OpenAI-shaped.
            if let Some(p) = other {
                m.insert("parts".into(), p);
            }
            out.push(Value::Object(m));
            return;
        }
    };
    let role = match m.remove("role") {
        Some(Value::String(r)) => r,
        _ => "user".to_string(),
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut tool_messages = Vec::new();
    for p in parts {
        let Value::Object(mut p) = p else {
            continue;
        };
        let take_str = |p: &mut Map<String, Value>, k: &str| match p.remove(k) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        match p.get("type").and_then(Value::as_str) {
            Some("text") => {
                if let Some(t) = take_str(&mut p, "content") {
                    texts.push(t);
                }
            }
            Some("tool_call") => {
                let arguments = p.remove("arguments");
                calls.push(tool_call(
                    p.get("id").and_then(Value::as_str),
                    p.get("name").and_then(Value::as_str).unwrap_or(""),
                    arguments,
                ))
            }
            Some("tool_call_response") => {
                let content = match p.remove("response") {
                    Some(Value::String(s)) => s,
                    Some(v) => v.to_string(),
                    None => String::new(),
                };
                let mut t = Map::new();
                t.insert("role".into(), "tool".into());
                t.insert("content".into(), content.into());
                if let Some(id) = take_str(&mut p, "id") {
                    t.insert("tool_call_id".into(), id.into());
                }
                tool_messages.push(Value::Object(t));
            }
            Some(other @ ("blob" | "uri" | "file")) => {
                let modality = p.get("modality").and_then(Value::as_str).unwrap_or(other);
                texts.push(format!("[{modality} omitted]"));
            }
            _ => {}
        }
    }
    if !texts.is_empty() || !calls.is_empty() || tool_messages.is_empty() {
        let mut msg = Map::new();
        msg.insert("role".into(), role.into());
        let content = if texts.is_empty() {
            Value::Null
        } else {
            join_texts(&mut texts.into_iter()).into()
        };
        msg.insert("content".into(), content);
        if !calls.is_empty() {
            msg.insert("tool_calls".into(), Value::Array(calls));
        }
        out.push(Value::Object(msg));
    }
    out.extend(tool_messages);
}

/// Event-based tool calls (`{id, type, function: {name, arguments}}`, arguments maybe JSON) as
/// OpenAI tool calls (arguments as text).
fn openai_tool_calls(calls: &Value) -> Value {
    Value::Array(
        calls
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let f = c.get("function").unwrap_or(c);
                tool_call(
                    c.get("id").and_then(Value::as_str),
                    f.get("name").and_then(Value::as_str).unwrap_or(""),
                    f.get("arguments").cloned(),
                )
            })
            .collect(),
    )
}

/// Messages from the event-based form, in event order.
fn event_messages(s: &SpanRef<'_>) -> Vec<Value> {
    let mut out = Vec::new();
    for e in &s.span.events {
        let role = match e.name.as_str() {
            "gen_ai.system.message" => "system",
            "gen_ai.user.message" => "user",
            "gen_ai.assistant.message" => "assistant",
            "gen_ai.tool.message" => "tool",
            "gen_ai.content.prompt" => {
                let a = Attrs::new(&e.attributes, s.attrs.budget());
                if let Some(Value::Array(ms)) = a.json("gen_ai.prompt") {
                    out.extend(ms.into_iter().filter(Value::is_object));
                }
                continue;
            }
            _ => continue,
        };
        let a = Attrs::new(&e.attributes, s.attrs.budget());
        let mut m = Map::new();
        m.insert("role".into(), role.into());
        m.insert("content".into(), a.value("content").unwrap_or(Value::Null));
        if let Some(calls) = a.json("tool_calls").filter(Value::is_array) {
            m.insert("tool_calls".into(), openai_tool_calls(&calls));
        }
        if let Some(id) = a.str("id") {
            m.insert("tool_call_id".into(), id.into());
        }
        out.push(Value::Object(m));
    }
    out
}
