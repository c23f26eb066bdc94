//! The workspaces page: each workspace with its Broadcast switch; creating one.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Map, Value};
use tracecast_store::PageRequest;

use super::form::Fields;
use super::session::{PostForm, Session};
use super::view::{self, Chrome};
use super::{Dash, DashResult, after_post, render};
use crate::api::destinations::list_destinations;
use crate::api::workspaces::{all_workspaces, create_workspace, update_workspace};
use crate::error::ApiError;

struct Row {
    id: String,
    name: String,
    slug: String,
    description: String,
    is_default: bool,
    broadcast: bool,
    destinations: u64,
    created: String,
}

#[derive(Template)]
#[template(path = "workspaces.html")]
struct WorkspacesPage {
    chrome: Chrome,
    rows: Vec<Row>,
    new_name: String,
    new_slug: String,
    new_description: String,
    error: Option<String>,
    error_slot: String,
}

async fn page_with(
    dash: &Dash,
    session: &Session,
    entered: Option<&Fields>,
    error: Option<ApiError>,
) -> DashResult<Response> {
    let state = &dash.app;
    let caller = &session.caller;
    let mut rows = Vec::new();
    for w in all_workspaces(state, caller).await? {
        let destinations = list_destinations(
            state,
            caller,
            Some(&w.id.to_string()),
            PageRequest {
                offset: 0,
                limit: 1,
            },
        )
        .await?
        .total;
        rows.push(Row {
            id: w.id.to_string(),
            name: w.name,
            slug: w.slug,
            description: w.description.unwrap_or_default(),
            is_default: w.is_default,
            broadcast: w.is_observability_broadcast_enabled,
            destinations,
            created: view::utc(&w.created_at),
        });
    }
    let text = |k: &str| entered.map(|f| f.text(k).to_string()).unwrap_or_default();
    let error_slot = error
        .as_ref()
        .map(|e| {
            let head = e.message.split_whitespace().next().unwrap_or_default();
            match head {
                "name" | "slug" | "description" => head.to_string(),
                _ => "general".to_string(),
            }
        })
        .unwrap_or_default();
    let status = error.as_ref().map(|e| e.status);
    let mut res = render(&WorkspacesPage {
        chrome: session.chrome("Workspaces", "workspaces"),
        rows,
        new_name: text("name"),
        new_slug: text("slug"),
        new_description: text("description"),
        error: error.map(|e| e.message),
        error_slot,
    });
    if let Some(s) = status {
        *res.status_mut() = if s == StatusCode::CONFLICT {
            s
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
    }
    Ok(res)
}

/// `GET /workspaces`.
pub async fn page(State(dash): State<Dash>, session: Session) -> DashResult<Response> {
    page_with(&dash, &session, None, None).await
}

/// `POST /workspaces`: a new workspace, through the API's create.
pub async fn create(State(dash): State<Dash>, form: PostForm) -> DashResult<Response> {
    let f = &form.fields;
    let mut body = Map::new();
    body.insert("name".into(), Value::String(f.text("name").trim().into()));
    body.insert("slug".into(), Value::String(f.text("slug").trim().into()));
    let description = f.text("description").trim();
    if !description.is_empty() {
        body.insert("description".into(), Value::String(description.into()));
    }
    match create_workspace(&dash.app, &form.session.caller, &body).await {
        Ok(_) => Ok(after_post(form.htmx, "/workspaces")),
        Err(e) if matches!(e.status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT) => {
            page_with(&dash, &form.session, Some(f), Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /workspaces/{id}/broadcast`: the Broadcast switch (`enabled=true|false`).
pub async fn broadcast(
    State(dash): State<Dash>,
    Path(id): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let on = form.fields.text("enabled") == "true";
    let mut body = Map::new();
    body.insert("is_observability_broadcast_enabled".into(), Value::Bool(on));
    update_workspace(&dash.app, &form.session.caller, &id, &body).await?;
    Ok(after_post(form.htmx, "/workspaces"))
}
