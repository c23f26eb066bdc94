//! The `weave` destination end to end: the real server ingests generations and delivers them as
//! OTLP protobuf to a loopback receiver playing Weave's `{baseUrl}/otel/v1/traces`. Bodies are
//! checked for the strings protobuf carries verbatim (names, attribute keys and JSON values);
//! tracecast-exporters' tests/weave.rs decodes them fully.

mod common;

use common::receiver::{Mode, Receiver};
use common::{Resp, TestServer};
use serde_json::{Value, json};
use tracecast_server::settings::Settings;

const DEST: &str = "/api/v1/observability/destinations";

fn settings(s: &mut Settings) {
    s.delivery.linger_ms = 20;
    s.delivery.retry_base_ms = 50;
    s.delivery.retry_max_delay_secs = 1;
    s.delivery.request_timeout_secs = 2;
    s.delivery.auth_probe_secs = 1;
    s.delivery.config_refresh_ms = 200;
}

fn base(rec: &Receiver) -> String {
    rec.url.trim_end_matches("/v1/traces").to_owned()
}

fn record(id: &str) -> Value {
    json!({
        "id": id,
        "model": "openai/gpt-4o",
        "provider_name": "OpenAI",
        "created_at": "2026-03-01T12:00:00.000Z",
        "latency": 1234.0,
        "finish_reason": "stop",
        "total_cost": 0.0015,
        "user": "user-1",
        "session_id": "session-1",
        "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}], "temperature": 0.3},
        "response": {"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}]},
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        "trace": {"trace_id": "workflow-1", "trace_name": "Doc pipeline", "generation_name": "Summarise", "env": "prod"}
    })
}

async fn ingest(s: &TestServer, key: &str, records: &[Value]) -> Resp {
    let mut body = Vec::new();
    for r in records {
        body.extend(serde_json::to_vec(r).unwrap());
        body.push(b'\n');
    }
    let r = s
        .http
        .post(format!("{}/api/v1/generations", s.base))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    Resp {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

async fn create(s: &TestServer, rec: &Receiver, api_key: &str, extra: Value) -> String {
    let mut body = json!({
        "type": "weave",
        "name": "weave",
        "config": {"apiKey": api_key, "entity": "acme", "project": "support", "baseUrl": base(rec)}
    });
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    let r = s.post(DEST, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["id"].as_str().unwrap().to_string()
}

async fn wait_status(s: &TestServer, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let r = s.get(&format!("{DEST}/{id}/status")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let st = r.body["data"].clone();
        if cond(&st) {
            return st;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// Bodies of the export requests (not the empty connection tests) answered 2xx.
fn accepted(rec: &Receiver) -> Vec<Vec<u8>> {
    rec.requests()
        .into_iter()
        .filter(|r| r.answered < 300 && !r.body.is_empty())
        .map(|r| r.body.to_vec())
        .collect()
}

/// Generation ids seen in accepted bodies (the `gen_ai.response.id` strings).
fn delivered_ids(rec: &Receiver, ids: &[&str]) -> usize {
    let bodies = accepted(rec);
    ids.iter()
        .filter(|id| bodies.iter().any(|b| contains(b, id)))
        .count()
}

#[tokio::test]
async fn generations_reach_weave_as_otlp_protobuf() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(settings).await;
    let (key, _) = s.workspace_key(None).await;
    let id = create(&s, &rec, "wandb_e2e_key", json!({})).await;

    let t = s.post(&format!("{DEST}/{id}/test"), json!({})).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);

    let r = ingest(&s, &key, &[record("gen-w1"), record("gen-w2")]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    rec.wait(10, "both generations", |r| {
        delivered_ids(r, &["gen-w1", "gen-w2"]) == 2
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
    let s = TestServer::start_with(settings).await;
    let (key, _) = s.workspace_key(None).await;
    create(&s, &rec, "wandb_e2e_key", json!({"privacy_mode": true})).await;
    assert_eq!(ingest(&s, &key, &[record("p-w1")]).await.status, 202);
    rec.wait(10, "the generation", |r| delivered_ids(r, &["p-w1"]) == 1)
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
    let s = TestServer::start_with(settings).await;
    let (key, _) = s.workspace_key(None).await;

    rec.script([Mode::RetryAfter(429, 1)]);
    let id = create(&s, &rec, "wandb_old_key", json!({})).await;
    assert_eq!(ingest(&s, &key, &[record("r-w1")]).await.status, 202);
    rec.wait(10, "the retried batch", |r| {
        delivered_ids(r, &["r-w1"]) == 1
    })
    .await;
    let reqs = rec.requests();
    assert_eq!(reqs[0].answered, 429);
    let waited = reqs[1].at.duration_since(reqs[0].at);
    assert!(
        waited >= std::time::Duration::from_millis(950),
        "retried after {waited:?}"
    );
    let st = wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 1).await;
    assert_eq!(st["last_error"]["status"], 429);

    rec.set_mode(Mode::Status(401));
    assert_eq!(
        ingest(&s, &key, &[record("r-w2"), record("r-w3")])
            .await
            .status,
        202
    );
    let st = wait_status(&s, &id, "paused", |st| st["state"] == "paused").await;
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("credentials rejected (401)"),
        "{st}"
    );
    assert!(
        !st.to_string().contains("wandb_old_key"),
        "the key leaked: {st}"
    );
    let t = s.post(&format!("{DEST}/{id}/test"), json!({})).await;
    assert_eq!(t.body["data"]["ok"], false);
    assert_eq!(
        t.body["data"]["message"],
        "W&B Weave rejected the API key (401)"
    );

    rec.set_mode(Mode::Ok);
    let p = s
        .patch(
            &format!("{DEST}/{id}"),
            json!({"config": {"apiKey": "wandb_new_key"}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    rec.wait(10, "all three", |r| {
        delivered_ids(r, &["r-w1", "r-w2", "r-w3"]) == 3
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
