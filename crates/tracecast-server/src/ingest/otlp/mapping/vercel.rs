//! The Vercel AI SDK's telemetry (`experimental_telemetry: {isEnabled: true}`): only the
//! provider-call spans (`ai.generateText.doGenerate`, `ai.streamText.doStream`,
//! `ai.generateObject.doGenerate`, `ai.streamObject.doStream`) are LLM calls; the outer
//! `ai.generateText` etc. spans wrap them (and would count the call twice) and tool spans are
//! not calls.
//!
//! Source: the AI SDK docs, "Telemetry" (<https://ai-sdk.dev/docs/ai-sdk-core/telemetry>,
//! ai 4.x and 5.x): `ai.model.id`, `ai.model.provider`, `ai.prompt.messages`, `ai.prompt.tools`,
//! `ai.response.text`, `ai.response.toolCalls`, `ai.response.finishReason`, `ai.response.id`,
//! `ai.response.model`, `ai.response.msToFirstChunk`, `ai.usage.*` (4.x `promptTokens` /
//! `completionTokens`, 5.x `inputTokens` / `outputTokens` / `totalTokens` /
//! `reasoningTokens` / `cachedInputTokens`), `ai.telemetry.functionId`,
//! `ai.telemetry.metadata.*`; plus the GenAI attributes it also sets.

use serde_json::{Map, Value, json};

use super::{Draft, Outcome, SpanRef, first, first_text, genai, tool_call};

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let a = &s.attrs;
    let op = a.str("ai.operationId")?;
    if !(op.ends_with(".doGenerate") || op.ends_with(".doStream")) {
        return Some(Outcome::NotLlm);
    }
    let mut d = Draft::default();
    d.model(a.str("ai.model.id"));
    let g = &mut d.g;
    // `openai.chat`, `anthropic.messages`: the provider, then the API the SDK used.
    first_text(
        &mut g.provider_name,
        a.str("ai.model.provider")
            .map(|p| p.split('.').next().unwrap_or(p)),
    );
    g.streamed = Some(op.ends_with(".doStream"));
    first_text(&mut g.finish_reason, a.str("ai.response.finishReason"));
    first(
        &mut g.time_to_first_token,
        a.f64("ai.response.msToFirstChunk"),
    );
    let meta = "ai.telemetry.metadata.";
    first_text(
        &mut g.user,
        a.str("ai.telemetry.metadata.userId")
            .or_else(|| a.str("ai.telemetry.metadata.user_id")),
    );
    first_text(
        &mut g.session_id,
        a.str("ai.telemetry.metadata.sessionId")
            .or_else(|| a.str("ai.telemetry.metadata.session_id")),
    );
    d.tokens(
        |u| &mut u.prompt_tokens,
        a.u64("ai.usage.inputTokens")
            .or_else(|| a.u64("ai.usage.promptTokens")),
    );
    d.tokens(
        |u| &mut u.completion_tokens,
        a.u64("ai.usage.outputTokens")
            .or_else(|| a.u64("ai.usage.completionTokens")),
    );
    d.tokens(|u| &mut u.total_tokens, a.u64("ai.usage.totalTokens"));
    d.prompt_detail(
        |p| &mut p.cached_tokens,
        a.u64("ai.usage.cachedInputTokens"),
    );
    d.completion_detail(
        |c| &mut c.reasoning_tokens,
        a.u64("ai.usage.reasoningTokens"),
    );
    for (k, v) in a.with_prefix(meta) {
        if !matches!(k, "userId" | "user_id" | "sessionId" | "session_id") {
            d.trace().insert(k.to_string(), v);
        }
    }
    if let Some(f) = a.str("ai.telemetry.functionId") {
        d.trace().insert("trace_name".into(), f.into());
    }
    if let Some(Value::Array(messages)) = a.json("ai.prompt.messages") {
        let mut out = Vec::with_capacity(messages.len());
        for m in messages {
            sdk_message(m, &mut out);
        }
        d.request().insert("messages".into(), Value::Array(out));
    }
    if let Some(tools) = a.value("ai.prompt.tools") {
        // A string array, each a JSON tool definition.
        let tools: Vec<Value> = match tools {
            Value::Array(items) => items
                .into_iter()
                .map(|t| match t {
                    Value::String(s) => a
                        .budget()
                        .parse("ai.prompt.tools", &s)
                        .unwrap_or(Value::String(s)),
                    other => other,
                })
                .collect(),
            _ => Vec::new(),
        };
        if !tools.is_empty() {
            d.request().insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(id) = a.str("ai.response.id") {
        d.response().insert("id".into(), id.into());
    }
    if let Some(m) = a.str("ai.response.model") {
        d.response().insert("model".into(), m.into());
    }
    let text = a
        .str("ai.response.text")
        .or_else(|| a.str("ai.response.object"));
    let calls: Vec<Value> = match a.json("ai.response.toolCalls") {
        Some(Value::Array(items)) => items
            .into_iter()
            .map(|mut c| {
                let input = c
                    .as_object_mut()
                    .and_then(|o| o.remove("input").or_else(|| o.remove("args")));
                tool_call(
                    c.get("toolCallId").and_then(Value::as_str),
                    c.get("toolName").and_then(Value::as_str).unwrap_or(""),
                    input,
                )
            })
            .collect(),
        _ => Vec::new(),
    };
    if text.is_some() || !calls.is_empty() {
        let mut m = Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert("content".into(), text.map_or(Value::Null, Value::from));
        if !calls.is_empty() {
            m.insert("tool_calls".into(), Value::Array(calls));
        }
        let reason = a.str("ai.response.finishReason").map(str::to_string);
        d.output = Some((Value::Object(m), reason));
    }
    genai::read(s, &mut d);
    Some(Outcome::Llm(Ok(Box::new(d))))
}

/// An AI SDK message (`content` a string or typed parts) as OpenAI chat messages, appended to
/// `out`.
fn sdk_message(m: Value, out: &mut Vec<Value>) {
    let Value::Object(mut m) = m else {
        return;
    };
    let role = match m.remove("role") {
        Some(Value::String(r)) => r,
        _ => "user".to_string(),
    };
    let parts = match m.remove("content") {
        Some(Value::Array(parts)) => parts,
        other => {
            out.push(json!({"role": role, "content": other.unwrap_or(Value::Null)}));
            return;
        }
    };
    let mut texts: Vec<String> = Vec::new();
    let mut calls = Vec::new();
    let mut tool_messages = Vec::new();
    for p in parts {
        let Value::Object(mut p) = p else {
            continue;
        };
        match p.get("type").and_then(Value::as_str) {
            Some("text" | "reasoning") => {
                if let Some(Value::String(t)) = p.remove("text") {
                    texts.push(t);
                }
            }
            Some("image") => texts.push("[image omitted]".into()),
            Some("file") => texts.push("[file omitted]".into()),
            Some("tool-call") => {
                let input = p.remove("input").or_else(|| p.remove("args"));
                calls.push(tool_call(
                    p.get("toolCallId").and_then(Value::as_str),
                    p.get("toolName").and_then(Value::as_str).unwrap_or(""),
                    input,
                ))
            }
            Some("tool-result") => {
                let content = match p.remove("output").or_else(|| p.remove("result")) {
                    Some(Value::String(s)) => s,
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                let mut t = json!({"role": "tool", "content": content});
                if let Some(id) = p.get("toolCallId").and_then(Value::as_str) {
                    t["tool_call_id"] = id.into();
                }
                tool_messages.push(t);
            }
            _ => {}
        }
    }
    if !texts.is_empty() || !calls.is_empty() {
        let mut msg = json!({"role": role, "content": texts.join("\n")});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        out.push(msg);
    }
    out.extend(tool_messages);
}
