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

use super::{Draft, Outcome, SpanRef, genai, tool_call};

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let a = &s.attrs;
    let op = a.str("ai.operationId")?;
    if !(op.ends_with(".doGenerate") || op.ends_with(".doStream")) {
        return Some(Outcome::NotLlm);
    }
    let mut d = Draft::default();
    d.set_opt("model", a.str("ai.model.id"));
    // `openai.chat`, `anthropic.messages`: the provider, then the API the SDK used.
    d.set_opt(
        "provider_name",
        a.str("ai.model.provider")
            .map(|p| p.split('.').next().unwrap_or(p)),
    );
    d.set("streamed", op.ends_with(".doStream"));
    d.set_opt("finish_reason", a.str("ai.response.finishReason"));
    d.set_opt("time_to_first_token", a.f64("ai.response.msToFirstChunk"));
    d.usage_opt(
        "prompt_tokens",
        a.u64("ai.usage.inputTokens")
            .or_else(|| a.u64("ai.usage.promptTokens")),
    );
    d.usage_opt(
        "completion_tokens",
        a.u64("ai.usage.outputTokens")
            .or_else(|| a.u64("ai.usage.completionTokens")),
    );
    d.usage_opt("total_tokens", a.u64("ai.usage.totalTokens"));
    d.usage_detail(
        "prompt_tokens_details",
        "cached_tokens",
        a.u64("ai.usage.cachedInputTokens"),
    );
    d.usage_detail(
        "completion_tokens_details",
        "reasoning_tokens",
        a.u64("ai.usage.reasoningTokens"),
    );
    let meta = "ai.telemetry.metadata.";
    d.set_opt(
        "user",
        a.str(&format!("{meta}userId"))
            .or_else(|| a.str(&format!("{meta}user_id"))),
    );
    d.set_opt(
        "session_id",
        a.str(&format!("{meta}sessionId"))
            .or_else(|| a.str(&format!("{meta}session_id"))),
    );
    for (k, v) in a.with_prefix(meta) {
        if !matches!(k, "userId" | "user_id" | "sessionId" | "session_id") {
            d.trace.insert(k.to_string(), v);
        }
    }
    if let Some(f) = a.str("ai.telemetry.functionId") {
        d.trace.insert("trace_name".into(), f.into());
    }
    if let Some(Value::Array(messages)) = a.json("ai.prompt.messages") {
        d.request.insert(
            "messages".into(),
            Value::Array(messages.iter().flat_map(sdk_message).collect()),
        );
    }
    if let Some(tools) = a.value("ai.prompt.tools") {
        // A string array, each a JSON tool definition.
        let tools: Vec<Value> = match tools {
            Value::Array(items) => items
                .into_iter()
                .map(|t| match t {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => other,
                })
                .collect(),
            _ => Vec::new(),
        };
        if !tools.is_empty() {
            d.request.insert("tools".into(), Value::Array(tools));
        }
    }
    if let Some(id) = a.str("ai.response.id") {
        d.response.insert("id".into(), id.into());
    }
    if let Some(m) = a.str("ai.response.model") {
        d.response.insert("model".into(), m.into());
    }
    let text = a
        .str("ai.response.text")
        .or_else(|| a.str("ai.response.object"));
    let calls: Vec<Value> = match a.json("ai.response.toolCalls") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|c| {
                tool_call(
                    c.get("toolCallId").and_then(Value::as_str),
                    c.get("toolName").and_then(Value::as_str).unwrap_or(""),
                    c.get("input").or_else(|| c.get("args")).cloned(),
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
    Some(Outcome::Llm(Ok(d)))
}

/// An AI SDK message (`content` a string or typed parts) as OpenAI chat messages.
fn sdk_message(m: &Value) -> Vec<Value> {
    let role = m.get("role").and_then(Value::as_str).unwrap_or("user");
    let Some(parts) = m.get("content").and_then(Value::as_array) else {
        return vec![
            json!({"role": role, "content": m.get("content").cloned().unwrap_or(Value::Null)}),
        ];
    };
    let mut texts = Vec::new();
    let mut calls = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        match p.get("type").and_then(Value::as_str) {
            Some("text" | "reasoning") => {
                if let Some(t) = p.get("text").and_then(Value::as_str) {
                    texts.push(t.to_string());
                }
            }
            Some("image") => texts.push("[image omitted]".into()),
            Some("file") => texts.push("[file omitted]".into()),
            Some("tool-call") => calls.push(tool_call(
                p.get("toolCallId").and_then(Value::as_str),
                p.get("toolName").and_then(Value::as_str).unwrap_or(""),
                p.get("input").or_else(|| p.get("args")).cloned(),
            )),
            Some("tool-result") => {
                let content = p
                    .get("output")
                    .or_else(|| p.get("result"))
                    .map(|v| match v {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    })
                    .unwrap_or_default();
                let mut t = json!({"role": "tool", "content": content});
                if let Some(id) = p.get("toolCallId").and_then(Value::as_str) {
                    t["tool_call_id"] = id.into();
                }
                out.push(t);
            }
            _ => {}
        }
    }
    if !texts.is_empty() || !calls.is_empty() {
        let mut msg = json!({"role": role, "content": texts.join("\n")});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        out.insert(0, msg);
    }
    out
}
