//! The `langsmith` destination end to end: the real server, a loopback receiver playing
//! LangSmith's OTLP endpoint (`endpoint` points at it), payloads decoded with the OTLP protos.

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, create, fast, ingest, patch_config, record_with,
    test_config, test_connection, wait_paused, wait_status,
};
use common::receiver::{Mode, Receiver, double_attr, int_attr, string_attr};
use serde_json::{Value, json};

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "user": "user_12345",
            "session_id": "session_abc",
            "trace": {
                "trace_id": "analysis_workflow_123",
                "trace_name": "Text Analysis Pipeline",
                "span_name": "Sentiment Analysis",
                "generation_name": "Extract Sentiment",
                "environment": "production",
                "team": "nlp-team",
                "tags": ["nlp", "beta"]
            }
        }),
    )
}

#[tokio::test]
async fn delivers_langsmith_otlp_with_its_headers_and_mapping() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    let private = Receiver::start().await;
    let id = create(
        &s,
        "langsmith",
        "ls",
        json!({"apiKey": "lsv2_pt_e2e", "endpoint": base_url(&rec), "project": "nlp", "workspaceId": "ws-9", "headers": {"X-Proxy": "1"}}),
        json!({}),
    )
    .await;
    create(
        &s,
        "langsmith",
        "ls",
        json!({"apiKey": "lsv2_pt_private", "endpoint": base_url(&private)}),
        json!({"name": "private", "privacy_mode": true}),
    )
    .await;
    ingest(&s, &key, &[record("ls-1"), record("ls-2")]).await;
    rec.wait(15, "both generations", |r| r.generation_ids().len() == 2)
        .await;
    private
        .wait(15, "both generations (private)", |r| {
            r.generation_ids().len() == 2
        })
        .await;

    let req = &rec.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.headers["x-api-key"], "lsv2_pt_e2e");
    assert_eq!(req.headers["langsmith-project"], "nlp");
    assert_eq!(req.headers["x-tenant-id"], "ws-9");
    assert_eq!(req.headers["x-proxy"], "1");
    assert_eq!(req.headers["content-type"], "application/x-protobuf");

    let spans = rec.spans();
    let llm = spans
        .iter()
        .find(|sp| string_attr(sp, "langsmith.span.kind").as_deref() == Some("llm"))
        .expect("an llm run");
    let chain = spans
        .iter()
        .find(|sp| string_attr(sp, "langsmith.span.kind").as_deref() == Some("chain"))
        .expect("a chain run");
    assert_eq!(llm.name, "Extract Sentiment");
    assert_eq!(chain.name, "Sentiment Analysis");
    assert_eq!(llm.trace_id, chain.trace_id);
    assert_eq!(
        string_attr(chain, "langsmith.metadata.trace_name").as_deref(),
        Some("Text Analysis Pipeline")
    );
    assert_eq!(
        string_attr(llm, "langsmith.metadata.user_id").as_deref(),
        Some("user_12345")
    );
    assert_eq!(
        string_attr(llm, "langsmith.metadata.session_id").as_deref(),
        Some("session_abc")
    );
    assert_eq!(
        string_attr(llm, "langsmith.metadata.environment").as_deref(),
        Some("production")
    );
    assert_eq!(
        string_attr(llm, "langsmith.metadata.team").as_deref(),
        Some("nlp-team")
    );
    assert_eq!(
        string_attr(llm, "langsmith.span.tags").as_deref(),
        Some("nlp, beta")
    );
    assert_eq!(int_attr(llm, "gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(double_attr(llm, "gen_ai.usage.cost"), Some(0.0015));
    assert!(
        string_attr(llm, "gen_ai.prompt")
            .unwrap()
            .contains("PROMPT-TEXT")
    );

    // Privacy mode: no content, the rest as usual.
    for r in private.requests() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains("PROMPT-TEXT") && !body.contains("COMPLETION-TEXT"));
    }
    let pllm = private
        .spans()
        .into_iter()
        .find(|sp| string_attr(sp, "langsmith.span.kind").as_deref() == Some("llm"))
        .unwrap();
    assert_eq!(int_attr(&pllm, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(
        string_attr(&pllm, "langsmith.metadata.user_id").as_deref(),
        Some("user_12345")
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
        "langsmith",
        "ls",
        json!({"apiKey": "k", "endpoint": base_url(&rec)}),
        json!({}),
    )
    .await;
    ingest(&s, &key, &[record("rl-1")]).await;
    rec.wait(15, "delivery after the 429", |r| {
        r.generation_ids().len() == 1
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
        "langsmith",
        "ls",
        json!({"apiKey": "lsv2_pt_old_1234", "endpoint": base_url(&rec)}),
        json!({}),
    )
    .await;
    ingest(&s, &key, &[record("p-1"), record("p-2"), record("p-3")]).await;
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert!(
        !st.to_string().contains("lsv2_pt_old_1234"),
        "no secret in status"
    );
    assert_eq!(st["queue"]["depth"], 3, "the queue is kept");
    assert_eq!(st["counts"]["dead_lettered"], 0);

    // The connection test says why.
    let t = test_connection(&s, &id).await;
    assert_eq!(t.body["data"]["ok"], false, "{}", t.text);
    assert_eq!(
        t.body["data"]["message"], "LangSmith rejected the API key (401)",
        "{}",
        t.text
    );

    rec.set_mode(Mode::Ok);
    patch_config(&s, &id, json!({"apiKey": "lsv2_pt_new_5678"})).await;
    rec.wait(15, "all three", |r| r.generation_ids().len() == 3)
        .await;
    assert!(
        rec.requests()
            .iter()
            .filter(|r| r.answered == 200 && !r.body.is_empty())
            .filter(|r| !r.body.starts_with(br#"{"resourceSpans":[]}"#))
            .all(|r| r.headers["x-api-key"] == "lsv2_pt_new_5678")
    );
    let st = wait_status(&s, &id, "active", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 3);

    // A passing connection test.
    let t = test_config(&s, json!({"type": "langsmith", "name": "t", "config": {"apiKey": "k", "endpoint": base_url(&rec)}})).await;
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);
}
