//! The row a generation becomes in a warehouse table (`clickhouse` and `snowflake`): one row per
//! generation, typed columns for what is filtered and aggregated, JSON text for the rest.
//!
//! Both warehouses share the column set, the order and the values; only the SQL types and the
//! way values travel differ (ClickHouse: `JSONEachRow`; Snowflake: SQL API bind variables).
//! The column names and the JSON-as-text columns follow OpenRouter's Broadcast tables
//! (`OPENROUTER_TRACES`; see the ClickHouse and Snowflake guides and the DDL on the dashboard's
//! setup screen, shown in OpenRouterTeam/docs `assets/guides/features/broadcast/snowflake/snowflake-table-setup.png`
//! and `.../clickhouse/broadcast-clickhouse-setup.png`, commit c26125a5; its visible part is the
//! test fixture `tests/{snowflake,clickhouse}_support/openrouter_ddl.sql`). Every column of that
//! DDL that tracecast can fill is written; `ORGANIZATION_ID` (nullable there) and
//! `PROVIDER_SLUG` have no tracecast source and are not written. A table column that tracecast
//! does not write must be nullable or have a default: the connection tests name the ones that
//! are not ([`unfilled_required`]).
//!
//! | column | value |
//! |---|---|
//! | `TRACE_ID` | `trace.trace_id`, else the generation id |
//! | `SPAN_ID` | the generation id |
//! | `PARENT_SPAN_ID` | `trace.parent_span_id` as given |
//! | `TIMESTAMP`, `START_TIME` | `created_at` (UTC, milliseconds) |
//! | `END_TIME` | start + `latency` (else `generation_time`) |
//! | `DURATION_MS` | `latency`, else `generation_time` |
//! | `USER_ID`, `SESSION_ID` | `user`, `session_id` |
//! | `ENTITY_ID` | the id of the workspace that owns the generation (always; OpenRouter's table has it `NOT NULL`) |
//! | `API_KEY_NAME` | the API key's name: identity group (`broadcast_generation_identity`) only |
//! | `MODEL`, `PROVIDER_NAME`, `FINISH_REASON` | `model`, `provider_name`, `finish_reason` |
//! | `SPAN_TYPE` | `GENERATION` |
//! | `STATUS` | `error` when the call failed, else `ok` |
//! | `LEVEL` | `ERROR` when the call failed, `WARNING` when it was cancelled, else `DEFAULT` |
//! | `PROMPT_TOKENS`, `COMPLETION_TOKENS`, `TOTAL_TOKENS`, `CACHED_TOKENS`, `REASONING_TOKENS` | usage (0 when unknown) |
//! | `CACHE_WRITE_TOKENS` | `usage.prompt_tokens_details.cache_write_tokens`; only with `shouldIncludeCacheWriteTokens` (schema v2) |
//! | `TOTAL_COST` | `total_cost` in USD (0 when unknown) |
//! | `ATTRIBUTES` | JSON object: the generation span's OTel attributes as tracecast's OTLP exporters send them (`docs/otlp.md`), including the enabled metadata groups, but without the content attributes (`gen_ai.prompt`, `gen_ai.completion`, `gen_ai.tool.definitions`), which are in `INPUT`/`OUTPUT` |
//! | `INPUT` | JSON object `{"messages": [...]}` (or `"prompt"` / `"input"`), plus `"tools"`; empty in privacy mode |
//! | `OUTPUT` | JSON object `{"completion": "...", "reasoning": "...", "tool_calls": [...]}`; empty in privacy mode |
//! | `METADATA` | JSON object: `trace_id`, `trace_name`, `span_name`, `generation_name` and every custom `trace` key (`null` values skipped) |
//! | `MODEL_PARAMETERS` | JSON object of the request's scalar model parameters (`temperature`, `max_tokens`, ...) |
//!
//! Oversized JSON: a JSON column longer than [`MAX_JSON_COLUMN_BYTES`] is replaced by a marker
//! object `{"truncated": true, "original_bytes": N, "preview": "<first 4 KiB of the JSON>"}`,
//! and `ATTRIBUTES` then lists the truncated columns under `tracecast.truncated_columns`. The
//! row is always delivered.

use serde_json::{Map, Value, json};
use tracecast_model::trace::TraceView;

use crate::otlp::{AttrValue, DefaultDialect, generation_spans};

/// A JSON column longer than this (bytes of JSON text) is replaced by a truncation marker.
pub const MAX_JSON_COLUMN_BYTES: usize = 1024 * 1024;
/// How much of a truncated column's JSON text the marker keeps.
pub const TRUNCATED_PREVIEW_BYTES: usize = 4096;

/// The table name both warehouses default to (OpenRouter's).
pub const DEFAULT_TABLE: &str = "OPENROUTER_TRACES";

/// The SQL family of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Text that is always there.
    Text,
    /// Text that may be absent (NULL).
    OptText,
    /// A point in time (UTC, ms).
    Time,
    /// A point in time that may be absent.
    OptTime,
    /// A count (0 when unknown).
    Count,
    /// A float that may be absent.
    OptFloat,
    /// A float (0 when unknown).
    Float,
    /// JSON text (String in ClickHouse, VARIANT in Snowflake).
    Json,
}

/// One column of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    /// What the column holds (for the DDL comments and docs).
    pub comment: &'static str,
}

const fn col(name: &'static str, kind: Kind, comment: &'static str) -> Column {
    Column {
        name,
        kind,
        comment,
    }
}

/// Every column of the v1 table, in table order ([`CACHE_WRITE_TOKENS`] goes after
/// `REASONING_TOKENS` in v2).
pub const COLUMNS_V1: &[Column] = &[
    col(
        "TRACE_ID",
        Kind::Text,
        "trace.trace_id, else the generation id",
    ),
    col("SPAN_ID", Kind::Text, "the generation id"),
    col("PARENT_SPAN_ID", Kind::OptText, "trace.parent_span_id"),
    col("TIMESTAMP", Kind::Time, "created_at (UTC)"),
    col("START_TIME", Kind::Time, "start of the call (UTC)"),
    col("END_TIME", Kind::OptTime, "end of the call (UTC)"),
    col("DURATION_MS", Kind::OptFloat, "latency in ms"),
    col("USER_ID", Kind::OptText, "the request's user"),
    col("SESSION_ID", Kind::OptText, "the request's session_id"),
    col(
        "ENTITY_ID",
        Kind::Text,
        "workspace that owns the generation",
    ),
    col(
        "API_KEY_NAME",
        Kind::OptText,
        "API key name (identity metadata group)",
    ),
    col("MODEL", Kind::Text, "model slug"),
    col(
        "PROVIDER_NAME",
        Kind::OptText,
        "provider that served the call",
    ),
    col("SPAN_TYPE", Kind::Text, "GENERATION"),
    col("STATUS", Kind::Text, "ok or error"),
    col("LEVEL", Kind::Text, "DEFAULT, WARNING or ERROR"),
    col("FINISH_REASON", Kind::OptText, "finish reason"),
    col("PROMPT_TOKENS", Kind::Count, "prompt tokens"),
    col("COMPLETION_TOKENS", Kind::Count, "completion tokens"),
    col("TOTAL_TOKENS", Kind::Count, "total tokens"),
    col("CACHED_TOKENS", Kind::Count, "cached prompt tokens"),
    col("REASONING_TOKENS", Kind::Count, "reasoning tokens"),
    col("TOTAL_COST", Kind::Float, "total cost in USD"),
    col("ATTRIBUTES", Kind::Json, "OpenTelemetry attributes (JSON)"),
    col(
        "INPUT",
        Kind::Json,
        "prompt messages (JSON; empty in privacy mode)",
    ),
    col(
        "OUTPUT",
        Kind::Json,
        "completion (JSON; empty in privacy mode)",
    ),
    col("METADATA", Kind::Json, "trace metadata (JSON)"),
    col("MODEL_PARAMETERS", Kind::Json, "model parameters (JSON)"),
];

/// The v2 column (`shouldIncludeCacheWriteTokens`).
pub const CACHE_WRITE_TOKENS: Column = col(
    "CACHE_WRITE_TOKENS",
    Kind::Count,
    "prompt tokens written to the cache",
);

/// The columns of the table, in order, for schema v1 or v2.
pub fn columns(v2: bool) -> Vec<Column> {
    let mut out = Vec::with_capacity(COLUMNS_V1.len() + 1);
    for c in COLUMNS_V1 {
        out.push(*c);
        if v2 && c.name == "REASONING_TOKENS" {
            out.push(CACHE_WRITE_TOKENS);
        }
    }
    out
}

/// One value of a row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Text(String),
    Null,
    /// `YYYY-MM-DD HH:MM:SS.mmm`, UTC.
    Time(String),
    Count(u64),
    Float(f64),
    /// JSON text; `None` when there is nothing (privacy mode, no request).
    Json(Option<String>),
}

/// A generation as a row: cells in [`columns`] order.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<(Column, Cell)>,
}

impl Row {
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.cells
            .iter()
            .find(|(c, _)| c.name == name)
            .map(|(_, v)| v)
    }
}

/// `YYYY-MM-DD HH:MM:SS.mmm` (UTC) for ns since the epoch.
pub fn format_time(unix_nanos: u64) -> String {
    let secs = (unix_nanos / 1_000_000_000) as i64;
    let nanos = (unix_nanos % 1_000_000_000) as u32;
    match chrono::DateTime::from_timestamp(secs, nanos) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
        None => "1970-01-01 00:00:00.000".to_string(),
    }
}

fn text(s: Option<&str>) -> Cell {
    match s {
        Some(s) => Cell::Text(s.to_string()),
        None => Cell::Null,
    }
}

/// An OTel attribute value as JSON.
pub fn attr_json(v: &AttrValue<'_>) -> Value {
    match v {
        AttrValue::String(s) => Value::String(s.to_string()),
        AttrValue::Int(i) => json!(i),
        AttrValue::Double(d) => json!(d),
        AttrValue::Bool(b) => Value::Bool(*b),
        AttrValue::StringArray(a) => Value::Array(
            a.iter()
                .map(|s| Value::String(s.to_string()))
                .collect::<Vec<_>>(),
        ),
    }
}

/// Attributes that carry content: they live in `INPUT`/`OUTPUT`, not twice in `ATTRIBUTES`.
const CONTENT_ATTRIBUTES: &[&str] = &[
    "gen_ai.prompt",
    "gen_ai.completion",
    "gen_ai.tool.definitions",
];

fn attributes(view: &TraceView<'_>) -> Map<String, Value> {
    let spans = generation_spans(view, &DefaultDialect);
    let mut out = Map::new();
    if let Some(span) = spans.spans.last() {
        for a in &span.attributes {
            if !CONTENT_ATTRIBUTES.contains(&a.key.as_ref()) {
                out.insert(a.key.to_string(), attr_json(&a.value));
            }
        }
    }
    out
}

fn input(view: &TraceView<'_>) -> Option<Value> {
    let i = view.input()?;
    let mut m = Map::new();
    if let Some(v) = i.messages {
        m.insert("messages".into(), v.clone());
    }
    if let Some(v) = i.prompt {
        m.insert("prompt".into(), v.clone());
    }
    if let Some(v) = i.input {
        m.insert("input".into(), v.clone());
    }
    if let Some(v) = i.tools {
        m.insert("tools".into(), v.clone());
    }
    Some(Value::Object(m))
}

fn output(view: &TraceView<'_>) -> Option<Value> {
    let o = view.output()?;
    let mut m = Map::new();
    m.insert("completion".into(), Value::String(o.completion));
    if let Some(r) = o.reasoning {
        m.insert("reasoning".into(), Value::String(r));
    }
    if let Some(t) = o.tool_calls {
        m.insert("tool_calls".into(), t.clone());
    }
    Some(Value::Object(m))
}

fn metadata(view: &TraceView<'_>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("trace_id".into(), json!(view.trace_key()));
    m.insert("trace_name".into(), json!(view.trace_name()));
    if let Some(s) = view.span_name() {
        m.insert("span_name".into(), json!(s));
    }
    m.insert("generation_name".into(), json!(view.generation_name()));
    for (k, v) in view.metadata() {
        if !v.is_null() {
            m.insert(k.to_string(), v.clone());
        }
    }
    m
}

/// JSON text of `v`, or the truncation marker when it is longer than
/// [`MAX_JSON_COLUMN_BYTES`]; the flag says whether it was truncated.
pub fn json_column(v: &Value) -> (String, bool) {
    let s = v.to_string();
    if s.len() <= MAX_JSON_COLUMN_BYTES {
        return (s, false);
    }
    let preview = crate::truncate::prefix(&s, TRUNCATED_PREVIEW_BYTES);
    let marker = json!({"truncated": true, "original_bytes": s.len(), "preview": preview});
    (marker.to_string(), true)
}

/// The row of one generation.
pub fn row(view: &TraceView<'_>, v2: bool) -> Row {
    let start = view.start_unix_nanos();
    let end = view.end_unix_nanos().max(start);
    let level = if view.is_error() {
        "ERROR"
    } else if view.cancelled() == Some(true) {
        "WARNING"
    } else {
        "DEFAULT"
    };
    let mut truncated: Vec<&'static str> = Vec::new();
    let mut json_cell = |name: &'static str, v: Option<Value>| -> Cell {
        match v {
            None => Cell::Json(None),
            Some(v) => {
                let (s, cut) = json_column(&v);
                if cut {
                    truncated.push(name);
                }
                Cell::Json(Some(s))
            }
        }
    };
    let input = json_cell("INPUT", input(view));
    let output = json_cell("OUTPUT", output(view));
    let metadata = json_cell("METADATA", Some(Value::Object(metadata(view))));
    let params = json_cell(
        "MODEL_PARAMETERS",
        Some(Value::Object(view.model_parameters())),
    );
    let mut attrs = attributes(view);
    let (mut attributes, cut) = json_column(&Value::Object(attrs.clone()));
    if cut {
        truncated.push("ATTRIBUTES");
    }
    if !truncated.is_empty() {
        attrs.insert("tracecast.truncated_columns".into(), json!(truncated));
        let (s, cut) = json_column(&Value::Object(attrs));
        attributes = if cut {
            json!({"truncated": true, "tracecast.truncated_columns": truncated}).to_string()
        } else {
            s
        };
    }
    let identity = view.identity_group();
    let cells = columns(v2)
        .into_iter()
        .map(|c| {
            let cell = match c.name {
                "TRACE_ID" => Cell::Text(view.trace_key().to_string()),
                "SPAN_ID" => Cell::Text(view.id().to_string()),
                "PARENT_SPAN_ID" => text(view.parent_span_id()),
                "TIMESTAMP" | "START_TIME" => Cell::Time(format_time(start)),
                "END_TIME" => Cell::Time(format_time(end)),
                "DURATION_MS" => match view.duration_ms() {
                    Some(d) if d.is_finite() => Cell::Float(d),
                    _ => Cell::Null,
                },
                "USER_ID" => text(view.user()),
                "SESSION_ID" => text(view.session_id()),
                "ENTITY_ID" => Cell::Text(view.workspace_id().to_string()),
                "API_KEY_NAME" => text(identity.as_ref().and_then(|i| i.api_key_name)),
                "MODEL" => Cell::Text(view.model().to_string()),
                "PROVIDER_NAME" => text(view.provider()),
                "SPAN_TYPE" => Cell::Text("GENERATION".into()),
                "STATUS" => Cell::Text(if view.is_error() { "error" } else { "ok" }.into()),
                "LEVEL" => Cell::Text(level.into()),
                "FINISH_REASON" => text(view.finish_reason()),
                "PROMPT_TOKENS" => Cell::Count(view.prompt_tokens().unwrap_or(0)),
                "COMPLETION_TOKENS" => Cell::Count(view.completion_tokens().unwrap_or(0)),
                "TOTAL_TOKENS" => Cell::Count(view.total_tokens().unwrap_or(0)),
                "CACHED_TOKENS" => Cell::Count(view.cached_tokens().unwrap_or(0)),
                "REASONING_TOKENS" => Cell::Count(view.reasoning_tokens().unwrap_or(0)),
                "CACHE_WRITE_TOKENS" => Cell::Count(view.cache_write_tokens().unwrap_or(0)),
                "TOTAL_COST" => {
                    Cell::Float(view.total_cost().filter(|c| c.is_finite()).unwrap_or(0.0))
                }
                "ATTRIBUTES" => Cell::Json(Some(attributes.clone())),
                "INPUT" => input.clone(),
                "OUTPUT" => output.clone(),
                "METADATA" => metadata.clone(),
                "MODEL_PARAMETERS" => params.clone(),
                _ => Cell::Null,
            };
            (c, cell)
        })
        .collect();
    Row { cells }
}

/// Column names missing from `present` (compared case-insensitively), in table order.
pub fn missing_columns<'a>(needed: &'a [Column], present: &[String]) -> Vec<&'a str> {
    needed
        .iter()
        .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(c.name)))
        .map(|c| c.name)
        .collect()
}

/// A column of the destination's table as the warehouse describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableColumn {
    pub name: String,
    /// An insert that leaves the column out fails: `NOT NULL` without a default (Snowflake).
    pub required: bool,
}

impl TableColumn {
    /// A column that may be left out of an insert.
    pub fn optional(name: &str) -> TableColumn {
        TableColumn {
            name: name.to_string(),
            required: false,
        }
    }
}

/// The table's required columns (see [`TableColumn::required`]) that tracecast does not write
/// (not among `written`, compared case-insensitively), in table order.
pub fn unfilled_required<'a>(written: &[Column], table: &'a [TableColumn]) -> Vec<&'a str> {
    table
        .iter()
        .filter(|t| t.required && !written.iter().any(|c| c.name.eq_ignore_ascii_case(&t.name)))
        .map(|t| t.name.as_str())
        .collect()
}

/// The connection check for a table with the columns `present`: failed, naming the missing
/// ones, when some of `needed` are not there; else passed, with `passed` (what the platform
/// accepted, e.g. "the credentials") in the message.
pub fn table_check(
    platform: &str,
    passed: &str,
    table: &str,
    status: u16,
    needed: &[Column],
    present: &[String],
) -> crate::ConnectionCheck {
    let present: Vec<TableColumn> = present.iter().map(|p| TableColumn::optional(p)).collect();
    check_table(platform, passed, table, status, needed, &present)
}

/// [`table_check`] with the table's columns as described: it also fails, naming them, when
/// the table has required columns that tracecast does not write (every insert would fail).
pub fn check_table(
    platform: &str,
    passed: &str,
    table: &str,
    status: u16,
    needed: &[Column],
    present: &[TableColumn],
) -> crate::ConnectionCheck {
    let names: Vec<String> = present.iter().map(|p| p.name.clone()).collect();
    let missing = missing_columns(needed, &names);
    if !missing.is_empty() {
        return crate::ConnectionCheck::failed(
            Some(status),
            format!(
                "{platform} table {table} is missing column(s) {}{}",
                missing.join(", "),
                if missing.contains(&"CACHE_WRITE_TOKENS") {
                    " (shouldIncludeCacheWriteTokens needs the v2 schema)"
                } else {
                    ""
                }
            ),
        );
    }
    let unfilled = unfilled_required(needed, present);
    if !unfilled.is_empty() {
        return crate::ConnectionCheck::failed(
            Some(status),
            format!(
                "{platform} table {table} has NOT NULL column(s) without a default that tracecast does not write: {} (every insert would fail; make them nullable or give them a DEFAULT)",
                unfilled.join(", ")
            ),
        );
    }
    crate::ConnectionCheck::passed(
        status,
        format!(
            "{platform} accepted {passed} and table {table} has all {} columns",
            needed.len()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_adds_cache_write_tokens_after_reasoning_tokens() {
        let v1 = columns(false);
        let v2 = columns(true);
        assert_eq!(v2.len(), v1.len() + 1);
        let i = v2
            .iter()
            .position(|c| c.name == "CACHE_WRITE_TOKENS")
            .unwrap();
        assert_eq!(v2[i - 1].name, "REASONING_TOKENS");
        assert!(!v1.iter().any(|c| c.name == "CACHE_WRITE_TOKENS"));
    }

    #[test]
    fn oversized_json_becomes_a_visible_marker() {
        let big = Value::String("é".repeat(MAX_JSON_COLUMN_BYTES));
        let (s, cut) = json_column(&big);
        assert!(cut);
        let m: Value = serde_json::from_str(&s).unwrap();
        assert_eq!(m["truncated"], true);
        assert_eq!(m["original_bytes"], big.to_string().len());
        assert!(m["preview"].as_str().unwrap().len() <= TRUNCATED_PREVIEW_BYTES);
        let (s, cut) = json_column(&json!({"a": 1}));
        assert_eq!((s.as_str(), cut), ("{\"a\":1}", false));
    }

    #[test]
    fn not_null_columns_tracecast_does_not_write_are_named() {
        let cols = columns(false);
        let table = [
            TableColumn {
                name: "entity_id".into(),
                required: true,
            },
            TableColumn {
                name: "ORGANIZATION_ID".into(),
                required: false,
            },
            TableColumn {
                name: "PROVIDER_SLUG".into(),
                required: true,
            },
        ];
        assert_eq!(unfilled_required(&cols, &table), vec!["PROVIDER_SLUG"]);
        let present: Vec<TableColumn> = cols
            .iter()
            .map(|c| TableColumn::optional(c.name))
            .chain(table.iter().cloned())
            .collect();
        let check = check_table("Snowflake", "the token", "T", 200, &cols, &present);
        assert!(!check.ok);
        assert!(check.message.contains(": PROVIDER_SLUG ("), "{check:?}");
        let check = check_table(
            "Snowflake",
            "the token",
            "T",
            200,
            &cols,
            &present[..cols.len() + 2],
        );
        assert!(check.ok, "{check:?}");
    }

    #[test]
    fn times_are_utc_milliseconds() {
        assert_eq!(
            format_time(1_767_225_600_250_000_000),
            "2026-01-01 00:00:00.250"
        );
        assert_eq!(format_time(0), "1970-01-01 00:00:00.000");
    }
}
