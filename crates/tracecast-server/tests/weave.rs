//! The `weave` destination end to end: the real server ingests generations and delivers them as
//! OTLP protobuf to a loopback receiver playing Weave's `{baseUrl}/otel/v1/traces`. Bodies are
//! checked for the strings protobuf carries verbatim (names, attribute keys and JSON values);
//! tracecast-exporters' tests/weave.rs decodes them fully.

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, contains, create as create_destination, delivered_ids,
    fast, ingest_resp as ingest, patch_config, record_with, response_without_usage,
    test_connection, usage, wait_paused, wait_status,
};
use common::receiver::{Mode, Receiver};
use serde_json::{Value, json};

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({"session_id": "session-1", "response": response_without_usage(), "usage": usage()}),
    )
}

async fn create(s: &TestServer, rec: &Receiver, api_key: &str, extra: Value) -> String {
    let config = json!({"apiKey": api_key, "entity": "acme", "project": "support", "baseUrl": base_url(rec)});
    create_destination(s, "weave", "weave", config, extra).await
}

/// Bodies of the export requests (not the empty connection tests) answered 2xx.
fn accepted(rec: &Receiver) -> Vec<Vec<u8>> {
    rec.requests()
        .into_iter()
        .filter(|r| r.answered < 300 && !r.body.is_empty())
        .map(|r| r.body.to_vec())
        .collect()
}

#[tokio::test]
async fn generations_reach_weave_as_otlp_protobuf() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let id = create(&s, &rec, "wandb_e2e_key", json!({})).await;

    let t = test_connection(&s, &id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);

    let r = ingest(&s, &key, &[record("gen-w1"), record("gen-w2")]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    rec.wait(10, "both generations", |r| {
        delivered_ids(r, &["gen-w1", "gen-w2"]).len() == 2
    })
    .await;
    let req = rec
        .requests()
        .into_iter()
        .find(|r| !r.body.is_empty())
        .unwrap();
    assert_eq!(req.headers["content-type"], "application/x-protobuf");
    assert_eq!(req.headers["project_id"], "acme/support");
    assert_eq!(req.headers["wandb-api-key"], "wandb_e2e_key");
    assert!(
        req.headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    let body = &req.body;
    // op_name, Weave attributes, inputs and output.
    assert!(contains(body, "Summarise"));
    assert!(contains(body, "wandb.attributes"));
    assert!(contains(body, r#""openrouter_trace_id":"workflow-1""#));
    assert!(contains(body, r#""user_id":"user-1""#));
    assert!(contains(body, r#""session_id":"session-1""#));
    assert!(contains(body, r#""env":"prod""#));
    assert!(contains(body, r#""temperature":0.3"#));
    assert!(contains(body, "PROMPT-TEXT") && contains(body, "COMPLETION-TEXT"));
    assert!(contains(body, "wandb.entity") && contains(body, "wandb.project"));
    let st = wait_status(&s, &id, "delivered", |st| {
        st["counts"]["delivered"] == 2 && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["dead_lettered"], 0);
}

#[tokio::test]
async fn privacy_mode_keeps_content_out_of_weave() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    create(&s, &rec, "wandb_e2e_key", json!({"privacy_mode": true})).await;
    assert_eq!(ingest(&s, &key, &[record("p-w1")]).await.status, 202);
    rec.wait(10, "the generation", |r| {
        delivered_ids(r, &["p-w1"]).len() == 1
    })
    .await;
    for body in accepted(&rec) {
        assert!(
            !contains(&body, "PROMPT-TEXT") && !contains(&body, "COMPLETION-TEXT"),
            "privacy mode leaked content"
        );
        assert!(contains(&body, r#""env":"prod""#));
        assert!(
            contains(&body, r#""temperature":0.3"#),
            "model parameters stay in inputs"
        );
    }
}

#[tokio::test]
async fn rate_limits_are_honoured_and_rejected_keys_pause_until_replaced() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;

    rec.script([Mode::RetryAfter(429, 1)]);
    let id = create(&s, &rec, "wandb_old_key", json!({})).await;
    assert_eq!(ingest(&s, &key, &[record("r-w1")]).await.status, 202);
    rec.wait(10, "the retried batch", |r| {
        delivered_ids(r, &["r-w1"]).len() == 1
    })
    .await;
    let reqs = rec.requests();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
    let st = wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 1).await;
    assert_eq!(st["last_error"]["status"], 429);

    rec.set_mode(Mode::Status(401));
    assert_eq!(
        ingest(&s, &key, &[record("r-w2"), record("r-w3")])
            .await
            .status,
        202
    );
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert!(
        !st.to_string().contains("wandb_old_key"),
        "the key leaked: {st}"
    );
    let t = test_connection(&s, &id).await;
    assert_eq!(t.body["data"]["ok"], false);
    assert_eq!(
        t.body["data"]["message"],
        "W&B Weave rejected the API key (401)"
    );

    rec.set_mode(Mode::Ok);
    patch_config(&s, &id, json!({"apiKey": "wandb_new_key"})).await;
    rec.wait(10, "all three", |r| {
        delivered_ids(r, &["r-w1", "r-w2", "r-w3"]).len() == 3
    })
    .await;
    let st = wait_status(&s, &id, "active", |st| {
        st["state"] == "active" && st["counts"]["delivered"] == 3
    })
    .await;
    assert_eq!(st["counts"]["dead_lettered"], 0);
    let last = rec.requests().into_iter().last().unwrap();
    assert_eq!(last.headers["wandb-api-key"], "wandb_new_key");
}
