//! The `otel-collector` destination against a real OTLP/HTTP receiver on 127.0.0.1.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tracecast_exporters::{ExportContext, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

fn collector(cfg: Value) -> Arc<dyn Exporter> {
    let cfg = cfg.as_object().cloned().expect("config object");
    match build(
        DestinationType::OtelCollector,
        &cfg,
        &ExportContext::new(Duration::from_secs(5)),
    ) {
        Ok(e) => e,
        Err(e) => panic!("otel-collector exporter: {e}"),
    }
}

#[tokio::test]
async fn posts_otlp_json_to_the_endpoint_with_headers() {
    let rx = Receiver::start().await;
    let exporter = collector(json!({
        "endpoint": rx.url("/v1/traces"),
        "headers": {"Authorization": "Bearer xaat-token", "X-Axiom-Dataset": "llm"}
    }));
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body("{}"),
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.header("authorization"), Some("Bearer xaat-token"));
    assert_eq!(req.header("x-axiom-dataset"), Some("llm"));
    let decoded = decode(&req.body);
    let rs = &decoded.resource_spans[0];
    let res = &rs.resource.as_ref().unwrap().attributes;
    assert_eq!(s(res, "service.name"), "openrouter");
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");
    let sp = spans(&decoded);
    assert_eq!(sp[0].name, "Extraction");
    assert_eq!(sp[1].parent_span_id, sp[0].span_id);
    assert_eq!(hex::encode(&sp[0].parent_span_id), "00f067aa0ba902b7");
    assert_eq!(i(&sp[1].attributes, "gen_ai.usage.output_tokens"), 30);
    // No metadata group unless enabled.
    assert!(
        !sp[1]
            .attributes
            .iter()
            .any(|kv| kv.key.starts_with("openrouter.cost_"))
    );
}

#[tokio::test]
async fn partial_success_counts_as_delivered() {
    let rx = Receiver::start().await;
    let exporter = collector(json!({"endpoint": rx.url("/v1/traces")}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(
        Reply::status(200)
            .header("content-type", "application/json")
            .body(r#"{"partialSuccess":{"rejectedSpans":"1","errorMessage":"span too large"}}"#),
    );
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    rx.next().await;

    // The parser reads both encodings.
    let mut h = reqwest::header::HeaderMap::new();
    h.insert("content-type", "application/json".parse().unwrap());
    assert_eq!(
        tracecast_exporters::otlp::partial_success(
            &h,
            br#"{"partialSuccess":{"rejectedSpans":"2","errorMessage":"x"}}"#
        ),
        Some((2, "x".to_string()))
    );
    assert_eq!(
        tracecast_exporters::otlp::partial_success(
            &h,
            br#"{"partialSuccess":{"rejectedSpans":3}}"#
        ),
        Some((3, String::new()))
    );
    assert_eq!(
        tracecast_exporters::otlp::partial_success(&h, br#"{"partialSuccess":{}}"#),
        None
    );
    assert_eq!(tracecast_exporters::otlp::partial_success(&h, b"{}"), None);
    assert_eq!(
        tracecast_exporters::otlp::partial_success(&h, b"not json"),
        None
    );
}

#[tokio::test]
async fn outcomes_are_classified() {
    let rx = Receiver::start().await;
    let exporter = collector(json!({"endpoint": rx.url("/v1/traces")}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(400));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Rejected {
            status: Some(400),
            ..
        }
    ));
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(429).header("retry-after", "3"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(429),
            retry_after: Some(d),
            ..
        } if d == Duration::from_secs(3)
    ));
    rx.reply(Reply::status(503));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    for _ in 0..4 {
        rx.next().await;
    }
    let refused = collector(json!({"endpoint": refused_url().await}));
    assert!(matches!(
        refused.send(&payload).await,
        Outcome::Retry { status: None, .. }
    ));
}

#[tokio::test]
async fn test_connection_posts_an_empty_payload() {
    let rx = Receiver::start().await;
    let exporter = collector(json!({"endpoint": rx.url("/v1/traces"), "headers": {"X-Key": "k"}}));

    rx.reply(Reply::status(200).body("{}"));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(200));
    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(&req.body[..], br#"{"resourceSpans":[]}"#);
    assert_eq!(req.header("x-key"), Some("k"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("x-test-connection").is_none());

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.status, check.message.as_str()),
        (
            false,
            Some(401),
            "OpenTelemetry collector rejected the credentials (401)"
        )
    );
    // Unlike the webhook, a collector must accept an empty payload.
    rx.reply(Reply::status(400).body("bad"));
    let check = exporter.test_connection().await;
    assert_eq!(
        (check.ok, check.message.as_str()),
        (
            false,
            "OpenTelemetry collector answered 400 to the test request: bad"
        )
    );
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("/v1/traces"),
        "{check:?}"
    );

    let refused = collector(json!({"endpoint": refused_url().await}));
    let check = refused.test_connection().await;
    assert!(
        !check.ok
            && check
                .message
                .starts_with("OpenTelemetry collector could not be reached"),
        "{check:?}"
    );
}
