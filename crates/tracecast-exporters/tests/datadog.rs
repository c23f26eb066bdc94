//! The `datadog` destination (LLM Observability spans API) against a real HTTP receiver on
//! 127.0.0.1 playing Datadog's intake.
//!
//! Every request body is checked with [`validate`], which encodes the field tables of Datadog's
//! "LLM Observability HTTP API Reference" (SpansRequestData, SpansPayload, Span, Meta, IO,
//! Message, Error, Metrics; `DataDog/documentation`
//! `content/en/llm_observability/instrumentation/api.md`). Datadog publishes no schema file;
//! `tests/vendors/test_datadog.py` additionally checks the golden body against the TypedDicts of
//! Datadog's own SDK (`ddtrace.llmobs`).

mod common;
use common::big_receiver::BigReceiver;
use common::golden;
use common::outcomes;
use common::setup::{ALL_GROUPS, config};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use tracecast_exporters::datadog::{
    DROPPED_IO, DatadogExporter, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, MAX_SPAN_AGE, ml_app,
};
use tracecast_exporters::{ExportContext, ExportError, Exporter, ItemOutcome, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const KEY: &str = "dd-api-key-0123456789abcdef";

/// 2026-01-01T14:00:00Z, the time the tests' Datadog exporters read as now: the sample
/// records (2026-01-01, before 14:00) are within Datadog's accepted span age.
const TEST_NOW_NS: u64 = 1_767_276_000_000_000_000;

fn test_now() -> u64 {
    TEST_NOW_NS
}

/// The Datadog exporter for `url`, reading [`TEST_NOW_NS`] as the current time.
fn datadog_at(url: &str, extra: Value, now: fn() -> u64) -> Arc<dyn Exporter> {
    let mut cfg = json!({"apiKey": KEY, "mlApp": "shop-bot", "url": url});
    for (k, v) in extra.as_object().expect("object").clone() {
        cfg[k] = v;
    }
    match DatadogExporter::new(&config(cfg), &ExportContext::new(Duration::from_secs(30))) {
        Ok(e) => Arc::new(e.with_clock(now)),
        Err(e) => panic!("datadog exporter: {e}"),
    }
}

fn datadog(rx: &Receiver, extra: Value) -> Arc<dyn Exporter> {
    datadog_at(&rx.url(""), extra, test_now)
}

/// Encodes and sends one batch, returning the outcome and the (first) request.
async fn roundtrip(
    exp: &Arc<dyn Exporter>,
    rx: &Receiver,
    views: &[TraceView<'_>],
) -> (Outcome, Captured) {
    let payload = exp.encode(views).expect("encodes");
    assert_eq!(payload.items, views.len());
    let outcome = exp.send(&payload).await;
    (outcome, rx.next().await)
}

fn body(req: &Captured) -> Value {
    let v: Value = serde_json::from_slice(&req.body).expect("JSON body");
    validate(&v);
    v
}

fn spans(v: &Value) -> Vec<Value> {
    v["data"]["attributes"]["spans"]
        .as_array()
        .expect("spans")
        .clone()
}

fn llm(v: &Value) -> Value {
    spans(v)
        .into_iter()
        .find(|s| s["meta"]["kind"] == "llm")
        .expect("an llm span")
}

fn tags(span: &Value) -> Vec<String> {
    span["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .map(|t| t.as_str().expect("tag string").to_string())
        .collect()
}

fn sha_hex16(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..16])
}

fn sha_dec8(s: &str) -> String {
    let d = Sha256::digest(s.as_bytes());
    u64::from_be_bytes(d[..8].try_into().unwrap()).to_string()
}

// ---- the documented field list ----

fn is_u64(v: &Value) -> bool {
    v.as_u64().is_some()
}

fn keys_within(obj: &Map<String, Value>, allowed: &[&str], what: &str) {
    for k in obj.keys() {
        assert!(
            allowed.contains(&k.as_str()),
            "{what}: field {k:?} is not in Datadog's field list {allowed:?}"
        );
    }
}

fn string_tags(v: &Value, what: &str) {
    for t in v
        .as_array()
        .unwrap_or_else(|| panic!("{what}: tags must be a list"))
    {
        let t = t
            .as_str()
            .unwrap_or_else(|| panic!("{what}: tag {t} is not a string"));
        assert!(t.contains(':') && t.len() <= 200, "{what}: tag {t:?}");
    }
}

fn validate_io(io: &Value, what: &str) {
    let o = io
        .as_object()
        .unwrap_or_else(|| panic!("{what}: IO is an object"));
    keys_within(o, &["value", "messages", "documents", "prompt"], what);
    if let Some(v) = o.get("value") {
        assert!(v.is_string(), "{what}.value is a string");
    }
    if let Some(ms) = o.get("messages") {
        for m in ms.as_array().expect("messages is a list") {
            let m = m.as_object().expect("a message is an object");
            keys_within(
                m,
                &["content", "role", "tool_calls", "tool_results", "tool_id"],
                what,
            );
            assert!(
                m["content"].is_string(),
                "{what}: Message.content is a required string"
            );
            assert!(
                m.get("role").is_none_or(Value::is_string),
                "{what}: Message.role"
            );
            for c in m
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(
                    c["name"].is_string() && c["arguments"].is_object(),
                    "{what}: {c}"
                );
                assert!(
                    c["tool_id"].is_string() && c["type"].is_string(),
                    "{what}: {c}"
                );
            }
        }
    }
}

/// A Datadog span id as its SDKs write one (ddtrace: `str(span.span_id)`): a decimal u64.
fn is_datadog_span_id(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_ok_and(|v| v > 0)
}

/// A Datadog trace id as ddtrace writes one (`format_trace_id`): 32 hex characters, or decimal.
fn is_datadog_trace_id(s: &str) -> bool {
    (s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())) || is_datadog_span_id(s)
}

/// Every `parent_id` is a span sent in the same request, or `"undefined"` (a root), or a
/// Datadog span id in a Datadog trace id (a span of the user's own instrumentation); every
/// trace has a root or such a linked parent, so it shows in Datadog's trace list.
fn validate_parents(spans: &[Value]) {
    let ids: Vec<&str> = spans.iter().filter_map(|s| s["span_id"].as_str()).collect();
    for s in spans {
        let p = s["parent_id"].as_str().expect("parent_id");
        let t = s["trace_id"].as_str().expect("trace_id");
        // The user's own parent, as given (it is in the llm span's metadata).
        let given = spans
            .iter()
            .filter(|x| x["trace_id"] == s["trace_id"] && x["meta"]["kind"] == "llm")
            .any(|x| x["meta"]["metadata"]["parent_span_id"] == p);
        let ok = p == "undefined"
            || ids.contains(&p)
            || (given && is_datadog_span_id(p) && is_datadog_trace_id(t));
        assert!(
            ok,
            "parent_id {p:?} of {} is never sent to Datadog",
            s["name"]
        );
        assert!(
            is_datadog_span_id(s["span_id"].as_str().unwrap()),
            "span_id is decimal"
        );
    }
}

/// Datadog's documented request model, field by field (required fields, types, enums).
fn validate(body: &Value) {
    let root = body.as_object().expect("body is an object");
    keys_within(root, &["data"], "body");
    let data = root["data"].as_object().expect("data [required]");
    keys_within(data, &["type", "attributes"], "SpansRequestData");
    assert_eq!(
        data["type"], "span",
        "SpansRequestData.type [required] = span"
    );
    let attrs = data["attributes"]
        .as_object()
        .expect("attributes [required]");
    keys_within(
        attrs,
        &["ml_app", "spans", "tags", "session_id"],
        "SpansPayload",
    );
    let app = attrs["ml_app"].as_str().expect("ml_app [required] string");
    assert!(
        !app.is_empty()
            && app.len() <= 193
            && app == app.to_lowercase()
            && app
                .chars()
                .all(|c| c.is_alphanumeric() || "_-:./".contains(c))
            && !app.contains("__")
            && !app.ends_with('_'),
        "ml_app {app:?} breaks the application naming guidelines"
    );
    if let Some(t) = attrs.get("tags") {
        string_tags(t, "SpansPayload.tags");
    }
    let spans = attrs["spans"].as_array().expect("spans [required] list");
    assert!(!spans.is_empty());
    validate_parents(spans);
    for s in spans {
        let s = s.as_object().expect("Span is an object");
        keys_within(
            s,
            &[
                "name",
                "span_id",
                "trace_id",
                "parent_id",
                "start_ns",
                "duration",
                "meta",
                "status",
                "apm_trace_id",
                "metrics",
                "session_id",
                "tags",
                // Set by ddtrace on spans whose input/output were dropped.
                "collection_errors",
            ],
            "Span",
        );
        for f in ["name", "span_id", "trace_id", "parent_id"] {
            assert!(
                s[f].as_str().is_some_and(|x| !x.is_empty()),
                "Span.{f} [required] string"
            );
        }
        assert!(is_u64(&s["start_ns"]), "Span.start_ns [required] uint64");
        assert!(
            s["duration"].is_number(),
            "Span.duration [required] float64"
        );
        if let Some(st) = s.get("status") {
            assert!(st == "ok" || st == "error", "Span.status {st}");
        }
        if let Some(t) = s.get("tags") {
            string_tags(t, "Span.tags");
        }
        if let Some(sid) = s.get("session_id") {
            assert!(sid.is_string(), "Span.session_id string");
        }
        let meta = s["meta"].as_object().expect("Span.meta [required]");
        keys_within(
            meta,
            &[
                "kind",
                "error",
                "input",
                "output",
                "metadata",
                "model_name",
                "model_provider",
            ],
            "Meta",
        );
        let kind = meta["kind"].as_str().expect("Meta.kind [required]");
        assert!(
            [
                "agent",
                "workflow",
                "llm",
                "tool",
                "task",
                "embedding",
                "retrieval"
            ]
            .contains(&kind),
            "Meta.kind {kind}"
        );
        if let Some(e) = meta.get("error") {
            let e = e.as_object().expect("Error object");
            keys_within(e, &["message", "stack", "type"], "Error");
            assert!(e.values().all(Value::is_string), "Error fields are strings");
        }
        for io in ["input", "output"] {
            if let Some(v) = meta.get(io) {
                validate_io(v, io);
            }
        }
        if let Some(md) = meta.get("metadata") {
            for (k, v) in md.as_object().expect("metadata is a dict") {
                assert!(
                    v.is_string() || v.is_number() || v.is_boolean(),
                    "metadata.{k} must be a float, bool or string, got {v}"
                );
            }
        }
        if let Some(m) = s.get("metrics") {
            let m = m.as_object().expect("Metrics object");
            assert!(
                kind == "llm" || m.is_empty(),
                "token metrics only on llm spans"
            );
            keys_within(
                m,
                &[
                    // Documented.
                    "input_tokens",
                    "output_tokens",
                    "total_tokens",
                    "time_to_first_token",
                    "time_per_output_token",
                    // Sent by Datadog's SDKs and LiteLLM's Datadog integration.
                    "total_cost",
                    "input_cost",
                    "output_cost",
                    "cache_read_input_tokens",
                    "cache_write_input_tokens",
                    "reasoning_output_tokens",
                ],
                "Metrics",
            );
            assert!(m.values().all(Value::is_number), "Metrics are float64");
        }
    }
}

// ---- a receiver without axum's 2 MB body limit (for the 5 MB request limit) ----

/// Records every request body and answers with the given statuses in order (then 202).
// ---- tests ----

#[tokio::test]
async fn delivers_the_full_record_with_key_headers_and_golden_body() {
    let rx = Receiver::start().await;
    let exp = datadog(
        &rx,
        json!({"mlApp": "Shop Bot", "headers": {"X-Proxy-Token": "p-1", "Content-Type": "text/plain"}}),
    );
    let g = generation(full_record());
    rx.reply(Reply::status(202));
    let (outcome, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, ALL_GROUPS)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/intake/llm-obs/v1/trace/spans");
    assert_eq!(req.header("dd-api-key"), Some(KEY));
    assert_eq!(req.header("x-proxy-token"), Some("p-1"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    let v = body(&req);
    let attrs = &v["data"]["attributes"];
    assert_eq!(attrs["ml_app"], "shop_bot", "normalised ml_app");
    assert_eq!(attrs["tags"], json!(["service:shop_bot"]));

    // parent_span_id `00f067aa0ba902b7` is not a Datadog span id (those are decimal), so it
    // names a span Datadog never receives: the generation keeps its own root (named after the
    // trace), and the parent is only in metadata.
    let sp = spans(&v);
    assert_eq!(sp.len(), 3);
    let trace_id = sha_hex16("order_processing_001");
    assert!(sp.iter().all(|s| s["trace_id"] == trace_id.as_str()));
    assert_eq!(sp[0]["name"], "Order Processing Pipeline");
    assert_eq!(sp[0]["parent_id"], "undefined");
    assert_eq!(sp[1]["name"], "Extraction");
    assert_eq!(sp[1]["meta"]["kind"], "workflow");
    assert_eq!(sp[1]["parent_id"], sp[0]["span_id"]);
    assert_eq!(
        sp[1]["span_id"],
        sha_dec8("order_processing_001\u{1f}Extraction")
    );
    let l = &sp[2];
    assert_eq!(l["name"], "Extract Order Details");
    assert_eq!(l["parent_id"], sp[1]["span_id"]);
    assert_eq!(l["meta"]["metadata"]["parent_span_id"], "00f067aa0ba902b7");
    assert_eq!(
        l["span_id"],
        sha_dec8("gen-1767225600-AbCdEfGhIjKlMnOpQrSt")
    );
    assert_eq!(l["status"], "ok");
    assert_eq!(l["session_id"], "session_abc");
    // 2026-01-01T13:37:42.250Z, latency 1523.5 ms.
    assert_eq!(l["start_ns"], 1_767_274_662_250_000_000u64);
    assert_eq!(l["duration"], 1_523_500_000u64);
    assert_eq!(sp[0]["start_ns"], l["start_ns"]);

    let meta = &l["meta"];
    assert_eq!(meta["model_name"], "openai/gpt-4o-2024-08-06");
    assert_eq!(meta["model_provider"], "openai");
    assert_eq!(
        meta["input"]["messages"],
        json!([
            {"role": "system", "content": "You extract orders."},
            {"role": "user", "content": "Process this order: 2 widgets"}
        ])
    );
    assert_eq!(
        meta["output"]["messages"],
        json!([{"role": "assistant", "content": "Looking up the SKU.", "tool_calls": [
            {"name": "lookup_sku", "arguments": {"name": "widget"}, "tool_id": "call_1", "type": "function"}
        ]}])
    );
    let md = &meta["metadata"];
    assert_eq!(md["model_name"], "openai/gpt-4o-2024-08-06");
    assert_eq!(md["requested_model"], "openai/gpt-4o");
    assert_eq!(md["temperature"], 0.2);
    assert_eq!(md["max_tokens"], 256);
    assert_eq!(md["trace_name"], "Order Processing Pipeline");
    assert_eq!(md["trace_id"], "order_processing_001");
    assert_eq!(md["finish_reason"], "tool_calls");
    assert_eq!(md["order_id"], "ORD-12345");
    assert_eq!(md["attempt"], 2);
    assert_eq!(md["vip"], true);
    assert_eq!(md["labels"], r#"["a","b"]"#, "arrays as JSON text");
    assert_eq!(md["customer"], r#"{"tier":"gold"}"#, "objects as JSON text");
    assert!(md.get("nothing").is_none(), "null is not sent");
    assert_eq!(md["openrouter.is_byok"], false);
    assert_eq!(md["openrouter.external_user"], "ext-42");
    assert_eq!(md["openrouter.data_region"], "europe");
    assert_eq!(md["openrouter.http_referer"], "https://shop.example");

    let m = &l["metrics"];
    assert_eq!(m["input_tokens"], 120);
    assert_eq!(m["output_tokens"], 30);
    assert_eq!(m["total_tokens"], 150);
    assert_eq!(m["cache_read_input_tokens"], 100);
    assert_eq!(m["cache_write_input_tokens"], 4);
    assert_eq!(m["reasoning_output_tokens"], 8);
    assert_eq!(m["total_cost"], 0.00123);
    assert_eq!(m["input_cost"], 0.00083);
    assert_eq!(m["output_cost"], 0.0004);
    assert!((m["time_to_first_token"].as_f64().unwrap() - 0.31025).abs() < 1e-12);
    let t = tags(l);
    for want in [
        "user_id:user_12345",
        "session_id:session_abc",
        "model_name:openai/gpt-4o-2024-08-06",
        "model_provider:openai",
    ] {
        assert!(t.contains(&want.to_string()), "{want} in {t:?}");
    }

    golden::assert_json("datadog.json", "Datadog body", &v);
}

fn record(trace: Value) -> Value {
    let mut r = secret_record();
    r["id"] = json!("gen-names");
    r["model"] = json!("openai/gpt-4o");
    r["trace"] = trace;
    r
}

async fn names(trace: Value) -> Vec<(String, String, String)> {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let g = generation(record(trace));
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let v = body(&req);
    spans(&v)
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["meta"]["kind"].as_str().unwrap().to_string(),
                s["parent_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn supported_metadata_keys_name_the_spans() {
    // trace_id -> Trace ID; trace_name -> root span; span_name -> workflow span;
    // generation_name -> llm span.
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let g = generation(record(json!({
        "trace_id": "support-42", "trace_name": "Customer Support Bot",
        "span_name": "Triage", "generation_name": "Classify"
    })));
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let v = body(&req);
    let sp = spans(&v);
    assert_eq!(sp.len(), 3);
    assert!(
        sp.iter()
            .all(|s| s["trace_id"] == sha_hex16("support-42").as_str())
    );
    assert_eq!(sp[0]["name"], "Customer Support Bot");
    assert_eq!(sp[0]["meta"]["kind"], "workflow");
    assert_eq!(sp[0]["parent_id"], "undefined", "the root");
    assert_eq!(sp[1]["name"], "Triage");
    assert_eq!(sp[1]["meta"]["kind"], "workflow");
    assert_eq!(sp[1]["parent_id"], sp[0]["span_id"]);
    assert_eq!(sp[1]["span_id"], sha_dec8("support-42\u{1f}Triage"));
    assert_eq!(sp[2]["name"], "Classify");
    assert_eq!(sp[2]["meta"]["kind"], "llm");
    assert_eq!(sp[2]["parent_id"], sp[1]["span_id"]);
    // Content and metrics only on the llm span.
    assert!(sp[0]["meta"].get("input").is_none() && sp[0].get("metrics").is_none());

    // No names: one root llm span named after the model.
    assert_eq!(
        names(json!({})).await,
        vec![("openai/gpt-4o".into(), "llm".into(), "undefined".into())]
    );
    // trace_name alone names the root llm span.
    assert_eq!(
        names(json!({"trace_name": "Doc"})).await,
        vec![("Doc".into(), "llm".into(), "undefined".into())]
    );
    // trace_name and generation_name: a root workflow span and the llm span.
    let n = names(json!({"trace_name": "Doc", "generation_name": "Gen"})).await;
    assert_eq!(n.len(), 2);
    assert_eq!((n[0].0.as_str(), n[0].1.as_str()), ("Doc", "workflow"));
    assert_eq!((n[1].0.as_str(), n[1].1.as_str()), ("Gen", "llm"));
    // generation_name alone.
    assert_eq!(
        names(json!({"generation_name": "Gen"})).await,
        vec![("Gen".into(), "llm".into(), "undefined".into())]
    );
    // span_name alone: workflow root, llm child.
    let n = names(json!({"span_name": "Step"})).await;
    assert_eq!((n[0].0.as_str(), n[0].2.as_str()), ("Step", "undefined"));
    assert_eq!(n[1].0, "openai/gpt-4o");
    // Without trace_id, the trace id derives from the generation id.
    let g = generation(record(json!({})));
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    assert_eq!(llm(&body(&req))["trace_id"], sha_hex16("gen-names"));
}

#[tokio::test]
async fn user_session_tags_environment_and_custom_metadata() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({"mlApp": "production-app"}));
    let mut r = record(json!({
        "trace_name": "Customer Support Bot", "environment": "production", "release": "v1.2.3",
        "team": "support", "ticket_id": "TICKET-1234", "model_name": "custom-collides"
    }));
    r["user"] = json!("user_12345");
    r["session_id"] = json!("session_abc");
    let g = generation(r);
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let v = body(&req);
    assert_eq!(
        v["data"]["attributes"]["tags"],
        json!(["service:production-app"])
    );
    let l = llm(&v);
    let t = tags(&l);
    for want in [
        "user_id:user_12345",
        "session_id:session_abc",
        "env:production",
        "version:v1.2.3",
    ] {
        assert!(t.contains(&want.to_string()), "{want} in {t:?}");
    }
    assert_eq!(l["session_id"], "session_abc");
    let md = &l["meta"]["metadata"];
    assert_eq!(md["team"], "support");
    assert_eq!(md["ticket_id"], "TICKET-1234");
    assert_eq!(md["environment"], "production");
    assert_eq!(md["model_name"], "openai/gpt-4o", "ours wins");
    assert_eq!(
        md["trace.model_name"], "custom-collides",
        "the custom value is kept"
    );

    // No user and no session: no such tags, no session_id.
    let mut anon = record(json!({}));
    anon.as_object_mut().unwrap().remove("user");
    anon.as_object_mut().unwrap().remove("session_id");
    let g = generation(anon);
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let l = llm(&body(&req));
    assert!(l.get("session_id").is_none());
    assert!(
        !tags(&l)
            .iter()
            .any(|t| t.starts_with("user_id:") || t.starts_with("session_id:"))
    );
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let (outcome, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, opts)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(!text.contains("SECRET"), "content reached Datadog: {text}");
    let l = llm(&body(&req));
    assert!(l["meta"].get("input").is_none() && l["meta"].get("output").is_none());
    assert_eq!(l["metrics"]["input_tokens"], 3);
    assert_eq!(l["metrics"]["output_tokens"], 4);
    assert_eq!(l["metrics"]["total_tokens"], 7);
    assert_eq!(l["metrics"]["total_cost"], 0.5);
    assert_eq!(l["meta"]["metadata"]["env"], "prod");
    assert_eq!(l["meta"]["metadata"]["tool_call_names"], "lookup");
    assert!(tags(&l).contains(&"user_id:u-1".to_string()));

    // Without privacy mode the same record does carry its content.
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    assert!(String::from_utf8_lossy(&req.body).contains("SECRET-PROMPT"));
}

#[tokio::test]
async fn failed_generations_are_error_spans() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let mut r = record(json!({"span_name": "Step"}));
    r["error"] = json!({"code": 502, "message": "upstream failed"});
    let g = generation(r);
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let v = body(&req);
    for s in spans(&v) {
        assert_eq!(s["status"], "error");
        assert_eq!(
            s["meta"]["error"],
            json!({"message": "upstream failed", "type": "502"})
        );
    }
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let g = generation(secret_record());
    let payload = exp
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    rx.reply(Reply::status(202));
    assert_eq!(exp.send(&payload).await, Outcome::Delivered);
    rx.reply(Reply::status(429).header("retry-after", "7"));
    outcomes::assert_retry(exp.send(&payload).await, 429, 7);
    rx.reply(Reply::status(403).body(r#"{"errors":["Forbidden"]}"#));
    assert!(matches!(
        exp.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(400).body(r#"{"errors":["bad span"]}"#));
    match exp.send(&payload).await {
        Outcome::Rejected { status, error } => {
            assert_eq!(status, Some(400));
            assert!(error.contains("bad span"), "{error}");
        }
        other => panic!("400: {other:?}"),
    }
    rx.reply(Reply::status(503));
    assert!(matches!(
        exp.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    for _ in 0..5 {
        rx.next().await;
    }
}

#[tokio::test]
async fn an_oversized_span_keeps_everything_but_its_content() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let mut r = secret_record();
    r["request"]["messages"][0]["content"] = json!("x".repeat(2 * MAX_EVENT_BYTES));
    let g = generation(r);
    let (outcome, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    assert_eq!(outcome, Outcome::Delivered);
    assert!(req.body.len() < MAX_EVENT_BYTES);
    let l = llm(&body(&req));
    assert_eq!(l["meta"]["input"], json!({"value": DROPPED_IO}));
    assert_eq!(l["meta"]["output"], json!({"value": DROPPED_IO}));
    assert_eq!(l["meta"]["metadata"]["tracecast.truncated"], true);
    assert_eq!(l["collection_errors"], json!(["dropped_io"]));
    assert!(tags(&l).contains(&"tracecast_truncated:true".to_string()));
    assert_eq!(l["metrics"]["input_tokens"], 3, "metrics are kept");

    // A huge custom value is shortened too, visibly.
    let mut r = secret_record();
    r["trace"]["blob"] = json!("y".repeat(2 * MAX_EVENT_BYTES));
    let g = generation(r);
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let l = llm(&body(&req));
    let blob = l["meta"]["metadata"]["blob"].as_str().unwrap();
    assert!(
        blob.len() < 2048 && blob.ends_with("…[truncated]"),
        "{}",
        blob.len()
    );
}

#[tokio::test]
async fn a_batch_over_5_mb_is_split_and_partial_answers_are_per_trace() {
    let rx = BigReceiver::start(202, vec![(202, None), (429, Some("3"))]).await;
    let exp = datadog_at(&rx.url, json!({"mlApp": "a"}), test_now);
    // Eight spans of ~900 KB: under the event limit, over the request limit together.
    let gens: Vec<_> = (0..8)
        .map(|i| {
            let mut r = secret_record();
            r["id"] = json!(format!("gen-big-{i}"));
            r["request"]["messages"][0]["content"] = json!("z".repeat(900_000));
            generation(r)
        })
        .collect();
    let views: Vec<_> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let payload = exp.encode(&views).unwrap();
    let outcome = exp.send(&payload).await;
    let bodies = rx.bodies();
    assert_eq!(bodies.len(), 2, "the second answer (429) stops the rest");
    assert!(bodies.iter().all(|b| b.len() <= MAX_REQUEST_BYTES));
    let first: Value = serde_json::from_slice(&bodies[0]).unwrap();
    validate(&first);
    let n1 = spans(&first).len();
    assert!(n1 > 1 && n1 < 8, "{n1}");
    match outcome {
        Outcome::Partial(items) => {
            assert_eq!(items.len(), 8);
            assert!(items[..n1].iter().all(|i| *i == ItemOutcome::Delivered));
            assert!(
                items[n1..]
                    .iter()
                    .all(|i| matches!(i, ItemOutcome::Retry { error } if error.contains("429")))
            );
        }
        other => panic!("expected per-trace answers, got {other:?}"),
    }
    // The engine retries the rest: all of them arrive, still within the limit.
    let rest: Vec<_> = views[n1..].to_vec();
    let payload = exp.encode(&rest).unwrap();
    assert_eq!(exp.send(&payload).await, Outcome::Delivered);
    let later = &rx.bodies()[2..];
    let got: usize = later
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_slice(b).unwrap();
            validate(&v);
            spans(&v).len()
        })
        .sum();
    assert_eq!(got, rest.len());
    // A 429 on the first request of a batch is a plain retry with its Retry-After.
    let rx = BigReceiver::start(202, vec![(429, Some("3"))]).await;
    let exp = datadog_at(&rx.url, json!({"mlApp": "a"}), test_now);
    let payload = exp.encode(&views).unwrap();
    outcomes::assert_retry(exp.send(&payload).await, 429, 3);
    assert_eq!(rx.bodies().len(), 1);
}

#[tokio::test]
async fn test_connection_validates_the_api_key() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({"headers": {"X-Proxy-Token": "p-1"}}));
    rx.reply(Reply::status(200).body(r#"{"valid":true}"#));
    let ok = exp.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(200));
    assert_eq!(ok.message, "Datadog accepted the API key (200)");
    let req = rx.next().await;
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/api/v1/validate");
    assert_eq!(req.header("dd-api-key"), Some(KEY));
    assert_eq!(req.header("x-proxy-token"), Some("p-1"));

    rx.reply(Reply::status(403).body(r#"{"errors":["Forbidden"]}"#));
    let check = exp.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(403));
    assert_eq!(check.message, "Datadog rejected the API key (403)");
    assert!(!check.message.contains(KEY));

    rx.reply(Reply::status(500).body("down"));
    let check = exp.test_connection().await;
    assert!(!check.ok);
    assert_eq!(
        check.message,
        "Datadog answered 500 to GET /api/v1/validate: down"
    );
    for _ in 0..2 {
        rx.next().await;
    }

    let refused = build(
        DestinationType::Datadog,
        &config(json!({"apiKey": KEY, "mlApp": "a", "url": refused_url().await})),
        &ExportContext::new(Duration::from_secs(5)),
    )
    .unwrap();
    let check = refused.test_connection().await;
    assert!(!check.ok && check.status.is_none());
    assert!(
        check
            .message
            .starts_with("Datadog could not be reached: connection failed"),
        "{check:?}"
    );
}

#[tokio::test]
async fn unusual_inputs_are_encoded_without_loss_or_panic() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let shapes = [
        json!({"prompt": ["line one", "line two"]}),
        json!({"prompt": {"weird": true}}),
        json!({"input": "plain responses input"}),
        json!({"input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"}]}]}),
        json!({"input": [{"type": "function_call_output", "output": "42"}]}),
        json!({"messages": [{"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:..."}}]}, {"role": "assistant", "content": null, "tool_calls": [{"id": "c9", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}]}),
    ];
    let mut values = Vec::new();
    for (i, request) in shapes.into_iter().enumerate() {
        let mut r = secret_record();
        r["id"] = json!(format!("gen-shape-{i}"));
        r["request"] = request;
        r["error"] = json!({"code": null, "message": "x"});
        let g = generation(r);
        let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
        values.push(llm(&body(&req))["meta"]["input"].clone());
    }
    assert_eq!(values[0], json!({"value": "line one\nline two"}));
    assert_eq!(values[1], json!({"value": r#"{"weird":true}"#}));
    assert_eq!(values[2], json!({"value": "plain responses input"}));
    assert_eq!(
        values[3],
        json!({"messages": [{"role": "user", "content": "hi"}]})
    );
    assert_eq!(
        values[4],
        json!({"value": r#"[{"output":"42","type":"function_call_output"}]"#})
    );
    // (Ingest replaces multimodal parts with a text marker before any exporter sees them.)
    assert_eq!(values[5]["messages"][0]["content"], "look\n[image omitted]");
    assert_eq!(values[5]["messages"][1]["content"], "");
    assert_eq!(
        values[5]["messages"][1]["tool_calls"][0]["arguments"],
        json!({"value": "not json"})
    );
}

#[test]
fn config_is_read_and_checked() {
    let ctx = ExportContext::new(Duration::from_secs(5));
    let err = |v: Value| match build(DestinationType::Datadog, &config(v), &ctx) {
        Err(ExportError::Config(m)) => m,
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("expected a config error"),
    };
    assert_eq!(err(json!({"mlApp": "a"})), "apiKey is required");
    assert_eq!(err(json!({"apiKey": "k"})), "mlApp is required");
    assert!(err(json!({"apiKey": "k", "mlApp": "___"})).starts_with("mlApp: "));
    assert!(err(json!({"apiKey": "k", "mlApp": "a", "url": "ftp://x"})).starts_with("url: "));
    assert!(err(json!({"apiKey": "k", "mlApp": "a", "url": "not a url"})).starts_with("url: "));
    assert!(
        err(json!({"apiKey": "k", "mlApp": "a", "headers": {"Bad Name": "v"}}))
            .contains("not a valid header name")
    );
    // The default site, and a full intake URL is accepted as a base.
    assert!(
        build(
            DestinationType::Datadog,
            &config(json!({"apiKey": "k", "mlApp": "a"})),
            &ctx
        )
        .is_ok()
    );
    assert!(
        build(
            DestinationType::Datadog,
            &config(json!({"apiKey": "k", "mlApp": "a", "url": "https://api.us5.datadoghq.com/api/intake/llm-obs/v1/trace/spans"})),
            &ctx
        )
        .is_ok()
    );
    assert_eq!(ml_app("Production App!!").unwrap(), "production_app");
    assert_eq!(ml_app("My__App_").unwrap(), "my_app");
    assert_eq!(ml_app("team/app:v1.2-x").unwrap(), "team/app:v1.2-x");
    assert_eq!(ml_app(&"a".repeat(300)).unwrap().len(), 193);
}

#[tokio::test]
async fn a_datadog_parent_in_a_datadog_trace_is_linked_and_any_other_stays_rooted() {
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    async fn top_span(exp: &Arc<dyn Exporter>, rx: &Receiver, trace: Value) -> Value {
        let g = generation(record(trace));
        let (_, req) = roundtrip(exp, rx, &[TraceView::new(&g, TraceOptions::default())]).await;
        spans(&body(&req))[0].clone()
    }
    let top = |trace: Value| top_span(&exp, &rx, trace);
    // The user's own ddtrace span (decimal span id) in the user's own 128-bit trace.
    let s = top(json!({
        "trace_id": "0AF7651916CD43DD8448EB211C80319C", "parent_span_id": "1234567890123",
        "generation_name": "Classify"
    }))
    .await;
    assert_eq!(s["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(s["parent_id"], "1234567890123");
    assert_eq!(s["name"], "Classify");
    // A 64-bit trace id, as ddtrace writes it (decimal).
    let s = top(json!({"trace_id": "987654321", "parent_span_id": "42"})).await;
    assert_eq!(
        (s["trace_id"].as_str(), s["parent_id"].as_str()),
        (Some("987654321"), Some("42"))
    );
    // A decimal parent in a trace Datadog's spans cannot share (not a Datadog trace id).
    let s = top(json!({
        "trace_id": "order-7", "trace_name": "Orders", "parent_span_id": "42",
        "generation_name": "Classify"
    }))
    .await;
    assert_eq!(
        (s["name"].as_str(), s["parent_id"].as_str()),
        (Some("Orders"), Some("undefined"))
    );
    // An OTLP (hex) parent id, or any text, is never a Datadog span: rooted, kept in metadata.
    // An all-zero id is no parent at all (OTLP's invalid id): rooted, nothing in metadata.
    for (parent, kept) in [
        ("00f067aa0ba902b7", json!("00f067aa0ba902b7")),
        ("step-3", json!("step-3")),
        ("0", Value::Null),
    ] {
        let g = generation(record(json!({
            "trace_id": "0af7651916cd43dd8448eb211c80319c", "parent_span_id": parent
        })));
        let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
        let v = body(&req);
        let sp = spans(&v);
        assert_eq!(sp[0]["parent_id"], "undefined", "{parent}");
        assert_eq!(
            llm(&v)["meta"]["metadata"]["parent_span_id"],
            kept,
            "{parent}"
        );
    }
}

#[tokio::test]
async fn spans_older_than_datadog_accepts_are_restamped_with_their_original_time() {
    // 2026-01-02T14:00:00Z: the sample record (2026-01-01T00:00:00Z) is 38 h old.
    fn later() -> u64 {
        TEST_NOW_NS + 24 * 3600 * 1_000_000_000
    }
    let rx = Receiver::start().await;
    let exp = datadog_at(&rx.url(""), json!({}), later);
    let mut r = record(json!({"trace_id": "t-old", "trace_name": "Old", "span_name": "Step"}));
    r["latency"] = json!(2000.0);
    let g = generation(r);
    let original = TraceView::new(&g, TraceOptions::default()).start_unix_nanos();
    let (outcome, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    assert_eq!(outcome, Outcome::Delivered);
    let v = body(&req);
    let sp = spans(&v);
    assert_eq!(sp.len(), 3);
    for s in &sp {
        assert_eq!(s["start_ns"], later() - 2_000_000_000, "{}", s["name"]);
        assert_eq!(
            s["meta"]["metadata"]["tracecast.original_start_ns"],
            original
        );
        assert_eq!(s["meta"]["metadata"]["tracecast.restamped"], true);
        assert!(tags(s).contains(&"tracecast_restamped:true".to_string()));
    }
    // Within the accepted age: sent at its own time, unmarked.
    let young = || TEST_NOW_NS;
    let exp = datadog_at(&rx.url(""), json!({}), young);
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    let l = llm(&body(&req));
    assert_eq!(l["start_ns"], original);
    assert!(
        l["meta"]["metadata"]
            .get("tracecast.original_start_ns")
            .is_none()
    );
    assert!(MAX_SPAN_AGE < Duration::from_secs(24 * 3600));
}

#[tokio::test]
async fn input_and_output_up_to_datadogs_5_mb_event_limit_are_sent_whole() {
    let rx = BigReceiver::start(202, vec![]).await;
    let exp = datadog_at(&rx.url, json!({"mlApp": "a"}), test_now);
    let mut r = secret_record();
    // 3 MB: over the old 1 MB cut, under ddtrace's 5 MB event limit.
    r["request"]["messages"][0]["content"] = json!("w".repeat(3_000_000));
    let g = generation(r);
    let payload = exp
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exp.send(&payload).await, Outcome::Delivered);
    let bodies = rx.bodies();
    let v: Value = serde_json::from_slice(&bodies[0]).unwrap();
    validate(&v);
    let l = llm(&v);
    assert_eq!(
        l["meta"]["input"]["messages"][0]["content"]
            .as_str()
            .map(str::len),
        Some(3_000_000)
    );
    assert!(l.get("collection_errors").is_none());
    assert_eq!(MAX_EVENT_BYTES, 5_000_000);
}

#[tokio::test]
async fn the_default_settings_body_matches_its_golden() {
    // What users get by default: no metadata group, privacy mode off.
    let rx = Receiver::start().await;
    let exp = datadog(&rx, json!({}));
    let g = generation(full_record());
    let (outcome, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    assert_eq!(outcome, Outcome::Delivered);
    let v = body(&req);
    let md = &llm(&v)["meta"]["metadata"];
    assert!(md.get("openrouter.is_byok").is_none(), "cost group off");
    assert!(
        md.get("openrouter.http_referer").is_none(),
        "request group off"
    );
    assert_eq!(llm(&v)["metrics"]["total_cost"], 0.00123);
    golden::assert_json(
        "datadog_default.json",
        "Datadog body (default settings)",
        &v,
    );
}
