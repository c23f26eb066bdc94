//! Shared plumbing of the end-to-end delivery tests: fast delivery settings, generation
//! records and their NDJSON ingest, destinations created through the API, waiting on a
//! destination's status, and small readers of what a receiver captured.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracecast_server::settings::Settings;

use super::receiver::{Captured, Receiver};
use super::{Resp, TestServer};

/// The destinations API.
pub const DEST: &str = "/api/v1/observability/destinations";

/// Delivery timings short enough for tests.
pub fn fast(s: &mut Settings) {
    s.delivery.linger_ms = 20;
    s.delivery.retry_base_ms = 50;
    s.delivery.retry_max_delay_secs = 1;
    s.delivery.request_timeout_secs = 2;
    s.delivery.auth_probe_secs = 1;
    s.delivery.config_refresh_ms = 200;
}

/// `fast` with another request timeout and longest retry delay.
pub fn fast_with(request_timeout_secs: u64, retry_max_delay_secs: u64) -> impl Fn(&mut Settings) {
    move |s: &mut Settings| {
        fast(s);
        s.delivery.request_timeout_secs = request_timeout_secs;
        s.delivery.retry_max_delay_secs = retry_max_delay_secs;
    }
}

/// The receiver's base URL (its `/v1/traces` URL without that path): what a user types as
/// `baseUrl` or `endpoint`.
pub fn base_url(rx: &Receiver) -> String {
    rx.url.trim_end_matches("/v1/traces").to_string()
}

/// A generation record: gpt-4o with a prompt (`PROMPT-TEXT`), a completion (`COMPLETION-TEXT`),
/// usage 12/5/17 in the response, user `user-1`, session `session-e2e` and a small trace.
pub fn record(id: &str) -> Value {
    json!({
        "id": id,
        "model": "openai/gpt-4o",
        "provider_name": "OpenAI",
        "created_at": "2026-03-01T12:00:00.000Z",
        "latency": 1234.0,
        "finish_reason": "stop",
        "total_cost": 0.0015,
        "user": "user-1",
        "session_id": "session-e2e",
        "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}], "temperature": 0.3},
        "response": {"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}},
        "trace": {"trace_id": "workflow-1", "trace_name": "Doc pipeline", "generation_name": "Summarise", "env": "prod"}
    })
}

/// `record(id)` with these top-level fields set (replaced whole) or, where `null`, removed.
pub fn record_with(id: &str, fields: Value) -> Value {
    let mut r = record(id);
    if let (Value::Object(m), Value::Object(f)) = (&mut r, fields) {
        for (k, v) in f {
            if v.is_null() {
                m.remove(&k);
            } else {
                m.insert(k, v);
            }
        }
    }
    r
}

/// The response of `record`, without usage (for records that carry it at the top level).
pub fn response_without_usage() -> Value {
    json!({"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}]})
}

/// The usage of `record` (12 prompt, 5 completion, 17 total tokens).
pub fn usage() -> Value {
    json!({"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17})
}

/// One record per id `{prefix}-{i}`, `i` in `0..n`, built by `make`.
pub fn numbered(prefix: &str, n: usize, make: impl Fn(&str) -> Value) -> Vec<Value> {
    (0..n).map(|i| make(&format!("{prefix}-{i}"))).collect()
}

/// Records as NDJSON: one JSON document a line.
pub fn ndjson(records: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        out.extend(serde_json::to_vec(r).unwrap());
        out.push(b'\n');
    }
    out
}

/// Posts the records to the ingest API with `key`; returns the response.
pub async fn ingest_resp(s: &TestServer, key: &str, records: &[Value]) -> Resp {
    let r = s
        .http
        .post(format!("{}/api/v1/generations", s.base))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(records))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap_or_default();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

/// Posts the records to the ingest API with `key`; returns the status code.
pub async fn ingest_status(s: &TestServer, key: &str, records: &[Value]) -> u16 {
    ingest_resp(s, key, records).await.status.as_u16()
}

/// Posts the records to the ingest API with `key`, which must accept them (202).
pub async fn ingest(s: &TestServer, key: &str, records: &[Value]) {
    let r = ingest_resp(s, key, records).await;
    assert_eq!(r.status, 202, "{}", r.text);
}

/// `body` with the top-level fields of `extra` (an object, or anything else for none) set.
pub fn merged(mut body: Value, extra: Value) -> Value {
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    body
}

/// Creates a destination from `body` with the fields of `extra` set; it must be created
/// (201). Returns its id and the response.
pub async fn create_destination(s: &TestServer, body: Value, extra: Value) -> (String, Resp) {
    let r = s.post(DEST, merged(body, extra)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.body["data"]["id"].as_str().unwrap().to_string(), r)
}

/// Creates a destination of this type, name and config (plus `extra` fields); returns its id.
pub async fn create(s: &TestServer, kind: &str, name: &str, config: Value, extra: Value) -> String {
    let body = json!({"type": kind, "name": name, "config": config});
    create_destination(s, body, extra).await.0
}

/// Tests a destination's connection through the API.
pub async fn test_connection(s: &TestServer, id: &str) -> Resp {
    s.post(&format!("{DEST}/{id}/test"), json!({})).await
}

/// A destination's status (`data` of `GET …/status`, which must answer 200).
pub async fn status(s: &TestServer, id: &str) -> Value {
    let r = s.get(&format!("{DEST}/{id}/status")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].clone()
}

/// Waits up to 20 seconds for the destination's status to satisfy `cond`; returns it.
pub async fn wait_status(
    s: &TestServer,
    id: &str,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    wait_status_within(s, id, 20, what, cond).await
}

/// Waits up to `secs` for the destination's status to satisfy `cond`; returns it.
pub async fn wait_status_within(
    s: &TestServer,
    id: &str,
    secs: u64,
    what: &str,
    cond: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let st = status(s, id).await;
        if cond(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits up to `secs` for `cond`, polling every 20 ms.
pub async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `needle` stands in `haystack` (protobuf carries strings verbatim).
pub fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// A captured request's header as text.
pub fn header<'a>(r: &'a Captured, name: &str) -> Option<&'a str> {
    r.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Captured requests answered with a 2xx.
pub fn accepted(rx: &Receiver) -> Vec<Captured> {
    rx.requests()
        .into_iter()
        .filter(|r| r.answered < 300)
        .collect()
}

/// Whether `id` stands in `body` as a whole string value, not as part of a longer one (`x-1`
/// must not match inside `x-10`): a JSON string (`"x-1"`), or a protobuf string field (its
/// varint length, then its bytes).
pub fn has_id(body: &[u8], id: &str) -> bool {
    let quoted = format!("\"{id}\"");
    if contains(body, &quoted) {
        return true;
    }
    let mut framed = Vec::with_capacity(id.len() + 2);
    let mut len = id.len();
    while len >= 0x80 {
        framed.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    framed.push(len as u8);
    framed.extend_from_slice(id.as_bytes());
    body.windows(framed.len()).any(|w| w == framed.as_slice())
}

/// Those of `ids` found, as whole ids ([`has_id`]), in the bodies of accepted requests
/// (protobuf or JSON: an id is a string attribute, so its bytes appear verbatim).
pub fn delivered_ids(rx: &Receiver, ids: &[&str]) -> Vec<String> {
    let accepted = accepted(rx);
    ids.iter()
        .filter(|id| accepted.iter().any(|r| has_id(&r.body, id)))
        .map(|id| id.to_string())
        .collect()
}

/// Tests a connection for a destination body (not created) through the API.
pub async fn test_config(s: &TestServer, body: Value) -> Resp {
    s.post(&format!("{DEST}/test"), body).await
}

/// Waits for the destination to pause; its reason must contain `reason`. Returns the status.
pub async fn wait_paused(s: &TestServer, id: &str, reason: &str) -> Value {
    let st = wait_status(s, id, "paused", |st| st["state"] == "paused").await;
    assert!(
        st["reason"].as_str().unwrap_or_default().contains(reason),
        "{st}"
    );
    st
}

/// Patches the destination's config with `config`; it must answer 200.
pub async fn patch_config(s: &TestServer, id: &str, config: Value) -> Resp {
    let r = s
        .patch(&format!("{DEST}/{id}"), json!({ "config": config }))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    r
}

/// The first request was answered 429 with `Retry-After: 1`, and the next one waited for it.
pub fn assert_retry_after_honoured(first: &Captured, next: &Captured) {
    assert_eq!(first.answered, 429);
    let gap = next.at - first.at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
}
