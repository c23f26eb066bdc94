//! Signing in with a management key, the session cookie, and CSRF protection.
//!
//! - A session id is 32 random bytes from the operating system, sent to the browser in the
//!   `tracecast_session` cookie (`HttpOnly`, `SameSite=Strict`, `Path=/`, `Max-Age` = the
//!   session's lifetime, `Secure` when the request came over HTTPS). The store keeps only the
//!   id's SHA-256, the key's hash and the expiry (table `dashboard_sessions`), so sessions
//!   survive a restart and are shared by every node of a cluster.
//! - Every request re-checks the session's key exactly as the API checks a bearer key
//!   ([`Caller::for_key_hash`]): a key disabled, expired or deleted ends its sessions at once.
//! - Every POST carries a CSRF token: SHA-256 of a fixed label and the session id, in a hidden
//!   form field or htmx's `X-CSRF-Token` header. It can only be computed from the cookie,
//!   which scripts cannot read and other sites cannot send (`SameSite=Strict`). A POST whose
//!   `Origin` is another site is refused as well. The sign-in form, before there is a session,
//!   uses a double-submit token (a random value in a short-lived cookie and in the form).

use askama::Template;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{SecondsFormat, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tracecast_model::{ApiKey, hash_key, time};
use tracecast_store::DashboardSession;

use super::form::Fields;
use super::view::Chrome;
use super::{Dash, DashError, MAX_FORM_BYTES, render};
use crate::auth::Caller;

/// The session cookie.
pub const SESSION_COOKIE: &str = "tracecast_session";
/// The sign-in form's double-submit cookie.
const SIGNIN_COOKIE: &str = "tracecast_signin";
/// How long the sign-in form stays valid.
const SIGNIN_TTL_SECS: u64 = 3600;

/// A signed-in browser: the management key's [`Caller`] and the session's CSRF token.
#[derive(Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    id_hash: String,
}

impl Session {
    pub fn key(&self) -> &ApiKey {
        &self.caller.0
    }

    /// The page frame for this session.
    pub fn chrome(&self, title: impl Into<String>, nav: &'static str) -> Chrome {
        Chrome::signed_in(title, nav, &self.csrf, self.key())
    }

    /// The session of a request, if it has a valid one.
    async fn load(dash: &Dash, headers: &HeaderMap, path: &str) -> Result<Session, DashError> {
        let id = cookie(headers, SESSION_COOKIE).ok_or(DashError::SignIn)?;
        if id.len() != 64 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(DashError::SignIn);
        }
        let id_hash = hex::encode(Sha256::digest(id.as_bytes()));
        let stored = dash
            .app
            .store
            .session(&id_hash)
            .await?
            .ok_or(DashError::SignIn)?;
        if stored.expires_at.as_str() <= time::now_rfc3339().as_str() {
            let _ = dash.app.store.delete_session(&id_hash).await;
            return Err(DashError::SignIn);
        }
        // The same checks as a bearer key: exists, enabled, not expired, rate limits.
        let caller = Caller::for_key_hash(&dash.app, &stored.key_hash, path)
            .await
            .map_err(|e| {
                if e.status == StatusCode::UNAUTHORIZED {
                    DashError::SignIn
                } else {
                    DashError::Api(e)
                }
            })?;
        caller.management()?;
        Ok(Session {
            caller,
            csrf: csrf_token(id),
            id_hash,
        })
    }
}

impl FromRequestParts<Dash> for Session {
    type Rejection = DashError;

    async fn from_request_parts(parts: &mut Parts, dash: &Dash) -> Result<Self, Self::Rejection> {
        Session::load(dash, &parts.headers, parts.uri.path()).await
    }
}

impl axum::extract::OptionalFromRequestParts<Dash> for Session {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        dash: &Dash,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(Session::load(dash, &parts.headers, parts.uri.path())
            .await
            .ok())
    }
}

/// A POSTed form of a signed-in session, its CSRF token checked.
pub struct PostForm {
    pub session: Session,
    pub fields: Fields,
    /// Sent by htmx (`HX-Request`): answer with a fragment or `HX-Redirect`.
    pub htmx: bool,
}

impl FromRequest<Dash> for PostForm {
    type Rejection = DashError;

    async fn from_request(req: Request, dash: &Dash) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        check_same_origin(&parts.headers)?;
        let session = Session::load(dash, &parts.headers, parts.uri.path()).await?;
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| {
                DashError::Api(crate::error::ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("The form is larger than {MAX_FORM_BYTES} bytes"),
                ))
            })?;
        let fields = Fields::parse(&bytes);
        let sent = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| fields.get("csrf"))
            .unwrap_or_default();
        if !bool::from(sent.as_bytes().ct_eq(session.csrf.as_bytes())) {
            return Err(DashError::Forbidden(
                "The form's security token is missing or out of date. Reload the page and try again.",
            ));
        }
        Ok(PostForm {
            session,
            fields,
            htmx: parts.headers.contains_key("hx-request"),
        })
    }
}

/// Refuses a request another site made the browser send: an `Origin` (or
/// `Sec-Fetch-Site: cross-site`) that is not this host.
fn check_same_origin(headers: &HeaderMap) -> Result<(), DashError> {
    let refused = DashError::Forbidden("Requests from other sites are refused.");
    if headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site")
    {
        return Err(refused);
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| url::Url::parse(o).ok())
        .map(|u| match (u.host_str(), u.port()) {
            (Some(h), Some(p)) => format!("{h}:{p}"),
            (Some(h), None) => h.to_string(),
            _ => String::new(),
        });
    match origin_host {
        Some(h) if !h.is_empty() && h.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(refused),
    }
}

/// A cookie's value from the request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn csrf_token(session_id: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"tracecast-dashboard-csrf\0");
    h.update(session_id.as_bytes());
    hex::encode(h.finalize())
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether the browser reached tracecast over HTTPS (through a TLS-terminating proxy).
fn over_tls(dash: &Dash, headers: &HeaderMap) -> bool {
    if dash.cfg.secure_cookies {
        return true;
    }
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"));
    let forwarded = headers
        .get(header::FORWARDED)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split([';', ','])
                .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
        });
    forwarded_proto || forwarded
}

fn set_cookie(name: &str, value: &str, path: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .expect("cookie values are hex")
}

/// The answer that sends a browser without a valid session to the sign-in page.
pub fn to_signin() -> Response {
    let mut res = Redirect::to("/signin").into_response();
    // htmx follows a redirect inside the page; tell it to load the sign-in page instead.
    res.headers_mut()
        .insert("hx-redirect", HeaderValue::from_static("/signin"));
    res
}

#[derive(Template)]
#[template(path = "signin.html")]
struct SigninPage {
    chrome: Chrome,
    token: String,
    error: Option<String>,
    notice: Option<&'static str>,
}

fn signin_form(
    dash: &Dash,
    headers: &HeaderMap,
    status: StatusCode,
    error: Option<String>,
    notice: Option<&'static str>,
) -> Response {
    let token = random_hex();
    let page = SigninPage {
        chrome: Chrome::anonymous("Sign in"),
        token: token.clone(),
        error,
        notice,
    };
    let mut res = render(&page);
    *res.status_mut() = status;
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(
            SIGNIN_COOKIE,
            &token,
            "/signin",
            SIGNIN_TTL_SECS,
            over_tls(dash, headers),
        ),
    );
    res
}

/// `GET /signin`; a browser already signed in goes on to the destinations.
pub async fn signin_page(
    State(dash): State<Dash>,
    headers: HeaderMap,
    axum::extract::RawQuery(q): axum::extract::RawQuery,
) -> Response {
    if Session::load(&dash, &headers, "/signin").await.is_ok() {
        return Redirect::to("/destinations").into_response();
    }
    let notice = match q.as_deref() {
        Some("signed-out") => Some("You are signed out."),
        _ => None,
    };
    signin_form(&dash, &headers, StatusCode::OK, None, notice)
}

/// `POST /signin`: a management key in, a session cookie out.
pub async fn signin(State(dash): State<Dash>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let headers = parts.headers;
    if let Err(e) = check_same_origin(&headers) {
        return e.into_response();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return signin_form(
            &dash,
            &headers,
            StatusCode::PAYLOAD_TOO_LARGE,
            Some("The form is too large.".into()),
            None,
        );
    };
    let fields = Fields::parse(&bytes);
    let expected = cookie(&headers, SIGNIN_COOKIE).unwrap_or_default();
    let sent = fields.get("csrf").unwrap_or_default();
    if expected.len() != 64 || !bool::from(sent.as_bytes().ct_eq(expected.as_bytes())) {
        return signin_form(
            &dash,
            &headers,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired. Enter the key again.".into()),
            None,
        );
    }
    let key = fields.get("key").unwrap_or_default().trim();
    if key.is_empty() {
        return signin_form(
            &dash,
            &headers,
            StatusCode::BAD_REQUEST,
            Some("Enter a management key.".into()),
            None,
        );
    }
    let caller = match Caller::for_key_hash(&dash.app, &hash_key(key), "/signin").await {
        Ok(c) => c,
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return signin_form(
                &dash,
                &headers,
                StatusCode::UNAUTHORIZED,
                Some(format!("{}.", e.message)),
                None,
            );
        }
        Err(e) => return DashError::Api(e).into_response(),
    };
    if caller.management().is_err() {
        return signin_form(
            &dash,
            &headers,
            StatusCode::FORBIDDEN,
            Some("This is a workspace key. Sign in with a management key.".into()),
            None,
        );
    }
    let now = Utc::now();
    // Housekeeping: sessions that ended are of no use to anyone.
    if let Err(e) = dash
        .app
        .store
        .delete_expired_sessions(&time::now_rfc3339())
        .await
    {
        tracing::warn!(error = %e, "deleting expired dashboard sessions failed");
    }
    let id = random_hex();
    let ttl = dash.cfg.session_ttl;
    let session = DashboardSession {
        id_hash: hex::encode(Sha256::digest(id.as_bytes())),
        key_hash: caller.0.hash.clone(),
        created_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        expires_at: (now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(12)))
            .to_rfc3339_opts(SecondsFormat::Millis, true),
    };
    if let Err(e) = dash.app.store.insert_session(&session).await {
        return DashError::Api(e.into()).into_response();
    }
    tracing::info!(key = %caller.0.label, "dashboard sign-in");
    let secure = over_tls(&dash, &headers);
    let mut res = Redirect::to("/destinations").into_response();
    let h = res.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, &id, "/", ttl.as_secs(), secure),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(SIGNIN_COOKIE, "", "/signin", 0, secure),
    );
    res
}

/// `POST /signout`: ends the session here and in the store.
pub async fn signout(State(dash): State<Dash>, headers: HeaderMap, form: PostForm) -> Response {
    if let Err(e) = dash.app.store.delete_session(&form.session.id_hash).await {
        return DashError::Api(e.into()).into_response();
    }
    tracing::info!(key = %form.session.key().label, "dashboard sign-out");
    let mut res = super::after_post(form.htmx, "/signin?signed-out");
    res.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(SESSION_COOKIE, "", "/", 0, over_tls(&dash, &headers)),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn cookies_are_found_among_others() {
        let h = headers(&[
            ("cookie", "a=1; tracecast_session=abc ; b=2"),
            ("cookie", "c=3"),
        ]);
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "c"), Some("3"));
        assert_eq!(cookie(&h, "tracecast"), None);
    }

    #[test]
    fn only_same_origin_posts_pass() {
        assert!(check_same_origin(&headers(&[("host", "127.0.0.1:8080")])).is_ok());
        assert!(
            check_same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080")
            ]))
            .is_ok()
        );
        assert!(
            check_same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example")
            ]))
            .is_err()
        );
        assert!(
            check_same_origin(&headers(&[("host", "127.0.0.1:8080"), ("origin", "null")])).is_err()
        );
        assert!(
            check_same_origin(&headers(&[
                ("host", "127.0.0.1:8080"),
                ("sec-fetch-site", "cross-site")
            ]))
            .is_err()
        );
    }

    #[test]
    fn the_csrf_token_is_not_the_stored_hash() {
        let id = random_hex();
        assert_eq!(id.len(), 64);
        assert_ne!(csrf_token(&id), hex::encode(Sha256::digest(id.as_bytes())));
        assert_eq!(csrf_token(&id), csrf_token(&id));
    }
}
