//! The `snowflake` destination against a loopback SQL API v2 receiver built from Snowflake's
//! published reference (tests/snowflake_support): request shape, bind variables, auth headers,
//! the async 202 path, resubmission, 429 with Retry-After, 401, 422, and test connection.

mod common;
use common::outcomes;
use common::setup::ALL_GROUPS;
mod snowflake_support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::{full_record, generation, secret_record};
use serde_json::{Map, Value, json};
use snowflake_support::{Script, SnowflakeReceiver};
use tracecast_exporters::clickhouse::warehouse;
use tracecast_exporters::snowflake::{self, SnowflakeExporter};
use tracecast_exporters::{ExportContext, Exporter, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::generation::Generation;
use tracecast_model::trace::{TraceOptions, TraceView};

const TOKEN: &str = "pat-Secret-Token-0123456789";
const TABLE: &str = "ANALYTICS.TRACING.OPENROUTER_TRACES";

fn config(v2: bool) -> Map<String, Value> {
    json!({
        "account": "xy12345.us-east-1",
        "token": TOKEN,
        "database": "analytics",
        "schema": "tracing",
        "table": "OPENROUTER_TRACES",
        "warehouse": "compute_wh",
        "shouldIncludeCacheWriteTokens": v2,
        "headers": {"X-Team": "observability"}
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn ctx(rx: &SnowflakeReceiver) -> ExportContext {
    ExportContext::new(Duration::from_secs(5))
        .with_endpoint_override(DestinationType::Snowflake, &rx.url)
}

fn exporter(rx: &SnowflakeReceiver, v2: bool) -> Arc<dyn Exporter> {
    match build(DestinationType::Snowflake, &config(v2), &ctx(rx)) {
        Ok(e) => e,
        Err(e) => panic!("snowflake exporter: {e}"),
    }
}

fn columns(v2: bool) -> Vec<&'static str> {
    warehouse::columns(v2).iter().map(|c| c.name).collect()
}

/// The workspace the sample generations belong to (the server sets it from the ingest key).
const WORKSPACE: &str = "0b7a4d2e-5c1f-4e3a-9d6b-2f8e1c4a7b90";

fn owned(mut g: Generation) -> Generation {
    g.identity.workspace_id = WORKSPACE.to_string();
    g
}

async fn receiver(v2: bool) -> SnowflakeReceiver {
    SnowflakeReceiver::start(TOKEN, TABLE, &columns(v2)).await
}

#[tokio::test]
async fn inserts_rows_with_bind_variables_and_the_pat_headers() {
    let rx = receiver(true).await;
    let e = exporter(&rx, true);
    let a = owned(generation(full_record()));
    let b = generation(secret_record());
    let p = e
        .encode(&[
            TraceView::new(&a, ALL_GROUPS),
            TraceView::new(
                &b,
                TraceOptions {
                    privacy_mode: true,
                    ..ALL_GROUPS
                },
            ),
        ])
        .unwrap();
    assert_eq!(p.items, 2);
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    assert_eq!(rx.violations(), Vec::<String>::new());

    let seen = rx.seen();
    assert_eq!(seen.len(), 1);
    let req = &seen[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/v2/statements");
    assert_eq!(
        req.header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        req.header("x-snowflake-authorization-token-type"),
        Some("PROGRAMMATIC_ACCESS_TOKEN")
    );
    assert_eq!(req.header("x-team"), Some("observability"));
    assert_eq!(req.param("retry"), Some("true"));
    let id = req.param("requestId").unwrap().to_string();
    let body = req.json();
    assert_eq!(body["database"], "ANALYTICS");
    assert_eq!(body["schema"], "TRACING");
    assert_eq!(body["warehouse"], "COMPUTE_WH");
    assert_eq!(body["timeout"], 60);
    let statement = body["statement"].as_str().unwrap();
    assert!(
        statement.starts_with(&format!("INSERT INTO {TABLE} (TRACE_ID, SPAN_ID,")),
        "{statement}"
    );
    assert!(statement.contains("PARSE_JSON(COLUMN25)"), "{statement}");
    assert_eq!(body["bindings"].as_object().unwrap().len(), 2 * 29);
    assert_eq!(
        body["bindings"]["1"],
        json!({"type": "TEXT", "value": "order_processing_001"})
    );

    // The rows as Snowflake stores them.
    let rows = rx.rows();
    assert_eq!(rows.len(), 2);
    let r = &rows[0];
    assert_eq!(r["TRACE_ID"], "order_processing_001");
    assert_eq!(r["SPAN_ID"], "gen-1767225600-AbCdEfGhIjKlMnOpQrSt");
    assert_eq!(r["PARENT_SPAN_ID"], "00f067aa0ba902b7");
    assert_eq!(r["TIMESTAMP"], "2026-01-01 13:37:42.250");
    assert_eq!(r["START_TIME"], "2026-01-01 13:37:42.250");
    assert_eq!(r["END_TIME"], "2026-01-01 13:37:43.773");
    assert_eq!(r["DURATION_MS"], 1523.5);
    assert_eq!(r["USER_ID"], "user_12345");
    assert_eq!(r["SESSION_ID"], "session_abc");
    assert_eq!(r["ENTITY_ID"], WORKSPACE);
    assert_eq!(r["API_KEY_NAME"], Value::Null);
    assert_eq!(r["MODEL"], "openai/gpt-4o");
    assert_eq!(r["PROVIDER_NAME"], "OpenAI");
    assert_eq!(r["SPAN_TYPE"], "GENERATION");
    assert_eq!(r["STATUS"], "ok");
    assert_eq!(r["LEVEL"], "DEFAULT");
    assert_eq!(r["FINISH_REASON"], "tool_calls");
    assert_eq!(r["PROMPT_TOKENS"], 120);
    assert_eq!(r["COMPLETION_TOKENS"], 30);
    assert_eq!(r["TOTAL_TOKENS"], 150);
    assert_eq!(r["CACHED_TOKENS"], 100);
    assert_eq!(r["REASONING_TOKENS"], 8);
    assert_eq!(r["CACHE_WRITE_TOKENS"], 4);
    assert_eq!(r["TOTAL_COST"], 0.00123);
    // VARIANT columns: METADATA:trace_name, ATTRIBUTES:"gen_ai.request.model", INPUT:messages[0].
    assert_eq!(r["METADATA"]["trace_id"], "order_processing_001");
    assert_eq!(r["METADATA"]["trace_name"], "Order Processing Pipeline");
    assert_eq!(r["METADATA"]["span_name"], "Extraction");
    assert_eq!(r["METADATA"]["generation_name"], "Extract Order Details");
    assert_eq!(r["METADATA"]["order_id"], "ORD-12345");
    assert_eq!(r["METADATA"]["customer"]["tier"], "gold");
    assert_eq!(r["ATTRIBUTES"]["gen_ai.request.model"], "openai/gpt-4o");
    assert_eq!(r["ATTRIBUTES"]["openrouter.x_title"], "Shop");
    assert_eq!(r["INPUT"]["messages"][0]["role"], "system");
    assert_eq!(r["OUTPUT"]["completion"], "Looking up the SKU.");
    assert_eq!(r["MODEL_PARAMETERS"]["temperature"], 0.2);

    // Privacy mode: INPUT and OUTPUT are NULL; nothing of the content is sent.
    let r = &rows[1];
    assert_eq!(r["INPUT"], Value::Null);
    assert_eq!(r["OUTPUT"], Value::Null);
    assert_eq!(r["USER_ID"], "u-1");
    assert_eq!(r["METADATA"]["env"], "prod");
    let text = String::from_utf8(req.body.to_vec()).unwrap();
    assert!(!text.contains("SECRET"), "content in privacy mode");

    // The same batch again carries the same requestId: Snowflake does not run it twice.
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    assert_eq!(rx.seen()[1].param("requestId"), Some(id.as_str()));
    assert_eq!(rx.rows().len(), 2);
}

#[tokio::test]
async fn golden_request_body() {
    let rx = receiver(true).await;
    let e = exporter(&rx, true);
    let g = owned(generation(full_record()));
    let p = e.encode(&[TraceView::new(&g, ALL_GROUPS)]).unwrap();
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    assert_eq!(rx.violations(), Vec::<String>::new());
    let body = rx.seen()[0].body.clone();
    assert_eq!(body, p.body);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/snowflake.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &body).expect("write golden");
    }
    let golden = std::fs::read(&path).expect("tests/golden/snowflake.json exists");
    assert!(
        golden == body.as_ref(),
        "the Snowflake request differs from {}\n--- golden\n{}\n--- now\n{}",
        path.display(),
        String::from_utf8_lossy(&golden),
        String::from_utf8_lossy(&body)
    );
}

#[tokio::test]
async fn a_202_is_polled_until_the_statement_finishes() {
    let rx = receiver(false).await;
    let e = exporter(&rx, false);
    let g = generation(secret_record());
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    rx.script(Script::Async(3));
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    assert_eq!(rx.violations(), Vec::<String>::new());
    let seen = rx.seen();
    let answers: Vec<(String, u16)> = seen
        .iter()
        .map(|s| (s.method.to_string(), s.answered))
        .collect();
    assert_eq!(
        answers,
        [
            ("POST".into(), 202),
            ("GET".into(), 202),
            ("GET".into(), 202),
            ("GET".into(), 200)
        ]
    );
    let handle = seen[0].json();
    assert!(
        seen[1].path.starts_with("/api/v2/statements/01b"),
        "{handle}"
    );
    assert_eq!(
        seen[1].header("authorization"),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(rx.rows().len(), 1);

    // A statement that outlives the poll budget: retried, and the resend (same requestId,
    // retry=true) does not insert the row twice.
    let e = SnowflakeExporter::new(&config(false), &ctx(&rx))
        .unwrap()
        .with_poll_budget(Duration::from_millis(600));
    let g2 = generation(full_record());
    let p2 = e
        .encode(&[TraceView::new(&g2, TraceOptions::default())])
        .unwrap();
    rx.script(Script::Async(50));
    match e.send(&p2).await {
        Outcome::Retry { status, error, .. } => {
            assert_eq!(status, Some(202));
            assert!(error.contains("still running"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(e.send(&p2).await, Outcome::Delivered);
    assert_eq!(rx.rows().len(), 2, "the resent INSERT ran once");
}

#[tokio::test]
async fn errors_429_503_401_and_422() {
    let rx = receiver(false).await;
    let e = exporter(&rx, false);
    let g = generation(secret_record());
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    rx.script(Script::Status(429, Some(7)));
    outcomes::assert_retry(e.send(&p).await, 429, 7);
    rx.script(Script::Status(503, None));
    assert!(matches!(
        e.send(&p).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    assert!(rx.rows().is_empty());

    rx.set_token("another-token");
    match e.send(&p).await {
        Outcome::Unauthorized { status, error } => {
            assert_eq!(status, 401);
            assert!(error.contains("Invalid OAuth access token"), "{error}");
            assert!(!error.contains(TOKEN));
        }
        other => panic!("401: {other:?}"),
    }
    let check = e.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(401));
    assert!(
        check
            .message
            .starts_with("Snowflake rejected the programmatic access token (401)"),
        "{check:?}"
    );
    rx.set_token(TOKEN);

    // A table without the columns: Snowflake's 422 with its code and message, dead-lettered.
    let narrow = SnowflakeReceiver::start(TOKEN, TABLE, &["TRACE_ID", "MODEL"]).await;
    let e = exporter(&narrow, false);
    match e.send(&p).await {
        Outcome::Rejected { status, error } => {
            assert_eq!(status, Some(422));
            assert!(error.contains("invalid identifier 'SPAN_ID'"), "{error}");
            assert!(error.contains("code 000904"), "{error}");
        }
        other => panic!("422: {other:?}"),
    }
    assert_eq!(rx.violations(), Vec::<String>::new());
    assert_eq!(narrow.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn test_connection_describes_the_table() {
    let rx = receiver(true).await;
    let check = exporter(&rx, true).test_connection().await;
    assert!(check.ok, "{check:?}");
    assert_eq!(
        check.message,
        format!("Snowflake accepted the token and table {TABLE} has all 29 columns")
    );
    let seen = rx.seen();
    assert_eq!(
        seen[0].json()["statement"],
        format!("DESCRIBE TABLE {TABLE}")
    );
    assert_eq!(seen[0].json()["warehouse"], "COMPUTE_WH");

    let v1 = receiver(false).await;
    let check = exporter(&v1, true).test_connection().await;
    assert!(!check.ok);
    assert!(
        check
            .message
            .contains("missing column(s) CACHE_WRITE_TOKENS"),
        "{check:?}"
    );
    assert!(exporter(&v1, false).test_connection().await.ok);

    let other = SnowflakeReceiver::start(TOKEN, "OTHER.PUBLIC.T", &["X"]).await;
    let check = exporter(&other, false).test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(422));
    assert!(
        check.message.contains("does not exist or not authorized"),
        "{check:?}"
    );

    // Async DESCRIBE.
    rx.script(Script::Async(1));
    assert!(exporter(&rx, true).test_connection().await.ok);
    assert_eq!(rx.violations(), Vec::<String>::new());

    let refused = ExportContext::new(Duration::from_secs(2))
        .with_endpoint_override(DestinationType::Snowflake, "http://127.0.0.1:9");
    let e = build(DestinationType::Snowflake, &config(false), &refused).unwrap();
    let check = e.test_connection().await;
    assert!(!check.ok && check.status.is_none(), "{check:?}");
    assert!(
        check.message.starts_with("Snowflake could not be reached"),
        "{check:?}"
    );
}

/// OpenRouter's own table (the fixture snowflake_support/openrouter_ddl.sql, copied from the
/// DDL OpenRouter's dashboard prints): `ENTITY_ID` is `NOT NULL`, so a batch without it fails,
/// and the connection test must say so instead of passing.
#[tokio::test]
async fn openrouter_table_passes_the_test_and_takes_every_batch() {
    let table = snowflake_support::openrouter_table();
    assert!(
        table.contains(&("ENTITY_ID".to_string(), true)),
        "{table:?}"
    );
    let rx = SnowflakeReceiver::start_described(TOKEN, TABLE, &table).await;
    let e = exporter(&rx, false);
    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");
    let g = owned(generation(full_record()));
    let b = generation(secret_record());
    let p = e
        .encode(&[
            TraceView::new(&g, TraceOptions::default()),
            TraceView::new(&b, TraceOptions::default()),
        ])
        .unwrap();
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    assert_eq!(rx.violations(), Vec::<String>::new());
    let rows = rx.rows();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["ENTITY_ID"], WORKSPACE);
    assert_eq!(rows[0]["TIMESTAMP"], "2026-01-01 13:37:42.250");
    assert!(rows[0].get("ORGANIZATION_ID").is_none());
    // Every NOT NULL column of the table (down to the last visible one, and the inferred rest)
    // is written.
    for (c, required) in &table {
        if *required {
            assert!(!rows[1][c.as_str()].is_null(), "{c} is NULL");
        }
    }

    // A NOT NULL column tracecast does not write: the test fails and names it (the batch
    // would fail too).
    let mut extra = table.clone();
    extra.push(("TENANT_ID".to_string(), true));
    let rx = SnowflakeReceiver::start_described(TOKEN, TABLE, &extra).await;
    let e = exporter(&rx, false);
    let check = e.test_connection().await;
    assert!(!check.ok, "{check:?}");
    assert_eq!(
        check.message,
        format!(
            "Snowflake table {TABLE} has NOT NULL column(s) without a default that tracecast does not write: TENANT_ID (every insert would fail; make them nullable or give them a DEFAULT)"
        )
    );
    match e.send(&p).await {
        Outcome::Rejected { status, error } => {
            assert_eq!(status, Some(422));
            assert!(
                error.contains("NULL result in a non-nullable column 'TENANT_ID'"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn ddl_creates_every_column_the_exporter_writes() {
    let v2 = snowflake::ddl(
        Some("analytics"),
        Some("tracing"),
        "OPENROUTER_TRACES",
        true,
    );
    assert!(v2.starts_with(&format!("CREATE TABLE IF NOT EXISTS {TABLE} (")));
    for c in columns(true) {
        assert!(
            v2.lines()
                .any(|l| l.trim_start().starts_with(&format!("{c} "))),
            "{c} missing from\n{v2}"
        );
    }
    assert!(
        v2.contains("ATTRIBUTES         VARIANT")
            || v2.contains("ATTRIBUTES VARIANT")
            || v2.contains("VARIANT")
    );
    let v1 = snowflake::ddl(None, None, "OPENROUTER_TRACES", false);
    assert!(!v1.contains("CACHE_WRITE_TOKENS"));
    // The statement the exporter sends names exactly the DDL's columns, in order.
    let rx = receiver(true).await;
    let e = exporter(&rx, true);
    let g = generation(full_record());
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    let body: Value = serde_json::from_slice(&p.body).unwrap();
    let st = body["statement"].as_str().unwrap();
    let cols = st
        .split_once(" (")
        .unwrap()
        .1
        .split_once(") SELECT")
        .unwrap()
        .0
        .to_string();
    assert_eq!(cols, columns(true).join(", "));
}

/// The DDL in docs/destinations/snowflake.md is exactly what `ddl` prints.
#[test]
fn docs_show_the_printed_ddl() {
    let docs =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/destinations/snowflake.md");
    let v1 = snowflake::ddl(None, None, warehouse::DEFAULT_TABLE, false);
    if std::env::var_os("PRINT_DDL").is_some() {
        println!(
            "{v1}\n{}",
            snowflake::ddl(None, None, warehouse::DEFAULT_TABLE, true)
        );
    }
    let text = std::fs::read_to_string(&docs).expect("docs/destinations/snowflake.md");
    assert!(
        text.contains(&v1),
        "the DDL in {} is out of date:\n{v1}",
        docs.display()
    );
    let v2 = snowflake::ddl(None, None, warehouse::DEFAULT_TABLE, true);
    let line = v2
        .lines()
        .find(|l| l.contains("CACHE_WRITE_TOKENS"))
        .unwrap();
    assert!(
        text.contains(line.trim()),
        "the v2 column is not in the docs: {line}"
    );
}
