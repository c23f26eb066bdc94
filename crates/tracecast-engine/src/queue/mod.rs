//! The durable queue: an append-only log of generations per workspace, read by every
//! destination of the workspace at its own cursor.
//!
//! Ingest appends each generation once, whatever the number of destinations; a destination's
//! backlog is the part of its workspace's log after its cursor. Routing happens when a
//! destination reads, so new filter or sampling settings apply to records already queued.
//! Records before the smallest cursor of a workspace are deleted. What the logs keep is measured
//! with [`Queue::log_usage`] and [`Queue::storage`] against the outage budget
//! ([`crate::budget`]), and [`Queue::cap_point`] finds how much of a backlog to drop past it.
//!
//! [`SqliteQueue`] is the embedded implementation; [`NatsQueue`] the distributed one (NATS
//! JetStream, shared by many nodes), with [`Leases`] for destination ownership.

mod nats;
mod nats_lease;
mod segments;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::watch;
use tracecast_model::generation::Generation;
use uuid::Uuid;

pub use nats::{ConfigChanges, NatsError, NatsQueue, NatsQueueOptions, valid_name};
pub use nats_lease::{Leases, Members};
pub use sqlite::{PARSED_OVERHEAD, SqliteQueue, SqliteQueueOptions};

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("queue record is corrupt: {0}")]
    Corrupt(String),
    #[error("the queue is shut down")]
    Closed,
    /// A fixed capacity of the queue's layout is used up (workspace keys, records per log).
    #[error("the queue is full: {0}")]
    Exhausted(String),
    #[error("queue I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Nats(#[from] NatsError),
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// What a log record stores: a one-line header (identity and the `x-session-id` header) and the
/// record exactly as it was sent. Reading it back re-runs the same validation and derivations,
/// so ingest never pays for serialising a generation again.
#[derive(serde::Serialize, serde::Deserialize)]
struct LogHeader<'a> {
    #[serde(borrow)]
    identity: std::borrow::Cow<'a, tracecast_model::generation::Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session_header: Option<String>,
}

/// The stored form of an ingested record.
pub fn log_body(g: &Generation, raw: &[u8], session_header: Option<&str>) -> Vec<u8> {
    let header = LogHeader {
        identity: std::borrow::Cow::Borrowed(&g.identity),
        session_header: session_header.map(str::to_string),
    };
    let mut out = Vec::with_capacity(raw.len() + 160);
    serde_json::to_writer(&mut out, &header).expect("headers serialise");
    out.push(b'\n');
    out.extend_from_slice(raw);
    out
}

/// A generation back from its stored form.
pub fn parse_log_body(body: &[u8]) -> Result<Generation> {
    let corrupt = |what: String| QueueError::Corrupt(format!("stored generation: {what}"));
    let nl = body
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no header".into()))?;
    let header: LogHeader<'_> =
        serde_json::from_slice(&body[..nl]).map_err(|e| corrupt(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_slice(&body[nl + 1..]).map_err(|e| corrupt(e.to_string()))?;
    let ctx = tracecast_model::generation::IngestContext {
        session_header: header.session_header,
    };
    let mut g = Generation::from_json(value, &ctx).map_err(|e| corrupt(e.0))?;
    g.identity = header.identity.into_owned();
    Ok(g)
}

/// A record to append: the generation (kept in the in-memory tail) and its stored form.
pub struct NewRecord {
    pub generation: Arc<Generation>,
    pub body: Vec<u8>,
}

/// A record of a workspace's log.
#[derive(Clone)]
pub struct Record {
    /// Position in the workspace's log, contiguous from 1.
    pub seq: u64,
    /// Unix ms when tracecast accepted it.
    pub received_at_ms: i64,
    /// Serialised size in bytes.
    pub size: u32,
    pub generation: Arc<Generation>,
    /// Encoded pieces of this record, shared by every destination reading the same copy.
    pub fragments: Arc<FragmentCache>,
}

impl Record {
    pub fn new(seq: u64, received_at_ms: i64, size: u32, generation: Arc<Generation>) -> Self {
        Record {
            seq,
            received_at_ms,
            size,
            generation,
            fragments: Arc::default(),
        }
    }
}

/// Encoded fragments of one record by encoding key (see
/// `tracecast_exporters::FragmentEncoder`): destinations that share an encoding and trace
/// options encode a record once.
#[derive(Default)]
pub struct FragmentCache(std::sync::Mutex<Vec<(u64, bytes::Bytes)>>);

impl FragmentCache {
    /// The fragment under `key`, encoding it with `make` on first use.
    pub fn get_or_try_insert<E>(
        &self,
        key: u64,
        make: impl FnOnce() -> Result<bytes::Bytes, E>,
    ) -> Result<bytes::Bytes, E> {
        if let Some((_, b)) = self
            .0
            .lock()
            .expect("poisoned")
            .iter()
            .find(|(k, _)| *k == key)
        {
            return Ok(b.clone());
        }
        let b = make()?;
        let mut v = self.0.lock().expect("poisoned");
        if !v.iter().any(|(k, _)| *k == key) {
            v.push((key, b.clone()));
        }
        Ok(b)
    }
}

/// Result of an append: for each record in order, whether it was accepted (false: a duplicate
/// of a record accepted in the dedup window).
#[derive(Debug, Clone)]
pub struct AppendResult {
    pub accepted: Vec<bool>,
}

/// Where a destination's reading stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cursor {
    /// Everything up to and including this seq is done (delivered, filtered, dead-lettered or
    /// dropped).
    pub seq: u64,
}

/// How far behind a cursor is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub records: u64,
    pub bytes: u64,
    /// Unix ms of the oldest pending record.
    pub oldest_received_at_ms: Option<i64>,
}

/// How much of a workspace's log is kept (see [`Queue::log_usage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogUsage {
    /// The last seq appended.
    pub head: u64,
    /// Records still in the log (not yet truncated).
    pub records: u64,
    /// Their stored bytes.
    pub bytes: u64,
}

/// The storage a queue's log lives on (see [`Queue::storage`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Storage {
    /// Its size in bytes.
    pub total: u64,
    /// Bytes free for the queue to use.
    pub available: u64,
    /// Bytes the queue's files take now (the log and everything stored with it).
    pub queue_bytes: u64,
}

/// A dead letter as stored.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub destination_id: Uuid,
    pub generation: Arc<Generation>,
    pub error: String,
    pub status: Option<u16>,
    pub attempts: u32,
    /// Unix ms.
    pub failed_at_ms: i64,
    pub replay_requested: bool,
}

/// A dead letter as a listing shows it: the generation's id, model and start time, not its
/// body (which may be megabytes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSummary {
    pub id: i64,
    pub generation_id: String,
    pub model: String,
    pub created_at: String,
    pub error: String,
    pub status: Option<u16>,
    pub attempts: u32,
    /// Unix ms.
    pub failed_at_ms: i64,
    pub replay_requested: bool,
}

impl From<&DeadLetter> for DeadLetterSummary {
    fn from(l: &DeadLetter) -> Self {
        DeadLetterSummary {
            id: l.id,
            generation_id: l.generation.id.clone(),
            model: l.generation.model.clone(),
            created_at: l.generation.created_at.clone(),
            error: l.error.clone(),
            status: l.status,
            attempts: l.attempts,
            failed_at_ms: l.failed_at_ms,
            replay_requested: l.replay_requested,
        }
    }
}

/// Persistent per-destination counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    pub received: u64,
    pub filtered: u64,
    pub sampled_out: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub discarded: u64,
    pub last_success_at_ms: Option<i64>,
    pub last_error_at_ms: Option<i64>,
    pub last_error_status: Option<u16>,
    pub last_error_message: Option<String>,
    /// Where a failing destination's retries stand. Persisted with the cursor, so a restarted
    /// node, or the node taking a destination over, carries on the same backoff and honours a
    /// `Retry-After` received before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryState>,
    /// Why the destination is paused, as its delivering node last reported (status on the
    /// other nodes of a cluster).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<PausedState>,
}

/// The retry state of a destination whose batches are failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryState {
    /// Failed attempts of the batch that failed most often.
    pub attempts: u32,
    /// Unix ms before which nothing is sent (backoff, or the platform's `Retry-After`).
    pub not_before_ms: i64,
    /// Unix ms of the first failure of the oldest failing batch (for `max_retry_age_secs`).
    pub first_failure_ms: i64,
}

/// A persisted pause (see `delivery::Pause`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PausedState {
    pub status: Option<u16>,
    pub message: String,
    pub since_ms: i64,
}

#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Appends records durably: when this returns, a crash loses none of them. Records whose
    /// id was accepted for the workspace in the last 24 h are not appended.
    async fn append(&self, workspace: Uuid, records: Vec<NewRecord>) -> Result<AppendResult>;

    /// The last seq of a workspace's log (0 when empty).
    fn head(&self, workspace: Uuid) -> u64;

    /// Wakes up when the workspace's head moves.
    fn subscribe(&self, workspace: Uuid) -> watch::Receiver<u64>;

    /// Up to `max` records after `after`, in order.
    async fn read(&self, workspace: Uuid, after: u64, max: usize) -> Result<Vec<Record>>;

    /// Up to `max` of the newest records of a workspace's log still held (not yet truncated,
    /// or still in memory), oldest first. The default reads the last `max` seqs before the
    /// head; a queue whose in-memory tail can outlive its truncated log overrides it.
    async fn recent(&self, workspace: Uuid, max: usize) -> Result<Vec<Record>> {
        let after = self.head(workspace).saturating_sub(max as u64);
        self.read(workspace, after, max).await
    }

    /// Backlog after `after`.
    async fn backlog(&self, workspace: Uuid, after: u64) -> Result<Backlog>;

    /// The seq after which keeping `max_records` / `max_bytes` of backlog means dropping the
    /// oldest records; `None` when the backlog is within both.
    async fn cap_point(
        &self,
        workspace: Uuid,
        after: u64,
        max_records: u64,
        max_bytes: u64,
    ) -> Result<Option<u64>>;

    /// What each workspace's log keeps now, for every workspace the queue holds a log of.
    async fn log_usage(&self) -> Result<Vec<(Uuid, LogUsage)>>;

    /// The storage the log lives on; `None` when its size is not known (a JetStream account
    /// without a storage limit).
    async fn storage(&self) -> Result<Option<Storage>>;

    /// A destination's committed cursor, if it has one.
    async fn cursor(&self, destination: Uuid) -> Result<Option<Cursor>>;

    /// Records a destination's progress. Persisted within a fraction of a second; after a crash
    /// delivery resumes from the last persisted cursor (at-least-once).
    fn commit(&self, destination: Uuid, workspace: Uuid, cursor: Cursor, counters: Counters);

    /// Persists a destination's starting cursor (and counters) before its worker starts, and
    /// marks it live: when this returns, truncation never passes that cursor, even if the
    /// workspace has no record yet (the usual onboarding order: destinations first, then the
    /// first ingest).
    async fn register(
        &self,
        destination: Uuid,
        workspace: Uuid,
        cursor: Cursor,
        counters: Counters,
    ) -> Result<()>;

    /// Loads a destination's persisted counters.
    async fn counters(&self, destination: Uuid) -> Result<Counters>;

    /// Removes a destination's cursor (its backlog stops holding the log back) but keeps its
    /// counters and dead letters for the status API.
    async fn forget(&self, destination: Uuid) -> Result<()>;

    async fn add_dead_letters(&self, letters: Vec<DeadLetter>) -> Result<()>;
    async fn list_dead_letters(
        &self,
        destination: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DeadLetter>, u64)>;
    /// A page of [`list_dead_letters`](Queue::list_dead_letters) without the generations'
    /// bodies. The default loads the letters and drops the bodies; a queue that can read the
    /// summary fields alone overrides it, so that a listing costs memory for one letter at a
    /// time, not for the page.
    async fn list_dead_letter_summaries(
        &self,
        destination: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DeadLetterSummary>, u64)> {
        let (letters, total) = self.list_dead_letters(destination, offset, limit).await?;
        Ok((letters.iter().map(DeadLetterSummary::from).collect(), total))
    }
    /// Marks dead letters for replay (all of the destination's when `ids` is `None`); returns
    /// how many were marked.
    async fn request_replay(&self, destination: Uuid, ids: Option<Vec<i64>>) -> Result<u64>;
    /// Up to `max` dead letters marked for replay.
    async fn replays(&self, destination: Uuid, max: usize) -> Result<Vec<DeadLetter>>;
    async fn delete_dead_letters(&self, ids: Vec<i64>) -> Result<()>;
    /// Deletes dead letters older than `before_ms`; returns how many.
    async fn expire_dead_letters(&self, before_ms: i64) -> Result<u64>;

    /// Persists pending cursor commits and stops the writer.
    async fn close(&self);
}
