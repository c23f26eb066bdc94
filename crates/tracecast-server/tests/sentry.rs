//! The `sentry` destination end to end: the real server, a loopback receiver playing Sentry's
//! OTLP traces endpoint, payloads decoded with the OpenTelemetry proto definitions.

mod common;

use common::e2e::{
    DEST, create_destination, fast, ingest_status, numbered, record_with, test_config, wait_paused,
    wait_status,
};
use common::receiver::{Mode, Receiver, double_attr, int_attr, string_attr};
use common::{Resp, TestServer};
use serde_json::{Value, json};

const DSN: &str = "https://e2epublickey0123456789@o123.ingest.us.sentry.io/456";
const NEW_DSN: &str = "https://rotatedpublickey987654@o123.ingest.us.sentry.io/456";

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "user": "user_12345",
            "session_id": "session_abc",
            "trace": {
                "trace_id": "incident_investigation_001",
                "trace_name": "Error Analysis Agent",
                "generation_name": "Analyze Stack Trace",
                "environment": "production",
                "release": "v2.1.0"
            }
        }),
    )
}

async fn create(s: &TestServer, name: &str, endpoint: &str, extra: Value) -> (String, Resp) {
    create_destination(
        s,
        json!({"type": "sentry", "name": name, "config": {"otlpEndpoint": endpoint, "dsn": DSN}}),
        extra,
    )
    .await
}

#[tokio::test]
async fn sentry_receives_otlp_with_the_dsn_key_and_privacy_mode_strips_content() {
    let s = TestServer::start_with(fast).await;
    let open = Receiver::start().await;
    let private = Receiver::start().await;
    let (_, created) = create(
        &s,
        "sentry",
        &open.url,
        json!({"config": {"otlpEndpoint": open.url, "dsn": DSN, "headers": {"X-Team": "ml"}}}),
    )
    .await;
    assert!(
        !created.text.contains("e2epublickey0123456789"),
        "the DSN is returned masked: {}",
        created.text
    );
    create(
        &s,
        "sentry-private",
        &private.url,
        json!({"privacy_mode": true}),
    )
    .await;
    let (key, _) = s.workspace_key(None).await;
    assert_eq!(
        ingest_status(&s, &key, &[record("gen-a"), record("gen-b")]).await,
        202
    );

    for rec in [&open, &private] {
        rec.wait(10, "two spans", |r| r.generation_ids().len() >= 2)
            .await;
    }
    let req = &open.requests()[0];
    assert_eq!(
        req.headers["x-sentry-auth"],
        "sentry sentry_key=e2epublickey0123456789"
    );
    assert_eq!(req.headers["x-team"], "ml");
    assert!(
        req.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );

    let spans = open.spans();
    let span = spans
        .iter()
        .find(|sp| string_attr(sp, "gen_ai.response.id").as_deref() == Some("gen-a"))
        .unwrap();
    use sha2::Digest;
    assert_eq!(
        span.trace_id,
        &sha2::Sha256::digest(b"incident_investigation_001")[..16]
    );
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.name, "Error Analysis Agent", "the transaction name");
    let attr = |k: &str| string_attr(span, k);
    assert_eq!(
        attr("sentry.description").as_deref(),
        Some("Analyze Stack Trace")
    );
    assert_eq!(attr("sentry.op").as_deref(), Some("gen_ai.chat"));
    assert_eq!(attr("sentry.environment").as_deref(), Some("production"));
    assert_eq!(attr("sentry.release").as_deref(), Some("v2.1.0"));
    assert_eq!(attr("user.id").as_deref(), Some("user_12345"));
    assert_eq!(attr("session.id").as_deref(), Some("session_abc"));
    assert_eq!(
        attr("trace.metadata.environment").as_deref(),
        Some("production")
    );
    assert_eq!(int_attr(span, "gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(double_attr(span, "gen_ai.cost.total_tokens"), Some(0.0015));
    assert!(
        attr("gen_ai.input.messages")
            .unwrap()
            .contains("PROMPT-TEXT")
    );
    assert!(
        attr("gen_ai.output.messages")
            .unwrap()
            .contains("COMPLETION-TEXT")
    );

    // Privacy mode: no content anywhere in what was sent, the rest intact.
    for r in private.requests() {
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains("PROMPT-TEXT") && !body.contains("COMPLETION-TEXT"),
            "{body}"
        );
    }
    let pspans = private.spans();
    assert!(
        pspans
            .iter()
            .all(|sp| string_attr(sp, "gen_ai.input.messages").is_none())
    );
    assert_eq!(int_attr(&pspans[0], "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(
        string_attr(&pspans[0], "sentry.op").as_deref(),
        Some("gen_ai.chat")
    );
}

#[tokio::test]
async fn sentry_rate_limits_are_honoured_and_a_refused_key_pauses_until_a_new_dsn() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;

    // 429 with Retry-After: 1 is waited out, then everything is delivered.
    let throttled = Receiver::start().await;
    throttled.script([Mode::RetryAfter(429, 1)]);
    let (tid, _) = create(&s, "throttled", &throttled.url, json!({})).await;
    assert_eq!(
        ingest_status(&s, &key, &numbered("t", 5, record)).await,
        202
    );
    throttled
        .wait(15, "delivery after the 429", |r| {
            r.generation_ids().len() == 5
        })
        .await;
    let reqs = throttled.requests();
    let gap = reqs[1].at - reqs[0].at;
    assert_eq!(reqs[0].answered, 429);
    assert!(
        gap >= std::time::Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    let st = wait_status(&s, &tid, "delivered", |st| st["counts"]["delivered"] == 5).await;
    assert_eq!(st["last_error"]["status"], 429);

    // 401: the destination pauses and keeps its queue; a new DSN resumes it.
    let denied = Receiver::start().await;
    denied.set_mode(Mode::Status(401));
    let (id, _) = create(&s, "denied", &denied.url, json!({})).await;
    assert_eq!(
        ingest_status(&s, &key, &numbered("p", 4, record)).await,
        202
    );
    let st = wait_paused(&s, &id, "401").await;
    assert!(
        !st.to_string().contains("e2epublickey0123456789"),
        "the status shows no key: {st}"
    );
    assert_eq!(st["counts"]["dead_lettered"], 0);
    assert!(st["queue"]["depth"].as_u64().unwrap() >= 4, "{st}");

    // The new DSN first, then Sentry accepts: only the new key can have been accepted.
    let p = s
        .patch(&format!("{DEST}/{id}"), json!({"config": {"dsn": NEW_DSN}}))
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert!(!p.text.contains("rotatedpublickey987654"), "{}", p.text);
    denied.set_mode(Mode::Ok);
    denied
        .wait(10, "all four after the new DSN", |r| {
            let mut g = r.generation_ids();
            g.retain(|id| id.starts_with("p-"));
            g.sort();
            g.dedup();
            g.len() == 4
        })
        .await;
    assert!(
        denied
            .requests()
            .iter()
            .filter(|r| r.answered == 200)
            .all(|r| r.headers["x-sentry-auth"] == "sentry sentry_key=rotatedpublickey987654")
    );
    wait_status(&s, &id, "active", |st| st["state"] == "active").await;
}

#[tokio::test]
async fn sentry_test_connection_through_the_api() {
    let s = TestServer::start_with(fast).await;
    let ok = Receiver::start().await;
    ok.set_mode(Mode::Status(202));
    let r = test_config(
        &s,
        json!({"type": "sentry", "name": "t", "config": {"otlpEndpoint": ok.url, "dsn": DSN}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    let req = &ok.requests()[0];
    assert_eq!(
        req.headers["x-sentry-auth"],
        "sentry sentry_key=e2epublickey0123456789"
    );
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, json!({"resourceSpans": []}));

    let denied = Receiver::start().await;
    denied.set_mode(Mode::Status(401));
    let r = test_config(
        &s,
        json!({"type": "sentry", "name": "t", "config": {"otlpEndpoint": denied.url, "dsn": DSN}}),
    )
    .await;
    assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
    assert_eq!(
        r.body["data"]["message"],
        "Sentry rejected the DSN key (401)"
    );
    // A DSN that is not one is refused before anything is sent.
    let r = test_config(&s, json!({"type": "sentry", "name": "t", "config": {"otlpEndpoint": denied.url, "dsn": "not-a-dsn"}})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(denied.requests().len(), 1);
}
