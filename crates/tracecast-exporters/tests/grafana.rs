//! The `grafana` destination against a loopback receiver playing the Grafana Cloud OTLP
//! gateway. Bodies are OTLP/JSON, decoded with opentelemetry-proto's serde types.

mod common;
use common::golden;
use common::setup::ctx;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracecast_exporters::grafana::{DEFAULT_BASE_URL, exporter};
use tracecast_exporters::{Exporter, Outcome};
use tracecast_model::trace::{TraceOptions, TraceView};

const INSTANCE: &str = "123456";
const TOKEN: &str = "glc_eyJvIjoiMTIzIiwibiI6InRyYWNlcyJ9";

fn config(base: &str, extra: Value) -> serde_json::Map<String, Value> {
    let mut cfg = json!({"apiKey": TOKEN, "instanceId": INSTANCE, "baseUrl": base});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    cfg.as_object().cloned().unwrap()
}

fn grafana(base: &str, extra: Value) -> Box<dyn Exporter> {
    match exporter(&config(base, extra), &ctx()) {
        Ok(e) => Box::new(e),
        Err(e) => panic!("grafana exporter: {e}"),
    }
}

fn expected_auth() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{INSTANCE}:{TOKEN}"))
    )
}

fn sha_prefix(s: &str, n: usize) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..n])
}

#[tokio::test]
async fn posts_otlp_json_with_basic_auth_to_the_gateway() {
    let rx = Receiver::start().await;
    let exporter = grafana(
        &rx.url(""),
        json!({"headers": {"X-Scope-OrgID": "tenant-7"}}),
    );
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(payload.content_type, "application/json");
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/otlp/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("authorization"), Some(expected_auth().as_str()));
    assert_eq!(
        req.header("authorization"),
        Some("Basic MTIzNDU2OmdsY19leUp2SWpvaU1USXpJaXdpYmlJNkluUnlZV05sY3lKOQ==")
    );
    assert_eq!(req.header("x-scope-orgid"), Some("tenant-7"));
    let decoded = decode(&req.body);

    // Resource attributes grafana.mdx lists.
    let res = &decoded.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(s(res, "service.name"), "openrouter");
    assert_eq!(s(res, "service.version"), "1.0.0");
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");

    // The "Supported Metadata Keys" table of grafana.mdx.
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    let (inter, gen_span) = (sp[0], sp[1]);
    let trace_id = sha_prefix("order_processing_001", 16);
    assert_eq!(
        hex::encode(&inter.trace_id),
        trace_id,
        "trace_id -> Trace ID"
    );
    assert_eq!(hex::encode(&gen_span.trace_id), trace_id);
    assert_eq!(inter.name, "Extraction", "span_name -> Span Name");
    assert_eq!(
        gen_span.name, "Extract Order Details",
        "generation_name -> Span Name"
    );
    assert_eq!(
        hex::encode(&inter.parent_span_id),
        "00f067aa0ba902b7",
        "parent_span_id -> Parent Span ID"
    );
    assert_eq!(gen_span.parent_span_id, inter.span_id);
    assert_eq!(
        s(&inter.attributes, "openrouter.trace.name"),
        "Order Processing Pipeline",
        "trace_name"
    );

    // Span attributes grafana.mdx lists, and its "Additional Context".
    let a = &gen_span.attributes;
    assert_eq!(s(a, "gen_ai.operation.name"), "chat");
    assert_eq!(s(a, "gen_ai.system"), "openai");
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(s(a, "gen_ai.response.model"), "openai/gpt-4o-2024-08-06");
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(i(a, "gen_ai.usage.total_tokens"), 150);
    assert_eq!(s(a, "gen_ai.response.finish_reason"), "tool_calls");
    assert_eq!(s(a, "user.id"), "user_12345");
    assert_eq!(s(a, "session.id"), "session_abc");
    assert_eq!(s(a, "trace.metadata.order_id"), "ORD-12345");
    assert_eq!(s(a, "trace.metadata.priority"), "high");
    assert_eq!(d(a, "trace.metadata.score"), 0.75);
    assert!(s(a, "gen_ai.prompt").contains("Process this order"));
    assert!(!has(a, "tracecast.truncated"));

    // The golden file: this body, byte for byte. Regenerate with UPDATE_GOLDEN=1 and review.
    golden::assert_bytes("grafana.json", "Grafana body", req.body.as_ref());
}

#[tokio::test]
async fn a_root_generation_is_named_by_trace_name() {
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url("/otlp"), json!({}));
    let mut v = secret_record();
    v["trace"] = json!({"trace_name": "Metric Analysis Pipeline", "environment": "production"});
    let g = generation(v);
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let req = rx.next().await;
    assert_eq!(req.path, "/otlp/v1/traces", "a base URL ending in /otlp");
    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name, "Metric Analysis Pipeline");
    assert!(sp[0].parent_span_id.is_empty());
    // No trace_id: the trace key is the generation id.
    assert_eq!(hex::encode(&sp[0].trace_id), sha_prefix("gen-secret", 16));
    assert_eq!(
        s(&sp[0].attributes, "trace.metadata.environment"),
        "production"
    );
}

#[test]
fn urls_and_config() {
    let e = exporter(&config(DEFAULT_BASE_URL, json!({})), &ctx()).unwrap();
    assert_eq!(
        e.inner().http().url().as_str(),
        "https://otlp-gateway-prod-us-west-0.grafana.net/otlp/v1/traces"
    );
    let mut cfg = config(DEFAULT_BASE_URL, json!({}));
    cfg.remove("baseUrl");
    assert_eq!(
        exporter(&cfg, &ctx())
            .unwrap()
            .inner()
            .http()
            .url()
            .as_str(),
        "https://otlp-gateway-prod-us-west-0.grafana.net/otlp/v1/traces",
        "the default base URL"
    );
    let full = "https://otlp-gateway-prod-eu-west-2.grafana.net/otlp/v1/traces";
    assert_eq!(
        exporter(&config(full, json!({})), &ctx())
            .unwrap()
            .inner()
            .http()
            .url()
            .as_str(),
        full
    );
    let err = exporter(
        &config(DEFAULT_BASE_URL, json!({"instanceId": "abc"})),
        &ctx(),
    )
    .err()
    .unwrap();
    assert!(err.to_string().contains("instanceId"), "{err}");
    let err = exporter(&config("not a url", json!({})), &ctx())
        .err()
        .unwrap();
    assert!(err.to_string().contains("baseUrl"), "{err}");
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url(""), json!({}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..Default::default()
    };
    let p = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let req = rx.next().await;
    assert!(
        !String::from_utf8_lossy(&req.body).contains("SECRET"),
        "content leaked in privacy mode"
    );
    let decoded = decode(&req.body);
    let a = &spans(&decoded)[0].attributes;
    for key in [
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.tool.definitions",
    ] {
        assert!(!has(a, key), "{key} in privacy mode");
    }
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 4);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.5);
    assert_eq!(s(a, "session.id"), "s-1");
    assert_eq!(s(a, "trace.metadata.env"), "prod");
}

#[tokio::test]
async fn long_values_are_cut_visibly() {
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url(""), json!({}));
    let mut v = secret_record();
    v["request"]["messages"] = json!([{"role": "user", "content": "p".repeat(100_000)}]);
    let g = generation(v);
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let decoded = decode(&rx.next().await.body);
    let a = &spans(&decoded)[0].attributes;
    let prompt = s(a, "gen_ai.prompt");
    assert_eq!(prompt.chars().count(), 65_536);
    assert!(prompt.contains("…[truncated: "), "visible marker");
    assert!(b(a, "tracecast.truncated"));
    assert_eq!(
        strings(a, "tracecast.truncated_attributes"),
        vec!["gen_ai.prompt"]
    );
    assert_eq!(s(a, "user.id"), "u-1", "the rest is intact");
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url(""), json!({}));
    let g = generation(secret_record());
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(429).header("retry-after", "12"));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(12)
    ));
    rx.reply(
        Reply::status(401)
            .body(r#"{"status":"error","error":"authentication error: invalid token"}"#),
    );
    match exporter.send(&p).await {
        Outcome::Unauthorized { status: 401, error } => {
            assert!(error.contains("invalid token"), "{error}");
            assert!(!error.contains(TOKEN));
        }
        other => panic!("{other:?}"),
    }
    rx.reply(Reply::status(400).body("bad"));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Rejected {
            status: Some(400),
            ..
        }
    ));
    rx.reply(Reply::status(502));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Retry {
            status: Some(502),
            ..
        }
    ));
    // A partial success is logged and counts as delivered (OTLP says not to retry it).
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body(r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"trace too large"}}"#),
    );
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    for _ in 0..5 {
        rx.next().await;
    }
}

#[tokio::test]
async fn test_connection_posts_an_empty_payload_with_the_credentials() {
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url(""), json!({}));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(
        ok.message,
        "Grafana Cloud accepted an empty OTLP export request (200)"
    );
    let req = rx.next().await;
    assert_eq!(req.path, "/otlp/v1/traces");
    assert_eq!(&req.body[..], br#"{"resourceSpans":[]}"#);
    assert_eq!(req.header("authorization"), Some(expected_auth().as_str()));

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (
            false,
            Some(401),
            "Grafana Cloud rejected the instance ID / API token pair (the token needs the traces:write scope) (401)"
        )
    );
    rx.reply(Reply::status(404).body("404 page not found"));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok
            && check
                .message
                .contains("otlp-gateway-prod-<region>.grafana.net"),
        "{check:?}"
    );
    let dead = grafana(&refused_url().await, json!({}));
    let check = dead.test_connection().await;
    assert!(
        !check.ok
            && check
                .message
                .starts_with("Grafana Cloud could not be reached"),
        "{check:?}"
    );
}
