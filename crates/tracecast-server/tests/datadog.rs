//! The `datadog` destination end to end: the real server ingests generations and delivers them
//! to a loopback receiver playing Datadog's LLM Observability intake, through throttling (429
//! with Retry-After), a refused API key (403: the destination pauses) and a new key (it resumes
//! with nothing lost).

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

/// Generation ids of the llm spans of every accepted request, with the API key it carried.
fn delivered(rec: &Receiver) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for r in rec
        .requests()
        .into_iter()
        .filter(|r| r.answered < 300 && r.method == "POST")
    {
        let v: Value = serde_json::from_slice(&r.body).expect("JSON body");
        let key = r.headers["dd-api-key"].to_str().unwrap().to_string();
        for s in v["data"]["attributes"]["spans"].as_array().expect("spans") {
            if s["meta"]["kind"] == "llm" {
                let id = s["meta"]["metadata"]["generation_id"].as_str().unwrap();
                out.push((id.to_string(), key.clone()));
            }
        }
    }
    out
}

#[tokio::test]
async fn datadog_delivers_honours_retry_after_and_pauses_on_a_refused_key() {
    let s = TestServer::start_with(fast_with(2, 2)).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;

    // Test connection through the API: GET /api/v1/validate with the key.
    let r = test_config(&s, json!({"type": "datadog", "name": "dd", "config": {"apiKey": "dd-old-key-1234", "mlApp": "E2E App", "url": base_url(&rec)}})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    assert_eq!(
        r.body["data"]["message"],
        "Datadog accepted the API key (200)"
    );
    assert_eq!(rec.requests()[0].method, "GET");
    assert_eq!(rec.requests()[0].headers["dd-api-key"], "dd-old-key-1234");

    rec.script([Mode::RetryAfter(429, 1)]);
    let (id, r) = create_destination(
        &s,
        json!({"type": "datadog", "name": "dd", "config": {"apiKey": "dd-old-key-1234", "mlApp": "E2E App", "url": base_url(&rec)}}),
        json!({}),
    )
    .await;
    assert!(
        !r.text.contains("dd-old-key-1234"),
        "the key is masked: {}",
        r.text
    );

    ingest(&s, &key, &["dd-1", "dd-2", "dd-3"].map(record)).await;
    rec.wait(15, "three llm spans", |r| delivered(r).len() == 3)
        .await;
    let reqs: Vec<_> = rec.requests().into_iter().skip(1).collect();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
    let body: Value = serde_json::from_slice(&reqs[1].body).unwrap();
    let attrs = &body["data"]["attributes"];
    assert_eq!(attrs["ml_app"], "e2e_app");
    assert_eq!(attrs["tags"], json!(["service:e2e_app"]));
    let spans = attrs["spans"].as_array().unwrap();
    let root = spans
        .iter()
        .find(|s| s["parent_id"] == "undefined")
        .unwrap();
    assert_eq!(root["name"], "Doc pipeline");
    let llm = spans.iter().find(|s| s["meta"]["kind"] == "llm").unwrap();
    assert_eq!(llm["name"], "Summarise");
    assert_eq!(
        llm["meta"]["input"]["messages"][0]["content"],
        "PROMPT-TEXT"
    );
    assert!(
        llm["tags"]
            .as_array()
            .unwrap()
            .contains(&json!("env:staging"))
    );
    let st = wait_status(&s, &id, "three delivered", |st| {
        st["counts"]["delivered"] == 3
    })
    .await;
    assert_eq!(st["last_error"]["status"], 429);

    // The key is refused: the destination pauses and keeps its queue.
    rec.set_mode(Mode::Status(403));
    ingest(&s, &key, &["dd-4", "dd-5"].map(record)).await;
    // (The queue depth follows the delivery cursor, committed at least once a second.)
    let st = wait_status(&s, &id, "paused with two queued", |st| {
        st["state"] == "paused" && st["queue"]["depth"] == 2
    })
    .await;
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("credentials rejected (403)"),
        "{st}"
    );
    assert_eq!(st["counts"]["dead_lettered"], 0);

    // A new key resumes delivery with nothing lost. (The receiver accepts again only once the
    // new key is saved: else the pause's probe, sent with the old key, could get through first.)
    patch_config(&s, &id, json!({"apiKey": "dd-new-key-5678"})).await;
    rec.set_mode(Mode::Ok);
    rec.wait(15, "all five", |r| delivered(r).len() == 5).await;
    let got = delivered(&rec);
    for (gen_id, key) in &got[3..] {
        assert!(gen_id == "dd-4" || gen_id == "dd-5");
        assert_eq!(key, "dd-new-key-5678");
    }
    wait_status(&s, &id, "active again", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0 && st["counts"]["delivered"] == 5
    })
    .await;
}

#[tokio::test]
async fn datadog_privacy_mode_end_to_end() {
    let s = TestServer::start_with(fast_with(2, 2)).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    create_destination(
        &s,
        json!({"type": "datadog", "name": "private", "privacy_mode": true, "config": {"apiKey": "k-1", "mlApp": "app", "url": base_url(&rec)}}),
        json!({}),
    )
    .await;
    ingest(&s, &key, &["p-1", "p-2"].map(record)).await;
    rec.wait(15, "two llm spans", |r| delivered(r).len() == 2)
        .await;
    for r in rec.requests() {
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("PROMPT-TEXT") && !text.contains("COMPLETION-TEXT"),
            "{text}"
        );
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        let llm = v["data"]["attributes"]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["meta"]["kind"] == "llm")
            .cloned()
            .unwrap();
        assert_eq!(llm["metrics"]["input_tokens"], 12);
        assert!(llm["meta"].get("input").is_none());
    }
}
