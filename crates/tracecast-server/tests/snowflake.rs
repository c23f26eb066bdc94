//! `snowflake` end to end: the real server delivers ingested generations to a loopback
//! Snowflake SQL API v2 receiver (the exporter tests' receiver, built from Snowflake's
//! reference), through a 429 with Retry-After and the async 202 path, pauses on a 401 and
//! resumes when the destination gets the new token.

mod common;
#[path = "../../tracecast-exporters/tests/snowflake_support/mod.rs"]
mod snowflake_support;

use common::TestServer;
use common::e2e::{
    create_destination, fast_with, ingest_status as ingest, patch_config, test_config,
    wait_status_within,
};
use serde_json::{Value, json};
use snowflake_support::{Script, SnowflakeReceiver};
use tracecast_server::settings::Settings;

const TOKEN: &str = "pat-e2e-Token-0123456789";
const TABLE: &str = "SNOWFLAKE_LEARNING_DB.PUBLIC.OPENROUTER_TRACES";

fn settings(url: String) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        fast_with(5, 2)(s);
        s.delivery
            .endpoint_overrides
            .insert("snowflake".into(), url);
    }
}

fn record(id: &str) -> Value {
    json!({
        "id": id,
        "model": "anthropic/claude-sonnet-4",
        "provider_name": "Anthropic",
        "created_at": "2026-03-01T12:00:00.000Z",
        "latency": 900.0,
        "finish_reason": "stop",
        "total_cost": 0.004,
        "user": "user-7",
        "session_id": "session-7",
        "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}], "max_tokens": 64},
        "response": {"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}], "usage": {"prompt_tokens": 20, "completion_tokens": 7, "total_tokens": 27}},
        "trace": {"trace_id": "forecast-1", "trace_name": "Revenue Forecasting", "generation_name": "Generate Forecast", "department": "finance"}
    })
}

#[tokio::test]
async fn generations_reach_snowflake_through_429_async_and_a_401_pause() {
    // OpenRouter's own table (its DDL as the fixture has it): ENTITY_ID is NOT NULL.
    let rx =
        SnowflakeReceiver::start_described(TOKEN, TABLE, &snowflake_support::openrouter_table())
            .await;
    let s = TestServer::start_with(settings(rx.url.clone())).await;
    let (key, _) = s.workspace_key(None).await;
    let config = json!({"account": "xy12345.us-east-1", "token": TOKEN});

    let r = test_config(
        &s,
        json!({"type": "snowflake", "name": "sf", "config": config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);

    let (id, r) = create_destination(
        &s,
        json!({"type": "snowflake", "name": "sf", "config": config}),
        json!({}),
    )
    .await;
    assert_ne!(
        r.body["data"]["config"]["token"], TOKEN,
        "the token is masked"
    );

    // The first INSERT gets a 429 with Retry-After: 1, the resend runs asynchronously (202).
    rx.script(Script::Status(429, Some(1)));
    rx.script(Script::Async(2));
    let batch: Vec<Value> = (0..4).map(|i| record(&format!("sf-{i}"))).collect();
    assert_eq!(ingest(&s, &key, &batch).await, 202);
    rx.wait(30, "four rows", |r| r.rows().len() == 4).await;
    let st = wait_status_within(&s, &id, 30, "four delivered", |st| {
        st["counts"]["delivered"] == 4
    })
    .await;
    assert_eq!(st["counts"]["dead_lettered"], 0, "{st}");

    let seen = rx.seen();
    let inserts: Vec<_> = seen
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.json()["statement"]
                    .as_str()
                    .is_some_and(|s| s.starts_with("INSERT"))
        })
        .collect();
    assert!(inserts.len() >= 2, "{} inserts", inserts.len());
    assert_eq!(inserts[0].answered, 429);
    let gap = inserts[1].at_gap(inserts[0]);
    assert!(
        gap >= std::time::Duration::from_millis(900),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    assert!(
        seen.iter().any(|r| r.method == "GET" && r.answered == 202),
        "the 202 was polled"
    );
    assert_eq!(inserts[0].param("requestId"), inserts[1].param("requestId"));
    let row = &rx.rows()[0];
    assert_eq!(row["TRACE_ID"], "forecast-1");
    let workspace = r.body["data"]["workspace_id"].as_str().unwrap();
    assert!(!workspace.is_empty());
    assert_eq!(row["ENTITY_ID"], workspace, "the owning workspace");
    assert_eq!(row["USER_ID"], "user-7");
    assert_eq!(row["METADATA"]["department"], "finance");
    assert_eq!(row["METADATA"]["trace_name"], "Revenue Forecasting");
    assert_eq!(row["INPUT"]["messages"][0]["content"], "PROMPT-TEXT");
    assert_eq!(row["TOTAL_TOKENS"], 27);

    // The token is revoked: 401, the destination pauses and keeps its queue.
    rx.set_token("rotated-token-9876543210");
    let more: Vec<Value> = (4..7).map(|i| record(&format!("sf-{i}"))).collect();
    assert_eq!(ingest(&s, &key, &more).await, 202);
    let st = wait_status_within(&s, &id, 30, "paused", |st| st["state"] == "paused").await;
    assert!(
        st["reason"].as_str().unwrap_or_default().contains("401"),
        "{st}"
    );
    assert!(!st.to_string().contains(TOKEN), "{st}");
    assert_eq!(rx.rows().len(), 4);

    // The new token: delivery resumes with nothing lost.
    patch_config(&s, &id, json!({"token": "rotated-token-9876543210"})).await;
    rx.wait(30, "seven rows", |r| r.rows().len() == 7).await;
    wait_status_within(&s, &id, 30, "active again", |st| {
        st["state"] == "active" && st["counts"]["delivered"] == 7
    })
    .await;
    assert_eq!(rx.violations(), Vec::<String>::new());
}
