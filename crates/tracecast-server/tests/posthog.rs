//! The `posthog` destination end to end: the real server ingests generations and delivers them
//! as `$ai_generation` events to a loopback receiver playing PostHog's capture API, through
//! throttling (429 with Retry-After), a refused project key (401: the destination pauses) and a
//! new key (it resumes with nothing lost).

mod common;

use std::time::{Duration, Instant};

use common::TestServer;
use common::receiver::{Mode, Receiver};
use serde_json::{Value, json};
use tracecast_server::settings::Settings;

const DEST: &str = "/api/v1/observability/destinations";

fn fast(s: &mut Settings) {
    s.delivery.linger_ms = 20;
    s.delivery.retry_base_ms = 50;
    s.delivery.retry_max_delay_secs = 2;
    s.delivery.request_timeout_secs = 2;
    s.delivery.auth_probe_secs = 1;
    s.delivery.config_refresh_ms = 200;
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
        "session_id": "session-e2e",
        "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}], "temperature": 0.3},
        "response": {"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}]},
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        "trace": {"trace_id": "workflow-1", "trace_name": "Doc pipeline", "generation_name": "Summarise", "environment": "staging"}
    })
}

async fn ingest(s: &TestServer, key: &str, ids: &[&str]) {
    let mut body = Vec::new();
    for id in ids {
        body.extend(serde_json::to_vec(&record(id)).unwrap());
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
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
}

fn base(rec: &Receiver) -> String {
    rec.url.trim_end_matches("/v1/traces").to_string()
}

/// `$ai_span_id` (the generation id) of every event of every accepted request, with the
/// project key of its request.
fn delivered(rec: &Receiver) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rec
        .requests()
        .into_iter()
        .filter(|r| r.answered < 300 && r.method == "POST")
    {
        let v: Value = serde_json::from_slice(&r.body).expect("JSON body");
        let Some(batch) = v["batch"].as_array() else {
            continue; // the connection test's flag request
        };
        let key = v["api_key"].as_str().unwrap().to_string();
        for e in batch {
            let id = e["properties"]["$ai_span_id"].as_str().unwrap();
            out.push((id.to_string(), key.clone()));
        }
    }
    out
}

async fn status(s: &TestServer, id: &str) -> Value {
    let r = s.get(&format!("{DEST}/{id}/status")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].clone()
}

async fn wait_status(s: &TestServer, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = status(s, id).await;
        if cond(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn posthog_delivers_honours_retry_after_and_pauses_on_a_refused_key() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;

    // Test connection through the API: a flag evaluation with the key, no event.
    let r = s
        .post(
            &format!("{DEST}/test"),
            json!({"type": "posthog", "name": "ph", "config": {"apiKey": "phc_old_key_1234", "endpoint": base(&rec)}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    let probe: Value = serde_json::from_slice(&rec.requests()[0].body).unwrap();
    assert_eq!(probe["api_key"], "phc_old_key_1234");
    assert!(probe.get("batch").is_none());

    rec.script([Mode::RetryAfter(429, 1)]);
    let r = s
        .post(
            DEST,
            json!({"type": "posthog", "name": "ph", "config": {"apiKey": "phc_old_key_1234", "endpoint": base(&rec)}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    assert!(
        !r.text.contains("phc_old_key_1234"),
        "the key is masked: {}",
        r.text
    );

    ingest(&s, &key, &["ph-1", "ph-2", "ph-3"]).await;
    rec.wait(15, "three events", |r| delivered(r).len() == 3)
        .await;
    let reqs: Vec<_> = rec.requests().into_iter().skip(1).collect();
    assert_eq!(reqs[0].answered, 429);
    let gap = reqs[1].at - reqs[0].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    // The retry is the same events (same uuids), so PostHog would de-duplicate a resend.
    let first: Value = serde_json::from_slice(&reqs[0].body).unwrap();
    let second: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    assert_eq!(first, second);
    let ev = &second["batch"][0];
    assert_eq!(ev["event"], "$ai_generation");
    assert_eq!(ev["distinct_id"], "user-1");
    let p = &ev["properties"];
    assert_eq!(p["$ai_trace_id"], "workflow-1");
    assert_eq!(p["$ai_span_name"], "Summarise");
    assert_eq!(p["trace_name"], "Doc pipeline");
    assert_eq!(p["$ai_session_id"], "session-e2e");
    assert_eq!(p["metadata_environment"], "staging");
    assert_eq!(p["$ai_input"][0]["content"], "PROMPT-TEXT");
    let st = wait_status(&s, &id, "three delivered", |st| {
        st["counts"]["delivered"] == 3
    })
    .await;
    assert_eq!(st["last_error"]["status"], 429);

    // The key is refused: the destination pauses and keeps its queue.
    rec.set_mode(Mode::Status(401));
    ingest(&s, &key, &["ph-4", "ph-5"]).await;
    // (The queue depth follows the delivery cursor, committed at least once a second.)
    let st = wait_status(&s, &id, "paused with two queued", |st| {
        st["state"] == "paused" && st["queue"]["depth"] == 2
    })
    .await;
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("credentials rejected (401)"),
        "{st}"
    );
    assert_eq!(st["counts"]["dead_lettered"], 0);

    // A new key resumes delivery with nothing lost.
    rec.set_mode(Mode::Ok);
    let p = s
        .patch(
            &format!("{DEST}/{id}"),
            json!({"config": {"apiKey": "phc_new_key_5678"}}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    rec.wait(15, "all five", |r| delivered(r).len() == 5).await;
    let got = delivered(&rec);
    for (gen_id, key) in &got[3..] {
        assert!(gen_id == "ph-4" || gen_id == "ph-5");
        assert_eq!(key, "phc_new_key_5678");
    }
    wait_status(&s, &id, "active again", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0 && st["counts"]["delivered"] == 5
    })
    .await;
}

#[tokio::test]
async fn posthog_privacy_mode_end_to_end() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    let r = s
        .post(
            DEST,
            json!({"type": "posthog", "name": "private", "privacy_mode": true, "config": {"apiKey": "phc_k", "endpoint": base(&rec)}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    ingest(&s, &key, &["p-1", "p-2"]).await;
    rec.wait(15, "two events", |r| delivered(r).len() == 2)
        .await;
    for r in rec.requests() {
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("PROMPT-TEXT") && !text.contains("COMPLETION-TEXT"),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        for e in v["batch"].as_array().unwrap() {
            let p = &e["properties"];
            assert!(p.get("$ai_input").is_none() && p.get("$ai_output_choices").is_none());
            assert_eq!(p["$ai_input_tokens"], 12);
            assert_eq!(p["$ai_total_cost_usd"], 0.0015);
        }
    }
}
