//! The distributed queue: NATS JetStream, shared by every tracecast node.
//!
//! Layout (all names derive from [`NatsQueueOptions::prefix`]; `PREFIX` is its upper case):
//! - `PREFIX_LOG_<workspace>`: one stream per workspace (subject `prefix.log.<workspace>`,
//!   file storage). The stream sequence is the record's seq, so a workspace's log is
//!   contiguous from 1 whichever node appended. Each message carries `Nats-Msg-Id` (a hash of the
//!   generation id) and the stream's `duplicate_window` (24 h) de-duplicates re-sent ids
//!   across nodes; `Tc-Received-At` holds the acceptance time.
//! - `PREFIX_STATE`: a KV bucket: `cursor.<destination>` (`{"ws","seq"}`),
//!   `counters.<destination>` (JSON [`Counters`]) and `dl.next` (the dead-letter id allocator).
//! - `PREFIX_DEAD`: a stream of dead letters, one subject per letter,
//!   `prefix.dead.<destination>.<n|r>.<id>.<failed_at_ms>` (`r`: marked for replay), one message
//!   per subject. Counting, paging, replay selection and expiry work on the subject list
//!   (stream info with a subject filter) without reading bodies.
//!
//! Heads: a node learns a workspace's head from its own publish acks, from the heads other
//! nodes announce on core NATS (`prefix.head.<workspace>`, sent after their acks) and, as a
//! fallback for lost announcements, from stream info polled every
//! [`NatsQueueOptions::head_poll`] for workspaces with local subscribers.
//!
//! Reads are served from a bounded in-memory tail of recent records (as in the SQLite queue),
//! else with pipelined direct gets (`allow_direct`; the 2.9 server has no batched direct get).
//! Cursor and counter commits are buffered and written every
//! [`NatsQueueOptions::commit_interval`]. Every [`NatsQueueOptions::truncate_interval`] each
//! workspace stream is purged up to the smallest cursor of its destinations (a workspace without
//! any cursor: of what it held [`NatsQueueOptions::uncursored_grace`] ago). Every node truncates
//! the workspaces it knows (all those existing when it connected, and those it touched since);
//! purges are idempotent.
//!
//! Sizes: [`Queue::backlog`]'s bytes are approximate (the stream's stored bytes, which include
//! each record's subject and headers, pro rata). [`Queue::cap_point`] is exact: when the stored
//! bytes exceed the cap, the body sizes of the backlog are read with a headers-only consumer
//! (`Nats-Msg-Size`, no bodies) into a per-workspace index (4 bytes a record, trimmed as cursors
//! advance) and walked back from the head, so it never drops more than the cap requires.
//!
//! Known limits:
//! - De-duplication of truncated records relies on the server's in-memory dedup map, which
//!   partial purges keep (tested). A JetStream server restart (or, in a cluster, a new stream
//!   leader) rebuilds that map from the records still stored, so an id whose record was already
//!   truncated can be accepted again if re-sent within 24 h across such an event.
//! - `head()` of a workspace this node has never seen is 0 until it is synced (at most
//!   `head_poll` later, or at once with [`NatsQueue::sync_head`]).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::IntoFuture;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{AckPolicy, DeliverPolicy, pull},
    context::PublishErrorKind,
    kv,
    message::PublishMessage,
    stream::{self, DirectGetErrorKind, StorageType},
};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracecast_model::generation::Generation;
use uuid::Uuid;

use super::sqlite::PARSED_OVERHEAD;
use super::{
    AppendResult, Backlog, Counters, Cursor, DeadLetter, LogUsage, NewRecord, Queue, QueueError,
    Record, Result, Storage,
};

const RECEIVED_AT: &str = "Tc-Received-At";
const MSG_SIZE: &str = "Nats-Msg-Size";
/// Records kept waiting for the records before them (per workspace; they also count against
/// the tail's byte budget). With several nodes appending, this node's own records wait here
/// until a reader has fetched the other nodes' records between them.
const MAX_PENDING: usize = 65_536;

/// Errors of the NATS backend. Messages never include the server URL (it may hold credentials).
#[derive(Debug, Error)]
pub enum NatsError {
    #[error("invalid NATS queue options: {0}")]
    Options(String),
    #[error("connecting to NATS failed: {0}")]
    Connect(String),
    #[error("NATS {op} failed: {message}")]
    Request { op: &'static str, message: String },
}

fn nats_err<E: std::fmt::Display>(op: &'static str) -> impl FnOnce(E) -> QueueError {
    move |e| {
        QueueError::Nats(NatsError::Request {
            op,
            message: e.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct NatsQueueOptions {
    /// Server URL(s), comma separated (`nats://host:4222`). May include credentials; never
    /// logged.
    pub url: String,
    /// Names every stream, bucket and subject (`[A-Za-z0-9_-]+`). Nodes of one deployment share
    /// it.
    pub prefix: String,
    /// Memory for recent records kept parsed for readers (default 48 MiB), as in the SQLite
    /// queue.
    pub tail_bytes: usize,
    /// How long an accepted id is remembered for de-duplication (default 24 h).
    pub dedup_window: Duration,
    /// Stream info polling for workspaces with local subscribers (default 1 s); announcements
    /// wake subscribers sooner.
    pub head_poll: Duration,
    /// How often buffered cursor and counter commits are written (default 100 ms).
    pub commit_interval: Duration,
    /// How often logs are truncated to the slowest cursor (default 1 s).
    pub truncate_interval: Duration,
    /// A workspace log no destination has a cursor on is purged of the records it already had
    /// this long ago (default 60 s).
    pub uncursored_grace: Duration,
    /// Stream and bucket replicas (default 1; 3 in a NATS cluster).
    pub replicas: usize,
    /// Direct gets in flight per read (default 64).
    pub read_concurrency: usize,
}

impl NatsQueueOptions {
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> Self {
        NatsQueueOptions {
            url: url.into(),
            prefix: prefix.into(),
            tail_bytes: 48 * 1024 * 1024,
            dedup_window: Duration::from_secs(24 * 3600),
            head_poll: Duration::from_secs(1),
            commit_interval: Duration::from_millis(100),
            truncate_interval: Duration::from_secs(1),
            uncursored_grace: Duration::from_secs(60),
            replicas: 1,
            read_concurrency: 64,
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The `Nats-Msg-Id` of a generation id: a hash, so any id (any length, any bytes) makes a
/// valid header value.
fn msg_id(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    hex::encode(&d[..16])
}

struct Tail {
    records: VecDeque<Record>,
    /// Own appends acknowledged before the records preceding them reached the tail.
    pending: BTreeMap<u64, Record>,
    bytes: usize,
}

/// Body sizes of a contiguous range of seqs, for exact byte caps.
#[derive(Default)]
struct SizeIndex {
    first: u64,
    sizes: VecDeque<u32>,
}

struct Ws {
    stream_name: String,
    subject: String,
    head: watch::Sender<u64>,
    /// First seq still in the stream (as last seen).
    first: AtomicU64,
    /// The stream exists (created here or seen).
    created: AtomicBool,
    /// The head was read from the server at least once.
    synced: AtomicBool,
    /// Since when (and at which head) the workspace has had no cursor at all.
    uncursored: Mutex<Option<(Instant, u64)>>,
    tail: Mutex<Tail>,
    sizes: tokio::sync::Mutex<SizeIndex>,
    /// Pull consumers positioned where sequential readers will ask next.
    readers: Mutex<Vec<Reader>>,
    /// Held while an append publishes, so each append's records get one contiguous run of
    /// seqs (they reach this node's tail together instead of interleaved with another's).
    publishing: tokio::sync::Mutex<()>,
    /// Appends of this node in progress, and the highest seq they were acknowledged.
    appending: AtomicUsize,
    max_acked: AtomicU64,
}

/// An ephemeral pull consumer (no acks) reused while a reader reads sequentially.
struct Reader {
    consumer: jetstream::consumer::Consumer<pull::Config>,
    next: u64,
}

/// Sequential readers kept per workspace (destinations lagging at different positions).
const MAX_READERS: usize = 4;

impl Ws {
    fn raise_head(&self, seq: u64) {
        self.head.send_if_modified(|h| {
            if seq > *h {
                *h = seq;
                true
            } else {
                false
            }
        });
    }
}

type Commit = (Uuid, Cursor, Counters);

struct Inner {
    opts: NatsQueueOptions,
    upper: String,
    client: async_nats::Client,
    js: jetstream::Context,
    state: kv::Store,
    dead: stream::Stream,
    workspaces: Mutex<HashMap<Uuid, Arc<Ws>>>,
    tail_total: AtomicUsize,
    commits: Mutex<HashMap<Uuid, Commit>>,
    /// Serialises commit flushes (the background task, `flush`, `forget`, `close`).
    flush_lock: tokio::sync::Mutex<()>,
    closed: AtomicBool,
    /// Tags this node's head announcements, so it ignores its own.
    origin: String,
}

/// The JetStream queue. See the module documentation.
pub struct NatsQueue {
    inner: Arc<Inner>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredCursor {
    ws: Uuid,
    seq: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredLetter {
    generation: Generation,
    error: String,
    status: Option<u16>,
    attempts: u32,
}

/// A dead letter's subject, parsed.
#[derive(Clone)]
struct LetterSubject {
    subject: String,
    destination: Uuid,
    replay: bool,
    id: i64,
    failed_at_ms: i64,
}

/// Counts an append of this node in progress (see `Ws::appending`), also when it fails.
struct Appending<'a> {
    ws: &'a Ws,
    done: bool,
}

impl<'a> Appending<'a> {
    fn start(ws: &'a Ws) -> Self {
        ws.appending.fetch_add(1, Ordering::AcqRel);
        Appending { ws, done: false }
    }

    /// Ends this append; returns how many others are still in progress.
    fn finish(mut self) -> usize {
        self.done = true;
        self.ws.appending.fetch_sub(1, Ordering::AcqRel) - 1
    }
}

impl Drop for Appending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.ws.appending.fetch_sub(1, Ordering::AcqRel);
            // A failed append must not leave the acknowledged seqs of the others hidden.
            self.ws
                .raise_head(self.ws.max_acked.load(Ordering::Acquire));
        }
    }
}

/// A valid queue prefix or node id: 1-64 characters of `A-Z a-z 0-9 _ -`.
pub fn valid_name(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 64
        && p.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl NatsQueue {
    /// Connects, creates the shared state bucket and dead-letter stream if needed, loads the
    /// heads of existing workspace logs and starts the background tasks.
    pub async fn connect(opts: NatsQueueOptions) -> Result<Self> {
        if !valid_name(&opts.prefix) {
            return Err(NatsError::Options(
                "prefix must be 1-64 characters of A-Z, a-z, 0-9, _ and -".into(),
            )
            .into());
        }
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            .connect(opts.url.as_str())
            .await
            .map_err(|e| NatsError::Connect(e.kind().to_string()))?;
        let js = jetstream::new(client.clone());
        let upper = opts.prefix.to_ascii_uppercase();
        let state = super::nats_lease::kv_bucket(
            &js,
            &format!("{upper}_STATE"),
            Duration::ZERO,
            opts.replicas,
        )
        .await?;
        let dead = js
            .get_or_create_stream(stream::Config {
                name: format!("{upper}_DEAD"),
                subjects: vec![format!("{}.dead.>", opts.prefix)],
                max_messages_per_subject: 1,
                storage: StorageType::File,
                num_replicas: opts.replicas,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(nats_err("creating the dead-letter stream"))?;
        let inner = Arc::new(Inner {
            upper,
            client,
            js,
            state,
            dead,
            workspaces: Mutex::new(HashMap::new()),
            tail_total: AtomicUsize::new(0),
            commits: Mutex::new(HashMap::new()),
            flush_lock: tokio::sync::Mutex::new(()),
            closed: AtomicBool::new(false),
            origin: format!("{:016x}", rand::random::<u64>()),
            opts,
        });
        inner.load_workspaces().await?;
        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(announcements(inner.clone()).await?));
        inner.round_trip().await?;
        for job in [Job::PollHeads, Job::FlushCommits, Job::Truncate] {
            tasks.push(tokio::spawn(periodically(Arc::downgrade(&inner), job)));
        }
        Ok(NatsQueue {
            inner,
            tasks: Mutex::new(tasks),
        })
    }

    /// Waits until every commit sent so far is persisted.
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush_commits().await
    }

    /// The workspace's head as the server has it (and updates the local head).
    pub async fn sync_head(&self, workspace: Uuid) -> Result<u64> {
        let ws = self.inner.ws(workspace);
        self.inner.sync(&ws).await?;
        Ok(*ws.head.borrow())
    }

    /// Truncates every workspace log to its slowest cursor now (normally periodic).
    pub async fn truncate_now(&self) -> Result<()> {
        self.inner.truncate().await
    }

    /// Tells every node that destinations changed (core NATS `prefix.config`).
    pub async fn publish_config_changed(&self) -> Result<()> {
        let subject = format!("{}.config", self.inner.opts.prefix);
        self.inner
            .client
            .publish(subject, Bytes::new())
            .await
            .map_err(nats_err("publishing a config change"))?;
        self.inner
            .client
            .flush()
            .await
            .map_err(nats_err("publishing a config change"))
    }

    /// Config-change notifications from every node (this one included).
    pub async fn subscribe_config_changed(&self) -> Result<ConfigChanges> {
        let subject = format!("{}.config", self.inner.opts.prefix);
        let sub = self
            .inner
            .client
            .subscribe(subject)
            .await
            .map_err(nats_err("subscribing to config changes"))?;
        // The subscription is registered with the server before this returns: the server
        // answers a request on this connection only after processing what came before it.
        self.inner.round_trip().await?;
        Ok(ConfigChanges(sub))
    }

    /// Destination leases over the bucket `PREFIX_LEASES` (see [`super::Leases`]).
    pub async fn leases(&self, node_id: &str, ttl: Duration) -> Result<super::Leases> {
        super::Leases::open(
            self.inner.js.clone(),
            &format!("{}_LEASES", self.inner.upper),
            node_id,
            ttl,
            self.inner.opts.replicas,
        )
        .await
    }

    /// Cluster membership over the bucket `PREFIX_NODES` (see [`super::Members`]).
    pub async fn members(&self, node_id: &str, ttl: Duration) -> Result<super::Members> {
        super::Members::open(
            self.inner.js.clone(),
            &format!("{}_NODES", self.inner.upper),
            node_id,
            ttl,
            self.inner.opts.replicas,
        )
        .await
    }

    /// Gives a destination a cursor at its workspace's current head unless it has one: a new
    /// destination receives what is ingested from the moment it was created, whichever node
    /// ingests and whichever node ends up delivering it.
    pub async fn ensure_cursor(&self, destination: Uuid, workspace: Uuid) -> Result<()> {
        if self
            .inner
            .commits
            .lock()
            .expect("poisoned")
            .contains_key(&destination)
        {
            return Ok(());
        }
        let seq = self.sync_head(workspace).await?;
        let value = serde_json::to_vec(&StoredCursor { ws: workspace, seq })
            .map_err(|e| QueueError::Corrupt(e.to_string()))?;
        match self
            .inner
            .state
            .create(format!("cursor.{}", destination.simple()), value.into())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(()),
            Err(e) => Err(nats_err("creating a cursor")(e)),
        }
    }

    /// The destinations that have a cursor (live ones, and deleted ones not yet forgotten).
    pub async fn cursor_destinations(&self) -> Result<Vec<Uuid>> {
        Ok(self
            .inner
            .cursors()
            .await?
            .into_iter()
            .map(|(d, _)| d)
            .collect())
    }

    /// The underlying JetStream context (tests, tooling).
    pub fn jetstream(&self) -> jetstream::Context {
        self.inner.js.clone()
    }
}

impl Drop for NatsQueue {
    fn drop(&mut self) {
        for t in self.tasks.lock().expect("poisoned").drain(..) {
            t.abort();
        }
    }
}

/// Config-change notifications.
pub struct ConfigChanges(async_nats::Subscriber);

impl ConfigChanges {
    /// Waits for the next change; `None` when the connection is closed.
    pub async fn next(&mut self) -> Option<()> {
        self.0.next().await.map(|_| ())
    }
}

/// Wakes local subscribers when another node announces a new head.
async fn announcements(
    inner: Arc<Inner>,
) -> Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let mut sub = inner
        .client
        .subscribe(format!("{}.head.*", inner.opts.prefix))
        .await
        .map_err(nats_err("subscribing to head announcements"))?;
    let weak = Arc::downgrade(&inner);
    Ok(async move {
        while let Some(msg) = sub.next().await {
            let Some(inner) = weak.upgrade() else { return };
            let ws = msg
                .subject
                .rsplit('.')
                .next()
                .and_then(|s| Uuid::parse_str(s).ok());
            // `<seq> <origin>`: this node's own announcements are skipped (see `append`).
            let text = std::str::from_utf8(&msg.payload).unwrap_or_default();
            let mut parts = text.split(' ');
            let seq = parts.next().and_then(|s| s.parse::<u64>().ok());
            if parts.next() == Some(inner.origin.as_str()) {
                continue;
            }
            if let (Some(ws), Some(seq)) = (ws, seq)
                && let Some(w) = inner.known(ws)
            {
                w.created.store(true, Ordering::Release);
                w.raise_head(seq);
            }
        }
    })
}

/// The queue's periodic jobs, each run by [`periodically`].
#[derive(Clone, Copy)]
enum Job {
    /// Heads of workspaces with local readers, from stream info (announcements may be lost).
    PollHeads,
    /// Buffered cursor and counter commits.
    FlushCommits,
    /// Logs truncated to their slowest cursor.
    Truncate,
}

/// Runs `job` every its interval until the queue is dropped.
async fn periodically(weak: std::sync::Weak<Inner>, job: Job) {
    loop {
        let Some(every) = weak.upgrade().map(|i| match job {
            Job::PollHeads => i.opts.head_poll,
            Job::FlushCommits => i.opts.commit_interval,
            Job::Truncate => i.opts.truncate_interval,
        }) else {
            return;
        };
        tokio::time::sleep(every).await;
        let Some(inner) = weak.upgrade() else { return };
        match job {
            Job::PollHeads => inner.poll_heads().await,
            Job::FlushCommits => {
                if let Err(e) = inner.flush_commits().await {
                    tracing::warn!(error = %e, "persisting cursors failed; retrying");
                }
            }
            Job::Truncate => {
                if let Err(e) = inner.truncate().await {
                    tracing::warn!(error = %e, "queue truncation failed");
                }
            }
        }
    }
}

impl Inner {
    async fn poll_heads(&self) {
        let wss: Vec<Arc<Ws>> = self
            .workspaces
            .lock()
            .expect("poisoned")
            .values()
            .filter(|w| w.head.receiver_count() > 0 || !w.synced.load(Ordering::Acquire))
            .cloned()
            .collect();
        for w in wss {
            if let Err(e) = self.sync(&w).await {
                tracing::debug!(error = %e, "polling a workspace head failed");
            }
        }
    }

    /// A request the server answers after everything sent before it on this connection.
    async fn round_trip(&self) -> Result<()> {
        self.client
            .request("$JS.API.INFO", Bytes::new())
            .await
            .map(|_| ())
            .map_err(nats_err("a round trip to the server"))
    }

    fn stream_name(&self, ws: Uuid) -> String {
        format!("{}_LOG_{}", self.upper, ws.simple())
    }

    fn new_ws(&self, workspace: Uuid, head: u64, first: u64, created: bool) -> Arc<Ws> {
        Arc::new(Ws {
            stream_name: self.stream_name(workspace),
            subject: format!("{}.log.{}", self.opts.prefix, workspace.simple()),
            head: watch::Sender::new(head),
            first: AtomicU64::new(first.max(1)),
            created: AtomicBool::new(created),
            synced: AtomicBool::new(created),
            uncursored: Mutex::new(None),
            tail: Mutex::new(Tail {
                records: VecDeque::new(),
                pending: BTreeMap::new(),
                bytes: 0,
            }),
            sizes: tokio::sync::Mutex::new(SizeIndex::default()),
            readers: Mutex::new(Vec::new()),
            publishing: tokio::sync::Mutex::new(()),
            appending: AtomicUsize::new(0),
            max_acked: AtomicU64::new(0),
        })
    }

    fn known(&self, workspace: Uuid) -> Option<Arc<Ws>> {
        self.workspaces
            .lock()
            .expect("poisoned")
            .get(&workspace)
            .cloned()
    }

    /// The workspace's state, created (unsynced) on first use.
    fn ws(&self, workspace: Uuid) -> Arc<Ws> {
        self.workspaces
            .lock()
            .expect("poisoned")
            .entry(workspace)
            .or_insert_with(|| self.new_ws(workspace, 0, 1, false))
            .clone()
    }

    async fn load_workspaces(&self) -> Result<()> {
        let mut names = self.js.stream_names();
        let start = format!("{}_LOG_", self.upper);
        let mut found = Vec::new();
        while let Some(name) = names.next().await {
            let name = name.map_err(nats_err("listing streams"))?;
            if let Some(id) = name.strip_prefix(&start)
                && let Ok(ws) = Uuid::parse_str(id)
            {
                found.push(ws);
            }
        }
        for ws in found {
            let w = self.new_ws(ws, 0, 1, true);
            self.sync(&w).await?;
            self.workspaces.lock().expect("poisoned").insert(ws, w);
        }
        Ok(())
    }

    fn log(&self, ws: &Ws) -> Result<stream::Stream<()>> {
        futures_util::FutureExt::now_or_never(self.js.get_stream_no_info(&ws.stream_name))
            .ok_or_else(|| NatsError::Options("stream handle".into()))?
            .map_err(nats_err("opening a workspace log"))
    }

    /// Reads the head and first seq from the server.
    async fn sync(&self, ws: &Ws) -> Result<()> {
        let stream = self.log(ws)?;
        match stream.get_info().await {
            Ok(info) => {
                ws.created.store(true, Ordering::Release);
                ws.first
                    .fetch_max(info.state.first_sequence.max(1), Ordering::AcqRel);
                ws.raise_head(info.state.last_sequence);
            }
            Err(e) if is_not_found(&e.to_string()) => {}
            Err(e) => return Err(nats_err("reading stream info")(e)),
        }
        ws.synced.store(true, Ordering::Release);
        Ok(())
    }

    async fn ensure_stream(&self, ws: &Ws) -> Result<()> {
        if ws.created.load(Ordering::Acquire) {
            return Ok(());
        }
        let info = self
            .js
            .get_or_create_stream(stream::Config {
                name: ws.stream_name.clone(),
                subjects: vec![ws.subject.clone()],
                storage: StorageType::File,
                num_replicas: self.opts.replicas,
                duplicate_window: self.opts.dedup_window,
                allow_direct: true,
                ..Default::default()
            })
            .await
            .map_err(nats_err("creating a workspace log"))?;
        let _ = info;
        ws.created.store(true, Ordering::Release);
        Ok(())
    }

    /// Adds records to the tail (contiguously; out-of-order ones wait in `pending`). Both
    /// count against the tail budget.
    fn add_to_tail(&self, ws: &Ws, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let cost = |r: &Record| r.size as usize * PARSED_OVERHEAD;
        let mut guard = ws.tail.lock().expect("poisoned");
        let tail = &mut *guard;
        let mut added = 0usize;
        let mut freed = 0usize;
        for r in records {
            if tail.records.back().is_some_and(|b| r.seq <= b.seq) {
                continue;
            }
            added += cost(&r);
            if let Some(old) = tail.pending.insert(r.seq, r) {
                freed += cost(&old);
            }
        }
        loop {
            let next = match tail.records.back() {
                Some(b) => b.seq + 1,
                None => match tail.pending.keys().next() {
                    Some(s) => *s,
                    None => break,
                },
            };
            match tail.pending.first_key_value() {
                Some((&s, _)) if s == next => {
                    let (_, r) = tail.pending.pop_first().expect("present");
                    tail.records.push_back(r);
                }
                _ => break,
            }
        }
        while tail.pending.len() > MAX_PENDING {
            if let Some((_, r)) = tail.pending.pop_first() {
                freed += cost(&r);
            }
        }
        tail.bytes = (tail.bytes + added).saturating_sub(freed);
        let total = self.tail_total.fetch_add(added, Ordering::Relaxed) + added;
        self.tail_total
            .fetch_sub(freed.min(total), Ordering::Relaxed);
        while self.tail_total.load(Ordering::Relaxed) > self.opts.tail_bytes {
            let r = match tail.records.pop_front() {
                Some(r) => r,
                None => match tail.pending.pop_first() {
                    Some((_, r)) => r,
                    None => break,
                },
            };
            let c = cost(&r);
            tail.bytes = tail.bytes.saturating_sub(c);
            self.tail_total.fetch_sub(c, Ordering::Relaxed);
        }
    }

    /// The first seq after `from` waiting in the tail's pending part.
    fn first_pending_after(&self, ws: &Ws, from: u64) -> Option<u64> {
        let tail = ws.tail.lock().expect("poisoned");
        tail.pending.range(from + 1..).next().map(|(s, _)| *s)
    }

    fn tail_read(&self, ws: &Ws, after: u64, max: usize) -> Option<Vec<Record>> {
        let tail = ws.tail.lock().expect("poisoned");
        let front = tail.records.front()?;
        let back = tail.records.back()?;
        if front.seq <= after + 1 && after < back.seq {
            let start = (after + 1 - front.seq) as usize;
            return Some(tail.records.iter().skip(start).take(max).cloned().collect());
        }
        None
    }

    /// Records `from..=to`: one pull request on a consumer positioned at `from` (reused while
    /// reads are sequential), falling back to direct gets.
    async fn fetch(&self, ws: &Ws, from: u64, to: u64) -> Result<Vec<Record>> {
        if to - from < 8 {
            return self.direct_fetch(ws, from, to).await;
        }
        let reader = {
            let mut readers = ws.readers.lock().expect("poisoned");
            readers
                .iter()
                .position(|r| r.next == from)
                .map(|i| readers.swap_remove(i))
        };
        let reader = match reader {
            Some(r) => r,
            None => {
                let consumer = self
                    .log(ws)?
                    .create_consumer(pull::Config {
                        deliver_policy: DeliverPolicy::ByStartSequence {
                            start_sequence: from,
                        },
                        ack_policy: AckPolicy::None,
                        inactive_threshold: Duration::from_secs(30),
                        memory_storage: true,
                        ..Default::default()
                    })
                    .await
                    .map_err(nats_err("reading the log"))?;
                Reader {
                    consumer,
                    next: from,
                }
            }
        };
        let mut out: Vec<Record> = Vec::new();
        let want = (to - from + 1).min(10_000) as usize;
        let mut batch = reader
            .consumer
            .fetch()
            .max_messages(want)
            .expires(Duration::from_secs(1))
            .messages()
            .await
            .map_err(nats_err("reading the log"))?;
        let mut broken = false;
        while let Some(m) = batch.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "log consumer fetch ended");
                    broken = true;
                    break;
                }
            };
            let Ok(info) = m.info() else {
                broken = true;
                break;
            };
            let seq = info.stream_sequence;
            let expected = out.last().map(|r| r.seq + 1).unwrap_or(from);
            if seq != expected && !(out.is_empty() && seq > from) {
                // Out of step (the log was truncated under it): start over next time.
                broken = true;
                break;
            }
            let empty = async_nats::HeaderMap::new();
            out.push(record_of(
                seq,
                m.headers.as_ref().unwrap_or(&empty),
                &m.payload,
            )?);
            if out.len() >= want {
                break;
            }
        }
        let next = out.last().map(|r| r.seq + 1).unwrap_or(from);
        if !broken && out.len() == want {
            let mut readers = ws.readers.lock().expect("poisoned");
            if readers.len() >= MAX_READERS {
                readers.remove(0);
            }
            readers.push(Reader {
                consumer: reader.consumer,
                next,
            });
        }
        if out.is_empty() {
            return self.direct_fetch(ws, from, to).await;
        }
        Ok(out)
    }

    /// Records `from..=to` read with pipelined direct gets: the contiguous run from the first
    /// one present.
    async fn direct_fetch(&self, ws: &Ws, from: u64, to: u64) -> Result<Vec<Record>> {
        let stream = self.log(ws)?;
        let mut out: Vec<Record> = Vec::new();
        let mut seq = from;
        let chunk = self.opts.read_concurrency.max(1) as u64;
        while seq <= to {
            let end = to.min(seq + chunk - 1);
            let gets = (seq..=end).map(|s| stream.direct_get(s));
            let results = futures_util::future::join_all(gets).await;
            for (i, r) in results.into_iter().enumerate() {
                let s = seq + i as u64;
                match r {
                    Ok(msg) => {
                        if let Some(last) = out.last()
                            && last.seq + 1 != s
                        {
                            return Ok(out);
                        }
                        out.push(record_of(s, &msg.headers, &msg.payload)?);
                    }
                    Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                        if !out.is_empty() {
                            return Ok(out);
                        }
                    }
                    Err(e) => return Err(nats_err("reading the log")(e)),
                }
            }
            seq = end + 1;
        }
        Ok(out)
    }

    async fn flush_commits(&self) -> Result<()> {
        let _guard = self.flush_lock.lock().await;
        let batch: Vec<(Uuid, Commit)> = self.commits.lock().expect("poisoned").drain().collect();
        if batch.is_empty() {
            return Ok(());
        }
        let mut puts = Vec::with_capacity(batch.len() * 2);
        for (dest, (ws, cursor, counters)) in &batch {
            let c = serde_json::to_vec(&StoredCursor {
                ws: *ws,
                seq: cursor.seq,
            })
            .map_err(|e| QueueError::Corrupt(e.to_string()))?;
            let n = serde_json::to_vec(counters).map_err(|e| QueueError::Corrupt(e.to_string()))?;
            puts.push(
                self.state
                    .put(format!("cursor.{}", dest.simple()), c.into()),
            );
            puts.push(
                self.state
                    .put(format!("counters.{}", dest.simple()), n.into()),
            );
        }
        let results = futures_util::future::join_all(puts).await;
        if let Some(Err(e)) = results.into_iter().find(|r| r.is_err()) {
            // Put back what is not superseded by a newer commit, for the next flush.
            let mut pending = self.commits.lock().expect("poisoned");
            for (dest, c) in batch {
                pending.entry(dest).or_insert(c);
            }
            return Err(nats_err("writing cursors")(e));
        }
        Ok(())
    }

    /// Every destination's cursor. The keys come from the bucket stream's subject list (stream
    /// info with a subject filter), which the server computes in one go: the client's key
    /// listing (a consumer over the bucket) skips keys rewritten while it runs, and cursors
    /// are rewritten every 100 ms, so truncating by it could pass a cursor it missed.
    async fn cursors(&self) -> Result<Vec<(Uuid, StoredCursor)>> {
        let names: Vec<(Uuid, String)> = super::nats_lease::keys(&self.state, "cursor.*")
            .await?
            .into_iter()
            .filter_map(|k| {
                let d = Uuid::parse_str(k.strip_prefix("cursor.")?).ok()?;
                Some((d, k))
            })
            .collect();
        let gets = names.iter().map(|(_, k)| self.state.get(k.clone()));
        let values = futures_util::future::join_all(gets).await;
        let mut out = Vec::new();
        for ((d, _), v) in names.into_iter().zip(values) {
            if let Some(v) = v.map_err(nats_err("reading cursors"))?
                && let Ok(c) = serde_json::from_slice::<StoredCursor>(&v)
            {
                out.push((d, c));
            }
        }
        Ok(out)
    }

    /// Purges each workspace's records that every cursor has passed. Workspaces without any
    /// cursor keep nothing before their head (as in the SQLite queue).
    async fn truncate(&self) -> Result<()> {
        let mut min: HashMap<Uuid, u64> = HashMap::new();
        for (_, c) in self.cursors().await? {
            let m = min.entry(c.ws).or_insert(c.seq);
            *m = (*m).min(c.seq);
        }
        // Commits not yet written count too.
        for (ws, c, _) in self.commits.lock().expect("poisoned").values() {
            let m = min.entry(*ws).or_insert(c.seq);
            *m = (*m).min(c.seq);
        }
        let wss: Vec<(Uuid, Arc<Ws>)> = self
            .workspaces
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        for (id, ws) in wss {
            if !ws.created.load(Ordering::Acquire) {
                continue;
            }
            let head = *ws.head.borrow();
            let upto = match min.get(&id) {
                Some(m) => {
                    *ws.uncursored.lock().expect("poisoned") = None;
                    (*m).min(head)
                }
                // No destination reads this log: what was already there `uncursored_grace`
                // ago goes (a destination being set up on another node commits its first
                // cursor well within that).
                None => {
                    let mut since = ws.uncursored.lock().expect("poisoned");
                    match *since {
                        Some((at, mark)) if at.elapsed() >= self.opts.uncursored_grace => {
                            *since = Some((Instant::now(), head));
                            mark.min(head)
                        }
                        Some(_) => continue,
                        None => {
                            *since = Some((Instant::now(), head));
                            continue;
                        }
                    }
                }
            };
            if upto < ws.first.load(Ordering::Acquire) {
                continue;
            }
            let stream = self.log(&ws)?;
            match stream.purge().sequence(upto + 1).await {
                Ok(_) => {
                    ws.first.fetch_max(upto + 1, Ordering::AcqRel);
                }
                Err(e) if is_not_found(&e.to_string()) => {}
                Err(e) => return Err(nats_err("truncating a log")(e)),
            }
        }
        Ok(())
    }

    /// Fills the size index for `from..=to` (headers-only consumer: sizes without bodies).
    async fn sizes(&self, ws: &Ws, index: &mut SizeIndex, from: u64, to: u64) -> Result<()> {
        if index.sizes.is_empty() || index.first > from {
            index.first = from;
            index.sizes.clear();
        }
        // Forget what is before `from` (truncated or passed).
        while index.first < from && !index.sizes.is_empty() {
            index.sizes.pop_front();
            index.first += 1;
        }
        let have = index.first + index.sizes.len() as u64;
        if have > to {
            return Ok(());
        }
        let stream = self.log(ws)?;
        let consumer = stream
            .create_consumer(pull::Config {
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: have,
                },
                ack_policy: AckPolicy::None,
                headers_only: true,
                inactive_threshold: Duration::from_secs(10),
                ..Default::default()
            })
            .await
            .map_err(nats_err("scanning record sizes"))?;
        let name = consumer.cached_info().name.clone();
        let result = async {
            let mut next = have;
            while next <= to {
                let want = (to - next + 1).min(1000) as usize;
                let mut batch = consumer
                    .fetch()
                    .max_messages(want)
                    .expires(Duration::from_secs(2))
                    .messages()
                    .await
                    .map_err(nats_err("scanning record sizes"))?;
                let mut got = 0;
                while let Some(m) = batch.next().await {
                    let m = m.map_err(nats_err("scanning record sizes"))?;
                    let seq = m
                        .info()
                        .map_err(nats_err("scanning record sizes"))?
                        .stream_sequence;
                    let size = m
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(MSG_SIZE))
                        .and_then(|v| v.as_str().parse::<u32>().ok())
                        .unwrap_or(0);
                    while next < seq {
                        // A hole (cannot happen below the head): counts as empty.
                        index.sizes.push_back(0);
                        next += 1;
                    }
                    if seq == next {
                        index.sizes.push_back(size);
                        next += 1;
                    }
                    got += 1;
                }
                if got == 0 {
                    break;
                }
            }
            Ok::<_, QueueError>(())
        }
        .await;
        let _ = stream.delete_consumer(&name).await;
        result
    }

    async fn letter_subjects(&self, filter: String) -> Result<Vec<LetterSubject>> {
        let mut subjects = self
            .dead
            .info_builder()
            .subjects(filter)
            .fetch()
            .await
            .map_err(nats_err("listing dead letters"))?;
        let mut by_id: HashMap<i64, LetterSubject> = HashMap::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(nats_err("listing dead letters"))?;
            let Some(l) = self.parse_letter_subject(&subject) else {
                continue;
            };
            // While a letter is being marked for replay both subjects exist: `r` wins.
            match by_id.get(&l.id) {
                Some(old) if old.replay => {}
                _ => {
                    by_id.insert(l.id, l);
                }
            }
        }
        let mut out: Vec<LetterSubject> = by_id.into_values().collect();
        out.sort_by_key(|l| l.id);
        Ok(out)
    }

    fn parse_letter_subject(&self, subject: &str) -> Option<LetterSubject> {
        let rest = subject
            .strip_prefix(&self.opts.prefix)?
            .strip_prefix(".dead.")?;
        let mut it = rest.split('.');
        let destination = Uuid::parse_str(it.next()?).ok()?;
        let replay = match it.next()? {
            "r" => true,
            "n" => false,
            _ => return None,
        };
        let id = it.next()?.parse().ok()?;
        let failed_at_ms = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(LetterSubject {
            subject: subject.to_string(),
            destination,
            replay,
            id,
            failed_at_ms,
        })
    }

    fn letter_subject(&self, destination: Uuid, replay: bool, id: i64, failed_at: i64) -> String {
        format!(
            "{}.dead.{}.{}.{id}.{failed_at}",
            self.opts.prefix,
            destination.simple(),
            if replay { "r" } else { "n" }
        )
    }

    async fn load_letters(&self, subjects: &[LetterSubject]) -> Result<Vec<DeadLetter>> {
        let mut results = Vec::with_capacity(subjects.len());
        for chunk in subjects.chunks(256) {
            let gets = chunk
                .iter()
                .map(|l| self.dead.direct_get_last_for_subject(l.subject.clone()));
            results.extend(futures_util::future::join_all(gets).await);
        }
        let mut out = Vec::with_capacity(subjects.len());
        for (l, r) in subjects.iter().zip(results) {
            let msg = match r {
                Ok(m) => m,
                // Deleted meanwhile.
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => continue,
                Err(e) => return Err(nats_err("reading dead letters")(e)),
            };
            let s: StoredLetter = serde_json::from_slice(&msg.payload)
                .map_err(|e| QueueError::Corrupt(format!("dead letter: {e}")))?;
            out.push(DeadLetter {
                id: l.id,
                destination_id: l.destination,
                generation: Arc::new(s.generation),
                error: s.error,
                status: s.status,
                attempts: s.attempts,
                failed_at_ms: l.failed_at_ms,
                replay_requested: l.replay,
            });
        }
        Ok(out)
    }

    /// Reserves `n` dead-letter ids (a compare-and-set on `dl.next`), unique across nodes.
    async fn reserve_ids(&self, n: u64) -> Result<i64> {
        for _ in 0..100 {
            let entry = self
                .state
                .entry("dl.next")
                .await
                .map_err(nats_err("allocating dead-letter ids"))?;
            let (next, revision) = match &entry {
                Some(e) if e.operation == kv::Operation::Put => (
                    std::str::from_utf8(&e.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(1),
                    e.revision,
                ),
                Some(e) => (1, e.revision),
                None => (1, 0),
            };
            let new = next.saturating_add(n as i64);
            match self
                .state
                .update("dl.next", new.to_string().into(), revision)
                .await
            {
                Ok(_) => return Ok(next),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                Err(e) => return Err(nats_err("allocating dead-letter ids")(e)),
            }
        }
        Err(NatsError::Request {
            op: "allocating dead-letter ids",
            message: "too much contention".into(),
        }
        .into())
    }
}

fn is_not_found(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("not found") || m.contains("10059")
}

fn record_of(seq: u64, headers: &async_nats::HeaderMap, payload: &[u8]) -> Result<Record> {
    let received_at = headers
        .get(RECEIVED_AT)
        .and_then(|v| v.as_str().parse::<i64>().ok())
        .unwrap_or(0);
    Ok(Record::new(
        seq,
        received_at,
        payload.len() as u32,
        Arc::new(super::parse_log_body(payload)?),
    ))
}

#[async_trait]
impl Queue for NatsQueue {
    async fn append(&self, workspace: Uuid, records: Vec<NewRecord>) -> Result<AppendResult> {
        if records.is_empty() {
            return Ok(AppendResult {
                accepted: Vec::new(),
            });
        }
        let inner = &self.inner;
        if inner.closed.load(Ordering::Acquire) {
            return Err(QueueError::Closed);
        }
        let ws = inner.ws(workspace);
        inner.ensure_stream(&ws).await?;
        let now = now_ms();
        let now_s = now.to_string();
        let mut seen = HashSet::with_capacity(records.len());
        let mut acks = Vec::with_capacity(records.len());
        let mut gens = Vec::with_capacity(records.len());
        let appending = Appending::start(&ws);
        let publishing = ws.publishing.lock().await;
        // Pipelined: every publish goes out before the first ack is awaited.
        for r in records {
            let size = r.body.len() as u32;
            if !seen.insert(r.generation.id.clone()) {
                acks.push(None);
                gens.push((r.generation, size));
                continue;
            }
            let msg = PublishMessage::build()
                .payload(Bytes::from(r.body))
                .message_id(msg_id(&r.generation.id))
                .header(RECEIVED_AT, now_s.as_str());
            let ack = inner
                .js
                .send_publish(ws.subject.clone(), msg)
                .await
                .map_err(|e| {
                    if e.kind() == PublishErrorKind::StreamNotFound {
                        // Deleted under us: recreate on the next append.
                        ws.created.store(false, Ordering::Release);
                    }
                    nats_err("appending")(e)
                })?;
            acks.push(Some(ack));
            gens.push((r.generation, size));
        }
        drop(publishing);
        let mut accepted = Vec::with_capacity(acks.len());
        let mut fresh = Vec::new();
        let mut head = 0;
        let mut first_err = None;
        for (ack, (generation, size)) in acks.into_iter().zip(gens) {
            let Some(ack) = ack else {
                accepted.push(false);
                continue;
            };
            match ack.await {
                Ok(a) if a.duplicate => accepted.push(false),
                Ok(a) => {
                    accepted.push(true);
                    head = head.max(a.sequence);
                    fresh.push(Record::new(a.sequence, now, size, generation));
                }
                Err(e) => {
                    accepted.push(false);
                    first_err.get_or_insert(e);
                }
            }
        }
        // Records acknowledged are visible whatever happened to the others.
        inner.add_to_tail(&ws, fresh);
        if head > 0 {
            ws.max_acked.fetch_max(head, Ordering::AcqRel);
            // While other appends of this node are still waiting for their acks, local readers
            // see the head only as far as the tail is contiguous: the seqs in between are
            // theirs and reach the tail in a moment, where reading them from the server would
            // mean fetching and parsing them again. The last append to finish shows the rest
            // (and seqs appended by other nodes, which are fetched).
            let local = if appending.finish() == 0 {
                ws.max_acked.load(Ordering::Acquire)
            } else {
                let tail = ws.tail.lock().expect("poisoned");
                tail.records.back().map_or(0, |r| r.seq).min(head)
            };
            ws.raise_head(local);
            let _ = inner
                .client
                .publish(
                    format!("{}.head.{}", inner.opts.prefix, workspace.simple()),
                    format!("{head} {}", inner.origin).into(),
                )
                .await;
        }
        if let Some(e) = first_err {
            return Err(nats_err("appending")(e));
        }
        Ok(AppendResult { accepted })
    }

    fn head(&self, workspace: Uuid) -> u64 {
        match self.inner.known(workspace) {
            Some(w) => *w.head.borrow(),
            None => {
                // Learn it in the background (the poller syncs new workspaces).
                self.inner.ws(workspace);
                0
            }
        }
    }

    fn subscribe(&self, workspace: Uuid) -> watch::Receiver<u64> {
        self.inner.ws(workspace).head.subscribe()
    }

    async fn read(&self, workspace: Uuid, after: u64, max: usize) -> Result<Vec<Record>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let inner = &self.inner;
        let ws = inner.ws(workspace);
        if !ws.synced.load(Ordering::Acquire) {
            inner.sync(&ws).await?;
        }
        let head = *ws.head.borrow();
        if head <= after || !ws.created.load(Ordering::Acquire) {
            return Ok(Vec::new());
        }
        // From the tail as far as it goes, the gaps from the server, until `max` records or
        // the head.
        let mut out: Vec<Record> = Vec::new();
        let mut next = after;
        while out.len() < max && next < head {
            let want = max - out.len();
            if let Some(t) = inner.tail_read(&ws, next, want)
                && let Some(last) = t.last()
            {
                next = last.seq;
                out.extend(t);
                continue;
            }
            let from = (next + 1).max(ws.first.load(Ordering::Acquire));
            let mut to = head.min(next.saturating_add(want as u64));
            // Fetch only the gap: records after it that this node appended itself wait in the
            // tail's pending part, and join the tail once the gap is filled.
            if let Some(p) = inner.first_pending_after(&ws, from) {
                to = to.min(p - 1);
            }
            if from > to {
                break;
            }
            let started = Instant::now();
            let mut got = inner.fetch(&ws, from, to).await?;
            if started.elapsed() >= Duration::from_millis(250) {
                tracing::debug!(
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    from,
                    to,
                    got = got.len(),
                    "slow read from the server"
                );
            }
            if got.is_empty() && out.is_empty() {
                // Truncated meanwhile: start from the first record still there.
                inner.sync(&ws).await?;
                let from2 = from.max(ws.first.load(Ordering::Acquire));
                if from2 > from && from2 <= head {
                    // Records this reader had not read are gone (the log was truncated past
                    // it): say so, and carry on from the first one left rather than wait.
                    tracing::error!(
                        workspace = %workspace,
                        missing = from2 - from,
                        "records were truncated from the log before this reader read them"
                    );
                    let to2 = head.min(from2.saturating_add(want as u64 - 1));
                    got = inner.fetch(&ws, from2, to2).await?;
                }
            }
            let Some(last) = got.last().map(|r| r.seq) else {
                break;
            };
            let contiguous = out.is_empty() || got.first().is_some_and(|r| r.seq == next + 1);
            inner.add_to_tail(&ws, got.clone());
            if !contiguous {
                break;
            }
            next = last;
            out.extend(got);
        }
        Ok(out)
    }

    async fn backlog(&self, workspace: Uuid, after: u64) -> Result<Backlog> {
        let inner = &self.inner;
        let ws = inner.ws(workspace);
        inner.sync(&ws).await?;
        let head = *ws.head.borrow();
        if head <= after || !ws.created.load(Ordering::Acquire) {
            return Ok(Backlog::default());
        }
        let info = inner
            .log(&ws)?
            .get_info()
            .await
            .map_err(nats_err("reading stream info"))?;
        let records = head - after;
        // Approximate: stored bytes (bodies plus headers and subject) pro rata.
        let stored = info.state.messages.max(1);
        let bytes =
            (info.state.bytes as u128 * records.min(stored) as u128 / stored as u128) as u64;
        let first = (after + 1).max(info.state.first_sequence);
        let oldest = match inner.tail_read(&ws, first - 1, 1) {
            Some(r) => r.first().map(|r| r.received_at_ms),
            None => inner
                .fetch(&ws, first, first)
                .await?
                .first()
                .map(|r| r.received_at_ms),
        };
        Ok(Backlog {
            records,
            bytes,
            oldest_received_at_ms: oldest,
        })
    }

    async fn log_usage(&self) -> Result<Vec<(Uuid, LogUsage)>> {
        /// A page of `STREAM.LIST` (stream info with state).
        #[derive(serde::Deserialize)]
        struct Page {
            total: usize,
            #[serde(default)]
            streams: Option<Vec<stream::Info>>,
        }
        // One listing, filtered to this prefix's logs, answers for every workspace (256 a
        // page), including those created by other nodes since this one connected.
        let subject = format!("{}.log.*", self.inner.opts.prefix);
        let start = format!("{}_LOG_", self.inner.upper);
        let op = "listing the workspace logs";
        let mut out = Vec::new();
        loop {
            let page: jetstream::response::Response<Page> = self
                .inner
                .js
                .request(
                    "STREAM.LIST",
                    &serde_json::json!({"offset": out.len(), "subject": subject}),
                )
                .await
                .map_err(nats_err(op))?;
            let page = match page {
                jetstream::response::Response::Ok(p) => p,
                jetstream::response::Response::Err { error } => return Err(nats_err(op)(error)),
            };
            let streams = page.streams.unwrap_or_default();
            let n = streams.len();
            for info in streams {
                let ws = info
                    .config
                    .name
                    .strip_prefix(&start)
                    .and_then(|id| Uuid::parse_str(id).ok());
                out.push((
                    ws,
                    LogUsage {
                        head: info.state.last_sequence,
                        records: info.state.messages,
                        bytes: info.state.bytes,
                    },
                ));
            }
            if n == 0 || out.len() >= page.total {
                break;
            }
        }
        Ok(out
            .into_iter()
            .filter_map(|(ws, u)| Some((ws?, u)))
            .collect())
    }

    async fn storage(&self) -> Result<Option<Storage>> {
        // The account's JetStream file storage limit, when it has one; the server's own limit
        // (`max_file_store`) is not visible to clients. Read by hand: async-nats' `Account`
        // wants fields a 2.9 server does not send.
        #[derive(serde::Deserialize, Default)]
        #[serde(default)]
        struct Limits {
            max_storage: i64,
        }
        #[derive(serde::Deserialize)]
        struct Info {
            #[serde(default)]
            storage: u64,
            #[serde(default)]
            limits: Limits,
        }
        let op = "reading the JetStream account";
        let info: jetstream::response::Response<Info> = self
            .inner
            .js
            .request("INFO", &serde_json::json!({}))
            .await
            .map_err(nats_err(op))?;
        let info = match info {
            jetstream::response::Response::Ok(i) => i,
            jetstream::response::Response::Err { error } => return Err(nats_err(op)(error)),
        };
        let max = info.limits.max_storage;
        Ok((max > 0).then(|| Storage {
            total: max as u64,
            available: (max as u64).saturating_sub(info.storage),
            queue_bytes: info.storage,
        }))
    }

    async fn cap_point(
        &self,
        workspace: Uuid,
        after: u64,
        max_records: u64,
        max_bytes: u64,
    ) -> Result<Option<u64>> {
        let inner = &self.inner;
        let ws = inner.ws(workspace);
        let head = *ws.head.borrow();
        let mut point = None;
        if head > after && head - after > max_records {
            point = Some(head - max_records);
        }
        if head <= after || !ws.created.load(Ordering::Acquire) {
            return Ok(point);
        }
        let info = inner
            .log(&ws)?
            .get_info()
            .await
            .map_err(nats_err("reading stream info"))?;
        // Stored bytes include each record's headers and subject, so they bound the backlog's
        // body bytes from above: within it, there is nothing to drop.
        if info.state.bytes <= max_bytes {
            return Ok(point);
        }
        let after_now = point.unwrap_or(after);
        let from = (after_now + 1).max(info.state.first_sequence.max(1));
        if from > head {
            return Ok(point);
        }
        // Exact: walk back from the head over body sizes until the cap is passed.
        let mut index = ws.sizes.lock().await;
        inner.sizes(&ws, &mut index, from, head).await?;
        let mut acc: u64 = 0;
        let mut seq = head;
        while seq >= from {
            let i = (seq - index.first) as usize;
            let size = index.sizes.get(i).copied().unwrap_or(0) as u64;
            if acc + size > max_bytes {
                if seq > after_now {
                    point = Some(seq);
                }
                break;
            }
            acc += size;
            seq -= 1;
        }
        Ok(point)
    }

    async fn cursor(&self, destination: Uuid) -> Result<Option<Cursor>> {
        if let Some((_, c, _)) = self
            .inner
            .commits
            .lock()
            .expect("poisoned")
            .get(&destination)
        {
            return Ok(Some(*c));
        }
        let v = self
            .inner
            .state
            .get(format!("cursor.{}", destination.simple()))
            .await
            .map_err(nats_err("reading a cursor"))?;
        match v {
            Some(v) => {
                let c: StoredCursor = serde_json::from_slice(&v)
                    .map_err(|e| QueueError::Corrupt(format!("cursor: {e}")))?;
                Ok(Some(Cursor { seq: c.seq }))
            }
            None => Ok(None),
        }
    }

    fn commit(&self, destination: Uuid, workspace: Uuid, cursor: Cursor, counters: Counters) {
        if self.inner.closed.load(Ordering::Acquire) {
            return;
        }
        self.inner
            .commits
            .lock()
            .expect("poisoned")
            .insert(destination, (workspace, cursor, counters));
    }

    async fn register(
        &self,
        destination: Uuid,
        workspace: Uuid,
        cursor: Cursor,
        counters: Counters,
    ) -> Result<()> {
        self.commit(destination, workspace, cursor, counters);
        self.inner.flush_commits().await
    }

    async fn counters(&self, destination: Uuid) -> Result<Counters> {
        if let Some((_, _, c)) = self
            .inner
            .commits
            .lock()
            .expect("poisoned")
            .get(&destination)
        {
            return Ok(c.clone());
        }
        let v = self
            .inner
            .state
            .get(format!("counters.{}", destination.simple()))
            .await
            .map_err(nats_err("reading counters"))?;
        Ok(v.and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    async fn forget(&self, destination: Uuid) -> Result<()> {
        self.inner.flush_commits().await?;
        self.inner
            .state
            .purge(format!("cursor.{}", destination.simple()))
            .await
            .map_err(nats_err("forgetting a cursor"))
    }

    async fn add_dead_letters(&self, letters: Vec<DeadLetter>) -> Result<()> {
        if letters.is_empty() {
            return Ok(());
        }
        let inner = &self.inner;
        let first = inner.reserve_ids(letters.len() as u64).await?;
        let mut acks = Vec::with_capacity(letters.len());
        for (i, l) in letters.into_iter().enumerate() {
            let body = serde_json::to_vec(&StoredLetter {
                generation: (*l.generation).clone(),
                error: l.error,
                status: l.status,
                attempts: l.attempts,
            })
            .map_err(|e| QueueError::Corrupt(e.to_string()))?;
            let subject =
                inner.letter_subject(l.destination_id, false, first + i as i64, l.failed_at_ms);
            let ack = inner
                .js
                .send_publish(subject, PublishMessage::build().payload(body.into()))
                .await
                .map_err(nats_err("adding dead letters"))?;
            acks.push(ack);
        }
        for a in acks {
            a.await.map_err(nats_err("adding dead letters"))?;
        }
        Ok(())
    }

    async fn list_dead_letters(
        &self,
        destination: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DeadLetter>, u64)> {
        let inner = &self.inner;
        let all = inner
            .letter_subjects(format!(
                "{}.dead.{}.*.*.*",
                inner.opts.prefix,
                destination.simple()
            ))
            .await?;
        let total = all.len() as u64;
        let page: Vec<LetterSubject> = all
            .into_iter()
            .skip(offset.min(usize::MAX as u64) as usize)
            .take(limit.min(10_000) as usize)
            .collect();
        Ok((inner.load_letters(&page).await?, total))
    }

    async fn request_replay(&self, destination: Uuid, ids: Option<Vec<i64>>) -> Result<u64> {
        let inner = &self.inner;
        let all = inner
            .letter_subjects(format!(
                "{}.dead.{}.*.*.*",
                inner.opts.prefix,
                destination.simple()
            ))
            .await?;
        let wanted: Option<HashSet<i64>> = ids.map(|v| v.into_iter().collect());
        let mut n = 0;
        for l in all {
            if wanted.as_ref().is_some_and(|w| !w.contains(&l.id)) {
                continue;
            }
            n += 1;
            if l.replay {
                continue;
            }
            let msg = match inner
                .dead
                .direct_get_last_for_subject(l.subject.clone())
                .await
            {
                Ok(m) => m,
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => {
                    n -= 1;
                    continue;
                }
                Err(e) => return Err(nats_err("marking dead letters")(e)),
            };
            let to = inner.letter_subject(destination, true, l.id, l.failed_at_ms);
            let ack = inner
                .js
                .send_publish(
                    to,
                    PublishMessage::build()
                        .payload(msg.payload)
                        .expected_last_subject_sequence(0),
                )
                .await
                .map_err(nats_err("marking dead letters"))?;
            // Already marked by another node: fine.
            let _ = ack.await;
            inner
                .dead
                .purge()
                .filter(l.subject.clone())
                .await
                .map_err(nats_err("marking dead letters"))?;
        }
        Ok(n)
    }

    async fn replays(&self, destination: Uuid, max: usize) -> Result<Vec<DeadLetter>> {
        let inner = &self.inner;
        let mut marked = inner
            .letter_subjects(format!(
                "{}.dead.{}.r.*.*",
                inner.opts.prefix,
                destination.simple()
            ))
            .await?;
        marked.truncate(max);
        inner.load_letters(&marked).await
    }

    async fn delete_dead_letters(&self, ids: Vec<i64>) -> Result<()> {
        let inner = &self.inner;
        for chunk in ids.chunks(64) {
            let purges = chunk.iter().map(|id| {
                inner
                    .dead
                    .purge()
                    .filter(format!("{}.dead.*.*.{id}.*", inner.opts.prefix))
                    .into_future()
            });
            for r in futures_util::future::join_all(purges).await {
                r.map_err(nats_err("deleting dead letters"))?;
            }
        }
        Ok(())
    }

    async fn expire_dead_letters(&self, before_ms: i64) -> Result<u64> {
        let inner = &self.inner;
        let all = inner
            .letter_subjects(format!("{}.dead.*.*.*.*", inner.opts.prefix))
            .await?;
        let old: Vec<LetterSubject> = all
            .into_iter()
            .filter(|l| l.failed_at_ms < before_ms)
            .collect();
        for chunk in old.chunks(64) {
            let purges = chunk.iter().map(|l| {
                inner
                    .dead
                    .purge()
                    .filter(format!("{}.dead.*.*.{}.*", inner.opts.prefix, l.id))
                    .into_future()
            });
            for r in futures_util::future::join_all(purges).await {
                r.map_err(nats_err("expiring dead letters"))?;
            }
        }
        Ok(old.len() as u64)
    }

    async fn close(&self) {
        if let Err(e) = self.inner.flush_commits().await {
            tracing::warn!(error = %e, "persisting cursors at shutdown failed");
        }
        self.inner.closed.store(true, Ordering::Release);
        for t in self.tasks.lock().expect("poisoned").drain(..) {
            t.abort();
        }
        let _ = self.inner.client.flush().await;
    }
}
