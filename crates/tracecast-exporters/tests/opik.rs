//! The `opik` destination against a real HTTP receiver on 127.0.0.1 playing Opik's REST API.

mod common;
use common::golden;
use common::setup::ALL_GROUPS;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use serde_json::{Map, Value, json};
use tracecast_exporters::opik::{OpikExporter, span_uuid, trace_uuid};
use tracecast_exporters::{ExportContext, ExportError, Exporter, Outcome, Payload, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};
use uuid::Uuid;

fn ctx(rx: &Receiver) -> ExportContext {
    ExportContext::new(Duration::from_secs(5))
        .with_endpoint_override(DestinationType::Opik, &rx.url("/opik/api"))
}

fn config() -> Map<String, Value> {
    json!({
        "apiKey": "opik_KEY123",
        "workspace": "acme",
        "projectName": "checkout-evals",
        "headers": {"X-Proxy-Token": "px-1", "Authorization": "overridden-by-the-key"}
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn opik(rx: &Receiver) -> Arc<dyn Exporter> {
    match build(DestinationType::Opik, &config(), &ctx(rx)) {
        Ok(e) => e,
        Err(e) => panic!("opik exporter: {e}"),
    }
}

/// The golden generation: the shared full record plus `tags` and `environment`.
fn opik_record() -> Value {
    let mut r = full_record();
    let t = r["trace"].as_object_mut().unwrap();
    t.insert("tags".into(), json!(["checkout", "eval"]));
    t.insert("environment".into(), json!("production"));
    r
}

/// The documents of an encoded payload: (`traces` or `spans`, items).
fn documents(body: &[u8]) -> Vec<(String, Vec<Value>)> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).expect("each line is JSON");
            let o = v.as_object().expect("object");
            assert_eq!(o.len(), 1, "one key per document: {v}");
            let (k, items) = o.iter().next().unwrap();
            (k.clone(), items.as_array().expect("array").clone())
        })
        .collect()
}

fn traces_and_spans(body: &[u8]) -> (Vec<Value>, Vec<Value>) {
    let mut t = Vec::new();
    let mut s = Vec::new();
    for (k, items) in documents(body) {
        match k.as_str() {
            "traces" => t.extend(items),
            "spans" => s.extend(items),
            other => panic!("unexpected document {other}"),
        }
    }
    (t, s)
}

async fn encode_send(exporter: &dyn Exporter, views: &[TraceView<'_>]) -> (Payload, Outcome) {
    let payload = exporter.encode(views).expect("encodes");
    let outcome = exporter.send(&payload).await;
    (payload, outcome)
}

#[tokio::test]
async fn posts_traces_then_spans_with_auth_workspace_and_custom_headers() {
    let rx = Receiver::start().await;
    rx.reply(Reply::status(204));
    rx.reply(Reply::status(204));
    let exporter = opik(&rx);
    let g = generation(opik_record());
    let (payload, outcome) =
        encode_send(exporter.as_ref(), &[TraceView::new(&g, ALL_GROUPS)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    assert_eq!(payload.items, 1);

    let traces_req = rx.next().await;
    assert_eq!(traces_req.method, "POST");
    assert_eq!(traces_req.path, "/opik/api/v1/private/traces/batch");
    // The raw key, no "Bearer" (Opik's SDK sends it so), replacing a custom Authorization.
    assert_eq!(traces_req.header("authorization"), Some("opik_KEY123"));
    assert_eq!(traces_req.header("comet-workspace"), Some("acme"));
    assert_eq!(traces_req.header("x-proxy-token"), Some("px-1"));
    assert_eq!(traces_req.header("content-type"), Some("application/json"));
    let spans_req = rx.next().await;
    assert_eq!(spans_req.path, "/opik/api/v1/private/spans/batch");
    assert_eq!(spans_req.header("authorization"), Some("opik_KEY123"));
    assert_eq!(spans_req.header("x-proxy-token"), Some("px-1"));
    assert!(rx.try_next().await.is_none(), "two requests for one batch");

    let t: Value = serde_json::from_slice(&traces_req.body).unwrap();
    assert_eq!(t["traces"].as_array().unwrap().len(), 1);
    let s: Value = serde_json::from_slice(&spans_req.body).unwrap();
    assert_eq!(s["spans"].as_array().unwrap().len(), 2);

    // The golden file: the encoded payload (one request body per line), byte for byte.
    // Regenerate with UPDATE_GOLDEN=1 and review the diff; tests/vendors/test_opik.py checks it
    // against the `opik` package's REST models.
    let mut sent = traces_req.body.to_vec();
    sent.push(b'\n');
    sent.extend_from_slice(&spans_req.body);
    sent.push(b'\n');
    assert_eq!(
        sent,
        payload.body.to_vec(),
        "the wire bodies are the payload's lines"
    );
    golden::assert_bytes("opik.ndjson", "Opik payload", payload.body.as_ref());
}

#[test]
fn maps_every_supported_metadata_key_user_session_tags_and_environment() {
    let rx_ctx = ExportContext::new(Duration::from_secs(5));
    let exporter = OpikExporter::new(&config(), &rx_ctx).unwrap();
    let g = generation(opik_record());
    let (trace, spans) = exporter.records(&TraceView::new(&g, ALL_GROUPS));
    assert_eq!(spans.len(), 2, "the span_name span and the LLM span");
    let (mid, llm) = (&spans[0], &spans[1]);

    // trace_id -> trace metadata openrouter_trace_id (and on the spans).
    assert_eq!(
        trace["metadata"]["openrouter_trace_id"],
        "order_processing_001"
    );
    assert_eq!(
        mid["metadata"]["openrouter_trace_id"],
        "order_processing_001"
    );
    assert_eq!(
        llm["metadata"]["openrouter_trace_id"],
        "order_processing_001"
    );
    // trace_name -> trace name.
    assert_eq!(trace["name"], "Order Processing Pipeline");
    // span_name -> the intermediate span's name; generation_name -> the LLM span's name.
    assert_eq!(mid["name"], "Extraction");
    assert_eq!(mid["type"], "general");
    assert_eq!(llm["name"], "Extract Order Details");
    assert_eq!(llm["type"], "llm");
    assert_eq!(llm["parent_span_id"], mid["id"]);
    assert_eq!(llm["trace_id"], trace["id"]);
    assert_eq!(mid["trace_id"], trace["id"]);
    // The original ids.
    assert_eq!(
        llm["metadata"]["openrouter_observation_id"],
        "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
    );
    // A parent_span_id that is not a UUIDv7 cannot be an Opik parent: kept in metadata.
    assert!(mid.get("parent_span_id").is_none());
    assert_eq!(
        mid["metadata"]["openrouter_parent_span_id"],
        "00f067aa0ba902b7"
    );

    // user -> trace metadata user_id; session -> thread_id (and metadata).
    assert_eq!(trace["metadata"]["user_id"], "user_12345");
    assert_eq!(trace["metadata"]["session_id"], "session_abc");
    assert_eq!(trace["thread_id"], "session_abc");
    assert_eq!(llm["metadata"]["user_id"], "user_12345");

    // Custom keys in both the trace and the span metadata.
    for m in [&trace["metadata"], &llm["metadata"], &mid["metadata"]] {
        assert_eq!(m["order_id"], "ORD-12345");
        assert_eq!(m["priority"], "high");
        assert_eq!(m["attempt"], 2);
        assert_eq!(m["customer"], json!({"tier": "gold"}));
        assert!(m.get("nothing").is_none(), "null custom values are skipped");
        // Hierarchy keys are not custom metadata.
        assert!(m.get("trace_name").is_none() && m.get("span_name").is_none());
    }
    // Tags and environment.
    assert_eq!(trace["tags"], json!(["checkout", "eval"]));
    assert_eq!(llm["tags"], json!(["checkout", "eval"]));
    assert_eq!(trace["environment"], "production");
    assert_eq!(llm["environment"], "production");

    // Cost (input, output, total), model parameters and finish reasons in span metadata.
    assert_eq!(
        llm["metadata"]["cost"],
        json!({"total": 0.00123, "input": 0.00083, "output": 0.0004})
    );
    assert_eq!(llm["total_estimated_cost"], 0.00123);
    assert_eq!(llm["metadata"]["model_parameters"]["temperature"], 0.2);
    assert_eq!(llm["metadata"]["model_parameters"]["max_tokens"], 256);
    assert_eq!(llm["metadata"]["finish_reasons"], json!(["tool_calls"]));
    assert_eq!(
        llm["metadata"]["response_model"],
        "openai/gpt-4o-2024-08-06"
    );
    // Model, provider, usage, ttft.
    assert_eq!(llm["model"], "openai/gpt-4o");
    assert_eq!(llm["provider"], "OpenAI");
    assert_eq!(
        llm["usage"],
        json!({"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150,
               "cached_tokens": 100, "cache_write_tokens": 4, "reasoning_tokens": 8})
    );
    assert_eq!(llm["ttft"], 310.25);
    // Metadata groups.
    assert_eq!(llm["metadata"]["is_byok"], false);
    assert_eq!(llm["metadata"]["external_user"], "ext-42");
    assert_eq!(llm["metadata"]["http_referer"], "https://shop.example");
    assert_eq!(
        llm["metadata"]["cost_allocation"]["prompt"]["cost"],
        0.00083
    );

    // Times: ISO-8601 UTC with microseconds; end = start + latency. A shared trace starts at
    // the time in its id (the start of the call's minute).
    assert_eq!(trace["start_time"], "2026-01-01T13:37:00.000000Z");
    assert_eq!(trace["end_time"], "2026-01-01T13:37:43.773500Z");
    assert_eq!(trace["last_updated_at"], trace["end_time"]);
    assert_eq!(llm["start_time"], "2026-01-01T13:37:42.250000Z");

    // Content on the LLM span; a shared trace's row carries no single call's content.
    assert!(trace.get("input").is_none() && trace.get("output").is_none());
    assert_eq!(
        llm["input"]["messages"][1]["content"],
        "Process this order: 2 widgets"
    );
    assert_eq!(llm["input"]["tools"][0]["function"]["name"], "lookup_sku");
    assert_eq!(llm["output"]["completion"], "Looking up the SKU.");
    assert_eq!(llm["output"]["reasoning"], "Need the SKU first.");
    assert_eq!(llm["output"]["tool_calls"][0]["id"], "call_1");
    assert_eq!(trace["project_name"], "checkout-evals");
    assert_eq!(llm["project_name"], "checkout-evals");
}

#[test]
fn ids_are_deterministic_uuid_v7() {
    let g = generation(opik_record());
    let v = TraceView::new(&g, TraceOptions::default());
    let t = trace_uuid(&v);
    let s = span_uuid(&v);
    assert_eq!(t.get_version_num(), 7);
    assert_eq!(s.get_version_num(), 7);
    assert_eq!(t, trace_uuid(&v), "same id on every encode");
    // The LLM span's time is created_at (ms); a shared trace's is the start of its UTC
    // minute (2026-01-01T13:37:42.250Z), not midnight: Opik lists traces by the id's time.
    let ms = |u: Uuid| {
        let (secs, nanos) = u.get_timestamp().unwrap().to_unix();
        secs * 1000 + u64::from(nanos) / 1_000_000
    };
    assert_eq!(ms(s), 1_767_274_662_250);
    assert_eq!(ms(t), 1_767_274_620_000);

    // Another generation of the same trace later that minute: same trace id, own span id.
    let mut other = opik_record();
    other["id"] = json!("gen-2");
    other["created_at"] = json!("2026-01-01T13:37:59.900Z");
    let g2 = generation(other);
    let v2 = TraceView::new(&g2, TraceOptions::default());
    assert_eq!(trace_uuid(&v2), t);
    assert_ne!(span_uuid(&v2), s);
    // In the next minute the trace is another Opik trace, found by its metadata.
    let mut next = opik_record();
    next["id"] = json!("gen-3");
    next["created_at"] = json!("2026-01-01T13:38:00.100Z");
    let g4 = generation(next);
    assert_ne!(trace_uuid(&TraceView::new(&g4, TraceOptions::default())), t);

    // No trace_id: the trace is the generation's own, timed at created_at.
    let lone = generation(secret_record());
    let lv = TraceView::new(&lone, TraceOptions::default());
    assert_eq!(ms(trace_uuid(&lv)), 1_767_225_600_000);
    assert_ne!(trace_uuid(&lv), span_uuid(&lv));

    // A trace_id that is already a UUIDv7 is used as is; so is a UUIDv7 parent_span_id.
    let given_trace = "019b7c3a-1f00-7abc-8def-0123456789ab";
    let given_parent = "019b7c3a-1f00-7abc-8def-0123456789ac";
    let mut r = secret_record();
    r["trace"] = json!({"trace_id": given_trace, "parent_span_id": given_parent});
    let g3 = generation(r);
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    let (trace, spans) = exporter.records(&TraceView::new(&g3, TraceOptions::default()));
    assert_eq!(trace["id"], given_trace);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0]["parent_span_id"], given_parent);
    assert!(
        spans[0]["metadata"]
            .get("openrouter_parent_span_id")
            .is_none()
    );
}

#[tokio::test]
async fn privacy_mode_sends_no_content_but_keeps_the_rest() {
    let rx = Receiver::start().await;
    let exporter = opik(&rx);
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let (payload, outcome) = encode_send(exporter.as_ref(), &[TraceView::new(&g, opts)]).await;
    assert_eq!(outcome, Outcome::Delivered);
    let mut wire = Vec::new();
    for _ in 0..2 {
        wire.extend_from_slice(&rx.next().await.body);
    }
    let text = String::from_utf8(wire).unwrap();
    assert!(!text.contains("SECRET"), "content reached Opik: {text}");
    let (traces, spans) = traces_and_spans(&payload.body);
    let (trace, llm) = (&traces[0], &spans[0]);
    assert!(trace.get("input").is_none() && trace.get("output").is_none());
    assert!(llm.get("input").is_none() && llm.get("output").is_none());
    assert_eq!(llm["usage"]["prompt_tokens"], 3);
    assert_eq!(llm["total_estimated_cost"], 0.5);
    assert_eq!(llm["metadata"]["env"], "prod");
    assert_eq!(llm["metadata"]["model_parameters"]["temperature"], 0.5);
    assert_eq!(llm["metadata"]["tool_call_names"], json!(["lookup"]));
    assert_eq!(trace["metadata"]["user_id"], "u-1");
    assert_eq!(trace["thread_id"], "s-1");
}

#[test]
fn a_batch_sends_a_shared_trace_once_and_splits_at_1000_items() {
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    let gens: Vec<_> = (0..600)
        .map(|n| {
            let mut r = opik_record();
            r["id"] = json!(format!("gen-{n}"));
            generation(r)
        })
        .collect();
    let views: Vec<_> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let payload = exporter.encode(&views).unwrap();
    assert_eq!(payload.items, 600);
    let docs = documents(&payload.body);
    let kinds: Vec<(&str, usize)> = docs.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    // One trace and one shared span_name span for all 600; 600 LLM spans.
    assert_eq!(kinds, vec![("traces", 1), ("spans", 601)]);

    // 1200 distinct spans split into requests of at most 1000.
    let gens: Vec<_> = (0..600)
        .map(|n| {
            let mut r = opik_record();
            r["id"] = json!(format!("gen-{n}"));
            r["trace"]["trace_id"] = json!(format!("t-{n}"));
            generation(r)
        })
        .collect();
    let views: Vec<_> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let payload = exporter.encode(&views).unwrap();
    let docs = documents(&payload.body);
    let kinds: Vec<(&str, usize)> = docs.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        kinds,
        vec![("traces", 600), ("spans", 1000), ("spans", 200)]
    );
}

#[test]
fn oversized_content_is_replaced_by_a_visible_marker() {
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    let mut r = secret_record();
    r["request"]["messages"][0]["content"] = json!("x".repeat(3 * 1024 * 1024));
    let g = generation(r);
    let (trace, spans) = exporter.records(&TraceView::new(&g, TraceOptions::default()));
    for rec in [&trace, &spans[0]] {
        assert_eq!(rec["input"]["opik_truncated"], true);
        assert_eq!(rec["input"]["truncated"], true);
        assert!(rec["input"]["original_bytes"].as_u64().unwrap() > 3 * 1024 * 1024);
        assert_eq!(rec["metadata"]["truncated"], true);
        assert_eq!(rec["metadata"]["truncated_fields"], json!(["input"]));
        // The small output is kept.
        assert_eq!(rec["output"]["completion"], "SECRET-ANSWER");
    }
}

#[test]
fn blank_names_fall_back_to_the_model() {
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    let mut r = secret_record();
    r["trace"] = json!({"trace_name": "  ", "generation_name": " ", "span_name": " "});
    let g = generation(r);
    let (trace, spans) = exporter.records(&TraceView::new(&g, TraceOptions::default()));
    assert_eq!(trace["name"], "anthropic/claude-sonnet-4");
    assert_eq!(spans.len(), 1, "a blank span_name makes no span");
    assert_eq!(spans[0]["name"], "anthropic/claude-sonnet-4");
}

#[test]
fn a_failed_generation_carries_error_info() {
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    let mut r = secret_record();
    r["error"] = json!({"code": 429, "message": "Provider rate limited"});
    let g = generation(r);
    let (trace, spans) = exporter.records(&TraceView::new(&g, TraceOptions::default()));
    for rec in [&trace, &spans[0]] {
        assert_eq!(
            rec["error_info"],
            json!({"exception_type": "429", "message": "Provider rate limited", "traceback": "Provider rate limited"})
        );
    }
}

#[tokio::test]
async fn outcomes_follow_opik_answers() {
    let g = generation(secret_record());
    let views = [TraceView::new(&g, TraceOptions::default())];

    // 429 with Retry-After on the traces request: retry later, spans not sent.
    let rx = Receiver::start().await;
    let exporter = opik(&rx);
    rx.reply(Reply::status(429).header("retry-after", "7"));
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    match outcome {
        Outcome::Retry {
            status: Some(429),
            retry_after,
            ..
        } => assert_eq!(retry_after, Some(Duration::from_secs(7))),
        other => panic!("expected a retry, got {other:?}"),
    }
    assert!(rx.next().await.path.ends_with("/traces/batch"));
    assert!(
        rx.try_next().await.is_none(),
        "spans are not sent after a failure"
    );

    // Opik cloud's RateLimit-Reset (seconds) when there is no Retry-After.
    rx.reply(Reply::status(204));
    rx.reply(Reply::status(429).header("ratelimit-reset", "3"));
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    match outcome {
        Outcome::Retry { retry_after, .. } => {
            assert_eq!(retry_after, Some(Duration::from_secs(3)))
        }
        other => panic!("expected a retry, got {other:?}"),
    }

    // 401 and 403 pause; 400 dead-letters with Opik's message; 503 retries.
    rx.reply(Reply::status(401).body(r#"{"message":"API key is invalid"}"#));
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    assert!(
        matches!(&outcome, Outcome::Unauthorized { status: 401, error } if error.contains("API key is invalid")),
        "{outcome:?}"
    );
    rx.reply(Reply::status(403));
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    assert!(matches!(outcome, Outcome::Unauthorized { status: 403, .. }));
    rx.reply(Reply::status(204));
    rx.reply(Reply::status(422).body(r#"{"errors":["spans[0].name must not be blank"]}"#));
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    assert!(
        matches!(&outcome, Outcome::Rejected { status: Some(422), error } if error.contains("must not be blank")),
        "{outcome:?}"
    );
    rx.reply(Reply::status(503));
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    assert!(matches!(
        outcome,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));

    // No answer at all: retry.
    let refused = refused_url().await;
    let ctx = ExportContext::new(Duration::from_secs(2)).with_endpoint_override(
        DestinationType::Opik,
        refused.trim_end_matches("/v1/traces"),
    );
    let exporter = build(DestinationType::Opik, &config(), &ctx).unwrap();
    let (_, outcome) = encode_send(exporter.as_ref(), &views).await;
    assert!(
        matches!(outcome, Outcome::Retry { status: None, .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn test_connection_reads_the_project_list() {
    let rx = Receiver::start().await;
    let exporter = opik(&rx);
    let concrete = OpikExporter::new(&config(), &ctx(&rx)).unwrap();
    assert_eq!(
        concrete.test_url().as_str(),
        rx.url("/opik/api/v1/private/projects?name=checkout-evals&size=1")
    );

    rx.reply(Reply::status(200).body(r#"{"page":1,"size":0,"total":0,"content":[]}"#));
    let check = exporter.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(check.status, Some(200));
    assert!(
        check.message.contains("workspace \"acme\""),
        "{}",
        check.message
    );
    assert!(
        check.message.contains("will be created"),
        "{}",
        check.message
    );
    let req = rx.next().await;
    assert_eq!(req.method, "GET");
    assert_eq!(req.path, "/opik/api/v1/private/projects");
    assert_eq!(req.header("authorization"), Some("opik_KEY123"));
    assert_eq!(req.header("comet-workspace"), Some("acme"));
    assert_eq!(req.header("x-proxy-token"), Some("px-1"));

    rx.reply(Reply::status(200).body(r#"{"content":[{"name":"checkout-evals"}]}"#));
    let check = exporter.test_connection().await;
    assert!(check.ok && check.message.contains("exists"), "{check:?}");

    rx.reply(Reply::status(401));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.message, "Opik rejected the API key (401)");
    assert!(!check.message.contains("opik_KEY123"));

    rx.reply(Reply::status(403).body("no access"));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("workspace \"acme\"") && check.message.contains("403")
    );

    rx.reply(Reply::status(404));
    let check = exporter.test_connection().await;
    assert!(
        !check.ok && check.message.contains("/opik/api"),
        "{check:?}"
    );

    let refused = refused_url().await;
    let ctx = ExportContext::new(Duration::from_secs(2)).with_endpoint_override(
        DestinationType::Opik,
        refused.trim_end_matches("/v1/traces"),
    );
    let exporter = build(DestinationType::Opik, &config(), &ctx).unwrap();
    let check = exporter.test_connection().await;
    assert!(!check.ok && check.status.is_none());
    assert!(
        check.message.starts_with("Opik could not be reached"),
        "{}",
        check.message
    );
}

#[test]
fn cloud_url_by_default_and_config_errors_name_the_field() {
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    assert_eq!(
        exporter.test_url().as_str(),
        "https://www.comet.com/opik/api/v1/private/projects?name=checkout-evals&size=1"
    );
    for field in ["apiKey", "workspace", "projectName"] {
        let mut cfg = config();
        cfg.remove(field);
        match OpikExporter::new(&cfg, &ExportContext::new(Duration::from_secs(1))) {
            Err(ExportError::Config(msg)) => assert!(msg.contains(field), "{msg}"),
            Err(e) => panic!("{field}: unexpected error {e}"),
            Ok(_) => panic!("{field}: a config without it was accepted"),
        }
    }
    let mut cfg = config();
    cfg.insert("apiKey".into(), json!("bad\nkey"));
    match OpikExporter::new(&cfg, &ExportContext::new(Duration::from_secs(1))) {
        Err(ExportError::Config(msg)) => {
            assert!(msg.contains("apiKey") && !msg.contains("bad\nkey"), "{msg}")
        }
        _ => panic!("a key that is not a header value was accepted"),
    }
}

#[test]
fn a_shared_trace_row_describes_the_trace_whichever_call_arrives_last() {
    let exporter =
        OpikExporter::new(&config(), &ExportContext::new(Duration::from_secs(1))).unwrap();
    // Three calls of one trace in one minute, delivered out of order in one batch.
    let calls = [
        ("gen-b", "13:37:50.000", 9000.0),
        ("gen-a", "13:37:05.000", 1000.0),
        ("gen-c", "13:37:20.000", 2000.0),
    ];
    let gens: Vec<_> = calls
        .iter()
        .map(|(id, at, latency)| {
            let mut r = opik_record();
            r["id"] = json!(id);
            r["created_at"] = json!(format!("2026-01-01T{at}Z"));
            r["latency"] = json!(latency);
            generation(r)
        })
        .collect();
    let views: Vec<_> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let payload = exporter.encode(&views).unwrap();
    let (traces, spans) = traces_and_spans(&payload.body);
    assert_eq!(traces.len(), 1);
    let t = &traces[0];
    // Starts at its id's time, ends with the call that ends last (gen-b: 13:37:59), and Opik
    // keeps that row whatever the delivery order (its rows replace by last_updated_at).
    assert_eq!(t["start_time"], "2026-01-01T13:37:00.000000Z");
    assert_eq!(t["end_time"], "2026-01-01T13:37:59.000000Z");
    assert_eq!(t["last_updated_at"], t["end_time"]);
    let (earlier, _) = exporter.records(&views[1]);
    assert!(earlier["last_updated_at"].as_str() < t["last_updated_at"].as_str());
    assert!(t.get("input").is_none() && t.get("error_info").is_none());
    assert_eq!(spans.iter().filter(|s| s["type"] == "llm").count(), 3);
    // Every id's time is within the minute of its record's start_time.
    for rec in traces.iter().chain(spans.iter()) {
        let id = Uuid::parse_str(rec["id"].as_str().unwrap()).unwrap();
        let (secs, _) = id.get_timestamp().unwrap().to_unix();
        let start = chrono::DateTime::parse_from_rfc3339(rec["start_time"].as_str().unwrap())
            .unwrap()
            .timestamp() as u64;
        assert_eq!(secs / 60, start / 60, "{rec}");
    }
}
