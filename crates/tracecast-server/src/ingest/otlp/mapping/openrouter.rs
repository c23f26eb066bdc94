//! OpenRouter's Broadcast shape, as tracecast's own OTLP exporter writes it
//! (`crates/tracecast-exporters/src/otlp/`, the `webhook` and `otel-collector` destinations;
//! OpenRouter's `openrouter/broadcast/webhook.mdx` and `otel-collector.mdx` describe the same
//! attributes). The generation span carries `openrouter.observation.type = generation`; an
//! intermediate span (`span`) above it names `trace.span_name`.
//!
//! Every attribute the exporter writes is read back, so a generation sent by the `webhook`
//! exporter (all metadata groups on) and fed back here is the same generation; what cannot come
//! back is listed in `docs/otlp-ingest.md` (ids that were hashed, `request.model`, derived
//! defaults).

use serde_json::{Map, Value, json};
use tracecast_exporters::otlp::keys as k;

use super::{Attrs, Draft, Outcome, SpanRef, error_code, parse_json_text};

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let kind = s.attrs.str(k::OPENROUTER_OBSERVATION_TYPE)?;
    if kind != "generation" {
        return Some(Outcome::NotLlm);
    }
    Some(Outcome::Llm(Ok(read(s))))
}

fn read(s: &SpanRef<'_>) -> Draft {
    let a = &s.attrs;
    let mut d = Draft::default();
    d.set_opt("id", a.str(k::GEN_AI_RESPONSE_ID));
    d.set_opt("model", a.str(k::GEN_AI_REQUEST_MODEL));
    d.set_opt("provider_name", a.str(k::OPENROUTER_PROVIDER_NAME));
    d.set_opt("api_type", a.str(k::OPENROUTER_API_TYPE));
    d.set_opt("streamed", a.bool(k::OPENROUTER_STREAMED));
    d.set_opt("cancelled", a.bool(k::OPENROUTER_CANCELLED));
    d.set_opt("finish_reason", a.str(k::GEN_AI_RESPONSE_FINISH_REASON));
    d.set_opt(
        "native_finish_reason",
        a.str(k::OPENROUTER_NATIVE_FINISH_REASON),
    );
    d.set_opt("latency", a.f64(k::OPENROUTER_LATENCY_MS));
    d.set_opt("generation_time", a.f64(k::OPENROUTER_GENERATION_TIME_MS));
    d.set_opt(
        "moderation_latency",
        a.f64(k::OPENROUTER_MODERATION_LATENCY_MS),
    );
    d.set_opt(
        "time_to_first_token",
        a.f64(k::OPENROUTER_TIME_TO_FIRST_TOKEN_MS),
    );
    d.set_opt("total_cost", a.f64(k::GEN_AI_USAGE_COST));
    d.set_opt(
        "upstream_inference_cost",
        a.f64(k::OPENROUTER_UPSTREAM_INFERENCE_COST),
    );
    d.set_opt("cache_discount", a.f64(k::OPENROUTER_CACHE_DISCOUNT));
    d.set_opt("is_byok", a.bool(k::OPENROUTER_IS_BYOK));
    d.set_opt("user", a.str(k::USER_ID));
    d.set_opt("session_id", a.str(k::SESSION_ID));
    d.set_opt("external_user", a.str(k::OPENROUTER_EXTERNAL_USER));
    for (field, key) in [
        ("http_referer", k::OPENROUTER_HTTP_REFERER),
        ("x_title", k::OPENROUTER_X_TITLE),
        ("user_agent", k::OPENROUTER_USER_AGENT),
        ("origin", k::OPENROUTER_ORIGIN),
        ("request_id", k::OPENROUTER_REQUEST_ID),
        ("upstream_id", k::OPENROUTER_UPSTREAM_ID),
        ("router", k::OPENROUTER_ROUTER),
        ("preset_id", k::OPENROUTER_PRESET_ID),
        ("data_region", k::OPENROUTER_DATA_REGION),
    ] {
        d.set_opt(field, a.str(key));
    }

    // Usage.
    d.usage_opt("prompt_tokens", a.u64(k::GEN_AI_USAGE_INPUT_TOKENS));
    d.usage_opt("completion_tokens", a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS));
    d.usage_opt("total_tokens", a.u64(k::GEN_AI_USAGE_TOTAL_TOKENS));
    let p = "prompt_tokens_details";
    d.usage_detail(
        p,
        "cached_tokens",
        a.u64(k::GEN_AI_USAGE_INPUT_TOKENS_CACHED),
    );
    d.usage_detail(
        p,
        "cache_write_tokens",
        a.u64(k::GEN_AI_USAGE_INPUT_TOKENS_CACHE_WRITE),
    );
    d.usage_detail(p, "audio_tokens", a.u64(k::GEN_AI_USAGE_INPUT_TOKENS_AUDIO));
    let c = "completion_tokens_details";
    d.usage_detail(
        c,
        "reasoning_tokens",
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS_REASONING),
    );
    d.usage_detail(
        c,
        "audio_tokens",
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS_AUDIO),
    );
    d.usage_detail(
        c,
        "image_tokens",
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS_IMAGE),
    );
    let cost_details: Map<String, Value> = a
        .with_prefix(k::OPENROUTER_COST_DETAILS_PREFIX)
        .map(|(name, v)| (name.to_string(), v))
        .collect();
    if !cost_details.is_empty() {
        d.usage
            .insert("cost_details".into(), Value::Object(cost_details));
    }

    // Request: content, tools, parameters.
    if let Some(Value::Object(prompt)) = a.json(k::GEN_AI_PROMPT) {
        for (key, v) in prompt {
            if matches!(key.as_str(), "messages" | "prompt" | "input") && !v.is_null() {
                d.request.insert(key, v);
            }
        }
    }
    if let Some(tools) = a.json(k::GEN_AI_TOOL_DEFINITIONS) {
        d.request.insert("tools".into(), tools);
    }
    request_parameters(a, &mut d.request);

    // Response.
    // The exporter sends the request model when the response named none.
    if let Some(m) = a
        .str(k::GEN_AI_RESPONSE_MODEL)
        .filter(|m| Some(*m) != a.str(k::GEN_AI_REQUEST_MODEL))
    {
        d.response.insert("model".into(), m.into());
    }
    if let Some(Value::Object(out)) = a.json(k::GEN_AI_COMPLETION) {
        let mut m = Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert(
            "content".into(),
            out.get("completion").cloned().unwrap_or(Value::Null),
        );
        if let Some(r) = out.get("reasoning").filter(|r| !r.is_null()) {
            m.insert("reasoning".into(), r.clone());
        }
        if let Some(calls) = out.get("tool_calls").filter(|c| !c.is_null()) {
            m.insert("tool_calls".into(), calls.clone());
        }
        let reason = a.str(k::GEN_AI_RESPONSE_FINISH_REASON).map(str::to_string);
        d.output = Some((Value::Object(m), reason));
    }

    // Error: the exporter's status message and `error.type`.
    if let Some(st) = &s.span.status
        && st.code == opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
    {
        let mut err = json!({"message": st.message});
        if let Some(t) = a.str(k::ERROR_TYPE).filter(|t| *t != "_OTHER") {
            err["code"] = error_code(t);
        }
        d.set("error", err);
    }

    // Trace: the key, names and the caller's parent span.
    let trace_key = s.resource.str(k::OPENROUTER_TRACE_ID);
    let model = a.str(k::GEN_AI_REQUEST_MODEL).unwrap_or_default();
    let intermediate = s
        .siblings
        .iter()
        .find(|p| !s.span.parent_span_id.is_empty() && p.span_id == s.span.parent_span_id)
        .filter(|p| Attrs::new(&p.attributes).str(k::OPENROUTER_OBSERVATION_TYPE) == Some("span"));
    let top = intermediate.unwrap_or(s.span);
    let top_attrs = Attrs::new(&top.attributes);
    let trace_name = top_attrs.str(k::OPENROUTER_TRACE_NAME);
    if let Some(key) = trace_key
        && d.top.get("id").and_then(Value::as_str) != Some(key)
    {
        d.trace.insert("trace_id".into(), key.into());
    }
    if let Some(name) = trace_name.filter(|n| *n != model) {
        d.trace.insert("trace_name".into(), name.into());
    }
    if let Some(p) = intermediate {
        d.trace.insert("span_name".into(), p.name.clone().into());
    }
    // The generation span's name is `generation_name`, else (a root) the trace name, else the
    // model: only a name that is none of the defaults is a `generation_name`.
    let is_root = intermediate.is_none() && s.span.parent_span_id.is_empty();
    let default_name = if is_root {
        trace_name.unwrap_or(model)
    } else {
        model
    };
    if !s.span.name.is_empty() && s.span.name != default_name && s.span.name != model {
        d.trace
            .insert("generation_name".into(), s.span.name.clone().into());
    }
    if top.parent_span_id.len() == 8 {
        d.trace.insert(
            "parent_span_id".into(),
            hex::encode(&top.parent_span_id).into(),
        );
    } else {
        // A root: no parent to keep (the shared finishing step must not add one).
        d.trace.insert("parent_span_id".into(), Value::Null);
    }
    for (name, v) in a.with_prefix(k::TRACE_METADATA_PREFIX) {
        let v = match v {
            Value::String(text) => parse_json_text(&text).unwrap_or(Value::String(text)),
            other => other,
        };
        d.trace.insert(name.to_string(), v);
    }
    // The generation span's id is derived from the generation id: nothing to keep.
    d.trace.insert("otlp_span_id".into(), Value::Null);
    // Without a trace key of its own the generation id was the key: keep it implicit.
    if !d.trace.contains_key("trace_id") {
        d.trace.insert("trace_id".into(), Value::Null);
    }
    d
}

/// `gen_ai.request.<param>` back to the request's parameters.
fn request_parameters(a: &Attrs<'_>, request: &mut Map<String, Value>) {
    let mut params: Vec<(&str, Value)> = a
        .with_prefix(k::GEN_AI_REQUEST_PREFIX)
        .filter(|(name, _)| *name != "model")
        .collect();
    params.sort_by(|x, y| x.0.cmp(y.0));
    let has_max_completion = params.iter().any(|(n, _)| *n == "max_completion_tokens");
    for (name, v) in params {
        let name = match name {
            "choice.count" => "n",
            "stop_sequences" => {
                // A single stop string was sent as a one-element array.
                let v = match v {
                    Value::Array(mut items) if items.len() == 1 && items[0].is_string() => {
                        items.remove(0)
                    }
                    other => other,
                };
                request.insert("stop".into(), v);
                continue;
            }
            // Sent for `max_completion_tokens` too when the request had no `max_tokens`.
            "max_tokens" if has_max_completion => continue,
            other => other,
        };
        request.insert(name.to_string(), v);
    }
}
