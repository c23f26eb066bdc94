//! The `ramp` destination end to end: the real server, a loopback receiver playing Ramp's
//! AI-usage endpoint, payloads decoded with the OpenTelemetry proto definitions.

mod common;

use common::e2e::{
    assert_retry_after_honoured, create_destination, fast, ingest_status, numbered, patch_config,
    record_with, test_config, wait_paused, wait_status,
};
use common::receiver::{Mode, Receiver, double_attr, int_attr, string_attr};
use common::{Resp, TestServer};
use serde_json::{Value, json};

const KEY: &str = "rmp_e2e_key_0123456789";
const NEW_KEY: &str = "rmp_rotated_key_9876543210";

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "user": "user_12345",
            "session_id": "session_abc",
            "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}]},
            "response": {"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17, "prompt_tokens_details": {"cached_tokens": 2}}},
            "trace": {
                "trace_id": "expense_analysis_001",
                "trace_name": "Expense Processing Pipeline",
                "generation_name": "Analyze Report",
                "department": "finance",
                "cost_center": "CC-1234"
            }
        }),
    )
}

async fn create(s: &TestServer, name: &str, base_url: &str, extra: Value) -> (String, Resp) {
    create_destination(
        s,
        json!({"type": "ramp", "name": name, "config": {"apiKey": KEY, "baseUrl": base_url}}),
        extra,
    )
    .await
}

#[tokio::test]
async fn ramp_receives_usage_with_the_bearer_key_and_privacy_mode_strips_content() {
    let s = TestServer::start_with(fast).await;
    let open = Receiver::start().await;
    let private = Receiver::start().await;
    let (_, created) = create(
        &s,
        "ramp",
        &open.url,
        json!({"config": {"apiKey": KEY, "baseUrl": open.url, "headers": {"X-Ramp-Team": "finance"}}}),
    )
    .await;
    assert!(
        !created.text.contains(KEY),
        "the key is returned masked: {}",
        created.text
    );
    create(
        &s,
        "ramp-private",
        &private.url,
        json!({"privacy_mode": true}),
    )
    .await;
    let (key, _) = s.workspace_key(None).await;
    assert_eq!(
        ingest_status(&s, &key, &[record("gen-a"), record("gen-b")]).await,
        202
    );

    for rec in [&open, &private] {
        rec.wait(10, "two spans", |r| r.generation_ids().len() >= 2)
            .await;
    }
    let req = &open.requests()[0];
    assert_eq!(req.method, reqwest::Method::POST);
    assert_eq!(req.headers["authorization"], format!("Bearer {KEY}"));
    assert_eq!(req.headers["x-ramp-team"], "finance");

    let spans = open.spans();
    let span = spans
        .iter()
        .find(|sp| string_attr(sp, "gen_ai.response.id").as_deref() == Some("gen-a"))
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        span.trace_id,
        &sha2::Sha256::digest(b"expense_analysis_001")[..16]
    );
    assert_eq!(span.name, "Analyze Report");
    assert_eq!(
        string_attr(span, "openrouter.trace.name").as_deref(),
        Some("Expense Processing Pipeline")
    );
    // What Ramp reads for spend attribution.
    assert_eq!(
        string_attr(span, "gen_ai.request.model").as_deref(),
        Some("openai/gpt-4o")
    );
    assert_eq!(int_attr(span, "gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(int_attr(span, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(int_attr(span, "gen_ai.usage.input_tokens.cached"), Some(2));
    assert_eq!(double_attr(span, "gen_ai.usage.total_cost"), Some(0.0015));
    assert_eq!(string_attr(span, "user.id").as_deref(), Some("user_12345"));
    assert_eq!(
        string_attr(span, "session.id").as_deref(),
        Some("session_abc")
    );
    assert_eq!(
        string_attr(span, "trace.metadata.cost_center").as_deref(),
        Some("CC-1234")
    );
    assert!(
        string_attr(span, "gen_ai.prompt")
            .unwrap()
            .contains("PROMPT-TEXT")
    );

    for r in private.requests() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("PROMPT-TEXT") && !body.contains("COMPLETION-TEXT"),
            "{body}"
        );
    }
    let pspans = private.spans();
    assert_eq!(
        double_attr(&pspans[0], "gen_ai.usage.total_cost"),
        Some(0.0015)
    );
    assert_eq!(int_attr(&pspans[0], "gen_ai.usage.output_tokens"), Some(5));
}

#[tokio::test]
async fn ramp_retry_after_is_honoured_and_a_refused_key_pauses_until_a_new_one() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;

    let throttled = Receiver::start().await;
    throttled.script([Mode::RetryAfter(429, 1)]);
    let (tid, _) = create(&s, "throttled", &throttled.url, json!({})).await;
    assert_eq!(
        ingest_status(&s, &key, &numbered("t", 5, record)).await,
        202
    );
    throttled
        .wait(15, "delivery after the 429", |r| {
            r.generation_ids().len() == 5
        })
        .await;
    let reqs = throttled.requests();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
    let st = wait_status(&s, &tid, "delivered", |st| st["counts"]["delivered"] == 5).await;
    assert_eq!(st["last_error"]["status"], 429);

    let denied = Receiver::start().await;
    denied.set_mode(Mode::Status(401));
    let (id, _) = create(&s, "denied", &denied.url, json!({})).await;
    assert_eq!(
        ingest_status(&s, &key, &numbered("p", 4, record)).await,
        202
    );
    let st = wait_paused(&s, &id, "401").await;
    assert!(!st.to_string().contains(KEY), "{st}");
    assert_eq!(st["counts"]["dead_lettered"], 0);
    assert!(st["queue"]["depth"].as_u64().unwrap() >= 4, "{st}");

    // The new key first, then Ramp accepts: only the new key can have been accepted.
    let p = patch_config(&s, &id, json!({"apiKey": NEW_KEY})).await;
    assert!(!p.text.contains(NEW_KEY), "{}", p.text);
    denied.set_mode(Mode::Ok);
    denied
        .wait(10, "all four after the new key", |r| {
            let mut g = r.generation_ids();
            g.retain(|id| id.starts_with("p-"));
            g.sort();
            g.dedup();
            g.len() == 4
        })
        .await;
    assert!(
        denied
            .requests()
            .iter()
            .filter(|r| r.answered == 200)
            .all(|r| r.headers["authorization"] == format!("Bearer {NEW_KEY}").as_str())
    );
    wait_status(&s, &id, "active", |st| st["state"] == "active").await;
}

#[tokio::test]
async fn ramp_test_connection_through_the_api() {
    let s = TestServer::start_with(fast).await;
    let ok = Receiver::start().await;
    let r = test_config(
        &s,
        json!({"type": "ramp", "name": "t", "config": {"apiKey": KEY, "baseUrl": ok.url}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    let req = &ok.requests()[0];
    assert_eq!(req.headers["authorization"], format!("Bearer {KEY}"));
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, json!({"resourceSpans": []}));

    let denied = Receiver::start().await;
    denied.set_mode(Mode::Status(401));
    let r = test_config(
        &s,
        json!({"type": "ramp", "name": "t", "config": {"apiKey": KEY, "baseUrl": denied.url}}),
    )
    .await;
    assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
    assert_eq!(r.body["data"]["message"], "Ramp rejected the API key (401)");
    assert!(!r.text.contains(KEY));
}
