//! The `opik` destination end to end: the real server ingests generations and delivers them to
//! a loopback receiver playing Opik's REST API (through `delivery.endpoint_overrides.opik`).

mod common;

use common::TestServer;
use common::e2e::{
    assert_retry_after_honoured, base_url, create as create_destination, fast,
    ingest_resp as ingest, patch_config, record_with, response_without_usage, test_connection,
    usage, wait_paused, wait_status,
};
use common::receiver::{Mode, Receiver};
use serde_json::{Value, json};
use tracecast_server::settings::Settings;

fn settings(s: &mut Settings, rec: &Receiver) {
    fast(s);
    let base = base_url(rec);
    s.delivery
        .endpoint_overrides
        .insert("opik".into(), format!("{base}/opik/api"));
}

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({"session_id": "session-1", "response": response_without_usage(), "usage": usage()}),
    )
}

async fn create(s: &TestServer, api_key: &str, extra: Value) -> String {
    let config = json!({"apiKey": api_key, "workspace": "acme", "projectName": "checkout"});
    create_destination(s, "opik", "opik", config, extra).await
}

/// Items of every accepted batch of this kind (`traces` or `spans`).
fn accepted(rec: &Receiver, kind: &str) -> Vec<Value> {
    rec.requests()
        .into_iter()
        .filter(|r| r.answered < 300 && r.method == reqwest::Method::POST)
        .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .filter_map(|v| v.get(kind).and_then(Value::as_array).cloned())
        .flatten()
        .collect()
}

fn llm_span_count(rec: &Receiver) -> usize {
    accepted(rec, "spans")
        .iter()
        .filter(|s| s["type"] == "llm")
        .count()
}

#[tokio::test]
async fn generations_reach_opik_as_traces_and_spans() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(|st| settings(st, &rec)).await;
    let (key, _) = s.workspace_key(None).await;
    let id = create(&s, "opik_e2e_key", json!({})).await;

    // The connection test goes to Opik's project list with the real headers.
    let t = test_connection(&s, &id).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);
    assert!(
        t.body["data"]["message"]
            .as_str()
            .unwrap()
            .contains("workspace \"acme\""),
        "{}",
        t.text
    );

    let r = ingest(&s, &key, &[record("gen-1"), record("gen-2")]).await;
    assert_eq!(r.status, 202, "{}", r.text);
    rec.wait(10, "two LLM spans", |r| llm_span_count(r) == 2)
        .await;

    let traces = accepted(&rec, "traces");
    assert!(!traces.is_empty());
    // Both generations share trace_id "workflow-1": one Opik trace id.
    let trace_ids: std::collections::BTreeSet<_> = traces
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(trace_ids.len(), 1, "{traces:?}");
    let t = &traces[0];
    assert_eq!(t["name"], "Doc pipeline");
    assert_eq!(t["project_name"], "checkout");
    assert_eq!(t["metadata"]["openrouter_trace_id"], "workflow-1");
    assert_eq!(t["metadata"]["user_id"], "user-1");
    assert_eq!(t["metadata"]["env"], "prod");
    assert_eq!(t["thread_id"], "session-1");
    let spans = accepted(&rec, "spans");
    let mut gen_ids: Vec<_> = spans
        .iter()
        .map(|s| {
            s["metadata"]["openrouter_observation_id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    gen_ids.sort();
    assert_eq!(gen_ids, vec!["gen-1", "gen-2"]);
    for sp in &spans {
        assert_eq!(sp["name"], "Summarise");
        assert_eq!(
            sp["trace_id"].as_str().unwrap(),
            trace_ids.iter().next().unwrap()
        );
        assert_eq!(sp["usage"]["total_tokens"], 17);
        assert_eq!(sp["output"]["completion"], "COMPLETION-TEXT");
    }
    let posts: Vec<_> = rec
        .requests()
        .into_iter()
        .filter(|r| r.method == reqwest::Method::POST)
        .collect();
    for req in &posts {
        assert_eq!(req.headers["authorization"], "opik_e2e_key");
        assert_eq!(req.headers["comet-workspace"], "acme");
    }
    let st = wait_status(&s, &id, "delivered", |st| {
        st["counts"]["delivered"] == 2 && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["dead_lettered"], 0);
}

#[tokio::test]
async fn privacy_mode_keeps_content_out_of_opik() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(|st| settings(st, &rec)).await;
    let (key, _) = s.workspace_key(None).await;
    create(&s, "opik_e2e_key", json!({"privacy_mode": true})).await;
    assert_eq!(ingest(&s, &key, &[record("p-1")]).await.status, 202);
    rec.wait(10, "the LLM span", |r| llm_span_count(r) == 1)
        .await;
    for req in rec.requests() {
        let body = String::from_utf8_lossy(&req.body);
        assert!(
            !body.contains("PROMPT-TEXT") && !body.contains("COMPLETION-TEXT"),
            "privacy mode leaked content: {body}"
        );
    }
    let span = &accepted(&rec, "spans")[0];
    assert_eq!(span["usage"]["prompt_tokens"], 12);
    assert_eq!(span["metadata"]["env"], "prod");
}

#[tokio::test]
async fn rate_limits_are_honoured_and_rejected_keys_pause_until_replaced() {
    let rec = Receiver::start().await;
    let s = TestServer::start_with(|st| settings(st, &rec)).await;
    let (key, _) = s.workspace_key(None).await;

    // 429 with Retry-After: 1 on the first request; the retry waits at least that long.
    rec.script([Mode::RetryAfter(429, 1)]);
    let id = create(&s, "opik_old_key", json!({})).await;
    assert_eq!(ingest(&s, &key, &[record("r-1")]).await.status, 202);
    rec.wait(10, "the retried batch", |r| llm_span_count(r) == 1)
        .await;
    let reqs: Vec<_> = rec
        .requests()
        .into_iter()
        .filter(|r| r.method == reqwest::Method::POST)
        .collect();
    assert_retry_after_honoured(&reqs[0], &reqs[1]);
    let st = wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 1).await;
    assert_eq!(st["last_error"]["status"], 429);

    // 401: the destination pauses and keeps its queue.
    rec.set_mode(Mode::Status(401));
    assert_eq!(
        ingest(&s, &key, &[record("r-2"), record("r-3")])
            .await
            .status,
        202
    );
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert!(
        !st.to_string().contains("opik_old_key"),
        "the key leaked: {st}"
    );
    let t = test_connection(&s, &id).await;
    assert_eq!(t.body["data"]["ok"], false);
    assert_eq!(t.body["data"]["message"], "Opik rejected the API key (401)");

    // A new key resumes delivery with nothing lost.
    rec.set_mode(Mode::Ok);
    patch_config(&s, &id, json!({"apiKey": "opik_new_key"})).await;
    rec.wait(10, "all three", |r| llm_span_count(r) == 3).await;
    let st = wait_status(&s, &id, "active", |st| {
        st["state"] == "active" && st["counts"]["delivered"] == 3
    })
    .await;
    assert_eq!(st["counts"]["dead_lettered"], 0);
    let last = rec.requests().into_iter().last().unwrap();
    assert_eq!(last.headers["authorization"], "opik_new_key");
}
