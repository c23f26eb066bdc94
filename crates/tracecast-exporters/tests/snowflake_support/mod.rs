//! A loopback Snowflake SQL API v2 receiver, built from Snowflake's published reference
//! (<https://docs.snowflake.com/en/developer-guide/sql-api/reference>, "Submitting requests",
//! "Using bind variables", "Handling responses", "Resubmitting a request"). Used by
//! tests/snowflake.rs and by the server's end-to-end test (included there with `#[path]`).
//!
//! It checks every request against the reference and records what breaks it as a violation
//! (tests assert there are none):
//! - headers: `Authorization: Bearer <token>`, `X-Snowflake-Authorization-Token-Type` one of
//!   `KEYPAIR_JWT`, `OAUTH`, `PROGRAMMATIC_ACCESS_TOKEN`, `Accept: application/json`,
//!   `Content-Type: application/json` on POST, a `User-Agent`;
//! - query parameters of POST /api/v2/statements: only `requestId` (a UUID), `async`,
//!   `nullable`, `retry` (booleans);
//! - body fields: only `statement`, `timeout`, `database`, `schema`, `warehouse`, `role`,
//!   `bindings`, `parameters`; bindings keyed `"1"`..`"N"` with one key per `?`, each
//!   `{"type": <a Snowflake bind type>, "value": <string or null>}`; FIXED values integers, REAL
//!   values floats.
//!
//! It runs the two statements tracecast sends: `DESCRIBE TABLE <name>` against a configured
//! table, and `INSERT INTO <name> (cols) SELECT ... FROM VALUES (?, ...), ...`, whose rows it
//! keeps (JSON parsed for `PARSE_JSON`, timestamps checked for `TO_TIMESTAMP_NTZ`). A table
//! column may be `NOT NULL` without a default (as `ENTITY_ID` is in OpenRouter's DDL, the
//! fixture `openrouter_ddl.sql`): `DESCRIBE TABLE` says `null?` `N` for it, and an insert that
//! leaves it out or binds NULL to it fails as Snowflake's does (422, code 100072, "NULL result
//! in a non-nullable column"). Answers are
//! the documented shapes: 200 ResultSet, 202 QueryStatus (then `GET /api/v2/statements/{h}`),
//! 401 / 422 with `code` and `message`, and scripted statuses (429 with Retry-After, 503).
//! A resubmitted `requestId` with `retry=true` whose statement succeeded returns that result
//! without running the statement again.

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

pub const BIND_TYPES: &[&str] = &[
    "FIXED",
    "REAL",
    "TEXT",
    "BINARY",
    "BOOLEAN",
    "DATE",
    "TIME",
    "TIMESTAMP_LTZ",
    "TIMESTAMP_NTZ",
    "TIMESTAMP_TZ",
];
const BODY_FIELDS: &[&str] = &[
    "statement",
    "timeout",
    "database",
    "schema",
    "warehouse",
    "role",
    "bindings",
    "parameters",
];
const QUERY_PARAMS: &[&str] = &["requestId", "async", "nullable", "retry"];

/// A scripted answer to the next POST.
#[derive(Debug, Clone)]
pub enum Script {
    /// Run the statement but answer 202 and make the next `n - 1` polls answer 202 too.
    Async(u32),
    /// Answer this status (with `Retry-After` when given) without running anything.
    Status(u16, Option<u64>),
}

/// One request as seen.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
    /// When the request arrived.
    pub at: std::time::Instant,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    /// Time between `earlier` and this request.
    pub fn at_gap(&self, earlier: &Seen) -> std::time::Duration {
        self.at.saturating_duration_since(earlier.at)
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Pending {
    polls_left: u32,
    result: (u16, Value),
}

struct Inner {
    token: String,
    table: String,
    columns: Vec<String>,
    /// Columns that are NOT NULL without a default.
    required: Vec<String>,
    rows: Vec<Map<String, Value>>,
    seen: Vec<Seen>,
    script: VecDeque<Script>,
    done: HashMap<String, (u16, Value)>,
    pending: HashMap<String, Pending>,
    violations: Vec<String>,
    next_handle: u64,
}

#[derive(Clone)]
pub struct SnowflakeReceiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

/// OpenRouter's Snowflake table (the fixture `openrouter_ddl.sql`, see its header) as
/// (column, NOT NULL without a default), in table order.
pub fn openrouter_table() -> Vec<(String, bool)> {
    include_str!("openrouter_ddl.sql")
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('"') && !l.starts_with("\"OPENROUTER_TRACES"))
        .filter_map(|l| {
            let name = l.strip_prefix('"')?.split('"').next()?;
            let required = l.contains(" NOT NULL") && !l.contains(" DEFAULT ");
            Some((name.to_string(), required))
        })
        .collect()
}

fn uuid_like(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

fn error_body(code: &str, sql_state: &str, message: &str, handle: &str) -> Value {
    json!({"code": code, "message": message, "sqlState": sql_state, "statementHandle": handle})
}

impl SnowflakeReceiver {
    /// A receiver accepting `token`, with table `table` (fully qualified, upper case) having
    /// `columns`.
    pub async fn start(token: &str, table: &str, columns: &[&str]) -> SnowflakeReceiver {
        let described: Vec<(String, bool)> =
            columns.iter().map(|c| (c.to_string(), false)).collect();
        Self::start_described(token, table, &described).await
    }

    /// A receiver whose table has `columns` as (name, NOT NULL without a default).
    pub async fn start_described(
        token: &str,
        table: &str,
        columns: &[(String, bool)],
    ) -> SnowflakeReceiver {
        let inner = Arc::new(Mutex::new(Inner {
            token: token.to_string(),
            table: table.to_string(),
            columns: columns.iter().map(|(c, _)| c.clone()).collect(),
            required: columns
                .iter()
                .filter(|(_, r)| *r)
                .map(|(c, _)| c.clone())
                .collect(),
            rows: Vec::new(),
            seen: Vec::new(),
            script: VecDeque::new(),
            done: HashMap::new(),
            pending: HashMap::new(),
            violations: Vec::new(),
            next_handle: 1,
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = SnowflakeReceiver { url, inner };
        let app = Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    pub fn set_token(&self, token: &str) {
        self.inner.lock().unwrap().token = token.to_string();
    }

    pub fn script(&self, s: Script) {
        self.inner.lock().unwrap().script.push_back(s);
    }

    pub fn rows(&self) -> Vec<Map<String, Value>> {
        self.inner.lock().unwrap().rows.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Waits (deadline `secs`) until `cond` holds.
    pub async fn wait(&self, secs: u64, what: &str, cond: impl Fn(&SnowflakeReceiver) -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !cond(self) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; seen {} requests, violations {:?}",
                self.seen().len(),
                self.violations()
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

fn check_headers(i: &mut Inner, method: &Method, headers: &HeaderMap) -> Option<(u16, Value)> {
    let h = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match h("x-snowflake-authorization-token-type").as_deref() {
        Some("KEYPAIR_JWT" | "OAUTH" | "PROGRAMMATIC_ACCESS_TOKEN") => {}
        other => i
            .violations
            .push(format!("X-Snowflake-Authorization-Token-Type: {other:?}")),
    }
    if h("accept").as_deref() != Some("application/json") {
        i.violations.push(format!("Accept: {:?}", h("accept")));
    }
    if method == Method::POST && h("content-type").as_deref() != Some("application/json") {
        i.violations
            .push(format!("Content-Type: {:?}", h("content-type")));
    }
    if h("user-agent").is_none() {
        i.violations.push("no User-Agent".into());
    }
    let expected = format!("Bearer {}", i.token);
    if h("authorization").as_deref() != Some(expected.as_str()) {
        return Some((
            401,
            json!({"code": "390303", "message": "Invalid OAuth access token. [a1b2c3]"}),
        ));
    }
    None
}

/// Checks the bindings and returns them as (type, value) in order.
fn check_bindings(
    i: &mut Inner,
    statement: &str,
    bindings: Option<&Value>,
) -> Vec<(String, Value)> {
    let placeholders = statement.matches('?').count();
    let Some(b) = bindings else {
        if placeholders > 0 {
            i.violations
                .push(format!("{placeholders} placeholders, no bindings"));
        }
        return Vec::new();
    };
    let Some(b) = b.as_object() else {
        i.violations.push("bindings is not an object".into());
        return Vec::new();
    };
    if b.len() != placeholders {
        i.violations.push(format!(
            "{} bindings for {placeholders} placeholders",
            b.len()
        ));
    }
    let mut out = Vec::with_capacity(b.len());
    for n in 1..=b.len() {
        let Some(v) = b.get(&n.to_string()) else {
            i.violations.push(format!("binding {n} is missing"));
            out.push(("TEXT".into(), Value::Null));
            continue;
        };
        let ty = v.get("type").and_then(Value::as_str).unwrap_or("");
        if !BIND_TYPES.contains(&ty) {
            i.violations.push(format!("binding {n}: type {ty:?}"));
        }
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        match (&value, ty) {
            (Value::Null, _) => {}
            (Value::String(s), "FIXED") if s.parse::<i64>().is_err() => {
                i.violations.push(format!("binding {n}: FIXED {s:?}"))
            }
            (Value::String(s), "REAL") if s.parse::<f64>().is_err() => {
                i.violations.push(format!("binding {n}: REAL {s:?}"))
            }
            (Value::String(_), _) => {}
            (other, _) => i
                .violations
                .push(format!("binding {n}: value {other} is not a string")),
        }
        if let Some(k) = v
            .as_object()
            .and_then(|o| o.keys().find(|k| *k != "type" && *k != "value"))
        {
            i.violations.push(format!("binding {n}: unknown field {k}"));
        }
        out.push((ty.to_string(), value));
    }
    out
}

fn result_set(handle: &str, request_id: &str, names: &[&str], data: Vec<Vec<Value>>) -> Value {
    let row_type: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "database": "", "schema": "", "table": "", "type": "text", "nullable": true, "length": 16777216, "precision": null, "scale": null, "byteLength": 16777216, "collation": null}))
        .collect();
    json!({
        "resultSetMetaData": {"numRows": data.len(), "format": "jsonv2", "partitionInfo": [{"rowCount": data.len(), "uncompressedSize": 100}], "rowType": row_type},
        "data": data,
        "code": "090001",
        "statementStatusUrl": format!("/api/v2/statements/{handle}?requestId={request_id}"),
        "requestId": request_id,
        "sqlState": "00000",
        "statementHandle": handle,
        "message": "Statement executed successfully.",
        "createdOn": 1767225600000u64
    })
}

/// Runs a statement; returns (status, body).
fn execute(
    i: &mut Inner,
    statement: &str,
    binds: &[(String, Value)],
    handle: &str,
    request_id: &str,
) -> (u16, Value) {
    let st = statement.trim();
    if let Some(name) = st.strip_prefix("DESCRIBE TABLE ") {
        if name.trim() != i.table {
            return (
                422,
                error_body(
                    "002003",
                    "42S02",
                    &format!(
                        "SQL compilation error:\nTable '{}' does not exist or not authorized.",
                        name.trim()
                    ),
                    handle,
                ),
            );
        }
        let data = i
            .columns
            .iter()
            .map(|c| {
                vec![
                    json!(c),
                    json!("VARCHAR(16777216)"),
                    json!("COLUMN"),
                    json!(if i.required.contains(c) { "N" } else { "Y" }),
                    Value::Null,
                    json!("N"),
                    json!("N"),
                ]
            })
            .collect();
        return (
            200,
            result_set(
                handle,
                request_id,
                &[
                    "name",
                    "type",
                    "kind",
                    "null?",
                    "default",
                    "primary key",
                    "unique key",
                ],
                data,
            ),
        );
    }
    let Some(rest) = st.strip_prefix("INSERT INTO ") else {
        i.violations.push(format!("unexpected statement {st:.80}"));
        return (
            422,
            error_body(
                "001003",
                "42000",
                "SQL compilation error: syntax error",
                handle,
            ),
        );
    };
    let (table, rest) = rest.split_once(" (").unwrap_or(("", ""));
    let (cols, rest) = rest.split_once(") SELECT ").unwrap_or(("", ""));
    let (projections, values) = rest.split_once(" FROM VALUES ").unwrap_or(("", ""));
    if table != i.table {
        return (
            422,
            error_body(
                "002003",
                "42S02",
                &format!(
                    "SQL compilation error:\nTable '{table}' does not exist or not authorized."
                ),
                handle,
            ),
        );
    }
    let cols: Vec<&str> = cols.split(", ").collect();
    if let Some(bad) = cols.iter().find(|c| !i.columns.iter().any(|t| t == *c)) {
        return (
            422,
            error_body(
                "000904",
                "42000",
                &format!(
                    "SQL compilation error: error line 1 at position 30\ninvalid identifier '{bad}'"
                ),
                handle,
            ),
        );
    }
    let projections: Vec<&str> = projections.split(", ").collect();
    if projections.len() != cols.len() {
        i.violations.push(format!(
            "{} projections for {} columns",
            projections.len(),
            cols.len()
        ));
        return (
            422,
            error_body("001003", "42000", "SQL compilation error", handle),
        );
    }
    let placeholders = values.matches('?').count();
    if cols.is_empty() || placeholders % cols.len() != 0 || placeholders != binds.len() {
        i.violations.push(format!(
            "{placeholders} values for {} columns and {} bindings",
            cols.len(),
            binds.len()
        ));
        return (
            422,
            error_body("001003", "42000", "SQL compilation error", handle),
        );
    }
    let mut new_rows = Vec::new();
    for chunk in binds.chunks(cols.len()) {
        let mut row = Map::new();
        for (k, ((ty, value), (col, proj))) in
            chunk.iter().zip(cols.iter().zip(&projections)).enumerate()
        {
            let n = k + 1;
            let v = if *proj == format!("PARSE_JSON(COLUMN{n})") {
                match value {
                    Value::String(s) => match serde_json::from_str::<Value>(s) {
                        Ok(j) => j,
                        Err(e) => {
                            return (
                                422,
                                error_body(
                                    "100069",
                                    "22P02",
                                    &format!("Error parsing JSON: {e}"),
                                    handle,
                                ),
                            );
                        }
                    },
                    _ => Value::Null,
                }
            } else if *proj == format!("TO_TIMESTAMP_NTZ(COLUMN{n})") {
                if let Value::String(s) = value
                    && chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.3f").is_err()
                {
                    return (
                        422,
                        error_body(
                            "100035",
                            "22007",
                            &format!("Timestamp '{s}' is not recognized"),
                            handle,
                        ),
                    );
                }
                value.clone()
            } else if *proj == format!("COLUMN{n}") {
                match (ty.as_str(), value) {
                    ("FIXED", Value::String(s)) => json!(s.parse::<i64>().unwrap_or_default()),
                    ("REAL", Value::String(s)) => json!(s.parse::<f64>().unwrap_or_default()),
                    _ => value.clone(),
                }
            } else {
                i.violations.push(format!("unexpected projection {proj}"));
                value.clone()
            };
            row.insert(col.to_string(), v);
        }
        new_rows.push(row);
    }
    for row in &new_rows {
        if let Some(c) = i
            .required
            .iter()
            .find(|c| row.get(c.as_str()).is_none_or(Value::is_null))
        {
            return (
                422,
                error_body(
                    "100072",
                    "22000",
                    &format!("NULL result in a non-nullable column '{c}'"),
                    handle,
                ),
            );
        }
    }
    let n = new_rows.len();
    i.rows.extend(new_rows);
    (
        200,
        result_set(
            handle,
            request_id,
            &["number of rows inserted"],
            vec![vec![json!(n.to_string())]],
        ),
    )
}

async fn handle(
    State(r): State<SnowflakeReceiver>,
    method: Method,
    uri: Uri,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = std::time::Instant::now();
    let mut i = r.inner.lock().unwrap();
    let path = uri.path().to_string();
    let (status, answer, extra): (u16, Value, Vec<(&str, String)>) = (|| {
        if let Some(a) = check_headers(&mut i, &method, &headers) {
            return (a.0, a.1, vec![]);
        }
        if method == Method::GET {
            let Some(h) = path.strip_prefix("/api/v2/statements/") else {
                return (404, json!({"message": "not found"}), vec![]);
            };
            return match i.pending.get_mut(h) {
                Some(p) if p.polls_left > 0 => {
                    p.polls_left -= 1;
                    (
                        202,
                        json!({"code": "333334", "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.", "statementHandle": h, "statementStatusUrl": format!("/api/v2/statements/{h}")}),
                        vec![],
                    )
                }
                Some(p) => (p.result.0, p.result.1.clone(), vec![]),
                None => (
                    422,
                    error_body("000709", "02000", &format!("Statement {h} not found"), h),
                    vec![],
                ),
            };
        }
        if method != Method::POST || path != "/api/v2/statements" {
            i.violations.push(format!("{method} {path}"));
            return (404, json!({"message": "not found"}), vec![]);
        }
        for (k, v) in &query {
            if !QUERY_PARAMS.contains(&k.as_str()) {
                i.violations.push(format!("unknown query parameter {k}"));
            }
            if (k == "async" || k == "retry" || k == "nullable") && v != "true" && v != "false" {
                i.violations.push(format!("{k}={v}"));
            }
        }
        let request_id = query
            .iter()
            .find(|(k, _)| k == "requestId")
            .map(|(_, v)| v.clone());
        let retry = query.iter().any(|(k, v)| k == "retry" && v == "true");
        if let Some(id) = &request_id
            && !uuid_like(id)
        {
            i.violations.push(format!("requestId {id} is not a UUID"));
        }
        let request_id =
            request_id.unwrap_or_else(|| "00000000-0000-0000-0000-000000000000".into());
        if retry && let Some(done) = i.done.get(&request_id) {
            return (done.0, done.1.clone(), vec![]);
        }
        if let Some(s) = i.script.pop_front() {
            match s {
                Script::Status(code, retry_after) => {
                    let extra = retry_after
                        .map(|s| vec![("retry-after", s.to_string())])
                        .unwrap_or_default();
                    return (
                        code,
                        json!({"code": "000000", "message": format!("scripted {code}")}),
                        extra,
                    );
                }
                Script::Async(polls) => {
                    i.script.push_front(Script::Async(polls));
                }
            }
        }
        let body: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                i.violations.push(format!("body is not JSON: {e}"));
                return (
                    400,
                    json!({"code": "390142", "message": "Incoming request does not contain a valid payload."}),
                    vec![],
                );
            }
        };
        let Some(obj) = body.as_object() else {
            i.violations.push("body is not an object".into());
            return (400, json!({"message": "bad body"}), vec![]);
        };
        for k in obj.keys() {
            if !BODY_FIELDS.contains(&k.as_str()) {
                i.violations.push(format!("unknown body field {k}"));
            }
        }
        for k in ["database", "schema", "warehouse"] {
            match obj.get(k).and_then(Value::as_str) {
                Some(v) if v == v.to_ascii_uppercase() => {}
                other => i.violations.push(format!("{k}: {other:?}")),
            }
        }
        if obj.get("timeout").is_some_and(|t| t.as_u64().is_none()) {
            i.violations
                .push("timeout is not a non-negative integer".into());
        }
        let statement = obj
            .get("statement")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if statement.is_empty() {
            i.violations.push("no statement".into());
        }
        let binds = check_bindings(&mut i, &statement, obj.get("bindings"));
        let handle = format!(
            "01b{:05}-0000-0000-0000-{:012}",
            i.next_handle, i.next_handle
        );
        i.next_handle += 1;
        let result = execute(&mut i, &statement, &binds, &handle, &request_id);
        if result.0 == 200 {
            // A resubmission is answered from a statement that succeeded; a failed one runs again.
            i.done.insert(request_id.clone(), result.clone());
        }
        if let Some(Script::Async(polls)) = i.script.pop_front() {
            i.pending.insert(
                handle.clone(),
                Pending {
                    polls_left: polls.saturating_sub(1),
                    result,
                },
            );
            return (
                202,
                json!({"code": "333334", "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.", "statementHandle": handle, "statementStatusUrl": format!("/api/v2/statements/{handle}")}),
                vec![],
            );
        }
        (result.0, result.1, vec![])
    })();
    i.seen.push(Seen {
        method,
        path,
        query,
        headers,
        body,
        answered: status,
        at,
    });
    drop(i);
    let mut resp = (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response();
    for (k, v) in extra {
        resp.headers_mut().insert(k, v.parse().unwrap());
    }
    resp
}
