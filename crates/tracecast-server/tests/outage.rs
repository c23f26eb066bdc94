//! Outages, against the real binary: one destination down while records keep arriving.
//!
//! - The short form of benchmark B3 (`bench/fanout.py --only B3`): with the default outage
//!   budget nothing is dropped, every record reaches every destination exactly once, and the
//!   healthy destinations receive everything while the failing one is still down. Counts only,
//!   never timings.
//! - Past its outage budget, the dead destination drops its oldest records (counted), its log
//!   shrinks back within the budget although its batches are stuck in retries, the other
//!   destination loses nothing, and after recovery every record is either delivered once or
//!   counted as dropped.
//!
//! The receivers live in this test process and count every generation id they are sent.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::e2e::wait_for;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tracecast");
const MGMT: &str = "sk-tc-v1-bootstrap-for-outage-test-1";
const DEST: &str = "/api/v1/observability/destinations";

/// A receiver counting, per generation id, how many times it was delivered. While `failing`
/// it answers 503 to everything and counts nothing.
#[derive(Clone, Default)]
struct Sink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    deliveries: HashMap<String, u32>,
    failing: bool,
    /// Answers this late (a slow but healthy receiver).
    delay: Duration,
    refused: usize,
    gzipped: usize,
}

impl Sink {
    async fn start() -> (Sink, String) {
        let sink = Sink::default();
        let app = axum::Router::new()
            .fallback(receive)
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (sink, url)
    }

    fn set_delay(&self, delay: Duration) {
        self.inner.lock().unwrap().delay = delay;
    }

    fn set_failing(&self, on: bool) {
        self.inner.lock().unwrap().failing = on;
    }

    /// Distinct ids delivered.
    fn distinct(&self) -> usize {
        self.inner.lock().unwrap().deliveries.len()
    }

    /// Ids delivered more than once.
    fn duplicates(&self) -> Vec<(String, u32)> {
        let s = self.inner.lock().unwrap();
        s.deliveries
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(id, n)| (id.clone(), *n))
            .collect()
    }

    fn refused(&self) -> usize {
        self.inner.lock().unwrap().refused
    }

    fn gzipped(&self) -> usize {
        self.inner.lock().unwrap().gzipped
    }

    fn ids(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap()
            .deliveries
            .keys()
            .cloned()
            .collect()
    }
}

async fn receive(State(sink): State<Sink>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if sink.inner.lock().unwrap().failing {
        sink.inner.lock().unwrap().refused += 1;
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let delay = sink.inner.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let gzipped = headers.contains_key("content-encoding");
    let body = common::receiver::inflate(&headers, &body);
    let Some(ids) = common::receiver::generation_ids_in(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut s = sink.inner.lock().unwrap();
    s.gzipped += gzipped as usize;
    for id in ids {
        *s.deliveries.entry(id).or_default() += 1;
    }
    StatusCode::OK
}

/// A running `tracecast serve` with fast retries that never give up, and `env` added; killed
/// when dropped.
struct Node {
    child: Child,
    base: String,
}

impl Node {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .current_dir(dir)
            .env("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", MGMT)
            .env("TRACECAST_DELIVERY__LINGER_MS", "20")
            .env("TRACECAST_DELIVERY__BATCH_MAX_ITEMS", "100")
            .env("TRACECAST_DELIVERY__RETRY_BASE_MS", "50")
            .env("TRACECAST_DELIVERY__RETRY_MAX_DELAY_SECS", "1")
            // Retries a second apart, but as many as the defaults allow in a day (30 attempts
            // up to 300 s apart): nothing is dead-lettered during these outages.
            .env("TRACECAST_DELIVERY__MAX_ATTEMPTS", "100000")
            .env("TRACECAST_DELIVERY__CONFIG_REFRESH_MS", "200")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn tracecast");
        let base = common::listening_address(&mut child);
        Node { child, base }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(MGMT)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn destination(&self, ty: &str, name: &str, config: Value) -> String {
        self.post(DEST, json!({"type": ty, "name": name, "config": config}))
            .await["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    async fn status(&self, id: &str) -> Value {
        let r = self
            .http
            .get(format!("{}{DEST}/{id}/status", self.base))
            .bearer_auth(MGMT)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["data"].clone()
    }

    async fn metrics(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Sends `total` records of about `size` bytes, `batch` at a time, `per_sec` a second
    /// (paced, never faster); every one must be acknowledged.
    async fn ingest(&self, key: &str, total: usize, batch: usize, per_sec: usize, size: usize) {
        let pad = "x".repeat(size.saturating_sub(300));
        let mut tick =
            tokio::time::interval(Duration::from_secs_f64(batch as f64 / per_sec as f64));
        for from in (0..total).step_by(batch) {
            tick.tick().await;
            let body: String = (from..(from + batch).min(total))
                .map(|i| record(i, &pad) + "\n")
                .collect();
            let r = self
                .http
                .post(format!("{}/api/v1/generations", self.base))
                .bearer_auth(key)
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 202);
            let v: Value = r.json().await.unwrap();
            assert_eq!(
                v["data"]["accepted"],
                (batch.min(total - from)) as u64,
                "{v}"
            );
        }
    }
}

fn record(i: usize, pad: &str) -> String {
    json!({
        "id": format!("outage-{i}"),
        "model": "openai/gpt-4o",
        "provider_name": "OpenAI",
        "created_at": "2026-03-01T12:00:00.000Z",
        "latency": 800.0,
        "request": {"messages": [{"role": "user", "content": format!("question {i} {pad}")}]},
        "response": {"choices": [{"message": {"role": "assistant", "content": "answer"}}],
                     "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}
    })
    .to_string()
}

async fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Node, Client, String) {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), env);
    let client = Client {
        http: reqwest::Client::new(),
        base: node.base.clone(),
    };
    let key = client.post("/api/v1/keys", json!({"name": "app"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    (dir, node, client, key)
}

/// B3, short: 3 destinations, one down while 3,000 records arrive at 500/s, then back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_within_the_default_budget_loses_nothing_and_delays_no_one_else() {
    const TOTAL: usize = 3000;
    let (_dir, _node, c, key) = start(&[]).await;
    let (a, a_url) = Sink::start().await;
    let (b, b_url) = Sink::start().await;
    let (down, down_url) = Sink::start().await;
    let ids = [
        c.destination("webhook", "a", json!({"url": a_url})).await,
        c.destination("webhook", "b", json!({"url": b_url})).await,
        c.destination("otel-collector", "down", json!({"endpoint": down_url}))
            .await,
    ];
    down.set_failing(true);
    c.ingest(&key, TOTAL, 100, 500, 2400).await;

    // The healthy destinations get everything while the third is still down.
    wait_for("both healthy receivers to have every record", 60, || {
        a.distinct() == TOTAL && b.distinct() == TOTAL
    })
    .await;
    assert!(down.refused() > 0, "the failing receiver was tried");
    assert_eq!(down.distinct(), 0);
    let st = c.status(&ids[2]).await;
    assert_eq!(st["queue"]["depth"], TOTAL as u64, "{st}");
    assert_eq!(st["counts"]["dropped"], 0, "{st}");
    assert!(
        st["queue"]["budget_bytes"].as_u64().unwrap() > st["queue"]["bytes"].as_u64().unwrap(),
        "{st}"
    );

    down.set_failing(false);
    wait_for("the recovered receiver to have every record", 60, || {
        down.distinct() == TOTAL
    })
    .await;
    for (sink, name) in [(&a, "a"), (&b, "b"), (&down, "down")] {
        assert_eq!(sink.distinct(), TOTAL, "{name}");
        assert_eq!(sink.duplicates(), vec![], "{name}: delivered exactly once");
    }
    assert!(down.gzipped() > 0, "otel-collector bodies are gzipped");
    assert_eq!(a.gzipped() + b.gzipped(), 0, "webhook bodies are not");
    for id in &ids {
        let mut st = c.status(id).await;
        // The cursor is committed within a second of moving: wait for the final one.
        for _ in 0..100 {
            if st["counts"]["delivered"] == TOTAL as u64 && st["queue"]["depth"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            st = c.status(id).await;
        }
        assert_eq!(st["counts"]["delivered"], TOTAL as u64, "{st}");
        assert_eq!(st["counts"]["dropped"], 0, "{st}");
        assert_eq!(st["queue"]["depth"], 0, "{st}");
    }
}

/// A dead destination past a small budget: it drops its oldest records, its log comes back
/// within the budget although its batches wait in retries, and the other one loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_budget_a_dead_destination_drops_its_oldest_records_and_its_log_shrinks() {
    const TOTAL: usize = 4000;
    const BUDGET: u64 = 600_000;
    // `max_backlog_bytes`, the name of the fixed cap this budget replaces, still sets it.
    let (_dir, _node, c, key) = start(&[("TRACECAST_DELIVERY__MAX_BACKLOG_BYTES", "600000")]).await;
    let (ok, ok_url) = Sink::start().await;
    let (down, down_url) = Sink::start().await;
    let ok_id = c.destination("webhook", "ok", json!({"url": ok_url})).await;
    let down_id = c
        .destination("webhook", "down", json!({"url": down_url}))
        .await;
    down.set_failing(true);
    // About 2.4 MB in 8 s: four times the budget.
    c.ingest(&key, TOTAL, 100, 500, 600).await;
    wait_for("the healthy receiver to have every record", 60, || {
        ok.distinct() == TOTAL
    })
    .await;

    // Back within the budget once the ingest stops, and the oldest records were dropped.
    let mut st = c.status(&down_id).await;
    for _ in 0..300 {
        if st["queue"]["bytes"].as_u64().unwrap() <= BUDGET {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        st = c.status(&down_id).await;
    }
    assert!(
        st["queue"]["bytes"].as_u64().unwrap() <= BUDGET,
        "the dead destination's log is back within its budget: {st}"
    );
    let dropped = st["counts"]["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "{st}");
    assert_eq!(st["queue"]["budget_bytes"], BUDGET, "{st}");
    assert!(st["queue"]["budget_used"].as_f64().unwrap() <= 1.0, "{st}");
    let m = c.metrics().await;
    assert!(
        m.lines()
            .any(|l| l.starts_with("tracecast_backlog_budget_warnings_total")),
        "a warning came before the drops"
    );
    assert!(
        m.lines()
            .any(|l| l.starts_with("tracecast_delivery_dropped_total")
                && l.contains(&down_id)
                && !l.ends_with(" 0")),
        "drops are counted per destination"
    );
    assert_eq!(c.status(&ok_id).await["counts"]["dropped"], 0);

    // Back: what was not dropped arrives, once each, and it is the newest records.
    down.set_failing(false);
    wait_for(
        "the recovered receiver to have every record not dropped",
        60,
        || down.distinct() as u64 + dropped == TOTAL as u64,
    )
    .await;
    assert_eq!(down.duplicates(), vec![]);
    let mut got: Vec<usize> = down
        .ids()
        .iter()
        .map(|id| id.trim_start_matches("outage-").parse().unwrap())
        .collect();
    got.sort_unstable();
    assert_eq!(got.last(), Some(&(TOTAL - 1)), "the newest record arrived");
    assert_eq!(
        got[0] as u64,
        dropped,
        "the oldest records went first: ids 0 to {} were dropped",
        dropped - 1
    );
    assert_eq!(ok.duplicates(), vec![]);
}

/// Two workspaces share the budget: the one whose destination is dead is cut down to what
/// fits, the healthy one loses nothing, although its slow receiver keeps a few hundred records
/// in flight (a share of the budget in proportion to what each log holds would cut those).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_in_one_workspace_costs_another_nothing() {
    const TOTAL: usize = 3000;
    let (_dir, _node, c, _) = start(&[("TRACECAST_DELIVERY__MAX_BACKLOG_BYTES", "600000")]).await;
    let (ok, ok_url) = Sink::start().await;
    let (down, down_url) = Sink::start().await;
    down.set_failing(true);
    ok.set_delay(Duration::from_millis(300));
    let mut keys = Vec::new();
    let mut dests = Vec::new();
    for (name, url) in [("live", &ok_url), ("dead", &down_url)] {
        let ws = c
            .post(
                "/api/v1/workspaces",
                json!({"name": name, "slug": format!("outage-{name}")}),
            )
            .await["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let d = c
            .post(
                DEST,
                json!({"type": "webhook", "name": name, "workspace_id": ws, "config": {"url": url}}),
            )
            .await["data"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        dests.push(d);
        keys.push(
            c.post("/api/v1/keys", json!({"name": name, "workspace_id": ws}))
                .await["key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // About 1.8 MB into each workspace, at the same time.
    tokio::join!(
        c.ingest(&keys[0], TOTAL, 100, 400, 600),
        c.ingest(&keys[1], TOTAL, 100, 400, 600),
    );
    wait_for(
        "the live workspace's receiver to have every record",
        60,
        || ok.distinct() == TOTAL,
    )
    .await;
    assert_eq!(ok.duplicates(), vec![]);
    let live = c.status(&dests[0]).await;
    assert_eq!(live["counts"]["dropped"], 0, "{live}");
    let mut dead = c.status(&dests[1]).await;
    for _ in 0..100 {
        if dead["counts"]["dropped"].as_u64().unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        dead = c.status(&dests[1]).await;
    }
    assert!(dead["counts"]["dropped"].as_u64().unwrap() > 0, "{dead}");
}
