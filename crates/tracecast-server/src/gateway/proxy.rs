//! Forwarding a call to its upstream and the answer back to the client, unchanged.
//!
//! Faithfulness: the upstream's status, body and headers (content type, `x-request-id`,
//! `x-ratelimit-*`, ...) reach the client as sent; only hop-by-hop headers and
//! `content-length` (the body is re-framed) are dropped. Unknown request fields are forwarded
//! untouched; the only rewrites are the model name (a `vendor/*` rule strips the prefix), the
//! removal of OpenRouter-only fields for a non-OpenRouter upstream, and, for a stream the client
//! did not ask usage for, `stream_options.include_usage = true` (the resulting usage-only chunk is
//! held back from the client).
//!
//! Streaming: each upstream chunk is split into whole SSE events, which are forwarded at once;
//! nothing waits for the end of the stream. When the client goes away, axum drops the response
//! body, which drops the upstream response: the upstream connection is closed (the call is
//! cancelled) and the generation is recorded as cancelled.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::GatewayState;
use super::capture::Captured;
use super::error::GatewayError;
use super::openapi::{CallErrors, CallRequest, UpstreamAnswer};
use super::stream::{
    Assembly, ChatAssembly, ResponsesAssembly, SseSplitter, is_usage_only_chunk,
    native_finish_reason,
};
use super::upstream::UpstreamKind;
use crate::auth::Caller;

/// Request fields only OpenRouter understands; removed before a call goes to any other
/// upstream (OpenRouter API reference, "Chat completion" request body; `usage` there is
/// `{"include": true}`, which OpenAI rejects).
const OPENROUTER_ONLY: &[&str] = &[
    "provider",
    "models",
    "route",
    "transforms",
    "plugins",
    "usage",
    "session_id",
    "trace",
    "preset",
    "debug",
    "reasoning",
];

/// Client request headers never forwarded: hop-by-hop ones, those the proxy sets itself, and
/// `accept-encoding` (the proxy reads the answer, so it must arrive uncompressed).
const DROP_REQUEST_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "accept-encoding",
    "cookie",
    "expect",
    "x-session-id",
];

/// Upstream answer headers never passed back: hop-by-hop ones and the framing of the body.
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// The caller's own upstream credential (pass-through mode): sent to the upstream as the
/// bearer instead of the configured `api_key`; never stored or logged.
pub const PASSTHROUGH_HEADER: &str = "x-tracecast-upstream-key";

pub(super) fn store_unavailable(e: &tracecast_store::StoreError) -> Response {
    tracing::error!(error = %e, "reading the workspace's gateway upstreams failed");
    GatewayError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "The store is unavailable; try again",
    )
    .into_response()
}

/// The gateway's id of a call (also the generation id), returned to the client.
pub const GENERATION_ID_HEADER: &str = "x-tracecast-generation-id";

/// Which OpenAI-compatible endpoint a call is for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Completions,
    Responses,
    Embeddings,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Responses => "/responses",
            Endpoint::Embeddings => "/embeddings",
        }
    }
    /// The generation's `api_type`.
    fn api_type(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
            Endpoint::Embeddings => "embeddings",
        }
    }
    /// Whether its streams end with a usage chunk only on request (`include_usage`). The
    /// Responses API always sends usage in `response.completed`.
    fn usage_on_request(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }
    fn assembly(self) -> Assembly {
        match self {
            Endpoint::Responses => Assembly::Responses(ResponsesAssembly::default()),
            _ => Assembly::Chat(ChatAssembly::default()),
        }
    }
}

pub(super) fn counted(resp: Response) -> Response {
    metrics::counter!("tracecast_gateway_requests_total", "status" => resp.status().as_u16().to_string())
        .increment(1);
    resp
}

async fn serve(gw: GatewayState, req: Request, endpoint: Endpoint) -> Response {
    counted(forward(gw, req, endpoint).await.unwrap_or_else(|e| e))
}

#[utoipa::path(
    post, path = "/api/v1/chat/completions", tag = "Gateway",
    request_body(content = CallRequest, description = "The upstream API's request; fields tracecast does not read are forwarded untouched"),
    responses(
        (status = 200, description = "The upstream's answer, unchanged: a `chat.completion`, or with `\"stream\": true` a stream of `chat.completion.chunk` events. Any other status of the upstream, with its body, is passed on the same way",
         content((UpstreamAnswer = "application/json"), (String = "text/event-stream")),
         headers(("x-tracecast-generation-id" = String, description = "The id of the captured generation"))),
        CallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn chat_completions(State(gw): State<GatewayState>, req: Request) -> Response {
    serve(gw, req, Endpoint::ChatCompletions).await
}

#[utoipa::path(
    post, path = "/api/v1/completions", tag = "Gateway",
    request_body(content = CallRequest, description = "The upstream API's request; fields tracecast does not read are forwarded untouched"),
    responses(
        (status = 200, description = "The upstream's answer, unchanged: a `text_completion`, or streamed events. Any other status of the upstream, with its body, is passed on the same way",
         content((UpstreamAnswer = "application/json"), (String = "text/event-stream")),
         headers(("x-tracecast-generation-id" = String, description = "The id of the captured generation"))),
        CallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn completions(State(gw): State<GatewayState>, req: Request) -> Response {
    serve(gw, req, Endpoint::Completions).await
}

#[utoipa::path(
    post, path = "/api/v1/responses", tag = "Gateway",
    request_body(content = CallRequest, description = "The upstream API's request; fields tracecast does not read are forwarded untouched"),
    responses(
        (status = 200, description = "The upstream's answer, unchanged: a `response`, or with `\"stream\": true` the Responses API's typed events. Any other status of the upstream, with its body, is passed on the same way",
         content((UpstreamAnswer = "application/json"), (String = "text/event-stream")),
         headers(("x-tracecast-generation-id" = String, description = "The id of the captured generation"))),
        CallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn responses(State(gw): State<GatewayState>, req: Request) -> Response {
    serve(gw, req, Endpoint::Responses).await
}

#[utoipa::path(
    post, path = "/api/v1/embeddings", tag = "Gateway",
    request_body(content = CallRequest, description = "The upstream API's request; fields tracecast does not read are forwarded untouched"),
    responses(
        (status = 200, description = "The upstream's answer, unchanged: a `list` of embeddings. Any other status of the upstream, with its body, is passed on the same way",
         content((UpstreamAnswer = "application/json")),
         headers(("x-tracecast-generation-id" = String, description = "The id of the captured generation"))),
        CallErrors,
    ),
    security(("bearer" = []))
)]
pub async fn embeddings(State(gw): State<GatewayState>, req: Request) -> Response {
    serve(gw, req, Endpoint::Embeddings).await
}

/// The caller's workspace key; management keys are refused.
pub(super) async fn authenticate(
    gw: &GatewayState,
    parts: &mut axum::http::request::Parts,
) -> Result<tracecast_model::ApiKey, Response> {
    let caller = Caller::from_request_parts(parts, &gw.app)
        .await
        .map_err(|e| GatewayError::from(e).into_response())?;
    if caller.0.is_management() {
        return Err(GatewayError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "The gateway takes a workspace API key, not a management key",
        )
        .into_response());
    }
    Ok(caller.0)
}

pub(super) fn forwarded_headers(from: &HeaderMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in from {
        let n = name.as_str();
        if DROP_REQUEST_HEADERS.contains(&n) || n.starts_with("x-tracecast-") {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers
}

pub(super) fn set_credential(headers: &mut HeaderMap, key: Option<&str>) {
    if let Some(k) = key
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {k}"))
    {
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
}

fn answer_headers(from: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in from {
        if !DROP_RESPONSE_HEADERS.contains(&name.as_str()) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// What a capture needs to know about the call, from before it is forwarded.
struct CallInfo {
    gw: GatewayState,
    workspace: uuid::Uuid,
    api_key_hash: String,
    api_key_name: String,
    id: String,
    created_at: String,
    start: Instant,
    model: String,
    /// The model name the upstream received.
    upstream_model: String,
    endpoint: Endpoint,
    streamed: bool,
    provider_name: String,
    request: Value,
    session_id: Option<String>,
    headers: Map<String, Value>,
    /// When the request was sent to the upstream.
    sent: Option<Instant>,
    /// The caller sent its own upstream key (pass-through mode).
    byok: bool,
}

/// How a call ended.
#[derive(Default)]
struct Outcome {
    response: Option<Value>,
    usage: Option<Value>,
    error: Option<(Value, String)>,
    cancelled: bool,
    first_token: Option<Instant>,
    native_finish_reason: Option<String>,
    provider: Option<String>,
    upstream_id: Option<String>,
}

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

/// OpenRouter's normalized finish reasons: `stop`, `length`, `tool_calls`, `content_filter`,
/// `error`; other native reasons map onto them where their meaning is clear.
fn normalize_finish_reason(native: &str) -> &str {
    match native {
        "end_turn" | "stop_sequence" | "eos" | "stop" | "completed" => "stop",
        "max_tokens" | "length" | "max_output_tokens" => "length",
        "tool_calls" | "function_call" | "tool_use" => "tool_calls",
        "content_filter" | "safety" => "content_filter",
        other => other,
    }
}

/// The usage fields the generation record knows, each only when it is a non-negative integer
/// (an upstream's odd value must not make the record invalid).
/// The Responses API names (`input_tokens`, `output_tokens`, `input_tokens_details`,
/// `output_tokens_details`) are read as their chat equivalents.
fn usage_of(u: &Value) -> Option<Value> {
    let int = |v: Option<&Value>| v.and_then(Value::as_u64);
    let mut out = Map::new();
    for (k, alias) in [
        ("prompt_tokens", "input_tokens"),
        ("completion_tokens", "output_tokens"),
        ("total_tokens", "total_tokens"),
    ] {
        if let Some(n) = int(u.get(k)).or_else(|| int(u.get(alias))) {
            out.insert(k.into(), n.into());
        }
    }
    for (group, keys) in [
        (
            "prompt_tokens_details",
            &["cached_tokens", "cache_write_tokens", "audio_tokens"][..],
        ),
        (
            "completion_tokens_details",
            &["reasoning_tokens", "audio_tokens", "image_tokens"][..],
        ),
    ] {
        let alias = if group == "prompt_tokens_details" {
            "input_tokens_details"
        } else {
            "output_tokens_details"
        };
        let mut d = Map::new();
        for k in keys {
            let from = |g: &str| int(u.get(g).and_then(|g| g.get(*k)));
            if let Some(n) = from(group).or_else(|| from(alias)) {
                d.insert((*k).into(), n.into());
            }
        }
        if !d.is_empty() {
            out.insert(group.into(), Value::Object(d));
        }
    }
    if let Some(cd) = u.get("cost_details").and_then(Value::as_object) {
        let d: Map<String, Value> = cd
            .iter()
            .filter(|(_, v)| v.as_f64().is_some_and(f64::is_finite))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if !d.is_empty() {
            out.insert("cost_details".into(), Value::Object(d));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

impl CallInfo {
    /// The cost from the price table: looked up by the model the upstream received, the model
    /// the client asked for, then the model the answer names.
    fn price(&self, response: Option<&Value>, usage: &Value) -> Option<(f64, Value)> {
        let answered = response
            .and_then(|r| r.get("model"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let names = [self.upstream_model.as_str(), self.model.as_str(), answered];
        self.gw.inner.prices.lookup(&names)?.cost(usage)
    }

    fn finish(self, o: Outcome) {
        let now = Instant::now();
        let mut r = Map::new();
        r.insert("id".into(), json!(self.id));
        r.insert("model".into(), json!(self.model));
        r.insert("created_at".into(), json!(self.created_at));
        r.insert(
            "provider_name".into(),
            json!(
                o.provider
                    .clone()
                    .unwrap_or_else(|| self.provider_name.clone())
            ),
        );
        r.insert("api_type".into(), json!(self.endpoint.api_type()));
        r.insert("streamed".into(), json!(self.streamed));
        r.insert("cancelled".into(), json!(o.cancelled));
        r.insert("latency".into(), json!(ms(now - self.start)));
        if let Some(sent) = self.sent {
            r.insert("generation_time".into(), json!(ms(now - sent)));
        }
        if let Some(ft) = o.first_token {
            r.insert("time_to_first_token".into(), json!(ms(ft - self.start)));
        }
        if o.error.is_some() {
            r.insert("finish_reason".into(), json!("error"));
        } else if let Some(n) = &o.native_finish_reason {
            r.insert("finish_reason".into(), json!(normalize_finish_reason(n)));
        }
        if let Some(n) = o.native_finish_reason {
            r.insert("native_finish_reason".into(), json!(n));
        }
        if let Some(u) = &o.usage {
            if let Some(cost) = u
                .get("cost")
                .and_then(Value::as_f64)
                .filter(|c| c.is_finite())
            {
                r.insert("total_cost".into(), json!(cost));
            }
            if let Some(uc) = u
                .get("cost_details")
                .and_then(|d| d.get("upstream_inference_cost"))
                .and_then(Value::as_f64)
                .filter(|c| c.is_finite())
            {
                r.insert("upstream_inference_cost".into(), json!(uc));
            }
            if let Some(is_byok) = u.get("is_byok").and_then(Value::as_bool) {
                r.insert("is_byok".into(), json!(is_byok));
            }
            if let Some(mut u) = usage_of(u) {
                if !r.contains_key("total_cost")
                    && let Some((total, details)) = self.price(o.response.as_ref(), &u)
                {
                    r.insert("total_cost".into(), json!(total));
                    if let Some(m) = u.as_object_mut() {
                        m.entry("cost_details").or_insert(details);
                    }
                }
                r.insert("usage".into(), u);
            }
        }
        if self.byok {
            r.insert("is_byok".into(), json!(true));
        }
        if let Some(s) = self.session_id {
            r.insert("session_id".into(), json!(s));
        }
        r.insert("request".into(), self.request);
        if let Some(resp) = o.response {
            r.insert("response".into(), resp);
        }
        if let Some((code, message)) = o.error {
            r.insert("error".into(), json!({"code": code, "message": message}));
        }
        r.insert("request_id".into(), json!(self.id));
        if let Some(u) = o.upstream_id {
            r.insert("upstream_id".into(), json!(u));
        }
        r.extend(self.headers);
        self.gw.inner.capture.submit(Captured {
            workspace: self.workspace,
            api_key_hash: self.api_key_hash,
            api_key_name: self.api_key_name,
            record: Value::Object(r),
        });
    }
}

/// Records the call as cancelled when dropped before it finished: the client went away while
/// the upstream was still answering.
struct Guard(Option<CallInfo>);

impl Guard {
    fn finish(mut self, o: Outcome) {
        if let Some(info) = self.0.take() {
            info.finish(o);
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(info) = self.0.take() {
            info.finish(Outcome {
                cancelled: true,
                error: Some((json!(499), "The client closed the connection".into())),
                ..Outcome::default()
            });
        }
    }
}

pub(super) fn header_str(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Cuts to `max` characters.
fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

async fn forward(gw: GatewayState, req: Request, endpoint: Endpoint) -> Result<Response, Response> {
    let start = Instant::now();
    let created_at = tracecast_model::time::now_rfc3339();
    let (mut parts, body) = req.into_parts();
    let limit = gw.inner.max_request_bytes;
    let key = match authenticate(&gw, &mut parts).await {
        Ok(k) => k,
        Err(refused) => {
            // Answered after the body is read, so the keep-alive connection stays usable.
            crate::auth::drain(body, limit).await;
            return Err(refused);
        }
    };

    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        GatewayError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!("The request body is larger than {limit} bytes"),
        )
        .into_response()
    })?;
    let request: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|e| {
        GatewayError::invalid("body", format!("The body must be a JSON object: {e}"))
            .into_response()
    })?;
    let model = match request.get("model") {
        Some(Value::String(m)) if !m.trim().is_empty() => m.clone(),
        _ => {
            return Err(
                GatewayError::invalid("model", "model is required (a string)").into_response(),
            );
        }
    };
    let ws = gw
        .inner
        .workspace_upstreams(&gw.app, key.workspace_id)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let resolved = super::upstream::resolve(&[&ws, &gw.inner.upstreams], &model)
        .ok_or_else(|| GatewayError::model_not_found(&model).into_response())?;
    let upstream = resolved.upstream;
    let streamed = endpoint != Endpoint::Embeddings
        && request.get("stream").and_then(Value::as_bool) == Some(true);

    // The body goes to the upstream as the client sent it, byte for byte, unless a rewrite is
    // due; only then is it re-serialised from the parsed object.
    let strips = |k: &str| {
        upstream.kind != UpstreamKind::Openrouter
            && OPENROUTER_ONLY.contains(&k)
            // `reasoning` is OpenAI's own field in the Responses API.
            && !(endpoint == Endpoint::Responses && k == "reasoning")
    };
    let strip_usage = streamed
        && endpoint.usage_on_request()
        && request
            .get("stream_options")
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            != Some(true);
    let rewrite =
        resolved.model != model || strip_usage || request.keys().any(|k| strips(k.as_str()));
    let outgoing_body = if rewrite {
        let mut outgoing = request.clone();
        outgoing.insert("model".into(), json!(resolved.model));
        outgoing.retain(|k, _| !strips(k.as_str()));
        if strip_usage {
            match outgoing.get_mut("stream_options") {
                Some(Value::Object(o)) => {
                    o.insert("include_usage".into(), json!(true));
                }
                _ => {
                    outgoing.insert("stream_options".into(), json!({"include_usage": true}));
                }
            }
        }
        Bytes::from(serde_json::to_vec(&outgoing).unwrap_or_default())
    } else {
        bytes
    };

    let session_id = request
        .get("session_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| header_str(&parts.headers, "x-session-id"))
        .map(|s| cut(&s, tracecast_model::generation::MAX_SESSION_LEN));
    let mut context = Map::new();
    for (field, h) in [
        ("http_referer", "http-referer"),
        ("x_title", "x-title"),
        ("user_agent", "user-agent"),
        ("origin", "origin"),
    ] {
        if let Some(v) = header_str(&parts.headers, h) {
            context.insert(field.into(), json!(v));
        }
    }
    let id = format!("gen-tc-{}", uuid::Uuid::now_v7().simple());
    let mut info = CallInfo {
        gw: gw.clone(),
        workspace: key.workspace_id,
        api_key_hash: key.hash.clone(),
        api_key_name: key.name.clone(),
        id: id.clone(),
        created_at,
        start,
        model,
        upstream_model: resolved.model.clone(),
        endpoint,
        streamed,
        provider_name: upstream.provider_name.clone(),
        request: Value::Object(request),
        session_id,
        headers: context,
        sent: None,
        byok: false,
    };

    let mut headers = forwarded_headers(&parts.headers);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let passthrough = header_str(&parts.headers, PASSTHROUGH_HEADER);
    info.byok = passthrough.is_some();
    set_credential(
        &mut headers,
        passthrough.as_deref().or(upstream.api_key.as_deref()),
    );
    let url = format!("{}{}", upstream.base_url, endpoint.path());
    let timeout = gw.inner.timeout;
    info.sent = Some(Instant::now());
    let guard = Guard(Some(info));
    let send = gw
        .inner
        .http
        .post(url)
        .headers(headers)
        .body(outgoing_body)
        .send();
    let resp = match tokio::time::timeout(timeout, send).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            let err = GatewayError::bad_gateway(format!(
                "The upstream could not be reached: {}",
                transport_message(&e)
            ));
            guard.finish(Outcome {
                error: Some((json!(502), err.message.clone())),
                ..Outcome::default()
            });
            return Err(with_id(err.into_response(), &id));
        }
        Err(_) => {
            let err = GatewayError::timeout();
            guard.finish(Outcome {
                error: Some((json!(504), err.message.clone())),
                ..Outcome::default()
            });
            return Err(with_id(err.into_response(), &id));
        }
    };
    let status = resp.status();
    let out_headers = answer_headers(resp.headers());

    let is_sse = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));

    if streamed && status.is_success() && is_sse {
        let state = StreamState {
            resp,
            splitter: SseSplitter::default(),
            assembly: endpoint.assembly(),
            first_token: None,
            strip_usage,
            timeout,
            guard: Some(guard),
        };
        let body = Body::from_stream(futures_util::stream::unfold(state, next_chunk));
        return Ok(with_id(build(status, out_headers, body), &id));
    }

    // A whole answer: read it (capped), pass it on unchanged, record it.
    let bytes = match read_body(resp, gw.inner.max_response_bytes, timeout).await {
        Ok(b) => b,
        Err(err) => {
            guard.finish(Outcome {
                error: Some((json!(err.status.as_u16()), err.message.clone())),
                ..Outcome::default()
            });
            return Err(with_id(err.into_response(), &id));
        }
    };
    let parsed: Option<Value> = serde_json::from_slice(&bytes).ok();
    let mut o = Outcome::default();
    if status.is_success() {
        if let Some(v) = &parsed {
            o = Outcome::of_response(v);
        }
        if streamed {
            // The client asked for a stream and the upstream answered whole: it is passed on
            // as is, and recorded as it is.
            o.first_token = Some(Instant::now());
        }
        o.response = parsed.map(|v| {
            if endpoint == Endpoint::Embeddings {
                without_vectors(v)
            } else {
                v
            }
        });
    } else {
        o.error = Some((
            json!(status.as_u16()),
            error_message(parsed.as_ref(), &bytes),
        ));
        o.response = parsed;
    }
    guard.finish(o);
    Ok(with_id(build(status, out_headers, Body::from(bytes)), &id))
}

/// An embeddings answer without its vectors: a generation records the call, not thousands of
/// floats per input.
fn without_vectors(mut v: Value) -> Value {
    if let Some(data) = v.get_mut("data").and_then(Value::as_array_mut) {
        for item in data {
            if let Some(o) = item.as_object_mut() {
                o.remove("embedding");
            }
        }
    }
    v
}

impl Outcome {
    /// What a successful answer (or an assembled stream) says about the call.
    fn of_response(v: &Value) -> Outcome {
        Outcome {
            usage: v.get("usage").filter(|u| u.is_object()).cloned(),
            native_finish_reason: native_finish_reason(v),
            provider: v
                .get("provider")
                .and_then(Value::as_str)
                .map(str::to_string),
            upstream_id: v.get("id").and_then(Value::as_str).map(str::to_string),
            ..Outcome::default()
        }
    }

    fn with_response(mut self, r: Value) -> Outcome {
        self.response = Some(r);
        self
    }
}

fn build(status: StatusCode, headers: HeaderMap, body: Body) -> Response {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn with_id(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut()
            .insert(HeaderName::from_static(GENERATION_ID_HEADER), v);
    }
    r
}

/// The message of an upstream error answer: OpenAI's `error.message`, else the text.
fn error_message(parsed: Option<&Value>, bytes: &[u8]) -> String {
    let from_json = parsed.and_then(|v| {
        let e = v.get("error")?;
        e.get("message")
            .and_then(Value::as_str)
            .or_else(|| e.as_str())
            .map(str::to_string)
    });
    let msg = from_json.unwrap_or_else(|| String::from_utf8_lossy(bytes).into_owned());
    let msg = cut(msg.trim(), 1000);
    if msg.is_empty() {
        "The upstream answered with an error and no body".into()
    } else {
        msg
    }
}

/// A transport error's description without the URL (which could carry credentials).
pub(super) fn transport_message(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection failed".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_body() || e.is_decode() {
        "the answer was cut off".into()
    } else {
        "request failed".into()
    }
}

/// Reads a whole answer, failing (502) past `max` bytes and (504) when a chunk takes longer than
/// `timeout`. Like `tracecast_exporters::http::read_capped`, but the bytes are passed on to the
/// client unchanged, so a cut-off or lossily decoded body is not an option.
pub(super) async fn read_body(
    mut resp: reqwest::Response,
    max: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    let mut buf = Vec::new();
    loop {
        match tokio::time::timeout(timeout, resp.chunk()).await {
            Err(_) => return Err(GatewayError::timeout()),
            Ok(Err(e)) => {
                return Err(GatewayError::bad_gateway(format!(
                    "Reading the upstream's answer failed: {}",
                    transport_message(&e)
                )));
            }
            Ok(Ok(None)) => return Ok(Bytes::from(buf)),
            Ok(Ok(Some(c))) => {
                if buf.len() + c.len() > max {
                    return Err(GatewayError::bad_gateway(format!(
                        "The upstream's answer is larger than {max} bytes"
                    )));
                }
                buf.extend_from_slice(&c);
            }
        }
    }
}

struct StreamState {
    resp: reqwest::Response,
    splitter: SseSplitter,
    assembly: Assembly,
    first_token: Option<Instant>,
    strip_usage: bool,
    timeout: Duration,
    /// `None` once the call is recorded. Dropping the state before (the client went away)
    /// drops the guard, which records a cancelled call with what was assembled so far.
    guard: Option<Guard>,
}

impl StreamState {
    /// Feeds one event to the assembly; returns whether it is forwarded to the client.
    /// Feeds one event to the assembly; returns what is forwarded to the client (`None`: the
    /// event is held back). When tracecast asked for usage on the client's behalf, the
    /// usage-only chunk is held back and the `"usage": null` the upstream then adds to every
    /// other chunk is removed (re-serialising that chunk), so the client gets what it asked for.
    fn event(&mut self, e: super::stream::Event) -> Option<Bytes> {
        let Some(data) = e.data.as_deref() else {
            return Some(e.raw);
        };
        if data.trim() == "[DONE]" {
            return Some(e.raw);
        }
        let Ok(mut v) = serde_json::from_str::<Value>(data) else {
            return Some(e.raw);
        };
        if self.assembly.push(&v) && self.first_token.is_none() {
            self.first_token = Some(Instant::now());
        }
        if !self.strip_usage {
            return Some(e.raw);
        }
        if is_usage_only_chunk(&v) {
            return None;
        }
        match v.as_object_mut() {
            Some(o) if o.get("usage").is_some_and(Value::is_null) => {
                o.remove("usage");
                Some(Bytes::from(format!("data: {v}\n\n")))
            }
            _ => Some(e.raw),
        }
    }

    fn outcome(&self, error: Option<(Value, String)>, cancelled: bool) -> Outcome {
        let response = self.assembly.response();
        let error = error.or_else(|| {
            self.assembly.error().map(|e| {
                let msg = e
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| e.to_string());
                (e.get("code").cloned().unwrap_or(Value::Null), msg)
            })
        });
        Outcome {
            error,
            cancelled,
            first_token: self.first_token,
            ..Outcome::of_response(&response)
        }
        .with_response(response)
    }

    fn record(&mut self, error: Option<(Value, String)>) {
        let o = self.outcome(error, false);
        if let Some(g) = self.guard.take() {
            g.finish(o);
        }
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        if let Some(mut g) = self.guard.take()
            && let Some(info) = g.0.take()
        {
            // An error the upstream reported in the stream wins over the client's abort.
            let abort = Some((json!(499), "The client closed the connection".to_string()));
            let o = self.outcome(
                self.assembly.error().is_none().then_some(abort).flatten(),
                true,
            );
            info.finish(o);
        }
    }
}

async fn next_chunk(mut s: StreamState) -> Option<(Result<Bytes, std::io::Error>, StreamState)> {
    s.guard.as_ref()?;
    loop {
        match tokio::time::timeout(s.timeout, s.resp.chunk()).await {
            Ok(Ok(Some(chunk))) => {
                let events = s.splitter.push(&chunk);
                let mut out = Vec::with_capacity(chunk.len());
                for e in events {
                    if let Some(b) = s.event(e) {
                        out.extend_from_slice(&b);
                    }
                }
                if !out.is_empty() {
                    return Some((Ok(Bytes::from(out)), s));
                }
            }
            Ok(Ok(None)) => {
                let out = s.splitter.finish().and_then(|e| s.event(e));
                s.record(None);
                return out.map(|b| (Ok(b), s));
            }
            Ok(Err(e)) => {
                let msg = format!("The upstream's stream failed: {}", transport_message(&e));
                s.record(Some((json!(502), msg.clone())));
                return Some((Err(std::io::Error::other(msg)), s));
            }
            Err(_) => {
                let msg = "The upstream's stream stalled past the timeout".to_string();
                s.record(Some((json!(504), msg.clone())));
                return Some((Err(std::io::Error::other(msg)), s));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_recorded_without_vectors() {
        let v = json!({"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "usage": {"prompt_tokens": 2, "total_tokens": 2}});
        assert_eq!(
            without_vectors(v),
            json!({"object": "list", "data": [{"object": "embedding", "index": 0}], "usage": {"prompt_tokens": 2, "total_tokens": 2}})
        );
    }

    #[test]
    fn responses_usage_reads_as_chat_usage() {
        let u = json!({"input_tokens": 9, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 14});
        assert_eq!(
            usage_of(&u).unwrap(),
            json!({"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14, "prompt_tokens_details": {"cached_tokens": 2}, "completion_tokens_details": {"reasoning_tokens": 3}})
        );
        // Values the record would reject are left out rather than failing the capture.
        assert_eq!(
            usage_of(&json!({"prompt_tokens": -1, "completion_tokens": 1.5})),
            None
        );
    }
}
