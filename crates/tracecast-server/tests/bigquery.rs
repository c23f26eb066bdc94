//! `bigquery` end to end: the real server delivers ingested generations as rows to a loopback
//! Google token endpoint + BigQuery API (the exporter tests' receiver: it verifies the RS256
//! assertion and checks every insertAll row against the table), through a 503, a refused row
//! (dead-lettered alone) and a refused key (the destination pauses, then resumes with a new
//! key).

#[path = "../../tracecast-exporters/tests/bigquery_support/mod.rs"]
mod bigquery_support;
mod common;

use bigquery_support::{BigqueryReceiver, Field, Script, key_file};
use common::TestServer;
use common::e2e::{
    create_destination, fast_with, ingest, patch_config, record, test_config, wait_status,
};
use serde_json::{Value, json};
use tracecast_exporters::bigquery::{self, INSERT_PERMISSION};
use tracecast_server::settings::Settings;

fn settings(url: String) -> impl FnOnce(&mut Settings) {
    move |s: &mut Settings| {
        fast_with(5, 2)(s);
        s.delivery.endpoint_overrides.insert("bigquery".into(), url);
    }
}

fn fields() -> Vec<Field> {
    bigquery::columns()
        .into_iter()
        .map(|c| Field {
            name: c.name,
            ty: c.sql_type.to_string(),
            mode: c.mode.to_string(),
        })
        .collect()
}

fn json_col(row: &serde_json::Map<String, Value>, name: &str) -> Value {
    serde_json::from_str(row[name].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn generations_become_bigquery_rows_through_errors_and_a_key_change() {
    let rx = BigqueryReceiver::start(fields(), &[INSERT_PERMISSION]).await;
    let s = TestServer::start_with(settings(rx.url.clone())).await;
    let (key, _) = s.workspace_key(None).await;
    let config =
        json!({"projectId": bigquery_support::PROJECT, "serviceAccountKey": key_file(&rx.url)});

    let r = test_config(
        &s,
        json!({"type": "bigquery", "name": "bq", "config": config}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);

    let (id, r) = create_destination(
        &s,
        json!({"type": "bigquery", "name": "bq", "config": config}),
        json!({}),
    )
    .await;
    assert!(
        !r.text.contains("PRIVATE KEY"),
        "the key is masked: {}",
        r.text
    );
    assert_eq!(r.body["data"]["config"]["dataset"], "openrouter");
    assert_eq!(r.body["data"]["config"]["table"], "openrouter_traces");

    let tokens_before = rx.tokens_issued();
    // The first insert gets a 503; the batch is resent.
    rx.script(Script::Status(503, "backendError"));
    ingest(&s, &key, &["bq-1", "bq-2", "bq-3"].map(record)).await;
    rx.wait(30, "three rows", |r| r.rows().len() == 3).await;
    wait_status(&s, &id, "three delivered", |st| {
        st["counts"]["delivered"] == 3
    })
    .await;
    let rows = rx.rows();
    let mut ids: Vec<&str> = rows.iter().map(|(i, _)| i.as_str()).collect();
    ids.sort();
    assert_eq!(
        ids,
        ["bq-1", "bq-2", "bq-3"],
        "insertId is the generation id"
    );
    let row = &rows[0].1;
    assert_eq!(row["trace_id"], "workflow-1");
    assert_eq!(row["user_id"], "user-1");
    assert_eq!(row["session_id"], "session-e2e");
    assert_eq!(row["total_tokens"], "17");
    assert_eq!(row["timestamp"], "2026-03-01T12:00:00.000000Z");
    assert_eq!(json_col(row, "metadata")["env"], "prod");
    assert_eq!(
        json_col(row, "input")["messages"][0]["content"],
        "PROMPT-TEXT"
    );
    assert!(
        rx.tokens_issued() <= tokens_before + 1,
        "one token serves every insert"
    );

    // BigQuery refuses one row of a batch: that row alone is dead-lettered.
    rx.script(Script::RowError(0, "invalid"));
    ingest(&s, &key, &["bq-4"].map(record)).await;
    let st = wait_status(&s, &id, "one dead letter", |st| {
        st["counts"]["dead_lettered"] == 1
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 3, "{st}");

    // The key is deleted: Google refuses the grant and the destination pauses.
    rx.revoke_tokens();
    rx.refuse_grants(true);
    ingest(&s, &key, &["bq-5", "bq-6"].map(record)).await;
    let st = wait_status(&s, &id, "paused", |st| st["state"] == "paused").await;
    assert!(st["reason"].as_str().unwrap().contains("400"), "{st}");
    assert_eq!(st["counts"]["dead_lettered"], 1, "{st}");

    // A new key resumes delivery with nothing lost.
    rx.refuse_grants(false);
    let new_key = key_file(&rx.url).replace("0123456789abcdef", "fedcba9876543210");
    let r = patch_config(&s, &id, json!({"serviceAccountKey": new_key})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    rx.wait(30, "rows 5 and 6", |r| r.rows().len() == 5).await;
    wait_status(&s, &id, "active again", |st| {
        st["state"] == "active" && st["counts"]["delivered"] == 5
    })
    .await;
    assert_eq!(rx.violations(), Vec::<String>::new());
}
