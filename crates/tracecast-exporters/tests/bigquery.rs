//! The `bigquery` destination against a loopback Google token endpoint and BigQuery REST API
//! (tests/bigquery_support: the RS256 assertion is verified with the test key's public half,
//! the insertAll body and every row are checked against the API reference and the table).

mod bigquery_support;
mod common;

use std::sync::Arc;

use bigquery_support::{BigqueryReceiver, CLIENT_EMAIL, Field, SCOPE, Script, key_file};
use common::golden;
use common::setup::{ALL_GROUPS, exporter_in};
use common::*;
use serde_json::{Value, json};
use tracecast_exporters::bigquery::{self, INSERT_PERMISSION};
use tracecast_exporters::{ExportContext, Exporter, ItemOutcome, Outcome};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

/// The table `tracecast schema bigquery` creates, as tables.get reports it.
fn ddl_fields() -> Vec<Field> {
    bigquery::columns()
        .into_iter()
        .map(|c| Field {
            name: c.name,
            ty: c.sql_type.to_string(),
            mode: c.mode.to_string(),
        })
        .collect()
}

async fn receiver() -> BigqueryReceiver {
    BigqueryReceiver::start(ddl_fields(), &[INSERT_PERMISSION]).await
}

fn exporter(rx: &BigqueryReceiver) -> Arc<dyn Exporter> {
    let ctx = ExportContext::new(std::time::Duration::from_secs(5))
        .with_endpoint_override(DestinationType::Bigquery, &rx.url);
    exporter_in(
        &ctx,
        DestinationType::Bigquery,
        json!({
            "projectId": bigquery_support::PROJECT,
            "serviceAccountKey": key_file(&rx.url),
            "headers": {"X-Team": "data"}
        }),
    )
}

fn tagged_record() -> Value {
    let mut r = full_record();
    r["trace"]["tags"] = json!(["checkout", "prod"]);
    r["trace"]["department"] = json!("finance");
    r
}

fn json_col(row: &serde_json::Map<String, Value>, name: &str) -> Value {
    serde_json::from_str(row[name].as_str().expect("JSON columns travel as strings")).unwrap()
}

#[tokio::test]
async fn rows_reach_bigquery_with_a_verified_jwt_and_the_documented_columns() {
    let rx = receiver().await;
    let e = exporter(&rx);
    let (a, b) = (generation(tagged_record()), generation(secret_record()));
    let views = [
        TraceView::new(&a, ALL_GROUPS),
        TraceView::new(&b, ALL_GROUPS),
    ];
    let payload = e.encode(&views).unwrap();
    assert_eq!(payload.items, 2);
    assert_eq!(e.send(&payload).await, Outcome::Delivered);
    assert_eq!(rx.violations(), Vec::<String>::new());

    // The assertion the token endpoint verified (RS256 with the test key's public half).
    let claims = rx.claims();
    assert_eq!(claims.len(), 1);
    assert_eq!(claims[0]["iss"], CLIENT_EMAIL);
    assert_eq!(claims[0]["scope"], SCOPE);
    assert_eq!(claims[0]["aud"], format!("{}/token", rx.url));
    // The assertion's shape, volatile values replaced: tests/vendors/test_bigquery.py compares
    // it with the assertion Google's own google-auth library makes from the same key.
    let header = rx.assertion_headers()[0].clone();
    let mut shape_header = serde_json::Map::new();
    for (k, v) in header.as_object().unwrap() {
        if v.is_null() {
            continue;
        }
        let v = if k == "kid" {
            assert_eq!(v, "0123456789abcdef0123456789abcdef01234567");
            json!("<private_key_id>")
        } else {
            v.clone()
        };
        shape_header.insert(k.clone(), v);
    }
    let c = claims[0].as_object().unwrap();
    let mut names: Vec<&String> = c.keys().collect();
    names.sort();
    let shape = json!({
        "header": shape_header,
        "claims": names,
        "iss": if c["iss"] == CLIENT_EMAIL { "<client_email>" } else { "?" },
        "aud": if c["aud"] == format!("{}/token", rx.url).as_str() { "<token_uri>" } else { "?" },
        "scope": c["scope"],
        "lifetime_secs": c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
    });
    golden::assert_json(
        "bigquery_assertion.json",
        "BigQuery JWT assertion shape",
        &shape,
    );
    let seen = rx.seen();
    let insert = seen
        .iter()
        .find(|s| s.path.ends_with("/insertAll"))
        .unwrap();
    assert_eq!(
        insert.path,
        "/bigquery/v2/projects/my-gcp-project/datasets/openrouter/tables/openrouter_traces/insertAll"
    );
    assert_eq!(
        insert.headers["authorization"].to_str().unwrap(),
        "Bearer ya29.test-token-1"
    );
    assert_eq!(insert.headers["x-team"].to_str().unwrap(), "data");
    let body = insert.json();
    assert_eq!(body["skipInvalidRows"], true);
    assert_eq!(body["ignoreUnknownValues"], false);

    // One row per generation; insertId is the generation id.
    let rows = rx.rows();
    assert_eq!(rows.len(), 2);
    let (id, row) = &rows[0];
    assert_eq!(id, &a.id);
    // bigquery.mdx: typed columns.
    assert_eq!(row["trace_id"], "order_processing_001");
    assert_eq!(row["span_id"], a.id.as_str());
    assert_eq!(row["timestamp"], "2026-01-01T13:37:42.250000Z");
    assert_eq!(row["model"], "openai/gpt-4o");
    assert_eq!(row["provider_name"], "OpenAI");
    assert_eq!(row["status"], "ok");
    assert_eq!(row["level"], "DEFAULT");
    assert_eq!(row["finish_reason"], "tool_calls");
    assert_eq!(row["user_id"], "user_12345");
    assert_eq!(row["session_id"], "session_abc");
    assert_eq!(
        row["prompt_tokens"], "120",
        "INT64 as Google's client sends it"
    );
    assert_eq!(row["completion_tokens"], "30");
    assert_eq!(row["total_tokens"], "150");
    assert_eq!(row["total_cost"], 0.00123);
    assert_eq!(row["duration_ms"], 1523.5);
    assert_eq!(row["tags"], json!(["checkout", "prod"]));
    // JSON columns.
    let metadata = json_col(row, "metadata");
    assert_eq!(metadata["trace_name"], "Order Processing Pipeline");
    assert_eq!(metadata["generation_name"], "Extract Order Details");
    assert_eq!(metadata["department"], "finance");
    let input = json_col(row, "input");
    assert_eq!(
        input["messages"][1]["content"],
        "Process this order: 2 widgets"
    );
    assert_eq!(json_col(row, "output")["completion"], "Looking up the SKU.");
    assert_eq!(json_col(row, "model_parameters")["temperature"], 0.2);
    assert_eq!(
        json_col(row, "attributes")["gen_ai.request.model"],
        "openai/gpt-4o"
    );
    assert_eq!(
        json_col(row, "resource_attributes")["service.name"],
        "openrouter"
    );
    assert_eq!(rows[1].1["trace_id"], "gen-secret");
    assert!(rows[1].1.get("tags").is_none());

    golden::assert_bytes("bigquery.json", "BigQuery insertAll body", &payload.body);
}

/// The columns OpenRouter's BigQuery guide queries (bigquery.mdx) and its DDL screenshot shows
/// (docs/destinations/bigquery.md), with their BigQuery types.
#[test]
fn the_ddl_has_every_documented_column_with_its_type() {
    let documented = [
        ("trace_id", "STRING", "REQUIRED"),
        ("span_id", "STRING", "REQUIRED"),
        ("parent_span_id", "STRING", "NULLABLE"),
        ("user_id", "STRING", "NULLABLE"),
        ("session_id", "STRING", "NULLABLE"),
        ("api_key_name", "STRING", "NULLABLE"),
        ("timestamp", "TIMESTAMP", "REQUIRED"),
        ("start_time", "TIMESTAMP", "REQUIRED"),
        ("end_time", "TIMESTAMP", "NULLABLE"),
        ("duration_ms", "FLOAT64", "NULLABLE"),
        ("model", "STRING", "REQUIRED"),
        ("provider_name", "STRING", "NULLABLE"),
        ("status", "STRING", "REQUIRED"),
        ("level", "STRING", "REQUIRED"),
        ("finish_reason", "STRING", "NULLABLE"),
        ("prompt_tokens", "INT64", "REQUIRED"),
        ("completion_tokens", "INT64", "REQUIRED"),
        ("total_tokens", "INT64", "REQUIRED"),
        ("cached_tokens", "INT64", "REQUIRED"),
        ("reasoning_tokens", "INT64", "REQUIRED"),
        ("total_cost", "FLOAT64", "REQUIRED"),
        ("attributes", "JSON", "NULLABLE"),
        ("input", "JSON", "NULLABLE"),
        ("output", "JSON", "NULLABLE"),
        ("metadata", "JSON", "NULLABLE"),
        ("model_parameters", "JSON", "NULLABLE"),
        ("resource_attributes", "JSON", "NULLABLE"),
        ("tags", "STRING", "REPEATED"),
    ];
    let cols = bigquery::columns();
    for (name, ty, mode) in documented {
        let c = cols
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} missing from the DDL"));
        assert_eq!((c.sql_type, c.mode), (ty, mode), "{name}");
    }
    let ddl = bigquery::ddl(Some("my-gcp-project"), "openrouter", "openrouter_traces");
    // tests/vendors/test_bigquery.py reads the table's schema from this file.
    golden::assert_text("bigquery.sql", "BigQuery DDL", &ddl);
    assert!(
        ddl.contains("    tags ") && ddl.contains("ARRAY<STRING>"),
        "{ddl}"
    );
    assert!(ddl.contains("PARTITION BY DATE(timestamp)"), "{ddl}");
}

#[tokio::test]
async fn the_token_is_cached_and_renewed_when_refused() {
    let rx = receiver().await;
    let e = exporter(&rx);
    let g = generation(secret_record());
    let payload = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(e.send(&payload).await, Outcome::Delivered);
    assert_eq!(e.send(&payload).await, Outcome::Delivered);
    assert_eq!(rx.tokens_issued(), 1, "the second send reuses the token");

    rx.revoke_tokens();
    assert!(
        matches!(
            e.send(&payload).await,
            Outcome::Retry {
                status: Some(401),
                ..
            }
        ),
        "a refused token is retried"
    );
    assert_eq!(e.send(&payload).await, Outcome::Delivered);
    assert_eq!(rx.tokens_issued(), 2, "a new token after the 401");

    // The API refuses even a just-issued token: retrying cannot help, the destination pauses.
    rx.revoke_tokens();
    rx.api_refuses_tokens(true);
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Retry {
            status: Some(401),
            ..
        }
    ));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Unauthorized { status: 401, .. }
    ));
    rx.api_refuses_tokens(false);

    // A deleted key: Google refuses the grant; the destination pauses.
    rx.revoke_tokens();
    rx.refuse_grants(true);
    let _ = e.send(&payload).await;
    match e.send(&payload).await {
        Outcome::Unauthorized { status: 400, error } => {
            assert!(error.contains("invalid_grant"), "{error}");
            assert!(!error.contains("PRIVATE KEY"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn insert_errors_and_api_errors_are_classified() {
    let rx = receiver().await;
    let e = exporter(&rx);
    let gs: Vec<_> = (0..3)
        .map(|n| {
            let mut r = secret_record();
            r["id"] = json!(format!("gen-{n}"));
            generation(r)
        })
        .collect();
    let views: Vec<_> = gs.iter().map(|g| TraceView::new(g, ALL_GROUPS)).collect();
    let payload = e.encode(&views).unwrap();

    rx.script(Script::RowError(1, "invalid"));
    match e.send(&payload).await {
        Outcome::Partial(items) => {
            assert_eq!(items[0], ItemOutcome::Delivered);
            assert!(
                matches!(&items[1], ItemOutcome::Rejected { error } if error.contains("invalid"))
            );
            assert_eq!(items[2], ItemOutcome::Delivered);
        }
        other => panic!("{other:?}"),
    }
    rx.script(Script::RowError(2, "backendError"));
    match e.send(&payload).await {
        Outcome::Partial(items) => assert!(matches!(items[2], ItemOutcome::Retry { .. })),
        other => panic!("{other:?}"),
    }
    rx.script(Script::Status(403, "quotaExceeded"));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Retry {
            status: Some(403),
            ..
        }
    ));
    rx.script(Script::Status(403, "accessDenied"));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
    rx.script(Script::Status(503, "backendError"));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    rx.script(Script::Status(404, "notFound"));
    assert!(matches!(
        e.send(&payload).await,
        Outcome::Rejected {
            status: Some(404),
            ..
        }
    ));
    assert_eq!(rx.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn privacy_mode_leaves_input_and_output_out() {
    let rx = receiver().await;
    let e = exporter(&rx);
    let g = generation(secret_record());
    let private = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = e.encode(&[TraceView::new(&g, private)]).unwrap();
    assert_eq!(e.send(&payload).await, Outcome::Delivered);
    let text = String::from_utf8_lossy(&payload.body);
    assert!(!text.contains("SECRET"), "content leaked: {text}");
    let rows = rx.rows();
    assert!(rows[0].1.get("input").is_none() && rows[0].1.get("output").is_none());
    assert_eq!(rows[0].1["total_cost"], 0.5);
}

#[tokio::test]
async fn the_connection_test_reads_the_table_and_checks_the_insert_permission() {
    let rx = receiver().await;
    let check = exporter(&rx).test_connection().await;
    assert!(check.ok, "{check:?}");
    assert!(
        check
            .message
            .contains("my-gcp-project.openrouter.openrouter_traces")
    );
    assert_eq!(rx.violations(), Vec::<String>::new());

    // A table without `tags`.
    let mut fields = ddl_fields();
    fields.retain(|f| f.name != "tags");
    let rx = BigqueryReceiver::start(fields, &[INSERT_PERMISSION]).await;
    let check = exporter(&rx).test_connection().await;
    assert!(!check.ok);
    assert!(
        check.message.contains("missing column(s) tags"),
        "{check:?}"
    );

    // Read-only access.
    let rx = BigqueryReceiver::start(ddl_fields(), &[]).await;
    let check = exporter(&rx).test_connection().await;
    assert!(!check.ok);
    assert!(check.message.contains(INSERT_PERMISSION), "{check:?}");

    // A refused key.
    let rx = receiver().await;
    rx.refuse_grants(true);
    let check = exporter(&rx).test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(400));
    assert!(check.message.contains("invalid_grant"), "{check:?}");

    // Nothing listening.
    let ctx = ExportContext::new(std::time::Duration::from_secs(5));
    let refused = refused_url().await;
    let e = exporter_in(
        &ctx,
        DestinationType::Bigquery,
        json!({"projectId": "my-gcp-project", "serviceAccountKey": key_file(refused.trim_end_matches("/v1/traces"))}),
    );
    let check = e.test_connection().await;
    assert!(!check.ok && check.status.is_none(), "{check:?}");
}
