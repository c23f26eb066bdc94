//! The `raindrop` destination against a real HTTP receiver on 127.0.0.1 playing Raindrop's
//! `POST /v1/events/track` (Raindrop's HTTP API page; the event shape of its Python SDK's
//! `TrackAIEvent` / `TrackEvent`, which `tests/vendors/test_raindrop.py` loads the golden
//! body with).

mod common;
use common::golden;
use common::setup::{ALL_GROUPS, exporter};

use common::*;
use serde_json::{Value, json};
use tracecast_exporters::raindrop::{EVENT_NAME, MAX_TEXT_BYTES, TRUNCATION_MARKER};
use tracecast_exporters::{Exporter, Outcome};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const KEY: &str = "rd_write_key_0123456789";

/// The fields of Raindrop's `TrackAIEvent` (raindrop-ai 0.0.75 `raindrop/models.py`,
/// `extra="forbid"`) and of its `AIData`.
const EVENT_FIELDS: &[&str] = &[
    "event_id",
    "user_id",
    "event",
    "ai_data",
    "properties",
    "timestamp",
    "attachments",
];
const AI_DATA_FIELDS: &[&str] = &["model", "input", "output", "convo_id"];

fn raindrop(rx: &Receiver) -> std::sync::Arc<dyn Exporter> {
    exporter(
        DestinationType::Raindrop,
        json!({"writeKey": KEY, "baseUrl": rx.url(""), "headers": {"X-Env": "prod"}}),
    )
}

fn check_shape(ev: &Value) {
    let o = ev.as_object().expect("an event is an object");
    for k in o.keys() {
        assert!(
            EVENT_FIELDS.contains(&k.as_str()),
            "unknown event field {k}"
        );
    }
    for k in ["user_id", "event"] {
        assert!(
            o[k].as_str().is_some_and(|s| !s.trim().is_empty()),
            "{k} must be a non-empty string"
        );
    }
    if let Some(ai) = o.get("ai_data") {
        let ai = ai.as_object().unwrap();
        for k in ai.keys() {
            assert!(
                AI_DATA_FIELDS.contains(&k.as_str()),
                "unknown ai_data field {k}"
            );
        }
        assert!(
            ai.get("input").or(ai.get("output")).is_some(),
            "ai_data needs input or output"
        );
    }
    chrono::DateTime::parse_from_rfc3339(o["timestamp"].as_str().unwrap()).expect("ISO 8601");
}

#[tokio::test]
async fn events_reach_the_track_endpoint_with_the_write_key() {
    let rx = Receiver::start().await;
    let e = raindrop(&rx);
    let mut rec = full_record();
    rec["trace"]["feature"] = json!("assistant");
    let (a, b) = (generation(rec), generation(secret_record()));
    let views = [
        TraceView::new(&a, ALL_GROUPS),
        TraceView::new(&b, ALL_GROUPS),
    ];
    let payload = e.encode(&views).unwrap();
    assert_eq!(e.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/events/track");
    assert_eq!(
        req.header("authorization"),
        Some("Bearer rd_write_key_0123456789")
    );
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("x-env"), Some("prod"));
    let events: Vec<Value> = serde_json::from_slice(&req.body).expect("an array of events");
    assert_eq!(events.len(), 2);
    events.iter().for_each(check_shape);

    // raindrop.mdx: user -> user_id, session_id -> convo_id, input = the latest user message,
    // output = the completion text.
    let ev = &events[0];
    assert_eq!(ev["event_id"], a.id.as_str());
    assert_eq!(ev["event"], EVENT_NAME);
    assert_eq!(ev["user_id"], "user_12345");
    assert_eq!(ev["timestamp"], "2026-01-01T13:37:42.250Z");
    assert_eq!(ev["ai_data"]["model"], "openai/gpt-4o");
    assert_eq!(ev["ai_data"]["input"], "Process this order: 2 widgets");
    assert_eq!(ev["ai_data"]["output"], "Looking up the SKU.");
    assert_eq!(ev["ai_data"]["convo_id"], "session_abc");
    // Supported metadata keys, custom keys as-is, and the system properties.
    let p = &ev["properties"];
    assert_eq!(p["trace_id"], "order_processing_001");
    assert_eq!(p["trace_name"], "Order Processing Pipeline");
    assert_eq!(p["feature"], "assistant");
    assert_eq!(p["order_id"], "ORD-12345");
    assert_eq!(p["customer"], json!({"tier": "gold"}));
    assert!(p.get("nothing").is_none());
    assert_eq!(p["model"], "openai/gpt-4o");
    assert_eq!(p["provider"], "OpenAI");
    assert_eq!(p["total_cost"], 0.00123);
    assert_eq!(p["prompt_tokens"], 120);
    assert_eq!(p["completion_tokens"], 30);
    assert_eq!(p["duration_ms"], 1523.5);
    assert_eq!(p["finish_reason"], "tool_calls");

    golden::assert_bytes("raindrop.json", "Raindrop events body", &req.body);
}

#[tokio::test]
async fn privacy_mode_sends_a_plain_event_without_content() {
    let rx = Receiver::start().await;
    let e = raindrop(&rx);
    let g = generation(secret_record());
    let private = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = e.encode(&[TraceView::new(&g, private)]).unwrap();
    assert_eq!(e.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    let text = String::from_utf8_lossy(&req.body);
    assert!(!text.contains("SECRET"), "content leaked: {text}");
    let events: Vec<Value> = serde_json::from_slice(&req.body).unwrap();
    check_shape(&events[0]);
    assert!(events[0].get("ai_data").is_none());
    assert_eq!(events[0]["properties"]["convo_id"], "s-1");
    assert_eq!(
        events[0]["properties"]["model"],
        "anthropic/claude-sonnet-4"
    );
    assert_eq!(events[0]["properties"]["total_cost"], 0.5);
    golden::assert_bytes(
        "raindrop_private.json",
        "Raindrop privacy-mode body",
        &req.body,
    );
}

#[tokio::test]
async fn long_text_is_cut_and_a_missing_user_is_anonymous() {
    let rx = Receiver::start().await;
    let e = raindrop(&rx);
    let mut rec = secret_record();
    rec["request"]["messages"] = json!([{"role": "user", "content": [{"type": "text", "text": "x".repeat(MAX_TEXT_BYTES + 10)}]}]);
    rec.as_object_mut().unwrap().remove("user");
    let g = generation(rec);
    let payload = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    e.send(&payload).await;
    let events: Vec<Value> = serde_json::from_slice(&rx.next().await.body).unwrap();
    let input = events[0]["ai_data"]["input"].as_str().unwrap();
    assert!(input.ends_with(TRUNCATION_MARKER));
    assert_eq!(input.len(), MAX_TEXT_BYTES + TRUNCATION_MARKER.len());
    assert_eq!(events[0]["user_id"], "anonymous");
}

#[tokio::test]
async fn answers_are_classified_and_the_connection_test_names_the_key() {
    let rx = Receiver::start().await;
    let e = raindrop(&rx);
    let g = generation(secret_record());
    let payload = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(401).body(r#"{"error":"invalid write key"}"#));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Unauthorized { status: 401, .. }
    ));
    rx.reply(Reply::status(429).header("retry-after", "3"));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d.as_secs() == 3
    ));
    rx.reply(Reply::status(413));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Rejected {
            status: Some(413),
            ..
        }
    ));
    for _ in 0..3 {
        rx.next().await;
    }

    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");
    let req = rx.next().await;
    assert_eq!(req.path, "/v1/events/track");
    assert_eq!(&req.body[..], b"[]");
    assert_eq!(
        req.header("authorization"),
        Some("Bearer rd_write_key_0123456789")
    );
    rx.reply(Reply::status(401).body("bad key"));
    let check = e.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(401));
    assert!(check.message.contains("write key"), "{check:?}");
    assert!(!check.message.contains(KEY));

    let gone = exporter(
        DestinationType::Raindrop,
        json!({"writeKey": KEY, "baseUrl": refused_url().await.trim_end_matches("/v1/traces")}),
    );
    let check = gone.test_connection().await;
    assert!(!check.ok && check.status.is_none(), "{check:?}");
}
