//! Authentication, management-key checks, tenant isolation and hostile input.

mod common;

use common::{Body, TestServer, assert_error};
use reqwest::Method;
use serde_json::json;

const DEST: &str = "/api/v1/observability/destinations";

#[tokio::test]
async fn missing_invalid_and_non_management_keys() {
    let s = TestServer::start().await;
    assert_error(
        &s.send(Method::GET, DEST, None, None).await,
        401,
        "Missing Authentication header",
    );
    assert_error(
        &s.send(Method::GET, DEST, Some("sk-tc-v1-wrong"), None)
            .await,
        401,
        "Invalid API key",
    );
    let r = s
        .http
        .get(format!("{}{DEST}", s.base))
        .header("authorization", "Basic Zm9vOmJhcg==")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let (ws_key, ws_hash) = s.workspace_key(None).await;
    for (m, path, body) in [
        (Method::GET, DEST.to_string(), None),
        (
            Method::POST,
            DEST.to_string(),
            Some(Body::Json(
                json!({"type": "webhook", "name": "x", "config": {"url": "https://h.test"}}),
            )),
        ),
        (Method::GET, "/api/v1/workspaces".into(), None),
        (Method::GET, "/api/v1/keys".into(), None),
        (
            Method::POST,
            "/api/v1/keys".into(),
            Some(Body::Json(json!({"name": "k"}))),
        ),
    ] {
        let r = s.send(m, &path, Some(&ws_key), body).await;
        assert_error(&r, 403, "Only management keys can perform this operation");
    }
    // Any key may read itself.
    let me = s
        .send(Method::GET, "/api/v1/key", Some(&ws_key), None)
        .await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["data"]["is_management_key"], false);
    assert_eq!(me.body["data"]["hash"], ws_hash.as_str());
    assert!(!me.text.contains(&ws_key));

    // Disabled keys stop working at once.
    let r = s
        .patch(
            &format!("/api/v1/keys/{ws_hash}"),
            json!({"disabled": true}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(
        &s.send(Method::GET, "/api/v1/key", Some(&ws_key), None)
            .await,
        401,
        "API key is disabled",
    );
}

#[tokio::test]
async fn another_tenants_ids_answer_404() {
    let s = TestServer::start().await;
    let other = s.other_tenant().await;
    let mine = s
        .post(
            DEST,
            json!({"type": "webhook", "name": "mine", "config": {"url": "https://h.test"}}),
        )
        .await;
    let id = mine.body["data"]["id"].as_str().unwrap().to_string();
    let my_ws = mine.body["data"]["workspace_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, my_key_hash) = s.workspace_key(None).await;

    let path = format!("{DEST}/{id}");
    assert_error(
        &s.send(Method::GET, &path, Some(&other), None).await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.send(
            Method::PATCH,
            &path,
            Some(&other),
            Some(Body::Json(json!({"enabled": false}))),
        )
        .await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.send(Method::DELETE, &path, Some(&other), None).await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.send(
            Method::GET,
            &format!("{DEST}?workspace_id={my_ws}"),
            Some(&other),
            None,
        )
        .await,
        400,
        "workspace_id does not name a workspace of this account",
    );
    assert_error(
        &s.send(Method::POST, DEST, Some(&other), Some(Body::Json(json!({"type": "webhook", "name": "x", "workspace_id": my_ws, "config": {"url": "https://h.test"}})))).await,
        400,
        "workspace_id does not name a workspace of this account",
    );
    // Unknown ids answer exactly like foreign ones.
    assert_error(
        &s.get(&format!("{DEST}?workspace_id={}", uuid::Uuid::new_v4()))
            .await,
        400,
        "workspace_id does not name a workspace of this account",
    );
    assert_error(
        &s.get(&format!("{DEST}/{}", uuid::Uuid::new_v4())).await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.get(&format!("{DEST}/not-a-uuid")).await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.send(
            Method::GET,
            &format!("/api/v1/workspaces/{my_ws}"),
            Some(&other),
            None,
        )
        .await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.send(
            Method::GET,
            &format!("/api/v1/keys/{my_key_hash}"),
            Some(&other),
            None,
        )
        .await,
        404,
        "Resource not found",
    );
    // A foreign key hash is not accepted in an allowlist.
    let r = s
        .send(Method::POST, DEST, Some(&other), Some(Body::Json(json!({"type": "webhook", "name": "x", "api_key_hashes": [my_key_hash], "config": {"url": "https://h.test"}}))))
        .await;
    assert_error(
        &r,
        400,
        "api_key_hashes[0] is not the hash of an API key in workspace",
    );
    // The other tenant sees only its own (empty) world.
    let list = s.send(Method::GET, DEST, Some(&other), None).await;
    assert_eq!(list.body["total_count"], 0);
    let wss = s
        .send(Method::GET, "/api/v1/workspaces", Some(&other), None)
        .await;
    assert_eq!(wss.body["total_count"], 1);
    assert_ne!(wss.body["data"][0]["id"], my_ws.as_str());
}

#[tokio::test]
async fn hostile_input_never_yields_5xx() {
    let s = TestServer::start().await;
    let created = s
        .post(
            DEST,
            json!({"type": "webhook", "name": "w", "config": {"url": "https://h.test"}}),
        )
        .await;
    let id = created.body["data"]["id"].as_str().unwrap().to_string();
    let huge = vec![b'a'; 2 * 1024 * 1024];
    let mut deep = String::new();
    for _ in 0..5000 {
        deep.push('[');
    }
    let bodies: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"{".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"42".to_vec(),
        b"\"str\"".to_vec(),
        b"{\"type\": 5}".to_vec(),
        b"{\"type\": \"webhook\", \"name\": \"x\", \"config\": null}".to_vec(),
        b"{\"type\": \"webhook\", \"name\": \"x\", \"config\": {\"url\": \"http://[::1\"}}".to_vec(),
        b"{\"type\": \"webhook\", \"name\": \"x\", \"config\": {\"url\": \"https://h.test\", \"headers\": {\"bad header\": \"v\"}}}".to_vec(),
        b"{\"type\": \"webhook\", \"name\": \"x\", \"config\": {\"url\": \"https://h.test\", \"headers\": {\"X\": \"a\\r\\nInjected: 1\"}}}".to_vec(),
        b"{\"sampling_rate\": 1e400}".to_vec(),
        b"{\"filter_rules\": {\"groups\": \"x\"}}".to_vec(),
        b"{\"filter_rules\": {\"groups\": [{\"rules\": [{\"field\": \"input\", \"operator\": \"regex\", \"value\": \"(a{1000}){1000}\"}]}]}}".to_vec(),
        b"\xff\xfe\x00".to_vec(),
        deep.into_bytes(),
        huge,
    ];
    let paths = [
        (Method::POST, DEST.to_string()),
        (Method::PATCH, format!("{DEST}/{id}")),
        (Method::POST, "/api/v1/workspaces".into()),
        (Method::PATCH, "/api/v1/workspaces/default".into()),
        (Method::POST, "/api/v1/keys".into()),
    ];
    for (m, p) in &paths {
        for b in &bodies {
            let r = s
                .send(
                    m.clone(),
                    p,
                    Some(&s.mgmt_key.clone()),
                    Some(Body::Raw(b.clone())),
                )
                .await;
            assert!(
                r.status.is_client_error(),
                "{m} {p} with {:?}... answered {}: {}",
                String::from_utf8_lossy(&b[..b.len().min(40)]),
                r.status,
                r.text
            );
            assert!(r.body["error"]["message"].is_string(), "{}", r.text);
        }
    }
    let r = s
        .send(
            Method::POST,
            DEST,
            Some(&s.mgmt_key.clone()),
            Some(Body::Raw(vec![b' '; 2 * 1024 * 1024])),
        )
        .await;
    assert_error(&r, 413, "Request body is larger than");
    for q in [
        "limit=abc",
        "offset=1e9999",
        "limit=%FF",
        "workspace_id=%00",
        "workspace_id=' OR 1=1 --",
    ] {
        let r = s.get(&format!("{DEST}?{q}")).await;
        assert!(r.status.is_client_error(), "{q}: {}", r.text);
    }
    // The destination survived all of it unchanged.
    assert_eq!(s.get(&format!("{DEST}/{id}")).await.body, created.body);
}

/// A refused request keeps its keep-alive connection usable: the server reads the body before
/// answering 401, so the client's next request on the same connection is answered. Before, the
/// 401 went out while the body was still on its way, hyper closed the connection (the body was
/// unread), and SDKs that had already sent their next request on it failed with "server
/// disconnected" (seen in the official SDK suite).
#[tokio::test]
async fn a_refused_request_with_a_late_body_leaves_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = TestServer::start().await;
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = br#"{"name":"x","type":"webhook","config":{"url":"http://127.0.0.1:9/"}}"#;
    let head = format!(
        "POST /api/v1/observability/destinations HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer sk-tc-v1-not-a-key\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    // The body arrives after the headers, as from a client that writes them separately.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    conn.write_all(body).await.unwrap();
    conn.write_all(format!("GET /health HTTP/1.1\r\nhost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    // Both answers arrive on this connection (or the read ends early and the test fails).
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while String::from_utf8_lossy(&seen).matches("HTTP/1.1 ").count() < 2 {
        let n = tokio::time::timeout_at(deadline, conn.read(&mut buf))
            .await
            .expect("both answers within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "the server closed the connection after the 401: {}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("HTTP/1.1 200"), "{text}");
}
