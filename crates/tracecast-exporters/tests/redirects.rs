//! Redirects are never followed, and the egress policy applies to every connection: every
//! destination type that takes a URL, against a real server on 127.0.0.1 answering 302 to a
//! second real receiver (which must see nothing, least of all a credential). Remote answers are
//! read only up to a cap, and what they quote is cleaned.

mod common;
use common::setup::ALL_GROUPS;
use common::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tracecast_exporters::egress::EgressSettings;
use tracecast_exporters::{ExportContext, Exporter, ItemOutcome, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;

/// A server on 127.0.0.1:0 answering every request with `status` and `Location: location`,
/// counting the requests.
struct Redirector {
    base: String,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Redirector {
    async fn start(status: u16, location: &str) -> Redirector {
        let hits = Arc::new(AtomicUsize::new(0));
        let (h, loc) = (hits.clone(), location.to_owned());
        let app = axum::Router::new().fallback(move || {
            let (h, loc) = (h.clone(), loc.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                (
                    StatusCode::from_u16(status).unwrap(),
                    [("location", loc)],
                    "moved",
                )
                    .into_response()
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Redirector { base, hits, task }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A credential every config below also sends as a custom header.
const SECRET: &str = "team-secret-0123456789";

/// A validated config of `ty` whose every URL is `base`.
fn config(ty: DestinationType, base: &str) -> serde_json::Map<String, Value> {
    let key = "k-0123456789abcdef0123456789abcdef";
    let mut cfg = match ty {
        DestinationType::Webhook => json!({"url": format!("{base}/hook")}),
        DestinationType::OtelCollector => json!({"endpoint": format!("{base}/v1/traces")}),
        DestinationType::Arize => {
            json!({"apiKey": key, "spaceKey": key, "modelId": "m", "baseUrl": base})
        }
        DestinationType::Braintrust => json!({"apiKey": key, "projectId": "p", "baseUrl": base}),
        DestinationType::Clickhouse => {
            json!({"host": base, "database": "db", "username": "u", "password": key})
        }
        DestinationType::Datadog => json!({"apiKey": key, "mlApp": "app", "url": base}),
        DestinationType::Langfuse => {
            json!({"publicKey": "pk-lf-0123456789", "secretKey": "sk-lf-0123456789", "baseUrl": base})
        }
        DestinationType::Langsmith => json!({"apiKey": key, "endpoint": base}),
        DestinationType::Posthog => json!({"apiKey": "phc_0123456789abcdef", "endpoint": base}),
        DestinationType::Ramp => json!({"apiKey": key, "baseUrl": base}),
        DestinationType::S3 => json!({
            "bucketName": "traces", "accessKeyId": "AKIAIOSFODNN7EXAMPLE",
            "secretAccessKey": key, "region": "us-east-1", "endpoint": base, "provider": "other"
        }),
        DestinationType::Weave => {
            json!({"apiKey": key, "entity": "e", "project": "p", "baseUrl": base})
        }
        other => panic!("no URL config for {other}"),
    };
    cfg["headers"] = json!({"X-Team-Secret": SECRET});
    tracecast_model::config::validate(ty, &cfg).unwrap_or_else(|e| panic!("{ty}: {e}"))
}

const TYPES: [DestinationType; 12] = [
    DestinationType::Webhook,
    DestinationType::OtelCollector,
    DestinationType::Arize,
    DestinationType::Braintrust,
    DestinationType::Clickhouse,
    DestinationType::Datadog,
    DestinationType::Langfuse,
    DestinationType::Langsmith,
    DestinationType::Posthog,
    DestinationType::Ramp,
    DestinationType::S3,
    DestinationType::Weave,
];

fn exporter(ctx: &ExportContext, ty: DestinationType, base: &str) -> Arc<dyn Exporter> {
    build(ty, &config(ty, base), ctx).unwrap_or_else(|e| panic!("{ty}: {e}"))
}

/// The error of an outcome that is not a delivery (panics, naming `ty`, on a delivery).
fn error_of(ty: DestinationType, o: &Outcome) -> String {
    match o {
        Outcome::Delivered => panic!("{ty}: counted delivered"),
        Outcome::Retry { error, .. }
        | Outcome::Rejected { error, .. }
        | Outcome::Unauthorized { error, .. } => error.clone(),
        Outcome::Partial(items) => items
            .iter()
            .map(|i| match i {
                ItemOutcome::Delivered => panic!("{ty}: an item counted delivered"),
                ItemOutcome::Retry { error } | ItemOutcome::Rejected { error } => error.clone(),
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

async fn send_one(e: &dyn Exporter) -> Outcome {
    let g = generation(full_record());
    let payload = e
        .encode(&[TraceView::new(&g, ALL_GROUPS)])
        .expect("encodes");
    e.send(&payload).await
}

#[tokio::test]
async fn a_redirect_is_a_failure_naming_the_location_and_nothing_reaches_the_new_host() {
    let second = Receiver::start().await;
    let landing = second.url("/landing");
    let ctx = ExportContext::new(Duration::from_secs(5));
    for status in [301u16, 302, 303, 307, 308] {
        let first = Redirector::start(status, &landing).await;
        for ty in TYPES {
            let e = exporter(&ctx, ty, &first.base);
            let before = first.hits.load(Ordering::SeqCst);
            let outcome = send_one(e.as_ref()).await;
            assert!(
                first.hits.load(Ordering::SeqCst) > before,
                "{ty}: the first host was not asked"
            );
            let error = error_of(ty, &outcome);
            assert!(
                matches!(outcome, Outcome::Retry { .. }),
                "{ty} {status}: a redirect keeps the traces for a retry: {outcome:?}"
            );
            assert!(
                error.contains(&format!("HTTP {status} redirecting to {landing}"))
                    && error.contains("redirects are not followed"),
                "{ty} {status}: {error}"
            );
            assert!(!error.contains(SECRET), "{ty}: {error}");

            let check = e.test_connection().await;
            assert!(!check.ok, "{ty} {status}: {check:?}");
            assert!(
                check.message.contains(&landing) && check.message.contains("redirect"),
                "{ty} {status}: {}",
                check.message
            );
            // Had the client followed, the second receiver would have recorded the request
            // before the answer came back.
            if let Some(req) = second.try_next().await {
                panic!(
                    "{ty} {status}: the redirect was followed with {} {} (team secret header: {:?})",
                    req.method,
                    req.path,
                    req.header("x-team-secret")
                );
            }
        }
    }
}

#[tokio::test]
async fn a_redirect_to_cloud_metadata_is_not_followed() {
    let first = Redirector::start(302, "http://169.254.169.254/latest/meta-data/").await;
    let ctx = ExportContext::new(Duration::from_secs(5));
    let e = exporter(&ctx, DestinationType::Webhook, &first.base);
    let error = error_of(DestinationType::Webhook, &send_one(e.as_ref()).await);
    assert!(
        error.contains("HTTP 302 redirecting to http://169.254.169.254/latest/meta-data/"),
        "{error}"
    );
    let check = e.test_connection().await;
    assert!(!check.ok);
    assert!(
        check.message.contains("169.254.169.254") && check.message.contains("redirect"),
        "{}",
        check.message
    );
}

fn ctx_with(allow_private: bool, allow: &[&str]) -> ExportContext {
    let settings = EgressSettings {
        allow_private,
        allow: allow.iter().map(|s| s.to_string()).collect(),
    };
    ExportContext::with_egress(Duration::from_secs(5), &settings.policy().unwrap())
}

#[tokio::test]
async fn the_egress_policy_denies_before_connecting_by_ip_by_name_and_in_decimal() {
    let rx = Receiver::start().await;
    let port = rx.addr.port();
    let closed = ctx_with(false, &[]);
    for (base, denied) in [
        (
            format!("http://127.0.0.1:{port}"),
            "egress policy denies 127.0.0.1 (loopback)".to_string(),
        ),
        // The URL parser reads 2130706433 as 127.0.0.1.
        (
            format!("http://2130706433:{port}"),
            "egress policy denies 127.0.0.1 (loopback)".to_string(),
        ),
        (
            format!("http://localhost:{port}"),
            "egress policy denies localhost (resolves to".to_string(),
        ),
    ] {
        for ty in [DestinationType::Webhook, DestinationType::Datadog] {
            let e = exporter(&closed, ty, &base);
            let error = error_of(ty, &send_one(e.as_ref()).await);
            assert!(error.contains(&denied), "{ty} {base}: {error}");
            let check = e.test_connection().await;
            assert!(!check.ok);
            assert!(check.message.contains(&denied), "{}", check.message);
        }
    }
    assert!(rx.try_next().await.is_none(), "a denied request arrived");

    // Link-local is denied by default, before any connection: no connect timeout, no
    // "connection refused" that would tell an open port from a closed one.
    let default = ExportContext::new(Duration::from_secs(5));
    for url in ["http://169.254.169.254:9", "http://[fe80::1]:9"] {
        let e = exporter(&default, DestinationType::Webhook, url);
        let check = e.test_connection().await;
        assert!(
            check.message.contains("egress policy denies")
                && check.message.contains("(link-local)"),
            "{}",
            check.message
        );
    }

    // The operator's allow list wins over the rules.
    for allow in ["127.0.0.1", "127.0.0.0/8"] {
        let open = ctx_with(false, &[allow]);
        let e = exporter(
            &open,
            DestinationType::Webhook,
            &format!("http://127.0.0.1:{port}"),
        );
        assert_eq!(send_one(e.as_ref()).await, Outcome::Delivered, "{allow}");
        rx.next().await;
    }
    let open = ctx_with(false, &["localhost"]);
    let e = exporter(
        &open,
        DestinationType::Webhook,
        &format!("http://localhost:{port}"),
    );
    assert_eq!(send_one(e.as_ref()).await, Outcome::Delivered);
    rx.next().await;
}

#[tokio::test]
async fn remote_error_bodies_are_capped_and_cannot_forge_log_lines() {
    let rx = Receiver::start().await;
    let forged = format!(
        "bad\r\n2026-01-01T00:00:00Z INFO forged line \u{1b}[31mred{}",
        "x".repeat(10_000)
    );
    rx.reply(Reply::status(500).body(&forged));
    rx.reply(Reply::status(500).body(&forged));
    let e = exporter(
        &ExportContext::new(Duration::from_secs(5)),
        DestinationType::Webhook,
        &rx.url(""),
    );
    let error = error_of(DestinationType::Webhook, &send_one(e.as_ref()).await);
    let check = e.test_connection().await;
    for msg in [&error, &check.message] {
        assert!(!msg.chars().any(char::is_control), "{msg:?}");
        assert!(msg.contains(r"bad\r\n2026-01-01"), "{msg}");
        assert!(msg.contains(r"\u{1b}[31mred"), "{msg}");
        assert!(
            msg.chars().count() <= 512 + 1,
            "{} chars",
            msg.chars().count()
        );
    }
    assert!(error.chars().count() < 320, "{error}");
}

/// A literal IP is judged before connecting, so a denied address answers the same whether a
/// port is open or closed (no port scan through the error text). This also guards how
/// `egress.rs` reads the destination out of reqwest's connector request.
#[tokio::test]
async fn literal_ip_destinations_are_checked_before_connecting() {
    let closed = ctx_with(false, &[]);
    let nothing_listens = refused_url().await;
    let base = nothing_listens.trim_end_matches("/v1/traces");
    let e = exporter(&closed, DestinationType::Webhook, base);
    let check = e.test_connection().await;
    assert!(
        check
            .message
            .contains("egress policy denies 127.0.0.1 (loopback)"),
        "{}",
        check.message
    );
    let v6 = exporter(&closed, DestinationType::Webhook, "http://[::1]:9");
    let check = v6.test_connection().await;
    assert!(
        check
            .message
            .contains("egress policy denies ::1 (loopback)"),
        "{}",
        check.message
    );
}

/// A server on 127.0.0.1:0 answering every request `500` with a `size`-byte body, written in
/// 1 MiB chunks until done or the client goes away; reports the bytes written per connection.
async fn endless_error(size: usize) -> (String, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                // Read the request head (the test requests are small).
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let answer = format!(
                    "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ncontent-length: {size}\r\n\r\n"
                );
                if conn.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'e'; 1 << 20];
                let mut written = 0;
                while written < size && conn.write_all(&chunk).await.is_ok() {
                    written += chunk.len();
                }
                let _ = tx.send(written);
            });
        }
    });
    (base, rx)
}

#[tokio::test]
async fn error_bodies_are_read_only_up_to_a_cap() {
    const BODY: usize = 256 << 20;
    const READ_AT_MOST: usize = 32 << 20;
    let (base, mut written) = endless_error(BODY).await;
    let ctx = ExportContext::new(Duration::from_secs(30))
        .with_endpoint_override(DestinationType::Opik, &base);
    let opik = build(
        DestinationType::Opik,
        &tracecast_model::config::validate(
            DestinationType::Opik,
            &json!({"apiKey": "k", "workspace": "w", "projectName": "p"}),
        )
        .unwrap(),
        &ctx,
    )
    .unwrap();
    let mut cases: Vec<(String, Arc<dyn Exporter>)> = vec![("opik".into(), opik)];
    for ty in [
        DestinationType::Posthog,
        DestinationType::Datadog,
        DestinationType::Braintrust,
        DestinationType::S3,
    ] {
        cases.push((ty.to_string(), exporter(&ctx, ty, &base)));
    }
    for (name, e) in &cases {
        for call in ["test connection", "send"] {
            let message = if call == "send" {
                error_of(DestinationType::Webhook, &send_one(e.as_ref()).await)
            } else {
                e.test_connection().await.message
            };
            assert!(message.chars().count() <= 513, "{name} {call}: {message}");
            // Every connection the call opened reports what it wrote once the client is gone
            // (at once when the client stops reading; after the whole body when it does not).
            let mut total = tokio::time::timeout(DEADLINE, written.recv())
                .await
                .expect("no connection ended before the deadline")
                .unwrap();
            while let Ok(n) = written.try_recv() {
                total += n;
            }
            assert!(
                total < READ_AT_MOST,
                "{name} {call}: {total} bytes of the {BODY}-byte error body were read"
            );
        }
    }
}
