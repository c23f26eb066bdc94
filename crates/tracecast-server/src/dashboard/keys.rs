//! The API keys page: a workspace's keys and the account's management keys; create (the key
//! is shown once, with a copy button), disable or enable, delete.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tracecast_model::ApiKey;
use tracecast_model::api_key::KeyKind;
use tracecast_store::PageRequest;

use super::form::Fields;
use super::session::{PostForm, Session};
use super::view::{self, Chrome};
use super::{Dash, DashResult, after_post, render};
use crate::api::keys::{
    CreateKeyRequest, UpdateKeyRequest, create_key, delete_key, list_keys, update_key,
};
use crate::api::workspaces::all_workspaces;
use crate::error::ApiError;

struct KeyRow {
    hash: String,
    short_hash: String,
    name: String,
    label: String,
    disabled: bool,
    expired: bool,
    created: String,
    expires: String,
}

impl KeyRow {
    fn of(k: &ApiKey) -> Self {
        let now = tracecast_model::time::now_rfc3339();
        KeyRow {
            hash: k.hash.clone(),
            short_hash: k.hash.chars().take(12).collect(),
            name: k.name.clone(),
            label: k.label.clone(),
            disabled: k.disabled,
            expired: k.expires_at.as_deref().is_some_and(|e| e <= now.as_str()),
            created: view::utc(&k.created_at),
            expires: k.expires_at.as_deref().map(view::utc).unwrap_or_default(),
        }
    }
}

/// A key just created: shown once.
struct Created {
    key: String,
    name: String,
    kind: String,
}

#[derive(Template)]
#[template(path = "keys.html")]
struct KeysPage {
    chrome: Chrome,
    workspaces: Vec<(String, String, bool)>,
    workspace_id: String,
    workspace_name: String,
    workspace_keys: Vec<KeyRow>,
    management_keys: Vec<KeyRow>,
    my_hash: String,
    created: Option<Created>,
    new_name: String,
    new_kind_management: bool,
    new_expires: String,
    error: Option<String>,
    error_slot: String,
}

#[derive(Deserialize)]
pub struct KeysQuery {
    workspace: Option<String>,
}

async fn all_keys(
    dash: &Dash,
    session: &Session,
    kind: KeyKind,
    workspace: Option<&str>,
) -> DashResult<Vec<ApiKey>> {
    let mut out = Vec::new();
    loop {
        let page = list_keys(
            &dash.app,
            &session.caller,
            kind,
            workspace,
            true,
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

async fn page_with(
    dash: &Dash,
    session: &Session,
    workspace: Option<&str>,
    created: Option<Created>,
    entered: Option<&Fields>,
    error: Option<ApiError>,
) -> DashResult<Response> {
    let caller = &session.caller;
    let ws = caller
        .workspace(&dash.app, workspace.filter(|w| !w.is_empty()))
        .await?;
    let workspaces = all_workspaces(&dash.app, caller).await?;
    let workspace_keys = all_keys(dash, session, KeyKind::Workspace, Some(&ws.id.to_string()))
        .await?
        .iter()
        .map(KeyRow::of)
        .collect();
    let management_keys = all_keys(dash, session, KeyKind::Management, None)
        .await?
        .iter()
        .map(KeyRow::of)
        .collect();
    let text = |k: &str| entered.map(|f| f.text(k).to_string()).unwrap_or_default();
    let error_slot = error
        .as_ref()
        .map(|e| {
            match e.message.split_whitespace().next().unwrap_or_default() {
                "name" => "name",
                "expires_at" => "expires",
                _ => "general",
            }
            .to_string()
        })
        .unwrap_or_default();
    let status = error.as_ref().map(|e| e.status);
    let mut res = render(&KeysPage {
        chrome: session.chrome("API keys", "keys"),
        workspaces: workspaces
            .iter()
            .map(|w| (w.id.to_string(), w.name.clone(), w.id == ws.id))
            .collect(),
        workspace_id: ws.id.to_string(),
        workspace_name: ws.name.clone(),
        workspace_keys,
        management_keys,
        my_hash: session.key().hash.clone(),
        created,
        new_name: text("name"),
        new_kind_management: text("kind") == "management",
        new_expires: text("expires"),
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

/// `GET /keys?workspace=<id>`.
pub async fn page(
    State(dash): State<Dash>,
    session: Session,
    Query(q): Query<KeysQuery>,
) -> DashResult<Response> {
    page_with(&dash, &session, q.workspace.as_deref(), None, None, None).await
}

/// `POST /keys`: a new workspace or management key, through the API's create. The answer
/// shows the key once (the page is never cached).
pub async fn create(State(dash): State<Dash>, form: PostForm) -> DashResult<Response> {
    let f = &form.fields;
    let management = f.text("kind") == "management";
    let workspace = f.text("workspace_id").to_string();
    // A date (YYYY-MM-DD) from the form is the start of that day, UTC.
    let expires = f.text("expires").trim();
    let expires_at = if expires.is_empty() {
        None
    } else if expires.len() == 10 {
        Some(format!("{expires}T00:00:00Z"))
    } else {
        Some(expires.to_string())
    };
    let req = CreateKeyRequest {
        name: f.text("name").trim().to_string(),
        kind: Some(
            if management {
                "management"
            } else {
                "workspace"
            }
            .into(),
        ),
        workspace_id: if management {
            None
        } else {
            Some(workspace.clone())
        },
        expires_at,
        ..Default::default()
    };
    match create_key(&dash.app, &form.session.caller, &req).await {
        Ok((key, raw)) => {
            let created = Created {
                key: raw,
                name: key.name.clone(),
                kind: key.kind.as_str().to_string(),
            };
            page_with(
                &dash,
                &form.session,
                Some(&workspace),
                Some(created),
                None,
                None,
            )
            .await
        }
        Err(e) if matches!(e.status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT) => {
            page_with(
                &dash,
                &form.session,
                Some(&workspace),
                None,
                Some(f),
                Some(e),
            )
            .await
        }
        Err(e) => Err(e.into()),
    }
}

fn back(form: &PostForm) -> String {
    match form.fields.get("workspace_id").filter(|w| !w.is_empty()) {
        Some(w) => format!(
            "/keys?workspace={}",
            url::form_urlencoded::byte_serialize(w.as_bytes()).collect::<String>()
        ),
        None => "/keys".into(),
    }
}

/// `POST /keys/{hash}/disabled`: `disabled=true|false`.
pub async fn set_disabled(
    State(dash): State<Dash>,
    Path(hash): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let req = UpdateKeyRequest {
        disabled: Some(form.fields.text("disabled") == "true"),
        ..Default::default()
    };
    match update_key(&dash.app, &form.session.caller, &hash, req).await {
        Ok(_) => Ok(after_post(form.htmx, &back(&form))),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let ws = form.fields.get("workspace_id").map(str::to_string);
            page_with(&dash, &form.session, ws.as_deref(), None, None, Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /keys/{hash}/delete`.
pub async fn delete(
    State(dash): State<Dash>,
    Path(hash): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    match delete_key(&dash.app, &form.session.caller, &hash).await {
        Ok(()) => Ok(after_post(form.htmx, &back(&form))),
        Err(e) if e.status == StatusCode::CONFLICT => {
            let ws = form.fields.get("workspace_id").map(str::to_string);
            page_with(&dash, &form.session, ws.as_deref(), None, None, Some(e)).await
        }
        Err(e) => Err(e.into()),
    }
}
