//! The dashboard over HTTP, as a browser speaks to it: sign-in, the session cookie, CSRF,
//! sign-out and expiry, tenant isolation, and forms that go through the API's validation.
//! (tests/dashboard/ drives the same pages in headless Chromium.)

mod common;

use std::time::Duration;

use common::TestServer;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;
use sha2::{Digest, Sha256};
use tracecast_store::DashboardSession;

const DEST: &str = "/api/v1/observability/destinations";

/// A browser without JavaScript: follows no redirect, keeps the session cookie.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: Option<String>,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    html: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> String {
        let at = self
            .html
            .find(r#"name="csrf" value=""#)
            .unwrap_or_else(|| panic!("no csrf field in {}", self.html));
        let rest = &self.html[at + r#"name="csrf" value=""#.len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    fn cookie(&self, name: &str) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with(&format!("{name}=")))
            .map(str::to_string)
    }
}

/// HTML text with its character references (`&#62;`, `&amp;`) resolved.
fn unescape(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let end = rest.find(';').filter(|e| *e <= 8);
        let decoded = end.and_then(|e| match &rest[1..e] {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            n if n.starts_with('#') => n[1..].parse::<u32>().ok().and_then(char::from_u32),
            _ => None,
        });
        match (decoded, end) {
            (Some(c), Some(e)) => {
                out.push(c);
                rest = &rest[e + 1..];
            }
            _ => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn cookie_value(set_cookie: &str) -> String {
    let first = set_cookie.split(';').next().unwrap();
    first.split_once('=').unwrap().1.to_string()
}

impl Browser {
    fn new(s: &TestServer) -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: s.base.clone(),
            session: None,
        }
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        extra: &[(&str, &str)],
    ) -> Page {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(s) = &self.session {
            req = req.header("cookie", format!("tracecast_session={s}"));
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        if let Some(f) = form {
            req = req.form(f);
        }
        let r = req.send().await.unwrap();
        Page {
            status: r.status(),
            headers: r.headers().clone(),
            html: r.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Page {
        self.request(reqwest::Method::GET, path, None, &[]).await
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        self.request(reqwest::Method::POST, path, Some(form), &[])
            .await
    }

    /// Signs in with `key` through the sign-in form; returns the answer to the POST.
    async fn sign_in_with(&mut self, key: &str, extra: &[(&str, &str)]) -> Page {
        let form = self.get("/signin").await;
        assert_eq!(form.status, 200);
        let token = cookie_value(&form.cookie("tracecast_signin").expect("sign-in cookie"));
        assert_eq!(
            form.csrf(),
            token,
            "double submit: the same value in cookie and form"
        );
        let mut headers: Vec<(&str, String)> =
            vec![("cookie", format!("tracecast_signin={token}"))];
        headers.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = self
            .request(
                reqwest::Method::POST,
                "/signin",
                Some(&[("csrf", token.as_str()), ("key", key)]),
                &headers,
            )
            .await;
        if let Some(c) = r.cookie("tracecast_session") {
            self.session = Some(cookie_value(&c));
        }
        r
    }

    async fn sign_in(&mut self, key: &str) {
        let r = self.sign_in_with(key, &[]).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
        assert_eq!(r.location(), "/destinations");
    }

    /// The session's CSRF token, from a page.
    async fn csrf(&self) -> String {
        let p = self.get("/destinations").await;
        assert_eq!(p.status, 200, "{}", p.html);
        p.csrf()
    }
}

async fn webhook(s: &TestServer, url: &str) -> String {
    let r = s
        .post(
            DEST,
            json!({"type": "webhook", "name": "hook", "config": {"url": url}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_session_that_sign_out_ends() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    // Not signed in: every page sends the browser to the sign-in page.
    for path in [
        "/",
        "/destinations",
        "/workspaces",
        "/keys",
        "/destinations/new",
    ] {
        let p = b.get(path).await;
        assert_eq!(p.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(p.location(), "/signin", "{path}");
    }
    let r = b.sign_in_with(&s.mgmt_key, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let cookie = r.cookie("tracecast_session").unwrap();
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Strict"), "{cookie}");
    assert!(cookie.contains("; Max-Age=43200"), "{cookie}");
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let id = b.session.clone().unwrap();
    assert_eq!(id.len(), 64);
    // Only the id's hash is stored.
    let hash = hex::encode(Sha256::digest(id.as_bytes()));
    let stored = s.store.session(&hash).await.unwrap().expect("stored");
    assert_eq!(
        stored.key_hash,
        tracecast_model::hash_key(&s.mgmt_key),
        "bound to the key"
    );
    assert!(s.store.session(&id).await.unwrap().is_none());
    // Signed in, the sign-in page sends the browser on.
    assert_eq!(b.get("/signin").await.location(), "/destinations");
    // The page is served, never cached, never framed, and shows no key.
    let p = b.get("/destinations").await;
    assert_eq!(p.status, 200);
    assert_eq!(p.headers["cache-control"], "no-store");
    assert_eq!(p.headers["x-frame-options"], "DENY");
    assert!(
        p.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    assert!(!p.html.contains(&s.mgmt_key));

    // Sign-out ends the session in the store, not only in the browser.
    let csrf = p.csrf();
    let out = b.post("/signout", &[("csrf", &csrf)]).await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(out.location(), "/signin?signed-out");
    assert!(
        out.cookie("tracecast_session")
            .unwrap()
            .contains("Max-Age=0")
    );
    assert!(s.store.session(&hash).await.unwrap().is_none());
    let again = b.get("/destinations").await;
    assert_eq!(again.location(), "/signin");
}

#[tokio::test]
async fn the_cookie_is_secure_behind_https() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    let r = b
        .sign_in_with(&s.mgmt_key, &[("x-forwarded-proto", "https")])
        .await;
    assert!(r.cookie("tracecast_session").unwrap().ends_with("; Secure"));
    let s = TestServer::start_with(|st| st.dashboard.secure_cookies = true).await;
    let mut b = Browser::new(&s);
    let r = b.sign_in_with(&s.mgmt_key, &[]).await;
    assert!(r.cookie("tracecast_session").unwrap().ends_with("; Secure"));
}

#[tokio::test]
async fn only_a_valid_management_key_signs_in() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    let r = b
        .sign_in_with("sk-tc-v1-not-a-key-of-this-server", &[])
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.html.contains("Invalid API key."), "{}", r.html);
    assert!(r.cookie("tracecast_session").is_none());
    let (ws_key, _) = s.workspace_key(None).await;
    let r = b.sign_in_with(&ws_key, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.html.contains("This is a workspace key"), "{}", r.html);
    assert!(r.cookie("tracecast_session").is_none());
    // Without the sign-in form's own token (a form posted from elsewhere): refused.
    let r = b
        .post(
            "/signin",
            &[("csrf", "0".repeat(64).as_str()), ("key", &s.mgmt_key)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.cookie("tracecast_session").is_none());
}

#[tokio::test]
async fn every_post_needs_the_session_csrf_token_and_this_origin() {
    let s = TestServer::start().await;
    let id = webhook(&s, "http://127.0.0.1:9/x").await;
    let mut b = Browser::new(&s);
    b.sign_in(&s.mgmt_key).await;
    let csrf = b.csrf().await;
    let path = format!("/destinations/{id}/enabled");
    let enabled = || async {
        s.get(&format!("{DEST}/{id}")).await.body["data"]["enabled"]
            .as_bool()
            .unwrap()
    };
    // No token, a wrong one, another site's origin: refused, nothing changes.
    for (form, headers) in [
        (vec![("enabled", "false")], vec![]),
        (vec![("enabled", "false"), ("csrf", "0000")], vec![]),
        (
            vec![("enabled", "false"), ("csrf", csrf.as_str())],
            vec![("origin", "http://evil.example")],
        ),
        (
            vec![("enabled", "false"), ("csrf", csrf.as_str())],
            vec![("sec-fetch-site", "cross-site")],
        ),
    ] {
        let r = b
            .request(reqwest::Method::POST, &path, Some(&form), &headers)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form:?} {headers:?}");
        assert!(enabled().await);
    }
    // The form field, or htmx's header, with this site's origin: accepted.
    let origin = s.base.clone();
    let r = b
        .request(
            reqwest::Method::POST,
            &path,
            Some(&[("enabled", "false"), ("csrf", &csrf)]),
            &[("origin", &origin)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    assert!(!enabled().await);
    let r = b
        .request(
            reqwest::Method::POST,
            &path,
            Some(&[("enabled", "true")]),
            &[("x-csrf-token", &csrf), ("hx-request", "true")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    assert_eq!(
        r.headers["hx-redirect"],
        format!("/destinations/{id}").as_str()
    );
    assert!(enabled().await);
    // Another session's token is no good in this one.
    let mut other = Browser::new(&s);
    other.sign_in(&s.mgmt_key).await;
    let r = other
        .post(&path, &[("enabled", "false"), ("csrf", &csrf)])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_disabled_deleted_or_expired_key_ends_its_sessions() {
    let s = TestServer::start().await;
    let second = s
        .post(
            "/api/v1/keys",
            json!({"name": "second", "kind": "management"}),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.text);
    let key = second.body["key"].as_str().unwrap().to_string();
    let hash = second.body["data"]["hash"].as_str().unwrap().to_string();
    let mut b = Browser::new(&s);
    b.sign_in(&key).await;
    assert_eq!(b.get("/keys").await.status, 200);
    let r = s
        .patch(&format!("/api/v1/keys/{hash}"), json!({"disabled": true}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(b.get("/keys").await.location(), "/signin");
    s.patch(&format!("/api/v1/keys/{hash}"), json!({"disabled": false}))
        .await;
    assert_eq!(b.get("/keys").await.status, 200, "enabled again");
    let id_hash = hex::encode(Sha256::digest(b.session.clone().unwrap().as_bytes()));
    assert_eq!(s.delete(&format!("/api/v1/keys/{hash}")).await.status, 200);
    assert_eq!(b.get("/keys").await.location(), "/signin");
    assert!(
        s.store.session(&id_hash).await.unwrap().is_none(),
        "deleting the key deleted its sessions"
    );

    // An expired session is refused and removed.
    let id = "ab".repeat(32);
    let expired = DashboardSession {
        id_hash: hex::encode(Sha256::digest(id.as_bytes())),
        key_hash: tracecast_model::hash_key(&s.mgmt_key),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        expires_at: "2026-01-01T12:00:00.000Z".into(),
    };
    s.store.insert_session(&expired).await.unwrap();
    b.session = Some(id);
    assert_eq!(b.get("/destinations").await.location(), "/signin");
    assert!(s.store.session(&expired.id_hash).await.unwrap().is_none());
}

#[tokio::test]
async fn another_tenants_ids_are_404_in_the_dashboard_too() {
    let s = TestServer::start().await;
    let id = webhook(&s, "http://127.0.0.1:9/x").await;
    let mine = s.get("/api/v1/workspaces/default").await;
    let my_ws = mine.body["data"]["id"].as_str().unwrap().to_string();
    let (_, my_key_hash) = s.workspace_key(None).await;
    let other = s.other_tenant().await;
    let mut b = Browser::new(&s);
    b.sign_in(&other).await;
    let csrf = b.csrf().await;
    for path in [
        format!("/destinations/{id}"),
        format!("/destinations/{id}/edit"),
        "/destinations/not-a-uuid".to_string(),
    ] {
        let p = b.get(&path).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}");
        assert!(p.html.contains("Resource not found"), "{path}");
    }
    for path in [
        format!("/destinations/{id}/edit"),
        format!("/destinations/{id}/enabled"),
        format!("/destinations/{id}/test"),
        format!("/destinations/{id}/replay"),
        format!("/destinations/{id}/delete"),
        format!("/keys/{my_key_hash}/disabled"),
        format!("/keys/{my_key_hash}/delete"),
        format!("/workspaces/{my_ws}/broadcast"),
    ] {
        let p = b
            .post(
                &path,
                &[("csrf", &csrf), ("enabled", "false"), ("disabled", "true")],
            )
            .await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "{path}: {}", p.html);
    }
    // The preview and the setup SQL of another tenant's destination, or for its workspace.
    for form in [
        vec![("csrf", csrf.as_str()), ("dest_id", id.as_str())],
        vec![
            ("csrf", csrf.as_str()),
            ("type", "webhook"),
            ("workspace_id", my_ws.as_str()),
        ],
    ] {
        for path in ["/destinations/preview", "/destinations/setup-sql"] {
            let p = b.post(path, &form).await;
            assert!(
                matches!(p.status.as_u16(), 400 | 404),
                "{path} {form:?}: {}",
                p.status
            );
        }
    }
    // Lists show only the caller's own.
    let list = b.get(&format!("/destinations?workspace={my_ws}")).await;
    assert_eq!(list.status, 200);
    assert!(!list.html.contains(&id));
    let keys = b.get(&format!("/keys?workspace={my_ws}")).await;
    assert_eq!(keys.status, 400, "{}", keys.html);
    // Nothing of the first tenant changed.
    let d = s.get(&format!("{DEST}/{id}")).await;
    assert_eq!(d.status, 200);
    assert_eq!(d.body["data"]["enabled"], true);
    let ws = s.get("/api/v1/workspaces/default").await;
    assert_eq!(ws.body["data"]["is_observability_broadcast_enabled"], true);
    assert_eq!(
        s.get(&format!("/api/v1/keys/{my_key_hash}")).await.body["data"]["disabled"],
        false
    );
}

#[tokio::test]
async fn the_destination_form_saves_through_the_api_validation() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    b.sign_in(&s.mgmt_key).await;
    let csrf = b.csrf().await;
    let ws = s.get("/api/v1/workspaces/default").await.body["data"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let form = |url: &'static str, require: bool| {
        let mut f = vec![
            ("csrf", csrf.clone()),
            ("workspace_id", ws.clone()),
            ("name", "Hook".into()),
            ("enabled", "on".into()),
            ("sampling_rate", "1".into()),
            ("regions", "global".into()),
            ("keys_mode", "all".into()),
            ("cfg.url", url.into()),
            ("cfg.method", "POST".into()),
            ("op", "save".into()),
        ];
        if require {
            f.push(("require_test", "on".into()));
        }
        f
    };
    let post = |f: Vec<(&'static str, String)>| {
        let b = &b;
        async move {
            let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
            b.post("/destinations/new/webhook", &f).await
        }
    };
    // The API's message, next to the field it names.
    let r = post(form("not a url", false)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.html.contains(r#"<p class="field-error" id="f-cfg-url-error">config.url must be an absolute http(s) URL, got &#34;not a url&#34;</p>"#),
        "{}",
        r.html
    );
    // A failing connection test stops the save.
    let r = post(form("http://127.0.0.1:9/unreachable", true)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.html.contains("Not saved: the connection test failed"));
    assert!(r.html.contains(r#"class="test-result failed""#));
    let listed = s.get(DEST).await;
    assert_eq!(listed.body["total_count"], 0);
    // Without the test it saves, exactly as the API would have.
    let r = post(form("http://127.0.0.1:9/unreachable", false)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let id = r.location()["/destinations/".len()..36 + "/destinations/".len()].to_string();
    let d = s.get(&format!("{DEST}/{id}")).await;
    assert_eq!(
        d.body["data"]["config"]["url"],
        "http://127.0.0.1:9/unreachable"
    );
    assert_eq!(d.body["data"]["name"], "Hook");

    // An edit that leaves a secret empty keeps it; one that types a new value replaces it.
    let lf = s
        .post(
            DEST,
            json!({"type": "langfuse", "name": "lf", "config": {"publicKey": "pk-lf-0123456789abcd", "secretKey": "sk-lf-0123456789wxyz"}}),
        )
        .await;
    let lf_id = lf.body["data"]["id"].as_str().unwrap().to_string();
    let edit = b.get(&format!("/destinations/{lf_id}/edit")).await;
    assert_eq!(edit.status, 200);
    assert!(
        !edit.html.contains("sk-lf-0123456789wxyz"),
        "no secret on the page"
    );
    assert!(edit.html.contains("sk-l...wxyz"), "its mask is");
    let save = |secret: &'static str| {
        let b = &b;
        let csrf = csrf.clone();
        let lf_id = lf_id.clone();
        async move {
            b.post(
                &format!("/destinations/{lf_id}/edit"),
                &[
                    ("csrf", csrf.as_str()),
                    ("name", "lf renamed"),
                    ("enabled", "on"),
                    ("sampling_rate", "0.5"),
                    ("regions", "global"),
                    ("keys_mode", "all"),
                    ("cfg.publicKey", ""),
                    ("cfg.secretKey", secret),
                    ("cfg.baseUrl", "https://us.cloud.langfuse.com"),
                    ("op", "save"),
                ],
            )
            .await
        }
    };
    let r = save("").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let stored = s.stored_destination(&lf_id).await;
    assert_eq!(stored.config["secretKey"], "sk-lf-0123456789wxyz");
    assert_eq!(stored.name.as_deref(), Some("lf renamed"));
    assert_eq!(stored.sampling_rate, 0.5);
    let r = save("sk-lf-new-secret-value-42").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.html);
    let d = s.get(&format!("{DEST}/{lf_id}")).await;
    assert_eq!(d.body["data"]["config"]["secretKey"], "sk-l...e-42");
}

#[tokio::test]
async fn the_preview_routes_the_workspaces_recent_generations() {
    let s = TestServer::start().await;
    let (key, _) = s.workspace_key(None).await;
    let receiver = common::receiver::Receiver::start().await;
    let id = webhook(&s, &receiver.url).await;
    let records: Vec<_> = ["openai/gpt-4o", "openai/o3", "anthropic/claude-sonnet-4"]
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("g{i}"), "model": m, "created_at": "2026-12-01T10:00:00Z"}))
        .collect();
    let r = s
        .send(
            reqwest::Method::POST,
            "/api/v1/generations",
            Some(&key),
            Some(common::Body::Json(json!(records))),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    // Delivered: the records are done and the log may be truncated; the preview still sees
    // them.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let st = s.get(&format!("{DEST}/{id}/status")).await;
        if st.body["data"]["counts"]["delivered"] == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{}", st.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut b = Browser::new(&s);
    b.sign_in(&s.mgmt_key).await;
    let csrf = b.csrf().await;
    let preview = |rules: Vec<(&'static str, &'static str)>| {
        let b = &b;
        let csrf = csrf.clone();
        let id = id.clone();
        async move {
            let mut f = vec![
                ("csrf", csrf.as_str()),
                ("dest_id", id.as_str()),
                ("regions", "global"),
                ("keys_mode", "all"),
                ("sampling_rate", "1"),
                ("filter_enabled", "on"),
            ];
            f.extend(rules);
            b.post("/destinations/preview", &f).await
        }
    };
    let all = preview(vec![]).await;
    assert_eq!(all.status, 200, "{}", all.html);
    assert!(
        all.html.contains(
            r#"<span id="preview-passing">3</span> of <span id="preview-total">3</span>"#
        ),
        "{}",
        all.html
    );
    let openai = preview(vec![
        ("g0.logic", "and"),
        ("g0.r0.field", "model"),
        ("g0.r0.op", "starts_with"),
        ("g0.r0.value", "openai/"),
    ])
    .await;
    assert!(
        openai.html.contains(
            r#"<span id="preview-passing">2</span> of <span id="preview-total">3</span>"#
        ),
        "{}",
        openai.html
    );
    assert!(openai.html.contains("filtered out"));
    let invalid = preview(vec![
        ("g0.r0.field", "total_cost"),
        ("g0.r0.op", "gt"),
        ("g0.r0.value", "a lot"),
    ])
    .await;
    assert!(
        invalid
            .html
            .contains("filter_rules.groups[0].rules[0].value must be a number for operator gt"),
        "{}",
        invalid.html
    );
}

#[tokio::test]
async fn assets_are_embedded_and_cached_for_a_year() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    b.sign_in(&s.mgmt_key).await;
    let page = b.get("/destinations").await;
    for ext in [".js", ".css", ".svg"] {
        let at = page
            .html
            .find("/assets/")
            .map(|_| ())
            .and_then(|_| {
                page.html
                    .match_indices("/assets/")
                    .map(|(i, _)| &page.html[i..])
                    .find(|rest| rest[..rest.find('"').unwrap()].ends_with(ext))
            })
            .unwrap_or_else(|| panic!("no {ext} asset linked"));
        let path = &at[..at.find('"').unwrap()];
        let r = b.get(path).await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(
            r.headers["cache-control"], "public, max-age=31536000, immutable",
            "{path}"
        );
    }
    assert_eq!(b.get("/assets/htmx.js").await.status, 404);
    // No third-party origin anywhere in the page.
    assert!(!page.html.contains("https://"), "{}", page.html);
    // Off, the dashboard is not served.
    let off = TestServer::start_with(|st| st.dashboard.enabled = false).await;
    let r = Browser::new(&off).get("/signin").await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn every_type_has_a_form_generated_from_its_schema() {
    let s = TestServer::start().await;
    let mut b = Browser::new(&s);
    b.sign_in(&s.mgmt_key).await;
    let types = b.get("/destinations/new").await;
    for ty in tracecast_model::DestinationType::ALL {
        assert!(
            types
                .html
                .contains(&format!(r#"href="/destinations/new/{}""#, ty.as_str())),
            "{ty} is offered"
        );
        let p = b.get(&format!("/destinations/new/{}", ty.as_str())).await;
        assert_eq!(p.status, 200, "{ty}: {}", p.html);
        for f in ty.schema() {
            if matches!(f.kind, tracecast_model::config::FieldKind::Headers) {
                assert!(p.html.contains(r#"id="add-header""#), "{ty}: headers");
                continue;
            }
            let id = format!(r#"id="f-cfg-{}""#, f.name);
            assert!(p.html.contains(&id), "{ty}.{}: no input", f.name);
            assert!(
                p.html.contains(&format!(r#"for="f-cfg-{}""#, f.name)),
                "{ty}.{}: no label",
                f.name
            );
            assert!(
                unescape(&p.html).contains(f.help),
                "{ty}.{}: no help text",
                f.name
            );
            if f.server_issued {
                assert!(
                    !p.html.contains(&format!(r#"name="cfg.{}""#, f.name)),
                    "{ty}.{}: the server issues it; the form never sends it",
                    f.name
                );
            }
        }
    }
    assert_eq!(b.get("/destinations/new/not-a-type").await.status, 404);
}
