//! `/api/v1/workspaces`: the workspaces of the caller's tenant.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::Serialize;
use serde_json::{Map, Value};
use tracecast_model::workspace::{SETTINGS_DEFAULTS, validate_name, validate_slug};
use tracecast_model::{Workspace, time};
use tracecast_store::PageRequest;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, QueryParams};
use crate::state::AppState;

use super::{Deleted, ErrorBody, ItemErrors, RequestErrors};

/// A workspace in OpenRouter's shape. Model defaults and I/O-logging settings are stored and
/// returned as given; tracecast does not act on them.
#[derive(Serialize, ToSchema)]
pub struct WorkspaceOut {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub description: Option<String>,
    pub default_guardrail_id: Uuid,
    pub default_text_model: Option<String>,
    pub default_image_model: Option<String>,
    pub default_provider_sort: Option<String>,
    /// Master switch: when false no destination of the workspace receives anything.
    pub is_observability_broadcast_enabled: bool,
    pub is_observability_io_logging_enabled: bool,
    pub is_data_discount_logging_enabled: bool,
    pub io_logging_sampling_rate: f64,
    pub io_logging_api_key_ids: Option<Vec<i64>>,
    pub disabled_server_tools: Option<Vec<String>>,
    pub created_at: String,
    pub updated_at: Option<String>,
    pub created_by: Option<String>,
}

impl From<&Workspace> for WorkspaceOut {
    fn from(w: &Workspace) -> Self {
        let get = |k: &str| {
            w.settings.get(k).cloned().unwrap_or_else(|| {
                SETTINGS_DEFAULTS
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, kind)| kind.default_value())
                    .unwrap_or(Value::Null)
            })
        };
        let string = |k: &str| get(k).as_str().map(str::to_string);
        WorkspaceOut {
            id: w.id,
            name: w.name.clone(),
            slug: w.slug.clone(),
            description: w.description.clone(),
            default_guardrail_id: w.default_guardrail_id(),
            default_text_model: string("default_text_model"),
            default_image_model: string("default_image_model"),
            default_provider_sort: string("default_provider_sort"),
            is_observability_broadcast_enabled: w.is_observability_broadcast_enabled,
            is_observability_io_logging_enabled: get("is_observability_io_logging_enabled")
                .as_bool()
                .unwrap_or(false),
            is_data_discount_logging_enabled: get("is_data_discount_logging_enabled")
                .as_bool()
                .unwrap_or(true),
            io_logging_sampling_rate: get("io_logging_sampling_rate").as_f64().unwrap_or(1.0),
            io_logging_api_key_ids: serde_json::from_value(get("io_logging_api_key_ids"))
                .unwrap_or(None),
            disabled_server_tools: serde_json::from_value(get("disabled_server_tools"))
                .unwrap_or(None),
            created_at: w.created_at.clone(),
            updated_at: w.updated_at.clone(),
            created_by: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceResponse {
    pub data: WorkspaceOut,
}

#[derive(Serialize, ToSchema)]
pub struct WorkspaceList {
    pub data: Vec<WorkspaceOut>,
    pub total_count: u64,
}

/// Applies a create/update body to `ws`. Every key is checked; unknown ones get 400.
fn apply_body(ws: &mut Workspace, body: &Map<String, Value>, creating: bool) -> ApiResult<()> {
    for (k, v) in body {
        match k.as_str() {
            "name" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("name must be a string"))?;
                validate_name("name", s)?;
                ws.name = s.to_string();
            }
            "slug" => {
                let s = v
                    .as_str()
                    .ok_or_else(|| ApiError::bad_request("slug must be a string"))?;
                validate_slug(s)?;
                ws.slug = s.to_string();
            }
            "description" => {
                ws.description = match v {
                    Value::Null => None,
                    Value::String(s) if s.chars().count() <= 1024 => Some(s.clone()),
                    _ => {
                        return Err(ApiError::bad_request(
                            "description must be a string of at most 1024 characters or null",
                        ));
                    }
                }
            }
            "is_observability_broadcast_enabled" => {
                ws.is_observability_broadcast_enabled = v.as_bool().ok_or_else(|| {
                    ApiError::bad_request("is_observability_broadcast_enabled must be a boolean")
                })?;
            }
            other => {
                let (_, kind) = SETTINGS_DEFAULTS
                    .iter()
                    .find(|(n, _)| *n == other)
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("{other} is not a valid workspace field"))
                    })?;
                kind.check(other, v)?;
                ws.settings.insert(other.to_string(), v.clone());
            }
        }
    }
    if creating {
        for required in ["name", "slug"] {
            if !body.contains_key(required) {
                return Err(ApiError::bad_request(format!("{required} is required")));
            }
        }
    }
    Ok(())
}

/// A live workspace of the caller's tenant by id or slug; 404 for any other.
pub async fn find(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Workspace> {
    let key = caller.management()?;
    state
        .store
        .find_workspace(key.tenant_id, id)
        .await?
        .ok_or_else(ApiError::not_found)
}

#[utoipa::path(
    get, path = "/api/v1/workspaces", tag = "Workspaces",
    params(
        ("offset" = Option<u64>, Query, description = "Number of records to skip (default 0)"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 100 (default 50)"),
    ),
    responses((status = 200, body = WorkspaceList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<WorkspaceList>> {
    let key = caller.management()?;
    let q = QueryParams::parse(q.as_deref());
    let page = PageRequest {
        offset: q.int("offset", 0, 0, u64::MAX >> 1)?,
        limit: q.int("limit", 50, 1, 100)?,
    };
    let page = state.store.list_workspaces(key.tenant_id, page).await?;
    Ok(Json(WorkspaceList {
        data: page.items.iter().map(WorkspaceOut::from).collect(),
        total_count: page.total,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/workspaces", tag = "Workspaces", request_body(content = Object, description = "Workspace fields: `name` and `slug` (required on create), `description`, `is_observability_broadcast_enabled`, and the stored passthrough settings `default_text_model`, `default_image_model`, `default_provider_sort`, `is_observability_io_logging_enabled`, `is_data_discount_logging_enabled`, `io_logging_sampling_rate`, `io_logging_api_key_ids`, `disabled_server_tools`"),
    responses((status = 201, body = WorkspaceResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "Slug already used")),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<(StatusCode, Json<WorkspaceResponse>)> {
    let ws = create_workspace(&state, &caller, &body).await?;
    Ok((
        StatusCode::CREATED,
        Json(WorkspaceResponse { data: (&ws).into() }),
    ))
}

/// Creates a workspace of the caller's tenant from API fields (`name` and `slug` required).
pub async fn create_workspace(
    state: &AppState,
    caller: &Caller,
    body: &Map<String, Value>,
) -> ApiResult<Workspace> {
    let key = caller.management()?;
    let max = state.limits.max_workspaces_per_tenant;
    let page = tracecast_store::PageRequest {
        offset: 0,
        limit: 1,
    };
    if state
        .store
        .list_workspaces(key.tenant_id, page)
        .await?
        .total
        >= max
    {
        return Err(ApiError::conflict(format!(
            "The tenant already holds {max} workspaces (limits.max_workspaces_per_tenant)"
        )));
    }
    let mut ws = Workspace {
        id: Uuid::now_v7(),
        tenant_id: key.tenant_id,
        name: String::new(),
        slug: String::new(),
        description: None,
        is_default: false,
        is_observability_broadcast_enabled: true,
        settings: Map::new(),
        created_at: time::now_rfc3339(),
        updated_at: None,
    };
    apply_body(&mut ws, body, true)?;
    state.store.insert_workspace(&ws).await?;
    Ok(ws)
}

#[utoipa::path(
    get, path = "/api/v1/workspaces/{id}", tag = "Workspaces",
    params(("id" = String, Path, description = "Workspace id or slug")),
    responses((status = 200, body = WorkspaceResponse), ItemErrors),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WorkspaceResponse>> {
    let ws = find(&state, &caller, &id).await?;
    Ok(Json(WorkspaceResponse { data: (&ws).into() }))
}

#[utoipa::path(
    patch, path = "/api/v1/workspaces/{id}", tag = "Workspaces", request_body(content = Object, description = "Workspace fields: `name` and `slug` (required on create), `description`, `is_observability_broadcast_enabled`, and the stored passthrough settings `default_text_model`, `default_image_model`, `default_provider_sort`, `is_observability_io_logging_enabled`, `is_data_discount_logging_enabled`, `io_logging_sampling_rate`, `io_logging_api_key_ids`, `disabled_server_tools`"),
    params(("id" = String, Path, description = "Workspace id or slug")),
    responses((status = 200, body = WorkspaceResponse), RequestErrors, (status = 409, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Json<WorkspaceResponse>> {
    let ws = update_workspace(&state, &caller, &id, &body).await?;
    Ok(Json(WorkspaceResponse { data: (&ws).into() }))
}

/// Updates a workspace of the caller's tenant (id or slug) from API fields, and applies the
/// change (the broadcast switch) to the workers.
pub async fn update_workspace(
    state: &AppState,
    caller: &Caller,
    id: &str,
    body: &Map<String, Value>,
) -> ApiResult<Workspace> {
    let mut ws = find(state, caller, id).await?;
    apply_body(&mut ws, body, false)?;
    ws.updated_at = Some(time::now_rfc3339());
    state.store.update_workspace(&ws).await?;
    state.reload().await;
    Ok(ws)
}

/// Every live workspace of the caller's tenant, oldest first (at most
/// `limits.max_workspaces_per_tenant`).
pub async fn all_workspaces(state: &AppState, caller: &Caller) -> ApiResult<Vec<Workspace>> {
    let key = caller.management()?;
    let mut out = Vec::new();
    loop {
        let page = state
            .store
            .list_workspaces(
                key.tenant_id,
                PageRequest {
                    offset: out.len() as u64,
                    limit: 100,
                },
            )
            .await?;
        let got = page.items.len();
        out.extend(page.items);
        if got == 0 || out.len() as u64 >= page.total {
            return Ok(out);
        }
    }
}

#[utoipa::path(
    delete, path = "/api/v1/workspaces/{id}", tag = "Workspaces",
    params(("id" = String, Path, description = "Workspace id or slug")),
    responses((status = 200, body = Deleted), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody, description = "The default workspace cannot be deleted"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "The workspace still has active API keys")),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    let ws = find(&state, &caller, &id).await?;
    if ws.is_default {
        return Err(ApiError::forbidden(
            "The default workspace cannot be deleted",
        ));
    }
    let keys = state.store.count_active_workspace_keys(ws.id).await?;
    if keys > 0 {
        return Err(ApiError::conflict(format!(
            "Workspace has {keys} active API key(s); delete, disable or move them first"
        )));
    }
    state
        .store
        .delete_workspace(ws.id, &time::now_rfc3339())
        .await?;
    Ok(Json(Deleted { deleted: true }))
}
