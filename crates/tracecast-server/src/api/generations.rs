//! `POST /api/v1/generations`: ingest (tracecast extension).
//!
//! The body is one generation object, a JSON array of them, or NDJSON
//! (`Content-Type: application/x-ndjson`). Validation is all-or-nothing. The answer (202) comes
//! only once the records are durably queued. See `docs/generation.md`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tracecast_model::generation::{Generation, Identity, IngestContext};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::QueryParams;
use crate::state::AppState;

use super::ErrorBody;

/// At most this many records per request.
pub const MAX_RECORDS: usize = 1000;
/// At most this many bytes per request.
pub const MAX_BYTES: usize = 10 * 1024 * 1024;
/// At most this many JSON values (objects, arrays, strings, numbers...) in one record. A parsed
/// value takes 30-80 bytes whatever its size in the body, so a body of tiny values (`[[],[],...]`)
/// would otherwise take many times its size once parsed.
pub const MAX_VALUES_PER_RECORD: usize = 100_000;
/// At most this many JSON values in one request, all records together (a few tens of MB
/// parsed).
pub const MAX_VALUES_PER_REQUEST: usize = 400_000;
/// At most this much nesting of arrays and objects in a record.
pub const MAX_DEPTH: usize = 64;

#[derive(Serialize, ToSchema)]
pub struct IngestResult {
    /// Records accepted now.
    pub accepted: usize,
    /// Records whose id was already accepted in the last 24 h (not broadcast again).
    pub duplicates: usize,
    /// Ids of the accepted records, in request order.
    pub ids: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct IngestResponse {
    pub data: IngestResult,
}

fn is_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|ct| {
            let ct = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            matches!(
                ct.as_str(),
                "application/x-ndjson"
                    | "application/ndjson"
                    | "application/jsonl"
                    | "application/x-jsonlines"
            )
        })
        .unwrap_or(false)
}

fn too_many() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("At most {MAX_RECORDS} records per request"),
    )
}

/// The number of JSON values in `json` (a count of containers, separators and scalars, exact
/// for valid JSON) and its deepest nesting. One pass over the bytes, no allocation: it runs on
/// each record before it is parsed, so that its parsed size is known to be bounded. Inside a
/// string (most of a record: message contents) it jumps from one `"` or `\\` to the next.
fn json_shape(json: &[u8]) -> (usize, usize) {
    let (mut values, mut depth, mut max_depth) = (0usize, 0usize, 0usize);
    let mut in_scalar = false;
    let mut i = 0;
    while i < json.len() {
        let b = json[i];
        i += 1;
        match b {
            b'"' => {
                in_scalar = false;
                values += 1;
                // To the closing quote, stepping over escaped characters.
                loop {
                    match memchr::memchr2(b'"', b'\\', &json[i.min(json.len())..]) {
                        None => return (values, max_depth),
                        Some(k) if json[i + k] == b'\\' => i += k + 2,
                        Some(k) => {
                            i += k + 1;
                            break;
                        }
                    }
                }
            }
            b'{' | b'[' => {
                in_scalar = false;
                values += 1;
                depth += 1;
                max_depth = max_depth.max(depth);
            }
            b'}' | b']' => {
                in_scalar = false;
                depth = depth.saturating_sub(1);
            }
            b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
            _ => {
                if !in_scalar {
                    in_scalar = true;
                    values += 1;
                }
            }
        }
    }
    (values, max_depth)
}

/// Rejects a record whose parsed form would be too large or too deep (413 naming the record and
/// the limit); adds its values to the request's `total`.
fn check_shape(index: usize, json: &[u8], total: &mut usize) -> ApiResult<()> {
    let (values, depth) = json_shape(json);
    if depth > MAX_DEPTH {
        return Err(ApiError::bad_request(format!(
            "record {index}: nests arrays and objects {depth} deep, at most {MAX_DEPTH}"
        )));
    }
    if values > MAX_VALUES_PER_RECORD {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "record {index}: holds {values} JSON values, at most {MAX_VALUES_PER_RECORD} per record"
            ),
        ));
    }
    *total += values;
    if *total > MAX_VALUES_PER_REQUEST {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "The records up to record {index} hold {} JSON values, at most {MAX_VALUES_PER_REQUEST} per request",
                *total
            ),
        ));
    }
    Ok(())
}

/// Splits the body into records: each record's parsed value and its raw bytes (stored as sent).
/// Each record's shape is checked ([`check_shape`]) before it is parsed.
fn parse_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> ApiResult<Vec<(Value, &'a [u8])>> {
    let mut total_values = 0usize;
    let malformed = |e: serde_json::Error| {
        ApiError::bad_request(format!(
            "Malformed JSON body: {}",
            strip_position(&e.to_string())
        ))
    };
    if is_ndjson(headers) {
        let mut out = Vec::new();
        for (i, line) in lines(body).enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if out.len() == MAX_RECORDS {
                return Err(too_many());
            }
            check_shape(out.len(), line, &mut total_values)?;
            let v: Value = serde_json::from_slice(line).map_err(|e| {
                ApiError::bad_request(format!(
                    "line {}: malformed JSON: {}",
                    i + 1,
                    strip_position(&e.to_string())
                ))
            })?;
            out.push((v, line));
        }
        if out.is_empty() {
            return Err(ApiError::bad_request("The body holds no records"));
        }
        return Ok(out);
    }
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| body[i]) {
        None => Err(ApiError::bad_request("The body holds no records")),
        Some(b'[') => {
            // The outer array itself: its depth and the records' count.
            let (_, depth) = json_shape(body);
            if depth > MAX_DEPTH + 1 {
                return Err(ApiError::bad_request(format!(
                    "The body nests arrays and objects {depth} deep, at most {MAX_DEPTH} in a record"
                )));
            }
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(body).map_err(malformed)?;
            if items.is_empty() {
                return Err(ApiError::bad_request("The body holds no records"));
            }
            if items.len() > MAX_RECORDS {
                return Err(too_many());
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, raw)| {
                    check_shape(i, raw.get().as_bytes(), &mut total_values)?;
                    let v: Value = serde_json::from_str(raw.get()).map_err(malformed)?;
                    Ok((v, raw.get().as_bytes()))
                })
                .collect()
        }
        Some(_) => {
            check_shape(0, body, &mut total_values)?;
            let v: Value = serde_json::from_slice(body).map_err(malformed)?;
            if !v.is_object() {
                return Err(ApiError::bad_request(
                    "The body must be a generation object, an array of them, or NDJSON",
                ));
            }
            Ok(vec![(v, body)])
        }
    }
}

/// The lines of an NDJSON body (found with memchr, not byte by byte).
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(body);
    std::iter::from_fn(move || {
        let r = rest?;
        match memchr::memchr(b'\n', r) {
            Some(n) => {
                rest = Some(&r[n + 1..]);
                Some(&r[..n])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

fn strip_position(s: &str) -> String {
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::json_shape;

    #[test]
    fn json_shape_counts_values_and_depth() {
        assert_eq!(json_shape(br#"{}"#), (1, 1));
        assert_eq!(
            json_shape(br#"{"a": [1, 2.5e3, true, null], "b": "x,[{"}"#),
            (9, 2)
        );
        assert_eq!(json_shape(br#"[[],[],[[]]]"#), (5, 3));
        assert_eq!(json_shape(br#""a\"b""#), (1, 0));
        assert_eq!(json_shape(b"-12"), (1, 0));
    }

    /// The byte-by-byte scan `json_shape` replaced.
    fn reference(json: &[u8]) -> (usize, usize) {
        let (mut values, mut depth, mut max_depth) = (0usize, 0usize, 0usize);
        let (mut in_string, mut escaped, mut in_scalar) = (false, false, false);
        for &b in json {
            if in_string {
                match b {
                    _ if escaped => escaped = false,
                    b'\\' => escaped = true,
                    b'"' => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => {
                    in_string = true;
                    in_scalar = false;
                    values += 1;
                }
                b'{' | b'[' => {
                    in_scalar = false;
                    values += 1;
                    depth += 1;
                    max_depth = max_depth.max(depth);
                }
                b'}' | b']' => {
                    in_scalar = false;
                    depth = depth.saturating_sub(1);
                }
                b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => in_scalar = false,
                _ => {
                    if !in_scalar {
                        in_scalar = true;
                        values += 1;
                    }
                }
            }
        }
        (values, max_depth)
    }

    #[test]
    fn json_shape_agrees_with_the_byte_by_byte_scan() {
        let samples: &[&[u8]] = &[
            br#"["a\\", "b\"[", {"c": [1, "\\\""]}]"#,
            br#"{"x": "\u0041\n{[", "y": [true, null, -1.5e3]}"#,
            br#"["abc"#,
            b"[\"ab\\",
            b"\"\\",
            b"\\\"",
            b"",
            b"\"",
            br#"{"a":"\\"}{"b":["\\\\"]}"#,
        ];
        for s in samples {
            assert_eq!(
                json_shape(s),
                reference(s),
                "{:?}",
                String::from_utf8_lossy(s)
            );
        }
    }

    #[test]
    fn lines_split_like_split_on_newline() {
        for body in [&b""[..], b"\n", b"a", b"a\n", b"a\nb", b"\n\na\n\nb\n"] {
            let ours: Vec<&[u8]> = super::lines(body).collect();
            let split: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
            assert_eq!(ours, split);
        }
    }
}

#[utoipa::path(
    post, path = "/api/v1/generations", tag = "Ingest",
    description = "tracecast extension. Ingests generations: one object, a JSON array, or NDJSON (`Content-Type: application/x-ndjson`); at most 1,000 records or 10 MiB, 100,000 JSON values per record and 400,000 per request (413), nested at most 64 deep. With a workspace key the key decides the workspace and the records' API-key identity; with a management key pass `?workspace_id=` and optionally `api_key_hash` per record. All-or-nothing: an invalid record gets 400 naming its index and field. 202 only once the records are durably queued.",
    params(("workspace_id" = Option<String>, Query, description = "Workspace (id or slug); required with a management key")),
    request_body(content = Object, description = "A generation (see docs/generation.md), an array of them, or NDJSON"),
    responses(
        (status = 202, body = IngestResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 408, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn ingest(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<IngestResponse>)> {
    let result = ingest_inner(&state, caller, q, headers, body).await;
    let status = match &result {
        Ok(_) => "202".to_string(),
        Err(e) => e.status.as_u16().to_string(),
    };
    metrics::counter!("tracecast_ingest_requests_total", "status" => status).increment(1);
    result
}

async fn ingest_inner(
    state: &AppState,
    caller: Caller,
    q: Option<String>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> ApiResult<(StatusCode, Json<IngestResponse>)> {
    let body = body.map_err(|e| crate::extract::body_error(e, MAX_BYTES))?;
    let target = IngestTarget::resolve(state, &caller, q).await?;
    let ctx = IngestContext {
        session_header: headers
            .get("x-session-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .filter(|s| !s.is_empty()),
    };
    let values = parse_body(&headers, &body)?;
    let mut generations = Vec::with_capacity(values.len());
    for (i, (v, raw)) in values.into_iter().enumerate() {
        let g = Generation::from_json(v, &ctx)
            .map_err(|e| ApiError::bad_request(format!("record {i}: {e}")))?;
        generations.push((g, raw));
    }
    let result = append(state, &target, generations, ctx.session_header.as_deref()).await?;
    Ok((StatusCode::ACCEPTED, Json(IngestResponse { data: result })))
}

/// Where records go and whose they are: the workspace, and the key's identity when the caller
/// holds a workspace key. Resolved from the credentials (and `?workspace_id=`), never the body.
pub(crate) struct IngestTarget {
    workspace_id: uuid::Uuid,
    default_identity: Option<(String, String)>,
}

impl IngestTarget {
    pub(crate) async fn resolve(
        state: &AppState,
        caller: &Caller,
        q: Option<String>,
    ) -> ApiResult<IngestTarget> {
        let q = QueryParams::parse(q.as_deref());
        let key = &caller.0;
        let (workspace, default_identity) = if key.is_management() {
            let ws_param = q.str("workspace_id").ok_or_else(|| {
                ApiError::bad_request(
                    "workspace_id is required when ingesting with a management key",
                )
            })?;
            (caller.workspace(state, Some(ws_param)).await?, None)
        } else {
            if let Some(w) = q.str("workspace_id")
                && w != key.workspace_id.to_string()
            {
                let ws = caller.workspace(state, Some(w)).await?;
                if ws.id != key.workspace_id {
                    return Err(ApiError::forbidden(
                        "A workspace key can only ingest into its own workspace",
                    ));
                }
            }
            let ws = caller.workspace(state, None).await?;
            (ws, Some((key.hash.clone(), key.name.clone())))
        };
        Ok(IngestTarget {
            workspace_id: workspace.id,
            default_identity,
        })
    }
}

/// Sets each record's identity and appends the records durably, all or nothing: the same path
/// for every way in (`/api/v1/generations`, OTLP). Each record comes with its raw JSON, stored
/// as sent.
pub(crate) async fn append(
    state: &AppState,
    target: &IngestTarget,
    parsed: Vec<(Generation, &[u8])>,
    session_header: Option<&str>,
) -> ApiResult<IngestResult> {
    let workspace_id = target.workspace_id;
    let default_identity = &target.default_identity;
    let mut generations = Vec::with_capacity(parsed.len());
    let mut key_names: HashMap<String, String> = HashMap::new();
    for (i, (mut g, raw)) in parsed.into_iter().enumerate() {
        let identity = match (&default_identity, g.identity.api_key_hash.take()) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(format!(
                    "record {i}: api_key_hash can only be set when ingesting with a management key"
                )));
            }
            (Some((hash, name)), None) => Identity {
                workspace_id: workspace_id.to_string(),
                api_key_hash: Some(hash.clone()),
                api_key_name: Some(name.clone()),
            },
            (None, Some(hash)) => {
                let hash = hash.to_ascii_lowercase();
                let name = match key_names.get(&hash) {
                    Some(n) => n.clone(),
                    None => {
                        let k = state
                            .store
                            .key_by_hash(&hash)
                            .await?
                            .filter(|k| !k.is_management() && k.workspace_id == workspace_id)
                            .ok_or_else(|| {
                                ApiError::bad_request(format!(
                                    "record {i}: api_key_hash is not the hash of an API key in workspace {}",
                                    workspace_id
                                ))
                            })?;
                        key_names.insert(hash.clone(), k.name.clone());
                        k.name
                    }
                };
                Identity {
                    workspace_id: workspace_id.to_string(),
                    api_key_hash: Some(hash),
                    api_key_name: Some(name),
                }
            }
            (None, None) => Identity {
                workspace_id: workspace_id.to_string(),
                api_key_hash: None,
                api_key_name: None,
            },
        };
        g.identity = identity;
        generations.push((g, raw));
    }
    let ids: Vec<String> = generations.iter().map(|(g, _)| g.id.clone()).collect();
    let res = state
        .engine
        .ingest(workspace_id, generations, session_header)
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "ingest failed");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "The queue is unavailable; nothing was accepted, retry",
            )
        })?;
    let accepted_ids: Vec<String> = ids
        .into_iter()
        .zip(res.accepted.iter())
        .filter(|(_, a)| **a)
        .map(|(id, _)| id)
        .collect();
    let accepted = accepted_ids.len();
    Ok(IngestResult {
        accepted,
        duplicates: res.accepted.len() - accepted,
        ids: accepted_ids,
    })
}
