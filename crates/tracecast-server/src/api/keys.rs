//! `/api/v1/keys` and `/api/v1/key`: API keys.
//!
//! OpenRouter's key objects also carry spend and billing fields; tracecast meters no spend, so
//! they are left out rather than invented, and requests that try to set them get 400.
//!
//! Workspace keys are what OpenRouter's `/keys` lists. Management keys (tracecast extension)
//! go through the same routes: `GET /keys?kind=management` lists the tenant's, `POST /keys`
//! with `"kind": "management"` creates one, and `/keys/{hash}` reads, disables, expires or
//! deletes either kind. Every key object says its `kind`. A tenant's last active management
//! key cannot be disabled, expired or deleted (409): that would lock the account out.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracecast_model::api_key::{KeyKind, is_key_hash};
use tracecast_model::workspace::validate_name;
use tracecast_model::{ApiKey, time};
use tracecast_store::PageRequest;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, QueryParams};
use crate::provision::new_key;
use crate::state::AppState;

use super::{Deleted, ErrorBody, ItemErrors, RequestErrors};

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    /// Hex SHA-256 of the key: its identifier, and what `api_key_hashes` lists.
    pub hash: String,
    pub name: String,
    /// Non-secret rendering of the key: its prefix and last 4 characters (`sk-tc-v1-...9a1c`).
    pub label: String,
    /// `workspace` or `management` (tracecast extension).
    pub kind: String,
    pub disabled: bool,
    pub workspace_id: Uuid,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub expires_at: Option<String>,
    pub creator_user_id: Option<String>,
}

impl From<&ApiKey> for KeyOut {
    fn from(k: &ApiKey) -> Self {
        KeyOut {
            hash: k.hash.clone(),
            name: k.name.clone(),
            label: k.label.clone(),
            kind: k.kind.as_str().to_string(),
            disabled: k.disabled,
            workspace_id: k.workspace_id,
            created_at: k.created_at.clone(),
            updated_at: k.updated_at.clone(),
            expires_at: k.expires_at.clone(),
            creator_user_id: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyResponse {
    pub data: KeyOut,
}

#[derive(Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyOut>,
    pub total_count: u64,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    pub data: KeyOut,
    /// The key itself. It is shown only in this response.
    pub key: String,
}

#[derive(Serialize, ToSchema)]
pub struct CurrentKey {
    pub label: String,
    pub name: String,
    pub hash: String,
    pub is_management_key: bool,
    pub is_provisioning_key: bool,
    pub workspace_id: Uuid,
    pub disabled: bool,
    pub created_at: String,
    pub expires_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CurrentKeyResponse {
    pub data: CurrentKey,
}

/// Spend-limit fields OpenRouter accepts but tracecast cannot honour: null or absent is fine,
/// a value gets 400 rather than being silently ignored.
fn reject_billing(
    limit: &Option<Value>,
    limit_reset: &Option<Value>,
    include_byok: Option<bool>,
) -> ApiResult<()> {
    for (name, v) in [("limit", limit), ("limit_reset", limit_reset)] {
        if v.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{name} is not supported: tracecast does not meter spend"
            )));
        }
    }
    if include_byok == Some(true) {
        return Err(ApiError::bad_request(
            "include_byok_in_limit is not supported: tracecast does not meter spend",
        ));
    }
    Ok(())
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyRequest {
    pub name: String,
    /// `workspace` (default) or `management` (tracecast extension).
    pub kind: Option<String>,
    /// Workspace id or slug; default: the caller's default workspace. Not for management keys.
    pub workspace_id: Option<String>,
    /// RFC 3339 UTC time after which the key stops working.
    pub expires_at: Option<String>,
    #[schema(ignore)]
    #[serde(default)]
    pub creator_user_id: Option<String>,
    #[schema(ignore)]
    #[serde(default)]
    pub limit: Option<Value>,
    #[schema(ignore)]
    #[serde(default)]
    pub limit_reset: Option<Value>,
    #[schema(ignore)]
    #[serde(default)]
    pub include_byok_in_limit: Option<bool>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateKeyRequest {
    pub name: Option<String>,
    pub disabled: Option<bool>,
    /// Move the key to another workspace (id or slug) of the tenant. Not for management keys.
    pub workspace_id: Option<String>,
    /// RFC 3339 UTC time after which the key stops working; `null` removes the expiry
    /// (tracecast extension).
    #[serde(default, deserialize_with = "crate::extract::double_option")]
    #[schema(value_type = Option<String>)]
    pub expires_at: Option<Option<String>>,
    #[schema(ignore)]
    #[serde(default)]
    pub limit: Option<Value>,
    #[schema(ignore)]
    #[serde(default)]
    pub limit_reset: Option<Value>,
    #[schema(ignore)]
    #[serde(default)]
    pub include_byok_in_limit: Option<bool>,
}

fn parse_expiry(s: &str) -> ApiResult<String> {
    let t = DateTime::parse_from_rfc3339(s).map_err(|_| {
        ApiError::bad_request(format!(
            "expires_at must be an RFC 3339 timestamp, got {s:?}"
        ))
    })?;
    if t.offset().local_minus_utc() != 0 {
        return Err(ApiError::bad_request(
            "expires_at must be in UTC (end with Z or +00:00)",
        ));
    }
    let t = t.with_timezone(&Utc);
    if t <= Utc::now() {
        return Err(ApiError::bad_request("expires_at must be in the future"));
    }
    Ok(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A key (workspace or management) of the caller's tenant, by hash.
async fn find(state: &AppState, caller: &Caller, hash: &str) -> ApiResult<ApiKey> {
    let me = caller.management()?;
    if !is_key_hash(hash) {
        return Err(ApiError::not_found());
    }
    state
        .store
        .key_by_hash(&hash.to_ascii_lowercase())
        .await?
        .filter(|k| k.tenant_id == me.tenant_id)
        .ok_or_else(ApiError::not_found)
}

/// The `kind` of a list filter or a create body: `workspace` (default) or `management`.
pub fn parse_kind(v: Option<&str>) -> ApiResult<KeyKind> {
    match v {
        None => Ok(KeyKind::Workspace),
        Some(s) => KeyKind::parse(s).ok_or_else(|| {
            ApiError::bad_request(format!("kind must be workspace or management, got {s:?}"))
        }),
    }
}

#[utoipa::path(
    get, path = "/api/v1/keys", tag = "API Keys",
    params(
        ("include_disabled" = Option<bool>, Query, description = "Include disabled keys"),
        ("offset" = Option<u64>, Query, description = "Number of records to skip (default 0)"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 100 (default 100)"),
        ("workspace_id" = Option<String>, Query, description = "Workspace; default: the caller's default workspace"),
        ("kind" = Option<String>, Query, description = "tracecast extension: `workspace` (default) or `management` (the tenant's management keys; no workspace_id)"),
    ),
    responses((status = 200, body = KeyList), RequestErrors),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<KeyList>> {
    caller.management()?;
    let q = QueryParams::parse(q.as_deref());
    let include_disabled = q.bool("include_disabled", false)?;
    let page = PageRequest {
        offset: q.int("offset", 0, 0, u64::MAX >> 1)?,
        limit: q.int("limit", 100, 1, 100)?,
    };
    let kind = parse_kind(q.str("kind"))?;
    let page = list_keys(
        &state,
        &caller,
        kind,
        q.str("workspace_id"),
        include_disabled,
        page,
    )
    .await?;
    Ok(Json(KeyList {
        data: page.items.iter().map(KeyOut::from).collect(),
        total_count: page.total,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/keys", tag = "API Keys", request_body = CreateKeyRequest,
    responses((status = 201, body = CreatedKey), RequestErrors),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateKeyRequest>,
) -> ApiResult<(StatusCode, Json<CreatedKey>)> {
    let (key, raw) = create_key(&state, &caller, &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            data: (&key).into(),
            key: raw,
        }),
    ))
}

/// Creates a key (workspace or management) of the caller's tenant; returns it and the key
/// itself, which is shown only this once.
pub async fn create_key(
    state: &AppState,
    caller: &Caller,
    req: &CreateKeyRequest,
) -> ApiResult<(ApiKey, String)> {
    let me = caller.management()?;
    reject_billing(&req.limit, &req.limit_reset, req.include_byok_in_limit)?;
    validate_name("name", &req.name)?;
    let expires_at = req.expires_at.as_deref().map(parse_expiry).transpose()?;
    let kind = parse_kind(req.kind.as_deref())?;
    let ws = match kind {
        KeyKind::Workspace => caller.workspace(state, req.workspace_id.as_deref()).await?,
        KeyKind::Management => {
            if req.workspace_id.is_some() {
                return Err(ApiError::bad_request(
                    "workspace_id does not apply to a management key: it belongs to the account",
                ));
            }
            state.store.default_workspace(me.tenant_id).await?
        }
    };
    let (key, raw) = new_key(kind, me.tenant_id, ws.id, &req.name, expires_at, None);
    state.store.insert_key(&key).await?;
    tracing::info!(key = %key.label, kind = kind.as_str(), workspace = %ws.id, "API key created");
    Ok((key, raw))
}

#[utoipa::path(
    get, path = "/api/v1/keys/{hash}", tag = "API Keys",
    params(("hash" = String, Path, description = "The key's hash")),
    responses((status = 200, body = KeyResponse), ItemErrors),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Json<KeyResponse>> {
    let key = find(&state, &caller, &hash).await?;
    Ok(Json(KeyResponse {
        data: (&key).into(),
    }))
}

#[utoipa::path(
    patch, path = "/api/v1/keys/{hash}", tag = "API Keys", request_body = UpdateKeyRequest,
    params(("hash" = String, Path, description = "The key's hash")),
    responses(
        (status = 200, body = KeyResponse), RequestErrors,
        (status = 409, body = ErrorBody, description = "It is the account's last active management key"),
    ),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
    ApiJson(req): ApiJson<UpdateKeyRequest>,
) -> ApiResult<Json<KeyResponse>> {
    let key = update_key(&state, &caller, &hash, req).await?;
    Ok(Json(KeyResponse {
        data: (&key).into(),
    }))
}

/// Updates a key of the caller's tenant (name, disabled, workspace, expiry).
pub async fn update_key(
    state: &AppState,
    caller: &Caller,
    hash: &str,
    req: UpdateKeyRequest,
) -> ApiResult<ApiKey> {
    let mut key = find(state, caller, hash).await?;
    reject_billing(&req.limit, &req.limit_reset, req.include_byok_in_limit)?;
    if let Some(name) = req.name {
        validate_name("name", &name)?;
        key.name = name;
    }
    if let Some(d) = req.disabled {
        key.disabled = d;
    }
    if let Some(ws) = req.workspace_id.as_deref() {
        if key.is_management() {
            return Err(ApiError::bad_request(
                "workspace_id does not apply to a management key: it belongs to the account",
            ));
        }
        key.workspace_id = caller.workspace(state, Some(ws)).await?.id;
    }
    match &req.expires_at {
        None => {}
        Some(None) => key.expires_at = None,
        Some(Some(e)) => key.expires_at = Some(parse_expiry(e)?),
    }
    key.updated_at = Some(time::now_rfc3339());
    state.store.update_key(&key).await?;
    state.keys.forget(&key.hash);
    tracing::info!(key = %key.label, kind = key.kind.as_str(), disabled = key.disabled, "API key updated");
    Ok(key)
}

#[utoipa::path(
    delete, path = "/api/v1/keys/{hash}", tag = "API Keys",
    params(("hash" = String, Path, description = "The key's hash")),
    responses(
        (status = 200, body = Deleted), ItemErrors,
        (status = 409, body = ErrorBody, description = "It is the account's last active management key"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(hash): Path<String>,
) -> ApiResult<Json<Deleted>> {
    delete_key(&state, &caller, &hash).await?;
    Ok(Json(Deleted { deleted: true }))
}

/// Deletes a key of the caller's tenant (not its last active management key: 409).
pub async fn delete_key(state: &AppState, caller: &Caller, hash: &str) -> ApiResult<()> {
    let key = find(state, caller, hash).await?;
    state.store.delete_key(&key.hash).await?;
    state.keys.forget(&key.hash);
    tracing::info!(key = %key.label, kind = key.kind.as_str(), "API key deleted");
    Ok(())
}

/// A page of the caller's tenant's keys: one workspace's (`workspace`: id or slug; `None`:
/// the key's default workspace) or the management keys.
pub async fn list_keys(
    state: &AppState,
    caller: &Caller,
    kind: KeyKind,
    workspace: Option<&str>,
    include_disabled: bool,
    page: PageRequest,
) -> ApiResult<tracecast_store::Page<ApiKey>> {
    let me = caller.management()?;
    Ok(match kind {
        KeyKind::Workspace => {
            let ws = caller.workspace(state, workspace).await?;
            state.store.list_keys(ws.id, include_disabled, page).await?
        }
        KeyKind::Management => {
            if workspace.is_some() {
                return Err(ApiError::bad_request(
                    "workspace_id does not apply to kind=management: management keys belong to the account",
                ));
            }
            state
                .store
                .list_management_keys(me.tenant_id, include_disabled, page)
                .await?
        }
    })
}

#[utoipa::path(
    get, path = "/api/v1/key", tag = "API Keys",
    responses((status = 200, body = CurrentKeyResponse), (status = 401, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn current(caller: Caller) -> Json<CurrentKeyResponse> {
    let k = caller.0;
    Json(CurrentKeyResponse {
        data: CurrentKey {
            label: k.label,
            name: k.name,
            hash: k.hash,
            is_management_key: k.kind == KeyKind::Management,
            is_provisioning_key: false,
            workspace_id: k.workspace_id,
            disabled: k.disabled,
            created_at: k.created_at,
            expires_at: k.expires_at,
        },
    })
}
