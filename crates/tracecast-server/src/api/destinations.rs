//! `/api/v1/observability/destinations`: OpenRouter's observability-destinations API.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use tracecast_model::destination::{
    MAX_PER_TYPE, normalize_key_hashes, validate_destination_name, validate_sampling_rate,
};
use tracecast_model::filter::FilterRules;
use tracecast_model::{
    Destination, DestinationPatch, DestinationType, NewDestination, Patch, Region, ValidationError,
    Workspace, config, time,
};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ApiJson, QueryParams, double_option};
use crate::state::AppState;

use super::{Deleted, ErrorBody, ItemErrors, RequestErrors};

/// A destination as the API returns it: every field present, nulls explicit, secrets masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct DestinationOut {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub name: Option<String>,
    pub enabled: bool,
    pub privacy_mode: bool,
    pub broadcast_generation_cost: bool,
    pub broadcast_generation_identity: bool,
    pub broadcast_generation_request_context: bool,
    /// Beta: include per-token-kind usage and cost when they reconcile with the billed cost.
    pub broadcast_generation_cost_allocation: bool,
    #[serde(serialize_with = "whole_as_integer")]
    pub sampling_rate: f64,
    pub api_key_hashes: Option<Vec<String>>,
    pub filter_rules: Option<FilterRules>,
    pub regions: Vec<Region>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(rename = "type")]
    pub ty: DestinationType,
    /// The type's config; secrets and header values masked (`pk-l...AbCd`).
    #[schema(value_type = Object)]
    pub config: Map<String, Value>,
}

/// Whole sampling rates render as integers (`1`), as OpenRouter's API does.
fn whole_as_integer<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        s.serialize_i64(*v as i64)
    } else {
        s.serialize_f64(*v)
    }
}

impl From<&Destination> for DestinationOut {
    fn from(d: &Destination) -> Self {
        DestinationOut {
            id: d.id,
            workspace_id: d.workspace_id,
            name: d.name.clone(),
            enabled: d.enabled,
            privacy_mode: d.privacy_mode,
            broadcast_generation_cost: d.broadcast_generation_cost,
            broadcast_generation_identity: d.broadcast_generation_identity,
            broadcast_generation_request_context: d.broadcast_generation_request_context,
            broadcast_generation_cost_allocation: d.broadcast_generation_cost_allocation,
            sampling_rate: d.sampling_rate,
            api_key_hashes: d.api_key_hashes.clone(),
            filter_rules: d.filter_rules.clone(),
            regions: d.regions.clone(),
            created_at: d.created_at.clone(),
            updated_at: d.updated_at.clone(),
            ty: d.ty,
            config: config::masked(d.ty, &d.config),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct DestinationResponse {
    pub data: DestinationOut,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationList {
    pub data: Vec<DestinationOut>,
    /// Total number of destinations in the workspace.
    pub total_count: u64,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateDestinationRequest {
    /// One of the 19 destination types.
    #[serde(rename = "type")]
    #[schema(value_type = DestinationType)]
    pub ty: String,
    pub name: String,
    /// The type's config object (camelCase keys), validated against the type's schema.
    #[schema(value_type = Object)]
    pub config: Value,
    pub enabled: Option<bool>,
    pub privacy_mode: Option<bool>,
    pub broadcast_generation_cost: Option<bool>,
    pub broadcast_generation_identity: Option<bool>,
    pub broadcast_generation_request_context: Option<bool>,
    pub broadcast_generation_cost_allocation: Option<bool>,
    pub sampling_rate: Option<f64>,
    /// Allowlist of API key hashes; omitted or null admits every key.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub api_key_hashes: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<FilterRules>)]
    pub filter_rules: Option<Option<Value>>,
    /// `global`, `europe` (or `eu`), `us`; default `["global"]`.
    pub regions: Option<Vec<String>>,
    /// Workspace id (or slug); omitted: the key's default workspace. `null` is refused (the
    /// spec types it as a string).
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub workspace_id: Option<Option<String>>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UpdateDestinationRequest {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub privacy_mode: Option<bool>,
    pub broadcast_generation_cost: Option<bool>,
    pub broadcast_generation_identity: Option<bool>,
    pub broadcast_generation_request_context: Option<bool>,
    pub broadcast_generation_cost_allocation: Option<bool>,
    pub sampling_rate: Option<f64>,
    /// Omitted keeps, null clears (all keys), a list replaces.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub api_key_hashes: Option<Option<Vec<String>>>,
    /// Omitted keeps, null clears.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<FilterRules>)]
    pub filter_rules: Option<Option<Value>>,
    /// Omitted keeps; cannot be cleared.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    pub regions: Option<Option<Vec<String>>>,
    /// Partial config: unsent fields keep their values, masked values are ignored.
    #[schema(value_type = Option<Object>)]
    pub config: Option<Value>,
    /// Not updatable; present only to answer with a clear 400.
    #[serde(rename = "type")]
    #[schema(ignore)]
    pub ty: Option<Value>,
    /// Not updatable; present only to answer with a clear 400.
    #[schema(ignore)]
    pub workspace_id: Option<Value>,
}

/// Checks that every hash names a workspace key of `ws`.
async fn check_key_hashes(
    state: &AppState,
    ws: &Workspace,
    hashes: &[String],
) -> ApiResult<Vec<String>> {
    let hashes = normalize_key_hashes(hashes)?;
    for (i, h) in hashes.iter().enumerate() {
        let ok = state
            .store
            .key_by_hash(h)
            .await?
            .is_some_and(|k| !k.is_management() && k.workspace_id == ws.id);
        if !ok {
            return Err(ApiError::bad_request(format!(
                "api_key_hashes[{i}] is not the hash of an API key in workspace {}",
                ws.id
            )));
        }
    }
    Ok(hashes)
}

/// S3: puts the workspace's server-issued ExternalId into `cfg` ([`config::S3_EXTERNAL_ID`]).
/// A client may send back the value it read, but any other value is refused: the tenant does
/// not choose the ExternalId its role is assumed with (confused-deputy prevention).
async fn server_external_id(
    state: &AppState,
    ty: DestinationType,
    workspace: Uuid,
    sent: Option<&Value>,
    cfg: &mut Map<String, Value>,
) -> ApiResult<()> {
    if ty != DestinationType::S3 {
        return Ok(());
    }
    // Issued on first use, so that it is there when the destination (now or later) assumes
    // a role; shown only in iam_role configs.
    let issued = state.store.workspace_external_id(workspace).await?;
    if sent.is_some_and(|v| !v.is_null() && v.as_str() != Some(issued.as_str())) {
        return Err(ApiError::bad_request(format!(
            "config.{} is issued by the server (this workspace's is {issued}); omit it and put the issued value in the role's trust policy",
            config::S3_EXTERNAL_ID
        )));
    }
    config::set_server_external_id(ty, cfg, Some(&issued));
    Ok(())
}

fn parse_filter_rules(v: &Value) -> Result<FilterRules, ValidationError> {
    FilterRules::parse("filter_rules", v)
}

pub(crate) fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found())
}

/// Validates a create body into a new destination (shared by create and test).
pub async fn validate_new(
    state: &AppState,
    caller: &Caller,
    req: &CreateDestinationRequest,
) -> ApiResult<NewDestination> {
    let ty = DestinationType::parse(&req.ty).ok_or_else(|| {
        let all: Vec<&str> = DestinationType::ALL.iter().map(|t| t.as_str()).collect();
        ApiError::bad_request(format!(
            "type must be one of {}, got {:?}",
            all.join(", "),
            req.ty
        ))
    })?;
    let name = validate_destination_name(&req.name)?;
    let cfg = config::validate(ty, &req.config)?;
    let sampling_rate = validate_sampling_rate(req.sampling_rate.unwrap_or(1.0))?;
    let filter_rules = match &req.filter_rules {
        Some(Some(v)) => Some(parse_filter_rules(v)?),
        _ => None,
    };
    let regions = match &req.regions {
        Some(r) => Region::parse_list("regions", r)?,
        None => vec![Region::Global],
    };
    let requested_ws = match &req.workspace_id {
        None => None,
        Some(Some(w)) => Some(w.as_str()),
        Some(None) => {
            return Err(ApiError::bad_request(
                "workspace_id must be a string (a workspace id or slug); omit it for the key's default workspace",
            ));
        }
    };
    let ws = caller.workspace(state, requested_ws).await?;
    let mut cfg = cfg;
    server_external_id(
        state,
        ty,
        ws.id,
        req.config.get(config::S3_EXTERNAL_ID),
        &mut cfg,
    )
    .await?;
    let api_key_hashes = match &req.api_key_hashes {
        Some(Some(h)) => Some(check_key_hashes(state, &ws, h).await?),
        _ => None,
    };
    let new = NewDestination {
        workspace_id: ws.id,
        ty,
        name,
        enabled: req.enabled.unwrap_or(true),
        privacy_mode: req.privacy_mode.unwrap_or(false),
        broadcast_generation_cost: req.broadcast_generation_cost.unwrap_or(false),
        broadcast_generation_identity: req.broadcast_generation_identity.unwrap_or(false),
        broadcast_generation_request_context: req
            .broadcast_generation_request_context
            .unwrap_or(false),
        broadcast_generation_cost_allocation: req
            .broadcast_generation_cost_allocation
            .unwrap_or(false),
        sampling_rate,
        api_key_hashes,
        filter_rules,
        regions,
        config: cfg,
    };
    Ok(new)
}

#[utoipa::path(
    get, path = "/api/v1/observability/destinations", tag = "Observability",
    params(
        ("offset" = Option<u64>, Query, description = "Number of records to skip (default 0)"),
        ("limit" = Option<u64>, Query, description = "Page size, 1 to 100 (default 50)"),
        ("workspace_id" = Option<String>, Query, description = "Workspace to list; default: the key's default workspace"),
    ),
    responses(
        (status = 200, body = DestinationList),
        (status = 400, body = ErrorBody, description = "Invalid paging, or a workspace_id that names no workspace of this account"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<DestinationList>> {
    caller.management()?;
    let q = QueryParams::parse(q.as_deref());
    let offset = q.int("offset", 0, 0, u64::MAX >> 1)?;
    let limit = q.int("limit", 50, 1, 100)?;
    let page = list_destinations(
        &state,
        &caller,
        q.str("workspace_id"),
        tracecast_store::PageRequest { offset, limit },
    )
    .await?;
    Ok(Json(DestinationList {
        data: page.items.iter().map(DestinationOut::from).collect(),
        total_count: page.total,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/observability/destinations", tag = "Observability",
    request_body = CreateDestinationRequest,
    responses(
        (status = 201, body = DestinationResponse),
        (status = 400, body = ErrorBody, description = "Invalid body, or a workspace_id that names no workspace of this account"),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The workspace already holds 5 destinations of this type"),
        (status = 413, body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateDestinationRequest>,
) -> ApiResult<(StatusCode, Json<DestinationResponse>)> {
    let d = create_destination(&state, &caller, &req).await?;
    Ok((
        StatusCode::CREATED,
        Json(DestinationResponse { data: (&d).into() }),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/observability/destinations/{id}", tag = "Observability",
    params(("id" = Uuid, Path, description = "The destination id")),
    responses((status = 200, body = DestinationResponse), ItemErrors),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<DestinationResponse>> {
    let d = find_destination(&state, &caller, &id).await?;
    Ok(Json(DestinationResponse { data: (&d).into() }))
}

#[utoipa::path(
    patch, path = "/api/v1/observability/destinations/{id}", tag = "Observability",
    params(("id" = Uuid, Path, description = "The destination id")),
    request_body = UpdateDestinationRequest,
    responses((status = 200, body = DestinationResponse), RequestErrors, (status = 413, body = ErrorBody)),
    security(("bearer" = []))
)]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateDestinationRequest>,
) -> ApiResult<Json<DestinationResponse>> {
    let d = update_destination(&state, &caller, &id, &req).await?;
    Ok(Json(DestinationResponse { data: (&d).into() }))
}

/// Validates an update of destination `id` and returns the destination as it would be after
/// it, without saving anything (the dashboard tests a connection with it before saving).
pub async fn prepare_update(
    state: &AppState,
    caller: &Caller,
    id: &str,
    req: &UpdateDestinationRequest,
) -> ApiResult<Destination> {
    caller.management()?;
    if req.ty.is_some() {
        return Err(ApiError::bad_request(
            "type cannot be changed; create a new destination instead",
        ));
    }
    if req.workspace_id.is_some() {
        return Err(ApiError::bad_request(
            "workspace_id cannot be changed; create the destination in the other workspace instead",
        ));
    }
    let mut d = find_destination(state, caller, id).await?;
    let mut patch = DestinationPatch {
        name: req
            .name
            .as_deref()
            .map(validate_destination_name)
            .transpose()?,
        enabled: req.enabled,
        privacy_mode: req.privacy_mode,
        broadcast_generation_cost: req.broadcast_generation_cost,
        broadcast_generation_identity: req.broadcast_generation_identity,
        broadcast_generation_request_context: req.broadcast_generation_request_context,
        broadcast_generation_cost_allocation: req.broadcast_generation_cost_allocation,
        sampling_rate: req.sampling_rate.map(validate_sampling_rate).transpose()?,
        ..Default::default()
    };
    patch.filter_rules = match &req.filter_rules {
        None => Patch::Keep,
        Some(None) => Patch::Clear,
        Some(Some(v)) => Patch::Set(parse_filter_rules(v)?),
    };
    patch.regions = match &req.regions {
        None => None,
        Some(None) => {
            return Err(ApiError::bad_request(
                "regions cannot be cleared; send at least one region",
            ));
        }
        Some(Some(r)) => Some(Region::parse_list("regions", r)?),
    };
    if let Some(c) = &req.config {
        let mut merged = config::merge(d.ty, &d.config, c)?;
        server_external_id(
            state,
            d.ty,
            d.workspace_id,
            c.get(config::S3_EXTERNAL_ID),
            &mut merged,
        )
        .await?;
        patch.config = Some(merged);
    }
    patch.api_key_hashes = match &req.api_key_hashes {
        None => Patch::Keep,
        Some(None) => Patch::Clear,
        Some(Some(h)) => {
            let ws = state
                .store
                .workspace_by_id(d.workspace_id)
                .await?
                .ok_or_else(ApiError::not_found)?;
            Patch::Set(check_key_hashes(state, &ws, h).await?)
        }
    };
    d.apply(patch, time::now_rfc3339());
    Ok(d)
}

/// Updates destination `id` (PATCH semantics) and applies the change to the workers.
pub async fn update_destination(
    state: &AppState,
    caller: &Caller,
    id: &str,
    req: &UpdateDestinationRequest,
) -> ApiResult<Destination> {
    let d = prepare_update(state, caller, id, req).await?;
    state.store.update_destination(&d).await?;
    tracing::info!(destination = %d.id, "destination updated");
    state.reload().await;
    Ok(d)
}

#[utoipa::path(
    delete, path = "/api/v1/observability/destinations/{id}", tag = "Observability",
    params(("id" = Uuid, Path, description = "The destination id")),
    responses((status = 200, body = Deleted), ItemErrors),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Deleted>> {
    delete_destination(&state, &caller, &id).await?;
    Ok(Json(Deleted { deleted: true }))
}

// The operations behind the handlers, shared with the dashboard so that both go through the
// same authorisation and validation.

/// A live destination of the caller's tenant (management keys only); 404 for any other id.
pub async fn find_destination(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Destination> {
    let key = caller.management()?;
    state
        .store
        .get_destination(key.tenant_id, parse_id(id)?)
        .await?
        .ok_or_else(ApiError::not_found)
}

/// A page of the destinations of a workspace of the caller's tenant (`workspace`: id or slug;
/// `None`: the key's default workspace).
pub async fn list_destinations(
    state: &AppState,
    caller: &Caller,
    workspace: Option<&str>,
    page: tracecast_store::PageRequest,
) -> ApiResult<tracecast_store::Page<Destination>> {
    caller.management()?;
    let ws = caller.workspace(state, workspace).await?;
    Ok(state.store.list_destinations(ws.id, page).await?)
}

/// Validates and creates a destination, and starts delivering to it.
pub async fn create_destination(
    state: &AppState,
    caller: &Caller,
    req: &CreateDestinationRequest,
) -> ApiResult<Destination> {
    let key = caller.management()?;
    let max = state.limits.max_destinations_per_tenant;
    if state.store.count_tenant_destinations(key.tenant_id).await? >= max {
        return Err(ApiError::conflict(format!(
            "The tenant already holds {max} destinations (limits.max_destinations_per_tenant)"
        )));
    }
    let new = validate_new(state, caller, req).await?;
    let d = state
        .store
        .insert_destination(&new, Uuid::now_v7(), &time::now_rfc3339(), MAX_PER_TYPE)
        .await?;
    tracing::info!(destination = %d.id, workspace = %d.workspace_id, r#type = %d.ty, "destination created");
    state.reload().await;
    Ok(d)
}

/// Soft-deletes a destination of the caller's tenant.
pub async fn delete_destination(state: &AppState, caller: &Caller, id: &str) -> ApiResult<()> {
    let d = find_destination(state, caller, id).await?;
    state
        .store
        .delete_destination(d.id, &time::now_rfc3339())
        .await?;
    tracing::info!(destination = %d.id, "destination deleted");
    Ok(())
}
