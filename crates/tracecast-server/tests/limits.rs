//! Resource limits (`[limits]`) against the real server: connection timeouts and cap, rate
//! limits, per-tenant caps, filter-rule budgets and ingest shapes. Waits are deadlines on a
//! condition, never timing assertions.

mod common;

use std::time::Duration;

use common::{Body, TestServer, assert_error};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const DEST: &str = "/api/v1/observability/destinations";
/// How long a test waits for the server to act before calling it stuck.
const DEADLINE: Duration = Duration::from_secs(30);

fn addr(s: &TestServer) -> String {
    s.base.trim_start_matches("http://").to_string()
}

/// Reads until the server closes the connection (or the deadline passes: `None`).
async fn read_to_close(stream: &mut TcpStream) -> Option<String> {
    let mut out = Vec::new();
    let read = tokio::time::timeout(DEADLINE, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&out).into_owned())
}

fn langfuse(name: &str) -> Value {
    json!({"type": "langfuse", "name": name, "config": {"publicKey": "pk-lf-0123456789abcd", "secretKey": "sk-lf-secret-0123wxyz"}})
}

#[tokio::test]
async fn idle_and_slow_header_connections_are_closed() {
    let s = TestServer::start_with(|st| st.limits.header_read_timeout_secs = 1).await;
    // Connected, sends nothing.
    let mut idle = TcpStream::connect(addr(&s)).await.unwrap();
    // Starts a request and never finishes its headers.
    let mut slow = TcpStream::connect(addr(&s)).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    assert!(
        read_to_close(&mut idle).await.is_some(),
        "an idle connection stayed open"
    );
    assert!(
        read_to_close(&mut slow).await.is_some(),
        "a connection with unfinished headers stayed open"
    );
    // A kept-alive connection is closed once it has been idle that long after its answer.
    let mut kept = TcpStream::connect(addr(&s)).await.unwrap();
    kept.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut kept)
        .await
        .expect("kept-alive connection stayed open");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_connection_over_the_limit_gets_503_and_the_others_are_served() {
    let s = TestServer::start_with(|st| {
        st.limits.max_connections = 2;
        st.limits.header_read_timeout_secs = 60;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(addr(&s)).await.unwrap();
        // Served: it answers a request, and stays open (keep-alive).
        c.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tokio::time::timeout(DEADLINE, c.read_exact(&mut buf))
            .await
            .expect("no answer")
            .unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(c);
    }
    let mut third = TcpStream::connect(addr(&s)).await.unwrap();
    let answer = read_to_close(&mut third).await.expect("not closed");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("limits.max_connections"), "{answer}");
    // Once one closes, a new connection is served again.
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = s.http.get(format!("{}/health", s.base)).send().await;
        if r.as_ref().is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never served again");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn a_body_that_stops_coming_gets_408() {
    let s = TestServer::start_with(|st| st.limits.body_timeout_secs = 1).await;
    let mut c = TcpStream::connect(addr(&s)).await.unwrap();
    let head = format!(
        "POST {DEST} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"type\":",
        s.mgmt_key
    );
    c.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut c)
        .await
        .expect("the server waited forever");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("limits.body_timeout_secs"), "{answer}");
}

#[tokio::test]
async fn api_and_ingest_requests_over_the_rate_get_429_with_retry_after() {
    let s = TestServer::start_with(|st| {
        st.limits.api_rate_per_key = 0.001;
        st.limits.api_burst_per_key = 2;
        st.limits.ingest_rate_per_key = 0.001;
        st.limits.ingest_burst_per_key = 1;
    })
    .await;
    let (ws_key, _) = s.workspace_key(None).await;
    // The management key: 1 call above (creating the workspace key) + 1, then limited.
    assert_eq!(s.get("/api/v1/key").await.status, 200);
    let r = s
        .http
        .get(format!("{}/api/v1/key", s.base))
        .bearer_auth(&s.mgmt_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many API requests: the per API key rate limit"),
        "{body}"
    );
    // Ingest counts in its own buckets: the management key, limited on the API, still ingests.
    let r = s
        .send(
            Method::POST,
            "/api/v1/generations?workspace_id=default",
            Some(&s.mgmt_key),
            Some(Body::Json(
                json!({"id": "m1", "model": "m", "created_at": "2026-01-01T00:00:00Z"}),
            )),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let ingest = |id: &str| {
        s.send(
            Method::POST,
            "/api/v1/generations",
            Some(&ws_key),
            Some(Body::Json(
                json!({"id": id, "model": "m", "created_at": "2026-01-01T00:00:00Z"}),
            )),
        )
    };
    assert_eq!(ingest("g1").await.status, 202);
    assert_error(&ingest("g2").await, 429, "Too many ingest requests");
    // Health is never limited.
    assert_eq!(s.send(Method::GET, "/health", None, None).await.status, 200);
}

#[tokio::test]
async fn workspaces_and_destinations_per_tenant_are_capped() {
    let s = TestServer::start_with(|st| {
        st.limits.max_workspaces_per_tenant = 2;
        st.limits.max_destinations_per_tenant = 1;
    })
    .await;
    let r = s
        .post("/api/v1/workspaces", json!({"name": "Two", "slug": "two"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_error(
        &s.post(
            "/api/v1/workspaces",
            json!({"name": "Three", "slug": "three"}),
        )
        .await,
        409,
        "The tenant already holds 2 workspaces (limits.max_workspaces_per_tenant)",
    );
    assert_eq!(s.post(DEST, langfuse("one")).await.status, 201);
    assert_error(
        &s.post(DEST, langfuse("two")).await,
        409,
        "The tenant already holds 1 destinations (limits.max_destinations_per_tenant)",
    );
    // Another tenant has its own count.
    let other = s.other_tenant().await;
    let r = s
        .send(
            Method::POST,
            DEST,
            Some(&other),
            Some(Body::Json(langfuse("x"))),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn a_destination_over_its_regex_budget_gets_400_naming_the_rule() {
    let s = TestServer::start().await;
    let rule = json!({"field": "input", "operator": "regex", "value": "[a-z0-9_]{30}x[0-9]{1,20}"});
    let groups: Vec<Value> = (0..20)
        .map(|_| json!({"rules": vec![rule.clone(); 25]}))
        .collect();
    let mut body = langfuse("regexes");
    body["filter_rules"] = json!({ "groups": groups });
    let r = s.post(DEST, body).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let msg = r.body["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("filter_rules.groups[")
            && msg.contains("].value: the destination's regexes would take"),
        "{msg}"
    );
}

#[tokio::test]
async fn a_record_of_tiny_values_is_refused_before_it_is_parsed() {
    let s = TestServer::start().await;
    let (key, _) = s.workspace_key(None).await;
    let ingest = |body: String| {
        s.send(
            Method::POST,
            "/api/v1/generations",
            Some(&key),
            Some(Body::Raw(body.into_bytes())),
        )
    };
    // ~3 MiB of empty arrays: a million values, ~100 MB once parsed.
    let tiny = vec!["[]"; 1_000_000].join(",");
    let record = format!(
        r#"{{"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z", "trace": {{"x": [{tiny}]}}}}"#
    );
    assert_error(
        &ingest(record).await,
        413,
        "record 0: holds 1000011 JSON values, at most 100000 per record",
    );
    // Five records under the per-record cap, over the per-request one.
    let some = vec!["1"; 90_000].join(",");
    let records: Vec<String> = (0..5)
        .map(|i| format!(r#"{{"id": "g{i}", "model": "m", "created_at": "2026-01-01T00:00:00Z", "trace": {{"x": [{some}]}}}}"#))
        .collect();
    assert_error(
        &ingest(format!("[{}]", records.join(","))).await,
        413,
        "The records up to record 4 hold",
    );
    // Deep nesting.
    let deep = format!(
        r#"{{"id": "d", "model": "m", "created_at": "2026-01-01T00:00:00Z", "trace": {{"x": {}1{}}}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    assert_error(
        &ingest(deep).await,
        400,
        "record 0: nests arrays and objects 102 deep, at most 64",
    );
    // An ordinary record still goes through.
    let ok = r#"{"id": "fine", "model": "m", "created_at": "2026-01-01T00:00:00Z", "trace": {"x": [1, 2]}}"#;
    assert_eq!(ingest(ok.to_string()).await.status, 202);
}

#[tokio::test]
async fn a_request_answered_too_late_gets_408() {
    let s = TestServer::start_with(|st| st.limits.request_timeout_secs = 1).await;
    // A connection test against a platform that never answers: the delivery timeout is 30 s,
    // the request timeout 1 s.
    let stalled = common::receiver::Receiver::start().await;
    stalled.set_mode(common::receiver::Mode::Stall);
    let r = tokio::time::timeout(
        DEADLINE,
        s.post(
            &format!("{DEST}/test"),
            json!({"type": "webhook", "name": "stalled", "config": {"url": stalled.url}}),
        ),
    )
    .await
    .expect("no answer at all");
    assert_eq!(r.status, 408, "{}", r.text);
}
