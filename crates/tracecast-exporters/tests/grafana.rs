//! The `grafana` destination against a loopback receiver playing the Grafana Cloud OTLP
//! gateway. Bodies are binary protobuf, decoded with opentelemetry-proto's message types; the
//! golden body is parsed by the `opentelemetry-proto` Python package in
//! `tests/vendors/test_grafana.py`. Attribute limits are checked with the rule of Grafana
//! Tempo's distributor (`processAttributes`, `modules/distributor/distributor.go`): a key or a
//! string value over `max_attribute_bytes` (2048 by default) bytes is cut.

mod common;
use common::golden;
use common::setup::ctx;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracecast_exporters::grafana::{DEFAULT_BASE_URL, TEMPO_MAX_ATTRIBUTE_BYTES, exporter};
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::otlp::proto::common::v1::{KeyValue, any_value};
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

/// The body as Grafana's gateway reads it: a binary protobuf `ExportTraceServiceRequest`.
fn decode_pb(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("a binary protobuf ExportTraceServiceRequest")
}

/// What Tempo's distributor would cut (`processAttributes`): every key and string value of the
/// resource, scope, span, event and link attributes longer than `max` bytes.
fn tempo_would_cut(req: &ExportTraceServiceRequest, max: usize) -> Vec<String> {
    fn check(attrs: &[KeyValue], max: usize, out: &mut Vec<String>) {
        for kv in attrs {
            if kv.key.len() > max {
                out.push(format!("key {}", kv.key));
            }
            if let Some(any_value::Value::StringValue(v)) =
                kv.value.as_ref().and_then(|v| v.value.as_ref())
                && v.len() > max
            {
                out.push(format!("value of {} ({} bytes)", kv.key, v.len()));
            }
        }
    }
    let mut out = Vec::new();
    for rs in &req.resource_spans {
        if let Some(r) = &rs.resource {
            check(&r.attributes, max, &mut out);
        }
        for ss in &rs.scope_spans {
            if let Some(scope) = &ss.scope {
                check(&scope.attributes, max, &mut out);
            }
            for sp in &ss.spans {
                check(&sp.attributes, max, &mut out);
                for e in &sp.events {
                    check(&e.attributes, max, &mut out);
                }
                for l in &sp.links {
                    check(&l.attributes, max, &mut out);
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn posts_otlp_protobuf_with_basic_auth_to_the_gateway() {
    let rx = Receiver::start().await;
    let exporter = grafana(
        &rx.url(""),
        json!({"headers": {"X-Scope-OrgID": "tenant-7"}}),
    );
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(payload.content_type, "application/x-protobuf");
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/otlp/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(req.header("authorization"), Some(expected_auth().as_str()));
    assert_eq!(
        req.header("authorization"),
        Some("Basic MTIzNDU2OmdsY19leUp2SWpvaU1USXpJaXdpYmlJNkluUnlZV05sY3lKOQ==")
    );
    assert_eq!(req.header("x-scope-orgid"), Some("tenant-7"));
    let decoded = decode_pb(&req.body);

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
    // The parent cannot name a span of this trace (its id is derived from a name): Tempo would
    // show "root span not yet received", so the span is a root and carries the parent.
    assert!(
        inter.parent_span_id.is_empty(),
        "an unsent parent leaves a root"
    );
    assert_eq!(
        s(&inter.attributes, "openrouter.trace.parent_span_id"),
        "00f067aa0ba902b7",
        "parent_span_id -> openrouter.trace.parent_span_id"
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
    assert!(tempo_would_cut(&decoded, TEMPO_MAX_ATTRIBUTE_BYTES).is_empty());

    // The golden file: this body, byte for byte (binary protobuf). Regenerate with
    // UPDATE_GOLDEN=1 and review.
    golden::assert_bytes("grafana.pb", "Grafana body", req.body.as_ref());
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
    let decoded = decode_pb(&req.body);
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

/// A parent in the user's own OpenTelemetry trace (16-hex span id, 32-hex trace id) links the
/// generation under the user's span in Tempo; the same rule serves Arize, New Relic, Sentry
/// and Ramp (`OtlpDialect::parent_span_id` in each, `carry_unsent_parent` for the rest).
#[tokio::test]
async fn an_own_otlp_parent_links_and_any_other_is_carried_on_a_root() {
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url("/otlp"), json!({}));
    for (trace, linked) in [
        (
            json!({"trace_id": "0af7651916cd43dd8448eb211c80319c", "parent_span_id": "b7ad6b7169203331"}),
            true,
        ),
        (
            json!({"trace_id": "orders", "parent_span_id": "b7ad6b7169203331"}),
            false,
        ),
        (
            json!({"trace_id": "0af7651916cd43dd8448eb211c80319c", "parent_span_id": "step-3"}),
            false,
        ),
    ] {
        let mut v = secret_record();
        v["trace"] = trace.clone();
        let g = generation(v);
        let p = exporter
            .encode(&[TraceView::new(&g, TraceOptions::default())])
            .unwrap();
        assert_eq!(exporter.send(&p).await, Outcome::Delivered);
        let decoded = decode_pb(&rx.next().await.body);
        let top = spans(&decoded)[0].clone();
        let carried = top
            .attributes
            .iter()
            .any(|a| a.key == "openrouter.trace.parent_span_id");
        if linked {
            assert_eq!(
                hex::encode(&top.parent_span_id),
                "b7ad6b7169203331",
                "{trace}"
            );
            assert!(!carried, "{trace}");
        } else {
            assert!(top.parent_span_id.is_empty(), "{trace}");
            assert_eq!(
                s(&top.attributes, "openrouter.trace.parent_span_id"),
                trace["parent_span_id"].as_str().unwrap(),
                "{trace}"
            );
        }
    }
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
    let decoded = decode_pb(&req.body);
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
async fn values_over_tempos_attribute_limit_are_cut_visibly() {
    assert_eq!(TEMPO_MAX_ATTRIBUTE_BYTES, 2048, "Tempo's default");
    let rx = Receiver::start().await;
    let exporter = grafana(&rx.url(""), json!({}));
    let mut v = secret_record();
    // 3,000 characters but 6,000+ bytes: over Tempo's limit, which counts bytes.
    v["request"]["messages"] = json!([{"role": "user", "content": "é".repeat(3_000)}]);
    v["trace"] = json!({"note": "n".repeat(2_100), "short": "kept"});
    let g = generation(v);
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let decoded = decode_pb(&rx.next().await.body);
    // Nothing is left for Tempo to cut silently.
    assert_eq!(
        tempo_would_cut(&decoded, TEMPO_MAX_ATTRIBUTE_BYTES),
        Vec::<String>::new()
    );
    let a = &spans(&decoded)[0].attributes;
    let prompt = s(a, "gen_ai.prompt");
    assert!(
        prompt.len() <= 2048 && prompt.len() > 2000,
        "{}",
        prompt.len()
    );
    assert!(
        prompt.starts_with("{\"messages\":[{\"content\":\"éé"),
        "{prompt}"
    );
    assert!(prompt.ends_with(" bytes]"), "visible marker: {prompt}");
    assert!(prompt.contains("…[truncated: "), "visible marker");
    let note = s(a, "trace.metadata.note");
    assert!(
        note.len() <= 2048 && note.ends_with("…[truncated: 2100 bytes]"),
        "{note}"
    );
    assert!(b(a, "tracecast.truncated"));
    assert_eq!(
        strings(a, "tracecast.truncated_attributes"),
        vec!["trace.metadata.note", "gen_ai.prompt"]
    );
    assert_eq!(s(a, "trace.metadata.short"), "kept");
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
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert!(
        req.body.is_empty(),
        "an empty ExportTraceServiceRequest is zero bytes"
    );
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
