//! Ingest, routing and delivery end to end: the real server, real HTTP receivers on loopback,
//! payloads decoded with the OpenTelemetry proto definitions.

mod common;

use common::e2e::{
    DEST, create, fast, ingest_resp as ingest, numbered, patch_config, record_with, status,
    test_config, test_connection, wait_paused, wait_status,
};
use common::receiver::{Mode, Receiver, double_attr, int_attr, string_attr};
use common::{Body, TestServer, assert_error};
use reqwest::Method;
use serde_json::{Value, json};

fn record(id: &str) -> Value {
    record_with(id, json!({"session_id": format!("session-{id}")}))
}

fn ids(prefix: &str, n: usize) -> Vec<Value> {
    numbered(prefix, n, record)
}

async fn webhook(s: &TestServer, name: &str, url: &str, extra: Value) -> String {
    create(s, "webhook", name, json!({"url": url}), extra).await
}

#[tokio::test]
async fn webhook_and_otel_collector_receive_otlp() {
    let s = TestServer::start_with(fast).await;
    let hook = Receiver::start().await;
    let otel = Receiver::start().await;
    webhook(&s, "hook", &hook.url, json!({"config": {"url": hook.url, "method": "PUT", "headers": {"X-Secret": "s3cr3t-token-value"}}})).await;
    let r = s
        .post(
            DEST,
            json!({"type": "otel-collector", "name": "otel", "config": {"endpoint": otel.url}}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (key, hash) = s.workspace_key(None).await;

    let resp = ingest(&s, &key, &[record("gen-a"), record("gen-b")]).await;
    assert_eq!(resp.status, 202, "{}", resp.text);
    assert_eq!(
        resp.body["data"],
        json!({"accepted": 2, "duplicates": 0, "ids": ["gen-a", "gen-b"]})
    );

    for rec in [&hook, &otel] {
        rec.wait(10, "two spans", |r| r.generation_ids().len() >= 2)
            .await;
    }
    let req = &hook.requests()[0];
    assert_eq!(req.method, Method::PUT);
    assert_eq!(req.headers["x-secret"], "s3cr3t-token-value");
    assert!(
        req.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(otel.requests()[0].method, Method::POST);

    let spans = otel.spans();
    let span = spans
        .iter()
        .find(|sp| string_attr(sp, "gen_ai.response.id").as_deref() == Some("gen-a"))
        .unwrap();
    use sha2::Digest;
    let trace_id = &sha2::Sha256::digest(b"workflow-1")[..16];
    assert_eq!(span.trace_id, trace_id);
    assert_eq!(span.span_id, &sha2::Sha256::digest(b"gen-a")[..8]);
    assert_eq!(
        string_attr(span, "gen_ai.request.model").as_deref(),
        Some("openai/gpt-4o")
    );
    assert_eq!(int_attr(span, "gen_ai.usage.input_tokens"), Some(12));
    assert_eq!(int_attr(span, "gen_ai.usage.output_tokens"), Some(5));
    assert_eq!(double_attr(span, "gen_ai.usage.cost"), Some(0.0015));
    assert_eq!(string_attr(span, "user.id").as_deref(), Some("user-1"));
    assert_eq!(
        string_attr(span, "session.id").as_deref(),
        Some("session-gen-a")
    );
    assert_eq!(
        string_attr(span, "trace.metadata.env").as_deref(),
        Some("prod")
    );
    assert_eq!(
        span.end_time_unix_nano - span.start_time_unix_nano,
        1_234_000_000
    );
    // The API key identity is not sent unless the identity group is on.
    let body = String::from_utf8_lossy(&otel.requests()[0].body).to_string();
    assert!(!body.contains(&hash));
    assert!(body.contains("PROMPT-TEXT") && body.contains("COMPLETION-TEXT"));
}

#[tokio::test]
async fn ingest_formats_validation_and_duplicates() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    // One object, and a JSON array.
    let one = s
        .send(
            Method::POST,
            "/api/v1/generations",
            Some(&key),
            Some(Body::Json(record("single"))),
        )
        .await;
    assert_eq!(one.status, 202, "{}", one.text);
    let arr = s
        .send(
            Method::POST,
            "/api/v1/generations",
            Some(&key),
            Some(Body::Json(json!([record("arr-1"), record("arr-2")]))),
        )
        .await;
    assert_eq!(arr.body["data"]["accepted"], 2);
    // Duplicates within 24 h are counted, not re-broadcast.
    let dup = ingest(&s, &key, &[record("arr-1"), record("fresh")]).await;
    assert_eq!(
        dup.body["data"],
        json!({"accepted": 1, "duplicates": 1, "ids": ["fresh"]})
    );

    // All-or-nothing: record 2 is invalid, nothing of the request is accepted.
    let mut bad = ids("batch", 3);
    bad[2]["usage"] = json!({"prompt_tokens": "many"});
    let r = ingest(&s, &key, &bad).await;
    assert_error(&r, 400, "record 2: usage.prompt_tokens");
    let r = ingest(&s, &key, &ids("batch", 3)).await;
    assert_eq!(
        r.body["data"]["accepted"], 3,
        "the failed request accepted nothing"
    );

    let mut no_id = record("x");
    no_id.as_object_mut().unwrap().remove("id");
    assert_error(
        &ingest(&s, &key, &[no_id]).await,
        400,
        "record 0: missing field `id`",
    );
    assert_error(&ingest(&s, &key, &[json!({"id": "t", "model": "m", "created_at": "2026-01-01T00:00:00Z", "tags": ["a"]})]).await, 400, "record 0: tags is not a known field; put custom metadata in `trace`");
    let too_many: Vec<Value> = (0..1001)
        .map(
            |i| json!({"id": format!("m-{i}"), "model": "m", "created_at": "2026-01-01T00:00:00Z"}),
        )
        .collect();
    assert_error(
        &ingest(&s, &key, &too_many).await,
        413,
        "At most 1000 records per request",
    );
    let huge = vec![b' '; 11 * 1024 * 1024];
    let r = s
        .send(
            Method::POST,
            "/api/v1/generations",
            Some(&key),
            Some(Body::Raw(huge)),
        )
        .await;
    assert_error(&r, 413, "Request body is larger than");
    assert_error(
        &s.send(
            Method::POST,
            "/api/v1/generations",
            Some(&key),
            Some(Body::Raw(b"{oops".to_vec())),
        )
        .await,
        400,
        "Malformed JSON body",
    );
    assert_error(
        &s.send(
            Method::POST,
            "/api/v1/generations",
            None,
            Some(Body::Json(record("n"))),
        )
        .await,
        401,
        "Missing Authentication header",
    );

    // Management keys name the workspace and may attribute records to a key of it.
    let (_, hash) = s.workspace_key(None).await;
    let mut attributed = record("mgmt-1");
    attributed["api_key_hash"] = json!(hash);
    let r = s
        .send(
            Method::POST,
            "/api/v1/generations",
            Some(&s.mgmt_key.clone()),
            Some(Body::Json(attributed.clone())),
        )
        .await;
    assert_error(
        &r,
        400,
        "workspace_id is required when ingesting with a management key",
    );
    let r = s
        .send(
            Method::POST,
            "/api/v1/generations?workspace_id=default",
            Some(&s.mgmt_key.clone()),
            Some(Body::Json(attributed)),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let mut foreign = record("mgmt-2");
    foreign["api_key_hash"] = json!("0".repeat(64));
    let r = s
        .send(
            Method::POST,
            "/api/v1/generations?workspace_id=default",
            Some(&s.mgmt_key.clone()),
            Some(Body::Json(foreign)),
        )
        .await;
    assert_error(
        &r,
        400,
        "record 0: api_key_hash is not the hash of an API key in workspace",
    );
}

#[tokio::test]
async fn routing_allowlist_filters_regions_privacy_and_groups() {
    let s = TestServer::start_with(fast).await;
    let (key_a, hash_a) = s.workspace_key(None).await;
    let (key_b, _) = s.workspace_key(None).await;
    let all = Receiver::start().await;
    let only_a = Receiver::start().await;
    let filtered = Receiver::start().await;
    let eu = Receiver::start().await;
    let private = Receiver::start().await;
    let grouped = Receiver::start().await;
    webhook(&s, "all", &all.url, json!({})).await;
    webhook(
        &s,
        "only-a",
        &only_a.url,
        json!({"api_key_hashes": [hash_a]}),
    )
    .await;
    let filtered_id = webhook(&s, "filtered", &filtered.url, json!({"filter_rules": {"groups": [
        {"logic": "and", "rules": [{"field": "model", "operator": "starts_with", "value": "anthropic/"}, {"field": "total_tokens", "operator": "gte", "value": 100}]},
        {"rules": [{"field": "user_id", "operator": "equals", "value": "vip"}]}
    ]}})).await;
    webhook(&s, "eu", &eu.url, json!({"regions": ["eu"]})).await;
    webhook(&s, "private", &private.url, json!({"privacy_mode": true})).await;
    // The sixth destination is an otel-collector: a workspace holds at most 5 webhooks.
    let r = s
        .post(DEST, json!({"type": "otel-collector", "name": "grouped", "config": {"endpoint": grouped.url}, "broadcast_generation_identity": true, "broadcast_generation_cost": true, "broadcast_generation_request_context": true}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let mut r1 = record("r-a");
    r1["is_byok"] = json!(true);
    r1["http_referer"] = json!("https://app.example");
    let mut r2 = record("r-vip");
    r2["user"] = json!("vip");
    let mut r3 = record("r-claude");
    r3["model"] = json!("anthropic/claude-3.5-sonnet");
    r3["usage"] = json!({"prompt_tokens": 90, "completion_tokens": 20, "total_tokens": 110});
    let mut r4 = record("r-eu");
    r4["data_region"] = json!("europe");
    assert_eq!(ingest(&s, &key_a, &[r1, r2, r3, r4]).await.status, 202);
    assert_eq!(ingest(&s, &key_b, &[record("r-b")]).await.status, 202);

    all.wait(10, "4 generations", |r| r.generation_ids().len() == 4)
        .await;
    only_a
        .wait(10, "key a's 3", |r| r.generation_ids().len() == 3)
        .await;
    filtered
        .wait(10, "2 matches", |r| r.generation_ids().len() == 2)
        .await;
    eu.wait(10, "the europe one", |r| r.generation_ids().len() == 1)
        .await;
    private
        .wait(10, "4 private", |r| r.generation_ids().len() == 4)
        .await;
    grouped
        .wait(10, "4 grouped", |r| r.generation_ids().len() == 4)
        .await;
    let st = wait_status(&s, &filtered_id, "counts", |st| {
        st["counts"]["received"] == 5 && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["filtered"], 3);
    assert_eq!(st["counts"]["delivered"], 2);

    assert!(!only_a.generation_ids().contains(&"r-b".to_string()));
    let mut f = filtered.generation_ids();
    f.sort();
    assert_eq!(f, vec!["r-claude", "r-vip"]);
    assert_eq!(eu.generation_ids(), vec!["r-eu"]);
    assert!(
        !all.generation_ids().contains(&"r-eu".to_string()),
        "regions default to global"
    );
    for req in private.requests() {
        let body = String::from_utf8_lossy(&req.body);
        assert!(
            !body.contains("PROMPT-TEXT") && !body.contains("COMPLETION-TEXT"),
            "privacy mode leaked content: {body}"
        );
    }
    let pspan = private.spans().into_iter().next().unwrap();
    assert_eq!(int_attr(&pspan, "gen_ai.usage.total_tokens"), Some(17));
    assert!(
        string_attr(&pspan, "trace.metadata.env").is_some(),
        "metadata survives privacy mode"
    );
    // Groups: off on `all`, on on `grouped`.
    let body_all: String = all
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    let body_grouped: String = grouped
        .requests()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).to_string())
        .collect();
    assert!(
        !body_all.contains("https://app.example") && body_grouped.contains("https://app.example")
    );
    assert!(!body_all.contains(&hash_a) && body_grouped.contains(&hash_a));
}

#[tokio::test]
async fn switches_disable_and_delete_discard_and_count() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    let id = webhook(&s, "w", &rec.url, json!({})).await;
    assert_eq!(ingest(&s, &key, &ids("one", 5)).await.status, 202);
    rec.wait(10, "5", |r| r.generation_ids().len() == 5).await;

    // Destination disabled: nothing goes out, queued records are discarded and counted.
    assert_eq!(
        s.patch(&format!("{DEST}/{id}"), json!({"enabled": false}))
            .await
            .status,
        200
    );
    assert_eq!(ingest(&s, &key, &ids("two", 7)).await.status, 202);
    let st = wait_status(&s, &id, "discarded", |st| st["counts"]["discarded"] == 7).await;
    assert_eq!(st["state"], "disabled");
    assert_eq!(st["queue"]["depth"], 0);
    // Workspace switch off: the same.
    assert_eq!(
        s.patch(&format!("{DEST}/{id}"), json!({"enabled": true}))
            .await
            .status,
        200
    );
    assert_eq!(
        s.patch(
            "/api/v1/workspaces/default",
            json!({"is_observability_broadcast_enabled": false})
        )
        .await
        .status,
        200
    );
    assert_eq!(ingest(&s, &key, &ids("three", 4)).await.status, 202);
    let st = wait_status(&s, &id, "discarded", |st| st["counts"]["discarded"] == 11).await;
    assert_eq!(st["state"], "disabled");
    assert_eq!(
        s.patch(
            "/api/v1/workspaces/default",
            json!({"is_observability_broadcast_enabled": true})
        )
        .await
        .status,
        200
    );
    assert_eq!(ingest(&s, &key, &ids("four", 3)).await.status, 202);
    rec.wait(10, "8", |r| r.generation_ids().len() == 8).await;
    assert!(
        rec.generation_ids()
            .iter()
            .all(|g| !g.starts_with("two") && !g.starts_with("three"))
    );
    // Sampling change applies to what comes next.
    assert_eq!(
        s.patch(&format!("{DEST}/{id}"), json!({"sampling_rate": 0.0001}))
            .await
            .status,
        200
    );
    assert_eq!(ingest(&s, &key, &ids("five", 50)).await.status, 202);
    let st = wait_status(&s, &id, "sampled out", |st| {
        st["counts"]["sampled_out"].as_u64().unwrap_or(0) >= 49
    })
    .await;
    assert_eq!(st["state"], "active");
}

#[tokio::test]
async fn retries_honour_retry_after_and_recover_from_503_and_stalls() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let flaky = Receiver::start().await;
    flaky.script([
        Mode::Status(503),
        Mode::Status(503),
        Mode::RetryAfter(429, 1),
    ]);
    let id = webhook(&s, "flaky", &flaky.url, json!({})).await;
    assert_eq!(ingest(&s, &key, &ids("r", 10)).await.status, 202);
    flaky
        .wait(15, "delivery after failures", |r| {
            r.generation_ids().len() == 10
        })
        .await;
    let reqs = flaky.requests();
    let throttled = reqs.iter().position(|r| r.answered == 429).unwrap();
    let gap = reqs[throttled + 1].at - reqs[throttled].at;
    assert!(
        gap >= std::time::Duration::from_millis(950),
        "Retry-After: 1 was not honoured: {gap:?}"
    );
    let st = wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 10).await;
    assert!(st["counts"]["failed_attempts"].as_u64().unwrap() >= 3);
    assert_eq!(st["last_error"]["status"], 429);
    assert!(st["last_success_at"].is_string());

    // A receiver that stalls: requests time out (2 s here) and are retried once it answers.
    let stalling = Receiver::start().await;
    stalling.set_mode(Mode::Stall);
    let sid = webhook(&s, "stalling", &stalling.url, json!({})).await;
    assert_eq!(ingest(&s, &key, &ids("st", 5)).await.status, 202);
    wait_status(&s, &sid, "a timeout", |st| {
        st["counts"]["failed_attempts"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    stalling.set_mode(Mode::Ok);
    stalling
        .wait(15, "delivery after the stall", |r| {
            let mut g = r.generation_ids();
            g.sort();
            g.dedup();
            g.len() == 5
        })
        .await;
}

#[tokio::test]
async fn rejected_batches_are_dead_lettered_and_replayable() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    rec.set_mode(Mode::Status(400));
    let id = webhook(&s, "w", &rec.url, json!({})).await;
    assert_eq!(ingest(&s, &key, &ids("dl", 4)).await.status, 202);
    // Dead letters do not hold the queue: it empties once they are stored.
    let st = wait_status(&s, &id, "dead letters", |st| {
        st["counts"]["dead_lettered"] == 4 && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["queue"]["dead_letters"], 4);
    let dl = s.get(&format!("{DEST}/{id}/dead-letters?limit=3")).await;
    assert_eq!(dl.status, 200, "{}", dl.text);
    assert_eq!(dl.body["total_count"], 4);
    assert_eq!(dl.body["data"].as_array().unwrap().len(), 3);
    assert_eq!(dl.body["data"][0]["status"], 400);
    assert!(
        dl.body["data"][0]["error"]
            .as_str()
            .unwrap()
            .contains("400")
    );
    assert!(
        !dl.text.contains("PROMPT-TEXT"),
        "the listing does not expose content"
    );

    rec.set_mode(Mode::Ok);
    let one = dl.body["data"][0]["id"].as_i64().unwrap();
    let r = s
        .post(
            &format!("{DEST}/{id}/dead-letters/replay"),
            json!({"ids": [one]}),
        )
        .await;
    assert_eq!(r.body["data"]["replayed"], 1, "{}", r.text);
    rec.wait(10, "the replayed one", |r| r.generation_ids().len() == 1)
        .await;
    let r = s
        .send(
            Method::POST,
            &format!("{DEST}/{id}/dead-letters/replay"),
            Some(&s.mgmt_key.clone()),
            None,
        )
        .await;
    assert_eq!(r.body["data"]["replayed"], 3, "{}", r.text);
    rec.wait(10, "all four", |r| r.generation_ids().len() == 4)
        .await;
    wait_status(&s, &id, "empty dead letters", |st| {
        st["queue"]["dead_letters"] == 0
    })
    .await;
}

#[tokio::test]
async fn batches_that_run_out_of_retries_are_dead_lettered_whole() {
    // Three attempts, all 503: the batch waits between attempts with only its payload (its
    // records parked in the log), and is read back from the log to be dead-lettered.
    let s = TestServer::start_with(|st| {
        fast(st);
        st.delivery.max_attempts = 3;
    })
    .await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    rec.set_mode(Mode::Status(503));
    let id = webhook(&s, "w", &rec.url, json!({})).await;
    assert_eq!(ingest(&s, &key, &ids("gu", 5)).await.status, 202);
    let st = wait_status(&s, &id, "retries exhausted", |st| {
        st["counts"]["dead_lettered"] == 5 && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 0);
    assert!(
        st["counts"]["failed_attempts"].as_u64().unwrap() >= 3,
        "{st}"
    );
    let dl = s.get(&format!("{DEST}/{id}/dead-letters")).await;
    assert_eq!(dl.body["total_count"], 5, "{}", dl.text);
    let mut got: Vec<&str> = dl.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["generation_id"].as_str().unwrap())
        .collect();
    got.sort();
    assert_eq!(got, ["gu-0", "gu-1", "gu-2", "gu-3", "gu-4"]);
    let first = &dl.body["data"][0];
    assert_eq!(first["status"], 503);
    assert_eq!(first["attempts"], 3);
    assert!(
        first["error"]
            .as_str()
            .unwrap()
            .starts_with("gave up after 3 attempts: HTTP 503"),
        "{first}"
    );
    // Each batch sent the same body on each of its three attempts: a parked batch resends its
    // encoded payload.
    let mut attempts_per_body = std::collections::HashMap::new();
    for r in rec.requests() {
        *attempts_per_body.entry(r.body).or_insert(0) += 1;
    }
    assert!(!attempts_per_body.is_empty());
    assert!(
        attempts_per_body.values().all(|n| *n == 3),
        "{attempts_per_body:?}"
    );
}

#[tokio::test]
async fn rejected_credentials_pause_and_new_credentials_resume() {
    let s = TestServer::start_with(fast).await;
    let (key, _) = s.workspace_key(None).await;
    let rec = Receiver::start().await;
    rec.set_mode(Mode::Status(401));
    let id = webhook(
        &s,
        "w",
        &rec.url,
        json!({"config": {"url": rec.url, "headers": {"Authorization": "Bearer old-token-1234"}}}),
    )
    .await;
    assert_eq!(ingest(&s, &key, &ids("p", 6)).await.status, 202);
    let st = wait_paused(&s, &id, "credentials rejected (401)").await;
    assert_eq!(st["queue"]["depth"], 6, "the queue is kept");
    assert_eq!(st["counts"]["dead_lettered"], 0);

    // The platform accepts the new key; a PATCH with it resumes delivery with nothing lost.
    rec.set_mode(Mode::Ok);
    patch_config(
        &s,
        &id,
        json!({"headers": {"Authorization": "Bearer new-token-5678"}}),
    )
    .await;
    rec.wait(10, "all six", |r| r.generation_ids().len() == 6)
        .await;
    let accepted = rec
        .requests()
        .into_iter()
        .filter(|r| r.answered == 200)
        .collect::<Vec<_>>();
    assert!(
        accepted
            .iter()
            .all(|r| r.headers["authorization"] == "Bearer new-token-5678")
    );
    let st = wait_status(&s, &id, "active", |st| {
        st["state"] == "active" && st["queue"]["depth"] == 0
    })
    .await;
    assert_eq!(st["counts"]["delivered"], 6);
}

#[tokio::test]
async fn a_dead_destination_does_not_hold_up_a_healthy_one() {
    let s = TestServer::start_with(|st| {
        fast(st);
        st.delivery.request_timeout_secs = 30;
    })
    .await;
    let (key, _) = s.workspace_key(None).await;
    let dead = Receiver::start().await;
    dead.set_mode(Mode::Stall);
    let healthy = Receiver::start().await;
    let dead_id = webhook(&s, "dead", &dead.url, json!({})).await;
    webhook(&s, "healthy", &healthy.url, json!({})).await;
    for chunk in 0..10 {
        assert_eq!(
            ingest(&s, &key, &ids(&format!("iso{chunk}"), 200))
                .await
                .status,
            202
        );
    }
    healthy
        .wait(20, "all 2000 at the healthy destination", |r| {
            r.generation_ids().len() == 2000
        })
        .await;
    let st = status(&s, &dead_id).await;
    assert_eq!(st["counts"]["delivered"], 0);
    assert!(st["queue"]["depth"].as_u64().unwrap() > 0);
    dead.set_mode(Mode::Ok);
}

#[tokio::test]
async fn test_connection_endpoints_and_metrics() {
    let s = TestServer::start_with(fast).await;
    let ok = Receiver::start().await;
    let r = test_config(
        &s,
        json!({"type": "webhook", "name": "t", "config": {"url": ok.url}}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["ok"], true, "{}", r.text);
    assert!(r.body["data"]["latency_ms"].as_f64().is_some());
    let req = &ok.requests()[0];
    assert_eq!(req.headers["x-test-connection"], "true");
    let body: Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body["resourceSpans"], json!([]));
    assert_eq!(
        s.get(DEST).await.body["total_count"],
        0,
        "testing saves nothing"
    );

    let denied = Receiver::start().await;
    denied.set_mode(Mode::Status(403));
    let id = webhook(&s, "denied", &denied.url, json!({})).await;
    let r = test_connection(&s, &id).await;
    assert_eq!(r.body["data"]["ok"], false, "{}", r.text);
    assert_eq!(r.body["data"]["status"], 403, "{}", r.text);
    // A 400 passes the webhook test (some endpoints reject empty payloads).
    denied.set_mode(Mode::Status(400));
    assert_eq!(test_connection(&s, &id).await.body["data"]["ok"], true);
    assert_error(
        &s.post(
            &format!("{DEST}/test"),
            json!({"type": "webhook", "name": "t", "config": {}}),
        )
        .await,
        400,
        "config.url is required",
    );

    let (key, _) = s.workspace_key(None).await;
    assert_eq!(ingest(&s, &key, &ids("m", 3)).await.status, 202);
    let m = s.send(Method::GET, "/metrics", None, None).await;
    assert_eq!(m.status, 200);
    assert!(
        m.text.contains("tracecast_ingest_records_total"),
        "{}",
        m.text
    );
}
