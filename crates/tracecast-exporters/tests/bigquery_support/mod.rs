//! A loopback Google OAuth token endpoint plus BigQuery REST API v2 receiver, built from the
//! published references. Used by tests/bigquery.rs and by the server's end-to-end test
//! (included there with `#[path]`).
//!
//! - `POST /token` (Google's "Using OAuth 2.0 for Server to Server Applications",
//!   <https://developers.google.com/identity/protocols/oauth2/service-account#httprest>; RFC
//!   7523): a form body with `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` and
//!   `assertion`, a JWT whose RS256 signature is verified with the test key's public half, and
//!   whose claims must be `iss` = the service account's email, `scope` = a space-separated list
//!   holding the BigQuery scope, `aud` = this token URI, `iat` within a minute of now and `exp`
//!   = `iat` + at most one hour. Answers `{"access_token", "expires_in", "token_type"}`, or
//!   `400 {"error": "invalid_grant", ...}`.
//! - `POST /bigquery/v2/projects/{p}/datasets/{d}/tables/{t}/insertAll`
//!   (<https://cloud.google.com/bigquery/docs/reference/rest/v2/tabledata/insertAll>): bearer
//!   token; body fields only `kind` (`bigquery#tableDataInsertAllRequest`), `skipInvalidRows`,
//!   `ignoreUnknownValues`, `templateSuffix`, `traceId`, `rows`; each row only `insertId`
//!   (string) and `json` (object). Each row is checked against the table schema the way
//!   BigQuery's JSON row format reads it (no unknown column, REQUIRED columns present, STRING a
//!   string, INT64 an integer or a decimal string, FLOAT64 a number, TIMESTAMP a canonical
//!   timestamp string, JSON a string holding JSON, REPEATED an array); a bad row gets an
//!   `insertErrors` entry with reason `invalid` (and, without `skipInvalidRows`, the others
//!   `stopped`), as BigQuery answers.
//! - `GET .../tables/{t}` (tables.get): the table resource with `schema.fields`.
//! - `POST .../tables/{t}:testIamPermissions`: the granted subset of the asked permissions.
//!
//! Everything that breaks the references is recorded as a violation (tests assert none).

#![allow(dead_code)]

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value, json};

/// The test key pair (generated for these tests only; never a real credential).
pub const TEST_PRIVATE_KEY: &str = include_str!("test-only-service-account.key.pem");
pub const TEST_PUBLIC_KEY: &str = include_str!("test-only-service-account.pub.pem");
pub const CLIENT_EMAIL: &str = "broadcast@my-gcp-project.iam.gserviceaccount.com";
pub const PROJECT: &str = "my-gcp-project";
pub const DATASET: &str = "openrouter";
pub const TABLE: &str = "openrouter_traces";
pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// The service-account key file for the receiver at `url` (its `/token` is the token URI).
pub fn key_file(url: &str) -> String {
    json!({
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef0123456789abcdef01234567",
        "private_key": TEST_PRIVATE_KEY,
        "client_email": CLIENT_EMAIL,
        "client_id": "123456789012345678901",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{url}/token"),
    })
    .to_string()
}

/// One column of the receiver's table: name, type, mode.
#[derive(Debug, Clone)]
pub struct Field {
    pub name: String,
    pub ty: String,
    pub mode: String,
}

/// A scripted answer to the next insertAll.
#[derive(Debug, Clone)]
pub enum Script {
    /// An HTTP error with Google's error body (`reason`).
    Status(u16, &'static str),
    /// 200 with an `insertErrors` entry for row `index` with `reason`.
    RowError(usize, &'static str),
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub answered: u16,
}

impl Seen {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

struct Inner {
    fields: Vec<Field>,
    granted: Vec<String>,
    tokens_issued: usize,
    valid_tokens: HashSet<String>,
    refuse_grants: bool,
    api_refuses_tokens: bool,
    rows: Vec<(String, Map<String, Value>)>,
    seen: Vec<Seen>,
    script: VecDeque<Script>,
    violations: Vec<String>,
    claims: Vec<Value>,
    assertion_headers: Vec<Value>,
}

#[derive(Clone)]
pub struct BigqueryReceiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
}

impl BigqueryReceiver {
    /// A receiver whose table has `fields` and whose key holds `granted` permissions.
    pub async fn start(fields: Vec<Field>, granted: &[&str]) -> BigqueryReceiver {
        let inner = Arc::new(Mutex::new(Inner {
            fields,
            granted: granted.iter().map(|s| s.to_string()).collect(),
            tokens_issued: 0,
            valid_tokens: HashSet::new(),
            refuse_grants: false,
            api_refuses_tokens: false,
            rows: Vec::new(),
            seen: Vec::new(),
            script: VecDeque::new(),
            violations: Vec::new(),
            claims: Vec::new(),
            assertion_headers: Vec::new(),
        }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let r = BigqueryReceiver { url, inner };
        let app = Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        r
    }

    pub fn table_path(&self) -> String {
        format!("/bigquery/v2/projects/{PROJECT}/datasets/{DATASET}/tables/{TABLE}")
    }

    pub fn script(&self, s: Script) {
        self.inner.lock().unwrap().script.push_back(s);
    }

    /// Revokes every token issued so far (the next API call answers 401).
    pub fn revoke_tokens(&self) {
        self.inner.lock().unwrap().valid_tokens.clear();
    }

    /// Refuses (or accepts again) every grant, as Google does for a deleted key.
    pub fn refuse_grants(&self, refuse: bool) {
        self.inner.lock().unwrap().refuse_grants = refuse;
    }

    /// Issues tokens the API then refuses (401), as for a token of the wrong scope.
    pub fn api_refuses_tokens(&self, refuse: bool) {
        self.inner.lock().unwrap().api_refuses_tokens = refuse;
    }

    pub fn tokens_issued(&self) -> usize {
        self.inner.lock().unwrap().tokens_issued
    }

    /// The verified claims of every assertion.
    pub fn claims(&self) -> Vec<Value> {
        self.inner.lock().unwrap().claims.clone()
    }

    /// The JOSE header of every verified assertion.
    pub fn assertion_headers(&self) -> Vec<Value> {
        self.inner.lock().unwrap().assertion_headers.clone()
    }

    /// (insertId, row) of every inserted row.
    pub fn rows(&self) -> Vec<(String, Map<String, Value>)> {
        self.inner.lock().unwrap().rows.clone()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.inner.lock().unwrap().seen.clone()
    }

    pub fn violations(&self) -> Vec<String> {
        self.inner.lock().unwrap().violations.clone()
    }

    /// Waits (deadline `secs`) until `cond` holds.
    pub async fn wait(&self, secs: u64, what: &str, cond: impl Fn(&BigqueryReceiver) -> bool) {
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

fn google_error(code: u16, reason: &str, message: &str) -> Value {
    let status = match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        _ => "INTERNAL",
    };
    json!({"error": {"code": code, "message": message, "status": status,
        "errors": [{"message": message, "domain": "global", "reason": reason}]}})
}

fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

fn token(i: &mut Inner, url: &str, body: &[u8]) -> (u16, Value) {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("grant_type").as_deref() != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        i.violations
            .push(format!("grant_type: {:?}", get("grant_type")));
        return (400, json!({"error": "unsupported_grant_type"}));
    }
    let Some(assertion) = get("assertion") else {
        i.violations.push("no assertion".into());
        return (400, json!({"error": "invalid_request"}));
    };
    let header = match jsonwebtoken::decode_header(&assertion) {
        Ok(h) => h,
        Err(e) => {
            i.violations.push(format!("assertion header: {e}"));
            return (400, json!({"error": "invalid_grant"}));
        }
    };
    if header.alg != Algorithm::RS256 {
        i.violations.push(format!("alg {:?}", header.alg));
    }
    i.assertion_headers
        .push(serde_json::to_value(&header).unwrap_or(Value::Null));
    let mut v = Validation::new(Algorithm::RS256);
    let aud = format!("{url}/token");
    v.set_audience(&[aud.as_str()]);
    v.set_issuer(&[CLIENT_EMAIL]);
    v.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let key = DecodingKey::from_rsa_pem(TEST_PUBLIC_KEY.as_bytes()).expect("test public key");
    let data = match jsonwebtoken::decode::<Value>(&assertion, &key, &v) {
        Ok(d) => d,
        Err(e) => {
            i.violations.push(format!("assertion: {e}"));
            return (
                400,
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
            );
        }
    };
    let c = data.claims;
    let scopes: Vec<&str> = c["scope"].as_str().unwrap_or("").split(' ').collect();
    if !scopes.contains(&SCOPE) {
        i.violations.push(format!("scope {:?}", c["scope"]));
    }
    let (iat, exp) = (
        c["iat"].as_i64().unwrap_or(0),
        c["exp"].as_i64().unwrap_or(0),
    );
    if (iat - now_secs()).abs() > 60 {
        i.violations.push(format!("iat {iat} is not now"));
    }
    if exp <= iat || exp - iat > 3600 {
        i.violations
            .push(format!("exp {exp} is not within an hour after iat {iat}"));
    }
    i.claims.push(c);
    if i.refuse_grants {
        return (
            400,
            json!({"error": "invalid_grant", "error_description": "Invalid grant: account not found"}),
        );
    }
    i.tokens_issued += 1;
    let t = format!("ya29.test-token-{}", i.tokens_issued);
    if !i.api_refuses_tokens {
        i.valid_tokens.insert(t.clone());
    }
    (
        200,
        json!({"access_token": t, "expires_in": 3599, "token_type": "Bearer"}),
    )
}

fn timestamp_ok(s: &str) -> bool {
    let s = s.strip_suffix(" UTC").unwrap_or(s);
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").is_ok()
        || chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// BigQuery's reading of one JSON row value for a column; the error text when it refuses it.
fn check_value(f: &Field, v: &Value) -> Result<(), String> {
    if f.mode == "REPEATED" {
        if v.is_null() {
            return Ok(()); // an absent repeated field is an empty array
        }
        let Some(items) = v.as_array() else {
            return Err(format!("{}: a repeated field needs an array", f.name));
        };
        let one = Field {
            mode: "NULLABLE".into(),
            ..f.clone()
        };
        return items.iter().try_for_each(|x| check_value(&one, x));
    }
    if v.is_null() {
        return if f.mode == "REQUIRED" {
            Err(format!("{}: missing required field", f.name))
        } else {
            Ok(())
        };
    }
    let ok = match f.ty.as_str() {
        "STRING" => v.is_string(),
        "INT64" | "INTEGER" => {
            v.is_i64() || v.is_u64() || v.as_str().is_some_and(|s| s.parse::<i64>().is_ok())
        }
        "FLOAT64" | "FLOAT" => v.is_number(),
        "TIMESTAMP" => v.as_str().is_some_and(timestamp_ok),
        "JSON" => v
            .as_str()
            .is_some_and(|s| serde_json::from_str::<Value>(s).is_ok()),
        other => return Err(format!("{}: the receiver has no rule for {other}", f.name)),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{}: {v} is not a valid {}", f.name, f.ty))
    }
}

fn check_row(fields: &[Field], row: &Map<String, Value>, ignore_unknown: bool) -> Vec<Value> {
    let mut errors = Vec::new();
    for k in row.keys() {
        if !ignore_unknown && !fields.iter().any(|f| f.name.eq_ignore_ascii_case(k)) {
            errors.push(json!({"reason": "invalid", "location": k, "message": "no such field"}));
        }
    }
    for f in fields {
        let v = row.get(&f.name).cloned().unwrap_or(Value::Null);
        if let Err(m) = check_value(f, &v) {
            errors.push(json!({"reason": "invalid", "location": f.name, "message": m}));
        }
    }
    errors
}

fn insert_all(i: &mut Inner, body: &[u8]) -> (u16, Value) {
    let Ok(Value::Object(b)) = serde_json::from_slice::<Value>(body) else {
        i.violations
            .push("insertAll body is not a JSON object".into());
        return (
            400,
            google_error(400, "invalid", "Invalid JSON payload received."),
        );
    };
    const FIELDS: &[&str] = &[
        "kind",
        "skipInvalidRows",
        "ignoreUnknownValues",
        "templateSuffix",
        "rows",
        "traceId",
    ];
    for k in b.keys() {
        if !FIELDS.contains(&k.as_str()) {
            i.violations.push(format!("unknown insertAll field {k}"));
        }
    }
    if let Some(k) = b.get("kind")
        && k != "bigquery#tableDataInsertAllRequest"
    {
        i.violations.push(format!("kind {k}"));
    }
    for k in ["skipInvalidRows", "ignoreUnknownValues"] {
        if b.get(k).is_some_and(|v| !v.is_boolean()) {
            i.violations.push(format!("{k} is not a boolean"));
        }
    }
    let skip_invalid = b
        .get("skipInvalidRows")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let ignore_unknown = b
        .get("ignoreUnknownValues")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let Some(rows) = b.get("rows").and_then(Value::as_array) else {
        i.violations.push("no rows array".into());
        return (
            400,
            google_error(400, "invalid", "No rows present in the request."),
        );
    };
    let mut parsed = Vec::new();
    let mut errors: Vec<(usize, Vec<Value>)> = Vec::new();
    for (n, r) in rows.iter().enumerate() {
        let Some(r) = r.as_object() else {
            i.violations.push(format!("row {n} is not an object"));
            continue;
        };
        for k in r.keys() {
            if k != "insertId" && k != "json" {
                i.violations.push(format!("row {n}: unknown field {k}"));
            }
        }
        let id = match r.get("insertId") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            other => {
                i.violations.push(format!("row {n}: insertId {other:?}"));
                String::new()
            }
        };
        let Some(json) = r.get("json").and_then(Value::as_object) else {
            i.violations.push(format!("row {n}: json is not an object"));
            continue;
        };
        let e = check_row(&i.fields, json, ignore_unknown);
        if !e.is_empty() {
            i.violations.push(format!("row {n} refused: {e:?}"));
            errors.push((n, e));
        }
        parsed.push((n, id, json.clone()));
    }
    if let Some(Script::RowError(n, reason)) = i.script.front().cloned() {
        i.script.pop_front();
        errors.push((
            n,
            vec![json!({"reason": reason, "location": "", "message": "scripted row error"})],
        ));
    }
    let failed: HashSet<usize> = errors.iter().map(|(n, _)| *n).collect();
    let mut insert_errors: Vec<Value> = errors
        .iter()
        .map(|(n, e)| json!({"index": n, "errors": e}))
        .collect();
    for (n, id, json) in parsed {
        if failed.contains(&n) {
            continue;
        }
        if !skip_invalid && !failed.is_empty() {
            insert_errors.push(json!({"index": n, "errors": [{"reason": "stopped", "location": "", "message": ""}]}));
            continue;
        }
        i.rows.push((id, json));
    }
    if insert_errors.is_empty() {
        (200, json!({"kind": "bigquery#tableDataInsertAllResponse"}))
    } else {
        (
            200,
            json!({"kind": "bigquery#tableDataInsertAllResponse", "insertErrors": insert_errors}),
        )
    }
}

async fn handle(
    State(r): State<BigqueryReceiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let mut i = r.inner.lock().unwrap();
    let table = r.table_path();
    let (status, answer) = if method == Method::POST && path == "/token" {
        token(&mut i, &r.url, &body)
    } else {
        let bearer = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        if !bearer.as_ref().is_some_and(|t| i.valid_tokens.contains(t)) {
            (
                401,
                google_error(
                    401,
                    "authError",
                    "Request had invalid authentication credentials.",
                ),
            )
        } else if method == Method::POST && path == format!("{table}/insertAll") {
            if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json")
            {
                i.violations
                    .push("insertAll Content-Type is not application/json".into());
            }
            match i.script.front().cloned() {
                Some(Script::Status(code, reason)) => {
                    i.script.pop_front();
                    (code, google_error(code, reason, "scripted error"))
                }
                _ => insert_all(&mut i, &body),
            }
        } else if method == Method::GET && path == table {
            let fields: Vec<Value> = i
                .fields
                .iter()
                .map(|f| json!({"name": f.name, "type": f.ty, "mode": f.mode}))
                .collect();
            (
                200,
                json!({"kind": "bigquery#table", "id": format!("{PROJECT}:{DATASET}.{TABLE}"),
                    "tableReference": {"projectId": PROJECT, "datasetId": DATASET, "tableId": TABLE},
                    "schema": {"fields": fields}}),
            )
        } else if method == Method::POST && path == format!("{table}:testIamPermissions") {
            let asked: Vec<String> = serde_json::from_slice::<Value>(&body)
                .ok()
                .and_then(|v| v.get("permissions").cloned())
                .and_then(|p| serde_json::from_value(p).ok())
                .unwrap_or_else(|| {
                    i.violations
                        .push("testIamPermissions without permissions".into());
                    Vec::new()
                });
            let held: Vec<&String> = asked.iter().filter(|p| i.granted.contains(p)).collect();
            if held.is_empty() {
                (200, json!({}))
            } else {
                (200, json!({"permissions": held}))
            }
        } else if path.starts_with("/bigquery/v2/projects/") {
            (
                404,
                google_error(404, "notFound", &format!("Not found: {path}")),
            )
        } else {
            i.violations.push(format!("unexpected {method} {path}"));
            (404, json!({}))
        }
    };
    i.seen.push(Seen {
        method: method.to_string(),
        path,
        headers,
        body,
        answered: status,
    });
    (
        axum::http::StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        answer.to_string(),
    )
        .into_response()
}
