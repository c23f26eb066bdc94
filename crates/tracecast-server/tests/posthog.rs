//! The `posthog` destination end to end: the real server ingests generations and delivers them
//! as `$ai_generation` events to a loopback receiver playing PostHog's capture API, through
//! throttling (429 with Retry-After), a refused project key (401: the destination pauses) and a
//! new key (it resumes with nothing lost).

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, create_destination, fast_with, ingest, patch_config,
    record_with, response_without_usage, test_config, usage, wait_status,
};
use common::receiver::{Mode, Receiver};
use serde_json::{Value, json};

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "response": response_without_usage(),
            "usage": usage(),
            "trace": {"trace_id": "workflow-1", "trace_name": "Doc pipeline", "generation_name": "Summarise", "environment": "staging"}
        }),
    )
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

#[tokio::test]
async fn posthog_delivers_honours_retry_after_and_pauses_on_a_refused_key() {
    let s = TestServer::start_with(fast_with(2, 2)).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;

    // Test connection through the API: a flag evaluation with the key, no event.
    let r = test_config(&s, json!({"type": "posthog", "name": "ph", "config": {"apiKey": "phc_old_key_1234", "endpoint": base_url(&rec)}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    let probe: Value = serde_json::from_slice(&rec.requests()[0].body).unwrap();
    assert_eq!(probe["api_key"], "phc_old_key_1234");
    assert!(probe.get("batch").is_none());

    rec.script([Mode::RetryAfter(429, 1)]);
    let (id, r) = create_destination(
        &s,
        json!({"type": "posthog", "name": "ph", "config": {"apiKey": "phc_old_key_1234", "endpoint": base_url(&rec)}}),
        json!({}),
    )
    .await;
    assert!(
        !r.text.contains("phc_old_key_1234"),
        "the key is masked: {}",
        r.text
    );

    ingest(&s, &key, &["ph-1", "ph-2", "ph-3"].map(record)).await;
    rec.wait(15, "three events", |r| delivered(r).len() == 3)
        .await;
    let reqs: Vec<_> = rec.requests().into_iter().skip(1).collect();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
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
    ingest(&s, &key, &["ph-4", "ph-5"].map(record)).await;
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
    patch_config(&s, &id, json!({"apiKey": "phc_new_key_5678"})).await;
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
    let s = TestServer::start_with(fast_with(2, 2)).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    create_destination(
        &s,
        json!({"type": "posthog", "name": "private", "privacy_mode": true, "config": {"apiKey": "phc_k", "endpoint": base_url(&rec)}}),
        json!({}),
    )
    .await;
    ingest(&s, &key, &["p-1", "p-2"].map(record)).await;
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
