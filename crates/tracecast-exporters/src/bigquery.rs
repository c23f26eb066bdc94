//! `bigquery`: one row per generation in a Google BigQuery table, streamed with
//! `tabledata.insertAll`, authenticated with a service-account key.
//!
//! Sources: BigQuery REST API reference v2, "Method: tabledata.insertAll"
//! (<https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/insertAll>), "Method:
//! tables.get" (<https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/get>), "Method:
//! tables.testIamPermissions"
//! (<https://cloud.google.com/bigquery/docs/reference/rest/v2/tables/testIamPermissions>), the
//! streaming quotas (<https://cloud.google.com/bigquery/quotas#streaming_inserts>) and Google's
//! "Using OAuth 2.0 for Server to Server Applications"
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>, the JWT
//! bearer grant of RFC 7523); OpenRouter's BigQuery guide (`broadcast/bigquery.mdx`) for the
//! config, the column set and the connection test.
//!
//! - Auth: an RS256 JWT signed with the key's `private_key` (`kid` = `private_key_id`), claims
//!   `iss` = `client_email`, `scope` = [`SCOPE`], `aud` = the key's `token_uri`, `iat`, `exp` =
//!   `iat` + 1 h, is exchanged at `token_uri` (`grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`)
//!   for an access token (`tests/vendors/test_bigquery.py`: the same header, claims and lifetime
//!   as the assertion of Google's `google-auth` 2.63.1, `google.oauth2.service_account`). The
//!   token is cached and reused until [`REFRESH_MARGIN`] before it
//!   expires; one exchange serves every concurrent send.
//! - Insert: `POST https://bigquery.googleapis.com/bigquery/v2/projects/{projectId}/datasets/{datasetId}/tables/{tableId}/insertAll`
//!   (the base URL is replaced by the `bigquery` endpoint override when one is configured) with
//!   `Authorization: Bearer <token>` and the destination's custom headers; body
//!   `{"kind": "bigquery#tableDataInsertAllRequest", "skipInvalidRows": true,
//!   "ignoreUnknownValues": false, "rows": [{"insertId": <generation id>, "json": {...}}]}`.
//!   `insertId` is the generation id (the row's `span_id`): BigQuery drops a resent row on a
//!   best-effort basis, and two generations that share a custom `trace.trace_id` stay two rows.
//!   `skipInvalidRows`: a row BigQuery refuses does not hold back the valid rows of its batch;
//!   `ignoreUnknownValues: false`: a table that lacks a column fails loudly instead of losing it.
//! - Values as Google's own Python client (`google-cloud-bigquery` 3.47.0,
//!   `google/cloud/bigquery/_helpers.py`, `_SCALAR_VALUE_TO_JSON_ROW`, what `Client.insert_rows`
//!   sends) writes them: `STRING` as text, `TIMESTAMP` as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, `INT64`
//!   as a decimal string, `FLOAT64` as a JSON number, `JSON` columns as a string holding the
//!   JSON text, `tags` as an array of strings; NULL columns are left out of the row.
//!   `tests/vendors/test_bigquery.py` runs our rows through that module.
//!
//! Answers: `200` without `insertErrors` delivers the batch; with `insertErrors` each row gets
//! its own outcome (`invalid`, `notFound`, ... dead-letter the row; `stopped`, `timeout`,
//! `backendError`, `internalError`, `rateLimitExceeded`, `quotaExceeded` retry it; the others
//! are delivered). `401` drops the cached token and retries (a new one is fetched), unless the
//! token was just issued (then the destination pauses); `403` with
//! reason `rateLimitExceeded`/`quotaExceeded` retries, any other `403` pauses the destination
//! (no permission); a token exchange refused with `400`/`401`/`403` (bad or revoked key)
//! pauses it too; `429`/`5xx` retry; other `4xx` dead-letter the batch.
//!
//! Columns: the warehouse row of `clickhouse` and `snowflake` ([`warehouse`]), names lower-case,
//! plus `resource_attributes` (the OTLP resource attributes, JSON) and `tags` (`trace.tags`,
//! `ARRAY<STRING>`). [`ddl`] prints the table (`tracecast schema bigquery`).
//!
//! Test connection: a token exchange, `tables.get` (the project, dataset, table and key, and
//! every column the exporter writes, naming the missing ones), then `tables.testIamPermissions`
//! for `bigquery.tables.updateData`, so a read-only key fails the test rather than every send.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::Mutex;
use tracecast_model::DestinationType;
use tracecast_model::config::ServiceAccountKey;
use tracecast_model::trace::TraceView;

use crate::clickhouse::warehouse::{self, Cell, Kind};
use crate::config::{optional_str, required_str};
use crate::http::Answer;
use crate::otlp::{DefaultDialect, generation_spans};
use crate::{
    BatchLimits, ConnectionCheck, ExportContext, ExportError, Exporter, ItemOutcome, Outcome,
    Payload, http,
};

/// Rows per request (BigQuery recommends at most 500) and bytes per request (the limit is
/// 10 MB).
pub const LIMITS: BatchLimits = BatchLimits {
    max_items: 500,
    max_bytes: 9 * 1024 * 1024,
};

/// The OAuth scope asked for: `insertAll`, `tables.get` and `tables.testIamPermissions` all
/// accept it.
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// BigQuery's API host.
pub const API_BASE: &str = "https://bigquery.googleapis.com";

/// A cached access token is replaced this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// How long a signed assertion is valid (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const PLATFORM: &str = "BigQuery";
const DEFAULT_DATASET: &str = "openrouter";
const DEFAULT_TABLE: &str = "openrouter_traces";
/// The permission `insertAll` needs on the table.
pub const INSERT_PERMISSION: &str = "bigquery.tables.updateData";

/// Answers are read up to this size (token answers, table metadata, insert errors).
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// Path-segment encoding for the project, dataset and table ids.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// BigQuery's SQL type and mode of a column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BqColumn {
    /// Lower-case, as OpenRouter's BigQuery table names them.
    pub name: String,
    /// `STRING`, `TIMESTAMP`, `INT64`, `FLOAT64`, `JSON` (the element type for `tags`).
    pub sql_type: &'static str,
    /// `REQUIRED`, `NULLABLE` or `REPEATED` (as `tables.get` reports the mode).
    pub mode: &'static str,
    pub description: &'static str,
}

fn bq_type(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::Text => ("STRING", "REQUIRED"),
        Kind::OptText => ("STRING", "NULLABLE"),
        Kind::Time => ("TIMESTAMP", "REQUIRED"),
        Kind::OptTime => ("TIMESTAMP", "NULLABLE"),
        Kind::Count => ("INT64", "REQUIRED"),
        Kind::Float => ("FLOAT64", "REQUIRED"),
        Kind::OptFloat => ("FLOAT64", "NULLABLE"),
        Kind::Json => ("JSON", "NULLABLE"),
    }
}

/// The column holding the OTLP resource attributes.
pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
/// The repeated column holding `trace.tags`.
pub const TAGS: &str = "tags";

/// Every column of the table, in order.
pub fn columns() -> Vec<BqColumn> {
    let mut out: Vec<BqColumn> = warehouse::columns(false)
        .into_iter()
        .map(|c| {
            let (sql_type, mode) = bq_type(c.kind);
            BqColumn {
                name: c.name.to_ascii_lowercase(),
                sql_type,
                mode,
                description: c.comment,
            }
        })
        .collect();
    out.push(BqColumn {
        name: RESOURCE_ATTRIBUTES.into(),
        sql_type: "JSON",
        mode: "NULLABLE",
        description: "OpenTelemetry resource attributes (JSON)",
    });
    out.push(BqColumn {
        name: TAGS.into(),
        sql_type: "STRING",
        mode: "REPEATED",
        description: "trace.tags",
    });
    out
}

/// The `CREATE TABLE` statement: `project`, when given, qualifies the name (`my-gcp-project`
/// in OpenRouter's guide). Partitioned by day of `timestamp`, clustered by `model`.
pub fn ddl(project: Option<&str>, dataset: &str, table: &str) -> String {
    let cols = columns();
    let name = match project {
        Some(p) => format!("{p}.{dataset}.{table}"),
        None => format!("{dataset}.{table}"),
    };
    let width = cols.iter().map(|c| c.name.len()).max().unwrap_or(0) + 1;
    let mut out = format!("CREATE TABLE IF NOT EXISTS `{name}` (\n");
    for (i, c) in cols.iter().enumerate() {
        let ty = match c.mode {
            "REQUIRED" => format!("{} NOT NULL", c.sql_type),
            "REPEATED" => format!("ARRAY<{}>", c.sql_type),
            _ => c.sql_type.to_string(),
        };
        out.push_str(&format!(
            "    {:<width$} {ty} OPTIONS(description=\"{}\"){}\n",
            c.name,
            c.description.replace('\\', "\\\\").replace('"', "\\\""),
            if i + 1 < cols.len() { "," } else { "" }
        ));
    }
    out.push_str(")\nPARTITION BY DATE(timestamp)\nCLUSTER BY model;\n");
    out
}

/// A warehouse time (`YYYY-MM-DD HH:MM:SS.mmm`, UTC) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`, the form
/// Google's own client sends TIMESTAMP values in (`_timestamp_to_json_row`).
fn rfc3339_micros(s: &str) -> String {
    match chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f") {
        Ok(t) => t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
        Err(_) => format!("{s} UTC"),
    }
}

/// The `json` object of one generation's row.
pub fn row_json(view: &TraceView<'_>) -> Map<String, Value> {
    let mut out = Map::new();
    for (c, cell) in warehouse::row(view, false).cells {
        let name = c.name.to_ascii_lowercase();
        let v = match cell {
            Cell::Text(s) => Value::String(s),
            Cell::Time(s) => Value::String(rfc3339_micros(&s)),
            Cell::Count(n) => Value::String(n.to_string()),
            Cell::Float(f) => json!(f),
            Cell::Json(Some(s)) => Value::String(s),
            Cell::Json(None) | Cell::Null => continue,
        };
        out.insert(name, v);
    }
    let spans = generation_spans(view, &DefaultDialect);
    let resource: Map<String, Value> = spans
        .resource
        .iter()
        .map(|a| (a.key.to_string(), warehouse::attr_json(&a.value)))
        .collect();
    let (resource, _) = warehouse::json_column(&Value::Object(resource));
    out.insert(RESOURCE_ATTRIBUTES.into(), Value::String(resource));
    // `trace.tags` as Langfuse reads them: an array, or a comma-separated string.
    let tags: Vec<String> = crate::langfuse::tags(view)
        .into_iter()
        .map(|t| t.into_owned())
        .collect();
    if !tags.is_empty() {
        out.insert(TAGS.into(), json!(tags));
    }
    out
}

#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

struct CachedToken {
    value: String,
    refresh_at: Instant,
}

pub struct BigqueryExporter {
    client: reqwest::Client,
    timeout: Duration,
    table_url: String,
    table_name: String,
    headers: HeaderMap,
    client_email: String,
    token_uri: String,
    signing_key: EncodingKey,
    key_id: Option<String>,
    token: Mutex<Option<CachedToken>>,
}

pub fn build(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    Ok(Arc::new(BigqueryExporter::new(config, ctx)?))
}

/// Google's `error.message` (and reason) from an error body, else the start of the body.
fn describe_error(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body)
        && let Some(e) = v.get("error")
    {
        // API errors: {"error": {"code", "message", "status", "errors": [{"reason"}]}}.
        if let Some(msg) = e.get("message").and_then(Value::as_str) {
            return match error_reason(&v) {
                Some(r) => format!("{msg} (reason {r})"),
                None => msg.to_string(),
            };
        }
        // OAuth errors: {"error": "invalid_grant", "error_description": "..."}.
        if let Some(code) = e.as_str() {
            return match v.get("error_description").and_then(Value::as_str) {
                Some(d) => format!("{code}: {d}"),
                None => code.to_string(),
            };
        }
    }
    crate::truncate::prefix(body.trim(), 512).to_string()
}

fn error_reason(v: &Value) -> Option<&str> {
    v.pointer("/error/errors/0/reason").and_then(Value::as_str)
}

/// Per-row reasons worth retrying (BigQuery's error-message table: transient or caused by
/// another row).
const RETRY_REASONS: &[&str] = &[
    "stopped",
    "timeout",
    "backendError",
    "internalError",
    "rateLimitExceeded",
    "quotaExceeded",
];

fn seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl BigqueryExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let project = required_str(config, "projectId")?;
        let key = ServiceAccountKey::parse(required_str(config, "serviceAccountKey")?)
            .map_err(|e| ExportError::Config(e.0))?;
        let signing_key = EncodingKey::from_rsa_pem(key.private_key.as_bytes()).map_err(|_| {
            ExportError::Config(
                "serviceAccountKey.private_key: not an RSA private key in PEM form".into(),
            )
        })?;
        Url::parse(&key.token_uri)
            .map_err(|e| ExportError::Config(format!("serviceAccountKey.token_uri: {e}")))?;
        let dataset = optional_str(config, "dataset").unwrap_or(DEFAULT_DATASET);
        let table = optional_str(config, "table").unwrap_or(DEFAULT_TABLE);
        let base = ctx
            .endpoint_override(DestinationType::Bigquery)
            .unwrap_or(API_BASE);
        let seg = |s: &str| utf8_percent_encode(s, SEGMENT).to_string();
        let table_url = format!(
            "{base}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
            seg(project),
            seg(dataset),
            seg(table)
        );
        Url::parse(&table_url).map_err(|e| ExportError::Config(format!("projectId: {e}")))?;
        let mut headers = crate::config::custom_headers(config)?;
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(BigqueryExporter {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            table_url,
            table_name: format!("{project}.{dataset}.{table}"),
            headers,
            client_email: key.client_email,
            token_uri: key.token_uri,
            signing_key,
            key_id: key.private_key_id,
            token: Mutex::new(None),
        })
    }

    /// `project.dataset.table`.
    pub fn table(&self) -> &str {
        &self.table_name
    }

    /// The signed JWT bearer assertion (RFC 7523) for a token request made now.
    fn assertion(&self) -> Result<String, ExportError> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.key_id.clone();
        let iat = seconds_now();
        let claims = Claims {
            iss: &self.client_email,
            scope: SCOPE,
            aud: &self.token_uri,
            iat,
            exp: iat + ASSERTION_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.signing_key)
            .map_err(|e| ExportError::Config(format!("serviceAccountKey: cannot sign: {e}")))
    }

    /// A valid access token, and whether it was just issued: the cached one, else a new one
    /// from `token_uri`. A refusal is an [`Outcome::Unauthorized`] (bad or revoked key), a
    /// transient failure an [`Outcome::Retry`].
    async fn access_token(&self) -> Result<(String, bool), Outcome> {
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref().filter(|t| Instant::now() < t.refresh_at) {
            return Ok((t.value.clone(), false));
        }
        let assertion = self.assertion().map_err(|e| Outcome::Rejected {
            status: None,
            error: e.to_string(),
        })?;
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", GRANT_TYPE)
            .append_pair("assertion", &assertion)
            .finish();
        let req = self
            .client
            .post(&self.token_uri)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form)
            .timeout(self.timeout);
        let a = http::fetch(req, MAX_ANSWER_BYTES).await?;
        let code = a.status.as_u16();
        if !a.status.is_success() {
            let error = format!(
                "Google refused the service-account key at token_uri ({code}): {}",
                describe_error(&a.body)
            );
            return Err(match code {
                400 | 401 | 403 => Outcome::Unauthorized {
                    status: code,
                    error,
                },
                _ => http::classify(a.status, &a.headers, &error),
            });
        }
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let Some(token) = v.get("access_token").and_then(Value::as_str) else {
            return Err(Outcome::Retry {
                status: Some(code),
                error: "the token answer has no access_token".into(),
                retry_after: None,
            });
        };
        let lifetime =
            Duration::from_secs(v.get("expires_in").and_then(Value::as_u64).unwrap_or(0));
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        *cached = Some(CachedToken {
            value: token.to_string(),
            refresh_at: Instant::now() + lifetime - margin,
        });
        Ok((token.to_string(), true))
    }

    /// Sends `req` with the access token and the custom headers; the flag says whether the
    /// token was just issued.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<(Answer, bool), Outcome> {
        let (token, fresh) = self.access_token().await?;
        let auth = http::secret_value(&http::bearer_auth(&token), "access token").map_err(|e| {
            Outcome::Retry {
                status: None,
                error: e.to_string(),
                retry_after: None,
            }
        })?;
        let mut headers = self.headers.clone();
        headers.insert(AUTHORIZATION, auth);
        let answer =
            http::fetch(req.headers(headers).timeout(self.timeout), MAX_ANSWER_BYTES).await?;
        Ok((answer, fresh))
    }

    /// Drops the cached token (the API refused it).
    async fn forget_token(&self) {
        *self.token.lock().await = None;
    }

    /// The outcome of a non-2xx API answer; `fresh`: the request carried a just-issued token.
    async fn classify_error(&self, a: &Answer, fresh: bool) -> Outcome {
        let code = a.status.as_u16();
        let detail = describe_error(&a.body);
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let reason = error_reason(&v).unwrap_or("");
        match code {
            401 if fresh => Outcome::Unauthorized {
                status: 401,
                error: format!("HTTP 401: BigQuery refused a just-issued access token: {detail}"),
            },
            401 => {
                self.forget_token().await;
                Outcome::Retry {
                    status: Some(401),
                    error: format!(
                        "HTTP 401: the access token was refused; a new one will be fetched: {detail}"
                    ),
                    retry_after: None,
                }
            }
            403 if matches!(reason, "rateLimitExceeded" | "quotaExceeded") => Outcome::Retry {
                status: Some(403),
                error: format!("HTTP 403: {detail}"),
                retry_after: http::retry_after(&a.headers),
            },
            _ => http::classify(a.status, &a.headers, &detail),
        }
    }

    /// Per-row outcomes from an `insertErrors` list, for `rows` rows.
    fn row_outcomes(errors: &[Value], rows: usize) -> Outcome {
        let mut out = vec![ItemOutcome::Delivered; rows];
        for e in errors {
            let Some(i) = e.get("index").and_then(Value::as_u64).map(|i| i as usize) else {
                continue;
            };
            let Some(slot) = out.get_mut(i) else { continue };
            let list = e
                .get("errors")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let text: Vec<String> = list
                .iter()
                .map(|x| {
                    let r = x.get("reason").and_then(Value::as_str).unwrap_or("unknown");
                    let m = x.get("message").and_then(Value::as_str).unwrap_or("");
                    match x
                        .get("location")
                        .and_then(Value::as_str)
                        .filter(|l| !l.is_empty())
                    {
                        Some(l) => format!("{r} at {l}: {m}"),
                        None => format!("{r}: {m}"),
                    }
                })
                .collect();
            let error = format!("BigQuery refused row {i}: {}", text.join("; "));
            let retry = !list.is_empty()
                && list.iter().all(|x| {
                    x.get("reason")
                        .and_then(Value::as_str)
                        .is_some_and(|r| RETRY_REASONS.contains(&r))
                });
            *slot = if retry {
                ItemOutcome::Retry { error }
            } else {
                ItemOutcome::Rejected { error }
            };
        }
        if out.iter().all(|o| *o == ItemOutcome::Delivered) {
            Outcome::Delivered
        } else {
            Outcome::Partial(out)
        }
    }

    fn failed_check(stage: &str, o: Outcome) -> ConnectionCheck {
        match o {
            Outcome::Unauthorized { status, error } => ConnectionCheck::failed(Some(status), error),
            Outcome::Retry {
                status: None,
                error,
                ..
            } => ConnectionCheck::unreachable(PLATFORM, &error),
            Outcome::Retry { status, error, .. } | Outcome::Rejected { status, error } => {
                ConnectionCheck::failed(status, format!("{stage}: {error}"))
            }
            other => ConnectionCheck::failed(None, format!("{stage}: {other:?}")),
        }
    }
}

#[async_trait]
impl Exporter for BigqueryExporter {
    fn limits(&self) -> BatchLimits {
        LIMITS
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        let rows: Vec<Value> = traces
            .iter()
            .map(|t| json!({"insertId": t.id(), "json": row_json(t)}))
            .collect();
        let body = json!({
            "kind": "bigquery#tableDataInsertAllRequest",
            "skipInvalidRows": true,
            "ignoreUnknownValues": false,
            "rows": rows,
        });
        let body = serde_json::to_vec(&body).map_err(|e| ExportError::Encode(e.to_string()))?;
        Ok(Payload {
            body: Bytes::from(body),
            content_type: "application/json",
            items: traces.len(),
        })
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        let url = format!("{}/insertAll", self.table_url);
        let (a, fresh) = match self
            .call(self.client.post(url).body(payload.body.clone()))
            .await
        {
            Ok(a) => a,
            Err(o) => return o,
        };
        if !a.status.is_success() {
            return self.classify_error(&a, fresh).await;
        }
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        match v.get("insertErrors").and_then(Value::as_array) {
            Some(errors) if !errors.is_empty() => Self::row_outcomes(errors, payload.items),
            _ => Outcome::Delivered,
        }
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let table = &self.table_name;
        let a = match self.call(self.client.get(&self.table_url)).await {
            Ok((a, _)) => a,
            Err(o) => return Self::failed_check("token exchange", o),
        };
        let status = a.status.as_u16();
        match a.status {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return ConnectionCheck::failed(
                    Some(status),
                    format!(
                        "BigQuery accepted the key, but table {table} was not found: {} (create it with `tracecast schema bigquery`, in the configured project and dataset)",
                        describe_error(&a.body)
                    ),
                );
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                return ConnectionCheck::failed(
                    Some(status),
                    format!(
                        "BigQuery refused to read table {table} with this key ({status}): {} (grant the service account BigQuery Data Editor on the dataset)",
                        describe_error(&a.body)
                    ),
                );
            }
            _ => {
                return ConnectionCheck::failed(
                    Some(status),
                    format!(
                        "BigQuery answered {status} to tables.get for {table}: {}",
                        describe_error(&a.body)
                    ),
                );
            }
        }
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let present: Vec<&str> = v
            .pointer("/schema/fields")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        let needed = columns();
        let missing: Vec<&str> = needed
            .iter()
            .filter(|c| !present.iter().any(|p| p.eq_ignore_ascii_case(&c.name)))
            .map(|c| c.name.as_str())
            .collect();
        if !missing.is_empty() {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "BigQuery table {table} is missing column(s) {} (compare it with `tracecast schema bigquery`)",
                    missing.join(", ")
                ),
            );
        }
        let url = format!("{}:testIamPermissions", self.table_url);
        let body = json!({"permissions": [INSERT_PERMISSION]}).to_string();
        let a = match self.call(self.client.post(url).body(body)).await {
            Ok((a, _)) => a,
            Err(o) => return Self::failed_check("testIamPermissions", o),
        };
        let status = a.status.as_u16();
        if !a.status.is_success() {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "BigQuery answered {status} to testIamPermissions on {table}: {}",
                    describe_error(&a.body)
                ),
            );
        }
        let v: Value = serde_json::from_str(&a.body).unwrap_or(Value::Null);
        let granted = v
            .get("permissions")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(INSERT_PERMISSION)));
        if !granted {
            return ConnectionCheck::failed(
                Some(status),
                format!(
                    "the service account can read table {table} but lacks {INSERT_PERMISSION} (grant it BigQuery Data Editor on the dataset)"
                ),
            );
        }
        ConnectionCheck::passed(
            status,
            format!(
                "BigQuery accepted the service-account key; table {table} has all {} columns and the key may insert rows",
                needed.len()
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_the_warehouse_row_in_lower_case_plus_resource_attributes_and_tags() {
        let cols = columns();
        assert_eq!(cols.len(), warehouse::columns(false).len() + 2);
        assert_eq!(cols[0].name, "trace_id");
        assert_eq!(cols[0].mode, "REQUIRED");
        let tags = cols.iter().find(|c| c.name == "tags").unwrap();
        assert_eq!((tags.sql_type, tags.mode), ("STRING", "REPEATED"));
        let d = ddl(Some("my-gcp-project"), "openrouter", "openrouter_traces");
        assert!(d.starts_with(
            "CREATE TABLE IF NOT EXISTS `my-gcp-project.openrouter.openrouter_traces` ("
        ));
        assert!(d.contains("tags ") && d.contains("ARRAY<STRING>"), "{d}");
        assert!(
            d.contains("timestamp ") && d.contains("TIMESTAMP NOT NULL"),
            "{d}"
        );
        assert!(d.contains("attributes ") && d.contains(" JSON "), "{d}");
    }

    #[test]
    fn insert_errors_become_row_outcomes() {
        let errors = json!([
            {"index": 1, "errors": [{"reason": "invalid", "location": "total_cost", "message": "Cannot convert value to floating point"}]},
            {"index": 2, "errors": [{"reason": "backendError", "message": "try again"}]}
        ]);
        let o = BigqueryExporter::row_outcomes(errors.as_array().unwrap(), 3);
        let Outcome::Partial(items) = o else {
            panic!("{o:?}")
        };
        assert_eq!(items[0], ItemOutcome::Delivered);
        assert!(
            matches!(&items[1], ItemOutcome::Rejected { error } if error.contains("invalid at total_cost"))
        );
        assert!(matches!(&items[2], ItemOutcome::Retry { .. }));
    }

    #[test]
    fn google_errors_are_described() {
        assert_eq!(
            describe_error(
                r#"{"error": {"code": 404, "message": "Not found: Table p:d.t", "errors": [{"reason": "notFound"}]}}"#
            ),
            "Not found: Table p:d.t (reason notFound)"
        );
        assert_eq!(
            describe_error(
                r#"{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}"#
            ),
            "invalid_grant: Invalid JWT Signature."
        );
    }
}
