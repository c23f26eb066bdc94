//! `/api/v1/gateway/upstreams`: a workspace's own gateway upstreams (tracecast extension),
//! managed with a management key like destinations. Stored sealed (the whole document, like a
//! destination config); the credential is masked in every answer (`sk-a...wxyz`). Rules and
//! resolution: `docs/gateway.md`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use tracecast_model::config::{looks_masked, mask_secret};
use tracecast_store::GatewayUpstream;
use uuid::Uuid;

use super::GatewayState;
use super::openapi::{CreateUpstream, UpdateUpstream, UpstreamList, UpstreamResponse};
use super::upstream::{Upstream, UpstreamSettings};
use crate::api::{Deleted, ErrorBody, RequestErrors};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{QueryParams, parse_json};

/// The authenticated caller of these routes (the server's [`Caller`], under the gateway's state).
pub struct Authed(pub Caller);

impl axum::extract::FromRequestParts<GatewayState> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &GatewayState,
    ) -> Result<Self, Self::Rejection> {
        Caller::from_request_parts(parts, &state.app)
            .await
            .map(Authed)
    }
}

/// At most this many upstreams per workspace.
pub const MAX_PER_WORKSPACE: usize = 50;

fn view(u: &GatewayUpstream) -> Value {
    let mut m = u.config.clone();
    if let Some(Value::String(k)) = m.get("api_key") {
        let masked = mask_secret(k);
        m.insert("api_key".into(), json!(masked));
    }
    m.insert("id".into(), json!(u.id));
    m.insert("workspace_id".into(), json!(u.workspace_id));
    m.insert("created_at".into(), json!(u.created_at));
    m.insert("updated_at".into(), json!(u.updated_at));
    Value::Object(m)
}

/// Parses and validates an upstream document; errors name the field.
fn validate(config: &Map<String, Value>) -> ApiResult<UpstreamSettings> {
    let u: UpstreamSettings = serde_path_to_error::deserialize(Value::Object(config.clone()))
        .map_err(|e| {
            let path = e.path().to_string();
            let msg = e.inner().to_string();
            if path == "." {
                ApiError::bad_request(format!("Invalid upstream: {msg}"))
            } else {
                ApiError::bad_request(format!("Invalid value for {path}: {msg}"))
            }
        })?;
    Upstream::from_settings(0, &u).map_err(|e| {
        ApiError::bad_request(e.to_string().replacen("gateway.upstreams[0].", "", 1))
    })?;
    Ok(u)
}

/// Refuses a second default in one workspace.
fn check_default(
    u: &UpstreamSettings,
    others: &[GatewayUpstream],
    id: Option<Uuid>,
) -> ApiResult<()> {
    if !u.default {
        return Ok(());
    }
    if let Some(d) = others
        .iter()
        .filter(|o| Some(o.id) != id)
        .find(|o| o.config.get("default") == Some(&Value::Bool(true)))
    {
        return Err(ApiError::conflict(format!(
            "The upstream {} is already this workspace's default",
            d.config.get("name").and_then(Value::as_str).unwrap_or("?")
        )));
    }
    Ok(())
}

async fn workspace(gw: &GatewayState, caller: &Caller, requested: Option<&str>) -> ApiResult<Uuid> {
    caller.management()?;
    Ok(caller.workspace(&gw.app, requested).await?.id)
}

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found())
}

#[utoipa::path(
    get, path = "/api/v1/gateway/upstreams", tag = "Gateway upstreams",
    params(("workspace_id" = Option<String>, Query, description = "Workspace id or slug; default: the key's workspace")),
    responses((status = 200, body = UpstreamList), RequestErrors),
    security(("bearer" = []))
)]
pub async fn list(
    State(gw): State<GatewayState>,
    Authed(caller): Authed,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(q.as_deref());
    let ws = workspace(&gw, &caller, q.str("workspace_id")).await?;
    let items = gw.app.store.gateway_upstreams(ws).await?;
    Ok(Json(
        json!({"data": items.iter().map(view).collect::<Vec<_>>()}),
    ))
}

#[utoipa::path(
    post, path = "/api/v1/gateway/upstreams", tag = "Gateway upstreams",
    request_body = CreateUpstream,
    responses(
        (status = 201, body = UpstreamResponse),
        RequestErrors,
        (status = 409, body = ErrorBody, description = "A second default, or more than 50 upstreams in the workspace"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(gw): State<GatewayState>,
    Authed(caller): Authed,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let mut config: Map<String, Value> = parse_json(&body)?;
    let requested = match config.remove("workspace_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(_) => return Err(ApiError::bad_request("workspace_id must be a string")),
    };
    let ws = workspace(&gw, &caller, requested.as_deref()).await?;
    let u = validate(&config)?;
    let existing = gw.app.store.gateway_upstreams(ws).await?;
    if existing.len() >= MAX_PER_WORKSPACE {
        return Err(ApiError::conflict(format!(
            "A workspace may hold at most {MAX_PER_WORKSPACE} gateway upstreams"
        )));
    }
    check_default(&u, &existing, None)?;
    let now = tracecast_model::time::now_rfc3339();
    let stored = GatewayUpstream {
        id: Uuid::now_v7(),
        workspace_id: ws,
        config: canonical(&u),
        created_at: now.clone(),
        updated_at: now,
    };
    gw.app.store.insert_gateway_upstream(&stored).await?;
    gw.inner.forget(ws);
    Ok((StatusCode::CREATED, Json(json!({"data": view(&stored)}))))
}

/// The stored document: the validated settings, without unset optional fields.
fn canonical(u: &UpstreamSettings) -> Map<String, Value> {
    match serde_json::to_value(u) {
        Ok(Value::Object(mut m)) => {
            m.retain(|_, v| !v.is_null());
            m
        }
        _ => Map::new(),
    }
}

async fn find(
    gw: &GatewayState,
    ws: Uuid,
    id: &str,
) -> ApiResult<(GatewayUpstream, Vec<GatewayUpstream>)> {
    let id = parse_id(id)?;
    let all = gw.app.store.gateway_upstreams(ws).await?;
    let found = all
        .iter()
        .find(|u| u.id == id)
        .cloned()
        .ok_or_else(ApiError::not_found)?;
    Ok((found, all))
}

#[utoipa::path(
    get, path = "/api/v1/gateway/upstreams/{id}", tag = "Gateway upstreams",
    params(("id" = Uuid, Path, description = "The upstream id"), ("workspace_id" = Option<String>, Query, description = "Workspace id or slug; default: the key's workspace")),
    responses((status = 200, body = UpstreamResponse), RequestErrors),
    security(("bearer" = []))
)]
pub async fn get(
    State(gw): State<GatewayState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(q.as_deref());
    let ws = workspace(&gw, &caller, q.str("workspace_id")).await?;
    let (u, _) = find(&gw, ws, &id).await?;
    Ok(Json(json!({"data": view(&u)})))
}

#[utoipa::path(
    patch, path = "/api/v1/gateway/upstreams/{id}", tag = "Gateway upstreams",
    params(("id" = Uuid, Path, description = "The upstream id"), ("workspace_id" = Option<String>, Query, description = "Workspace id or slug; default: the key's workspace")),
    request_body = UpdateUpstream,
    responses(
        (status = 200, body = UpstreamResponse),
        RequestErrors,
        (status = 409, body = ErrorBody, description = "A second default in the workspace"),
    ),
    security(("bearer" = []))
)]
/// Only the fields sent change; `null` clears an optional field. A masked `api_key` sent back
/// keeps the stored one. Changing `base_url` needs the `api_key` sent again (the credential
/// must not follow a new URL silently).
pub async fn update(
    State(gw): State<GatewayState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(q.as_deref());
    let ws = workspace(&gw, &caller, q.str("workspace_id")).await?;
    let (mut stored, all) = find(&gw, ws, &id).await?;
    let patch: Map<String, Value> = parse_json(&body)?;
    let mut config = stored.config.clone();
    let mut key_sent = false;
    for (k, v) in patch {
        match (k.as_str(), &v) {
            ("api_key", Value::String(s)) if looks_masked(s) => {}
            (_, Value::Null) => {
                config.remove(&k);
            }
            _ => {
                key_sent |= k == "api_key";
                config.insert(k, v);
            }
        }
    }
    if config.get("base_url") != stored.config.get("base_url")
        && stored.config.contains_key("api_key")
        && !key_sent
        && config.contains_key("api_key")
    {
        return Err(ApiError::bad_request(
            "api_key must be sent again when base_url changes",
        ));
    }
    let u = validate(&config)?;
    check_default(&u, &all, Some(stored.id))?;
    stored.config = canonical(&u);
    stored.updated_at = tracecast_model::time::now_rfc3339();
    gw.app.store.update_gateway_upstream(&stored).await?;
    gw.inner.forget(ws);
    Ok(Json(json!({"data": view(&stored)})))
}

#[utoipa::path(
    delete, path = "/api/v1/gateway/upstreams/{id}", tag = "Gateway upstreams",
    params(("id" = Uuid, Path, description = "The upstream id"), ("workspace_id" = Option<String>, Query, description = "Workspace id or slug; default: the key's workspace")),
    responses((status = 200, body = Deleted), RequestErrors),
    security(("bearer" = []))
)]
pub async fn delete(
    State(gw): State<GatewayState>,
    Authed(caller): Authed,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    let q = QueryParams::parse(q.as_deref());
    let ws = workspace(&gw, &caller, q.str("workspace_id")).await?;
    let id = parse_id(&id)?;
    let now = tracecast_model::time::now_rfc3339();
    gw.app.store.delete_gateway_upstream(ws, id, &now).await?;
    gw.inner.forget(ws);
    Ok(Json(json!({"deleted": true})))
}
