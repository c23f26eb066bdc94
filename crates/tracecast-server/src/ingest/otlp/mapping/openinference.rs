//! Arize OpenInference: `openinference.span.kind = LLM` spans.
//!
//! Source: the OpenInference semantic conventions, `spec/semantic_conventions.md` and
//! `python/openinference-semantic-conventions/src/openinference/semconv/trace/__init__.py`
//! (Arize-ai/openinference, openinference-semantic-conventions 0.1.x), and what
//! `openinference-instrumentation-openai` records (`input.value` / `output.value` are the
//! request and response bodies as JSON).

use serde_json::{Map, Value, json};

use super::{Attrs, Draft, Outcome, SpanRef, first, first_text, tool_call};

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let kind = s.attrs.str("openinference.span.kind")?;
    if !kind.eq_ignore_ascii_case("LLM") {
        return Some(Outcome::NotLlm);
    }
    let a = &s.attrs;
    let mut d = Draft::default();
    // `llm.model_name` is the model that answered (the response's); the requested one is in
    // the request body, read below, and wins.
    let g = &mut d.g;
    first_text(
        &mut g.provider_name,
        a.str("llm.provider").or_else(|| a.str("llm.system")),
    );
    first_text(&mut g.user, a.str("user.id"));
    first_text(&mut g.session_id, a.str("session.id"));
    first(&mut g.total_cost, a.f64("llm.cost.total"));
    d.tokens(|u| &mut u.prompt_tokens, a.u64("llm.token_count.prompt"));
    d.tokens(
        |u| &mut u.completion_tokens,
        a.u64("llm.token_count.completion"),
    );
    d.tokens(|u| &mut u.total_tokens, a.u64("llm.token_count.total"));
    d.prompt_detail(
        |p| &mut p.cached_tokens,
        a.u64("llm.token_count.prompt_details.cache_read"),
    );
    d.prompt_detail(
        |p| &mut p.cache_write_tokens,
        a.u64("llm.token_count.prompt_details.cache_write"),
    );
    d.prompt_detail(
        |p| &mut p.audio_tokens,
        a.u64("llm.token_count.prompt_details.audio"),
    );
    d.completion_detail(
        |c| &mut c.reasoning_tokens,
        a.u64("llm.token_count.completion_details.reasoning"),
    );
    d.completion_detail(
        |c| &mut c.audio_tokens,
        a.u64("llm.token_count.completion_details.audio"),
    );
    if let Some(Value::Object(meta)) = a.json("metadata") {
        d.trace().extend(meta);
    }

    // The request body as sent, when the instrumentation recorded it as JSON.
    let json_mime = |key: &str| a.str(key).is_none_or(|m| m.contains("json"));
    if json_mime("input.mime_type")
        && let Some(Value::Object(body)) = a.json_text("input.value")
        && (body.contains_key("messages")
            || body.contains_key("prompt")
            || body.contains_key("input"))
    {
        first(
            &mut d.g.streamed,
            body.get("stream").and_then(Value::as_bool),
        );
        d.g.request = Some(body);
    }
    if !d.has_request("messages") {
        let messages = messages(a, "llm.input_messages.");
        if !messages.is_empty() {
            d.request()
                .insert("messages".into(), Value::Array(messages));
        }
    }
    if let Some(Value::Object(params)) = a.json("llm.invocation_parameters") {
        let request = d.request();
        for (k, v) in params {
            request.entry(k).or_insert(v);
        }
    }
    if !d.has_request("tools") {
        let tools: Vec<Value> = a
            .indices("llm.tools.")
            .into_iter()
            .filter_map(|i| a.json(&format!("llm.tools.{i}.tool.json_schema")))
            .collect();
        if !tools.is_empty() {
            d.request().insert("tools".into(), Value::Array(tools));
        }
    }

    // The response body, else the output messages.
    if json_mime("output.mime_type")
        && let Some(Value::Object(body)) = a.json_text("output.value")
        && (body.contains_key("choices") || body.contains_key("output"))
    {
        first_text(
            &mut d.g.finish_reason,
            body.get("choices")
                .and_then(|c| c.get(0))
                .and_then(|c| c.get("finish_reason"))
                .and_then(Value::as_str),
        );
        d.g.response = Some(body);
    } else if let Some(first) = messages(a, "llm.output_messages.").into_iter().next() {
        d.output = Some((first, None));
    }
    first_text(&mut d.g.finish_reason, a.str("llm.finish_reason"));
    let requested =
        d.g.request
            .as_ref()
            .and_then(|r| r.get("model"))
            .and_then(Value::as_str)
            .map(str::to_string);
    d.model(requested.as_deref().or(a.str("llm.model_name")));
    if let Some(answered) = a.str("llm.model_name")
        && requested.as_deref().is_some_and(|r| r != answered)
    {
        d.response().entry("model").or_insert(answered.into());
    }
    Some(Outcome::Llm(Ok(Box::new(d))))
}

/// `<prefix>N.message.*` as OpenAI chat messages, in index order.
fn messages(a: &Attrs<'_>, prefix: &str) -> Vec<Value> {
    a.indices(prefix)
        .into_iter()
        .map(|i| {
            let p = format!("{prefix}{i}.message.");
            let mut m = Map::new();
            m.insert(
                "role".into(),
                a.str(&format!("{p}role")).unwrap_or("user").into(),
            );
            let content = match a.str(&format!("{p}content")) {
                Some(text) => Value::String(text.to_string()),
                None => {
                    let parts: Vec<Value> = a
                        .indices(&format!("{p}contents."))
                        .into_iter()
                        .filter_map(|j| {
                            let c = format!("{p}contents.{j}.message_content.");
                            match a.str(&format!("{c}type")) {
                                Some("image") => Some(json!({"type": "image_url", "image_url": {"url": a.str(&format!("{c}image.image.url")).unwrap_or("")}})),
                                _ => a
                                    .str(&format!("{c}text"))
                                    .map(|t| json!({"type": "text", "text": t})),
                            }
                        })
                        .collect();
                    if parts.is_empty() {
                        Value::Null
                    } else {
                        Value::Array(parts)
                    }
                }
            };
            m.insert("content".into(), content);
            let calls: Vec<Value> = a
                .indices(&format!("{p}tool_calls."))
                .into_iter()
                .map(|k| {
                    let t = format!("{p}tool_calls.{k}.tool_call.");
                    tool_call(
                        a.str(&format!("{t}id")),
                        a.str(&format!("{t}function.name")).unwrap_or(""),
                        a.value(&format!("{t}function.arguments")),
                    )
                })
                .collect();
            if !calls.is_empty() {
                m.insert("tool_calls".into(), Value::Array(calls));
            }
            if let Some(id) = a.str(&format!("{p}tool_call_id")) {
                m.insert("tool_call_id".into(), id.into());
            }
            if let Some(name) = a.str(&format!("{p}name")) {
                m.insert("name".into(), name.into());
            }
            Value::Object(m)
        })
        .collect()
}
