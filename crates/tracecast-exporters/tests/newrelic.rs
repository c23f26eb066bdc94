//! The `newrelic` destination against a loopback receiver playing New Relic's OTLP endpoint
//! (through the `newrelic` endpoint override). Bodies are decoded as binary protobuf with
//! opentelemetry-proto's message types.

mod common;
use common::golden;

use std::time::Duration;

use common::*;
use prost::Message;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tracecast_exporters::newrelic::{EU_ENDPOINT, MAX_REQUEST_BYTES, US_ENDPOINT, exporter};
use tracecast_exporters::otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use tracecast_exporters::otlp::proto::common::v1::any_value::Value as Any;
use tracecast_exporters::{ExportContext, Exporter, ItemOutcome, Outcome};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const LICENSE: &str = "eu01xxNRAL-license-key-0123456789";

fn ctx(base: &str) -> ExportContext {
    ExportContext::new(Duration::from_secs(5))
        .with_endpoint_override(DestinationType::Newrelic, base)
}

fn config(extra: Value) -> serde_json::Map<String, Value> {
    let mut cfg = json!({"licenseKey": LICENSE, "region": "us"});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        cfg[k] = v;
    }
    cfg.as_object().cloned().unwrap()
}

fn newrelic(rx: &Receiver, extra: Value) -> Box<dyn Exporter> {
    let base = rx.url("");
    match exporter(&config(extra), &ctx(&base)) {
        Ok(e) => Box::new(e),
        Err(e) => panic!("newrelic exporter: {e}"),
    }
}

fn decode_pb(body: &[u8]) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest::decode(body).expect("a binary protobuf ExportTraceServiceRequest")
}

fn sha_prefix(s: &str, n: usize) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..n])
}

#[tokio::test]
async fn posts_protobuf_with_the_license_key_and_the_standard_mapping() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({"headers": {"X-Team": "llm"}}));
    let g = generation(full_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(payload.content_type, "application/x-protobuf");
    // New Relic answers success with no body.
    rx.reply(Reply::status(200));
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let req = rx.next().await;
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/traces");
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(req.header("api-key"), Some(LICENSE));
    assert_eq!(req.header("x-team"), Some("llm"));
    let decoded = decode_pb(&req.body);
    let res = &decoded.resource_spans[0]
        .resource
        .as_ref()
        .unwrap()
        .attributes;
    assert_eq!(s(res, "service.name"), "openrouter");
    assert_eq!(s(res, "service.version"), "1.0.0");
    assert_eq!(s(res, "openrouter.trace.id"), "order_processing_001");

    // The "Supported Metadata Keys" table of newrelic.mdx.
    let sp = spans(&decoded);
    assert_eq!(sp.len(), 2);
    let (inter, gen_span) = (sp[0], sp[1]);
    // trace_id -> Trace ID (both spans).
    let trace_id = sha_prefix("order_processing_001", 16);
    assert_eq!(hex::encode(&inter.trace_id), trace_id);
    assert_eq!(hex::encode(&gen_span.trace_id), trace_id);
    // span_name -> the intermediate span's name; generation_name -> the generation span's.
    assert_eq!(inter.name, "Extraction");
    assert_eq!(gen_span.name, "Extract Order Details");
    // parent_span_id: it cannot name a span of this trace (the trace id is derived from a
    // name), so the top-most span is a root and carries it as an attribute.
    assert!(
        inter.parent_span_id.is_empty(),
        "an unsent parent leaves a root"
    );
    assert_eq!(
        s(&inter.attributes, "openrouter.trace.parent_span_id"),
        "00f067aa0ba902b7"
    );
    assert_eq!(gen_span.parent_span_id, inter.span_id);
    // trace_name -> on the top-most span.
    assert_eq!(
        s(&inter.attributes, "openrouter.trace.name"),
        "Order Processing Pipeline"
    );
    assert_eq!(
        hex::encode(&gen_span.span_id),
        sha_prefix("gen-1767225600-AbCdEfGhIjKlMnOpQrSt", 8)
    );

    // Additional context: user, session, custom metadata, gen_ai.*.
    let a = &gen_span.attributes;
    assert_eq!(s(a, "user.id"), "user_12345");
    assert_eq!(s(a, "session.id"), "session_abc");
    assert_eq!(s(&inter.attributes, "user.id"), "user_12345");
    assert_eq!(s(a, "trace.metadata.order_id"), "ORD-12345");
    assert_eq!(i(a, "trace.metadata.attempt"), 2);
    assert!(b(a, "trace.metadata.vip"));
    assert_eq!(s(a, "trace.metadata.customer"), r#"{"tier":"gold"}"#);
    assert!(!has(a, "trace.metadata.nothing"));
    assert!(
        !has(a, "trace.metadata.trace_id"),
        "reserved keys are not metadata"
    );
    assert_eq!(s(a, "gen_ai.request.model"), "openai/gpt-4o");
    assert_eq!(s(a, "gen_ai.response.model"), "openai/gpt-4o-2024-08-06");
    assert_eq!(s(a, "gen_ai.system"), "openai");
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 120);
    assert_eq!(i(a, "gen_ai.usage.output_tokens"), 30);
    assert_eq!(i(a, "gen_ai.usage.total_tokens"), 150);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.00123);
    assert_eq!(s(a, "gen_ai.response.finish_reason"), "tool_calls");
    assert!(s(a, "gen_ai.prompt").contains("Process this order"));
    assert!(s(a, "gen_ai.completion").contains("Looking up the SKU."));
    assert!(!has(a, "tracecast.truncated"), "nothing was over a limit");
    // Only primitives and homogeneous arrays (New Relic accepts no maps).
    for kv in sp.iter().flat_map(|s| &s.attributes) {
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Any::KvlistValue(_)) | Some(Any::BytesValue(_)) | None => {
                panic!("{} has an unsupported type", kv.key)
            }
            _ => {}
        }
    }

    // The golden file: the decoded request as OTLP/JSON. Regenerate with UPDATE_GOLDEN=1 and
    // review the diff.
    let now = serde_json::to_string_pretty(&decoded).unwrap() + "\n";
    let golden = golden::assert_text("newrelic.json", "New Relic request", &now);
    // The golden JSON is the same message: it decodes back to what was sent.
    let back: ExportTraceServiceRequest = serde_json::from_str(&golden).unwrap();
    assert_eq!(back, decoded);
}

#[tokio::test]
async fn a_root_generation_is_named_by_trace_name() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({}));
    let mut v = secret_record();
    v["trace"] =
        json!({"trace_id": "0af7651916cd43dd8448eb211c80319c", "trace_name": "Nightly run"});
    let g = generation(v);
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let req = decode_pb(&rx.next().await.body);
    let sp = spans(&req);
    assert_eq!(sp.len(), 1);
    assert_eq!(sp[0].name, "Nightly run");
    assert!(sp[0].parent_span_id.is_empty());
    // A 32-hex trace_id is the trace id itself.
    assert_eq!(
        hex::encode(&sp[0].trace_id),
        "0af7651916cd43dd8448eb211c80319c"
    );
}

#[test]
fn regions_select_the_endpoint() {
    let ctx = ExportContext::new(Duration::from_secs(5));
    let us = exporter(&config(json!({})), &ctx).unwrap();
    assert_eq!(
        us.inner().http().url().as_str(),
        format!("{US_ENDPOINT}/v1/traces")
    );
    assert_eq!(
        us.inner().http().url().as_str(),
        "https://otlp.nr-data.net/v1/traces"
    );
    let mut cfg = config(json!({"region": "eu"}));
    let eu = exporter(&cfg, &ctx).unwrap();
    assert_eq!(
        eu.inner().http().url().as_str(),
        format!("{EU_ENDPOINT}/v1/traces")
    );
    assert_eq!(
        eu.inner().http().url().as_str(),
        "https://otlp.eu01.nr-data.net/v1/traces"
    );
    cfg.remove("region");
    assert_eq!(
        exporter(&cfg, &ctx).unwrap().inner().http().url().as_str(),
        "https://otlp.nr-data.net/v1/traces",
        "us is the default"
    );
    cfg.insert("region".into(), json!("apac"));
    let err = exporter(&cfg, &ctx).err().expect("an unknown region fails");
    assert!(err.to_string().contains("region"), "{err}");
    cfg.insert("region".into(), json!("us"));
    cfg.insert("licenseKey".into(), json!("bad\nkey"));
    let err = exporter(&cfg, &ctx).err().expect("a broken key fails");
    assert!(err.to_string().contains("licenseKey"), "{err}");
    assert!(
        !err.to_string().contains("bad\nkey"),
        "the secret is not echoed"
    );
}

#[tokio::test]
async fn privacy_mode_sends_no_content() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({}));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..Default::default()
    };
    let p = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let req = rx.next().await;
    assert!(
        !req.body.windows(6).any(|w| w == b"SECRET"),
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
    // Everything else is still there.
    assert_eq!(i(a, "gen_ai.usage.input_tokens"), 3);
    assert_eq!(d(a, "gen_ai.usage.cost"), 0.5);
    assert_eq!(s(a, "user.id"), "u-1");
    assert_eq!(s(a, "trace.metadata.env"), "prod");
    assert_eq!(strings(a, "openrouter.tool_call_names"), vec!["lookup"]);
}

#[tokio::test]
async fn values_over_new_relics_limits_are_cut_visibly() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({}));
    let mut v = secret_record();
    let long_key = "k".repeat(300);
    v["request"]["messages"] = json!([{"role": "user", "content": "é".repeat(9000)}]);
    v["trace"] = json!({
        "note": "n".repeat(5000),
        "short": "fine",
        (long_key.clone()): "x",
        "trace_id": "t".repeat(5000),
    });
    let g = generation(v);
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let decoded = decode_pb(&rx.next().await.body);
    let rs = &decoded.resource_spans[0];
    let a = &spans(&decoded)[0].attributes;
    for kv in rs
        .resource
        .as_ref()
        .unwrap()
        .attributes
        .iter()
        .chain(a.iter())
    {
        assert!(kv.key.chars().count() <= 255, "key {} too long", kv.key);
        match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
            Some(Any::StringValue(s)) => {
                assert!(s.chars().count() <= 4095, "{} too long", kv.key)
            }
            Some(Any::ArrayValue(arr)) => assert!(arr.values.len() <= 64),
            _ => {}
        }
    }
    let note = s(a, "trace.metadata.note");
    assert_eq!(note.chars().count(), 4095);
    assert!(note.ends_with("…[truncated: 5000 chars]"), "{note}");
    let prompt = s(a, "gen_ai.prompt");
    assert!(prompt.ends_with(" chars]") && prompt.contains("…[truncated: "));
    assert_eq!(s(a, "trace.metadata.short"), "fine");
    assert!(b(a, "tracecast.truncated"));
    let listed = strings(a, "tracecast.truncated_attributes");
    let cut_key = format!("trace.metadata.{long_key}")
        .chars()
        .take(255)
        .collect::<String>();
    assert!(has(a, &cut_key), "the long key is cut, not dropped");
    assert_eq!(
        listed,
        vec![
            cut_key,
            "trace.metadata.note".to_string(),
            "gen_ai.prompt".to_string()
        ]
    );
    // The resource's trace key too.
    let res = &rs.resource.as_ref().unwrap().attributes;
    assert!(s(res, "openrouter.trace.id").ends_with("…[truncated: 5000 chars]"));
    assert_eq!(
        strings(res, "tracecast.resource.truncated_attributes"),
        vec!["openrouter.trace.id"]
    );
    assert!(b(res, "tracecast.resource.truncated"));
}

/// A generation whose metadata is `n` values of 4000 characters (each under the value limit).
fn heavy(id: &str, n: usize) -> Value {
    let mut v = secret_record();
    v["id"] = json!(id);
    let mut trace = serde_json::Map::new();
    for k in 0..n {
        trace.insert(format!("blob{k}"), json!("b".repeat(4000)));
    }
    v["trace"] = Value::Object(trace);
    v
}

#[tokio::test]
async fn bodies_over_one_megabyte_are_split_and_oversized_generations_rejected() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({}));
    // Ten generations of ~120 kB: 1.2 MB together.
    let gens: Vec<_> = (0..10)
        .map(|k| generation(heavy(&format!("gen-heavy-{k}"), 30)))
        .collect();
    let views: Vec<_> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let p = exporter.encode(&views).unwrap();
    assert!(p.body.len() > MAX_REQUEST_BYTES, "{}", p.body.len());
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let mut sent = Vec::new();
    while sent.len() < 10 {
        let req = rx.next().await;
        assert!(req.body.len() <= MAX_REQUEST_BYTES, "{}", req.body.len());
        assert_eq!(req.header("api-key"), Some(LICENSE));
        for rs in decode_pb(&req.body).resource_spans {
            let sp = &rs.scope_spans[0].spans;
            sent.push(s(&sp[sp.len() - 1].attributes, "gen_ai.response.id").to_string());
        }
    }
    let want: Vec<_> = (0..10).map(|k| format!("gen-heavy-{k}")).collect();
    assert_eq!(sent, want, "every generation once, in order");

    // One generation over 1 MB alone (300 values of 4000 characters) is rejected with the
    // limit named; its neighbours go through; a piece answered 503 is retried.
    let huge = generation(heavy("gen-huge", 300));
    let small = generation(secret_record());
    let views = [
        TraceView::new(&small, TraceOptions::default()),
        TraceView::new(&huge, TraceOptions::default()),
        TraceView::new(&small, TraceOptions::default()),
    ];
    let p = exporter.encode(&views).unwrap();
    rx.reply(Reply::status(200));
    rx.reply(Reply::status(503));
    match exporter.send(&p).await {
        Outcome::Partial(items) => {
            assert_eq!(items.len(), 3);
            assert_eq!(items[0], ItemOutcome::Delivered);
            match &items[1] {
                ItemOutcome::Rejected { error } => {
                    assert!(
                        error.contains("New Relic") && error.contains("999999"),
                        "{error}"
                    )
                }
                other => panic!("{other:?}"),
            }
            assert!(
                matches!(items[2], ItemOutcome::Retry { .. }),
                "{:?}",
                items[2]
            );
        }
        other => panic!("expected a partial outcome, got {other:?}"),
    }
    rx.next().await;
    rx.next().await;
    assert!(rx.try_next().await.is_none(), "the huge one was never sent");
}

#[tokio::test]
async fn answers_are_classified() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({}));
    let g = generation(secret_record());
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.reply(Reply::status(429).header("retry-after", "7"));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(7)
    ));
    rx.reply(Reply::status(403));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.reply(Reply::status(401));
    match exporter.send(&p).await {
        Outcome::Unauthorized { status: 401, error } => {
            assert!(!error.contains(LICENSE), "the key is not in the error")
        }
        other => panic!("{other:?}"),
    }
    rx.reply(Reply::status(413));
    assert!(matches!(
        exporter.send(&p).await,
        Outcome::Rejected {
            status: Some(413),
            ..
        }
    ));
    rx.reply(Reply::status(503));
    assert!(matches!(
        exporter.send(&p).await,
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
async fn test_connection_sends_an_empty_request_with_the_key() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({"headers": {"X-Team": "llm"}}));
    rx.reply(Reply::status(200));
    let ok = exporter.test_connection().await;
    assert!(ok.ok, "{ok:?}");
    assert_eq!(ok.status, Some(200));
    assert_eq!(
        ok.message,
        "New Relic accepted an empty OTLP export request (200)"
    );
    let req = rx.next().await;
    assert_eq!(req.path, "/v1/traces");
    assert!(
        req.body.is_empty(),
        "an empty request is zero bytes of protobuf"
    );
    assert_eq!(decode_pb(&req.body).resource_spans.len(), 0);
    assert_eq!(req.header("content-type"), Some("application/x-protobuf"));
    assert_eq!(req.header("api-key"), Some(LICENSE));
    assert_eq!(req.header("x-team"), Some("llm"));

    rx.reply(Reply::status(403));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(403));
    assert!(
        check
            .message
            .starts_with("New Relic rejected the license key")
            && check.message.ends_with("(403)"),
        "{}",
        check.message
    );
    assert!(!check.message.contains(LICENSE));
    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(!check.ok && check.message.contains("404"), "{check:?}");

    let refused = refused_url().await;
    let dead = exporter_for(&refused);
    let check = dead.test_connection().await;
    assert!(
        !check.ok && check.message.starts_with("New Relic could not be reached"),
        "{check:?}"
    );
}

fn exporter_for(base: &str) -> Box<dyn Exporter> {
    Box::new(exporter(&config(json!({})), &ctx(base)).unwrap())
}

#[tokio::test]
async fn the_license_key_wins_over_a_custom_header_of_the_same_name() {
    let rx = Receiver::start().await;
    let exporter = newrelic(&rx, json!({"headers": {"Api-Key": "from-headers"}}));
    let g = generation(secret_record());
    let p = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&p).await, Outcome::Delivered);
    let req = rx.next().await;
    let values: Vec<_> = req.headers.get_all("api-key").iter().collect();
    assert_eq!(values, vec![LICENSE]);
}
