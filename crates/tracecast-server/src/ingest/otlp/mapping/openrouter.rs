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

use serde_json::{Map, Value};
use tracecast_model::Region;
use tracecast_model::generation::GenerationError;

use super::{Attrs, Draft, Outcome, SpanRef, error_code, first, first_text};
use tracecast_exporters::otlp::keys as k;

pub fn map(s: &SpanRef<'_>) -> Option<Outcome> {
    let kind = s.attrs.str(k::OPENROUTER_OBSERVATION_TYPE)?;
    if kind != "generation" {
        return Some(Outcome::NotLlm);
    }
    Some(Outcome::Llm(read(s).map(Box::new)))
}

fn read(s: &SpanRef<'_>) -> Result<Draft, String> {
    let a = &s.attrs;
    let mut d = Draft::default();
    d.id(a.str(k::GEN_AI_RESPONSE_ID));
    d.model(a.str(k::GEN_AI_REQUEST_MODEL));
    let g = &mut d.g;
    first_text(&mut g.provider_name, a.str(k::OPENROUTER_PROVIDER_NAME));
    first_text(&mut g.api_type, a.str(k::OPENROUTER_API_TYPE));
    first(&mut g.streamed, a.bool(k::OPENROUTER_STREAMED));
    first(&mut g.cancelled, a.bool(k::OPENROUTER_CANCELLED));
    first_text(
        &mut g.finish_reason,
        a.str(k::GEN_AI_RESPONSE_FINISH_REASON),
    );
    first_text(
        &mut g.native_finish_reason,
        a.str(k::OPENROUTER_NATIVE_FINISH_REASON),
    );
    first(&mut g.latency, a.f64(k::OPENROUTER_LATENCY_MS));
    first(
        &mut g.generation_time,
        a.f64(k::OPENROUTER_GENERATION_TIME_MS),
    );
    first(
        &mut g.moderation_latency,
        a.f64(k::OPENROUTER_MODERATION_LATENCY_MS),
    );
    first(
        &mut g.time_to_first_token,
        a.f64(k::OPENROUTER_TIME_TO_FIRST_TOKEN_MS),
    );
    first(&mut g.total_cost, a.f64(k::GEN_AI_USAGE_COST));
    first(
        &mut g.upstream_inference_cost,
        a.f64(k::OPENROUTER_UPSTREAM_INFERENCE_COST),
    );
    first(&mut g.cache_discount, a.f64(k::OPENROUTER_CACHE_DISCOUNT));
    first(&mut g.is_byok, a.bool(k::OPENROUTER_IS_BYOK));
    first_text(&mut g.user, a.str(k::USER_ID));
    first_text(&mut g.session_id, a.str(k::SESSION_ID));
    first_text(&mut g.external_user, a.str(k::OPENROUTER_EXTERNAL_USER));
    first_text(&mut g.http_referer, a.str(k::OPENROUTER_HTTP_REFERER));
    first_text(&mut g.x_title, a.str(k::OPENROUTER_X_TITLE));
    first_text(&mut g.user_agent, a.str(k::OPENROUTER_USER_AGENT));
    first_text(&mut g.origin, a.str(k::OPENROUTER_ORIGIN));
    first_text(&mut g.request_id, a.str(k::OPENROUTER_REQUEST_ID));
    first_text(&mut g.upstream_id, a.str(k::OPENROUTER_UPSTREAM_ID));
    first_text(&mut g.router, a.str(k::OPENROUTER_ROUTER));
    first_text(&mut g.preset_id, a.str(k::OPENROUTER_PRESET_ID));
    if let Some(r) = a.str(k::OPENROUTER_DATA_REGION) {
        g.data_region = Some(Region::parse(r).ok_or_else(|| {
            format!(
                "{}: must be one of global, europe, us (or eu), got {r:?}",
                k::OPENROUTER_DATA_REGION
            )
        })?);
    }

    // Usage.
    d.tokens(
        |u| &mut u.prompt_tokens,
        a.u64(k::GEN_AI_USAGE_INPUT_TOKENS),
    );
    d.tokens(
        |u| &mut u.completion_tokens,
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS),
    );
    d.tokens(|u| &mut u.total_tokens, a.u64(k::GEN_AI_USAGE_TOTAL_TOKENS));
    d.prompt_detail(
        |p| &mut p.cached_tokens,
        a.u64(k::GEN_AI_USAGE_INPUT_TOKENS_CACHED),
    );
    d.prompt_detail(
        |p| &mut p.cache_write_tokens,
        a.u64(k::GEN_AI_USAGE_INPUT_TOKENS_CACHE_WRITE),
    );
    d.prompt_detail(
        |p| &mut p.audio_tokens,
        a.u64(k::GEN_AI_USAGE_INPUT_TOKENS_AUDIO),
    );
    d.completion_detail(
        |c| &mut c.reasoning_tokens,
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS_REASONING),
    );
    d.completion_detail(
        |c| &mut c.audio_tokens,
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS_AUDIO),
    );
    d.completion_detail(
        |c| &mut c.image_tokens,
        a.u64(k::GEN_AI_USAGE_OUTPUT_TOKENS_IMAGE),
    );
    let cost_details: Map<String, Value> = a
        .with_prefix(k::OPENROUTER_COST_DETAILS_PREFIX)
        .map(|(name, v)| (name.to_string(), v))
        .collect();
    if !cost_details.is_empty() {
        d.g.usage.get_or_insert_with(Default::default).cost_details = Some(cost_details);
    }

    // Request: content, tools, parameters.
    if let Some(Value::Object(prompt)) = a.json(k::GEN_AI_PROMPT) {
        for (key, v) in prompt {
            if matches!(key.as_str(), "messages" | "prompt" | "input") && !v.is_null() {
                d.request().insert(key, v);
            }
        }
    }
    if let Some(tools) = a.json(k::GEN_AI_TOOL_DEFINITIONS) {
        d.request().insert("tools".into(), tools);
    }
    request_parameters(a, &mut d);

    // Response.
    // The exporter sends the request model when the response named none.
    if let Some(m) = a
        .str(k::GEN_AI_RESPONSE_MODEL)
        .filter(|m| Some(*m) != a.str(k::GEN_AI_REQUEST_MODEL))
    {
        d.response().insert("model".into(), m.into());
    }
    if let Some(Value::Object(mut out)) = a.json(k::GEN_AI_COMPLETION) {
        let mut m = Map::new();
        m.insert("role".into(), "assistant".into());
        m.insert(
            "content".into(),
            out.remove("completion").unwrap_or(Value::Null),
        );
        if let Some(r) = out.remove("reasoning").filter(|r| !r.is_null()) {
            m.insert("reasoning".into(), r);
        }
        if let Some(calls) = out.remove("tool_calls").filter(|c| !c.is_null()) {
            m.insert("tool_calls".into(), calls);
        }
        let reason = a.str(k::GEN_AI_RESPONSE_FINISH_REASON).map(str::to_string);
        d.output = Some((Value::Object(m), reason));
    }

    // Error: the exporter's status message and `error.type`.
    if let Some(st) = &s.span.status
        && st.code == opentelemetry_proto::tonic::trace::v1::status::StatusCode::Error as i32
    {
        d.g.error = Some(GenerationError {
            code: a
                .str(k::ERROR_TYPE)
                .filter(|t| *t != "_OTHER")
                .map(error_code),
            message: st.message.clone(),
        });
    }

    // Trace: the key, names and the caller's parent span.
    let trace_key = s.resource.str(k::OPENROUTER_TRACE_ID);
    let model = a.str(k::GEN_AI_REQUEST_MODEL).unwrap_or_default();
    let intermediate = s
        .siblings
        .iter()
        .find(|p| !s.span.parent_span_id.is_empty() && p.span_id == s.span.parent_span_id)
        .filter(|p| {
            Attrs::new(&p.attributes, a.budget()).str(k::OPENROUTER_OBSERVATION_TYPE)
                == Some("span")
        });
    let top = intermediate.unwrap_or(s.span);
    let top_attrs = Attrs::new(&top.attributes, a.budget());
    let trace_name = top_attrs.str(k::OPENROUTER_TRACE_NAME);
    let id = d.g.id.clone();
    let trace = d.trace();
    if let Some(key) = trace_key
        && id != key
    {
        trace.insert("trace_id".into(), key.into());
    }
    if let Some(name) = trace_name.filter(|n| *n != model) {
        trace.insert("trace_name".into(), name.into());
    }
    if let Some(p) = intermediate {
        trace.insert("span_name".into(), p.name.clone().into());
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
        trace.insert("generation_name".into(), s.span.name.clone().into());
    }
    if top.parent_span_id.len() == 8 {
        trace.insert(
            "parent_span_id".into(),
            hex::encode(&top.parent_span_id).into(),
        );
    } else {
        // A root: no parent to keep (the shared finishing step must not add one).
        trace.insert("parent_span_id".into(), Value::Null);
    }
    for (name, v) in a.with_prefix(k::TRACE_METADATA_PREFIX) {
        let v = match v {
            Value::String(text) => a
                .budget()
                .parse(&format!("{}{name}", k::TRACE_METADATA_PREFIX), &text)
                .unwrap_or(Value::String(text)),
            other => other,
        };
        trace.insert(name.to_string(), v);
    }
    // The generation span's id is the app's own span id when the record had one (it came back
    // as `trace.metadata.otlp_span_id`); else it was derived from the generation id and is not
    // kept.
    trace.entry("otlp_span_id").or_insert(Value::Null);
    // Without a trace key of its own the generation id was the key: keep it implicit.
    if !trace.contains_key("trace_id") {
        trace.insert("trace_id".into(), Value::Null);
    }
    Ok(d)
}

/// `gen_ai.request.<param>` back to the request's parameters.
fn request_parameters(a: &Attrs<'_>, d: &mut Draft) {
    let request = d.request();
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
