//! What destinations may reach, through the real server: redirects are refused (nothing counted
//! delivered, nothing and no credential sent to the new host), the `[egress]` policy denies
//! link-local addresses by default and private ones when the operator says so, and the API
//! refuses URLs and headers that could leak credentials or smuggle requests.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::StatusCode;
use axum::response::IntoResponse;
use common::e2e::{
    DEST, create, fast, ingest, record, status, test_config, test_connection, wait_status,
};
use common::receiver::Receiver;
use common::{TestServer, assert_error};
use serde_json::{Value, json};
use tracecast_server::settings::{Overrides, Settings};

/// A server on 127.0.0.1:0 answering every request 302 to `location`, counting requests.
async fn redirector(location: &str) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let (h, loc) = (hits.clone(), location.to_owned());
    let app = axum::Router::new().fallback(move || {
        let (h, loc) = (h.clone(), loc.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            (StatusCode::FOUND, [("location", loc)], "").into_response()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

const SECRET: &str = "team-secret-0123456789";

#[tokio::test]
async fn a_redirect_is_never_followed_and_the_status_names_the_location() {
    let s = TestServer::start_with(fast).await;
    let second = Receiver::start().await;
    let (first, hits) = redirector(&second.url).await;
    let config = json!({"url": format!("{first}/hook"), "headers": {"X-Team-Secret": SECRET}});
    let id = create(&s, "webhook", "redirected", config.clone(), json!({})).await;
    let (key, _) = s.workspace_key(None).await;
    ingest(&s, &key, &[record("gen-r1")]).await;

    let st = wait_status(&s, &id, "the redirect error", |st| {
        st["last_error"]["message"].is_string()
    })
    .await;
    let msg = st["last_error"]["message"].as_str().unwrap();
    assert!(
        msg.contains(&format!("HTTP 302 redirecting to {}", second.url))
            && msg.contains("redirects are not followed"),
        "{st}"
    );
    assert_eq!(st["counts"]["delivered"], 0, "{st}");
    assert!(hits.load(Ordering::SeqCst) >= 1);

    for r in [
        test_connection(&s, &id).await,
        test_config(
            &s,
            json!({"type": "webhook", "name": "t", "config": config}),
        )
        .await,
    ] {
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
        let m = r.body["data"]["message"].as_str().unwrap();
        assert!(m.contains(&second.url) && m.contains("redirect"), "{m}");
    }
    // Whatever reached the second receiver would be recorded before the first host's answer
    // was read; nothing did, so no credential header went there either.
    assert!(second.requests().is_empty(), "the redirect was followed");
    assert_eq!(status(&s, &id).await["counts"]["delivered"], 0);
}

#[tokio::test]
async fn metadata_addresses_are_denied_by_default_and_loopback_is_not() {
    let s = TestServer::start_with(fast).await;
    for (url, denied) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            "egress policy denies 169.254.169.254 (link-local)",
        ),
        (
            "http://[fd00:ec2::254]/latest/meta-data/",
            "egress policy denies fd00:ec2::254 (cloud metadata)",
        ),
        (
            "http://100.100.100.200/latest/meta-data/",
            "egress policy denies 100.100.100.200 (cloud metadata)",
        ),
        (
            "http://0.0.0.0:9/",
            "egress policy denies 0.0.0.0 (unspecified)",
        ),
    ] {
        let r = test_config(
            &s,
            json!({"type": "webhook", "name": "t", "config": {"url": url}}),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
        let m = r.body["data"]["message"].as_str().unwrap();
        assert!(m.contains(denied), "{url}: {m}");
    }
    // A redirect to the metadata service is refused, not followed.
    let (first, _) = redirector("http://169.254.169.254/latest/meta-data/iam/").await;
    let r = test_config(
        &s,
        json!({"type": "webhook", "name": "t", "config": {"url": first}}),
    )
    .await;
    let m = r.body["data"]["message"].as_str().unwrap();
    assert!(
        m.contains("redirecting to http://169.254.169.254/latest/meta-data/iam/"),
        "{m}"
    );
    // Loopback stays allowed by default (single-team installs, and every other test).
    let rx = Receiver::start().await;
    let r = test_config(
        &s,
        json!({"type": "webhook", "name": "t", "config": {"url": rx.url}}),
    )
    .await;
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
}

#[tokio::test]
async fn allow_private_false_denies_loopback_in_test_connection_and_status() {
    let s = TestServer::start_with(|st| {
        fast(st);
        st.egress.allow_private = false;
    })
    .await;
    let rx = Receiver::start().await;
    let port = rx.url.split(':').nth(2).unwrap().split('/').next().unwrap();
    for url in [
        rx.url.clone(),
        format!("http://localhost:{port}/v1/traces"),
        format!("http://2130706433:{port}/v1/traces"),
    ] {
        let r = test_config(
            &s,
            json!({"type": "webhook", "name": "t", "config": {"url": url}}),
        )
        .await;
        assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
        let m = r.body["data"]["message"].as_str().unwrap();
        assert!(m.contains("egress policy denies"), "{url}: {m}");
        assert!(m.contains("loopback"), "{url}: {m}");
    }
    let id = create(&s, "webhook", "internal", json!({"url": rx.url}), json!({})).await;
    let (key, _) = s.workspace_key(None).await;
    ingest(&s, &key, &[record("gen-e1")]).await;
    let st = wait_status(&s, &id, "the egress error", |st| {
        st["last_error"]["message"].is_string()
    })
    .await;
    let msg = st["last_error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("egress policy denies 127.0.0.1 (loopback)"),
        "{st}"
    );
    assert_eq!(st["counts"]["delivered"], 0, "{st}");
    assert!(rx.requests().is_empty(), "a denied request arrived");
}

#[tokio::test]
async fn the_operator_allow_list_wins() {
    let s = TestServer::start_with(|st| {
        fast(st);
        st.egress.allow_private = false;
        st.egress.allow = vec!["127.0.0.0/8".into()];
    })
    .await;
    let rx = Receiver::start().await;
    let id = create(&s, "webhook", "allowed", json!({"url": rx.url}), json!({})).await;
    let (key, _) = s.workspace_key(None).await;
    ingest(&s, &key, &[record("gen-a1")]).await;
    wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 1).await;
}

#[test]
fn egress_settings_come_from_the_config_file_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tracecast.toml");
    std::fs::write(
        &file,
        "[egress]\nallow_private = false\nallow = [\"10.1.0.0/16\", \"collector.internal\"]\n",
    )
    .unwrap();
    let settings = Settings::load(Some(&file), &Overrides::default()).unwrap();
    assert!(!settings.egress.allow_private);
    assert_eq!(
        settings.egress.allow,
        vec!["10.1.0.0/16".to_string(), "collector.internal".into()]
    );
    assert!(settings.egress.policy().is_ok());
    assert!(Settings::default().egress.allow_private);

    // The real binary refuses to start on a bad allow entry given in the environment, and
    // says which setting is wrong.
    let out = Command::new(env!("CARGO_BIN_EXE_tracecast"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("TRACECAST_CONFIG", &file)
        .env("TRACECAST_EGRESS__ALLOW", "[\"10.0.0.0/99\"]")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("egress.allow: \"10.0.0.0/99\""), "{err}");
}

/// Creating a destination with `config` is refused with 400 and a message starting with
/// `starts`; the message never holds `secret`.
async fn refused(s: &TestServer, ty: &str, config: Value, starts: &str, secret: Option<&str>) {
    let r = s
        .post(DEST, json!({"type": ty, "name": "bad", "config": config}))
        .await;
    assert_error(&r, 400, starts);
    if let Some(secret) = secret {
        assert!(!r.text.contains(secret), "{}", r.text);
    }
}

#[tokio::test]
async fn the_api_refuses_urls_and_headers_that_leak_or_smuggle() {
    let s = TestServer::start().await;
    refused(
        &s,
        "webhook",
        json!({"url": "https://user:hunter2-pass@hooks.example.com/x"}),
        "config.url must not contain credentials",
        Some("hunter2-pass"),
    )
    .await;
    refused(
        &s,
        "clickhouse",
        json!({"host": "https://default:hunter2-pass@ch.example.com:8443", "database": "db", "username": "u", "password": "p"}),
        "config.host must not contain credentials",
        Some("hunter2-pass"),
    )
    .await;
    refused(
        &s,
        "webhook",
        json!({"url": "https://hooks.example.com/x#frag"}),
        "config.url must not contain a fragment",
        None,
    )
    .await;
    for url in [
        "https://api.datadoghq.com/api/v2/logs?x=",
        "https://api.datadoghq.com#/x",
    ] {
        refused(
            &s,
            "datadog",
            json!({"apiKey": "k", "mlApp": "a", "url": url}),
            "config.url must not contain a",
            None,
        )
        .await;
    }
    for name in [
        "Host",
        "Transfer-Encoding",
        "Content-Length",
        "Connection",
        "Upgrade",
        "TE",
        "Trailer",
        "Keep-Alive",
        "Proxy-Authorization",
    ] {
        refused(
            &s,
            "webhook",
            json!({"url": "https://hooks.example.com/x", "headers": {name: "v"}}),
            &format!("config.headers.{name} cannot be set"),
            None,
        )
        .await;
    }
    for value in ["tok\u{1b}[2Jen", "tok\ren", "tok\u{7f}"] {
        refused(
            &s,
            "webhook",
            json!({"url": "https://hooks.example.com/x", "headers": {"X-Key": value}}),
            "config.headers.X-Key must not contain control characters",
            Some(value),
        )
        .await;
    }
    // The same rules on update.
    let id = create(
        &s,
        "webhook",
        "ok",
        json!({"url": "https://hooks.example.com/x"}),
        json!({}),
    )
    .await;
    let r = s
        .patch(
            &format!("{DEST}/{id}"),
            json!({"config": {"headers": {"Host": "internal.example"}}}),
        )
        .await;
    assert_error(&r, 400, "config.headers.Host cannot be set");
}
