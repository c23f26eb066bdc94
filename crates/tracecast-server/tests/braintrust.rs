//! The `braintrust` destination end to end: the real server, a loopback receiver playing
//! Braintrust's API (`baseUrl` points at it: OTLP on `/otel/v1/traces`, the project read by the
//! connection test), payloads decoded with the OTLP protos.

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, create, fast, ingest, patch_config, record_with,
    test_config, test_connection, wait_paused, wait_status,
};
use common::receiver::{Mode, Receiver, double_attr, int_attr, string_attr};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use reqwest::Method;
use serde_json::{Value, json};

const PROJECT: &str = "0f3a1c2e-5b6d-4e7f-8a9b-0c1d2e3f4a5b";

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "time_to_first_token": 250.0,
            "user": "user_12345",
            "session_id": "session_abc",
            "trace": {
                "trace_id": "eval_run_456",
                "trace_name": "Summarization Eval",
                "generation_name": "GPT-4o Summary",
                "eval_dataset": "news_articles",
                "experiment_id": "exp_789",
                "tags": ["eval", "nightly"]
            }
        }),
    )
}

/// Spans of the OTLP POSTs the receiver accepted (the connection test's GETs are not OTLP).
fn posted_spans(rec: &Receiver) -> Vec<Span> {
    rec.requests()
        .into_iter()
        .filter(|r| r.method == Method::POST && r.answered < 300)
        .map(|r| serde_json::from_slice::<ExportTraceServiceRequest>(&r.body).expect("OTLP/JSON"))
        .flat_map(|r| r.resource_spans)
        .flat_map(|rs| rs.scope_spans)
        .flat_map(|ss| ss.spans)
        .collect()
}

fn generation_ids(rec: &Receiver) -> Vec<String> {
    posted_spans(rec)
        .iter()
        .filter_map(|s| string_attr(s, "gen_ai.response.id"))
        .collect()
}

#[tokio::test]
async fn delivers_braintrust_otlp_with_its_headers_and_mapping() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    let private = Receiver::start().await;
    let id = create(
        &s,
        "braintrust",
        "bt",
        json!({"apiKey": "sk-bt-e2e", "projectId": PROJECT, "baseUrl": base_url(&rec), "headers": {"X-Proxy": "1"}}),
        json!({}),
    )
    .await;
    create(
        &s,
        "braintrust",
        "bt",
        json!({"apiKey": "sk-bt-private", "projectId": PROJECT, "baseUrl": base_url(&private)}),
        json!({"name": "private", "privacy_mode": true}),
    )
    .await;
    ingest(&s, &key, &[record("bt-1"), record("bt-2")]).await;
    rec.wait(15, "both generations", |r| generation_ids(r).len() == 2)
        .await;
    private
        .wait(15, "both generations (private)", |r| {
            generation_ids(r).len() == 2
        })
        .await;

    let req = &rec.requests()[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.headers["authorization"], "Bearer sk-bt-e2e");
    assert_eq!(req.headers["x-bt-parent"], format!("project_id:{PROJECT}"));
    assert_eq!(req.headers["x-proxy"], "1");

    let spans = posted_spans(&rec);
    let llm = &spans[0];
    assert_eq!(spans.len(), 2, "one span per generation (no span_name)");
    assert_eq!(llm.name, "GPT-4o Summary");
    assert!(llm.parent_span_id.is_empty(), "a root span");
    assert_eq!(
        spans[0].trace_id, spans[1].trace_id,
        "one trace_id, one trace"
    );
    assert_eq!(
        string_attr(llm, "braintrust.span_attributes.type").as_deref(),
        Some("llm")
    );
    assert_eq!(
        string_attr(llm, "braintrust.metadata.user_id").as_deref(),
        Some("user_12345")
    );
    assert_eq!(
        string_attr(llm, "braintrust.metadata.session_id").as_deref(),
        Some("session_abc")
    );
    assert_eq!(
        string_attr(llm, "braintrust.metadata.eval_dataset").as_deref(),
        Some("news_articles")
    );
    assert_eq!(
        string_attr(llm, "braintrust.metadata.experiment_id").as_deref(),
        Some("exp_789")
    );
    assert_eq!(
        string_attr(llm, "braintrust.metadata.trace_name").as_deref(),
        Some("Summarization Eval")
    );
    assert_eq!(int_attr(llm, "braintrust.metrics.prompt_tokens"), Some(12));
    assert_eq!(int_attr(llm, "braintrust.metrics.tokens"), Some(17));
    assert_eq!(
        double_attr(llm, "braintrust.metrics.total_cost"),
        Some(0.0015)
    );
    assert_eq!(
        double_attr(llm, "braintrust.metrics.time_to_first_token"),
        Some(0.25)
    );
    let input: Value =
        serde_json::from_str(&string_attr(llm, "braintrust.input_json").unwrap()).unwrap();
    assert_eq!(input[0]["content"], "PROMPT-TEXT");
    let tags = common::receiver::attr(llm, "braintrust.tags").expect("tags");
    assert!(format!("{tags:?}").contains("nightly"), "{tags:?}");

    for r in private.requests() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("PROMPT-TEXT") && !body.contains("COMPLETION-TEXT"));
    }
    let pllm = &posted_spans(&private)[0];
    assert!(string_attr(pllm, "braintrust.input_json").is_none());
    assert_eq!(
        int_attr(pllm, "braintrust.metrics.completion_tokens"),
        Some(5)
    );
    wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 2).await;
}

#[tokio::test]
async fn honours_retry_after_on_429() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    rec.script([Mode::RetryAfter(429, 1)]);
    let id = create(
        &s,
        "braintrust",
        "bt",
        json!({"apiKey": "k", "projectId": PROJECT, "baseUrl": base_url(&rec)}),
        json!({}),
    )
    .await;
    ingest(&s, &key, &[record("rl-1")]).await;
    rec.wait(15, "delivery after the 429", |r| {
        generation_ids(r).len() == 1
    })
    .await;
    let reqs = rec.requests();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
    let st = wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 1).await;
    assert_eq!(st["last_error"]["status"], 429);
}

#[tokio::test]
async fn a_rejected_api_key_pauses_and_a_new_one_resumes() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    rec.set_mode(Mode::Status(401));
    let id = create(
        &s,
        "braintrust",
        "bt",
        json!({"apiKey": "sk-bt-old-1234", "projectId": PROJECT, "baseUrl": base_url(&rec)}),
        json!({}),
    )
    .await;
    ingest(&s, &key, &[record("p-1"), record("p-2"), record("p-3")]).await;
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert!(
        !st.to_string().contains("sk-bt-old-1234"),
        "no secret in status"
    );
    assert_eq!(st["queue"]["depth"], 3, "the queue is kept");
    assert_eq!(st["counts"]["dead_lettered"], 0);

    let t = test_connection(&s, &id).await;
    assert_eq!(t.body["data"]["ok"], false, "{}", t.text);
    assert_eq!(
        t.body["data"]["message"], "Braintrust rejected the API key (401)",
        "{}",
        t.text
    );
    let probe = rec
        .requests()
        .into_iter()
        .find(|r| r.method == Method::GET)
        .expect("the test read the project");
    assert_eq!(probe.headers["authorization"], "Bearer sk-bt-old-1234");

    rec.set_mode(Mode::Ok);
    patch_config(&s, &id, json!({"apiKey": "sk-bt-new-5678"})).await;
    rec.wait(15, "all three", |r| generation_ids(r).len() == 3)
        .await;
    assert!(
        rec.requests()
            .iter()
            .filter(|r| r.method == Method::POST && r.answered == 200)
            .all(|r| r.headers["authorization"] == "Bearer sk-bt-new-5678")
    );
    let st = wait_status(&s, &id, "active", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 3);

    let t = test_config(&s, json!({"type": "braintrust", "name": "t", "config": {"apiKey": "k", "projectId": PROJECT, "baseUrl": base_url(&rec)}})).await;
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);
}
