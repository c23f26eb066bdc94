//! Crash safety: `kill -9` of the tracecast process in the middle of delivering 20,000
//! generations, then a restart on the same data directory. Every generation that was
//! acknowledged with a 202 must reach every destination at least once.
//!
//! The receivers live in this test process, outside tracecast, so they keep what they were sent
//! across the kill. One of them stops answering after it has seen a quarter of the records, so
//! the kill lands while that destination has a large backlog and requests in flight, whatever
//! the speed of the machine.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use common::e2e::wait_for;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tracecast");
const MGMT: &str = "sk-tc-v1-bootstrap-for-crash-test-01";
const TOTAL: usize = 20_000;
const BATCH: usize = 500;

/// A receiver that records the generation ids it was sent (`gen_ai.response.id` of each span
/// of an OTLP/JSON body). While `stall_after` is set and that many ids have been seen, it
/// holds every further request open without answering.
#[derive(Clone, Default)]
struct Sink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    ids: HashSet<String>,
    requests: usize,
    stall_after: Option<usize>,
    /// While set, every request is answered 503 and counted in `refused` by the part of its
    /// first id before the first `-` (the workspace prefix of the onboarding test).
    failing: bool,
    refused: std::collections::HashMap<String, usize>,
}

impl Sink {
    async fn start(stall_after: Option<usize>) -> (Sink, String) {
        let sink = Sink::default();
        sink.inner.lock().unwrap().stall_after = stall_after;
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, url)
    }

    fn count(&self) -> usize {
        self.inner.lock().unwrap().ids.len()
    }

    fn missing(&self, accepted: &HashSet<String>) -> usize {
        let s = self.inner.lock().unwrap();
        accepted.iter().filter(|id| !s.ids.contains(*id)).count()
    }

    fn release(&self) {
        self.inner.lock().unwrap().stall_after = None;
    }

    fn set_failing(&self, failing: bool) {
        self.inner.lock().unwrap().failing = failing;
    }

    /// How many requests were refused for each of `prefixes`, the fewest.
    fn fewest_refused(&self, prefixes: &[String]) -> usize {
        let s = self.inner.lock().unwrap();
        prefixes
            .iter()
            .map(|p| s.refused.get(p).copied().unwrap_or(0))
            .min()
            .unwrap_or(0)
    }
}

async fn receive(
    State(sink): State<Sink>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> StatusCode {
    let body = common::receiver::inflate(&headers, &body);
    loop {
        let stalled = {
            let s = sink.inner.lock().unwrap();
            s.stall_after.is_some_and(|n| s.ids.len() >= n)
        };
        if !stalled {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let Some(ids) = common::receiver::generation_ids_in(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut s = sink.inner.lock().unwrap();
    if s.failing {
        if let Some(prefix) = ids.first().and_then(|id| id.split('-').next()) {
            *s.refused.entry(prefix.to_owned()).or_default() += 1;
        }
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    s.requests += 1;
    s.ids.extend(ids);
    StatusCode::OK
}

/// A running `tracecast serve`, killed with SIGKILL when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    fn start(dir: &Path) -> Node {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .current_dir(dir)
            .env("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", MGMT)
            .env("TRACECAST_DELIVERY__LINGER_MS", "20")
            .env("TRACECAST_DELIVERY__BATCH_MAX_ITEMS", "100")
            .env("TRACECAST_DELIVERY__RETRY_BASE_MS", "50")
            .env("TRACECAST_DELIVERY__RETRY_MAX_DELAY_SECS", "1")
            .env("TRACECAST_DELIVERY__REQUEST_TIMEOUT_SECS", "30")
            .env("TRACECAST_DELIVERY__CONFIG_REFRESH_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tracecast");
        let base = common::listening_address(&mut child);
        Node { child, base }
    }

    /// SIGKILL: no shutdown hook runs, nothing is flushed.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn api(http: &reqwest::Client, node: &Node, path: &str, body: Value) -> Value {
    let r = http
        .post(format!("{}{path}", node.base))
        .bearer_auth(MGMT)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

fn record(i: usize) -> String {
    json!({
        "id": format!("crash-{i}"),
        "model": "openai/gpt-4o",
        "provider_name": "OpenAI",
        "created_at": "2026-03-01T12:00:00.000Z",
        "latency": 800.0,
        "session_id": format!("s-{}", i % 97),
        "request": {"messages": [{"role": "user", "content": format!("question {i}")}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "answer"}}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
    })
    .to_string()
}

/// Posts records `from..to` as one NDJSON batch; returns the ids acknowledged with a 202.
async fn ingest(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    from: usize,
    to: usize,
) -> Vec<String> {
    let body: String = (from..to).map(|i| record(i) + "\n").collect();
    let r = http
        .post(format!("{base}/api/v1/generations"))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    v["data"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    // `stalling` stops answering once it has a quarter of the records; `steady` always answers.
    let (stalling, stalling_url) = Sink::start(Some(TOTAL / 4)).await;
    let (steady, steady_url) = Sink::start(None).await;

    let node = Node::start(dir.path());
    api(
        &http,
        &node,
        "/api/v1/observability/destinations",
        json!({"type": "webhook", "name": "stalling", "config": {"url": stalling_url}}),
    )
    .await;
    api(
        &http,
        &node,
        "/api/v1/observability/destinations",
        json!({"type": "otel-collector", "name": "steady", "config": {"endpoint": steady_url}}),
    )
    .await;
    let key = api(&http, &node, "/api/v1/keys", json!({"name": "app"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut accepted = HashSet::new();
    for from in (0..TOTAL).step_by(BATCH) {
        accepted.extend(ingest(&http, &node.base, &key, from, from + BATCH).await);
    }
    assert_eq!(accepted.len(), TOTAL, "every record was acknowledged");

    // Kill while the stalling destination holds requests open with most of its backlog left.
    wait_for("the stalling receiver to stall", 60, || {
        stalling.count() >= TOTAL / 4
    })
    .await;
    let delivered_before = (stalling.count(), steady.count());
    node.kill_9();
    assert!(
        delivered_before.0 < TOTAL,
        "the kill must land mid-delivery: {delivered_before:?}"
    );

    stalling.release();
    let node = Node::start(dir.path());
    wait_for("every accepted generation at both receivers", 120, || {
        stalling.missing(&accepted) == 0 && steady.missing(&accepted) == 0
    })
    .await;
    assert_eq!(stalling.count(), TOTAL);
    assert_eq!(steady.count(), TOTAL);

    // The dedup index survived the kill too: a record accepted before it is a duplicate now.
    let r = http
        .post(format!("{}/api/v1/generations", node.base))
        .bearer_auth(&key)
        .header("content-type", "application/x-ndjson")
        .body(record(7) + "\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["data"]["accepted"], 0, "{v}");
    assert_eq!(v["data"]["duplicates"], 1, "{v}");
}

/// The onboarding order: workspaces and their destinations first, then the first records. Each
/// workspace's first append used to be deleted by the queue's truncation before its
/// destination's cursor was ever persisted (the cursor of a workspace with no record yet was
/// dropped), so a destination that was failing at the time, or a restart, lost them all while
/// the status showed them pending forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_records_of_new_workspaces_survive_a_failing_destination_and_a_restart() {
    const WORKSPACES: usize = 16;
    const PER_WORKSPACE: usize = 5;
    let dir = tempfile::tempdir().unwrap();
    let http = reqwest::Client::new();
    let (sink, url) = Sink::start(None).await;
    sink.set_failing(true);

    let node = Node::start(dir.path());
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    for i in 0..WORKSPACES {
        let ws = api(
            &http,
            &node,
            "/api/v1/workspaces",
            json!({"name": format!("onboarding {i}"), "slug": format!("onboarding-{i}")}),
        )
        .await;
        let ws_id = ws["data"]["id"].as_str().unwrap().to_owned();
        api(
            &http,
            &node,
            "/api/v1/observability/destinations",
            json!({"type": "webhook", "name": "hook", "workspace_id": ws_id, "config": {"url": url}}),
        )
        .await;
        let key = api(
            &http,
            &node,
            "/api/v1/keys",
            json!({"name": "app", "workspace_id": ws_id}),
        )
        .await["key"]
            .as_str()
            .unwrap()
            .to_owned();
        keys.push(key);
        prefixes.push(format!("ws{i}"));
    }

    let mut accepted = HashSet::new();
    for (i, key) in keys.iter().enumerate() {
        let body: String = (0..PER_WORKSPACE)
            .map(|j| {
                let mut r: Value = serde_json::from_str(&record(j)).unwrap();
                r["id"] = format!("ws{i}-{j}").into();
                r.to_string() + "\n"
            })
            .collect();
        let r = http
            .post(format!("{}/api/v1/generations", node.base))
            .bearer_auth(key)
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let v: Value = r.json().await.unwrap();
        for id in v["data"]["ids"].as_array().unwrap() {
            accepted.insert(id.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(accepted.len(), WORKSPACES * PER_WORKSPACE);

    // Retries back off to 1 s (RETRY_MAX_DELAY_SECS): six refused attempts per destination
    // span well over a second, so the queue's dedup flush and truncation (each once a second)
    // have run while every destination was failing.
    wait_for("six refused attempts per destination", 60, || {
        sink.fewest_refused(&prefixes) >= 6
    })
    .await;
    node.kill_9();

    sink.set_failing(false);
    let _node = Node::start(dir.path());
    wait_for("every accepted record of every new workspace", 60, || {
        sink.missing(&accepted) == 0
    })
    .await;
    assert_eq!(sink.count(), WORKSPACES * PER_WORKSPACE);
}
