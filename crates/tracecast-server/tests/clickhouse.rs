//! `clickhouse` end to end: the real server delivers ingested generations into a current
//! ClickHouse engine (chdb behind the HTTP shim of the exporter tests), pauses on a wrong
//! password and resumes when the destination gets the right one.

#[path = "../../tracecast-exporters/tests/clickhouse_support/mod.rs"]
mod clickhouse_support;
mod common;

use clickhouse_support::{DB, PASSWORD, Shim, USER, workspace_root};
use common::TestServer;
use common::e2e::{
    create_destination, fast_with, ingest_status as ingest, patch_config, record_with, test_config,
    wait_status_within,
};
use serde_json::{Value, json};

/// The v1 DDL exactly as docs/destinations/clickhouse.md shows it (the exporter tests check
/// that the docs equal `clickhouse::ddl`).
fn documented_ddl() -> String {
    let docs = std::fs::read_to_string(workspace_root().join("docs/destinations/clickhouse.md"))
        .expect("docs/destinations/clickhouse.md");
    let start = docs
        .find("CREATE TABLE IF NOT EXISTS `OPENROUTER_TRACES`")
        .expect("the DDL in the docs");
    let end = docs[start..].find(";\n").expect("end of the DDL") + start;
    docs[start..end].to_string()
}

fn record(id: &str, created: &str) -> Value {
    record_with(
        id,
        json!({"created_at": created, "session_id": format!("session-{id}")}),
    )
}

async fn count(shim: &Shim) -> u64 {
    let r = shim
        .rows("SELECT count() AS n FROM OPENROUTER_TRACES")
        .await;
    match &r[0]["n"] {
        Value::String(s) => s.parse().unwrap(),
        v => v.as_u64().unwrap(),
    }
}

async fn wait_rows(shim: &Shim, n: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let c = count(shim).await;
        if c == n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {n} rows, have {c}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn generations_reach_clickhouse_and_a_wrong_password_pauses() {
    let shim = Shim::start().await;
    shim.sql(&format!("USE {DB}; {}", documented_ddl())).await;
    let s = TestServer::start_with(fast_with(10, 1)).await;
    let (key, _) = s.workspace_key(None).await;

    let config = json!({"host": shim.url, "database": DB, "username": USER, "password": PASSWORD});
    let r = test_config(
        &s,
        json!({"type": "clickhouse", "name": "ch", "config": config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);

    let (id, r) = create_destination(&s, json!({"type": "clickhouse", "name": "ch", "config": config, "privacy_mode": true, "broadcast_generation_identity": true}), json!({})).await;
    assert_ne!(
        r.body["data"]["config"]["password"], PASSWORD,
        "the password is masked"
    );

    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let batch: Vec<Value> = (0..5).map(|i| record(&format!("ch-{i}"), &now)).collect();
    assert_eq!(ingest(&s, &key, &batch).await, 202);
    wait_rows(&shim, 5).await;
    let st = wait_status_within(&s, &id, 30, "five delivered", |st| {
        st["counts"]["delivered"] == 5
    })
    .await;
    assert_eq!(st["counts"]["dead_lettered"], 0, "{st}");

    let rows = shim
        .rows("SELECT SPAN_ID, TRACE_ID, USER_ID, API_KEY_NAME, ENTITY_ID, INPUT, OUTPUT, TOTAL_TOKENS, JSONExtractString(METADATA, 'env') AS env FROM OPENROUTER_TRACES ORDER BY SPAN_ID")
        .await;
    let workspace = r.body["data"]["workspace_id"].as_str().unwrap();
    assert!(!workspace.is_empty());
    assert_eq!(rows[0]["ENTITY_ID"], workspace, "the owning workspace");
    assert_eq!(rows[0]["SPAN_ID"], "ch-0");
    assert_eq!(rows[0]["TRACE_ID"], "workflow-1");
    assert_eq!(rows[0]["USER_ID"], "user-1");
    assert_eq!(rows[0]["API_KEY_NAME"], "app");
    assert_eq!(rows[0]["env"], "prod");
    assert_eq!(rows[0]["INPUT"], "", "privacy mode");
    assert_eq!(rows[0]["OUTPUT"], "", "privacy mode");

    // A wrong password: the destination pauses and keeps the queue.
    patch_config(&s, &id, json!({"password": "wrong-password"})).await;
    // (PATCH reloads the destination before it answers.)
    let more: Vec<Value> = (5..8).map(|i| record(&format!("ch-{i}"), &now)).collect();
    assert_eq!(ingest(&s, &key, &more).await, 202);
    let st = wait_status_within(&s, &id, 30, "paused", |st| st["state"] == "paused").await;
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("401"), "{st}");
    assert!(!st.to_string().contains("wrong-password"), "{st}");
    assert_eq!(count(&shim).await, 5);

    // The right password again: delivery resumes with nothing lost.
    patch_config(&s, &id, json!({"password": PASSWORD})).await;
    wait_rows(&shim, 8).await;
    wait_status_within(&s, &id, 30, "active again", |st| {
        st["state"] == "active" && st["counts"]["delivered"] == 8
    })
    .await;
}
