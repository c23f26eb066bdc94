//! `clickhouse`: one row per generation in a ClickHouse table, over ClickHouse's HTTP interface.
//!
//! Protocol (source: ClickHouse's HTTP interface documentation, <https://clickhouse.com/docs/interfaces/http>,
//! and OpenRouter's ClickHouse guide): `POST {host}/?query=INSERT INTO `db`.`table` FORMAT JSONEachRow`
//! with the rows as newline-delimited JSON objects in the body, credentials in
//! `X-ClickHouse-User` / `X-ClickHouse-Key` (understood by every ClickHouse since 2018, checked
//! against Debian's 18.16), and these settings as URL parameters:
//!
//! - `date_time_input_format=best_effort`: timestamps are sent as ISO 8601 UTC with an explicit
//!   zone, `YYYY-MM-DDTHH:MM:SS.mmmZ`, which `best_effort` parsing reads as UTC whatever the
//!   column's or the server's time zone. A zone-less `YYYY-MM-DD HH:MM:SS.mmm` would be read in
//!   the column's time zone, else the server's: OpenRouter's DDL declares `DateTime64(3)`
//!   without a zone, so on a server whose `timezone` is not UTC every time would shift by the
//!   server's offset. Checked with chdb 4.4 (ClickHouse 25.x engine) under `TZ=Asia/Kolkata`
//!   and Debian's clickhouse-server 18.16 with `<timezone>Asia/Kolkata</timezone>`: the zone-less
//!   text lands 5 h 30 min early, the `Z` text lands on the right instant (tests/clickhouse.rs).
//! - `input_format_skip_unknown_fields=0`: a table that lacks a column fails the insert
//!   (current servers skip unknown fields by default, which would drop data silently).
//! - `wait_end_of_query=1`: the server buffers its answer, so an error is never hidden behind
//!   an early `200`.
//! - `insert_deduplication_token=<first 32 hex digits of SHA-256 of the body>`: a resent batch
//!   (a retry after a lost answer) carries the same token, and ClickHouse drops the duplicate
//!   block on replicated tables and on tables with `non_replicated_deduplication_window` (our
//!   DDL sets it). Servers older than 22.2 do not know the setting and answer code 115: the
//!   exporter then sends the batch again without it and stops sending it.
//!
//! The row (columns, values, privacy mode, truncation) is shared with `snowflake`:
//! see [`warehouse`]. [`ddl`] prints the table (`tracecast schema clickhouse [--v2]`).
//!
//! Answers: ClickHouse names its error in the `X-ClickHouse-Exception-Code` header (and, on
//! old servers, only in the body as `Code: N`). Authentication codes (192-195, 516) and
//! permission codes (164 readonly, 497 access denied) pause the destination; parse, type and
//! schema errors (unknown table, column, setting, ...) dead-letter the batch; overload codes
//! (too many parts or queries, timeouts, memory) and other 5xx are retried; other statuses
//! follow the standard classification (429 with `Retry-After`, ...).
//!
//! Test connection: `SELECT name, type, default_kind FROM system.columns` for the configured
//! table, with the destination's credentials: it fails when the credentials are refused, when
//! the table does not exist, or when columns are missing (it names them). A column tracecast
//! does not write never fails an insert (ClickHouse fills an omitted field with the column's
//! default, else its type's: `''`, `0`, `NULL`); a non-`Nullable` one without a default is
//! named in the check's message, since it will hold the type's empty value.

#[path = "warehouse.rs"]
pub mod warehouse;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracecast_model::trace::TraceView;

use crate::config::{bool_or, optional_str, required_str};
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, Outcome, Payload, http,
};
use warehouse::{Cell, Column, Kind};

use crate::http::Answer;

/// Answers are read up to this size (error texts, `system.columns` of one table).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Rows per insert and bytes per body. ClickHouse prefers few large inserts (thousands of
/// rows); each JSON column is capped at [`warehouse::MAX_JSON_COLUMN_BYTES`].
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 1000,
    max_bytes: 16 * 1024 * 1024,
};

const PLATFORM: &str = "ClickHouse";

/// Column types of a current ClickHouse (20.x and later; ClickHouse Cloud).
fn modern_type(c: &Column) -> &'static str {
    let low_cardinality = matches!(
        c.name,
        "MODEL" | "PROVIDER_NAME" | "SPAN_TYPE" | "STATUS" | "LEVEL" | "FINISH_REASON"
    );
    match (c.kind, low_cardinality) {
        (Kind::Text, true) => "LowCardinality(String)",
        (Kind::OptText, true) => "LowCardinality(Nullable(String))",
        (Kind::Text, false) | (Kind::Json, _) => "String",
        (Kind::OptText, false) => "Nullable(String)",
        (Kind::Time, _) => "DateTime64(3, 'UTC')",
        (Kind::OptTime, _) => "Nullable(DateTime64(3, 'UTC'))",
        (Kind::Count, _) => "UInt64",
        (Kind::Float, _) => "Float64",
        (Kind::OptFloat, _) => "Nullable(Float64)",
    }
}

/// Column types an old ClickHouse (before 20.1: no `DateTime64`, no `LowCardinality`) has.
fn legacy_type(c: &Column) -> &'static str {
    match c.kind {
        Kind::Text | Kind::Json => "String",
        Kind::OptText => "Nullable(String)",
        Kind::Time => "DateTime('UTC')",
        Kind::OptTime => "Nullable(DateTime('UTC'))",
        Kind::Count => "UInt64",
        Kind::Float => "Float64",
        Kind::OptFloat => "Nullable(Float64)",
    }
}

fn qualified(database: Option<&str>, table: &str) -> String {
    match database {
        Some(db) => format!("`{db}`.`{table}`"),
        None => format!("`{table}`"),
    }
}

fn ddl_with(
    database: Option<&str>,
    table: &str,
    v2: bool,
    ty: fn(&Column) -> &'static str,
    settings: &str,
) -> String {
    let cols = warehouse::columns(v2);
    let width = cols.iter().map(|c| c.name.len()).max().unwrap_or(0) + 2;
    let mut out = format!(
        "CREATE TABLE IF NOT EXISTS {}\n(\n",
        qualified(database, table)
    );
    for (i, c) in cols.iter().enumerate() {
        let name = format!("`{}`", c.name);
        out.push_str(&format!(
            "    {name:<width$} {} COMMENT '{}'{}\n",
            ty(c),
            c.comment.replace('\'', "''"),
            if i + 1 < cols.len() { "," } else { "" }
        ));
    }
    out.push_str(")\nENGINE = MergeTree()\nPARTITION BY toYYYYMM(TIMESTAMP)\nORDER BY (TIMESTAMP, TRACE_ID, SPAN_ID)");
    out.push_str(settings);
    out.push_str(";\n");
    out
}

/// The `CREATE TABLE` statement for the destination's table on a current ClickHouse (20.1 and
/// later, ClickHouse Cloud). `database` qualifies the table when given; `v2` adds
/// `CACHE_WRITE_TOKENS` (config `shouldIncludeCacheWriteTokens`). The table deduplicates
/// resent batches (`non_replicated_deduplication_window`).
pub fn ddl(database: Option<&str>, table: &str, v2: bool) -> String {
    ddl_with(
        database,
        table,
        v2,
        modern_type,
        "\nSETTINGS non_replicated_deduplication_window = 1000",
    )
}

/// The same table for ClickHouse releases before 20.1 (such as Debian's 18.16): `DateTime`
/// (second precision) instead of `DateTime64(3)`, no `LowCardinality`, no deduplication window.
pub fn ddl_legacy(database: Option<&str>, table: &str, v2: bool) -> String {
    ddl_with(database, table, v2, legacy_type, "")
}

/// A [`Cell::Time`] (`YYYY-MM-DD HH:MM:SS.mmm`, UTC) as ISO 8601 with an explicit UTC zone
/// (`YYYY-MM-DDTHH:MM:SS.mmmZ`): see the module doc.
fn utc_iso(time: &str) -> String {
    format!("{}Z", time.replacen(' ', "T", 1))
}

/// A generation's row as one `JSONEachRow` line (no newline).
pub fn json_row(view: &TraceView<'_>, v2: bool) -> String {
    let row = warehouse::row(view, v2);
    let mut m = Map::new();
    for (c, cell) in row.cells {
        let v = match cell {
            Cell::Text(s) => Value::String(s),
            Cell::Time(s) => Value::String(utc_iso(&s)),
            Cell::Null => Value::Null,
            Cell::Count(n) => Value::from(n),
            Cell::Float(f) => Value::from(f),
            // JSON columns are `String`: nothing is the empty string.
            Cell::Json(s) => Value::String(s.unwrap_or_default()),
        };
        m.insert(c.name.to_string(), v);
    }
    // serde_json keeps keys sorted (preserve_order is off); ClickHouse matches by name.
    Value::Object(m).to_string()
}

pub struct ClickhouseExporter {
    client: reqwest::Client,
    timeout: std::time::Duration,
    base: Url,
    database: String,
    table: String,
    username: String,
    v2: bool,
    headers: HeaderMap,
    /// Cleared when the server does not know `insert_deduplication_token`.
    dedup_token: AtomicBool,
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(ClickhouseExporter::new(config, ctx)?))
}

/// ClickHouse's exception code: the header, else `Code: N` at the start of the body.
fn exception_code(answer: &Answer) -> Option<u32> {
    if let Some(c) = answer
        .headers
        .get("x-clickhouse-exception-code")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
    {
        return Some(c);
    }
    let rest = answer.body.trim_start().strip_prefix("Code:")?.trim_start();
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

const AUTH_CODES: &[u32] = &[192, 193, 194, 195, 516];
const PERMISSION_CODES: &[u32] = &[164, 497];
const PERMANENT_CODES: &[u32] = &[
    6, 16, 26, 27, 36, 38, 41, 43, 47, 53, 60, 62, 69, 70, 72, 81, 115, 117, 131, 349,
];
const TRANSIENT_CODES: &[u32] = &[159, 202, 203, 209, 210, 241, 242, 252, 319, 425, 439, 999];

fn snippet(body: &str) -> String {
    let s: String = body.trim().chars().take(512).collect();
    s
}

/// Classifies an answer to an insert.
fn classify(a: &Answer) -> Outcome {
    let status = a.status.as_u16();
    let Some(code) = exception_code(a) else {
        return http::classify(a.status, &a.headers, &a.body);
    };
    let error = format!("HTTP {status}: {}", snippet(&a.body));
    if AUTH_CODES.contains(&code) {
        Outcome::Unauthorized {
            status: if status == 403 { 403 } else { 401 },
            error,
        }
    } else if PERMISSION_CODES.contains(&code) {
        Outcome::Unauthorized { status: 403, error }
    } else if PERMANENT_CODES.contains(&code) {
        Outcome::Rejected {
            status: Some(status),
            error,
        }
    } else if TRANSIENT_CODES.contains(&code) {
        Outcome::Retry {
            status: Some(status),
            error,
            retry_after: http::retry_after(&a.headers),
        }
    } else if a.status.is_success() {
        // An exception after a 200 (a mid-stream failure): the insert did not complete.
        Outcome::Retry {
            status: Some(status),
            error,
            retry_after: None,
        }
    } else {
        http::classify(a.status, &a.headers, &a.body)
    }
}

impl ClickhouseExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let host = required_str(config, "host")?;
        let mut base =
            Url::parse(host).map_err(|e| ExportError::Config(format!("host: not a URL ({e})")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ExportError::Config(
                "host: must be an http:// or https:// URL".into(),
            ));
        }
        base.set_query(None);
        base.set_fragment(None);
        let database = optional_str(config, "database").unwrap_or("default");
        let table = optional_str(config, "table").unwrap_or(warehouse::DEFAULT_TABLE);
        for (field, v) in [("database", database), ("table", table)] {
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
            {
                return Err(ExportError::Config(format!(
                    "{field}: {v:?} is not a plain identifier"
                )));
            }
        }
        let username = optional_str(config, "username").unwrap_or("default");
        let password = config
            .get("password")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let mut headers = crate::config::custom_headers(config)?;
        headers.insert(
            HeaderName::from_static("x-clickhouse-user"),
            HeaderValue::from_str(username)
                .map_err(|_| ExportError::Config("username: not a valid header value".into()))?,
        );
        if let Some(p) = password {
            headers.insert(
                HeaderName::from_static("x-clickhouse-key"),
                crate::http::secret_value(p, "password: not a valid header value")?,
            );
        }
        Ok(ClickhouseExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            base,
            database: database.to_string(),
            table: table.to_string(),
            username: username.to_string(),
            v2: bool_or(config, "shouldIncludeCacheWriteTokens", false),
            headers,
            dedup_token: AtomicBool::new(true),
        })
    }

    /// `db`.`table`.
    pub fn table(&self) -> String {
        qualified(Some(&self.database), &self.table)
    }

    /// The columns the table needs.
    pub fn columns(&self) -> Vec<Column> {
        warehouse::columns(self.v2)
    }

    fn insert_url(&self, token: Option<&str>) -> Url {
        let mut url = self.base.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair(
                "query",
                &format!("INSERT INTO {} FORMAT JSONEachRow", self.table()),
            );
            q.append_pair("date_time_input_format", "best_effort");
            q.append_pair("input_format_skip_unknown_fields", "0");
            q.append_pair("wait_end_of_query", "1");
            if let Some(t) = token {
                q.append_pair("insert_deduplication_token", t);
            }
        }
        url
    }

    async fn post(
        &self,
        url: Url,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<Answer, Outcome> {
        let mut headers = self.headers.clone();
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static(content_type),
        );
        let req = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .timeout(self.timeout);
        http::fetch(req, MAX_ANSWER_BYTES).await
    }

    /// Runs a read-only query (the body is the SQL) and returns the answer.
    async fn query(&self, sql: &str) -> Result<Answer, Outcome> {
        let url = self.base.clone();
        self.post(
            url,
            Bytes::from(sql.to_string()),
            "text/plain; charset=utf-8",
        )
        .await
    }
}

/// Columns of `described` (rows of `system.columns`: `name`, `type`, `default_kind`) that
/// tracecast does not write and that are neither `Nullable` nor have a default expression.
fn type_defaulted<'a>(written: &[Column], described: &'a [Value]) -> Vec<&'a str> {
    described
        .iter()
        .filter_map(|v| {
            let name = v.get("name")?.as_str()?;
            let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
            let default = v.get("default_kind").and_then(Value::as_str).unwrap_or("");
            let nullable =
                ty.starts_with("Nullable(") || ty.starts_with("LowCardinality(Nullable(");
            let unwritten = !written.iter().any(|c| c.name.eq_ignore_ascii_case(name));
            (unwritten && !nullable && default.is_empty()).then_some(name)
        })
        .collect()
}

fn transport_message(o: &Outcome) -> String {
    match o {
        Outcome::Retry { error, .. } => error.clone(),
        other => format!("{other:?}"),
    }
}

#[async_trait]
impl Exporter for ClickhouseExporter {
    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let mut body = String::new();
        for t in traces {
            body.push_str(&json_row(t, self.v2));
            body.push('\n');
        }
        Ok(Payload {
            body: Bytes::from(body),
            content_type: "application/x-ndjson",
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        let token = hex::encode(&Sha256::digest(&payload.body)[..16]);
        let with_token = self.dedup_token.load(Ordering::Relaxed);
        let url = self.insert_url(with_token.then_some(token.as_str()));
        let answer = match self
            .post(url, payload.body.clone(), payload.content_type)
            .await
        {
            Ok(a) => a,
            Err(o) => return o,
        };
        if with_token
            && exception_code(&answer) == Some(115)
            && answer.body.contains("insert_deduplication_token")
        {
            // A server older than 22.2: insert without the token from now on.
            tracing::info!(
                table = %self.table(),
                "ClickHouse does not know insert_deduplication_token; inserting without it"
            );
            self.dedup_token.store(false, Ordering::Relaxed);
            let url = self.insert_url(None);
            return match self
                .post(url, payload.body.clone(), payload.content_type)
                .await
            {
                Ok(a) => classify(&a),
                Err(o) => o,
            };
        }
        classify(&answer)
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let sql = format!(
            "SELECT name, type, default_kind FROM system.columns WHERE database = '{}' AND table = '{}' FORMAT JSONEachRow",
            self.database, self.table
        );
        let answer = match self.query(&sql).await {
            Ok(a) => a,
            Err(o) => return ConnectionCheck::unreachable(PLATFORM, &transport_message(&o)),
        };
        let status = answer.status.as_u16();
        let code = exception_code(&answer);
        if code.is_some_and(|c| AUTH_CODES.contains(&c)) || status == 401 {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "ClickHouse rejected the username/password for user {:?} ({status})",
                    self.username
                ),
            );
        }
        if code.is_some_and(|c| PERMISSION_CODES.contains(&c)) || status == 403 {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "ClickHouse user {:?} may not read system.columns ({status}): {}",
                    self.username,
                    snippet(&answer.body)
                ),
            );
        }
        if !answer.status.is_success() || code.is_some() {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "ClickHouse answered {status} to the test query: {}",
                    snippet(&answer.body)
                ),
            );
        }
        let described: Vec<Value> = answer
            .body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
        let present: Vec<String> = described
            .iter()
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(str::to_string))
            .collect();
        let table = self.table();
        if present.is_empty() {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "ClickHouse accepted the credentials, but table {table} does not exist: create it with the DDL from `tracecast schema clickhouse{}`",
                    if self.v2 { " --v2" } else { "" }
                ),
            );
        }
        let columns = self.columns();
        let mut check = warehouse::table_check(
            "ClickHouse",
            "the credentials",
            &table,
            status,
            &columns,
            &present,
        );
        let defaulted = type_defaulted(&columns, &described);
        if check.ok && !defaulted.is_empty() {
            check.message.push_str(&format!(
                "; column(s) {} are not written by tracecast and are neither Nullable nor given a DEFAULT, so they will hold their type's empty value",
                defaulted.join(", ")
            ));
        }
        check
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, code: Option<&str>, body: &str) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(c) = code {
            headers.insert(
                "x-clickhouse-exception-code",
                HeaderValue::from_str(c).unwrap(),
            );
        }
        Answer {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            headers,
            body: body.into(),
        }
    }

    #[test]
    fn exception_codes_decide_over_statuses() {
        // Old servers: every error is a 500 with the code only in the body.
        assert!(matches!(
            classify(&answer(
                500,
                None,
                "Code: 193, e.displayText() = DB::Exception: Wrong password"
            )),
            Outcome::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            classify(&answer(
                500,
                None,
                "Code: 27, e.displayText() = DB::Exception: Cannot parse input"
            )),
            Outcome::Rejected {
                status: Some(500),
                ..
            }
        ));
        assert!(matches!(
            classify(&answer(
                500,
                Some("252"),
                "Code: 252. DB::Exception: Too many parts"
            )),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&answer(
                403,
                Some("497"),
                "Code: 497. DB::Exception: Not enough privileges"
            )),
            Outcome::Unauthorized { status: 403, .. }
        ));
        assert!(matches!(
            classify(&answer(200, Some("241"), "")),
            Outcome::Retry { .. }
        ));
        assert!(matches!(
            classify(&answer(503, None, "overloaded")),
            Outcome::Retry { .. }
        ));
        assert_eq!(classify(&answer(200, None, "")), Outcome::Delivered);
    }

    #[test]
    fn times_are_sent_with_an_explicit_utc_zone() {
        assert_eq!(
            utc_iso("2026-01-01 13:37:42.250"),
            "2026-01-01T13:37:42.250Z"
        );
        let described: Vec<Value> = [
            r#"{"name":"ENTITY_ID","type":"String","default_kind":""}"#,
            r#"{"name":"PROVIDER_SLUG","type":"String","default_kind":""}"#,
            r#"{"name":"ORGANIZATION_ID","type":"Nullable(String)","default_kind":""}"#,
            r#"{"name":"REGION","type":"String","default_kind":"DEFAULT"}"#,
        ]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
        assert_eq!(
            type_defaulted(&warehouse::columns(false), &described),
            vec!["PROVIDER_SLUG"]
        );
    }

    #[test]
    fn ddl_has_every_column_and_v2_adds_cache_write_tokens() {
        let v1 = ddl(Some("analytics"), "OPENROUTER_TRACES", false);
        assert!(v1.starts_with("CREATE TABLE IF NOT EXISTS `analytics`.`OPENROUTER_TRACES`"));
        for c in warehouse::COLUMNS_V1 {
            assert!(v1.contains(&format!("`{}`", c.name)), "{}", c.name);
        }
        assert!(!v1.contains("CACHE_WRITE_TOKENS"));
        assert!(v1.contains("DateTime64(3, 'UTC')"));
        assert!(ddl(None, "T", true).contains("`CACHE_WRITE_TOKENS`"));
        assert!(!ddl_legacy(None, "T", false).contains("DateTime64"));
    }
}
