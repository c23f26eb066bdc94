//! Compressed egress against a real receiver on loopback: which types gzip by default, the
//! `compression` field turning it on or off, `Content-Encoding: gzip` on the wire, and bodies
//! that inflate to exactly what the exporter encoded (the golden payloads stay uncompressed).

mod common;

use std::io::Read;

use common::setup::{self, ALL_GROUPS};
use common::{Receiver, full_record, generation};
use serde_json::{Value, json};
use tracecast_exporters::{ExportContext, Outcome};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;

/// A config of `ty` whose requests go to `rx`.
fn config(ty: DestinationType, rx: &Receiver) -> Value {
    use DestinationType::*;
    match ty {
        OtelCollector => json!({"endpoint": rx.url("/v1/traces")}),
        Webhook => json!({"url": rx.url("/hook")}),
        Grafana => json!({"apiKey": "k", "instanceId": "123", "baseUrl": rx.url("/otlp")}),
        Arize => json!({"apiKey": "k", "spaceKey": "s", "modelId": "m", "baseUrl": rx.url("")}),
        Langfuse => json!({"publicKey": "pk-lf-1", "secretKey": "sk-lf-1", "baseUrl": rx.url("")}),
        Langsmith => json!({"apiKey": "k", "endpoint": rx.url("")}),
        Braintrust => json!({"apiKey": "k", "projectId": "p", "baseUrl": rx.url("")}),
        Weave => json!({"apiKey": "k", "entity": "e", "project": "p", "baseUrl": rx.url("")}),
        Sentry => json!({
            "otlpEndpoint": rx.url("/api/456/integration/otlp/v1/traces"),
            "dsn": "https://abc123publickey@o123.ingest.us.sentry.io/456",
        }),
        Newrelic => json!({"licenseKey": "eu01xxNRAL-license-key-0123456789"}),
        Posthog => json!({"apiKey": "phc_key", "endpoint": rx.url("")}),
        Datadog => json!({"apiKey": "k", "mlApp": "app", "url": rx.url("")}),
        Ramp => json!({"apiKey": "k", "baseUrl": rx.url("/ramp")}),
        other => panic!("no compression config for {other}"),
    }
}

/// Sends one trace of `ty` (with `extra` merged into its config) to a fresh receiver; returns
/// the request as sent (`Content-Encoding`, wire size) and inflated, and the encoded payload.
async fn send(ty: DestinationType, extra: Value) -> (common::Captured, bytes::Bytes) {
    let rx = Receiver::start().await;
    let mut cfg = config(ty, &rx);
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    let ctx = ExportContext::new(std::time::Duration::from_secs(5))
        .with_endpoint_override(DestinationType::Newrelic, &rx.url(""));
    let exporter = setup::exporter_in(&ctx, ty, cfg);
    let g = generation(full_record());
    let views = [TraceView::new(&g, ALL_GROUPS)];
    let payload = exporter.encode(&views).unwrap();
    let outcome = exporter.send(&payload).await;
    assert_eq!(outcome, Outcome::Delivered, "{ty}");
    (rx.next().await, payload.body)
}

#[tokio::test]
async fn otlp_platforms_and_posthog_gzip_by_default() {
    use DestinationType::*;
    for ty in [
        OtelCollector,
        Grafana,
        Arize,
        Langfuse,
        Langsmith,
        Braintrust,
        Weave,
        Sentry,
        Newrelic,
        Posthog,
    ] {
        let (req, encoded) = send(ty, json!({})).await;
        assert_eq!(req.header("content-encoding"), Some("gzip"), "{ty}");
        // PostHog's body wraps the encoded batch with the project key; every other body is
        // exactly what the exporter encoded.
        if ty != Posthog {
            assert_eq!(req.body, encoded, "{ty}: inflates to the encoded payload");
        } else {
            let v: Value = serde_json::from_slice(&req.body).unwrap();
            assert_eq!(v["api_key"], "phc_key");
            assert!(v["batch"].is_array());
        }
        assert!(
            req.wire_len * 2 < req.body.len(),
            "{ty}: {} bytes on the wire for {}",
            req.wire_len,
            req.body.len()
        );
    }
}

#[tokio::test]
async fn webhook_ramp_and_datadog_send_plain_bodies_unless_asked() {
    use DestinationType::*;
    for ty in [Webhook, Ramp, Datadog] {
        let (req, encoded) = send(ty, json!({})).await;
        assert_eq!(req.header("content-encoding"), None, "{ty}");
        assert_eq!(req.wire_len, req.body.len(), "{ty}");
        if ty != Datadog {
            assert_eq!(req.body, encoded, "{ty}");
        }
        let (req, _) = send(ty, json!({"compression": "gzip"})).await;
        assert_eq!(req.header("content-encoding"), Some("gzip"), "{ty}");
        assert!(req.wire_len < req.body.len(), "{ty}");
    }
}

#[tokio::test]
async fn compression_none_turns_it_off() {
    use DestinationType::*;
    for ty in [OtelCollector, Langfuse, Posthog] {
        let (req, _) = send(ty, json!({"compression": "none"})).await;
        assert_eq!(req.header("content-encoding"), None, "{ty}");
        assert_eq!(req.wire_len, req.body.len(), "{ty}");
    }
}

#[tokio::test]
async fn the_connection_test_is_sent_as_deliveries_are() {
    // So a receiver that cannot take gzip fails the test, not the first delivery.
    let rx = Receiver::start().await;
    let exporter = setup::exporter(
        DestinationType::OtelCollector,
        json!({"endpoint": rx.url("/v1/traces")}),
    );
    assert!(exporter.test_connection().await.ok);
    let req = rx.next().await;
    assert_eq!(req.header("content-encoding"), Some("gzip"));
    assert_eq!(&req.body[..], br#"{"resourceSpans":[]}"#);
}

#[test]
fn an_unknown_compression_is_refused_naming_the_field() {
    let err = tracecast_model::config::validate(
        DestinationType::OtelCollector,
        &json!({"endpoint": "https://otel.example/v1/traces", "compression": "zstd"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("compression"), "{err}");
    // Types that speak their own protocols have no such field.
    let err = tracecast_model::config::validate(
        DestinationType::Opik,
        &json!({"apiKey": "k", "workspace": "w", "projectName": "p", "compression": "gzip"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("config.compression"), "{err}");
}

#[test]
fn gzip_inflates_back() {
    let data = br#"{"resourceSpans":[{"scopeSpans":[]}]}"#.repeat(50);
    let gz = tracecast_exporters::compression::gzip(&data);
    let mut back = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut back)
        .unwrap();
    assert_eq!(back, data);
}
