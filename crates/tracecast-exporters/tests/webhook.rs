//! The `webhook` destination against a real HTTP receiver on 127.0.0.1.

mod common;
use common::golden;
use common::outcomes;
use common::setup::{self, ALL_GROUPS, config, ctx};

use std::sync::Arc;

use common::*;
use serde_json::{Map, Value, json};
use tracecast_exporters::{ConnectionCheck, ExportError, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

fn webhook(cfg: Value) -> Arc<dyn Exporter> {
    setup::exporter(DestinationType::Webhook, cfg)
}

#[tokio::test]
async fn delivers_otlp_json_with_put_and_custom_headers() {
    let rx = Receiver::start().await;
    let exporter = webhook(json!({
        "url": rx.url("/hooks/traces?src=tc"),
        "method": "PUT",
        "headers": {"Authorization": "Bearer hook-secret", "X-Webhook-Signature": "sig-1", "Content-Type": "text/plain"}
    }));
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, ALL_GROUPS)])
        .expect("encodes");
    assert_eq!(payload.items, 1);
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "PUT");
    assert_eq!(req.path, "/hooks/traces");
    assert_eq!(req.header("authorization"), Some("Bearer hook-secret"));
    assert_eq!(req.header("x-webhook-signature"), Some("sig-1"));
    // The encoder's content type wins over a custom one.
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(req.header("x-test-connection").is_none());
    assert_eq!(req.body, payload.body);

    let decoded = decode(&req.body);
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    assert_eq!(sp[1].name, "Extract Order Details");
    assert_eq!(
        s(&sp[1].attributes, "gen_ai.request.model"),
        "openai/gpt-4o"
    );
    assert_eq!(s(&sp[1].attributes, "trace.metadata.order_id"), "ORD-12345");

    // The golden file: this body, byte for byte. Regenerate with UPDATE_GOLDEN=1 and review the
    // diff.
    golden::assert_bytes("otlp_webhook.json", "webhook body", req.body.as_ref());
}

#[tokio::test]
async fn default_method_is_post_and_batches_are_one_request() {
    let rx = Receiver::start().await;
    let exporter = webhook(json!({"url": rx.url("/t")}));
    let a = generation(full_record());
    let b = generation(secret_record());
    let views = [
        TraceView::new(&a, TraceOptions::default()),
        TraceView::new(&b, TraceOptions::default()),
    ];
    let payload = exporter.encode(&views).unwrap();
    assert_eq!(payload.items, 2);
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.header("content-type"), Some("application/json"));
    let decoded = decode(&req.body);
    assert_eq!(decoded.resource_spans.len(), 2);
    assert!(rx.try_next().await.is_none(), "one request per batch");
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = webhook(json!({"url": rx.url("/t")}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let req = rx.next().await;
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(
        !text.contains("SECRET"),
        "content reached the webhook: {text}"
    );
    let decoded = decode(&req.body);
    let a = &spans(&decoded)[0].attributes;
    assert!(!has(a, "gen_ai.prompt") && !has(a, "gen_ai.completion"));
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 3);
    assert_eq!(s(a, "user.id"), "u-1");
    assert_eq!(s(a, "session.id"), "s-1");
}

#[tokio::test]
async fn outcomes_are_classified() {
    let rx = Receiver::start().await;
    let exporter = webhook(json!({"url": rx.url("/t")}));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    rx.reply(Reply::status(200));
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    rx.reply(Reply::status(400).body("bad span"));
    match exporter.send(&payload).await {
        Outcome::Rejected { status, error } => {
            assert_eq!(status, Some(400));
            assert!(error.contains("bad span"), "{error}");
        }
        other => panic!("400: {other:?}"),
    }

    rx.reply(Reply::status(401).body("no"));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 401, .. }
    ));

    rx.reply(Reply::status(429).header("retry-after", "7"));
    outcomes::assert_retry(exporter.send(&payload).await, 429, 7);

    rx.reply(Reply::status(503));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            retry_after: None,
            ..
        }
    ));
    // Every answer above came from a real request.
    for _ in 0..5 {
        rx.next().await;
    }

    let refused = webhook(json!({"url": refused_url().await}));
    match refused.send(&payload).await {
        Outcome::Retry { status, error, .. } => {
            assert_eq!(status, None);
            assert!(error.starts_with("connection failed"), "{error}");
        }
        other => panic!("refused: {other:?}"),
    }
}

#[tokio::test]
async fn test_connection_sends_an_empty_payload() {
    let rx = Receiver::start().await;
    let exporter =
        webhook(json!({"url": rx.url("/t"), "method": "PUT", "headers": {"X-Token": "t-1"}}));

    rx.reply(Reply::status(204));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(204));
    assert!(ok.message.contains("204"), "{ok:?}");
    let req = rx.next().await;
    assert_eq!(req.method, "PUT");
    assert_eq!(&req.body[..], br#"{"resourceSpans":[]}"#);
    assert_eq!(req.header("x-test-connection"), Some("true"));
    assert_eq!(req.header("x-token"), Some("t-1"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert!(decode(&req.body).resource_spans.is_empty());

    rx.reply(Reply::status(400).body("empty payload"));
    let check = exporter.test_connection().await;
    assert!(check.ok, "400 passes: {check:?}");
    assert_eq!(check.status, Some(400));

    for code in [401u16, 403] {
        rx.reply(Reply::status(code));
        assert_eq!(
            exporter.test_connection().await,
            ConnectionCheck {
                ok: false,
                status: Some(code),
                message: format!("Webhook rejected the credentials ({code})"),
            }
        );
    }

    rx.reply(Reply::status(500).body("upstream down"));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(500));
    assert_eq!(
        check.message,
        "Webhook answered 500 to the test request: upstream down"
    );

    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert_eq!(check.message, "Webhook answered 404 to the test request");
    assert!(!check.ok);

    let refused = webhook(json!({"url": refused_url().await}));
    let check = refused.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, None);
    assert!(
        check
            .message
            .starts_with("Webhook could not be reached: connection failed"),
        "{check:?}"
    );
}

#[test]
fn every_type_has_an_exporter_that_requires_its_config() {
    let ctx = ctx();
    assert!(
        build(
            DestinationType::Webhook,
            &config(json!({"url": "https://h.test/x"})),
            &ctx
        )
        .is_ok()
    );
    assert!(
        build(
            DestinationType::OtelCollector,
            &config(json!({"endpoint": "https://o.test/v1/traces"})),
            &ctx
        )
        .is_ok()
    );
    // Every type is registered; an empty config is a config error naming a
    // field, never "unsupported" and never a panic.
    for ty in DestinationType::ALL {
        match build(ty, &Map::new(), &ctx) {
            Err(ExportError::Config(m)) => assert!(!m.is_empty(), "{ty}"),
            Err(e) => panic!("{ty}: {e}"),
            Ok(_) => panic!("{ty} accepted an empty config"),
        }
    }
}

#[test]
fn bad_configs_are_config_errors() {
    let ctx = ctx();
    let err = |ty, v: Value| match build(ty, &config(v), &ctx) {
        Err(ExportError::Config(m)) => m,
        Err(e) => panic!("expected a config error, got {e}"),
        Ok(_) => panic!("expected a config error"),
    };
    assert_eq!(err(DestinationType::Webhook, json!({})), "url is required");
    assert!(
        err(
            DestinationType::Webhook,
            json!({"url": "https://h.test", "method": "GET"})
        )
        .starts_with("method must be POST or PUT")
    );
    assert!(err(DestinationType::Webhook, json!({"url": "not a url"})).starts_with("url: "));
    assert!(
        err(DestinationType::Webhook, json!({"url": "ftp://h.test/x"}))
            .contains("not an http(s) URL")
    );
    assert!(
        err(
            DestinationType::Webhook,
            json!({"url": "https://h.test", "headers": {"Bad Name": "v"}})
        )
        .contains("not a valid header name")
    );
    assert!(
        err(
            DestinationType::Webhook,
            json!({"url": "https://h.test", "headers": {"X-A": "line\nbreak"}})
        )
        .contains("not a valid header value")
    );
    assert_eq!(
        err(DestinationType::OtelCollector, json!({})),
        "endpoint is required"
    );
    // Lower-case methods are accepted.
    assert!(
        build(
            DestinationType::Webhook,
            &config(json!({"url": "https://h.test", "method": "put"})),
            &ctx
        )
        .is_ok()
    );
}
