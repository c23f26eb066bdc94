//! `raindrop` end to end: the real server delivers ingested generations as Raindrop events to
//! a loopback receiver playing `POST /v1/events/track`, honours Retry-After, pauses when the
//! write key is refused and resumes with a new one.

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, create_destination, fast_with, ingest, patch_config,
    record, test_config, wait_status,
};
use common::receiver::{Mode, Receiver};
use serde_json::{Value, json};

/// (event_id, write key) of every event of every accepted batch.
fn delivered(rec: &Receiver) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rec.requests().into_iter().filter(|r| r.answered < 300) {
        let events: Vec<Value> = serde_json::from_slice(&r.body).expect("an array of events");
        let key = r.headers["authorization"].to_str().unwrap().to_string();
        for e in events {
            out.push((e["event_id"].as_str().unwrap().to_string(), key.clone()));
        }
    }
    out
}

#[tokio::test]
async fn raindrop_delivers_events_and_pauses_on_a_refused_write_key() {
    let s = TestServer::start_with(fast_with(2, 2)).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    let config = json!({"writeKey": "rd_old_key_1234567", "baseUrl": base_url(&rec)});

    let r = test_config(
        &s,
        json!({"type": "raindrop", "name": "rd", "config": config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    assert_eq!(
        &rec.requests()[0].body[..],
        b"[]",
        "the test sends no event"
    );

    rec.script([Mode::RetryAfter(429, 1)]);
    let (id, r) = create_destination(
        &s,
        json!({"type": "raindrop", "name": "rd", "config": config}),
        json!({}),
    )
    .await;
    assert!(!r.text.contains("rd_old_key_1234567"), "masked: {}", r.text);
    assert_eq!(r.body["data"]["config"]["baseUrl"], base_url(&rec));

    ingest(&s, &key, &["rd-1", "rd-2", "rd-3"].map(record)).await;
    rec.wait(15, "three events", |r| delivered(r).len() == 3)
        .await;
    let reqs: Vec<_> = rec.requests().into_iter().skip(1).collect();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
    let events: Vec<Value> = serde_json::from_slice(&reqs[1].body).unwrap();
    let ev = &events[0];
    assert_eq!(ev["user_id"], "user-1");
    assert_eq!(ev["ai_data"]["convo_id"], "session-e2e");
    assert_eq!(ev["ai_data"]["input"], "PROMPT-TEXT");
    assert_eq!(ev["ai_data"]["output"], "COMPLETION-TEXT");
    assert_eq!(ev["properties"]["trace_id"], "workflow-1");
    assert_eq!(ev["properties"]["trace_name"], "Doc pipeline");
    assert_eq!(ev["properties"]["env"], "prod");
    assert_eq!(ev["properties"]["total_tokens"], 17);
    wait_status(&s, &id, "three delivered", |st| {
        st["counts"]["delivered"] == 3
    })
    .await;

    rec.set_mode(Mode::Status(401));
    ingest(&s, &key, &["rd-4", "rd-5"].map(record)).await;
    let st = wait_status(&s, &id, "paused", |st| st["state"] == "paused").await;
    assert_eq!(st["counts"]["dead_lettered"], 0, "{st}");

    rec.set_mode(Mode::Ok);
    patch_config(&s, &id, json!({"writeKey": "rd_new_key_7654321"})).await;
    rec.wait(15, "all five", |r| delivered(r).len() == 5).await;
    for (_, k) in &delivered(&rec)[3..] {
        assert_eq!(k, "Bearer rd_new_key_7654321");
    }
    wait_status(&s, &id, "active again", |st| {
        st["state"] == "active" && st["counts"]["delivered"] == 5
    })
    .await;
}
