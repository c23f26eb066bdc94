//! The `clickhouse` destination against real ClickHouse engines:
//!
//! - a current engine: PyPI `chdb` (pinned in tests/vendors/requirements-clickhouse.txt) behind
//!   the HTTP shim `tests/clickhouse_shim.py`. The printed DDL creates the table, every insert
//!   goes through it, and the example queries of OpenRouter's ClickHouse guide run against the
//!   inserted rows and must return the expected numbers.
//! - Debian's `clickhouse-server` 18.16 (installed by scripts/install-test-deps.sh), started
//!   here on a free loopback port: the HTTP protocol, authentication and the fallback for a
//!   server that does not know `insert_deduplication_token`.
//!
//! Both run in a time zone that is not UTC (chdb under `TZ`, the server with `<timezone>`):
//! [`clickhouse_support::SERVER_TZ`]. OpenRouter's own table (the fixture
//! `clickhouse_support/openrouter_ddl.sql`, `DateTime64(3)` without a zone) must still get
//! every time as the UTC instant of the generation.
//!
//! Neither is skipped: a missing Python (TRACECAST_TEST_PYTHON, default `.venv/bin/python` at
//! the workspace root), a missing chdb or a missing clickhouse-server fails with a message
//! saying how to install it.

mod clickhouse_support;
mod common;
use common::golden;
use common::outcomes;
use common::setup::{self, ALL_GROUPS};

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clickhouse_support::{DB, PASSWORD, SERVER_TZ, Shim, USER, run_sql};
use common::{Receiver, Reply, full_record, generation, secret_record};
use serde_json::{Value, json};
use tracecast_exporters::clickhouse::{self, warehouse};
use tracecast_exporters::{ExportContext, Exporter, Outcome};
use tracecast_model::DestinationType;
use tracecast_model::generation::Generation;
use tracecast_model::trace::{TraceOptions, TraceView};

fn ctx() -> ExportContext {
    ExportContext::new(Duration::from_secs(20))
}

fn exporter(cfg: Value) -> Arc<dyn Exporter> {
    setup::exporter_in(&ctx(), DestinationType::Clickhouse, cfg)
}

fn ch_config(url: &str, table: &str, v2: bool) -> Value {
    json!({
        "host": url,
        "database": DB,
        "username": USER,
        "password": PASSWORD,
        "table": table,
        "shouldIncludeCacheWriteTokens": v2,
        "headers": {"X-Team": "observability"}
    })
}

/// The workspace the sample generations belong to (the server sets it from the ingest key).
const WORKSPACE: &str = "0b7a4d2e-5c1f-4e3a-9d6b-2f8e1c4a7b90";
/// `created_at` of the full record, 2026-01-01T13:37:42.250Z, in ms since the epoch.
const FULL_START_MS: i64 = 1_767_274_662_250;

fn owned(mut g: Generation) -> Generation {
    g.identity.workspace_id = WORKSPACE.to_string();
    g
}

fn num(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().unwrap(),
        Value::String(s) => s.parse().unwrap_or_else(|_| panic!("not a number: {s}")),
        other => panic!("not a number: {other}"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

// ---- the data set for the guide's queries ----

struct Spec {
    id: String,
    model: &'static str,
    provider: &'static str,
    user: &'static str,
    session: Option<&'static str>,
    key: &'static str,
    cost: f64,
    prompt: u64,
    completion: u64,
    latency: f64,
    error: bool,
    private: bool,
    custom: bool,
}

/// 10 OpenAI calls (alice 5, bob 5), 2 Anthropic calls with custom metadata (alice), 1 failed
/// call (bob), 1 call in privacy mode (carol): all in the last two minutes.
fn specs() -> Vec<Spec> {
    let mut out = Vec::new();
    for i in 0..10 {
        let alice = i < 5;
        out.push(Spec {
            id: format!("gen-openai-{i}"),
            model: "openai/gpt-4o",
            provider: "OpenAI",
            user: if alice { "alice" } else { "bob" },
            session: Some(if !alice {
                "s3"
            } else if i % 2 == 0 {
                "s1"
            } else {
                "s2"
            }),
            key: "prod-key",
            cost: 0.01,
            prompt: 100,
            completion: 20,
            latency: 1000.0 + 100.0 * i as f64,
            error: false,
            private: false,
            custom: false,
        });
    }
    for i in 0..2 {
        out.push(Spec {
            id: format!("gen-claude-{i}"),
            model: "anthropic/claude-sonnet-4",
            provider: "Anthropic",
            user: "alice",
            session: Some("s1"),
            key: "dev-key",
            cost: 0.05,
            prompt: 200,
            completion: 50,
            latency: 2000.0,
            error: false,
            private: false,
            custom: true,
        });
    }
    out.push(Spec {
        id: "gen-failed".into(),
        model: "openai/gpt-4o",
        provider: "OpenAI",
        user: "bob",
        session: Some("s3"),
        key: "prod-key",
        cost: 0.0,
        prompt: 100,
        completion: 0,
        latency: 500.0,
        error: true,
        private: false,
        custom: false,
    });
    out.push(Spec {
        id: "gen-private".into(),
        model: "openai/gpt-4o",
        provider: "OpenAI",
        user: "carol",
        session: None,
        key: "prod-key",
        cost: 0.02,
        prompt: 50,
        completion: 10,
        latency: 800.0,
        error: false,
        private: true,
        custom: false,
    });
    out
}

fn spec_generation(s: &Spec, i: usize, base: chrono::DateTime<chrono::Utc>) -> Generation {
    let created = base + chrono::Duration::milliseconds(i as i64);
    let mut trace = json!({"trace_id": format!("trace-{}", s.id), "env": "test"});
    if s.custom {
        trace = json!({
            "trace_id": format!("trace-{}", s.id),
            "trace_name": "Metrics Analysis Pipeline",
            "generation_name": "Analyze Trends",
            "custom_field": "cf-1",
            "team": "data-engineering",
            "pipeline_version": "2.0",
            "data_source": "clickhouse_metrics"
        });
    }
    let mut v = json!({
        "id": s.id,
        "model": s.model,
        "provider_name": s.provider,
        "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "latency": s.latency,
        "total_cost": s.cost,
        "finish_reason": if s.error { "error" } else { "stop" },
        "user": s.user,
        "trace": trace,
        "request": {"messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": format!("PROMPT {}", s.id)}
        ], "temperature": 0.1},
        "response": {"choices": [{"message": {"role": "assistant", "content": format!("ANSWER {}", s.id)}}]},
        "usage": {"prompt_tokens": s.prompt, "completion_tokens": s.completion, "total_tokens": s.prompt + s.completion}
    });
    if let Some(sess) = s.session {
        v["session_id"] = json!(sess);
    }
    if s.error {
        v["error"] = json!({"code": 502, "message": "upstream failed"});
    }
    let mut g = generation(v);
    g.identity.api_key_name = Some(s.key.to_string());
    g
}

const Q_COST_BY_MODEL: &str = r#"SELECT
  toDate(TIMESTAMP) as day,
  MODEL,
  sum(TOTAL_COST) as total_cost,
  sum(TOTAL_TOKENS) as total_tokens,
  count() as request_count
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= now() - INTERVAL 30 DAY
  AND STATUS = 'ok'
  AND SPAN_TYPE = 'GENERATION'
GROUP BY day, MODEL
ORDER BY day DESC, total_cost DESC;"#;

const Q_USER_ACTIVITY: &str = r#"SELECT
  USER_ID,
  uniqExact(TRACE_ID) as trace_count,
  uniqExact(SESSION_ID) as session_count,
  sum(TOTAL_TOKENS) as total_tokens,
  sum(TOTAL_COST) as total_cost,
  avg(DURATION_MS) as avg_duration_ms
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= now() - INTERVAL 7 DAY
  AND SPAN_TYPE = 'GENERATION'
GROUP BY USER_ID
ORDER BY total_cost DESC;"#;

const Q_ERRORS: &str = r#"SELECT
  TRACE_ID,
  TIMESTAMP,
  MODEL,
  LEVEL,
  FINISH_REASON,
  METADATA,
  INPUT,
  OUTPUT
FROM OPENROUTER_TRACES
WHERE STATUS = 'error'
  AND TIMESTAMP >= now() - INTERVAL 1 HOUR
ORDER BY TIMESTAMP DESC;"#;

const Q_PROVIDERS: &str = r#"SELECT
  PROVIDER_NAME,
  MODEL,
  avg(DURATION_MS) as avg_duration_ms,
  quantile(0.5)(DURATION_MS) as p50_duration_ms,
  quantile(0.95)(DURATION_MS) as p95_duration_ms,
  count() as request_count
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= now() - INTERVAL 7 DAY
  AND STATUS = 'ok'
  AND SPAN_TYPE = 'GENERATION'
GROUP BY PROVIDER_NAME, MODEL
HAVING request_count >= 10
ORDER BY avg_duration_ms;"#;

const Q_API_KEYS: &str = r#"SELECT
  API_KEY_NAME,
  uniqExact(TRACE_ID) as trace_count,
  sum(TOTAL_COST) as total_cost,
  sum(PROMPT_TOKENS) as prompt_tokens,
  sum(COMPLETION_TOKENS) as completion_tokens
FROM OPENROUTER_TRACES
WHERE TIMESTAMP >= now() - INTERVAL 30 DAY
  AND SPAN_TYPE = 'GENERATION'
GROUP BY API_KEY_NAME
ORDER BY total_cost DESC;"#;

const Q_JSON_COLUMNS: &str = r#"SELECT
  TRACE_ID,
  JSONExtractString(METADATA, 'custom_field') as custom_value,
  JSONExtractString(ATTRIBUTES, 'gen_ai.request.model') as requested_model
FROM OPENROUTER_TRACES
WHERE JSONHas(METADATA, 'custom_field');"#;

const Q_INPUT_MESSAGES: &str = r#"SELECT
  TRACE_ID,
  JSONExtractString(
    JSONExtractRaw(INPUT, 'messages'),
    1, 'role'
  ) as first_message_role,
  JSONExtractString(
    JSONExtractRaw(INPUT, 'messages'),
    1, 'content'
  ) as first_message_content
FROM OPENROUTER_TRACES
WHERE SPAN_TYPE = 'GENERATION'
LIMIT 10;"#;

const Q_CUSTOM_METADATA: &str = r#"SELECT
  TRACE_ID,
  JSONExtractString(METADATA, 'team') as team,
  JSONExtractString(METADATA, 'pipeline_version') as pipeline_version,
  JSONExtractString(METADATA, 'data_source') as data_source,
  TOTAL_COST,
  TOTAL_TOKENS
FROM OPENROUTER_TRACES
WHERE JSONHas(METADATA, 'team')
  AND SPAN_TYPE = 'GENERATION'
ORDER BY TIMESTAMP DESC;"#;

#[tokio::test]
async fn chdb_takes_the_ddl_and_inserts_and_the_guide_queries_add_up() {
    let shim = Shim::start().await;
    let ddl = clickhouse::ddl(Some(DB), warehouse::DEFAULT_TABLE, true);
    shim.sql(&ddl).await;
    let e = exporter(ch_config(&shim.url, warehouse::DEFAULT_TABLE, true));
    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert!(check.message.contains("has all 29 columns"), "{check:?}");

    let base = chrono::Utc::now() - chrono::Duration::seconds(120);
    let specs = specs();
    let gens: Vec<Generation> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| spec_generation(s, i, base))
        .collect();
    let views: Vec<TraceView<'_>> = gens
        .iter()
        .zip(&specs)
        .map(|(g, s)| {
            TraceView::new(
                g,
                TraceOptions {
                    privacy_mode: s.private,
                    ..ALL_GROUPS
                },
            )
        })
        .collect();
    // Two batches, and the first one resent (as after a lost answer).
    let first = e.encode(&views[..7]).unwrap();
    let second = e.encode(&views[7..]).unwrap();
    assert_eq!((first.items, second.items), (7, 7));
    assert_eq!(e.send(&first).await, Outcome::Delivered);
    assert_eq!(e.send(&second).await, Outcome::Delivered);
    assert_eq!(e.send(&first).await, Outcome::Delivered);
    let count = shim
        .rows("SELECT count() AS n FROM OPENROUTER_TRACES")
        .await;
    assert_eq!(
        num(&count[0]["n"]),
        14.0,
        "the resent batch was deduplicated"
    );

    // What went over the wire.
    let inserts: Vec<Value> = shim
        .requests()
        .into_iter()
        .filter(|r| {
            r["params"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p[0] == "query" && p[1].as_str().unwrap().starts_with("INSERT"))
        })
        .collect();
    assert_eq!(inserts.len(), 3);
    let param = |r: &Value, k: &str| -> Option<String> {
        r["params"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p[0] == k)
            .map(|p| p[1].as_str().unwrap().to_string())
    };
    assert_eq!(
        param(&inserts[0], "query").unwrap(),
        "INSERT INTO `tracecast`.`OPENROUTER_TRACES` FORMAT JSONEachRow"
    );
    assert_eq!(
        param(&inserts[0], "wait_end_of_query").as_deref(),
        Some("1")
    );
    assert_eq!(
        param(&inserts[0], "date_time_input_format").as_deref(),
        Some("best_effort")
    );
    let t0 = param(&inserts[0], "insert_deduplication_token").unwrap();
    assert_eq!(t0.len(), 32);
    assert_eq!(
        param(&inserts[2], "insert_deduplication_token").unwrap(),
        t0
    );
    assert_ne!(
        param(&inserts[1], "insert_deduplication_token").unwrap(),
        t0
    );
    for r in &inserts {
        assert_eq!(r["method"], "POST");
        assert_eq!(r["headers"]["x-clickhouse-user"], USER);
        assert_eq!(r["headers"]["x-clickhouse-key"], PASSWORD);
        assert_eq!(r["headers"]["x-team"], "observability");
        assert!(param(r, "password").is_none(), "no password in the URL");
    }

    // Cost analysis by model.
    let r = shim.rows(Q_COST_BY_MODEL).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["MODEL"], "openai/gpt-4o");
    assert!(close(num(&r[0]["total_cost"]), 0.12), "{r:?}");
    assert_eq!(num(&r[0]["total_tokens"]), 1260.0);
    assert_eq!(num(&r[0]["request_count"]), 11.0);
    assert_eq!(r[1]["MODEL"], "anthropic/claude-sonnet-4");
    assert!(close(num(&r[1]["total_cost"]), 0.10));
    assert_eq!(num(&r[1]["total_tokens"]), 500.0);
    assert_eq!(num(&r[1]["request_count"]), 2.0);
    assert_eq!(r[0]["day"], base.format("%Y-%m-%d").to_string());

    // User activity.
    let r = shim.rows(Q_USER_ACTIVITY).await;
    let users: Vec<&str> = r.iter().map(|x| x["USER_ID"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice", "bob", "carol"]);
    let avg = |user: &str| {
        let l: Vec<f64> = specs
            .iter()
            .filter(|s| s.user == user)
            .map(|s| s.latency)
            .collect();
        l.iter().sum::<f64>() / l.len() as f64
    };
    for (row, (traces, sessions, tokens, cost, user)) in r.iter().zip([
        (7.0, 2.0, 1100.0, 0.15, "alice"),
        (6.0, 1.0, 700.0, 0.05, "bob"),
        (1.0, 0.0, 60.0, 0.02, "carol"),
    ]) {
        assert_eq!(num(&row["trace_count"]), traces, "{row}");
        assert_eq!(num(&row["session_count"]), sessions, "{row}");
        assert_eq!(num(&row["total_tokens"]), tokens, "{row}");
        assert!(close(num(&row["total_cost"]), cost), "{row}");
        assert!(close(num(&row["avg_duration_ms"]), avg(user)), "{row}");
    }

    // Error analysis.
    let r = shim.rows(Q_ERRORS).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["TRACE_ID"], "trace-gen-failed");
    assert_eq!(r[0]["LEVEL"], "ERROR");
    assert_eq!(r[0]["FINISH_REASON"], "error");
    let input: Value = serde_json::from_str(r[0]["INPUT"].as_str().unwrap()).unwrap();
    assert_eq!(input["messages"][1]["content"], "PROMPT gen-failed");
    let meta: Value = serde_json::from_str(r[0]["METADATA"].as_str().unwrap()).unwrap();
    assert_eq!(meta["env"], "test");

    // Provider performance: only OpenAI/gpt-4o has 10 or more successful calls.
    let r = shim.rows(Q_PROVIDERS).await;
    assert_eq!(r.len(), 1, "{r:?}");
    assert_eq!(r[0]["PROVIDER_NAME"], "OpenAI");
    assert_eq!(num(&r[0]["request_count"]), 11.0);
    let ok: Vec<f64> = specs
        .iter()
        .filter(|s| s.provider == "OpenAI" && !s.error)
        .map(|s| s.latency)
        .collect();
    assert!(close(
        num(&r[0]["avg_duration_ms"]),
        ok.iter().sum::<f64>() / 11.0
    ));
    let p50 = num(&r[0]["p50_duration_ms"]);
    assert!((800.0..=1900.0).contains(&p50), "{p50}");

    // Usage by API key.
    let r = shim.rows(Q_API_KEYS).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["API_KEY_NAME"], "prod-key");
    assert_eq!(num(&r[0]["trace_count"]), 12.0);
    assert!(close(num(&r[0]["total_cost"]), 0.12));
    assert_eq!(num(&r[0]["prompt_tokens"]), 1150.0);
    assert_eq!(num(&r[0]["completion_tokens"]), 210.0);
    assert_eq!(r[1]["API_KEY_NAME"], "dev-key");
    assert_eq!(num(&r[1]["trace_count"]), 2.0);
    assert_eq!(num(&r[1]["prompt_tokens"]), 400.0);

    // JSON columns.
    let r = shim.rows(Q_JSON_COLUMNS).await;
    assert_eq!(r.len(), 2, "{r:?}");
    for row in &r {
        assert_eq!(row["custom_value"], "cf-1");
        assert_eq!(row["requested_model"], "anthropic/claude-sonnet-4");
    }
    let r = shim.rows(Q_INPUT_MESSAGES).await;
    assert_eq!(r.len(), 10);
    for row in &r {
        let private = row["TRACE_ID"] == "trace-gen-private";
        let (role, content) = if private {
            ("", "")
        } else {
            ("system", "You are terse.")
        };
        assert_eq!(row["first_message_role"], role, "{row}");
        assert_eq!(row["first_message_content"], content, "{row}");
    }
    let r = shim.rows(Q_CUSTOM_METADATA).await;
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["team"], "data-engineering");
    assert_eq!(r[0]["pipeline_version"], "2.0");
    assert_eq!(r[0]["data_source"], "clickhouse_metrics");
    assert_eq!(num(&r[0]["TOTAL_TOKENS"]), 250.0);

    // Every mapped column of one row, and privacy mode.
    let r = shim
        .rows("SELECT * FROM OPENROUTER_TRACES WHERE SPAN_ID = 'gen-claude-1'")
        .await;
    let row = &r[0];
    assert_eq!(row["TRACE_ID"], "trace-gen-claude-1");
    assert_eq!(row["USER_ID"], "alice");
    assert_eq!(row["SESSION_ID"], "s1");
    assert_eq!(row["PROVIDER_NAME"], "Anthropic");
    assert_eq!(row["STATUS"], "ok");
    assert_eq!(row["LEVEL"], "DEFAULT");
    assert_eq!(num(&row["CACHE_WRITE_TOKENS"]), 0.0);
    let meta: Value = serde_json::from_str(row["METADATA"].as_str().unwrap()).unwrap();
    assert_eq!(meta["trace_id"], "trace-gen-claude-1");
    assert_eq!(meta["trace_name"], "Metrics Analysis Pipeline");
    assert_eq!(meta["generation_name"], "Analyze Trends");
    let params: Value = serde_json::from_str(row["MODEL_PARAMETERS"].as_str().unwrap()).unwrap();
    assert_eq!(params["temperature"], 0.1);
    let r = shim
        .rows("SELECT INPUT, OUTPUT, ATTRIBUTES, USER_ID FROM OPENROUTER_TRACES WHERE SPAN_ID = 'gen-private'")
        .await;
    assert_eq!(r[0]["INPUT"], "");
    assert_eq!(r[0]["OUTPUT"], "");
    assert_eq!(r[0]["USER_ID"], "carol");
    assert!(!r[0]["ATTRIBUTES"].as_str().unwrap().contains("PROMPT"));
}

#[tokio::test]
async fn golden_row_is_accepted_by_chdb_and_matches_the_file() {
    let g = owned(generation(full_record()));
    let view = TraceView::new(&g, ALL_GROUPS);
    let line = clickhouse::json_row(&view, true);
    let body = format!("{line}\n");
    golden::assert_text("clickhouse.jsonl", "ClickHouse row", &body);

    let row: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(row["TRACE_ID"], "order_processing_001");
    assert_eq!(row["SPAN_ID"], "gen-1767225600-AbCdEfGhIjKlMnOpQrSt");
    assert_eq!(row["PARENT_SPAN_ID"], "00f067aa0ba902b7");
    assert_eq!(row["TIMESTAMP"], "2026-01-01T13:37:42.250Z");
    assert_eq!(row["END_TIME"], "2026-01-01T13:37:43.773Z");
    assert_eq!(row["ENTITY_ID"], WORKSPACE);
    assert_eq!(
        row["API_KEY_NAME"],
        Value::Null,
        "the sample has no key name"
    );
    assert_eq!(row["CACHE_WRITE_TOKENS"], 4);
    assert_eq!(row["CACHED_TOKENS"], 100);
    assert_eq!(row["REASONING_TOKENS"], 8);
    assert_eq!(row["FINISH_REASON"], "tool_calls");
    let meta: Value = serde_json::from_str(row["METADATA"].as_str().unwrap()).unwrap();
    assert_eq!(
        meta,
        json!({"trace_id": "order_processing_001", "trace_name": "Order Processing Pipeline",
               "span_name": "Extraction", "generation_name": "Extract Order Details",
               "order_id": "ORD-12345", "priority": "high", "attempt": 2, "score": 0.75,
               "vip": true, "labels": ["a", "b"], "customer": {"tier": "gold"}})
    );
    let attrs: Value = serde_json::from_str(row["ATTRIBUTES"].as_str().unwrap()).unwrap();
    assert_eq!(attrs["gen_ai.request.model"], "openai/gpt-4o");
    assert_eq!(attrs["openrouter.http_referer"], "https://shop.example");
    assert!(attrs.get("gen_ai.prompt").is_none());
    let output: Value = serde_json::from_str(row["OUTPUT"].as_str().unwrap()).unwrap();
    assert_eq!(output["completion"], "Looking up the SKU.");
    assert_eq!(output["tool_calls"][0]["function"]["name"], "lookup_sku");

    // chdb takes it, v1 rows into a v1 table.
    let shim = Shim::start().await;
    shim.sql(&clickhouse::ddl(Some(DB), "GOLDEN", true)).await;
    let e = exporter(ch_config(&shim.url, "GOLDEN", true));
    let p = e.encode(&[view]).unwrap();
    assert_eq!(p.body.as_ref(), body.as_bytes());
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    let r = shim
        .rows("SELECT toString(TIMESTAMP) AS ts, toString(END_TIME) AS te, DURATION_MS FROM GOLDEN")
        .await;
    assert_eq!(r[0]["ts"], "2026-01-01 13:37:42.250");
    assert_eq!(r[0]["te"], "2026-01-01 13:37:43.773");
    assert_eq!(num(&r[0]["DURATION_MS"]), 1523.5);
}

/// OpenRouter's own table (fixture `clickhouse_support/openrouter_ddl.sql`: `DateTime64(3)`
/// without a zone, `ENTITY_ID String`) on an engine whose time zone is not UTC: the test
/// passes, and the row holds the generation's UTC instants and its workspace as `ENTITY_ID`.
#[tokio::test]
async fn openrouter_table_on_a_non_utc_engine_keeps_utc_times() {
    let shim = Shim::start().await;
    let tz = shim.rows("SELECT timezone() AS tz").await;
    assert_eq!(tz[0]["tz"], SERVER_TZ, "the engine must not run in UTC");
    run_sql(&shim.url, &clickhouse_support::openrouter_ddl(), Some(DB)).await;
    let e = exporter(ch_config(&shim.url, "OPENROUTER_TRACES", false));
    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert!(!check.message.contains("empty value"), "{check:?}");

    let g = owned(generation(full_record()));
    let b = generation(secret_record());
    let p = e
        .encode(&[
            TraceView::new(&g, TraceOptions::default()),
            TraceView::new(&b, TraceOptions::default()),
        ])
        .unwrap();
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    let r = shim
        .rows(
            "SELECT toUnixTimestamp64Milli(TIMESTAMP) AS ts, toUnixTimestamp64Milli(START_TIME) AS st, \
                    toUnixTimestamp64Milli(END_TIME) AS te, toString(TIMESTAMP, 'UTC') AS utc, \
                    ENTITY_ID, ORGANIZATION_ID, STATUS, TOTAL_TOKENS \
             FROM OPENROUTER_TRACES ORDER BY SPAN_ID",
        )
        .await;
    assert_eq!(r.len(), 2);
    assert_eq!(num(&r[0]["ts"]) as i64, FULL_START_MS);
    assert_eq!(num(&r[0]["st"]) as i64, FULL_START_MS);
    assert_eq!(num(&r[0]["te"]) as i64, FULL_START_MS + 1523);
    assert_eq!(r[0]["utc"], "2026-01-01 13:37:42.250");
    assert_eq!(r[0]["ENTITY_ID"], WORKSPACE);
    assert_eq!(r[0]["ORGANIZATION_ID"], Value::Null);
    assert_eq!(r[0]["STATUS"], "ok");
    assert_eq!(num(&r[0]["TOTAL_TOKENS"]), 150.0);
    // secret_record: created_at 2026-01-01T00:00:00Z.
    assert_eq!(num(&r[1]["ts"]) as i64, 1_767_225_600_000);

    // A column tracecast does not write and ClickHouse fills with its type's empty value is
    // named (the insert itself works: ClickHouse defaults omitted fields).
    run_sql(
        &shim.url,
        "ALTER TABLE OPENROUTER_TRACES ADD COLUMN TENANT_ID String",
        Some(DB),
    )
    .await;
    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");
    assert!(
        check.message.ends_with(
            "; column(s) TENANT_ID are not written by tracecast and are neither Nullable nor given a DEFAULT, so they will hold their type's empty value"
        ),
        "{check:?}"
    );
    assert_eq!(e.send(&p).await, Outcome::Delivered);
}

#[tokio::test]
async fn test_connection_names_missing_tables_columns_and_bad_credentials() {
    let shim = Shim::start().await;
    // A v1 table, checked by a v2 exporter: CACHE_WRITE_TOKENS is missing.
    shim.sql(&clickhouse::ddl(Some(DB), "V1", false)).await;
    let check = exporter(ch_config(&shim.url, "V1", true))
        .test_connection()
        .await;
    assert!(!check.ok);
    assert!(
        check
            .message
            .contains("missing column(s) CACHE_WRITE_TOKENS"),
        "{check:?}"
    );
    assert!(
        exporter(ch_config(&shim.url, "V1", false))
            .test_connection()
            .await
            .ok
    );

    // A table without most columns.
    shim.sql(&format!(
        "CREATE TABLE {DB}.THIN (TRACE_ID String, MODEL String) ENGINE = MergeTree() ORDER BY TRACE_ID"
    ))
    .await;
    let check = exporter(ch_config(&shim.url, "THIN", false))
        .test_connection()
        .await;
    assert!(!check.ok);
    assert!(
        check.message.contains("SPAN_ID, PARENT_SPAN_ID, TIMESTAMP"),
        "{check:?}"
    );

    let check = exporter(ch_config(&shim.url, "NOPE", false))
        .test_connection()
        .await;
    assert!(!check.ok);
    assert!(
        check.message.contains("`tracecast`.`NOPE` does not exist"),
        "{check:?}"
    );

    let mut bad = ch_config(&shim.url, "V1", false);
    bad["password"] = json!("wrong-password");
    let e = exporter(bad);
    let check = e.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(401));
    assert_eq!(
        check.message,
        "ClickHouse rejected the username/password for user \"tracecast\" (401)"
    );
    assert!(!check.message.contains("wrong-password"));
    // A send with the wrong password pauses the destination.
    let g = generation(secret_record());
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(matches!(
        e.send(&p).await,
        Outcome::Unauthorized { status: 401, .. }
    ));

    // Rows that do not fit the table are rejected with ClickHouse's message.
    let e = exporter(ch_config(&shim.url, "THIN", false));
    match e.send(&p).await {
        Outcome::Rejected { error, .. } => assert!(error.contains("Code: "), "{error}"),
        other => panic!("{other:?}"),
    }

    let check = exporter(ch_config(&common::refused_url().await, "V1", false))
        .test_connection()
        .await;
    assert!(!check.ok && check.status.is_none(), "{check:?}");
    assert!(
        check.message.starts_with("ClickHouse could not be reached"),
        "{check:?}"
    );
}

#[tokio::test]
async fn privacy_mode_and_oversized_content() {
    let g = generation(secret_record());
    let e = exporter(
        json!({"host": "http://127.0.0.1:1", "database": "d", "username": "u", "password": "p"}),
    );
    let private = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let p = e.encode(&[TraceView::new(&g, private)]).unwrap();
    let text = std::str::from_utf8(&p.body).unwrap();
    assert!(!text.contains("SECRET"), "content in privacy mode: {text}");
    let row: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (row["INPUT"].as_str(), row["OUTPUT"].as_str()),
        (Some(""), Some(""))
    );
    assert_eq!(row["USER_ID"], "u-1");
    assert_eq!(row["TOTAL_COST"], 0.5);
    assert!(
        row.get("CACHE_WRITE_TOKENS").is_none(),
        "v1 rows have no CACHE_WRITE_TOKENS"
    );

    // A 3 MiB prompt: INPUT becomes a marker, the row is still sent, ATTRIBUTES says so.
    let mut big = secret_record();
    big["request"]["messages"][0]["content"] = json!("x".repeat(3 * 1024 * 1024));
    let g = generation(big);
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(p.body.len() < 1024 * 1024);
    let row: Value = serde_json::from_str(std::str::from_utf8(&p.body).unwrap().trim()).unwrap();
    let input: Value = serde_json::from_str(row["INPUT"].as_str().unwrap()).unwrap();
    assert_eq!(input["truncated"], true);
    assert!(input["original_bytes"].as_u64().unwrap() > 3 * 1024 * 1024);
    let attrs: Value = serde_json::from_str(row["ATTRIBUTES"].as_str().unwrap()).unwrap();
    assert_eq!(attrs["tracecast.truncated_columns"], json!(["INPUT"]));
    let output: Value = serde_json::from_str(row["OUTPUT"].as_str().unwrap()).unwrap();
    assert_eq!(output["completion"], "SECRET-ANSWER");
}

#[tokio::test]
async fn http_errors_429_503_and_401() {
    let rx = Receiver::start().await;
    let e = exporter(ch_config(&rx.url(""), "T", false));
    let g = generation(secret_record());
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();

    rx.reply(
        Reply::status(429)
            .header("retry-after", "7")
            .body("slow down"),
    );
    outcomes::assert_retry(e.send(&p).await, 429, 7);
    rx.reply(
        Reply::status(503)
            .header("x-clickhouse-exception-code", "202")
            .body("Code: 202. DB::Exception: Too many simultaneous queries. (TOO_MANY_SIMULTANEOUS_QUERIES)"),
    );
    assert!(matches!(
        e.send(&p).await,
        Outcome::Retry {
            status: Some(503),
            ..
        }
    ));
    rx.reply(Reply::status(401).header("x-clickhouse-exception-code", "516").body(
        "Code: 516. DB::Exception: tracecast: Authentication failed. (AUTHENTICATION_FAILED)",
    ));
    assert!(matches!(
        e.send(&p).await,
        Outcome::Unauthorized { status: 401, .. }
    ));
    for _ in 0..3 {
        let req = rx.next().await;
        assert_eq!(req.path, "/");
        assert_eq!(req.header("x-clickhouse-user"), Some(USER));
    }
}

// ---- Debian's clickhouse-server 18.16 ----

fn clickhouse_server() -> PathBuf {
    for p in ["/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let p = dir.join("clickhouse-server");
            if p.exists() {
                return p;
            }
        }
    }
    panic!(
        "clickhouse-server is not installed: run scripts/install-test-deps.sh \
         (apt-get install clickhouse-server)"
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server {
    url: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

async fn start_legacy_server() -> Server {
    let bin = clickhouse_server();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path().display().to_string();
    let (http_port, tcp_port) = (free_port(), free_port());
    std::fs::write(
        dir.path().join("config.xml"),
        format!(
            r#"<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/error.log</errorlog><console>0</console></logger>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/data/user_files/</user_files_path>
  <format_schema_path>{d}/data/format_schemas/</format_schema_path>
  <users_config>users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <mark_cache_size>5368709</mark_cache_size>
  <timezone>{SERVER_TZ}</timezone>
</yandex>
"#
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("users.xml"),
        format!(
            r#"<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users><{USER}><password>{PASSWORD}</password><networks><ip>127.0.0.1</ip><ip>::1</ip></networks><profile>default</profile><quota>default</quota></{USER}></users>
  <quotas><default></default></quotas>
</yandex>
"#
        ),
    )
    .unwrap();
    let child = tokio::process::Command::new(&bin)
        .arg(format!("--config-file={d}/config.xml"))
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    let url = format!("http://127.0.0.1:{http_port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = reqwest::get(format!("{url}/ping")).await
            && r.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            let log = std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default();
            panic!("clickhouse-server did not answer /ping within 30 s\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Server {
        url,
        _child: child,
        _dir: dir,
    }
}

#[tokio::test]
async fn debian_clickhouse_server_18_16_http_protocol_and_auth() {
    let server = start_legacy_server().await;
    let version = run_sql(&server.url, "SELECT version()", None).await;
    assert!(version.starts_with("18."), "{version}");
    run_sql(
        &server.url,
        &format!("CREATE DATABASE IF NOT EXISTS {DB}"),
        None,
    )
    .await;
    run_sql(
        &server.url,
        &clickhouse::ddl_legacy(Some(DB), warehouse::DEFAULT_TABLE, false),
        None,
    )
    .await;

    let e = exporter(ch_config(&server.url, warehouse::DEFAULT_TABLE, false));
    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");

    let a = owned(generation(full_record()));
    let b = generation(secret_record());
    let p = e
        .encode(&[
            TraceView::new(&a, ALL_GROUPS),
            TraceView::new(&b, TraceOptions::default()),
        ])
        .unwrap();
    // 18.16 does not know insert_deduplication_token: the exporter inserts without it.
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    let rows = run_sql(
        &server.url,
        &format!(
            "SELECT SPAN_ID, toString(TIMESTAMP), TOTAL_TOKENS, visitParamExtractString(METADATA, 'order_id') \
             FROM {DB}.OPENROUTER_TRACES ORDER BY SPAN_ID FORMAT TabSeparated"
        ),
        None,
    )
    .await;
    let lines: Vec<&str> = rows.lines().collect();
    assert_eq!(lines.len(), 4, "{rows}");
    assert_eq!(
        lines[0],
        "gen-1767225600-AbCdEfGhIjKlMnOpQrSt\t2026-01-01 13:37:42\t150\tORD-12345"
    );

    // OpenRouter's table as 18.16 can have it (no DateTime64: `DateTime`, still without a
    // zone, read in the server's time zone): the times are the UTC instants.
    let server_tz = run_sql(&server.url, "SELECT timezone()", None).await;
    assert_eq!(server_tz.trim(), SERVER_TZ);
    let ddl = clickhouse_support::openrouter_ddl()
        .replace("DateTime64(3)", "DateTime")
        .replace("`OPENROUTER_TRACES`", "`OPENROUTER_DDL`");
    run_sql(&server.url, &ddl, Some(DB)).await;
    let e = exporter(ch_config(&server.url, "OPENROUTER_DDL", false));
    let check = e.test_connection().await;
    assert!(check.ok, "{check:?}");
    let g = owned(generation(full_record()));
    let p = e
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(e.send(&p).await, Outcome::Delivered);
    let rows = run_sql(
        &server.url,
        &format!(
            "SELECT toUnixTimestamp(TIMESTAMP), toUnixTimestamp(START_TIME), toUnixTimestamp(END_TIME), ENTITY_ID \
             FROM {DB}.OPENROUTER_DDL FORMAT TabSeparated"
        ),
        None,
    )
    .await;
    assert_eq!(
        rows.trim(),
        format!(
            "{}\t{}\t{}\t{WORKSPACE}",
            FULL_START_MS / 1000,
            FULL_START_MS / 1000,
            (FULL_START_MS + 1523) / 1000
        )
    );

    // The wrong password: a clear test failure and a pause, never the password in clear.
    let mut bad = ch_config(&server.url, warehouse::DEFAULT_TABLE, false);
    bad["password"] = json!("not-the-password");
    let e = exporter(bad);
    let check = e.test_connection().await;
    assert!(!check.ok);
    assert_eq!(
        check.message,
        "ClickHouse rejected the username/password for user \"tracecast\" (401)"
    );
    match e.send(&p).await {
        Outcome::Unauthorized { status, error } => {
            assert_eq!(status, 401);
            assert!(error.contains("Wrong password"), "{error}");
            assert!(!error.contains("not-the-password"));
        }
        other => panic!("{other:?}"),
    }
    // A table that does not exist is named.
    let check = exporter(ch_config(&server.url, "MISSING", false))
        .test_connection()
        .await;
    assert!(check.message.contains("does not exist"), "{check:?}");
    // A batch that does not fit the table is rejected (old servers answer 500 with the code).
    run_sql(
        &server.url,
        &format!(
            "CREATE TABLE {DB}.NARROW (TRACE_ID UInt8) ENGINE = MergeTree() ORDER BY TRACE_ID"
        ),
        None,
    )
    .await;
    match exporter(ch_config(&server.url, "NARROW", false))
        .send(&p)
        .await
    {
        Outcome::Rejected { error, .. } => assert!(error.contains("Code: "), "{error}"),
        other => panic!("{other:?}"),
    }
}

/// The DDL in docs/destinations/clickhouse.md is exactly what `ddl` prints (schema v1, and
/// the v2 column), so the docs and `tracecast schema clickhouse` never disagree.
#[test]
fn docs_show_the_printed_ddl() {
    let docs = clickhouse_support::workspace_root().join("docs/destinations/clickhouse.md");
    let v1 = clickhouse::ddl(None, warehouse::DEFAULT_TABLE, false);
    let legacy = clickhouse::ddl_legacy(None, warehouse::DEFAULT_TABLE, false);
    if std::env::var_os("PRINT_DDL").is_some() {
        println!(
            "{v1}\n{legacy}\n{}",
            clickhouse::ddl(None, warehouse::DEFAULT_TABLE, true)
        );
    }
    let text = std::fs::read_to_string(&docs).expect("docs/destinations/clickhouse.md");
    assert!(
        text.contains(&v1),
        "the v1 DDL in {} is out of date:\n{v1}",
        docs.display()
    );
    assert!(
        text.contains(&legacy),
        "the legacy DDL in {} is out of date:\n{legacy}",
        docs.display()
    );
    let v2 = clickhouse::ddl(None, warehouse::DEFAULT_TABLE, true);
    let line = v2
        .lines()
        .find(|l| l.contains("`CACHE_WRITE_TOKENS`"))
        .unwrap();
    assert!(
        text.contains(line.trim()),
        "the v2 column is not in the docs: {line}"
    );
}
