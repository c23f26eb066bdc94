//! The destinations list and a destination's page.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;
use tracecast_engine::{DestinationStatus, HistorySnapshot, State as DeliveryState};
use tracecast_model::{Destination, Workspace};
use tracecast_store::PageRequest;

use super::chart::{self, Chart};
use super::session::{PostForm, Session};
use super::view::{self, Chrome, TypeMark};
use super::{Dash, DashResult, after_post, render};
use crate::api::delivery::{
    DeadLetterOut, destination_status, list_dead_letters, replay_dead_letters,
};
use crate::api::destinations::{
    UpdateDestinationRequest, delete_destination, find_destination, list_destinations,
    update_destination,
};
use crate::api::workspaces::all_workspaces;

/// Rows per page of the list.
const PAGE_SIZE: usize = 50;
/// Dead letters shown per page.
const LETTERS_PAGE: u64 = 50;

/// The state as a badge: its class and words.
struct StateBadge {
    class: &'static str,
    text: &'static str,
    reason: String,
}

impl StateBadge {
    fn of(s: &DestinationStatus) -> Self {
        let (class, text) = match s.state {
            DeliveryState::Active => ("active", "Active"),
            DeliveryState::Paused => ("paused", "Paused"),
            DeliveryState::Disabled => ("disabled", "Disabled"),
        };
        StateBadge {
            class,
            text,
            reason: s.reason.clone().unwrap_or_default(),
        }
    }
}

struct Row {
    id: String,
    name: String,
    mark: TypeMark,
    workspace: String,
    state: StateBadge,
    delivered_1h: String,
    failed_1h: String,
    depth: String,
    oldest: String,
    last_error: String,
    last_error_at: String,
}

#[derive(Template)]
#[template(path = "destinations.html")]
struct ListPage {
    chrome: Chrome,
    workspaces: Vec<(String, String, bool)>,
    selected: String,
    rows: Vec<Row>,
    total: usize,
    page: usize,
    pages: usize,
    prev: String,
    next: String,
    new_link: String,
    /// This page's URL, polled to refresh the table.
    refresh: String,
    /// This node does not deliver some destinations (cluster): their hour figures are "—".
    remote: bool,
}

#[derive(Deserialize)]
pub struct ListQuery {
    workspace: Option<String>,
    page: Option<usize>,
}

fn minute_now() -> i64 {
    chrono::Utc::now().timestamp().div_euclid(60)
}

/// The last hour's delivered and failed counts from this node's history.
fn last_hour(h: Option<&HistorySnapshot>) -> (String, String) {
    match h {
        Some(h) => {
            let t = h.totals_since(minute_now() - 59);
            (
                view::count(t.delivered),
                view::count(t.failed_attempts + t.dead_lettered),
            )
        }
        None => ("—".into(), "—".into()),
    }
}

/// `GET /destinations`: every destination of the tenant, or of one workspace.
pub async fn list(
    State(dash): State<Dash>,
    session: Session,
    Query(q): Query<ListQuery>,
) -> DashResult<Response> {
    let state = &dash.app;
    let caller = &session.caller;
    let workspaces = all_workspaces(state, caller).await?;
    let selected = q.workspace.clone().unwrap_or_default();
    let shown: Vec<&Workspace> = workspaces
        .iter()
        .filter(|w| selected.is_empty() || w.id.to_string() == selected || w.slug == selected)
        .collect();
    let mut all: Vec<(Destination, String)> = Vec::new();
    for w in &shown {
        let mut offset = 0;
        loop {
            let page = list_destinations(
                state,
                caller,
                Some(&w.id.to_string()),
                PageRequest { offset, limit: 100 },
            )
            .await?;
            let got = page.items.len() as u64;
            all.extend(page.items.into_iter().map(|d| (d, w.name.clone())));
            offset += got;
            if got == 0 || offset >= page.total {
                break;
            }
        }
    }
    let total = all.len();
    let pages = total.div_ceil(PAGE_SIZE).max(1);
    let page = q.page.unwrap_or(1).clamp(1, pages);
    let mut rows = Vec::new();
    let mut remote = false;
    for (d, ws_name) in all.iter().skip((page - 1) * PAGE_SIZE).take(PAGE_SIZE) {
        let status = destination_status(state, d).await?;
        let history = state.engine.history(d.id);
        remote |= history.is_none() && !state.engine.delivers(d.id);
        let (delivered_1h, failed_1h) = last_hour(history.as_ref());
        rows.push(Row {
            id: d.id.to_string(),
            name: d.name.clone().unwrap_or_else(|| "(unnamed)".into()),
            mark: TypeMark::of(d.ty),
            workspace: ws_name.clone(),
            state: StateBadge::of(&status),
            delivered_1h,
            failed_1h,
            depth: view::count(status.queue.depth),
            oldest: status
                .queue
                .oldest_pending_age_secs
                .map(view::age)
                .unwrap_or_else(|| "—".into()),
            last_error: status
                .last_error
                .as_ref()
                .map(|e| view::cut(&e.message, 140))
                .unwrap_or_default(),
            last_error_at: status
                .last_error
                .as_ref()
                .map(|e| view::ago(&e.at))
                .unwrap_or_default(),
        });
    }
    let base = if selected.is_empty() {
        "/destinations?".to_string()
    } else {
        format!(
            "/destinations?workspace={}&",
            url::form_urlencoded::byte_serialize(selected.as_bytes()).collect::<String>()
        )
    };
    let new_link = match shown.as_slice() {
        [one] if !selected.is_empty() => format!("/destinations/new?workspace={}", one.id),
        _ => "/destinations/new".into(),
    };
    Ok(render(&ListPage {
        chrome: session.chrome("Destinations", "destinations"),
        workspaces: workspaces
            .iter()
            .map(|w| {
                let id = w.id.to_string();
                let sel = id == selected || w.slug == selected;
                (id, w.name.clone(), sel)
            })
            .collect(),
        selected,
        rows,
        total,
        page,
        pages,
        prev: if page > 1 {
            format!("{base}page={}", page - 1)
        } else {
            String::new()
        },
        next: if page < pages {
            format!("{base}page={}", page + 1)
        } else {
            String::new()
        },
        new_link,
        refresh: format!("{base}page={page}"),
        remote,
    }))
}

struct ErrorRow {
    at: String,
    status: String,
    message: String,
}

struct LetterRow {
    id: i64,
    generation_id: String,
    model: String,
    failed_at: String,
    status: String,
    attempts: u32,
    error: String,
    replay_requested: bool,
}

impl From<DeadLetterOut> for LetterRow {
    fn from(l: DeadLetterOut) -> Self {
        LetterRow {
            id: l.id,
            generation_id: l.generation_id,
            model: l.model,
            failed_at: view::utc(&l.failed_at),
            status: l.status.map(|s| s.to_string()).unwrap_or_default(),
            attempts: l.attempts,
            error: view::cut(&l.error, 300),
            replay_requested: l.replay_requested,
        }
    }
}

struct Figure {
    label: &'static str,
    value: String,
}

#[derive(Template)]
#[template(path = "destination.html")]
struct DetailPage {
    chrome: Chrome,
    id: String,
    name: String,
    mark: TypeMark,
    workspace: String,
    enabled: bool,
    state: StateBadge,
    notice: &'static str,
    counts: Vec<Figure>,
    queue: Vec<Figure>,
    last_success: String,
    last_error: Option<ErrorRow>,
    owner: String,
    chart: Option<Chart>,
    range: usize,
    series: &'static [chart::Series],
    errors: Vec<ErrorRow>,
    letters: Vec<LetterRow>,
    letters_total: u64,
    letters_prev: String,
    letters_next: String,
    test: Option<(bool, String, String)>,
    replayed: Option<u64>,
    /// Nothing received yet: how to send a first generation, with this server's address.
    first_steps: Option<String>,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    range: Option<usize>,
    letters: Option<u64>,
    created: Option<String>,
    saved: Option<String>,
    replayed: Option<u64>,
}

/// The address the browser reached tracecast at (`http://host:port`), for examples.
fn origin(headers: &axum::http::HeaderMap) -> String {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or_default().trim().to_string())
            .filter(|v| !v.is_empty())
    };
    let host = get("x-forwarded-host")
        .or_else(|| get("host"))
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let scheme = match get("x-forwarded-proto").as_deref() {
        Some("https") => "https",
        _ => "http",
    };
    format!("{scheme}://{host}")
}

async fn detail_page(
    dash: &Dash,
    session: &Session,
    id: &str,
    q: &DetailQuery,
    test: Option<(bool, String, String)>,
    origin: String,
) -> DashResult<Response> {
    let state = &dash.app;
    let caller = &session.caller;
    let d = find_destination(state, caller, id).await?;
    let status = destination_status(state, &d).await?;
    let workspace = all_workspaces(state, caller)
        .await?
        .into_iter()
        .find(|w| w.id == d.workspace_id)
        .map(|w| w.name)
        .unwrap_or_default();
    let range = match q.range {
        Some(r) if r >= 180 => 180,
        _ => 60,
    };
    let history = state.engine.history(d.id);
    let chart = history
        .as_ref()
        .map(|h| chart::render(h, minute_now(), range));
    let errors = history
        .as_ref()
        .map(|h| {
            h.errors
                .iter()
                .map(|e| ErrorRow {
                    at: view::utc_ms(e.at_ms),
                    status: e.status.map(|s| s.to_string()).unwrap_or_default(),
                    message: e.message.clone(),
                })
                .collect()
        })
        .unwrap_or_default();
    let offset = q.letters.unwrap_or(0);
    let (letters, letters_total) =
        list_dead_letters(state, caller, id, offset, LETTERS_PAGE).await?;
    let c = &status.counts;
    let counts = vec![
        Figure {
            label: "Received",
            value: view::count(c.received),
        },
        Figure {
            label: "Delivered",
            value: view::count(c.delivered),
        },
        Figure {
            label: "Filtered out",
            value: view::count(c.filtered),
        },
        Figure {
            label: "Sampled out",
            value: view::count(c.sampled_out),
        },
        Figure {
            label: "Failed attempts",
            value: view::count(c.failed_attempts),
        },
        Figure {
            label: "Dead-lettered",
            value: view::count(c.dead_lettered),
        },
        Figure {
            label: "Dropped",
            value: view::count(c.dropped),
        },
    ];
    let queue = vec![
        Figure {
            label: "Queue depth",
            value: view::count(status.queue.depth),
        },
        Figure {
            label: "Oldest pending",
            value: status
                .queue
                .oldest_pending_age_secs
                .map(view::age)
                .unwrap_or_else(|| "—".into()),
        },
        Figure {
            label: "Dead letters",
            value: view::count(status.queue.dead_letters),
        },
    ];
    let notice = if q.created.is_some() {
        "Destination created. It receives every generation ingested from now on."
    } else if q.saved.is_some() {
        "Changes saved."
    } else {
        ""
    };
    let page = DetailPage {
        chrome: session.chrome(
            d.name.clone().unwrap_or_else(|| d.ty.display_name().into()),
            "destinations",
        ),
        id: d.id.to_string(),
        name: d.name.clone().unwrap_or_else(|| "(unnamed)".into()),
        mark: TypeMark::of(d.ty),
        workspace,
        enabled: d.enabled,
        state: StateBadge::of(&status),
        notice,
        counts,
        queue,
        last_success: status
            .last_success_at
            .as_deref()
            .map(|t| format!("{} ({})", view::utc(t), view::ago(t)))
            .unwrap_or_else(|| "never".into()),
        last_error: status.last_error.as_ref().map(|e| ErrorRow {
            at: format!("{} ({})", view::utc(&e.at), view::ago(&e.at)),
            status: e.status.map(|s| s.to_string()).unwrap_or_default(),
            message: e.message.clone(),
        }),
        owner: match &status.owner {
            Some(Some(node)) => node.clone(),
            Some(None) => "no node at this moment".into(),
            None => String::new(),
        },
        chart,
        range,
        series: &chart::SERIES,
        errors,
        letters: letters.into_iter().map(LetterRow::from).collect(),
        letters_total,
        letters_prev: if offset > 0 {
            format!(
                "/destinations/{}?letters={}#dead-letters",
                d.id,
                offset.saturating_sub(LETTERS_PAGE)
            )
        } else {
            String::new()
        },
        letters_next: if offset + LETTERS_PAGE < letters_total {
            format!(
                "/destinations/{}?letters={}#dead-letters",
                d.id,
                offset + LETTERS_PAGE
            )
        } else {
            String::new()
        },
        test,
        replayed: q.replayed,
        first_steps: (status.counts.received == 0 && status.counts.delivered == 0)
            .then_some(origin),
    };
    Ok(render(&page))
}

/// `GET /destinations/{id}`.
pub async fn detail(
    State(dash): State<Dash>,
    session: Session,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<DetailQuery>,
) -> DashResult<Response> {
    detail_page(&dash, &session, &id, &q, None, origin(&headers)).await
}

fn no_query() -> DetailQuery {
    DetailQuery {
        range: None,
        letters: None,
        created: None,
        saved: None,
        replayed: None,
    }
}

/// `POST /destinations/{id}/test`: the connection test with the stored config.
pub async fn test(
    State(dash): State<Dash>,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let d = find_destination(&dash.app, &form.session.caller, &id).await?;
    let r = dash.app.engine.test_connection(d.ty, &d.config).await;
    let status = r.status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
    let summary = format!(
        "{} ({status}{:.0} ms)",
        if r.ok {
            "Connection OK"
        } else {
            "Connection failed"
        },
        r.latency_ms
    );
    detail_page(
        &dash,
        &form.session,
        &id,
        &no_query(),
        Some((r.ok, summary, r.message)),
        origin(&headers),
    )
    .await
}

/// `POST /destinations/{id}/enabled`: pause (`enabled=false`) or resume. Resuming a
/// destination paused for rejected credentials also makes it try again at once.
pub async fn set_enabled(
    State(dash): State<Dash>,
    Path(id): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let enabled = form.fields.text("enabled") == "true";
    let req = UpdateDestinationRequest {
        enabled: Some(enabled),
        ..Default::default()
    };
    update_destination(&dash.app, &form.session.caller, &id, &req).await?;
    Ok(after_post(form.htmx, &format!("/destinations/{id}")))
}

/// `POST /destinations/{id}/replay`: one dead letter (`letter`) or all of them.
pub async fn replay(
    State(dash): State<Dash>,
    Path(id): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let ids = match form.fields.get("letter") {
        Some(l) => Some(vec![l.parse::<i64>().map_err(|_| {
            crate::error::ApiError::bad_request(format!(
                "letter must be a dead-letter id, got {l:?}"
            ))
        })?]),
        None => None,
    };
    let n = replay_dead_letters(&dash.app, &form.session.caller, &id, ids).await?;
    Ok(after_post(
        form.htmx,
        &format!("/destinations/{id}?replayed={n}"),
    ))
}

/// `POST /destinations/{id}/delete`.
pub async fn delete(
    State(dash): State<Dash>,
    Path(id): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    delete_destination(&dash.app, &form.session.caller, &id).await?;
    Ok(after_post(form.htmx, "/destinations"))
}
