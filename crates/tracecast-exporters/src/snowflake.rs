//! `snowflake`: one row per generation in a Snowflake table, through the Snowflake SQL API v2.
//!
//! Protocol (source: Snowflake's SQL API reference, <https://docs.snowflake.com/en/developer-guide/sql-api/reference>,
//! "Submitting requests" and "Handling responses"; OpenRouter's Snowflake guide for the config
//! and the programmatic access token):
//!
//! - `POST https://<account>.snowflakecomputing.com/api/v2/statements?requestId=<uuid>&retry=true`
//!   (the account identifier lower-cased, `_` as `-`, as Snowflake's host names have it; the
//!   base URL is replaced by the `snowflake` endpoint override when one is configured).
//! - Headers: `Authorization: Bearer <token>`,
//!   `X-Snowflake-Authorization-Token-Type: PROGRAMMATIC_ACCESS_TOKEN`,
//!   `Content-Type: application/json`, `Accept: application/json`, the client's `User-Agent`,
//!   and the destination's custom headers.
//! - Body: `{"statement", "timeout", "database", "schema", "warehouse", "bindings"}`, the names
//!   upper-cased (Snowflake stores unquoted identifiers upper-case and the API compares these
//!   fields case-sensitively). One statement per batch:
//!
//!   ```sql
//!   INSERT INTO DB.SCHEMA.TABLE (TRACE_ID, ..., MODEL_PARAMETERS)
//!   SELECT COLUMN1, ..., TO_TIMESTAMP_NTZ(COLUMN4), ..., PARSE_JSON(COLUMN24), ...
//!   FROM VALUES (?, ?, ...), (?, ?, ...)
//!   ```
//!
//!   with one bind variable per cell (`"1"`, `"2"`, ... in order): `TEXT` for text, timestamps
//!   (`YYYY-MM-DD HH:MM:SS.mmm`, UTC) and JSON, `FIXED` for counts, `REAL` for floats; SQL NULL
//!   is a `null` value. `PARSE_JSON` turns the JSON text into `VARIANT` (functions are not
//!   allowed in `VALUES`, hence `INSERT ... SELECT`).
//! - `requestId` is a name-based UUID of the body, and `retry=true` is always set: when an
//!   answer was lost and the batch is sent again, Snowflake recognises the request and does not
//!   run the INSERT twice.
//!
//! Answers: `200` done; `202` still running: the `statementHandle` is polled with
//! `GET /api/v2/statements/{handle}` (every 250 ms doubling to 2 s, at most [`POLL_BUDGET`];
//! then the batch is retried, which the request id makes safe); `422` the statement failed
//! (Snowflake's `code` and `message` are kept; the batch is dead-lettered); `408` the statement
//! timed out and was cancelled (retried); `401`/`403` pause the destination; `429` (with
//! `Retry-After`) and `5xx` are retried.
//!
//! The row (columns, values, privacy mode, truncation) is shared with `clickhouse`:
//! see [`warehouse`]. [`ddl`] prints the table (`tracecast schema snowflake [--v2]`).
//!
//! Test connection: `DESCRIBE TABLE DB.SCHEMA.TABLE` with the warehouse: it proves the
//! account, the token and the names, and the exporter checks that every column it writes
//! is there (naming the missing ones) and that every column it does not write may be left
//! out: a `NOT NULL` column without a default that tracecast does not fill (as `ENTITY_ID`
//! was, in OpenRouter's DDL) would fail every insert, so it is named and the test fails. The
//! `DESCRIBE TABLE` output (`name`, `type`, `kind`, `null?`, `default`, ...) is from
//! Snowflake's reference, <https://docs.snowflake.com/en/sql-reference/sql/desc-table>.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde_json::{Map, Value, json};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;

use crate::clickhouse::warehouse::{self, Cell, Column, Kind};
use crate::config::{bool_or, optional_str, required_str};
use crate::http::Answer;
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, Outcome, Payload, http,
};

/// Rows per statement (each row is one bind variable per column) and bytes per request.
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 100,
    max_bytes: 8 * 1024 * 1024,
};

/// How long a send waits for a statement that answered 202 before it gives up and retries.
pub const POLL_BUDGET: Duration = Duration::from_secs(60);

/// The statement timeout sent with every request (seconds).
pub const STATEMENT_TIMEOUT_SECS: u64 = 60;

const PLATFORM: &str = "Snowflake";
const TOKEN_TYPE: &str = "PROGRAMMATIC_ACCESS_TOKEN";

/// The column types of the Snowflake table.
fn sf_type(c: &Column) -> &'static str {
    match c.kind {
        Kind::Text => "VARCHAR NOT NULL",
        Kind::OptText => "VARCHAR",
        Kind::Time => "TIMESTAMP_NTZ NOT NULL",
        Kind::OptTime => "TIMESTAMP_NTZ",
        Kind::Count => "NUMBER(38,0) NOT NULL DEFAULT 0",
        Kind::Float => "FLOAT NOT NULL DEFAULT 0",
        Kind::OptFloat => "FLOAT",
        Kind::Json => "VARIANT",
    }
}

fn qualified(database: Option<&str>, schema: Option<&str>, table: &str) -> String {
    let mut out = String::new();
    for part in [database, schema].into_iter().flatten() {
        out.push_str(&part.to_ascii_uppercase());
        out.push('.');
    }
    out.push_str(&table.to_ascii_uppercase());
    out
}

/// The `CREATE TABLE` statement for the destination's table. `database` and `schema` qualify
/// the name when given (names are upper-cased, as Snowflake stores unquoted identifiers);
/// `v2` adds `CACHE_WRITE_TOKENS` (config `shouldIncludeCacheWriteTokens`).
pub fn ddl(database: Option<&str>, schema: Option<&str>, table: &str, v2: bool) -> String {
    let cols = warehouse::columns(v2);
    let width = cols.iter().map(|c| c.name.len()).max().unwrap_or(0) + 1;
    let mut out = format!(
        "CREATE TABLE IF NOT EXISTS {} (\n",
        qualified(database, schema, table)
    );
    for (i, c) in cols.iter().enumerate() {
        out.push_str(&format!(
            "    {:<width$} {} COMMENT '{}'{}\n",
            c.name,
            sf_type(c),
            c.comment.replace('\'', "''"),
            if i + 1 < cols.len() { "," } else { "" }
        ));
    }
    out.push_str(");\n");
    out
}

/// The projection of one column over `FROM VALUES`, whose columns Snowflake names `COLUMN1`,
/// `COLUMN2`, ... (the same as `$1`, `$2`, but not mistaken for bind variables by SQL tools).
fn projection(c: &Column, n: usize) -> String {
    match c.kind {
        Kind::Time | Kind::OptTime => format!("TO_TIMESTAMP_NTZ(COLUMN{n})"),
        Kind::Json => format!("PARSE_JSON(COLUMN{n})"),
        _ => format!("COLUMN{n}"),
    }
}

/// The INSERT statement for `rows` rows.
pub fn insert_statement(table: &str, cols: &[Column], rows: usize) -> String {
    let names: Vec<&str> = cols.iter().map(|c| c.name).collect();
    let select: Vec<String> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| projection(c, i + 1))
        .collect();
    let one = format!("({})", vec!["?"; cols.len()].join(", "));
    let values = vec![one; rows].join(", ");
    format!(
        "INSERT INTO {table} ({}) SELECT {} FROM VALUES {values}",
        names.join(", "),
        select.join(", ")
    )
}

/// The bind variable of one cell.
fn binding(cell: &Cell) -> Value {
    match cell {
        Cell::Text(s) | Cell::Time(s) => json!({"type": "TEXT", "value": s}),
        Cell::Json(Some(s)) => json!({"type": "TEXT", "value": s}),
        Cell::Json(None) | Cell::Null => json!({"type": "TEXT", "value": null}),
        Cell::Count(n) => json!({"type": "FIXED", "value": n.to_string()}),
        Cell::Float(f) => json!({"type": "REAL", "value": f.to_string()}),
    }
}

pub struct SnowflakeExporter {
    client: reqwest::Client,
    timeout: Duration,
    base: String,
    database: String,
    schema: String,
    warehouse: String,
    table: String,
    v2: bool,
    headers: HeaderMap,
    poll_budget: Duration,
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(SnowflakeExporter::new(config, ctx)?))
}

fn identifier<'a>(
    config: &'a Map<String, Value>,
    key: &str,
    default: &'a str,
) -> Result<String, ExportError> {
    let v = optional_str(config, key).unwrap_or(default);
    let ok = v
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if !ok {
        return Err(ExportError::Config(format!(
            "{key}: {v:?} is not a plain identifier"
        )));
    }
    Ok(v.to_ascii_uppercase())
}

/// `https://<account>.snowflakecomputing.com` for an account identifier.
pub fn account_url(account: &str) -> String {
    format!(
        "https://{}.snowflakecomputing.com",
        account.to_ascii_lowercase().replace('_', "-")
    )
}

/// Snowflake's `code` and `message` from an error body, else the start of the body.
fn describe_error(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let code = v.get("code").and_then(Value::as_str);
        let msg = v.get("message").and_then(Value::as_str);
        match (code, msg) {
            (Some(c), Some(m)) => return format!("{m} (code {c})"),
            (None, Some(m)) => return m.to_string(),
            _ => {}
        }
    }
    body.trim().chars().take(512).collect()
}

/// The columns of a `DESCRIBE TABLE` result set (columns `name`, `kind`, `null?`, `default`,
/// ... as Snowflake's reference for DESCRIBE TABLE lists them; found by name in `rowType`). A
/// column is required when it is a stored column (`kind` `COLUMN`) that is `NOT NULL`
/// (`null?` is `N`) and has no default.
fn described_columns(v: &Value) -> Vec<warehouse::TableColumn> {
    let names: Vec<&str> = v
        .pointer("/resultSetMetaData/rowType")
        .and_then(Value::as_array)
        .map(|cols| {
            cols.iter()
                .map(|c| c.get("name").and_then(Value::as_str).unwrap_or(""))
                .collect()
        })
        .unwrap_or_default();
    let index = |n: &str| names.iter().position(|c| c.eq_ignore_ascii_case(n));
    let name_index = index("name").unwrap_or(0);
    let (kind, null, default) = (index("kind"), index("null?"), index("default"));
    let Some(rows) = v.get("data").and_then(Value::as_array) else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(|r| {
            let cell = |i: Option<usize>| i.and_then(|i| r.get(i)).and_then(Value::as_str);
            let name = cell(Some(name_index))?;
            let stored = cell(kind).is_none_or(|k| k.eq_ignore_ascii_case("COLUMN"));
            let not_null = cell(null).is_some_and(|n| n.eq_ignore_ascii_case("N"));
            let no_default = cell(default).is_none_or(|d| d.trim().is_empty());
            Some(warehouse::TableColumn {
                name: name.to_string(),
                required: stored && not_null && no_default,
            })
        })
        .collect()
}

/// Answers are read up to this size (statement status, error texts, `DESCRIBE TABLE`).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

impl SnowflakeExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let account = required_str(config, "account")?;
        if !account
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        {
            return Err(ExportError::Config(format!(
                "account: {account:?} is not a Snowflake account identifier"
            )));
        }
        let token = required_str(config, "token")?;
        let base = match ctx.endpoint_override(DestinationType::Snowflake) {
            Some(o) => o.to_string(),
            None => account_url(account),
        };
        Url::parse(&base).map_err(|e| ExportError::Config(format!("account: {e}")))?;
        let mut headers = crate::config::custom_headers(config)?;
        let auth = crate::http::secret_value(
            &crate::http::bearer_auth(token),
            "token: not a valid header value",
        )?;
        headers.insert(AUTHORIZATION, auth);
        headers.insert(
            HeaderName::from_static("x-snowflake-authorization-token-type"),
            HeaderValue::from_static(TOKEN_TYPE),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(SnowflakeExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            base,
            database: identifier(config, "database", "SNOWFLAKE_LEARNING_DB")?,
            schema: identifier(config, "schema", "PUBLIC")?,
            warehouse: identifier(config, "warehouse", "COMPUTE_WH")?,
            table: identifier(config, "table", warehouse::DEFAULT_TABLE)?,
            v2: bool_or(config, "shouldIncludeCacheWriteTokens", false),
            headers,
            poll_budget: POLL_BUDGET,
        })
    }

    /// Waits at most `budget` for a statement that answered 202 (tests shorten it).
    pub fn with_poll_budget(mut self, budget: Duration) -> Self {
        self.poll_budget = budget;
        self
    }

    /// `DB.SCHEMA.TABLE`.
    pub fn table(&self) -> String {
        qualified(Some(&self.database), Some(&self.schema), &self.table)
    }

    /// The columns the table needs.
    pub fn columns(&self) -> Vec<Column> {
        warehouse::columns(self.v2)
    }

    /// The request body for `statement` with `bindings`.
    fn body(&self, statement: String, bindings: Option<Map<String, Value>>) -> Value {
        let mut b = json!({
            "statement": statement,
            "timeout": STATEMENT_TIMEOUT_SECS,
            "database": self.database,
            "schema": self.schema,
            "warehouse": self.warehouse,
        });
        if let Some(bindings) = bindings {
            b["bindings"] = Value::Object(bindings);
        }
        b
    }

    fn statements_url(&self, body: &[u8]) -> String {
        let id = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, body);
        format!("{}/api/v2/statements?requestId={id}&retry=true", self.base)
    }

    async fn request(&self, req: reqwest::RequestBuilder) -> Result<Answer, Outcome> {
        http::fetch(
            req.headers(self.headers.clone()).timeout(self.timeout),
            MAX_ANSWER_BYTES,
        )
        .await
    }

    async fn submit(&self, body: Bytes) -> Result<Answer, Outcome> {
        let url = self.statements_url(&body);
        self.request(self.client.post(url).body(body)).await
    }

    /// Follows a 202 until the statement finishes or the poll budget is spent.
    async fn finish(&self, first: Answer) -> Result<Answer, Outcome> {
        let mut answer = first;
        let started = std::time::Instant::now();
        let mut delay = Duration::from_millis(250);
        while answer.status == StatusCode::ACCEPTED {
            let handle = serde_json::from_str::<Value>(&answer.body)
                .ok()
                .and_then(|v| v.get("statementHandle")?.as_str().map(str::to_string))
                .filter(|h| {
                    !h.is_empty()
                        && h.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                });
            let Some(handle) = handle else {
                return Err(Outcome::Retry {
                    status: Some(202),
                    error: "Snowflake answered 202 without a usable statementHandle".into(),
                    retry_after: None,
                });
            };
            if started.elapsed() + delay > self.poll_budget {
                return Err(Outcome::Retry {
                    status: Some(202),
                    error: format!(
                        "Snowflake statement {handle} still running after {} s; the batch will be resent with the same requestId",
                        self.poll_budget.as_secs()
                    ),
                    retry_after: None,
                });
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
            let url = format!("{}/api/v2/statements/{handle}", self.base);
            answer = self.request(self.client.get(url)).await?;
        }
        Ok(answer)
    }

    fn classify(a: &Answer) -> Outcome {
        let code = a.status.as_u16();
        match code {
            200..=299 => Outcome::Delivered,
            408 => Outcome::Retry {
                status: Some(408),
                error: format!(
                    "HTTP 408: statement timed out and was cancelled: {}",
                    describe_error(&a.body)
                ),
                retry_after: http::retry_after(&a.headers),
            },
            422 => Outcome::Rejected {
                status: Some(422),
                error: format!("HTTP 422: {}", describe_error(&a.body)),
            },
            _ => http::classify(a.status, &a.headers, &describe_error(&a.body)),
        }
    }
}

#[async_trait]
impl Exporter for SnowflakeExporter {
    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let cols = self.columns();
        let mut bindings = Map::new();
        let mut n = 0usize;
        for t in traces {
            for (_, cell) in warehouse::row(t, self.v2).cells {
                n += 1;
                bindings.insert(n.to_string(), binding(&cell));
            }
        }
        let statement = insert_statement(&self.table(), &cols, traces.len());
        let body = serde_json::to_vec(&self.body(statement, Some(bindings)))
            .map_err(|e| ExportError::Encode(e.to_string()))?;
        Ok(Payload {
            body: Bytes::from(body),
            content_type: "application/json",
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        let answer = match self.submit(payload.body.clone()).await {
            Ok(a) => a,
            Err(o) => return o,
        };
        match self.finish(answer).await {
            Ok(a) => Self::classify(&a),
            Err(o) => o,
        }
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let table = self.table();
        let body = self.body(format!("DESCRIBE TABLE {table}"), None);
        let body = Bytes::from(body.to_string());
        let answer = match self.submit(body).await {
            Ok(a) => a,
            Err(Outcome::Retry { error, .. }) => {
                return ConnectionCheck::unreachable(PLATFORM, &error);
            }
            Err(o) => return ConnectionCheck::failed(None, format!("{o:?}")),
        };
        let answer = match self.finish(answer).await {
            Ok(a) => a,
            Err(Outcome::Retry { error, status, .. }) => {
                return ConnectionCheck::failed(status, error);
            }
            Err(o) => return ConnectionCheck::failed(None, format!("{o:?}")),
        };
        let status = answer.status.as_u16();
        match status {
            200 => {}
            401 | 403 => {
                return ConnectionCheck::failed(
                    Some(status),
                    format!(
                        "Snowflake rejected the programmatic access token ({status}): {}",
                        describe_error(&answer.body)
                    ),
                );
            }
            422 => {
                return ConnectionCheck::failed(
                    Some(status),
                    format!(
                        "Snowflake accepted the token, but DESCRIBE TABLE {table} failed: {} (create it with `tracecast schema snowflake{}`, and check the database, schema, warehouse and the role's grants)",
                        describe_error(&answer.body),
                        if self.v2 { " --v2" } else { "" }
                    ),
                );
            }
            _ => {
                return ConnectionCheck::failed(
                    Some(status),
                    format!(
                        "Snowflake answered {status} to DESCRIBE TABLE {table}: {}",
                        describe_error(&answer.body)
                    ),
                );
            }
        }
        let v: Value = serde_json::from_str(&answer.body).unwrap_or(Value::Null);
        warehouse::check_table(
            "Snowflake",
            "the token",
            &table,
            status,
            &self.columns(),
            &described_columns(&v),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_urls() {
        assert_eq!(
            account_url("xy12345.us-east-1"),
            "https://xy12345.us-east-1.snowflakecomputing.com"
        );
        assert_eq!(
            account_url("MyOrg-My_Account"),
            "https://myorg-my-account.snowflakecomputing.com"
        );
    }

    #[test]
    fn describe_table_marks_not_null_columns_without_default_required() {
        let v = json!({
            "resultSetMetaData": {"rowType": [
                {"name": "name"}, {"name": "type"}, {"name": "kind"}, {"name": "null?"},
                {"name": "default"}, {"name": "primary key"}
            ]},
            "data": [
                ["ENTITY_ID", "VARCHAR(256)", "COLUMN", "N", null, "N"],
                ["ORGANIZATION_ID", "VARCHAR(256)", "COLUMN", "Y", null, "N"],
                ["REGION", "VARCHAR(16)", "COLUMN", "N", "'eu'", "N"],
                ["DAY", "DATE", "VIRTUAL", "N", null, "N"]
            ]
        });
        let got: Vec<(String, bool)> = described_columns(&v)
            .into_iter()
            .map(|c| (c.name, c.required))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ENTITY_ID".to_string(), true),
                ("ORGANIZATION_ID".to_string(), false),
                ("REGION".to_string(), false),
                ("DAY".to_string(), false)
            ]
        );
        assert!(described_columns(&json!({"data": "x"})).is_empty());
    }

    #[test]
    fn statement_has_one_placeholder_per_cell() {
        let cols = warehouse::columns(true);
        let s = insert_statement("DB.S.T", &cols, 3);
        assert_eq!(s.matches('?').count(), 3 * cols.len());
        assert!(s.contains("PARSE_JSON(COLUMN25)"));
        assert!(s.contains("TO_TIMESTAMP_NTZ(COLUMN4)"));
        let d = ddl(Some("db"), Some("public"), "OPENROUTER_TRACES", true);
        assert!(d.starts_with("CREATE TABLE IF NOT EXISTS DB.PUBLIC.OPENROUTER_TRACES ("));
        assert!(d.contains("CACHE_WRITE_TOKENS"));
        assert!(d.contains("ATTRIBUTES"));
        assert!(!ddl(None, None, "T", false).contains("CACHE_WRITE_TOKENS"));
    }
}
