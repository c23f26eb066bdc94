//! Scale-out: several `tracecast serve` processes on one PostgreSQL database and one NATS
//! JetStream server (`TRACECAST_QUEUE_URL`), each destination delivered by one node at a time
//! under a lease.
//!
//! The nodes are real processes (the built binary), so `kill -9` works, each with its own data
//! directory, node id and log file (`node.log` in its data directory; the tail of every log is
//! printed when a test fails). They share a fresh database and a fresh queue prefix per test.
//! The receivers live in this test process, so they keep what they were sent across kills.
//!
//! The servers are `TRACECAST_TEST_DATABASE_URL` (else `postgres://postgres@127.0.0.1:5432/postgres`)
//! and `TRACECAST_TEST_NATS_URL` (else `nats://127.0.0.1:4222`): without them these tests fail
//! rather than pass without checking anything. The NATS streams and buckets of a test's prefix
//! are deleted when the test ends, even when it fails.
//!
//! The tests run one at a time (three nodes each, on a small machine, and two of them measure
//! how soon something happens).

mod common;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::e2e::{DEST, wait_for};
use common::{TempDatabase, test_database_url};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const BIN: &str = env!("CARGO_BIN_EXE_tracecast");
const MGMT: &str = "sk-tc-v1-bootstrap-for-cluster-test-01";
/// Lease time-to-live: a dead node's destinations move within about ttl + ttl/3.
const LEASE_TTL_SECS: &str = "3";
/// Records per delivery batch (`delivery.batch_max_items`).
const DELIVERY_BATCH: usize = 100;
/// Requests in flight per destination and node (`delivery.concurrency`, the default).
const CONCURRENCY: usize = 4;

/// One test at a time: a tokio mutex, so a failed test releases it.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn nats_url() -> String {
    std::env::var("TRACECAST_TEST_NATS_URL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned())
}

/// Fails (never skips) when no NATS server answers at `url`.
async fn require_nats(url: &str) {
    let u = url::Url::parse(url).unwrap_or_else(|e| panic!("TRACECAST_TEST_NATS_URL {url}: {e}"));
    let addr = format!(
        "{}:{}",
        u.host_str().unwrap_or("127.0.0.1"),
        u.port().unwrap_or(4222)
    );
    match tokio::time::timeout(
        Duration::from_secs(5),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => panic!("no NATS server at {url} ({e}); set TRACECAST_TEST_NATS_URL"),
        Err(_) => {
            panic!("no NATS server at {url} (connect timed out); set TRACECAST_TEST_NATS_URL")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Receivers

/// A receiver that records every request's arrival and, per generation id
/// (`gen_ai.response.id` of each span of an OTLP/JSON body), how many times it was delivered.
/// While `retry_after` is set it answers every request 429 with that `Retry-After`.
#[derive(Clone, Default)]
struct Sink {
    inner: Arc<Mutex<SinkState>>,
}

#[derive(Default)]
struct SinkState {
    deliveries: HashMap<String, u32>,
    /// Arrival and answer of every request.
    requests: Vec<(Instant, u16)>,
    retry_after: Option<u64>,
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

    /// Distinct ids delivered.
    fn count(&self) -> usize {
        self.inner.lock().unwrap().deliveries.len()
    }

    fn missing(&self, accepted: &HashSet<String>) -> usize {
        let s = self.inner.lock().unwrap();
        accepted
            .iter()
            .filter(|id| !s.deliveries.contains_key(*id))
            .count()
    }

    /// `count() >= accepted.len()` first: cheap while far from done.
    fn has_all(&self, accepted: &HashSet<String>) -> bool {
        self.count() >= accepted.len() && self.missing(accepted) == 0
    }

    /// Deliveries beyond the first, over all ids.
    fn duplicates(&self) -> u64 {
        let s = self.inner.lock().unwrap();
        s.deliveries.values().map(|&n| u64::from(n) - 1).sum()
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

    fn requests(&self) -> Vec<(Instant, u16)> {
        self.inner.lock().unwrap().requests.clone()
    }

    fn request_count(&self) -> usize {
        self.inner.lock().unwrap().requests.len()
    }

    fn set_retry_after(&self, secs: Option<u64>) {
        self.inner.lock().unwrap().retry_after = secs;
    }
}

async fn receive(
    State(sink): State<Sink>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let body = common::receiver::inflate(&headers, &body);
    let at = Instant::now();
    let retry_after = sink.inner.lock().unwrap().retry_after;
    if let Some(secs) = retry_after {
        sink.inner.lock().unwrap().requests.push((at, 429));
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", secs.to_string())],
            "{\"error\":\"slow down\"}",
        )
            .into_response();
    }
    let Some(ids) = common::receiver::generation_ids_in(&body) else {
        sink.inner.lock().unwrap().requests.push((at, 400));
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut s = sink.inner.lock().unwrap();
    s.requests.push((at, 200));
    for id in ids {
        *s.deliveries.entry(id).or_default() += 1;
    }
    StatusCode::OK.into_response()
}

// ---------------------------------------------------------------------------------------------
// Nodes

/// A running `tracecast serve` with its own data directory; SIGKILLed when dropped.
struct Node {
    id: String,
    base: String,
    child: Child,
    alive: bool,
    dir: tempfile::TempDir,
}

impl Node {
    fn log_path(&self) -> PathBuf {
        self.dir.path().join("node.log")
    }

    /// SIGKILL: no shutdown hook runs, no lease is released, nothing is flushed.
    fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.alive = false;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The nodes of one test, their shared database, queue prefix and keys.
struct Cluster {
    http: reqwest::Client,
    env: Vec<(String, String)>,
    nodes: Vec<Node>,
    /// Nodes replaced by a restart, kept for their logs.
    replaced: Vec<Node>,
    /// Last: dropped after the nodes are killed.
    _db: TempDatabase,
    _streams: NatsPrefix,
}

/// A test's queue prefix: its streams and buckets are deleted when this is dropped.
struct NatsPrefix {
    url: String,
    prefix: String,
}

impl Drop for NatsPrefix {
    fn drop(&mut self) {
        let (url, upper) = (self.url.clone(), self.prefix.to_ascii_uppercase());
        // On a runtime of its own: this runs inside the test's runtime, and after panics too.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use futures_util::StreamExt;
                let Ok(client) = async_nats::connect(url).await else {
                    return;
                };
                let js = async_nats::jetstream::new(client);
                let mut names = js.stream_names();
                let mut mine = Vec::new();
                while let Some(Ok(n)) = names.next().await {
                    if n.starts_with(&format!("{upper}_")) || n.starts_with(&format!("KV_{upper}_"))
                    {
                        mine.push(n);
                    }
                }
                for n in mine {
                    let _ = js.delete_stream(&n).await;
                }
            });
        })
        .join();
    }
}

impl Cluster {
    /// A fresh database and queue prefix; `extra` environment for every node.
    async fn new(extra: &[(&str, &str)]) -> Cluster {
        let queue = nats_url();
        require_nats(&queue).await;
        let admin = test_database_url()
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let db = TempDatabase::create(&admin).await;
        let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = [
            ("TRACECAST_DATABASE_URL", db.url.as_str()),
            ("TRACECAST_DATABASE_POOL_SIZE", "4"),
            (
                "TRACECAST_ENCRYPTION_KEYS",
                &tracecast_store::crypto::generate_key_spec(),
            ),
            ("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", MGMT),
            ("TRACECAST_QUEUE_URL", &queue),
            ("TRACECAST_QUEUE_PREFIX", &prefix),
            ("TRACECAST_LEASE_TTL_SECS", LEASE_TTL_SECS),
            ("TRACECAST_LOG", "info"),
            ("TRACECAST_DELIVERY__LINGER_MS", "20"),
            ("TRACECAST_DELIVERY__BATCH_MAX_ITEMS", "100"),
            ("TRACECAST_DELIVERY__CONCURRENCY", "4"),
            ("TRACECAST_DELIVERY__RETRY_BASE_MS", "50"),
            ("TRACECAST_DELIVERY__RETRY_MAX_DELAY_SECS", "1"),
            ("TRACECAST_DELIVERY__REQUEST_TIMEOUT_SECS", "30"),
            ("TRACECAST_DELIVERY__CONFIG_REFRESH_MS", "200"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in extra {
            env.retain(|(key, _)| key != k);
            env.push((k.to_string(), v.to_string()));
        }
        println!("queue prefix {prefix}, database {}", db.url);
        Cluster {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            env,
            nodes: Vec::new(),
            replaced: Vec::new(),
            _db: db,
            _streams: NatsPrefix { url: queue, prefix },
        }
    }

    /// Starts a node; resolves once it listens.
    fn spawn(&self, id: &str) -> impl Future<Output = Node> + use<> {
        let dir = tempfile::tempdir().unwrap();
        let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .current_dir(dir.path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("TRACECAST_NODE_ID", id)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn tracecast");
        let id = id.to_owned();
        async move {
            let mut node = Node {
                id,
                base: String::new(),
                child,
                alive: true,
                dir,
            };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let text = std::fs::read_to_string(node.log_path()).unwrap_or_default();
                if let Some(line) = text.lines().find(|l| l.contains("listening on ")) {
                    node.base = line
                        .split("listening on ")
                        .nth(1)
                        .unwrap()
                        .trim()
                        .to_owned();
                    return node;
                }
                if let Some(status) = node.child.try_wait().unwrap() {
                    panic!(
                        "{} exited before listening ({status}):\n{}",
                        node.id,
                        tail(&node.log_path(), 60)
                    );
                }
                assert!(
                    Instant::now() < deadline,
                    "{} did not listen within 60 s:\n{}",
                    node.id,
                    tail(&node.log_path(), 60)
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Starts `first` alone (it bootstraps the fresh database and creates the streams), then
    /// the others together.
    async fn start(&mut self, first: &str, others: &[&str]) {
        let node = self.spawn(first).await;
        self.nodes.push(node);
        let mut set = JoinSet::new();
        for (i, id) in others.iter().enumerate() {
            let f = self.spawn(id);
            set.spawn(async move { (i, f.await) });
        }
        let mut started: Vec<(usize, Node)> = Vec::new();
        while let Some(r) = set.join_next().await {
            started.push(r.unwrap());
        }
        started.sort_by_key(|(i, _)| *i);
        self.nodes.extend(started.into_iter().map(|(_, n)| n));
    }

    fn index_of(&self, node_id: &str) -> usize {
        self.nodes
            .iter()
            .position(|n| n.id == node_id)
            .unwrap_or_else(|| panic!("no node {node_id}"))
    }

    fn alive(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].alive)
            .collect()
    }

    /// Kills node `i` with SIGKILL and starts a fresh process with the same node id (and a new
    /// data directory) in its place.
    async fn kill_and_replace(&mut self, i: usize) {
        self.nodes[i].kill_9();
        let fresh = self.spawn(&self.nodes[i].id.clone()).await;
        let old = std::mem::replace(&mut self.nodes[i], fresh);
        self.replaced.push(old);
    }

    async fn request(
        &self,
        node: usize,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Value {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.nodes[node].base))
            .bearer_auth(MGMT);
        if !body.is_null() {
            req = req.json(&body);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Creates a destination on node `node`; returns its id.
    async fn create(&self, node: usize, body: Value) -> String {
        let v = self.request(node, reqwest::Method::POST, DEST, body).await;
        v["data"]["id"].as_str().unwrap().to_owned()
    }

    /// A new workspace key (default workspace).
    async fn workspace_key(&self, node: usize) -> String {
        let v = self
            .request(
                node,
                reqwest::Method::POST,
                "/api/v1/keys",
                json!({"name": "app"}),
            )
            .await;
        v["key"].as_str().unwrap().to_owned()
    }

    /// `data` of the destination's status, asked of node `node`.
    async fn status(&self, node: usize, dest: &str) -> Value {
        self.request(
            node,
            reqwest::Method::GET,
            &format!("{DEST}/{dest}/status"),
            Value::Null,
        )
        .await["data"]
            .clone()
    }

    /// The node id delivering `dest` (status `owner`), waiting up to 30 s for one to hold it.
    async fn owner(&self, asked: usize, dest: &str) -> String {
        wait_until("the destination to have an owner", 30, async || {
            let st = self.status(asked, dest).await;
            assert!(
                st.get("owner").is_some(),
                "status has no `owner` field: is the node in cluster mode? {st}"
            );
            match st["owner"].as_str() {
                Some(o) => Ok(o.to_owned()),
                None => Err(st.to_string()),
            }
        })
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for n in self.replaced.iter().chain(&self.nodes) {
                eprintln!(
                    "----- {} ({}, {}) log tail: {}\n{}",
                    n.id,
                    n.base,
                    if n.alive { "running" } else { "killed" },
                    n.log_path().display(),
                    tail(&n.log_path(), 80)
                );
            }
        }
    }
}

/// Waits up to `secs` for `check` to answer Ok, polling every 50 ms; returns its value. On
/// timeout panics with `what` and the last answer.
async fn wait_until<T>(
    what: &str,
    secs: u64,
    mut check: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let last = match check().await {
            Ok(v) => return v,
            Err(e) => e,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {secs} s waiting for {what}: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Records and ingest

fn record(prefix: &str, i: usize) -> String {
    json!({
        "id": format!("{prefix}-{i}"),
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

fn ndjson(prefix: &str, from: usize, to: usize) -> String {
    (from..to).map(|i| record(prefix, i) + "\n").collect()
}

/// Posts records `from..to` as one NDJSON batch to `base`, which must accept them all (202,
/// no duplicates). Returns the ids answered as accepted.
async fn ingest(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    prefix: &str,
    from: usize,
    to: usize,
) -> Vec<String> {
    let r = http
        .post(format!("{base}/api/v1/generations"))
        .bearer_auth(key)
        .header("content-type", "application/x-ndjson")
        .body(ndjson(prefix, from, to))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    assert_eq!(status, 202, "{base}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["data"]["duplicates"], 0, "{v}");
    ids_of(&v)
}

fn ids_of(v: &Value) -> Vec<String> {
    v["data"]["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 of a node halfway through 100,000 records

const T1_TOTAL: usize = 100_000;
const T1_BATCH: usize = 500;
const T1_POSTERS: usize = 4;

/// What the posting tasks of test 1 share.
struct Feed {
    http: reqwest::Client,
    bases: Vec<String>,
    key: String,
    /// The index of the killed node (usize::MAX: none yet).
    dead: AtomicUsize,
    next_batch: AtomicUsize,
    accepted: Mutex<HashSet<String>>,
    n_accepted: AtomicUsize,
    /// Posts that failed (the node died under them, or 503) and went to another node.
    reposts: AtomicUsize,
}

impl Feed {
    /// Posts batch `b` round-robin over the live nodes. A post that fails (connection error:
    /// its node was killed) goes to the next live node. What a killed node appended before it
    /// died answers as duplicates there: every record of a batch answered 202 is durably
    /// queued, so all of them count as accepted.
    async fn post(&self, b: usize) {
        let (from, to) = (b * T1_BATCH, ((b + 1) * T1_BATCH).min(T1_TOTAL));
        let body = ndjson("c1", from, to);
        for attempt in 0..20 {
            let dead = self.dead.load(Ordering::SeqCst);
            let live: Vec<usize> = (0..self.bases.len()).filter(|&i| i != dead).collect();
            let node = live[(b + attempt) % live.len()];
            let r = self
                .http
                .post(format!("{}/api/v1/generations", self.bases[node]))
                .bearer_auth(&self.key)
                .header("content-type", "application/x-ndjson")
                .body(body.clone())
                .send()
                .await;
            let answer = match r {
                Ok(r) => {
                    let status = r.status().as_u16();
                    (status, r.text().await)
                }
                Err(e) => (0, Err(e)),
            };
            match answer {
                (202, Ok(text)) => {
                    let v: Value = serde_json::from_str(&text).unwrap();
                    let ids = if attempt == 0 {
                        assert_eq!(v["data"]["duplicates"], 0, "{v}");
                        ids_of(&v)
                    } else {
                        let acc = v["data"]["accepted"].as_u64().unwrap();
                        let dup = v["data"]["duplicates"].as_u64().unwrap();
                        assert_eq!((acc + dup) as usize, to - from, "{v}");
                        (from..to).map(|i| format!("c1-{i}")).collect()
                    };
                    self.n_accepted.fetch_add(ids.len(), Ordering::SeqCst);
                    self.accepted.lock().unwrap().extend(ids);
                    return;
                }
                (0 | 503, answer) => {
                    println!(
                        "batch {b} on node {node}: {} ({}); posting again",
                        if dead == node { "killed" } else { "failed" },
                        match answer {
                            Ok(t) => t,
                            Err(e) => e.to_string(),
                        }
                    );
                    self.reposts.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                (status, answer) => panic!("batch {b} on node {node}: {status} {answer:?}"),
            }
        }
        panic!("batch {b} was not accepted after 20 posts");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_kill_9_halfway_lose_nothing() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let (hook, hook_url) = Sink::start().await;
    let (otel, otel_url) = Sink::start().await;
    let mut cl = Cluster::new(&[]).await;
    cl.start("node-a", &["node-b", "node-c"]).await;
    let hook_id = cl
        .create(
            0,
            json!({"type": "webhook", "name": "hook", "config": {"url": hook_url}}),
        )
        .await;
    let otel_id = cl
        .create(
            1,
            json!({"type": "otel-collector", "name": "otel", "config": {"endpoint": otel_url}}),
        )
        .await;
    let key = cl.workspace_key(2).await;

    let feed = Arc::new(Feed {
        http: cl.http.clone(),
        bases: cl.nodes.iter().map(|n| n.base.clone()).collect(),
        key,
        dead: AtomicUsize::new(usize::MAX),
        next_batch: AtomicUsize::new(0),
        accepted: Mutex::new(HashSet::new()),
        n_accepted: AtomicUsize::new(0),
        reposts: AtomicUsize::new(0),
    });
    let mut posters = JoinSet::new();
    for _ in 0..T1_POSTERS {
        let feed = feed.clone();
        posters.spawn(async move {
            loop {
                let b = feed.next_batch.fetch_add(1, Ordering::SeqCst);
                if b * T1_BATCH >= T1_TOTAL {
                    return;
                }
                feed.post(b).await;
            }
        });
    }

    // Halfway: kill -9 the node delivering the webhook destination (else the otel one's).
    wait_for("half of the records accepted", 150, || {
        feed.n_accepted.load(Ordering::SeqCst) >= T1_TOTAL / 2
    })
    .await;
    let owners = (
        cl.status(0, &hook_id).await["owner"].clone(),
        cl.status(0, &otel_id).await["owner"].clone(),
    );
    let victim = match (owners.0.as_str(), owners.1.as_str()) {
        (Some(o), _) | (None, Some(o)) => cl.index_of(o),
        (None, None) => 2,
    };
    feed.dead.store(victim, Ordering::SeqCst);
    cl.nodes[victim].kill_9();
    let killed_at = Instant::now();
    let at_kill = (
        feed.n_accepted.load(Ordering::SeqCst),
        hook.count(),
        otel.count(),
    );
    println!(
        "owners before the kill (hook, otel): {owners:?}; killed {} at {:.1} s with {} accepted, \
         delivered hook {} otel {}",
        cl.nodes[victim].id,
        started.elapsed().as_secs_f64(),
        at_kill.0,
        at_kill.1,
        at_kill.2
    );

    while let Some(r) = posters.join_next().await {
        r.unwrap();
    }
    let accepted = std::mem::take(&mut *feed.accepted.lock().unwrap());
    println!(
        "ingest done at {:.1} s: {} accepted, {} batches posted again",
        started.elapsed().as_secs_f64(),
        accepted.len(),
        feed.reposts.load(Ordering::SeqCst)
    );
    assert_eq!(
        accepted.len(),
        T1_TOTAL,
        "every record was acknowledged by a live node"
    );

    let deadline = 180;
    wait_until(
        "every accepted id at both receivers",
        deadline,
        async || {
            if hook.has_all(&accepted) && otel.has_all(&accepted) {
                Ok(())
            } else {
                Err(format!(
                    "hook missing {}, otel missing {}",
                    hook.missing(&accepted),
                    otel.missing(&accepted)
                ))
            }
        },
    )
    .await;
    let (hook_owner, otel_owner) = (
        cl.status(cl.alive()[0], &hook_id).await["owner"].clone(),
        cl.status(cl.alive()[0], &otel_id).await["owner"].clone(),
    );
    println!(
        "all delivered at {:.1} s ({:.1} s after the kill); owners now (hook, otel): \
         ({hook_owner}, {otel_owner})",
        started.elapsed().as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );

    // Duplicates: a node that dies had at most `concurrency` batches of `batch_max_items`
    // records in flight per destination, delivered but possibly not committed; the bound
    // allows twice that for each of the three nodes (a destination may have moved more than
    // once): 2 * 3 nodes * 4 concurrency * 100 records = 2,400 per destination.
    let bound = 2 * 3 * CONCURRENCY as u64 * DELIVERY_BATCH as u64;
    let dupes = (hook.duplicates(), otel.duplicates());
    println!("duplicates (hook, otel): {dupes:?}; bound {bound} each");
    assert!(dupes.0 <= bound, "webhook duplicates {} > {bound}", dupes.0);
    assert!(dupes.1 <= bound, "otel duplicates {} > {bound}", dupes.1);

    // Every surviving node reports the same delivered count, from the shared state.
    let survivors = cl.alive();
    for (name, dest) in [("hook", &hook_id), ("otel", &otel_id)] {
        let seen = wait_until(
            &format!("{name}: the same counts.delivered >= accepted on every survivor"),
            30,
            async || {
                let mut seen = Vec::new();
                for &i in &survivors {
                    seen.push(
                        cl.status(i, dest).await["counts"]["delivered"]
                            .as_u64()
                            .unwrap(),
                    );
                }
                if seen.iter().all(|&d| d == seen[0]) && seen[0] >= T1_TOTAL as u64 {
                    Ok(seen)
                } else {
                    Err(format!("delivered per survivor: {seen:?}"))
                }
            },
        )
        .await;
        println!("{name}: counts.delivered on the survivors: {seen:?}");
    }
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 2. disabled on one node, the others stop within 2 s

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_on_node_a_stops_b_and_c_within_2s() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let (r, r_url) = Sink::start().await;
    let (rc, rc_url) = Sink::start().await;
    // Periodic reloads far apart: only the change broadcast can stop the other nodes in time.
    let mut cl = Cluster::new(&[("TRACECAST_DELIVERY__CONFIG_REFRESH_MS", "30000")]).await;
    cl.start("node-a", &["node-b", "node-c"]).await;
    let d = cl
        .create(
            0,
            json!({"type": "webhook", "name": "D", "config": {"url": r_url}}),
        )
        .await;
    let _c = cl
        .create(
            0,
            json!({"type": "otel-collector", "name": "C", "config": {"endpoint": rc_url}}),
        )
        .await;
    let key = cl.workspace_key(0).await;

    // "A", where D is disabled, is a node that does not deliver D: the owner must learn of
    // the change from the broadcast. Records go to the other two ("B" and "C").
    let owner = cl.owner(0, &d).await;
    let a = (0..3).find(|&i| cl.nodes[i].id != owner).unwrap();
    let feeders: Vec<String> = (0..3)
        .filter(|&i| i != a)
        .map(|i| cl.nodes[i].base.clone())
        .collect();
    println!(
        "D is delivered by {owner}; disabling it on {}",
        cl.nodes[a].id
    );

    // Background ingest: batches of 20, alternating between B and C; each id's send instant.
    let stop = Arc::new(AtomicBool::new(false));
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let accepted: Arc<Mutex<HashSet<String>>> = Arc::default();
    let feeder = {
        let (stop, sent, accepted, http) = (
            stop.clone(),
            sent.clone(),
            accepted.clone(),
            cl.http.clone(),
        );
        tokio::spawn(async move {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let base = &feeders[(i / 20) % feeders.len()];
                let at = Instant::now();
                {
                    let mut s = sent.lock().unwrap();
                    for j in i..i + 20 {
                        s.insert(format!("dis-{j}"), at);
                    }
                }
                let ids = ingest(&http, base, &key, "dis", i, i + 20).await;
                accepted.lock().unwrap().extend(ids);
                i += 20;
            }
        })
    };

    // D is delivering before the change, still by a node other than A.
    wait_for("R to receive records", 60, || r.count() >= 100).await;
    let owner_now = cl.owner(a, &d).await;
    assert_ne!(
        owner_now, cl.nodes[a].id,
        "D moved to the node it is disabled on (owner was {owner})"
    );
    let patch_sent = Instant::now();
    let v = cl
        .request(
            a,
            reqwest::Method::PATCH,
            &format!("{DEST}/{d}"),
            json!({"enabled": false}),
        )
        .await;
    let t = Instant::now();
    assert_eq!(v["data"]["enabled"], false, "{v}");
    println!(
        "PATCH answered in {} ms, {:.1} s into the test",
        (t - patch_sent).as_millis(),
        started.elapsed().as_secs_f64()
    );

    tokio::time::sleep_until((t + Duration::from_secs(4)).into()).await;
    stop.store(true, Ordering::SeqCst);
    feeder.await.unwrap();
    let accepted = std::mem::take(&mut *accepted.lock().unwrap());
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let after_2s = sent
        .values()
        .filter(|&&at| at > t + Duration::from_secs(2))
        .count();
    println!(
        "{} records accepted, {after_2s} of them sent more than 2 s after the PATCH",
        accepted.len()
    );
    assert!(after_2s > 0, "the feed kept going past T + 2 s");

    // The cluster kept delivering: the control destination has everything.
    wait_until("RC to have every accepted id", 60, async || {
        if rc.has_all(&accepted) {
            Ok(())
        } else {
            Err(format!("RC missing {}", rc.missing(&accepted)))
        }
    })
    .await;
    // Every record is accounted for at D (delivered or discarded): nothing more can reach R.
    let n = accepted.len() as u64;
    let last = wait_until("D to account for every accepted record", 60, async || {
        let st = cl.status(a, &d).await;
        let c = &st["counts"];
        let done = c["delivered"].as_u64().unwrap() + c["discarded"].as_u64().unwrap();
        if done >= n {
            Ok(st)
        } else {
            Err(format!("{done} of {n} accounted for: {st}"))
        }
    })
    .await;
    assert_eq!(last["state"], "disabled", "{last}");
    println!("D status: {last}");

    let ids = r.ids();
    let late: Vec<&String> = ids
        .iter()
        .filter(|id| {
            sent.get(*id)
                .is_none_or(|&at| at > t + Duration::from_secs(2))
        })
        .collect();
    let before_patch = ids
        .iter()
        .filter(|id| sent.get(*id).is_some_and(|&at| at < patch_sent))
        .count();
    let last_delivery = r
        .requests()
        .iter()
        .filter(|(_, s)| *s < 300)
        .map(|(at, _)| *at)
        .max()
        .unwrap();
    let since_t = if last_delivery >= t {
        format!("+{} ms", (last_delivery - t).as_millis())
    } else {
        format!("-{} ms", (t - last_delivery).as_millis())
    };
    println!(
        "R got {} ids ({before_patch} sent before the PATCH); last delivery to R at T{since_t}; \
         {} ids sent after T + 2 s reached R",
        ids.len(),
        late.len()
    );
    assert!(
        late.is_empty(),
        "{} records sent more than 2 s after D was disabled reached R, e.g. {:?}",
        late.len(),
        &late[..late.len().min(5)]
    );
    assert!(before_patch > 0, "records sent before the PATCH reached R");
    println!("test took {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// 3. Retry-After survives the owner's death

/// The receiver's `Retry-After`. The kill comes up to about a second after the last 429 (once
/// the 429 is committed), and a takeover takes a restart (the same node id takes its lease back
/// at once) or ttl + ttl/3 = 4 s (another node): with 8 s, a new owner that ignored the previous
/// owner's `Retry-After` would send seconds before it ends, whichever node takes over.
const RETRY_AFTER_SECS: u64 = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_receiver_survives_owner_restart() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let (rx, rx_url) = Sink::start().await;
    rx.set_retry_after(Some(RETRY_AFTER_SECS));
    let mut cl = Cluster::new(&[]).await;
    cl.start("node-a", &["node-b", "node-c"]).await;
    let d = cl
        .create(
            0,
            json!({"type": "webhook", "name": "failing", "config": {"url": rx_url}}),
        )
        .await;
    let key = cl.workspace_key(0).await;

    let mut accepted = HashSet::new();
    for (b, from) in (0..2_000).step_by(500).enumerate() {
        let base = cl.nodes[b % 3].base.clone();
        accepted.extend(ingest(&cl.http, &base, &key, "ra", from, from + 500).await);
    }
    assert_eq!(accepted.len(), 2_000);

    wait_for("the first 429", 60, || rx.request_count() > 0).await;
    let owner = cl.owner(0, &d).await;
    let victim = cl.index_of(&owner);
    let other = (victim + 1) % 3;
    // The 429 is committed to the shared state (another node reports it) before the kill: the
    // retry state is persisted with it.
    wait_until("another node to report the 429", 30, async || {
        let st = cl.status(other, &d).await;
        if st["last_error"]["status"] == 429 {
            Ok(())
        } else {
            Err(st.to_string())
        }
    })
    .await;

    cl.nodes[victim].kill_9();
    let killed_at = Instant::now();
    let before = rx.requests();
    let (last_429, _) = *before.last().unwrap();
    assert!(before.iter().all(|&(_, s)| s == 429), "{before:?}");
    println!(
        "killed owner {owner} {} ms after the last 429 ({} requests, all 429)",
        last_429.elapsed().as_millis(),
        before.len()
    );
    cl.kill_and_replace(victim).await;

    wait_for("a request after the takeover", 60, || {
        rx.request_count() > before.len()
    })
    .await;
    let (next, _) = rx.requests()[before.len()];
    let gap = next - last_429;
    let new_owner = cl.status(other, &d).await["owner"].clone();
    println!(
        "next request {} ms after the last 429 before the kill ({} ms after the kill); owner now \
         {new_owner}",
        gap.as_millis(),
        (next - killed_at).as_millis()
    );
    assert!(
        gap >= Duration::from_millis(RETRY_AFTER_SECS * 1000 - 500),
        "Retry-After: {RETRY_AFTER_SECS} was not honoured across the takeover: the next request \
         came {gap:?} after the last 429"
    );

    rx.set_retry_after(None);
    wait_until("every accepted id delivered", 60, async || {
        if rx.has_all(&accepted) {
            Ok(())
        } else {
            Err(format!("missing {}", rx.missing(&accepted)))
        }
    })
    .await;
    assert_eq!(rx.missing(&accepted), 0);
    println!(
        "all delivered; {} duplicates; test took {:.1} s",
        rx.duplicates(),
        started.elapsed().as_secs_f64()
    );
}
