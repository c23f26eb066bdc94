//! The web dashboard: set up, watch and repair broadcasting in a browser.
//!
//! Server-rendered HTML ([askama] templates in `templates/`, compiled into the binary) with
//! htmx for the parts that update in place (the filter preview, the tables that refresh, the
//! form's add-a-rule buttons). htmx, the style sheet and the one small script are embedded
//! from `assets/` and served with long cache headers: nothing is fetched from elsewhere, so
//! it works on an air-gapped install. `docs/dashboard.md` describes the design.
//!
//! Every page acts through the same functions as the API handlers (`crate::api::*`), with the
//! [`Caller`](crate::auth::Caller) of the signed-in management key: the same authorisation
//! (another tenant's ids are 404), the same validation, the same messages.
//!
//! - [`session`]: sign-in with a management key, the session cookie, CSRF checks.
//! - [`form`]: POSTed forms, and mapping an API error message to the field it names.
//! - [`destination_form`]: the add/edit form generated from each type's config schema, its
//!   connection test, the filter-rule builder and its live preview, warehouse setup SQL.
//! - [`destinations`]: the destinations list and a destination's page (chart, errors, dead
//!   letters, pause and resume).
//! - [`workspaces`], [`keys`]: workspaces with their broadcast switch; API keys.
//! - [`chart`]: the server-side SVG chart. [`view`]: display helpers. [`assets`]: the
//!   embedded files.

mod assets;
mod chart;
mod destination_form;
mod destinations;
mod form;
mod keys;
mod session;
mod view;
mod workspaces;

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::error::ApiError;
use crate::settings::DashboardSettings;
use crate::state::AppState;

pub use session::SESSION_COOKIE;

/// The dashboard's state: the application's and its own settings.
#[derive(Clone)]
pub struct Dash {
    pub app: AppState,
    cfg: Arc<Config>,
}

struct Config {
    session_ttl: Duration,
    secure_cookies: bool,
}

/// Largest form the dashboard accepts (a destination with many filter rules and headers).
const MAX_FORM_BYTES: usize = 256 * 1024;

/// The dashboard's routes, at `/` and beside the API.
pub fn routes(app: AppState, settings: &DashboardSettings) -> Router {
    let dash = Dash {
        app,
        cfg: Arc::new(Config {
            session_ttl: Duration::from_secs(settings.session_hours.max(1) * 3600),
            secure_cookies: settings.secure_cookies,
        }),
    };
    Router::new()
        .route("/", get(home))
        .route("/signin", get(session::signin_page).post(session::signin))
        .route("/signout", post(session::signout))
        .route(
            "/workspaces",
            get(workspaces::page).post(workspaces::create),
        )
        .route("/workspaces/{id}/broadcast", post(workspaces::broadcast))
        .route("/destinations", get(destinations::list))
        .route("/destinations/new", get(destination_form::choose_type))
        .route(
            "/destinations/new/{type}",
            get(destination_form::new_form).post(destination_form::new_submit),
        )
        .route("/destinations/preview", post(destination_form::preview))
        .route("/destinations/setup-sql", post(destination_form::setup_sql))
        .route("/destinations/{id}", get(destinations::detail))
        .route(
            "/destinations/{id}/edit",
            get(destination_form::edit_form).post(destination_form::edit_submit),
        )
        .route("/destinations/{id}/test", post(destinations::test))
        .route(
            "/destinations/{id}/enabled",
            post(destinations::set_enabled),
        )
        .route("/destinations/{id}/replay", post(destinations::replay))
        .route("/destinations/{id}/delete", post(destinations::delete))
        .route("/keys", get(keys::page).post(keys::create))
        .route("/keys/{hash}/disabled", post(keys::set_disabled))
        .route("/keys/{hash}/delete", post(keys::delete))
        .route("/assets/{file}", get(assets::serve))
        .layer(axum::middleware::map_response(security_headers))
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_page))
        .with_state(dash)
}

async fn home(session: Option<session::Session>) -> Redirect {
    match session {
        Some(_) => Redirect::to("/destinations"),
        None => Redirect::to("/signin"),
    }
}

/// Headers on every dashboard answer: a strict content security policy (only this origin's
/// scripts and styles; no inline script, no eval), no framing, no sniffing, and HTML never
/// cached (pages show new keys and configuration). Assets set their own cache header.
async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

fn panic_page(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a dashboard handler panicked");
    DashError::Api(ApiError::internal()).into_response()
}

/// A template rendered to an HTML answer.
fn render<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a dashboard page failed");
            DashError::Api(ApiError::internal()).into_response()
        }
    }
}

/// Why a dashboard request failed.
#[derive(Debug)]
pub enum DashError {
    /// What the shared API functions answered (404 for another tenant's id, 400 with the
    /// offending field, ...): shown as a page with the API's status and message.
    Api(ApiError),
    /// Not signed in (no session, expired, or its key disabled or deleted): to the sign-in
    /// page.
    SignIn,
    /// A POST without the session's CSRF token, or from another site.
    Forbidden(&'static str),
}

impl From<ApiError> for DashError {
    fn from(e: ApiError) -> Self {
        DashError::Api(e)
    }
}

impl From<tracecast_store::StoreError> for DashError {
    fn from(e: tracecast_store::StoreError) -> Self {
        DashError::Api(e.into())
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: view::Chrome,
    status: u16,
    reason: String,
    message: String,
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        match self {
            DashError::SignIn => session::to_signin(),
            DashError::Forbidden(why) => {
                let page = ErrorPage {
                    chrome: view::Chrome::anonymous("Forbidden"),
                    status: 403,
                    reason: "Forbidden".into(),
                    message: why.to_string(),
                };
                (StatusCode::FORBIDDEN, render(&page)).into_response()
            }
            DashError::Api(e) => {
                if e.status == StatusCode::UNAUTHORIZED {
                    return session::to_signin();
                }
                let page = ErrorPage {
                    chrome: view::Chrome::anonymous(e.status.canonical_reason().unwrap_or("Error")),
                    status: e.status.as_u16(),
                    reason: e.status.canonical_reason().unwrap_or("Error").into(),
                    message: e.message.clone(),
                };
                let mut res = render(&page);
                *res.status_mut() = e.status;
                if let Some(secs) = e.retry_after {
                    res.headers_mut().insert(header::RETRY_AFTER, secs.into());
                }
                res
            }
        }
    }
}

pub type DashResult<T> = Result<T, DashError>;

/// After a successful POST: back to `to`. A request from htmx gets `HX-Redirect` (a plain
/// redirect would be followed inside the page); a browser without JavaScript a 303.
fn after_post(htmx: bool, to: &str) -> Response {
    if htmx {
        let mut res = StatusCode::NO_CONTENT.into_response();
        if let Ok(v) = HeaderValue::from_str(to) {
            res.headers_mut().insert("hx-redirect", v);
        }
        res
    } else {
        Redirect::to(to).into_response()
    }
}
