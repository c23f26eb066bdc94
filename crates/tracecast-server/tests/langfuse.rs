//! The `langfuse` destination end to end: the real server, a loopback receiver playing
//! Langfuse's OTLP endpoint, payloads decoded with the OpenTelemetry proto definitions.

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, create_destination, fast, ingest_status as ingest,
    patch_config, record_with, response_without_usage, test_config as test, usage, wait_paused,
    wait_status,
};
use common::receiver::{Mode, Receiver, attr, string_attr};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use serde_json::{Value, json};

const PK: &str = "pk-lf-public-0001";
const SK: &str = "sk-lf-secret-0001";

/// The HTTP Basic header for a key pair (RFC 4648 base64, written out here: this crate's
/// tests have no base64 dependency).
fn basic(pk: &str, sk: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{pk}:{sk}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "latency": 800.0,
            "time_to_first_token": 120.0,
            "finish_reason": null,
            "session_id": "session-1",
            "response": response_without_usage(),
            "usage": usage(),
            "trace": {
                "trace_id": "workflow_12345",
                "trace_name": "Document Processing Pipeline",
                "span_name": "Summarization Step",
                "generation_name": "Generate Summary",
                "environment": "production",
                "release": "2.1.0",
                "pipeline_version": "2.1.0"
            }
        }),
    )
}

async fn create(s: &TestServer, rec: &Receiver, extra: Value) -> String {
    let body = json!({
        "type": "langfuse",
        "name": "Production Langfuse",
        "config": {"publicKey": PK, "secretKey": SK, "baseUrl": base_url(rec), "headers": {"X-Proxy": "p1"}}
    });
    let (id, r) = create_destination(s, body, extra).await;
    assert_ne!(
        r.body["data"]["config"]["secretKey"], SK,
        "secrets are masked"
    );
    id
}

fn generation_spans(rec: &Receiver) -> Vec<Span> {
    rec.spans()
        .into_iter()
        .filter(|sp| string_attr(sp, "langfuse.observation.type").as_deref() == Some("generation"))
        .collect()
}

#[tokio::test]
async fn langfuse_delivery_end_to_end() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    let private = Receiver::start().await;
    let id = create(&s, &rec, json!({})).await;
    create(
        &s,
        &private,
        json!({"name": "private", "privacy_mode": true}),
    )
    .await;

    // 429 with Retry-After first: retried no earlier than it says.
    rec.script([Mode::RetryAfter(429, 1)]);
    assert_eq!(
        ingest(&s, &key, &[record("gen-1"), record("gen-2")]).await,
        202
    );
    for r in [&rec, &private] {
        r.wait(15, "two generations", |r| r.generation_ids().len() == 2)
            .await;
    }
    let reqs = rec.requests();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);

    let req = &reqs[1];
    assert_eq!(req.headers["authorization"], basic(PK, SK).as_str());
    assert_eq!(req.headers["x-langfuse-ingestion-version"], "4");
    assert_eq!(req.headers["x-proxy"], "p1");
    let spans = rec.spans();
    let gens = generation_spans(&rec);
    assert_eq!(gens.len(), 2);
    let g = &gens[0];
    let parent = spans
        .iter()
        .find(|sp| sp.span_id == g.parent_span_id)
        .expect("the span_name span");
    assert_eq!(parent.name, "Summarization Step");
    assert_eq!(
        string_attr(parent, "langfuse.trace.name").as_deref(),
        Some("Document Processing Pipeline")
    );
    assert_eq!(g.name, "Generate Summary");
    for (k, v) in [
        ("langfuse.environment", "production"),
        ("langfuse.release", "2.1.0"),
        ("langfuse.trace.metadata.pipeline_version", "2.1.0"),
        ("user.id", "user-1"),
        ("session.id", "session-1"),
        ("langfuse.observation.model.name", "openai/gpt-4o"),
        (
            "langfuse.observation.completion_start_time",
            "2026-03-01T12:00:00.120Z",
        ),
        ("langfuse.observation.level", "DEFAULT"),
    ] {
        assert_eq!(string_attr(g, k).as_deref(), Some(v), "{k}");
    }
    let usage: Value =
        serde_json::from_str(&string_attr(g, "langfuse.observation.usage_details").unwrap())
            .unwrap();
    assert_eq!(usage, json!({"input": 12, "output": 5, "total": 17}));
    assert!(
        string_attr(g, "langfuse.observation.input")
            .unwrap()
            .contains("PROMPT-TEXT")
    );
    use sha2::Digest;
    assert_eq!(g.trace_id, &sha2::Sha256::digest(b"workflow_12345")[..16]);

    // Privacy mode: the same generations without prompt or completion.
    for r in private.requests() {
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("PROMPT-TEXT") && !text.contains("COMPLETION-TEXT"),
            "{text}"
        );
    }
    let pg = &generation_spans(&private)[0];
    assert!(attr(pg, "langfuse.observation.input").is_none());
    assert!(matches!(
        attr(pg, "langfuse.observation.cost_details"),
        Some(Any::StringValue(c)) if c == r#"{"total":0.0015}"#
    ));

    // 401: the destination pauses and keeps its queue; a new secret key resumes it.
    wait_status(&s, &id, "the first two delivered", |st| {
        st["counts"]["delivered"] == 2 && st["queue"]["depth"] == 0
    })
    .await;
    rec.set_mode(Mode::Status(401));
    assert_eq!(
        ingest(
            &s,
            &key,
            &[record("gen-3"), record("gen-4"), record("gen-5")]
        )
        .await,
        202
    );
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert_eq!(st["queue"]["depth"], 3, "the queue is kept");
    assert_eq!(st["counts"]["dead_lettered"], 0);
    assert!(!st.to_string().contains(SK), "no secret in the status");

    rec.set_mode(Mode::Ok);
    patch_config(&s, &id, json!({"secretKey": "sk-lf-secret-0002"})).await;
    rec.wait(15, "all five", |r| r.generation_ids().len() == 5)
        .await;
    let last = rec
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.answered == 200)
        .unwrap();
    assert_eq!(
        last.headers["authorization"],
        basic(PK, "sk-lf-secret-0002").as_str()
    );
    let st = wait_status(&s, &id, "active", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 5);
}

#[tokio::test]
async fn langfuse_test_connection_through_the_api() {
    let s = TestServer::start_with(fast).await;
    let rec = Receiver::start().await;
    let body = json!({
        "type": "langfuse",
        "name": "t",
        "config": {"publicKey": PK, "secretKey": SK, "baseUrl": base_url(&rec)}
    });
    let r = test(&s, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    let message = r.body["data"]["message"].as_str().unwrap();
    assert!(
        message.contains("accepted the public/secret key pair"),
        "{message}"
    );
    let reqs = rec.requests();
    assert_eq!(reqs.len(), 2, "GET projects, then the empty OTLP request");
    assert_eq!(reqs[0].method, reqwest::Method::GET);
    assert_eq!(reqs[1].method, reqwest::Method::POST);
    assert_eq!(
        serde_json::from_slice::<Value>(&reqs[1].body).unwrap(),
        json!({"resourceSpans": []})
    );
    assert!(
        reqs.iter()
            .all(|r| r.headers["authorization"] == basic(PK, SK).as_str())
    );

    rec.set_mode(Mode::Status(401));
    let r = test(&s, body).await;
    assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
    assert_eq!(r.body["data"]["status"], 401);
    assert_eq!(
        r.body["data"]["message"],
        "Langfuse rejected the public/secret key pair (401)"
    );
    assert!(!r.text.contains(SK));
}
