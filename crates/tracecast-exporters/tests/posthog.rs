//! The `posthog` destination (`$ai_generation` events through the capture batch API) against a
//! real HTTP receiver on 127.0.0.1 playing PostHog.
//!
//! Every request body is checked with [`validate`]: the capture API's batch envelope
//! (posthog.com/docs/api/post-only-endpoints) and the `$ai_generation` property list of
//! PostHog's LLM analytics manual-capture reference, with its types. PostHog publishes no schema
//! file; `tests/vendors/test_posthog.py` also checks the golden event against the `posthog`
//! package's own message TypedDicts and the `$ai_*` names its AI SDK sends.

mod common;
use common::big_receiver::BigReceiver;
use common::golden;
use common::outcomes;
use common::setup::{ALL_GROUPS, config};

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tracecast_exporters::posthog::{DROPPED, MAX_EVENT_BYTES, MAX_REQUEST_BYTES, TEST_DISTINCT_ID};
use tracecast_exporters::{ExportContext, ExportError, Exporter, ItemOutcome, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const KEY: &str = "phc_TestProjectKey0123456789";

fn posthog_at(url: &str, extra: Value, timeout: Duration) -> Arc<dyn Exporter> {
    let mut cfg = json!({"apiKey": KEY, "endpoint": url});
    for (k, v) in extra.as_object().expect("object").clone() {
        cfg[k] = v;
    }
    match build(
        DestinationType::Posthog,
        &config(cfg),
        &ExportContext::new(timeout),
    ) {
        Ok(e) => e,
        Err(e) => panic!("posthog exporter: {e}"),
    }
}

fn posthog(rx: &Receiver, extra: Value) -> Arc<dyn Exporter> {
    posthog_at(&rx.url(""), extra, Duration::from_secs(5))
}

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

fn events(v: &Value) -> Vec<Value> {
    v["batch"].as_array().expect("batch").clone()
}

/// The single event of a one-trace request.
async fn one(exp: &Arc<dyn Exporter>, rx: &Receiver, record: Value, opts: TraceOptions) -> Value {
    let g = generation(record);
    let (outcome, req) = roundtrip(exp, rx, &[TraceView::new(&g, opts)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    let ev = events(&body(&req));
    assert_eq!(ev.len(), 1);
    ev[0].clone()
}

// ---- the documented field list ----

#[derive(Clone, Copy, Debug)]
enum T {
    Str,
    Int,
    Num,
    Bool,
    List,
    Obj,
}

fn is(t: T, v: &Value) -> bool {
    match t {
        T::Str => v.is_string(),
        T::Int => v.is_u64() || v.is_i64(),
        T::Num => v.is_number(),
        T::Bool => v.is_boolean(),
        T::List => v.is_array(),
        T::Obj => v.is_object(),
    }
}

/// `$ai_generation` properties of PostHog's manual-capture reference and LLM analytics docs
/// (plus `$ai_lib`, `$ai_stop_reason`, `$ai_error_type`, `$ai_model_parameters`, which its
/// AI SDK sends), with their types.
const AI_PROPERTIES: &[(&str, T)] = &[
    ("$ai_trace_id", T::Str),
    ("$ai_session_id", T::Str),
    ("$ai_span_id", T::Str),
    ("$ai_span_name", T::Str),
    ("$ai_parent_id", T::Str),
    ("$ai_model", T::Str),
    ("$ai_provider", T::Str),
    ("$ai_input", T::List),
    ("$ai_input_tokens", T::Int),
    ("$ai_output_choices", T::List),
    ("$ai_output_tokens", T::Int),
    ("$ai_latency", T::Num),
    ("$ai_time_to_first_token", T::Num),
    ("$ai_stream", T::Bool),
    ("$ai_tools", T::List),
    ("$ai_http_status", T::Int),
    ("$ai_base_url", T::Str),
    ("$ai_request_url", T::Str),
    ("$ai_is_error", T::Bool),
    ("$ai_error", T::Str),
    ("$ai_error_type", T::Str),
    ("$ai_temperature", T::Num),
    ("$ai_max_tokens", T::Int),
    ("$ai_input_cost_usd", T::Num),
    ("$ai_output_cost_usd", T::Num),
    ("$ai_total_cost_usd", T::Num),
    // Cost passthrough (PostHog/posthog#88457) and cache accounting (manual-capture reference).
    ("$ai_cost_passthrough", T::Bool),
    ("$ai_cache_reporting_exclusive", T::Bool),
    ("$ai_total_tokens", T::Int),
    ("$ai_cache_read_input_tokens", T::Int),
    ("$ai_cache_creation_input_tokens", T::Int),
    ("$ai_reasoning_tokens", T::Int),
    ("$ai_stop_reason", T::Str),
    ("$ai_model_parameters", T::Obj),
    ("$ai_lib", T::Str),
];

/// The capture API's batch envelope and the `$ai_generation` property list.
fn validate(body: &Value) {
    let root = body.as_object().expect("body is an object");
    for k in root.keys() {
        assert!(
            ["api_key", "batch", "historical_migration", "sent_at"].contains(&k.as_str()),
            "batch body field {k:?}"
        );
    }
    assert!(
        root["api_key"].as_str().is_some_and(|k| !k.is_empty()),
        "api_key is required"
    );
    let batch = root["batch"].as_array().expect("batch is a list");
    assert!(!batch.is_empty());
    for ev in batch {
        let ev = ev.as_object().expect("an event is an object");
        for k in ev.keys() {
            assert!(
                ["event", "distinct_id", "properties", "timestamp", "uuid"].contains(&k.as_str()),
                "event field {k:?}"
            );
        }
        assert_eq!(ev["event"], "$ai_generation");
        assert!(
            ev["distinct_id"].as_str().is_some_and(|d| !d.is_empty()),
            "every event needs a distinct_id"
        );
        let uuid = ev["uuid"].as_str().expect("uuid");
        let hex: String = uuid.chars().filter(|c| *c != '-').collect();
        assert!(
            uuid.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()),
            "uuid {uuid}"
        );
        assert!(ev["timestamp"].as_str().is_some_and(|t| t.contains('T')));
        let props = ev["properties"].as_object().expect("properties");
        for (k, v) in props {
            if k.starts_with("$ai_") {
                let (_, t) = AI_PROPERTIES
                    .iter()
                    .find(|(name, _)| name == k)
                    .unwrap_or_else(|| panic!("{k} is not a documented $ai_generation property"));
                // Truncated content is a marker text.
                assert!(is(*t, v) || v == DROPPED, "{k} should be {t:?}, got {v}");
            } else if k.starts_with('$') {
                assert_eq!(k, "$process_person_profile");
                assert_eq!(v, false);
            }
        }
        for required in ["$ai_trace_id", "$ai_model", "$ai_provider"] {
            assert!(props.contains_key(required), "{required} is required");
        }
        let tid = props["$ai_trace_id"].as_str().unwrap();
        assert!(
            tid.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_~.@()!':|".contains(c)),
            "$ai_trace_id {tid:?} has characters PostHog does not allow"
        );
        for msgs in ["$ai_input", "$ai_output_choices"] {
            for m in props
                .get(msgs)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                assert!(m["role"].is_string(), "{msgs}: message role");
                assert!(m.get("content").is_some(), "{msgs}: message content");
            }
        }
    }
}

// ---- tests ----

#[tokio::test]
async fn delivers_the_full_record_with_key_headers_and_golden_body() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({"headers": {"X-Proxy-Token": "p-1"}}));
    let g = generation(full_record());
    rx.reply(Reply::status(200).body(r#"{"status":1}"#));
    let (outcome, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, ALL_GROUPS)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/batch/");
    assert_eq!(req.header("x-proxy-token"), Some("p-1"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(
        req.header("authorization").is_none(),
        "the key is in the body"
    );
    let v = body(&req);
    assert_eq!(v["api_key"], KEY);
    let ev = &events(&v)[0];
    assert_eq!(ev["distinct_id"], "user_12345");
    assert_eq!(ev["timestamp"], "2026-01-01T13:37:42.250Z");
    let p = &ev["properties"];
    assert_eq!(p["$ai_trace_id"], "order_processing_001");
    assert_eq!(p["$ai_span_name"], "Extract Order Details");
    assert_eq!(p["trace_name"], "Order Processing Pipeline");
    assert!(p.get("$ai_trace_name").is_none());
    assert_eq!(p["$ai_session_id"], "session_abc");
    assert_eq!(p["$ai_span_id"], "gen-1767225600-AbCdEfGhIjKlMnOpQrSt");
    assert_eq!(p["$ai_model"], "openai/gpt-4o");
    assert_eq!(p["$ai_provider"], "openai");
    assert_eq!(
        p["$ai_input"],
        json!([
            {"role": "system", "content": "You extract orders."},
            {"role": "user", "content": "Process this order: 2 widgets"}
        ])
    );
    assert_eq!(p["$ai_output_choices"][0]["role"], "assistant");
    assert_eq!(p["$ai_output_choices"][0]["content"], "Looking up the SKU.");
    assert_eq!(
        p["$ai_output_choices"][0]["tool_calls"][0]["function"]["name"],
        "lookup_sku"
    );
    assert_eq!(p["$ai_tools"][0]["function"]["name"], "lookup_sku");
    assert_eq!(p["$ai_input_tokens"], 120);
    assert_eq!(p["$ai_output_tokens"], 30);
    assert_eq!(p["$ai_total_tokens"], 150);
    assert_eq!(p["$ai_cache_read_input_tokens"], 100);
    assert_eq!(p["$ai_cache_creation_input_tokens"], 4);
    assert_eq!(p["$ai_reasoning_tokens"], 8);
    assert_eq!(p["$ai_total_cost_usd"], 0.00123);
    assert_eq!(p["$ai_input_cost_usd"], 0.00083);
    assert_eq!(p["$ai_output_cost_usd"], 0.0004);
    assert_eq!(p["$ai_cost_passthrough"], true);
    assert_eq!(p["$ai_cache_reporting_exclusive"], false);
    assert!((p["$ai_latency"].as_f64().unwrap() - 1.5235).abs() < 1e-12);
    assert!((p["$ai_time_to_first_token"].as_f64().unwrap() - 0.31025).abs() < 1e-12);
    assert_eq!(p["$ai_stream"], true);
    assert_eq!(p["$ai_http_status"], 200);
    assert_eq!(p["$ai_is_error"], false);
    assert!(p.get("$ai_error").is_none());
    assert_eq!(p["$ai_stop_reason"], "tool_calls");
    assert_eq!(p["$ai_temperature"], 0.2);
    assert_eq!(p["$ai_max_tokens"], 256);
    assert_eq!(p["$ai_model_parameters"]["top_p"], 0.9);
    assert!(
        p.get("$process_person_profile").is_none(),
        "identified user"
    );
    // Custom keys as metadata_<key>, and the other reserved keys too.
    assert_eq!(p["metadata_order_id"], "ORD-12345");
    assert_eq!(p["metadata_attempt"], 2);
    assert_eq!(p["metadata_labels"], json!(["a", "b"]));
    assert_eq!(p["metadata_customer"], json!({"tier": "gold"}));
    assert_eq!(p["metadata_nothing"], Value::Null);
    assert_eq!(p["metadata_span_name"], "Extraction");
    assert_eq!(p["metadata_parent_span_id"], "00f067aa0ba902b7");
    assert!(p.get("metadata_trace_id").is_none() && p.get("metadata_trace_name").is_none());
    assert!(p.get("metadata_generation_name").is_none());
    assert_eq!(p["openrouter_response_model"], "openai/gpt-4o-2024-08-06");
    assert_eq!(p["openrouter_is_byok"], false);
    assert_eq!(p["openrouter_external_user"], "ext-42");
    assert_eq!(p["openrouter_data_region"], "europe");

    golden::assert_json("posthog.json", "PostHog event", ev);
}

#[tokio::test]
async fn the_mdx_example_maps_as_documented() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let ev = one(
        &exp,
        &rx,
        json!({
            "id": "gen-mdx", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z",
            "user": "user_12345", "session_id": "session_abc",
            "request": {"messages": [{"role": "user", "content": "Recommend a product..."}]},
            "trace": {
                "trace_name": "Product Recommendations",
                "generation_name": "Generate Recommendation",
                "feature": "shopping-assistant",
                "ab_test_group": "variant_b"
            }
        }),
        TraceOptions::default(),
    )
    .await;
    let p = &ev["properties"];
    assert_eq!(p["trace_name"], "Product Recommendations");
    assert_eq!(p["$ai_span_name"], "Generate Recommendation");
    assert_eq!(p["metadata_feature"], "shopping-assistant");
    assert_eq!(p["metadata_ab_test_group"], "variant_b");
    assert_eq!(ev["distinct_id"], "user_12345");
    assert_eq!(p["$ai_session_id"], "session_abc");
    // No trace_id: the generation id groups the trace.
    assert_eq!(p["$ai_trace_id"], "gen-mdx");
}

#[tokio::test]
async fn distinct_id_falls_back_to_the_trace_and_ids_are_stable() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let mut r = secret_record();
    r.as_object_mut().unwrap().remove("user");
    r.as_object_mut().unwrap().remove("session_id");
    r["trace"] = json!({"trace_id": "run 7/α"});
    let ev = one(&exp, &rx, r.clone(), TraceOptions::default()).await;
    assert_eq!(ev["distinct_id"], "run 7/α", "the trace key");
    assert_eq!(ev["properties"]["$process_person_profile"], false);
    assert_eq!(
        ev["properties"]["$ai_trace_id"], "run_7__",
        "characters PostHog does not allow become _"
    );
    assert!(ev["properties"].get("$ai_session_id").is_none());
    // The same generation gets the same uuid every time (PostHog de-duplicates on it).
    let again = one(&exp, &rx, r.clone(), TraceOptions::default()).await;
    assert_eq!(ev["uuid"], again["uuid"]);
    r["id"] = json!("gen-other");
    let other = one(&exp, &rx, r, TraceOptions::default()).await;
    assert_ne!(ev["uuid"], other["uuid"]);
    // Without a trace_id either, the generation id.
    let mut r = secret_record();
    r.as_object_mut().unwrap().remove("user");
    let ev = one(&exp, &rx, r, TraceOptions::default()).await;
    assert_eq!(ev["distinct_id"], "gen-secret");
}

#[tokio::test]
async fn custom_values_keep_three_levels_of_nesting() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let mut r = secret_record();
    r["trace"] = json!({
        "deep": {"a": {"b": {"c": {"d": 1}}, "b2": [1, [2, [3]]]}, "x": 1},
        "list": [[["kept", ["cut"]]]],
        "flat": "v"
    });
    let ev = one(&exp, &rx, r, TraceOptions::default()).await;
    let p = &ev["properties"];
    assert_eq!(
        p["metadata_deep"],
        json!({"a": {"b": {"c": "[truncated]"}, "b2": [1, "[truncated]"]}, "x": 1})
    );
    assert_eq!(p["metadata_list"], json!([[["kept", "[truncated]"]]]));
    assert_eq!(p["metadata_flat"], "v");
}

#[tokio::test]
async fn privacy_mode_drops_input_and_output_choices() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let g = generation(secret_record());
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, opts)]).await;
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(!text.contains("SECRET"), "content reached PostHog: {text}");
    let ev = &events(&body(&req))[0];
    let p = &ev["properties"];
    for k in ["$ai_input", "$ai_output_choices", "$ai_tools"] {
        assert!(p.get(k).is_none(), "{k} in privacy mode");
    }
    assert_eq!(p["$ai_input_tokens"], 3);
    assert_eq!(p["$ai_output_tokens"], 4);
    assert_eq!(p["$ai_total_cost_usd"], 0.5);
    assert_eq!(p["$ai_model"], "anthropic/claude-sonnet-4");
    assert_eq!(p["$ai_provider"], "anthropic");
    assert_eq!(p["metadata_env"], "prod");
    assert_eq!(ev["distinct_id"], "u-1");
    assert_eq!(p["$ai_session_id"], "s-1");
    // Without privacy mode the same record carries its content.
    let (_, req) = roundtrip(&exp, &rx, &[TraceView::new(&g, TraceOptions::default())]).await;
    assert!(String::from_utf8_lossy(&req.body).contains("SECRET-PROMPT"));
}

#[tokio::test]
async fn errors_prompts_and_responses_inputs() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let mut r = secret_record();
    r["error"] = json!({"code": 429, "message": "rate limited upstream"});
    let p = one(&exp, &rx, r, TraceOptions::default()).await["properties"].clone();
    assert_eq!(p["$ai_is_error"], true);
    assert_eq!(p["$ai_error"], "rate limited upstream");
    assert_eq!(p["$ai_http_status"], 429);
    assert_eq!(p["$ai_error_type"], "429");
    let mut r = secret_record();
    r["error"] = json!({"code": "moderation", "message": "flagged"});
    let p = one(&exp, &rx, r, TraceOptions::default()).await["properties"].clone();
    assert_eq!(
        p["$ai_http_status"], 0,
        "as PostHog's SDKs: 0 without an HTTP status"
    );
    // A completions prompt and a Responses-API input become user messages.
    let mut r = secret_record();
    r["request"] = json!({"prompt": "Once upon"});
    let p = one(&exp, &rx, r, TraceOptions::default()).await["properties"].clone();
    assert_eq!(
        p["$ai_input"],
        json!([{"role": "user", "content": "Once upon"}])
    );
    let mut r = secret_record();
    r["request"] = json!({"input": "Hi there"});
    let p = one(&exp, &rx, r, TraceOptions::default()).await["properties"].clone();
    assert_eq!(
        p["$ai_input"],
        json!([{"role": "user", "content": "Hi there"}])
    );
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let g = generation(secret_record());
    let payload = exp
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&payload.body).contains(KEY),
        "the encoded payload holds no credentials"
    );
    rx.reply(Reply::status(200).body(r#"{"status":1}"#));
    assert_eq!(exp.send(&payload).await, Outcome::Delivered);
    rx.reply(Reply::status(429).header("retry-after", "11"));
    outcomes::assert_retry(exp.send(&payload).await, 429, 11);
    rx.reply(
        Reply::status(401).body(r#"{"type":"authentication_error","code":"invalid_api_key"}"#),
    );
    assert!(matches!(
        exp.send(&payload).await,
        Outcome::Unauthorized { status: 401, .. }
    ));
    rx.reply(Reply::status(400).body(r#"{"detail":"Invalid payload"}"#));
    match exp.send(&payload).await {
        Outcome::Rejected { status, error } => {
            assert_eq!(status, Some(400));
            assert!(error.contains("Invalid payload"), "{error}");
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
        assert_eq!(body(&rx.next().await)["api_key"], KEY);
    }
}

#[tokio::test]
async fn an_oversized_event_keeps_everything_but_its_content() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    let mut r = secret_record();
    r["request"]["messages"][0]["content"] = json!("x".repeat(MAX_EVENT_BYTES + 10));
    let ev = one(&exp, &rx, r, TraceOptions::default()).await;
    let p = &ev["properties"];
    assert_eq!(p["$ai_input"], DROPPED);
    assert_eq!(p["$ai_output_choices"], DROPPED);
    assert_eq!(p["$ai_tools"], DROPPED);
    assert_eq!(p["tracecast_truncated"], true);
    assert_eq!(p["$ai_input_tokens"], 3);
    assert_eq!(p["metadata_env"], "prod");
    assert!(serde_json::to_vec(&ev).unwrap().len() <= MAX_EVENT_BYTES);
}

// ---- a receiver without axum's 2 MB body limit (for the 5 MiB request limit) ----

#[tokio::test]
async fn a_batch_over_5_mib_is_split_and_partial_answers_are_per_trace() {
    let rx = BigReceiver::start(200, vec![(200, None), (400, None), (503, None)]).await;
    let exp = posthog_at(&rx.url, json!({}), Duration::from_secs(30));
    // Fourteen events of ~850 KiB: each under the event limit, three requests together.
    let gens: Vec<_> = (0..14)
        .map(|i| {
            let mut r = secret_record();
            r["id"] = json!(format!("gen-big-{i}"));
            r["request"]["messages"][0]["content"] = json!("z".repeat(850 * 1024));
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
    assert_eq!(bodies.len(), 3);
    let sizes: Vec<usize> = bodies
        .iter()
        .map(|b| {
            assert!(b.len() <= MAX_REQUEST_BYTES, "{}", b.len());
            let v: Value = serde_json::from_slice(b).unwrap();
            validate(&v);
            assert_eq!(v["api_key"], KEY);
            events(&v).len()
        })
        .collect();
    assert_eq!(sizes.iter().sum::<usize>(), 14);
    match outcome {
        Outcome::Partial(items) => {
            let (a, b) = (sizes[0], sizes[0] + sizes[1]);
            assert!(items[..a].iter().all(|i| *i == ItemOutcome::Delivered));
            assert!(
                items[a..b]
                    .iter()
                    .all(|i| matches!(i, ItemOutcome::Rejected { error } if error.contains("400")))
            );
            assert!(
                items[b..]
                    .iter()
                    .all(|i| matches!(i, ItemOutcome::Retry { error } if error.contains("503")))
            );
        }
        other => panic!("expected per-trace answers, got {other:?}"),
    }
}

#[tokio::test]
async fn test_connection_checks_the_project_key_without_sending_an_event() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({"headers": {"X-Proxy-Token": "p-1"}}));
    rx.reply(Reply::status(200).body(r#"{"flags":{}}"#));
    let ok = exp.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(200));
    assert!(
        ok.message
            .starts_with("PostHog accepted the project API key (200"),
        "{ok:?}"
    );
    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/flags/");
    assert_eq!(req.header("x-proxy-token"), Some("p-1"));
    let b: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(b, json!({"api_key": KEY, "distinct_id": TEST_DISTINCT_ID}));
    assert!(
        b.get("batch").is_none() && b.get("event").is_none(),
        "no event"
    );

    rx.reply(
        Reply::status(401).body(r#"{"type":"authentication_error","code":"invalid_api_key"}"#),
    );
    let check = exp.test_connection().await;
    assert_eq!(check.status, Some(401));
    assert!(!check.ok);
    assert_eq!(check.message, "PostHog rejected the project API key (401)");
    rx.next().await;

    // An older server without /flags is asked /decide.
    rx.reply(Reply::status(404));
    rx.reply(Reply::status(200).body("{}"));
    assert!(exp.test_connection().await.ok);
    assert_eq!(rx.next().await.path, "/flags/");
    assert_eq!(rx.next().await.path, "/decide/");

    rx.reply(Reply::status(500).body("down"));
    let check = exp.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.message, "PostHog answered 500 to POST /flags/: down");
    rx.next().await;

    let refused = posthog_at(&refused_url().await, json!({}), Duration::from_secs(5));
    let check = refused.test_connection().await;
    assert!(!check.ok && check.status.is_none());
    assert!(
        check
            .message
            .starts_with("PostHog could not be reached: connection failed"),
        "{check:?}"
    );
}

#[test]
fn config_is_read_and_checked() {
    let ctx = ExportContext::new(Duration::from_secs(5));
    let err = |v: Value| match build(DestinationType::Posthog, &config(v), &ctx) {
        Err(ExportError::Config(m)) => m,
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("expected a config error"),
    };
    assert_eq!(err(json!({})), "apiKey is required");
    assert!(err(json!({"apiKey": "phc_x", "endpoint": "ftp://x"})).starts_with("endpoint: "));
    assert!(err(json!({"apiKey": "phc_x", "endpoint": "::"})).starts_with("endpoint: "));
    assert!(
        err(json!({"apiKey": "phc_x", "headers": {"Bad Name": "v"}}))
            .contains("not a valid header name")
    );
    assert!(
        build(
            DestinationType::Posthog,
            &config(json!({"apiKey": "phc_x"})),
            &ctx
        )
        .is_ok()
    );
}

/// Whether PostHog keeps the event's cost as sent rather than pricing it from its own model
/// table: `processCost` in PostHog/posthog `nodejs/src/ingestion/pipelines/ai/costs/index.ts`
/// keeps client costs when `$ai_input_cost_usd` and `$ai_output_cost_usd` are both non-zero
/// numbers, or (PostHog/posthog#88457) when `$ai_cost_passthrough` is true with a numeric
/// `$ai_total_cost_usd` (module docs of `posthog.rs`; `tests/vendors/test_posthog.py` checks
/// the goldens against the same rule).
fn posthog_keeps_the_cost(p: &Value) -> bool {
    let nonzero = |k: &str| p[k].as_f64().is_some_and(|v| v != 0.0);
    (nonzero("$ai_input_cost_usd") && nonzero("$ai_output_cost_usd"))
        || (p["$ai_cost_passthrough"] == true && p["$ai_total_cost_usd"].is_number())
}

#[tokio::test]
async fn posthog_keeps_the_billed_cost_with_default_settings() {
    let rx = Receiver::start().await;
    let exp = posthog(&rx, json!({}));
    // The full record with no metadata group: the total only, kept by PostHog as is.
    let ev = one(&exp, &rx, full_record(), TraceOptions::default()).await;
    let p = &ev["properties"];
    assert_eq!(p["$ai_total_cost_usd"], 0.00123);
    assert!(posthog_keeps_the_cost(p), "{p}");
    assert!(
        p.get("$ai_input_cost_usd").is_none(),
        "no split without a group"
    );
    // Prompt tokens include cached ones: Anthropic models must not count the cache twice.
    assert_eq!(p["$ai_cache_reporting_exclusive"], false);
    golden::assert_json(
        "posthog_default.json",
        "PostHog event (default settings)",
        &ev,
    );

    // A total without a prompt/completion split, on an Anthropic model with cached tokens.
    let mut r = secret_record();
    r["usage"]["prompt_tokens_details"] = json!({"cached_tokens": 2});
    let ev = one(&exp, &rx, r, TraceOptions::default()).await;
    let p = &ev["properties"];
    assert_eq!(p["$ai_total_cost_usd"], 0.5);
    assert!(posthog_keeps_the_cost(p), "{p}");
    assert_eq!(p["$ai_cache_reporting_exclusive"], false);

    // A zero completion part (cost allocation on): PostHog would re-price it, the flag keeps it.
    let mut r = full_record();
    r["usage"]["cost_details"] = json!({"prompt_cost": 0.00123, "completion_cost": 0.0});
    let opts = TraceOptions {
        cost: true,
        ..Default::default()
    };
    let ev = one(&exp, &rx, r, opts).await;
    let p = &ev["properties"];
    assert_eq!(p["$ai_input_cost_usd"], 0.00123);
    assert_eq!(p["$ai_output_cost_usd"], 0.0);
    assert!(posthog_keeps_the_cost(p), "{p}");

    // A free call: a zero total is a usable passthrough total.
    let mut r = secret_record();
    r["total_cost"] = json!(0.0);
    let ev = one(&exp, &rx, r, TraceOptions::default()).await;
    assert_eq!(ev["properties"]["$ai_total_cost_usd"], 0.0);
    assert!(posthog_keeps_the_cost(&ev["properties"]));

    // No known cost: nothing claims one, PostHog prices the call itself.
    let mut r = secret_record();
    r.as_object_mut().unwrap().remove("total_cost");
    let ev = one(&exp, &rx, r, TraceOptions::default()).await;
    let p = &ev["properties"];
    assert!(p.get("$ai_total_cost_usd").is_none() && p.get("$ai_cost_passthrough").is_none());
}
