//! `arize` end to end: the real server delivers to a loopback receiver playing Arize AX
//! (OTLP/HTTP protobuf with the `space_id` and `api_key` headers): delivery with the platform's credentials, privacy mode, 429 with Retry-After,
//! and a 401 that pauses the destination until new credentials arrive.

mod common;

use std::time::{Duration, Instant};

use common::receiver::{Captured, Mode, Receiver};
use common::{Resp, TestServer};
use serde_json::{Value, json};
use tracecast_server::settings::Settings;

const DEST: &str = "/api/v1/observability/destinations";
/// The header carrying the credentials, and its values for each destination.
const HEADER: &str = "api_key";
const VALUE_OLD: &str = "ak-old-0001";
const VALUE_PRIVATE: &str = "ak-private-0003";
const VALUE_NEW: &str = "ak-new-0002";
const SECRET_OLD: &str = "ak-old-0001";
/// The body of the connection test (an empty OTLP export request).
const EMPTY_BODY: &[u8] = b"";
const CONTENT_TYPE: &str = "application/x-protobuf";
/// How the test-connection message names the credentials.
const CREDENTIALS_WORDS: &str = "space key / API key";

fn fast(s: &mut Settings) {
    s.delivery.linger_ms = 20;
    s.delivery.retry_base_ms = 50;
    s.delivery.retry_max_delay_secs = 1;
    s.delivery.request_timeout_secs = 2;
    s.delivery.auth_probe_secs = 1;
    s.delivery.config_refresh_ms = 200;
}

fn record(id: &str) -> Value {
    json!({
        "id": id,
        "model": "openai/gpt-4o",
        "provider_name": "OpenAI",
        "created_at": "2026-03-01T12:00:00.000Z",
        "latency": 1234.0,
        "finish_reason": "stop",
        "total_cost": 0.0015,
        "user": "user-1",
        "session_id": "session-e2e",
        "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}], "temperature": 0.3},
        "response": {"choices": [{"message": {"role": "assistant", "content": "COMPLETION-TEXT"}}], "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}},
        "trace": {"trace_id": "workflow-1", "trace_name": "Doc pipeline", "generation_name": "Summarise", "env": "prod"}
    })
}

async fn ingest(s: &TestServer, key: &str, records: &[Value]) {
    let mut body = Vec::new();
    for r in records {
        body.extend(serde_json::to_vec(r).unwrap());
        body.push(b'\n');
    }
    let r = s
        .http
        .post(format!("{}/api/v1/generations", s.base))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap_or_default());
}

async fn create(s: &TestServer, name: &str, config: Value, extra: Value) -> String {
    let mut body = json!({"type": "arize", "name": name, "config": config});
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    let r: Resp = s.post(DEST, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"]["id"].as_str().unwrap().to_string()
}

async fn wait_status(s: &TestServer, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.get(&format!("{DEST}/{id}/status")).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let st = r.body["data"].clone();
        if cond(&st) {
            return st;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {st}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Generation ids found in the bodies of accepted requests (protobuf or JSON: the id is a
/// string attribute, so its bytes appear verbatim).
fn delivered(rx: &Receiver, ids: &[&str]) -> Vec<String> {
    let accepted: Vec<Captured> = rx
        .requests()
        .into_iter()
        .filter(|r| r.answered < 300)
        .collect();
    ids.iter()
        .filter(|id| accepted.iter().any(|r| contains(&r.body, id)))
        .map(|id| id.to_string())
        .collect()
}

async fn server(rx: &Receiver) -> TestServer {
    let _url = rx.url.clone();
    TestServer::start_with(move |s| {
        fast(s);
        let _ = _url;
    })
    .await
}

/// Whether a request carries this credential value.
fn with_header(value: &str) -> impl Fn(&Captured) -> bool + '_ {
    move |r: &Captured| r.headers.get(HEADER).and_then(|v| v.to_str().ok()) == Some(value)
}

#[tokio::test]
async fn delivers_with_credentials_privacy_mode_and_retry_after() {
    let rx = Receiver::start().await;
    let s = server(&rx).await;
    let (key, _) = s.workspace_key(None).await;
    let open = create(&s, "open", json!({"apiKey": VALUE_OLD, "spaceKey": "space-1", "modelId": "e2e-project", "baseUrl": rx.url.trim_end_matches("/v1/traces")}), json!({})).await;
    let private = create(&s, "private", json!({"apiKey": VALUE_PRIVATE, "spaceKey": "space-1", "modelId": "e2e-private", "baseUrl": rx.url.trim_end_matches("/v1/traces")}), json!({"privacy_mode": true})).await;

    // Test connection through the API: the empty OTLP request with the destination's credentials.
    let t = s.post(&format!("{DEST}/{open}/test"), json!({})).await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);
    assert_eq!(t.body["data"]["status"], 200, "{}", t.text);
    let probe = rx.requests().pop().expect("the test request arrived");
    assert!(with_header(VALUE_OLD)(&probe), "{:?}", probe.headers);
    assert_eq!(&probe.body[..], EMPTY_BODY);

    // The first delivery is throttled with Retry-After: 1.
    rx.script([Mode::RetryAfter(429, 1)]);
    let ids = ["e2e-alpha", "e2e-bravo", "e2e-charlie"];
    ingest(
        &s,
        &key,
        &ids.iter().map(|id| record(id)).collect::<Vec<_>>(),
    )
    .await;
    rx.wait(15, "every generation at both destinations", |r| {
        let all = r.requests();
        let got = |v: &str| {
            let mine: Vec<&Captured> = all
                .iter()
                .filter(|c| c.answered < 300 && with_header(v)(c))
                .collect();
            ids.iter()
                .all(|id| mine.iter().any(|c| contains(&c.body, id)))
        };
        got(VALUE_OLD) && got(VALUE_PRIVATE)
    })
    .await;
    let all = rx.requests();
    assert_eq!(delivered(&rx, &ids).len(), 3);
    for r in all
        .iter()
        .filter(|r| r.answered < 300 && !r.body.is_empty() && &r.body[..] != EMPTY_BODY)
    {
        assert_eq!(
            r.headers.get("content-type").and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE)
        );
        let is_private = with_header(VALUE_PRIVATE)(r);
        assert_eq!(
            contains(&r.body, "PROMPT-TEXT") || contains(&r.body, "COMPLETION-TEXT"),
            !is_private,
            "privacy mode: content only where it is off"
        );
        assert!(
            contains(&r.body, "session-e2e"),
            "the session goes everywhere"
        );
    }
    // Retry-After was honoured by the destination that got the 429.
    let throttled = all.iter().position(|r| r.answered == 429).expect("a 429");
    let value = all[throttled]
        .headers
        .get(HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let next = all[throttled + 1..]
        .iter()
        .find(|r| with_header(&value)(r))
        .expect("a retry after the 429");
    let gap = next.at - all[throttled].at;
    assert!(
        gap >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    for id in [&open, &private] {
        wait_status(&s, id, "three delivered", |st| {
            st["counts"]["delivered"] == 3
        })
        .await;
    }
}

#[tokio::test]
async fn rejected_credentials_pause_until_new_ones_arrive() {
    let rx = Receiver::start().await;
    rx.set_mode(Mode::Status(401));
    let s = server(&rx).await;
    let (key, _) = s.workspace_key(None).await;
    let id = create(&s, "paused", json!({"apiKey": VALUE_OLD, "spaceKey": "space-1", "modelId": "e2e-project", "baseUrl": rx.url.trim_end_matches("/v1/traces")}), json!({})).await;

    let t = s.post(&format!("{DEST}/{id}/test"), json!({})).await;
    assert_eq!(t.body["data"]["ok"], false, "{}", t.text);
    assert_eq!(t.body["data"]["status"], 401, "{}", t.text);
    assert!(
        t.body["data"]["message"]
            .as_str()
            .unwrap()
            .contains(CREDENTIALS_WORDS),
        "{}",
        t.text
    );

    let ids = ["p-one", "p-two", "p-three", "p-four"];
    ingest(
        &s,
        &key,
        &ids.iter().map(|id| record(id)).collect::<Vec<_>>(),
    )
    .await;
    let st = wait_status(&s, &id, "paused", |st| st["state"] == "paused").await;
    assert!(
        st["reason"]
            .as_str()
            .unwrap()
            .contains("credentials rejected (401)"),
        "{st}"
    );
    assert_eq!(st["queue"]["depth"], 4, "the queue is kept");
    assert_eq!(st["counts"]["dead_lettered"], 0);
    assert!(
        !st.to_string().contains(SECRET_OLD),
        "no secret in the status"
    );

    rx.set_mode(Mode::Ok);
    let p = s
        .patch(
            &format!("{DEST}/{id}"),
            json!({"config": json!({"apiKey": VALUE_NEW})}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    rx.wait(15, "all four with the new credentials", |r| {
        let fresh: Vec<Captured> = r
            .requests()
            .into_iter()
            .filter(|c| c.answered < 300 && with_header(VALUE_NEW)(c))
            .collect();
        ids.iter()
            .all(|id| fresh.iter().any(|c| contains(&c.body, id)))
    })
    .await;
    let st = wait_status(&s, &id, "active and drained", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 4);
}
