//! The `s3` destination against real S3 servers on 127.0.0.1:
//! - `s3s-fs` (the `s3s` S3 service over a temporary directory), which verifies every SigV4
//!   signature against a known key pair, so a wrong secret fails the way S3 fails;
//! - `moto_server` (PyPI `moto[server]`) playing AWS STS for `authMode: iam_role`, run with the
//!   interpreter in `TRACECAST_TEST_PYTHON` (default `<workspace>/.venv/bin/python`);
//! - a small scripted S3 (axum) for the answers a healthy server does not give: 503 SlowDown
//!   with Retry-After, a 400 for one object of a batch, region redirects, a fake STS.

mod common;
use common::golden;
use common::setup::{ALL_GROUPS, config};

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::{full_record, generation, secret_record};
use serde_json::{Value, json};
use tracecast_exporters::{ExportContext, Exporter, ItemOutcome, Outcome, build};
use tracecast_model::DestinationType;
use tracecast_model::trace::{TraceOptions, TraceView};

const BUCKET: &str = "traces-bucket";
const ACCESS_KEY: &str = "AKIATRACECASTTEST01";
const SECRET_KEY: &str = "tracecast-test-secret-key-0123456789abcdef";

fn ctx() -> ExportContext {
    ExportContext::new(Duration::from_secs(10))
}

fn s3(cfg: Value) -> Arc<dyn Exporter> {
    s3_with(cfg, &ctx())
}

fn s3_with(cfg: Value, ctx: &ExportContext) -> Arc<dyn Exporter> {
    match build(DestinationType::S3, &config(cfg), ctx) {
        Ok(e) => e,
        Err(e) => panic!("s3 exporter: {e}"),
    }
}

// ---- s3s-fs: a SigV4-verifying S3 over a temporary directory ----

struct S3sServer {
    url: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3sServer {
    async fn start() -> S3sServer {
        S3sServer::start_with(
            s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY),
            None,
        )
        .await
    }

    /// An s3s-fs that verifies signatures against `auth`'s key pairs and, with `tokens`, also
    /// requires each request's session token to be signed (see [`SignedSessionTokens`]).
    async fn start_with(
        auth: s3s::auth::SimpleAuth,
        tokens: Option<SignedSessionTokens>,
    ) -> S3sServer {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::service::S3ServiceBuilder;

        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join(BUCKET)).expect("bucket dir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s-fs root");
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(auth);
        if let Some(tokens) = tokens {
            b.set_access(tokens);
        }
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), service)
                        .await;
                });
            }
        });
        S3sServer {
            url: format!("http://{addr}"),
            root,
            task,
        }
    }

    fn config(&self, extra: Value) -> Value {
        let mut c = json!({
            "bucketName": BUCKET,
            "accessKeyId": ACCESS_KEY,
            "secretAccessKey": SECRET_KEY,
            "endpoint": self.url,
            "provider": "other",
        });
        for (k, v) in extra.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    }

    fn bucket_dir(&self) -> PathBuf {
        self.root.path().join(BUCKET)
    }

    /// Every object of the bucket: key -> bytes (s3s-fs keeps its own metadata in hidden
    /// files, which are skipped).
    fn objects(&self) -> HashMap<String, Vec<u8>> {
        fn walk(base: &Path, dir: &Path, out: &mut HashMap<String, Vec<u8>>) {
            for entry in std::fs::read_dir(dir).expect("read_dir").flatten() {
                let p = entry.path();
                let name = entry.file_name().to_string_lossy().to_string();
                if name.starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    let key = p
                        .strip_prefix(base)
                        .expect("under base")
                        .to_string_lossy()
                        .replace('\\', "/");
                    out.insert(key, std::fs::read(&p).expect("read object"));
                }
            }
        }
        let mut out = HashMap::new();
        walk(&self.bucket_dir(), &self.bucket_dir(), &mut out);
        out
    }
}

impl Drop for S3sServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Session tokens checked on top of s3s's SigV4 verification. s3s verifies the signature over
/// every header the request lists in `SignedHeaders` (with the secret of the access key it
/// names), but does not know about session tokens; this check (run by s3s after the signature
/// passed) requires `x-amz-security-token` to be one of those signed headers and to be the
/// token issued with that access key. So a token sent unsigned, altered, or paired with another
/// key is refused (403 AccessDenied), as S3 refuses it. Every accepted request's
/// `(access key, token)` is recorded, in order.
#[derive(Clone)]
struct SignedSessionTokens {
    expected: HashMap<String, String>,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl SignedSessionTokens {
    fn new(pairs: &[(&str, &str)]) -> Self {
        SignedSessionTokens {
            expected: pairs
                .iter()
                .map(|(k, t)| (k.to_string(), t.to_string()))
                .collect(),
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl s3s::access::S3Access for SignedSessionTokens {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let Some(access_key) = cx.credentials().map(|c| c.access_key.clone()) else {
            return Err(s3s::s3_error!(AccessDenied, "the request is not signed"));
        };
        let headers = cx.headers();
        let token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let signed = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|a| a.split("SignedHeaders=").nth(1))
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_default();
        if !signed.split(';').any(|h| h == "x-amz-security-token") {
            return Err(s3s::s3_error!(
                AccessDenied,
                "x-amz-security-token is not among the signed headers"
            ));
        }
        if self.expected.get(&access_key) != Some(&token) {
            return Err(s3s::s3_error!(
                AccessDenied,
                "the security token is not the one issued with this access key"
            ));
        }
        self.seen.lock().unwrap().push((access_key, token));
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("object is JSON")
}

// ---- a scripted S3 / STS for error answers ----

#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// An answer for requests whose `METHOD path` contains `matches`.
#[derive(Clone)]
struct Rule {
    matches: String,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Used this many times at most (then the next rule applies).
    times: usize,
}

fn rule(matches: &str, status: u16, body: &str) -> Rule {
    Rule {
        matches: matches.into(),
        status,
        headers: Vec::new(),
        body: body.into(),
        times: usize::MAX,
    }
}

impl Rule {
    fn header(mut self, k: &'static str, v: &str) -> Self {
        self.headers.push((k, v.into()));
        self
    }
    fn times(mut self, n: usize) -> Self {
        self.times = n;
        self
    }
}

#[derive(Clone, Default)]
struct Script {
    rules: Arc<Mutex<Vec<Rule>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn scripted(
    State(s): State<Script>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let line = format!("{method} {}", uri.path());
    s.seen.lock().unwrap().push(Seen {
        method,
        path: uri.path().to_string(),
        headers,
        body,
    });
    let mut rules = s.rules.lock().unwrap();
    let Some(r) = rules
        .iter_mut()
        .find(|r| r.times > 0 && line.contains(&r.matches))
    else {
        return StatusCode::OK.into_response();
    };
    r.times -= 1;
    let mut resp = (StatusCode::from_u16(r.status).unwrap(), r.body.clone()).into_response();
    for (k, v) in &r.headers {
        resp.headers_mut().insert(*k, v.parse().unwrap());
    }
    resp
}

struct ScriptedServer {
    addr: SocketAddr,
    script: Script,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedServer {
    async fn start(rules: Vec<Rule>) -> ScriptedServer {
        let script = Script::default();
        *script.rules.lock().unwrap() = rules;
        let app = Router::new().fallback(scripted).with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ScriptedServer { addr, script, task }
    }
    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn seen(&self) -> Vec<Seen> {
        self.script.seen.lock().unwrap().clone()
    }
}

impl Drop for ScriptedServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn s3_error(code: &str, message: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>R1</RequestId></Error>"#
    )
}

// ---- delivery to a SigV4-verifying server ----

#[tokio::test]
async fn puts_one_signed_object_per_trace_under_the_default_key() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({"headers": {"x-amz-meta-source": "tracecast"}})));
    assert_eq!(exporter.limits().max_items, 16);
    let a = generation(full_record());
    let b = generation(secret_record());
    let payload = exporter
        .encode(&[
            TraceView::new(&a, ALL_GROUPS),
            TraceView::new(&b, TraceOptions::default()),
        ])
        .unwrap();
    assert_eq!(payload.items, 2);
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);

    let objects = srv.objects();
    let mut keys: Vec<_> = objects.keys().cloned().collect();
    keys.sort();
    // `created_at` 2026-01-01T13:37:42.250Z = 1767274662 (the generation id's 1767225600 is
    // not a time); the first trace has a custom trace_id, so its generation id keeps it apart
    // from the trace's other generations.
    assert_eq!(
        keys,
        vec![
            "openrouter-traces/2026-01-01/gen-secret-1767225600.json".to_string(),
            "openrouter-traces/2026-01-01/order_processing_001-1767274662-gen-1767225600-AbCdEfGhIjKlMnOpQrSt.json".to_string(),
        ]
    );

    // Every key of OpenRouter's "Supported Metadata Keys" table and the user/session mapping.
    let doc = parse(&objects[&keys[1]]);
    assert_eq!(doc["id"], "order_processing_001", "trace_id -> id");
    assert_eq!(
        doc["name"], "Order Processing Pipeline",
        "trace_name -> name"
    );
    assert_eq!(doc["userId"], "user_12345");
    assert_eq!(doc["sessionId"], "session_abc");
    assert_eq!(doc["metadata"]["order_id"], "ORD-12345");
    assert_eq!(doc["metadata"]["customer"], json!({"tier": "gold"}));
    assert!(doc["metadata"].get("trace_name").is_none());
    let obs = doc["observations"].as_array().unwrap();
    assert_eq!(obs.len(), 2);
    assert_eq!(obs[0]["type"], "SPAN");
    assert_eq!(
        obs[0]["name"], "Extraction",
        "span_name -> observation name"
    );
    assert_eq!(obs[0]["parentObservationId"], "00f067aa0ba902b7");
    let g = &obs[1];
    assert_eq!(g["type"], "GENERATION");
    assert_eq!(g["name"], "Extract Order Details", "generation_name");
    assert_eq!(g["id"], "gen-1767225600-AbCdEfGhIjKlMnOpQrSt");
    assert_eq!(g["parentObservationId"], obs[0]["id"]);
    assert_eq!(g["metadata"]["order_id"], "ORD-12345");
    assert_eq!(
        g["input"]["messages"][1]["content"],
        "Process this order: 2 widgets"
    );
    assert_eq!(g["output"]["content"], "Looking up the SKU.");
    assert_eq!(g["usage"]["input"], 120);
    assert_eq!(g["usage"]["output"], 30);
    assert_eq!(g["cost"]["total"], 0.00123);
    assert_eq!(g["timing"]["latencyMs"], 1523.5);
    assert_eq!(g["startTime"], "2026-01-01T13:37:42.250Z");
    assert_eq!(g["endTime"], "2026-01-01T13:37:43.773Z");

    let plain = parse(&objects[&keys[0]]);
    assert_eq!(plain["id"], "gen-secret");
    assert_eq!(
        plain["name"], "anthropic/claude-sonnet-4",
        "model when no trace_name"
    );
    assert_eq!(plain["observations"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn golden_trace_document() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({})));
    let g = generation(full_record());
    let payload = exporter.encode(&[TraceView::new(&g, ALL_GROUPS)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let objects = srv.objects();
    assert_eq!(objects.len(), 1);
    let stored = objects.values().next().unwrap().clone();

    // The golden file: the stored object, byte for byte (one line, as Athena's JSON SerDe
    // wants). Regenerate with UPDATE_GOLDEN=1 and review the diff.
    golden::assert_bytes("s3.json", "s3 object", &stored);
}

#[tokio::test]
async fn privacy_mode_stores_no_content() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({})));
    let g = generation(secret_record());
    let opts = TraceOptions {
        privacy_mode: true,
        ..ALL_GROUPS
    };
    let payload = exporter.encode(&[TraceView::new(&g, opts)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let objects = srv.objects();
    let (_, bytes) = objects.iter().next().expect("one object");
    let text = String::from_utf8_lossy(bytes);
    assert!(!text.contains("SECRET"), "content leaked: {text}");
    let doc = parse(bytes);
    let gen_obs = &doc["observations"][0];
    assert!(gen_obs.get("input").is_none() && gen_obs.get("output").is_none());
    // Everything else is still there.
    assert_eq!(gen_obs["usage"]["input"], 3);
    assert_eq!(gen_obs["cost"]["total"], 0.5);
    assert_eq!(gen_obs["model"], "anthropic/claude-sonnet-4");
    assert_eq!(gen_obs["toolCallNames"], json!(["lookup"]));
    assert_eq!(doc["metadata"]["env"], "prod");
    assert_eq!(doc["userId"], "u-1");
}

#[tokio::test]
async fn key_template_expands_every_variable_and_retries_overwrite() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({
        "prefix": "prod/llm",
        "pathTemplate": "{prefix}/{year}/{month}/{day}/{apiKeyName}/{date}"
    })));
    let mut rec = secret_record();
    rec["created_at"] = json!("2024-01-15T10:00:00Z");
    let mut g = generation(rec);
    g.identity.api_key_name = Some("Team A / prod".into());
    let payload = exporter.encode(&[TraceView::new(&g, ALL_GROUPS)]).unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    // The same generation again (a retry): the same key, overwritten.
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    // The key name is in the key even when the identity group is off (then it is only left
    // out of the document): same key again.
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let keys: Vec<_> = srv.objects().into_keys().collect();
    assert_eq!(
        keys,
        vec!["prod/llm/2024/01/15/Team_A___prod/2024-01-15/gen-secret-1705312800.json".to_string()]
    );
}

#[test]
fn unknown_template_variables_are_refused() {
    for (template, var) in [("{prefix}/{hour}", "{hour}"), ("{bucket}/x", "{bucket}")] {
        let cfg = json!({
            "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
            "pathTemplate": template
        });
        let err = match build(DestinationType::S3, &config(cfg.clone()), &ctx()) {
            Ok(_) => panic!("{template} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("pathTemplate") && err.contains(var), "{err}");
        // The destination validation refuses it before it is saved.
        match tracecast_model::config::validate(DestinationType::S3, &cfg) {
            Ok(_) => panic!("{template} passed config validation"),
            Err(e) => assert!(e.to_string().contains(var), "{e}"),
        }
    }
}

#[test]
fn providers_that_need_an_endpoint_say_so() {
    for provider in ["cloudflare_r2", "other"] {
        let cfg = json!({
            "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
            "provider": provider
        });
        match build(DestinationType::S3, &config(cfg), &ctx()) {
            Ok(_) => panic!("{provider} without endpoint was accepted"),
            Err(e) => assert!(e.to_string().contains("endpoint"), "{e}"),
        }
    }
}

// ---- credentials refused ----

#[tokio::test]
async fn a_wrong_secret_pauses_with_signature_does_not_match() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({"secretAccessKey": "not-the-secret-0123456789"})));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    match exporter.send(&payload).await {
        Outcome::Unauthorized { status, error } => {
            assert_eq!(status, 403);
            assert!(error.contains("SignatureDoesNotMatch"), "{error}");
            assert!(!error.contains("not-the-secret"), "secret leaked: {error}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    assert!(srv.objects().is_empty());

    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(403));
    assert!(
        check
            .message
            .starts_with("S3 rejected the secret access key (403 SignatureDoesNotMatch"),
        "{}",
        check.message
    );
}

#[tokio::test]
async fn an_unknown_access_key_is_named() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({"accessKeyId": "AKIAUNKNOWN000000000"})));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(403));
    assert!(
        // AWS says InvalidAccessKeyId; s3s says NotSignedUp.
        check
            .message
            .starts_with("S3 rejected the access key ID (403 "),
        "{}",
        check.message
    );
}

#[tokio::test]
async fn test_connection_writes_then_deletes_under_the_prefix() {
    let srv = S3sServer::start().await;
    let exporter = s3(srv.config(json!({"prefix": "checks/here"})));
    let check = exporter.test_connection().await;
    assert!(check.ok, "{}", check.message);
    assert_eq!(check.status, Some(200));
    assert!(
        check.message.contains(&format!(
            "s3://{BUCKET}/checks/here/tracecast-connection-test-"
        )),
        "{}",
        check.message
    );
    assert!(check.message.contains("then deleted"), "{}", check.message);
    assert!(srv.objects().is_empty(), "the test object was deleted");

    // A missing bucket is named (s3s-fs creates missing bucket directories, so a scripted
    // S3 plays that answer).
    let scripted = ScriptedServer::start(vec![rule(
        "PUT",
        404,
        &s3_error("NoSuchBucket", "The specified bucket does not exist"),
    )])
    .await;
    let missing = s3(json!({
        "bucketName": "no-such-bucket", "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "endpoint": scripted.url()
    }));
    let check = missing.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(404));
    assert!(
        check.message.contains("no-such-bucket does not exist"),
        "{}",
        check.message
    );
}

#[tokio::test]
async fn session_token_is_sent_and_signed() {
    let srv = ScriptedServer::start(vec![]).await;
    let exporter = s3(json!({
        "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "sessionToken": "FwoGZXIvYXdzEXAMPLETOKEN", "endpoint": srv.url(), "region": "eu-west-3",
        "headers": {"X-Amz-Storage-Class": "STANDARD_IA", "Authorization": "ignored"}
    }));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let seen = srv.seen();
    assert_eq!(seen.len(), 1);
    let put = &seen[0];
    assert_eq!(put.method, Method::PUT);
    // Path-style on a custom endpoint.
    assert_eq!(
        put.path,
        format!("/{BUCKET}/openrouter-traces/2026-01-01/gen-secret-1767225600.json")
    );
    assert_eq!(
        put.header("x-amz-security-token"),
        "FwoGZXIvYXdzEXAMPLETOKEN"
    );
    assert_eq!(put.header("x-amz-storage-class"), "STANDARD_IA");
    assert_eq!(put.header("content-type"), "application/json");
    let auth = put.header("authorization");
    assert!(
        auth.starts_with(&format!("AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/")),
        "{auth}"
    );
    assert!(auth.contains("/eu-west-3/s3/aws4_request"), "{auth}");
    assert!(
        auth.contains("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token;x-amz-storage-class"),
        "{auth}"
    );
    assert_eq!(parse(&put.body)["id"], "gen-secret");
}

#[tokio::test]
async fn session_token_is_covered_by_a_signature_s3_verifies() {
    const TOKEN: &str = "FwoGZXIvYXdzEXAMPLETOKEN";
    let tokens = SignedSessionTokens::new(&[(ACCESS_KEY, TOKEN)]);
    let srv = S3sServer::start_with(
        s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY),
        Some(tokens.clone()),
    )
    .await;
    let exporter = s3(srv.config(json!({"sessionToken": TOKEN, "region": "eu-west-3"})));
    let check = exporter.test_connection().await;
    assert!(check.ok, "{}", check.message);
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let objects = srv.objects();
    let key = "openrouter-traces/2026-01-01/gen-secret-1767225600.json";
    assert_eq!(parse(&objects[key])["id"], "gen-secret");
    let seen = tokens.seen();
    assert!(seen.len() >= 2, "the test connection and the PUT: {seen:?}");
    assert!(
        seen.iter().all(|(k, t)| k == ACCESS_KEY && t == TOKEN),
        "{seen:?}"
    );

    // Another token with the same keys is refused: the server checks the token it verified.
    let other = s3(srv.config(json!({"sessionToken": "FwoGZXIvYXdzOTHERTOKEN"})));
    assert!(matches!(
        other.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
}

// ---- error answers ----

#[tokio::test]
async fn slow_down_is_retried_after_retry_after() {
    let srv = ScriptedServer::start(vec![
        rule(
            "PUT",
            503,
            &s3_error("SlowDown", "Please reduce your request rate."),
        )
        .header("Retry-After", "7"),
    ])
    .await;
    let exporter = s3(json!({
        "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "endpoint": srv.url()
    }));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    match exporter.send(&payload).await {
        Outcome::Retry {
            status,
            error,
            retry_after,
        } => {
            assert_eq!(status, Some(503));
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(error.contains("SlowDown"), "{error}");
        }
        other => panic!("expected Retry, got {other:?}"),
    }

    let srv = ScriptedServer::start(vec![rule("PUT", 429, "").header("Retry-After", "3")]).await;
    let exporter = s3(json!({
        "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "endpoint": srv.url()
    }));
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
}

#[tokio::test]
async fn one_refused_object_of_a_batch_is_a_partial_answer() {
    let srv = ScriptedServer::start(vec![
        rule("gen-b", 400, &s3_error("InvalidArgument", "bad object")),
        rule("gen-c", 500, &s3_error("InternalError", "try again")),
    ])
    .await;
    let exporter = s3(json!({
        "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "endpoint": srv.url()
    }));
    let gens: Vec<_> = ["gen-a", "gen-b", "gen-c"]
        .iter()
        .map(|id| {
            let mut r = secret_record();
            r["id"] = json!(id);
            generation(r)
        })
        .collect();
    let views: Vec<_> = gens
        .iter()
        .map(|g| TraceView::new(g, TraceOptions::default()))
        .collect();
    let payload = exporter.encode(&views).unwrap();
    match exporter.send(&payload).await {
        Outcome::Partial(items) => {
            assert_eq!(items.len(), 3);
            assert_eq!(items[0], ItemOutcome::Delivered);
            assert!(
                matches!(&items[1], ItemOutcome::Rejected { error } if error.contains("400 InvalidArgument: bad object")),
                "{:?}",
                items[1]
            );
            assert!(
                matches!(&items[2], ItemOutcome::Retry { error } if error.contains("500 InternalError")),
                "{:?}",
                items[2]
            );
        }
        other => panic!("expected Partial, got {other:?}"),
    }
    assert_eq!(srv.seen().len(), 3, "one PUT per trace");
}

#[tokio::test]
async fn aws_bucket_region_is_detected_once_and_refreshed_on_redirect() {
    let srv = ScriptedServer::start(vec![
        rule("HEAD", 301, "")
            .header("x-amz-bucket-region", "eu-central-1")
            .times(1),
        rule("HEAD", 200, "").header("x-amz-bucket-region", "ap-south-1"),
        rule(
            "PUT",
            301,
            &s3_error("PermanentRedirect", "use the right endpoint"),
        )
        .times(1),
    ])
    .await;
    let exporter = s3(json!({
        "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "endpoint": srv.url(), "provider": "aws"
    }));
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    // First send: HEAD finds eu-central-1, then the PUT is redirected: retry and re-detect.
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Retry {
            status: Some(301),
            ..
        }
    ));
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let seen = srv.seen();
    let lines: Vec<_> = seen
        .iter()
        .map(|s| {
            let auth = s.header("authorization");
            let region = auth.split('/').nth(2).unwrap_or("").to_string();
            format!("{} {region}", s.method)
        })
        .collect();
    assert_eq!(
        lines,
        vec![
            "HEAD us-east-1",
            "PUT eu-central-1",
            "HEAD us-east-1",
            "PUT ap-south-1",
            "PUT ap-south-1"
        ],
        "the region is detected, cached, and detected again after a redirect"
    );
    assert_eq!(seen[0].path, format!("/{BUCKET}"));
}

#[tokio::test]
async fn a_configured_wrong_region_pauses_and_names_the_right_one() {
    let srv = ScriptedServer::start(vec![
        rule(
            "PUT",
            400,
            &s3_error(
                "AuthorizationHeaderMalformed",
                "the region 'us-west-2' is wrong; expecting 'eu-west-1'",
            ),
        )
        .header("x-amz-bucket-region", "eu-west-1"),
    ])
    .await;
    let exporter = s3(json!({
        "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
        "endpoint": srv.url(), "provider": "aws", "region": "us-west-2"
    }));
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert!(
        check.message.contains("set config.region to it") && check.message.contains("eu-west-1"),
        "{}",
        check.message
    );
}

// ---- IAM role: STS AssumeRole ----

/// The base credentials `iam_role` assumes the role with come from the environment. Set once
/// for this test binary, before any exporter reads them; no other test here reads `AWS_*`.
fn base_credentials_in_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: these variables are written once, and only read by the exporter's STS code
        // (through std::env, which synchronizes with set_var); nothing in this test binary
        // reads them through libc concurrently.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", "AKIABASEENVIRONMENT1");
            std::env::set_var("AWS_SECRET_ACCESS_KEY", "base-environment-secret");
            std::env::remove_var("AWS_SESSION_TOKEN");
            std::env::remove_var("AWS_ENDPOINT_URL_STS");
        }
    });
}

fn sts_answer(akid: &str, expires_in: chrono::Duration) -> String {
    let exp = (chrono::Utc::now() + expires_in).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><AssumeRoleResult><Credentials><AccessKeyId>{akid}</AccessKeyId><SecretAccessKey>temp-secret</SecretAccessKey><SessionToken>temp-token-{akid}</SessionToken><Expiration>{exp}</Expiration></Credentials><AssumedRoleUser><Arn>arn:aws:sts::123456789012:assumed-role/tracecast/s</Arn><AssumedRoleId>AROA:s</AssumedRoleId></AssumedRoleUser></AssumeRoleResult></AssumeRoleResponse>"#
    )
}

#[tokio::test]
async fn iam_role_assumes_once_and_refreshes_before_expiry() {
    base_credentials_in_env();
    let sts = ScriptedServer::start(vec![
        rule(
            "POST",
            200,
            &sts_answer("ASIAFIRST", chrono::Duration::minutes(2)),
        )
        .times(1),
        rule(
            "POST",
            200,
            &sts_answer("ASIASECOND", chrono::Duration::hours(1)),
        ),
    ])
    .await;
    // The S3 side verifies each request's signature with the assumed role's secret and its
    // session token (as S3 does with temporary credentials).
    let mut auth = s3s::auth::SimpleAuth::new();
    for akid in ["ASIAFIRST", "ASIASECOND"] {
        auth.register(akid.to_owned(), "temp-secret".into());
    }
    let tokens = SignedSessionTokens::new(&[
        ("ASIAFIRST", "temp-token-ASIAFIRST"),
        ("ASIASECOND", "temp-token-ASIASECOND"),
    ]);
    let s3srv = S3sServer::start_with(auth, Some(tokens.clone())).await;
    let ctx = ctx().with_endpoint_override(DestinationType::S3, &sts.url());
    let exporter = s3_with(
        json!({
            "bucketName": BUCKET, "authMode": "iam_role",
            "roleArn": "arn:aws:iam::123456789012:role/tracecast", "externalId": "ext-123",
            "endpoint": s3srv.url, "region": "eu-west-1", "provider": "other"
        }),
        &ctx,
    );
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    for _ in 0..3 {
        assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    }
    let calls = sts.seen();
    // The first credentials expire within the refresh margin: assumed again once, then cached.
    assert_eq!(calls.len(), 2, "AssumeRole calls");
    let form: HashMap<String, String> = url::form_urlencoded::parse(&calls[0].body)
        .into_owned()
        .collect();
    assert_eq!(form["Action"], "AssumeRole");
    assert_eq!(form["RoleArn"], "arn:aws:iam::123456789012:role/tracecast");
    assert_eq!(form["ExternalId"], "ext-123");
    assert!(
        calls[0]
            .header("authorization")
            .starts_with("AWS4-HMAC-SHA256 Credential=AKIABASEENVIRONMENT1/"),
        "STS is signed with the environment's credentials"
    );
    assert!(
        calls[0]
            .header("authorization")
            .contains("/eu-west-1/sts/aws4_request")
    );
    assert_eq!(s3srv.objects().len(), 1, "the object was written");
    assert_eq!(
        tokens.seen(),
        vec![
            ("ASIAFIRST".to_string(), "temp-token-ASIAFIRST".to_string()),
            (
                "ASIASECOND".to_string(),
                "temp-token-ASIASECOND".to_string()
            ),
            (
                "ASIASECOND".to_string(),
                "temp-token-ASIASECOND".to_string()
            ),
        ]
    );
}

#[tokio::test]
async fn iam_role_refused_by_sts_pauses_with_the_role_named() {
    base_credentials_in_env();
    let sts = ScriptedServer::start(vec![rule(
        "POST",
        403,
        r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not authorized to perform sts:AssumeRole</Message></Error></ErrorResponse>"#,
    )])
    .await;
    let ctx = ctx().with_endpoint_override(DestinationType::S3, &sts.url());
    let exporter = s3_with(
        json!({
            "bucketName": BUCKET, "authMode": "iam_role",
            "roleArn": "arn:aws:iam::123456789012:role/nope", "endpoint": "http://127.0.0.1:9"
        }),
        &ctx,
    );
    let check = exporter.test_connection().await;
    assert!(!check.ok);
    assert_eq!(check.status, Some(403));
    assert!(
        check.message.contains(
            "AWS STS refused to assume role arn:aws:iam::123456789012:role/nope (403 AccessDenied"
        ),
        "{}",
        check.message
    );
    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert!(matches!(
        exporter.send(&payload).await,
        Outcome::Unauthorized { status: 403, .. }
    ));
}

/// `moto_server` on a free port, stopped on drop.
struct Moto {
    child: std::process::Child,
    url: String,
}

impl Moto {
    async fn start() -> Moto {
        let python = std::env::var("TRACECAST_TEST_PYTHON")
            .unwrap_or_else(|_| format!("{}/../../.venv/bin/python", env!("CARGO_MANIFEST_DIR")));
        if !Path::new(&python).exists() {
            panic!(
                "the s3 IAM-role test needs moto_server: no Python at {python}. Create it with \
                 `python3 -m venv .venv && .venv/bin/pip install -r tests/vendors/requirements-s3.txt` \
                 at the workspace root, or set TRACECAST_TEST_PYTHON"
            );
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().unwrap().port()
        };
        let child = std::process::Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto_server with {python}: {e}"));
        let mut moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        // Starting Python and moto takes a few seconds on a busy machine.
        let deadline = Instant::now() + Duration::from_secs(90);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/moto-api/", moto.url)).send().await
                && r.status().is_success()
            {
                return moto;
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!(
                    "moto_server exited ({status}); is moto[server] installed in {python}? \
                     (pip install -r tests/vendors/requirements-s3.txt)"
                );
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {} in time",
                moto.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn iam_role_against_moto_sts() {
    base_credentials_in_env();
    let moto = Moto::start().await;
    let client = reqwest::Client::new();
    // moto's S3 (it does not check signatures) holds the bucket the role writes to.
    let r = client
        .put(format!("{}/{BUCKET}", moto.url))
        .send()
        .await
        .expect("create bucket in moto");
    assert!(r.status().is_success(), "create bucket: {}", r.status());

    let ctx = ctx().with_endpoint_override(DestinationType::S3, &moto.url);
    let exporter = s3_with(
        json!({
            "bucketName": BUCKET, "authMode": "iam_role",
            "roleArn": "arn:aws:iam::123456789012:role/tracecast", "externalId": "ext-123",
            "endpoint": moto.url, "provider": "other"
        }),
        &ctx,
    );
    let check = exporter.test_connection().await;
    assert!(check.ok, "{}", check.message);

    let g = generation(secret_record());
    let payload = exporter
        .encode(&[TraceView::new(&g, TraceOptions::default())])
        .unwrap();
    assert_eq!(exporter.send(&payload).await, Outcome::Delivered);
    let key = "openrouter-traces/2026-01-01/gen-secret-1767225600.json";
    // moto refuses anonymous reads but does not check signatures.
    let any_auth = "AWS4-HMAC-SHA256 Credential=AKIAREADER/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=00";
    let got = client
        .get(format!("{}/{BUCKET}/{key}", moto.url))
        .header("authorization", any_auth)
        .send()
        .await
        .expect("get object from moto");
    assert_eq!(got.status(), 200);
    let doc: Value = got.json().await.expect("JSON object");
    assert_eq!(doc["id"], "gen-secret");

    // The test object was deleted again: only the trace is left.
    let list = client
        .get(format!("{}/{BUCKET}?list-type=2", moto.url))
        .header("authorization", any_auth)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(list.matches("<Key>").count(), 1, "{list}");
}
