//! The durable queue: an append-only log of generations per workspace, read by every
//! destination of the workspace at its own cursor.
//!
//! Ingest appends each generation once, whatever the number of destinations; a destination's
//! backlog is the part of its workspace's log after its cursor. Routing happens when a
//! destination reads, so new filter or sampling settings apply to records already queued.
//! Records before the smallest cursor of a workspace are deleted.
//!
//! [`SqliteQueue`] is the embedded implementation. The trait is what a distributed backend
//! (NATS JetStream) implements too.

mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;
use tokio::sync::watch;
use tracecast_model::generation::Generation;
use uuid::Uuid;

pub use sqlite::{SqliteQueue, SqliteQueueOptions};

#[derive(Debug, Error)]
pub enum QueueError {
    #[error("queue database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("queue record is corrupt: {0}")]
    Corrupt(String),
    #[error("the queue is shut down")]
    Closed,
    #[error("queue I/O: {0}")]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;

/// A record to append: the generation (kept in the in-memory tail) and its serialised form.
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

    /// A destination's committed cursor, if it has one.
    async fn cursor(&self, destination: Uuid) -> Result<Option<Cursor>>;

    /// Records a destination's progress. Persisted within a fraction of a second; after a crash
    /// delivery resumes from the last persisted cursor (at-least-once).
    fn commit(&self, destination: Uuid, workspace: Uuid, cursor: Cursor, counters: Counters);

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
