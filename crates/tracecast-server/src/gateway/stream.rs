//! Server-sent events: splitting an upstream's byte stream into whole events (so each can be
//! forwarded, or held back, as soon as it is complete) and assembling streamed chat completion
//! chunks into the one `chat.completion` object a generation records.
//!
//! Event framing follows the WHATWG HTML "server-sent events" parsing rules (an event ends at a
//! blank line; `data:` lines, one optional space after the colon, joined with `\n`). The chunk
//! shape is OpenAI's `chat.completion.chunk` (API reference, "The chat completion chunk
//! object"): `choices[].delta.{role, content, tool_calls[].{index, id, type, function.{name,
//! arguments}}}`, `choices[].finish_reason`, and a last chunk with `choices: []` and `usage`
//! when `stream_options.include_usage` is set. Reasoning arrives as `delta.reasoning`
//! (OpenRouter) or `delta.reasoning_content` (vLLM, DeepSeek).

use std::collections::BTreeMap;

use axum::body::Bytes;
use serde_json::{Map, Value, json};

/// One complete event: its raw bytes (up to and including the blank line) and its data.
pub struct Event {
    pub raw: Bytes,
    pub data: Option<String>,
}

/// Splits a byte stream into events.
#[derive(Default)]
pub struct SseSplitter {
    buf: Vec<u8>,
    /// Where the search for the end of the current event resumes.
    scanned: usize,
}

impl SseSplitter {
    /// Appends bytes and returns every event they complete.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        loop {
            let Some(end) = event_end(&self.buf, self.scanned) else {
                // Resume a little before the end: a separator may straddle two chunks.
                self.scanned = self.buf.len().saturating_sub(3);
                break;
            };
            let rest = self.buf.split_off(end);
            let raw = std::mem::replace(&mut self.buf, rest);
            self.scanned = 0;
            let data = event_data(&raw);
            out.push(Event {
                raw: Bytes::from(raw),
                data,
            });
        }
        out
    }

    /// What is left when the stream ends without a final blank line.
    pub fn finish(&mut self) -> Option<Event> {
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let raw = std::mem::take(&mut self.buf);
        let data = event_data(&raw);
        Some(Event {
            raw: Bytes::from(raw),
            data,
        })
    }
}

/// The index just past the blank line that ends the first event in `buf`.
fn event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < buf.len() {
        match buf[i] {
            b'\n' => {
                if buf.get(i + 1) == Some(&b'\n') {
                    return Some(i + 2);
                }
                if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                    return Some(i + 3);
                }
            }
            b'\r' if buf.get(i + 1) == Some(&b'\r') => return Some(i + 2),
            _ => {}
        }
        i += 1;
    }
    None
}

fn event_data(raw: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut data: Option<String> = None;
    for line in text.split(['\n', '\r']) {
        let Some(rest) = line.strip_prefix("data") else {
            continue;
        };
        let value = match rest.strip_prefix(':') {
            Some(v) => v.strip_prefix(' ').unwrap_or(v),
            None if rest.is_empty() => "",
            None => continue,
        };
        match &mut data {
            Some(d) => {
                d.push('\n');
                d.push_str(value);
            }
            None => data = Some(value.to_string()),
        }
    }
    data
}

/// Whether a chunk is the usage-only chunk `include_usage` adds: no choices, a usage object.
pub fn is_usage_only_chunk(v: &Value) -> bool {
    v.get("choices")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty)
        && v.get("usage").is_some_and(Value::is_object)
}

#[derive(Default)]
struct ToolCall {
    id: Option<String>,
    kind: Option<String>,
    name: String,
    arguments: String,
}

#[derive(Default)]
struct Choice {
    role: Option<String>,
    content: String,
    has_content: bool,
    reasoning: String,
    has_reasoning: bool,
    refusal: Option<String>,
    tool_calls: BTreeMap<u64, ToolCall>,
    finish_reason: Option<Value>,
    native_finish_reason: Option<Value>,
}

/// Streamed chat completion chunks, assembled.
#[derive(Default)]
pub struct ChatAssembly {
    /// Legacy completions (`choices[].text`) rather than chat deltas.
    legacy: bool,
    id: Option<Value>,
    model: Option<Value>,
    created: Option<Value>,
    provider: Option<Value>,
    system_fingerprint: Option<Value>,
    choices: BTreeMap<u64, Choice>,
    pub usage: Option<Value>,
    /// An `error` object sent inside the stream (OpenRouter does this mid-stream).
    pub error: Option<Value>,
}

fn append_str(target: &mut String, v: Option<&Value>) -> bool {
    match v.and_then(Value::as_str) {
        Some(s) if !s.is_empty() => {
            target.push_str(s);
            true
        }
        _ => false,
    }
}

impl ChatAssembly {
    /// Adds one chunk; returns whether it carried output (text, reasoning or a tool call).
    pub fn push(&mut self, v: &Value) -> bool {
        for (slot, key) in [
            (&mut self.id, "id"),
            (&mut self.model, "model"),
            (&mut self.created, "created"),
            (&mut self.provider, "provider"),
            (&mut self.system_fingerprint, "system_fingerprint"),
        ] {
            if slot.is_none()
                && let Some(x) = v.get(key).filter(|x| !x.is_null())
            {
                *slot = Some(x.clone());
            }
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            self.usage = Some(u.clone());
        }
        if let Some(e) = v.get("error").filter(|e| !e.is_null()) {
            self.error = Some(e.clone());
        }
        let mut output = false;
        for c in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let choice = self.choices.entry(index).or_default();
            if let Some(fr) = c.get("finish_reason").filter(|f| !f.is_null()) {
                choice.finish_reason = Some(fr.clone());
            }
            if let Some(fr) = c.get("native_finish_reason").filter(|f| !f.is_null()) {
                choice.native_finish_reason = Some(fr.clone());
            }
            if append_str(&mut choice.content, c.get("text")) {
                self.legacy = true;
                choice.has_content = true;
                output = true;
            }
            let Some(delta) = c.get("delta") else {
                continue;
            };
            if let Some(r) = delta.get("role").and_then(Value::as_str) {
                choice.role = Some(r.to_string());
            }
            if append_str(&mut choice.content, delta.get("content")) {
                choice.has_content = true;
                output = true;
            }
            let reasoning = delta
                .get("reasoning")
                .filter(|r| r.is_string())
                .or_else(|| delta.get("reasoning_content"));
            if append_str(&mut choice.reasoning, reasoning) {
                choice.has_reasoning = true;
                output = true;
            }
            if let Some(r) = delta.get("refusal").and_then(Value::as_str) {
                choice.refusal.get_or_insert_with(String::new).push_str(r);
                output = true;
            }
            for (pos, tc) in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                output = true;
                let ti = tc
                    .get("index")
                    .and_then(Value::as_u64)
                    .unwrap_or(pos as u64);
                let call = choice.tool_calls.entry(ti).or_default();
                if let Some(id) = tc.get("id").and_then(Value::as_str) {
                    call.id = Some(id.to_string());
                }
                if let Some(t) = tc.get("type").and_then(Value::as_str) {
                    call.kind = Some(t.to_string());
                }
                if let Some(f) = tc.get("function") {
                    append_str(&mut call.name, f.get("name"));
                    append_str(&mut call.arguments, f.get("arguments"));
                }
            }
        }
        output
    }

    /// The finish reason of the first choice, as the upstream sent it.
    pub fn finish_reason(&self) -> Option<&Value> {
        self.choices
            .values()
            .next()
            .and_then(|c| c.finish_reason.as_ref())
    }

    /// The provider an aggregator (OpenRouter) reports in its chunks.
    pub fn provider(&self) -> Option<&str> {
        self.provider.as_ref().and_then(Value::as_str)
    }

    pub fn id(&self) -> Option<&str> {
        self.id.as_ref().and_then(Value::as_str)
    }

    /// The assembled `chat.completion` (or, for legacy completions, `text_completion`) object.
    pub fn response(&self) -> Value {
        if self.legacy {
            return self.text_completion();
        }
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|(i, c)| {
                let mut m = Map::new();
                m.insert(
                    "role".into(),
                    json!(c.role.clone().unwrap_or_else(|| "assistant".into())),
                );
                m.insert(
                    "content".into(),
                    if c.has_content || c.tool_calls.is_empty() {
                        json!(c.content)
                    } else {
                        Value::Null
                    },
                );
                if c.has_reasoning {
                    m.insert("reasoning".into(), json!(c.reasoning));
                }
                if let Some(r) = &c.refusal {
                    m.insert("refusal".into(), json!(r));
                }
                if !c.tool_calls.is_empty() {
                    let calls: Vec<Value> = c
                        .tool_calls
                        .values()
                        .map(|t| {
                            json!({
                                "id": t.id,
                                "type": t.kind.clone().unwrap_or_else(|| "function".into()),
                                "function": {"name": t.name, "arguments": t.arguments},
                            })
                        })
                        .collect();
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                let mut choice = json!({
                    "index": i,
                    "message": Value::Object(m),
                    "finish_reason": c.finish_reason,
                });
                if let Some(n) = &c.native_finish_reason {
                    choice["native_finish_reason"] = n.clone();
                }
                choice
            })
            .collect();
        let mut r = json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        for (k, v) in [
            ("provider", &self.provider),
            ("system_fingerprint", &self.system_fingerprint),
            ("usage", &self.usage),
        ] {
            if let Some(v) = v {
                r[k] = v.clone();
            }
        }
        r
    }
}

impl ChatAssembly {
    fn text_completion(&self) -> Value {
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|(i, c)| json!({"index": i, "text": c.content, "finish_reason": c.finish_reason}))
            .collect();
        let mut r = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "choices": choices,
        });
        if let Some(u) = &self.usage {
            r["usage"] = u.clone();
        }
        r
    }
}

/// A streamed Responses API call (OpenAI API reference, "Streaming events" of the Responses
/// API): `response.*.delta` events carry output; `response.completed` / `response.incomplete` /
/// `response.failed` carry the whole final `response` object, usage included; an `error` event
/// reports a failure.
#[derive(Default)]
pub struct ResponsesAssembly {
    response: Option<Value>,
    /// Text of `response.output_text.delta` events, for a stream cut short before the end.
    text: String,
    pub error: Option<Value>,
}

impl ResponsesAssembly {
    pub fn push(&mut self, v: &Value) -> bool {
        let kind = v.get("type").and_then(Value::as_str).unwrap_or_default();
        if let Some(r) = v.get("response").filter(|r| r.is_object()) {
            self.response = Some(r.clone());
        }
        if kind == "error" {
            self.error = Some(v.clone());
        }
        if kind == "response.failed"
            && let Some(e) = v.pointer("/response/error").filter(|e| !e.is_null())
        {
            self.error = Some(e.clone());
        }
        if kind == "response.output_text.delta" {
            append_str(&mut self.text, v.get("delta"));
        }
        kind.starts_with("response.") && kind.ends_with(".delta")
    }

    pub fn response(&self) -> Value {
        match &self.response {
            Some(r) if r.get("status").and_then(Value::as_str) != Some("in_progress") => r.clone(),
            other => {
                // Cut short: what was streamed so far, as the output text.
                let mut r = other
                    .clone()
                    .unwrap_or_else(|| json!({"object": "response"}));
                r["output_text"] = json!(self.text);
                r
            }
        }
    }
}

/// What is assembled from a stream, by API.
pub enum Assembly {
    Chat(ChatAssembly),
    Responses(ResponsesAssembly),
}

impl Assembly {
    /// Adds one event's data; returns whether it carried output.
    pub fn push(&mut self, v: &Value) -> bool {
        match self {
            Assembly::Chat(a) => a.push(v),
            Assembly::Responses(a) => a.push(v),
        }
    }

    pub fn response(&self) -> Value {
        match self {
            Assembly::Chat(a) => a.response(),
            Assembly::Responses(a) => a.response(),
        }
    }

    pub fn error(&self) -> Option<&Value> {
        match self {
            Assembly::Chat(a) => a.error.as_ref(),
            Assembly::Responses(a) => a.error.as_ref(),
        }
    }
}

/// The first choice's finish reason of a chat or completions answer, or the outcome of a
/// Responses API answer: `completed` (`tool_calls` when it called a function), or the
/// `incomplete_details.reason` of an incomplete one (`max_output_tokens`, `content_filter`).
pub fn native_finish_reason(resp: &Value) -> Option<String> {
    if let Some(fr) = resp
        .pointer("/choices/0/finish_reason")
        .and_then(Value::as_str)
    {
        return Some(fr.to_string());
    }
    match resp.get("status").and_then(Value::as_str)? {
        "completed" => {
            let called = resp
                .get("output")
                .and_then(Value::as_array)
                .is_some_and(|o| {
                    o.iter()
                        .any(|i| i.get("type").and_then(Value::as_str) == Some("function_call"))
                });
            Some(if called { "tool_calls" } else { "completed" }.to_string())
        }
        "incomplete" => resp
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| Some("incomplete".into())),
        other => Some(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\":1}\n").is_empty());
        let e = s.push(b"\ndata: x\r\n\r\n: comment\n\ndata:");
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].data.as_deref(), Some("{\"a\":1}"));
        assert_eq!(&e[0].raw[..], b"data: {\"a\":1}\n\n");
        assert_eq!(e[1].data.as_deref(), Some("x"));
        assert_eq!(e[2].data, None);
        let e = s.push(b" [DONE]\n\n");
        assert_eq!(e[0].data.as_deref(), Some("[DONE]"));
        assert!(s.finish().is_none());
        s.push(b"data: a\ndata: b");
        assert_eq!(s.finish().unwrap().data.as_deref(), Some("a\nb"));
    }

    #[test]
    fn chunks_assemble_text_reasoning_tool_calls_and_usage() {
        let mut a = ChatAssembly::default();
        let chunks = [
            json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"reasoning":"think "}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"reasoning_content":"more"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"content":"lo"}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}),
            json!({"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}),
            json!({"id":"c1","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}),
        ];
        let outputs: Vec<bool> = chunks.iter().map(|c| a.push(c)).collect();
        assert_eq!(
            outputs,
            [
                false, true, true, true, true, true, true, true, false, false
            ]
        );
        assert!(is_usage_only_chunk(&chunks[9]));
        assert!(!is_usage_only_chunk(&chunks[8]));
        let r = a.response();
        let m = &r["choices"][0]["message"];
        assert_eq!(m["content"], "Hello");
        assert_eq!(m["reasoning"], "think more");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Paris\"}"
        );
        assert_eq!(m["tool_calls"][0]["id"], "call_1");
        assert_eq!(r["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(r["usage"]["total_tokens"], 12);
        assert_eq!(r["id"], "c1");
        assert_eq!(r["model"], "m");
        assert_eq!(native_finish_reason(&r).as_deref(), Some("tool_calls"));
    }

    #[test]
    fn legacy_completion_chunks_assemble_text() {
        let mut a = ChatAssembly::default();
        assert!(a.push(&json!({"id":"cmpl-1","object":"text_completion","model":"m","choices":[{"index":0,"text":"Hel","finish_reason":null}]})));
        assert!(a.push(
            &json!({"id":"cmpl-1","choices":[{"index":0,"text":"lo","finish_reason":"length"}]})
        ));
        let r = a.response();
        assert_eq!(r["object"], "text_completion");
        assert_eq!(r["choices"][0]["text"], "Hello");
        assert_eq!(r["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn responses_events_keep_the_final_response() {
        let mut a = ResponsesAssembly::default();
        assert!(!a.push(&json!({"type":"response.created","response":{"id":"resp_1","status":"in_progress","output":[]}})));
        assert!(a.push(&json!({"type":"response.output_text.delta","delta":"Hi"})));
        assert_eq!(a.response()["output_text"], "Hi");
        let done = json!({"id":"resp_1","status":"completed","output":[{"type":"message","content":[{"type":"output_text","text":"Hi"}]}],"usage":{"input_tokens":3,"output_tokens":1,"total_tokens":4}});
        assert!(!a.push(&json!({"type":"response.completed","response":done})));
        assert_eq!(a.response(), done);
        assert_eq!(native_finish_reason(&done).as_deref(), Some("completed"));
        let cut =
            json!({"status":"incomplete","incomplete_details":{"reason":"max_output_tokens"}});
        assert_eq!(
            native_finish_reason(&cut).as_deref(),
            Some("max_output_tokens")
        );
    }
}
