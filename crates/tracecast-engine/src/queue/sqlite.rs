//! The embedded queue: one SQLite file (`queue.db`) in the data directory for the queue's
//! state, and append-only segment files (`queue-log/`, see [`super::segments`]) for the records.
//!
//! Layout:
//! - `queue-log/<ws>/*.seg`: every accepted generation once, with its seq, receive time and the
//!   workspace's cumulative byte count (for the outage budget: bytes kept, where to drop past it), checksummed.
//! - `workspaces(ws, workspace_id, head, bytes, dedup_mark, truncated)`: each workspace's small
//!   integer key (its directory under `queue-log/`), head seq and byte total as of the last
//!   dedup flush (the segments have the latest), and the seq up to which its log is truncated.
//! - `log`: where records were kept before the segment files; opening moves any left there
//!   into segments.
//! - `dedup_0`, `dedup_1`: 64-bit keys of accepted ids. New keys go into the current table; a
//!   key counts as seen if either table has it; every `dedup_window` the older table is emptied
//!   and becomes current, so an id is remembered for at least one window.
//! - `cursors`, `counters`, `dead_letters`.
//!
//! One writer thread owns the write connection and the segments' files and appends in groups:
//! concurrent ingest requests share one write and one `fdatasync` per workspace (group commit).
//! An append that has returned survives a crash or power loss. Cursor and counter commits are
//! batched into a SQLite transaction at most every ~100 ms (`synchronous = FULL`). Reads are
//! served from an in-memory tail of recent records when possible, else from the segments.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, watch};
use tracecast_model::generation::Generation;
use uuid::Uuid;

use super::segments::{self, Segments};
use super::{
    AppendResult, Backlog, Counters, Cursor, DeadLetter, DeadLetterSummary, LogUsage, NewRecord,
    Queue, QueueError, Record, Result, Storage,
};

const SEQ_BITS: u32 = 40;
const UNASSIGNED: i64 = i64::MIN;
/// Page cache of each read connection.
const READER_CACHE_KIB: i64 = 4 * 1024;
/// Memory of a parsed generation relative to its JSON size (JSON values, maps, strings).
pub const PARSED_OVERHEAD: usize = 4;
const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;
/// The largest workspace key: `key << SEQ_BITS` must stay a positive `i64`, so that ids never
/// wrap (key 2^24 + 1 would share key 1's ids). Records are in segment files now; the limits
/// of the former `log` table ids (this key range, `SEQ_MASK` records per workspace) are kept
/// as they were, and `log` rows left by an older version are read by these ids.
pub const MAX_WORKSPACE_KEY: i64 = (1 << (63 - SEQ_BITS)) - 1;

/// A record's id in the former `log` table (read when moving records into segments).
fn row_id(ws: i64, seq: u64) -> i64 {
    (ws << SEQ_BITS) | (seq as i64 & SEQ_MASK)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The 64-bit dedup key of a generation id within a workspace.
fn dedup_key(workspace: Uuid, id: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(workspace.as_bytes());
    h.update(id.as_bytes());
    let d = h.finalize();
    i64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

#[derive(Debug, Clone)]
pub struct SqliteQueueOptions {
    pub path: PathBuf,
    /// Memory for recent records kept parsed for readers (default 48 MiB). A parsed generation
    /// takes about [`PARSED_OVERHEAD`] times its serialised size; the budget counts that.
    pub tail_bytes: usize,
    /// fsync every commit (`fdatasync` of the segments, `synchronous = FULL`). Off trades
    /// power-loss safety for speed; a process crash loses nothing either way.
    pub sync_full: bool,
    /// How long an accepted id is remembered for de-duplication (default 24 h).
    pub dedup_window: Duration,
    /// Size past which a workspace's segment file rolls to a new one (default 64 MiB).
    /// Truncation deletes whole segments.
    pub segment_bytes: u64,
}

impl SqliteQueueOptions {
    pub fn new(path: PathBuf) -> Self {
        SqliteQueueOptions {
            path,
            tail_bytes: 48 * 1024 * 1024,
            sync_full: true,
            dedup_window: Duration::from_secs(24 * 3600),
            segment_bytes: 64 << 20,
        }
    }
}

struct Tail {
    records: VecDeque<Record>,
    bytes: usize,
}

struct WsState {
    /// The workspace's small integer key (its segments' directory); `UNASSIGNED` until its
    /// first append.
    key: AtomicI64,
    head: watch::Sender<u64>,
    /// Cumulative bytes at head.
    bytes: Mutex<u64>,
    tail: Mutex<Tail>,
    /// The workspace's segments, once it has a key.
    segments: Mutex<Option<Arc<Segments>>>,
    /// Records up to this seq are truncated (done for every destination).
    truncated: AtomicU64,
}

impl WsState {
    fn segments(&self) -> Option<Arc<Segments>> {
        self.segments.lock().expect("poisoned").clone()
    }
}

struct Shared {
    workspaces: Mutex<HashMap<Uuid, Arc<WsState>>>,
    /// Where the workspaces' segment directories are.
    log_dir: PathBuf,
    segment_bytes: u64,
    sync_full: bool,
    tail_total: AtomicUsize,
    tail_budget: usize,
    /// Live destinations by workspace (registered, not forgotten): truncation never passes one,
    /// and skips a workspace where one has no persisted cursor.
    live: Mutex<HashMap<Uuid, Uuid>>,
}

impl Shared {
    fn ws(&self, workspace: Uuid) -> Option<Arc<WsState>> {
        self.workspaces
            .lock()
            .expect("poisoned")
            .get(&workspace)
            .cloned()
    }

    /// Opens (recovering) the segments of a workspace that has its key.
    fn open_segments(&self, key: i64) -> Result<(Arc<Segments>, Option<segments::Header>)> {
        let (segs, last) = Segments::open(
            self.log_dir.join(key.to_string()),
            self.segment_bytes,
            self.sync_full,
        )?;
        Ok((Arc::new(segs), last))
    }
}

enum Cmd {
    Append {
        workspace: Uuid,
        records: Vec<NewRecord>,
        reply: oneshot::Sender<Result<AppendResult>>,
    },
    Commit {
        destination: Uuid,
        workspace: Uuid,
        cursor: Cursor,
        counters: Counters,
    },
    Flush(oneshot::Sender<()>),
    Stop(oneshot::Sender<()>),
}

pub struct SqliteQueue {
    stop_checkpoints: Arc<std::sync::atomic::AtomicBool>,
    tx: Mutex<Option<mpsc::Sender<Cmd>>>,
    readers: Arc<ReaderPool>,
    shared: Arc<Shared>,
}

/// Connections for reads and the rare non-append writes (dead letters), opened on demand and
/// kept for reuse.
struct ReaderPool {
    path: PathBuf,
    sync_full: bool,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    fn take(&self) -> Result<Connection> {
        if let Some(c) = self.idle.lock().expect("poisoned").pop() {
            return Ok(c);
        }
        Ok(open_conn(&self.path, self.sync_full, READER_CACHE_KIB)?)
    }

    fn give(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("poisoned");
        if idle.len() < 8 {
            idle.push(conn);
        }
    }
}

fn open_conn(
    path: &std::path::Path,
    sync_full: bool,
    cache_kib: i64,
) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // 16 KiB pages hold six ~2.4 KB generations; 4 KiB pages hold one, wasting 40% of every
    // page written. Only takes effect on a new file (before WAL mode is set).
    conn.pragma_update(None, "page_size", 16384)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        if sync_full { "FULL" } else { "NORMAL" },
    )?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(conn)
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (id INTEGER PRIMARY KEY, received_at INTEGER NOT NULL, end_bytes INTEGER NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS workspaces (ws INTEGER PRIMARY KEY, workspace_id TEXT NOT NULL UNIQUE, head INTEGER NOT NULL, bytes INTEGER NOT NULL, dedup_mark INTEGER NOT NULL DEFAULT 0, truncated INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS dedup_0 (key INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS dedup_1 (key INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS dedup_meta (one INTEGER PRIMARY KEY CHECK (one = 1), current INTEGER NOT NULL, started_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS cursors (destination_id TEXT PRIMARY KEY, ws INTEGER NOT NULL, seq INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS counters (destination_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    destination_id TEXT NOT NULL,
    body BLOB NOT NULL,
    error TEXT NOT NULL,
    status INTEGER,
    attempts INTEGER NOT NULL,
    failed_at INTEGER NOT NULL,
    replay INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS dead_letters_destination ON dead_letters (destination_id, id);
";

impl SqliteQueue {
    /// Opens (creating if needed) the queue file and starts its writer thread.
    pub fn open(opts: SqliteQueueOptions) -> Result<Self> {
        if let Some(dir) = opts.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let writer = open_conn(&opts.path, opts.sync_full, 16 * 1024)?;
        // Checkpoints (copying the WAL into the database file) run on their own thread, so
        // commits never wait for them.
        writer.pragma_update(None, "wal_autocheckpoint", 0)?;
        writer.execute_batch(SCHEMA)?;
        writer.execute(
            "INSERT OR IGNORE INTO dedup_meta (one, current, started_at) VALUES (1, 0, ?1)",
            params![now_ms()],
        )?;
        let has_truncated: bool = writer.query_row(
            "SELECT COUNT(*) FROM pragma_table_info('workspaces') WHERE name = 'truncated'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
        if !has_truncated {
            writer.execute_batch(
                "ALTER TABLE workspaces ADD COLUMN truncated INTEGER NOT NULL DEFAULT 0",
            )?;
        }
        let readers = Arc::new(ReaderPool {
            path: opts.path.clone(),
            sync_full: opts.sync_full,
            idle: Mutex::new(vec![open_conn(
                &opts.path,
                opts.sync_full,
                READER_CACHE_KIB,
            )?]),
        });
        let file_name = opts
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "queue".into());
        let shared = Arc::new(Shared {
            workspaces: Mutex::new(HashMap::new()),
            log_dir: opts.path.with_file_name(format!("{file_name}-log")),
            segment_bytes: opts.segment_bytes.max(1),
            sync_full: opts.sync_full,
            tail_total: AtomicUsize::new(0),
            tail_budget: opts.tail_bytes,
            live: Mutex::new(HashMap::new()),
        });
        {
            let rows: Vec<(i64, String, i64, i64, i64)> = {
                let mut stmt = writer
                    .prepare("SELECT ws, workspace_id, head, bytes, truncated FROM workspaces")?;
                let rows = stmt.query_map([], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let mut map = shared.workspaces.lock().expect("poisoned");
            for (key, id, head, bytes, truncated) in rows {
                let id = Uuid::parse_str(&id)
                    .map_err(|_| QueueError::Corrupt(format!("workspace id {id}")))?;
                let (segs, last) = shared.open_segments(key)?;
                let mut head = head as u64;
                let mut bytes = bytes as u64;
                // The segments hold every acknowledged record; the row is as of the last
                // dedup flush or truncation.
                if let Some(last) = last
                    && last.seq >= head
                {
                    head = last.seq;
                    bytes = last.end_bytes;
                }
                let ws = new_ws(key, head, bytes);
                *ws.segments.lock().expect("poisoned") = Some(segs);
                ws.truncated.store(truncated as u64, Ordering::Relaxed);
                map.insert(id, ws);
            }
        }
        migrate_log_table(&writer, &shared)?;
        reindex_dedup(&writer, &shared)?;
        let checkpointer = open_conn(&opts.path, opts.sync_full, 1024)?;
        let stop_checkpoints = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = stop_checkpoints.clone();
        std::thread::Builder::new()
            .name("tracecast-queue-checkpoint".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(200));
                    // PASSIVE never blocks the writer or readers; TRUNCATE once in a while
                    // keeps the WAL file from growing when the log is idle.
                    if let Err(e) =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "queue checkpoint failed");
                    }
                }
                let _ = checkpointer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })?;
        let (tx, rx) = mpsc::channel();
        let writer_shared = shared.clone();
        let window_ms = opts.dedup_window.as_millis() as i64;
        let (dedup_current, dedup_started): (i64, i64) = writer.query_row(
            "SELECT current, started_at FROM dedup_meta WHERE one = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let (reaper, reap_rx) = mpsc::channel::<Vec<Record>>();
        std::thread::Builder::new()
            .name("tracecast-queue-reaper".into())
            .spawn(move || while reap_rx.recv().is_ok() {})?;
        std::thread::Builder::new()
            .name("tracecast-queue-writer".into())
            .spawn(move || {
                Writer {
                    conn: writer,
                    shared: writer_shared,
                    window_ms,
                    reaper,
                    recent: std::collections::HashSet::new(),
                    recent_marks: HashMap::new(),
                    last_dedup_flush: Instant::now(),
                    uncommitted: Vec::new(),
                    dedup_current,
                    dedup_started,
                }
                .run(rx)
            })?;
        Ok(SqliteQueue {
            stop_checkpoints,
            tx: Mutex::new(Some(tx)),
            readers,
            shared,
        })
    }

    fn send(&self, cmd: Cmd) -> Result<()> {
        let guard = self.tx.lock().expect("poisoned");
        guard
            .as_ref()
            .ok_or(QueueError::Closed)?
            .send(cmd)
            .map_err(|_| QueueError::Closed)
    }

    async fn with_reader<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = pool.take()?;
            let out = f(&conn);
            pool.give(conn);
            out
        })
        .await
        .map_err(|_| QueueError::Closed)?
    }

    /// Waits until every commit sent so far is persisted (tests and shutdown).
    /// Up to `max` records of the log on disk with `after < seq <= upto`, in order.
    /// Up to `max` records of the workspace's segments after `after` and up to `upto`, in order.
    async fn read_log(
        &self,
        ws: &WsState,
        after: u64,
        upto: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        let Some(segs) = ws.segments() else {
            return Ok(Vec::new());
        };
        let from = after.max(ws.truncated.load(Ordering::Acquire)) + 1;
        if upto < from {
            return Ok(Vec::new());
        }
        let max = max.min(usize::try_from(upto - from + 1).unwrap_or(usize::MAX));
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for r in segs.read(from, max)? {
                if r.header.seq > upto {
                    break;
                }
                out.push(Record::new(
                    r.header.seq,
                    r.header.received_at_ms,
                    r.body.len() as u32,
                    Arc::new(super::parse_log_body(&r.body)?),
                ));
            }
            Ok(out)
        })
        .await
        .map_err(|_| QueueError::Closed)?
    }

    pub async fn flush(&self) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Cmd::Flush(tx))?;
        rx.await.map_err(|_| QueueError::Closed)
    }
}

/// After a crash, records accepted after the last dedup flush are in the log but not in the
/// dedup index: index them again so their ids stay de-duplicated.
fn reindex_dedup(conn: &Connection, shared: &Shared) -> Result<()> {
    let stale: Vec<(i64, String, i64)> = {
        let mut stmt = conn.prepare("SELECT ws, workspace_id, dedup_mark FROM workspaces")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let current: i64 = conn.query_row("SELECT current FROM dedup_meta WHERE one = 1", [], |r| {
        r.get(0)
    })?;
    let tx = conn.unchecked_transaction()?;
    let mut n = 0u64;
    for (key, workspace_id, mark) in stale {
        let workspace = Uuid::parse_str(&workspace_id)
            .map_err(|_| QueueError::Corrupt(format!("workspace id {workspace_id}")))?;
        let Some(ws) = shared.ws(workspace) else {
            continue;
        };
        let head = *ws.head.borrow();
        if mark as u64 >= head {
            continue;
        }
        let Some(segs) = ws.segments() else { continue };
        let mut ins = tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO dedup_{current} (key) VALUES (?1)"
        ))?;
        let mut from = mark as u64 + 1;
        while from <= head {
            let chunk = segs.read(from, 1000)?;
            let Some(last) = chunk.last() else { break };
            from = last.header.seq + 1;
            for r in &chunk {
                let g = super::parse_log_body(&r.body)?;
                ins.execute(params![dedup_key(workspace, &g.id)])?;
                n += 1;
            }
        }
        tx.execute(
            "UPDATE workspaces SET dedup_mark = ?2, head = ?2, bytes = ?3 WHERE ws = ?1",
            params![key, head as i64, *ws.bytes.lock().expect("poisoned") as i64],
        )?;
    }
    tx.commit()?;
    if n > 0 {
        tracing::info!(records = n, "re-indexed dedup keys after an unclean stop");
    }
    Ok(())
}

/// Moves records left in the `log` table (where the queue kept them before the segment files)
/// into segments, then empties the table.
fn migrate_log_table(conn: &Connection, shared: &Shared) -> Result<()> {
    let any: Option<i64> = conn
        .query_row("SELECT id FROM log LIMIT 1", [], |r| r.get(0))
        .optional()?;
    if any.is_none() {
        return Ok(());
    }
    let workspaces: Vec<Arc<WsState>> = shared
        .workspaces
        .lock()
        .expect("poisoned")
        .values()
        .cloned()
        .collect();
    let mut moved = 0u64;
    for ws in workspaces {
        let key = ws.key.load(Ordering::Acquire);
        let Some(segs) = ws.segments() else { continue };
        // Records already in segments (a migration interrupted after its writes) are skipped.
        let after = segs
            .last_seq()
            .unwrap_or_else(|| ws.truncated.load(Ordering::Relaxed));
        let mut stmt = conn.prepare(
            "SELECT id, received_at, end_bytes, body FROM log WHERE id > ?1 AND id <= ?2 ORDER BY id",
        )?;
        let mut rows = stmt.query(params![row_id(key, after), row_id(key, SEQ_MASK as u64)])?;
        let (mut data, mut offsets, mut first, mut last) = (Vec::new(), Vec::new(), None, None);
        let mut last_end = 0u64;
        while let Some(r) = rows.next()? {
            let id: i64 = r.get(0)?;
            let seq = (id & SEQ_MASK) as u64;
            if last.is_some_and(|l: u64| l + 1 != seq) || data.len() > 16 << 20 {
                if let Some(f) = first.take() {
                    segs.append(f, &data, &offsets)?;
                }
                data.clear();
                offsets.clear();
            }
            let body = r.get_ref(3)?.as_blob().map_err(rusqlite::Error::from)?;
            first.get_or_insert(seq);
            offsets.push(data.len() as u32);
            last_end = r.get::<_, i64>(2)? as u64;
            segments::encode(&mut data, seq, r.get(1)?, last_end, body);
            last = Some(seq);
            moved += 1;
        }
        if let Some(f) = first {
            segs.append(f, &data, &offsets)?;
        }
        if let Some(l) = last
            && l >= *ws.head.borrow()
        {
            ws.head.send_replace(l);
            *ws.bytes.lock().expect("poisoned") = last_end;
        }
    }
    conn.execute("DELETE FROM log", [])?;
    tracing::info!(
        records = moved,
        "moved the queue's records into segment files"
    );
    Ok(())
}

fn new_ws(key: i64, head: u64, bytes: u64) -> Arc<WsState> {
    Arc::new(WsState {
        key: AtomicI64::new(key),
        head: watch::Sender::new(head),
        bytes: Mutex::new(bytes),
        tail: Mutex::new(Tail {
            records: VecDeque::new(),
            bytes: 0,
        }),
        segments: Mutex::new(None),
        truncated: AtomicU64::new(0),
    })
}

fn parse_body(body: &[u8]) -> Result<Generation> {
    serde_json::from_slice(body).map_err(|e| QueueError::Corrupt(format!("stored generation: {e}")))
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    window_ms: i64,
    /// Evicted tail records are freed on another thread: the writer is the one serial step
    /// of ingest and should not spend its time in `free`.
    reaper: mpsc::Sender<Vec<Record>>,
    /// Dedup keys accepted since the last dedup flush: checked in memory, written to the
    /// index in one sorted batch about once a second. Inserting random 64-bit keys into a
    /// B-tree on every group commit rewrote most of the index each time (hundreds of MB/s of
    /// WAL at 30k records/s); batching writes each touched page once a second instead.
    recent: std::collections::HashSet<i64>,
    /// The workspaces' heads covered by `recent` (the index is complete up to the previous
    /// flush's marks; records after a workspace's `dedup_mark` are re-indexed on start).
    recent_marks: HashMap<i64, u64>,
    last_dedup_flush: Instant,
    /// Keys added to `recent` by the transaction in progress (removed if it fails).
    uncommitted: Vec<i64>,
    /// The dedup table new keys go to (0 or 1), and since when (Unix ms).
    dedup_current: i64,
    dedup_started: i64,
}

struct PendingAppend {
    workspace: Uuid,
    records: Vec<NewRecord>,
    reply: oneshot::Sender<Result<AppendResult>>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let mut commits: HashMap<Uuid, (Uuid, Cursor, Counters)> = HashMap::new();
        let mut last_flush = Instant::now();
        let mut last_truncate = Instant::now();
        loop {
            let first = match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            let mut appends = Vec::new();
            let mut flushes = Vec::new();
            let mut stop = None;
            let mut handle = |cmd: Cmd, appends: &mut Vec<PendingAppend>| match cmd {
                Cmd::Append {
                    workspace,
                    records,
                    reply,
                } => appends.push(PendingAppend {
                    workspace,
                    records,
                    reply,
                }),
                Cmd::Commit {
                    destination,
                    workspace,
                    cursor,
                    counters,
                } => {
                    commits.insert(destination, (workspace, cursor, counters));
                }
                Cmd::Flush(tx) => flushes.push(tx),
                Cmd::Stop(tx) => stop = Some(tx),
            };
            if let Some(c) = first {
                handle(c, &mut appends);
            }
            // Group commit: take whatever else is already waiting (bounded).
            let mut n_records: usize = appends.iter().map(|a| a.records.len()).sum();
            while n_records < 20_000 {
                match rx.try_recv() {
                    Ok(c) => {
                        handle(c, &mut appends);
                        n_records = appends.iter().map(|a| a.records.len()).sum();
                    }
                    Err(_) => break,
                }
            }
            let flush_commits = !commits.is_empty()
                && (!appends.is_empty()
                    || !flushes.is_empty()
                    || stop.is_some()
                    || last_flush.elapsed() >= Duration::from_millis(100));
            if !appends.is_empty() || flush_commits {
                let batch: HashMap<Uuid, (Uuid, Cursor, Counters)> = if flush_commits {
                    std::mem::take(&mut commits)
                } else {
                    HashMap::new()
                };
                self.transaction(appends, &batch);
                if flush_commits {
                    last_flush = Instant::now();
                }
            }
            if !self.recent.is_empty()
                && (self.last_dedup_flush.elapsed() >= Duration::from_secs(1)
                    || self.recent.len() >= 200_000
                    || stop.is_some())
            {
                if let Err(e) = self.flush_dedup() {
                    tracing::warn!(error = %e, "writing the dedup index failed; retrying");
                }
                self.last_dedup_flush = Instant::now();
            }
            if last_truncate.elapsed() >= Duration::from_secs(1) {
                // Truncation reads the persisted cursors: write the pending ones first.
                if !commits.is_empty() {
                    let batch = std::mem::take(&mut commits);
                    self.transaction(Vec::new(), &batch);
                    last_flush = Instant::now();
                }
                if let Err(e) = self.truncate() {
                    tracing::warn!(error = %e, "queue truncation failed");
                }
                last_truncate = Instant::now();
            }
            for f in flushes {
                let _ = f.send(());
            }
            if let Some(s) = stop {
                let _ = s.send(());
                return;
            }
        }
    }

    fn transaction(
        &mut self,
        appends: Vec<PendingAppend>,
        commits: &HashMap<Uuid, (Uuid, Cursor, Counters)>,
    ) {
        let appends = self.refuse_exhausted(appends);
        // The queue's state first (keys of new workspaces, the dedup window, cursors): a
        // workspace's key is durable before its first record is.
        if let Err(e) = self.write_state(&appends, commits) {
            tracing::error!(error = %e, "queue write failed");
            let msg = e.to_string();
            for a in appends {
                let _ = a
                    .reply
                    .send(Err(QueueError::Corrupt(format!("append failed: {msg}"))));
            }
            return;
        }
        if appends.is_empty() {
            return;
        }
        // Then the records: per workspace, one write and one fdatasync.
        let mut by_ws: Vec<(Uuid, Vec<PendingAppend>)> = Vec::new();
        for a in appends {
            match by_ws.iter_mut().find(|(w, _)| *w == a.workspace) {
                Some((_, v)) => v.push(a),
                None => by_ws.push((a.workspace, vec![a])),
            }
        }
        let now = now_ms();
        for (workspace, group) in by_ws {
            match self.append_records(workspace, &group, now) {
                Ok((ws, accepted, published, head)) => {
                    self.publish(&ws, published, head);
                    for (a, accepted) in group.into_iter().zip(accepted) {
                        let _ = a.reply.send(Ok(AppendResult { accepted }));
                    }
                }
                Err(e) => {
                    for k in self.uncommitted.drain(..) {
                        self.recent.remove(&k);
                    }
                    tracing::error!(error = %e, %workspace, "queue append failed");
                    let msg = e.to_string();
                    for a in group {
                        let _ = a
                            .reply
                            .send(Err(QueueError::Corrupt(format!("append failed: {msg}"))));
                    }
                }
            }
        }
    }

    /// Dedup-checks a workspace's appends, writes the new records to its segments and syncs
    /// them. Returns what to publish: the state, per append which records were accepted, the
    /// records for the tail, and the new head.
    #[allow(clippy::type_complexity)]
    fn append_records(
        &mut self,
        workspace: Uuid,
        group: &[PendingAppend],
        now: i64,
    ) -> Result<(Arc<WsState>, Vec<Vec<bool>>, Vec<Record>, u64)> {
        self.uncommitted.clear();
        let ws = self
            .shared
            .ws(workspace)
            .ok_or_else(|| QueueError::Corrupt(format!("workspace {workspace} has no state")))?;
        let segs = ws
            .segments()
            .ok_or_else(|| QueueError::Corrupt(format!("workspace {workspace} has no log")))?;
        let mut head = *ws.head.borrow();
        let mut bytes = *ws.bytes.lock().expect("poisoned");
        let first_seq = head + 1;
        let size: usize = group
            .iter()
            .flat_map(|a| &a.records)
            .map(|r| r.body.len() + segments::HEADER)
            .sum();
        let mut data = Vec::with_capacity(size);
        let mut offsets = Vec::new();
        let mut results = Vec::with_capacity(group.len());
        let mut published = Vec::new();
        {
            // One read transaction for the group's lookups in the dedup index.
            let tx = self.conn.transaction()?;
            let current = self.dedup_current;
            let mut sel_cur =
                tx.prepare_cached(&format!("SELECT 1 FROM dedup_{current} WHERE key = ?1"))?;
            let mut sel_prev = tx.prepare_cached(&format!(
                "SELECT 1 FROM dedup_{} WHERE key = ?1",
                1 - current
            ))?;
            for a in group {
                let mut accepted = Vec::with_capacity(a.records.len());
                for r in &a.records {
                    let key = dedup_key(workspace, &r.generation.id);
                    let seen = self.recent.contains(&key)
                        || sel_cur
                            .query_row(params![key], |_| Ok(()))
                            .optional()?
                            .is_some()
                        || sel_prev
                            .query_row(params![key], |_| Ok(()))
                            .optional()?
                            .is_some();
                    accepted.push(!seen);
                    if seen {
                        continue;
                    }
                    self.recent.insert(key);
                    self.uncommitted.push(key);
                    head += 1;
                    bytes += r.body.len() as u64;
                    offsets.push(data.len() as u32);
                    segments::encode(&mut data, head, now, bytes, &r.body);
                    published.push(Record::new(
                        head,
                        now,
                        r.body.len() as u32,
                        r.generation.clone(),
                    ));
                }
                results.push(accepted);
            }
        }
        if !data.is_empty() {
            segs.append(first_seq, &data, &offsets)?;
        }
        *ws.bytes.lock().expect("poisoned") = bytes;
        self.recent_marks
            .insert(ws.key.load(Ordering::Acquire), head);
        self.uncommitted.clear();
        Ok((ws, results, published, head))
    }

    /// One SQLite transaction for what changed besides records: keys of workspaces appending
    /// for the first time (their segments are opened once it commits), the dedup window's
    /// turn, and cursor and counter commits. Nothing to do: no transaction.
    fn write_state(
        &mut self,
        appends: &[PendingAppend],
        commits: &HashMap<Uuid, (Uuid, Cursor, Counters)>,
    ) -> Result<()> {
        let now = now_ms();
        let rotate = now - self.dedup_started >= self.window_ms;
        let unkeyed = |w: &Uuid| {
            self.shared
                .ws(*w)
                .is_none_or(|ws| ws.key.load(Ordering::Acquire) == UNASSIGNED)
        };
        let new_workspaces = appends.iter().any(|a| unkeyed(&a.workspace))
            || commits.values().any(|(w, _, _)| unkeyed(w));
        if !rotate && !new_workspaces && commits.is_empty() {
            return Ok(());
        }
        // Workspaces that get their key in this transaction: reset if it fails anywhere.
        let mut new_keys: Vec<Arc<WsState>> = Vec::new();
        let result = self.write_state_tx(appends, commits, rotate, now, &mut new_keys);
        match result {
            Ok(current) => {
                if rotate {
                    self.dedup_current = current;
                    self.dedup_started = now;
                }
                for ws in new_keys {
                    let (segs, _) = self.shared.open_segments(ws.key.load(Ordering::Acquire))?;
                    *ws.segments.lock().expect("poisoned") = Some(segs);
                }
                Ok(())
            }
            Err(e) => {
                for ws in new_keys {
                    ws.key.store(UNASSIGNED, Ordering::Release);
                }
                Err(e)
            }
        }
    }

    fn write_state_tx(
        &mut self,
        appends: &[PendingAppend],
        commits: &HashMap<Uuid, (Uuid, Cursor, Counters)>,
        rotate: bool,
        now: i64,
        new_keys: &mut Vec<Arc<WsState>>,
    ) -> Result<i64> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut current = self.dedup_current;
        if rotate {
            let next = 1 - current;
            tx.execute(&format!("DELETE FROM dedup_{next}"), [])?;
            tx.execute(
                "UPDATE dedup_meta SET current = ?1, started_at = ?2 WHERE one = 1",
                params![next, now],
            )?;
            current = next;
        }
        for a in appends {
            Self::keyed_ws(&self.shared, &tx, a.workspace, new_keys)?;
        }
        {
            let mut cur = tx.prepare_cached(
                "INSERT INTO cursors (destination_id, ws, seq) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (destination_id) DO UPDATE SET ws = excluded.ws, seq = excluded.seq",
            )?;
            let mut cnt = tx.prepare_cached(
                "INSERT INTO counters (destination_id, data) VALUES (?1, ?2) \
                 ON CONFLICT (destination_id) DO UPDATE SET data = excluded.data",
            )?;
            for (dest, (workspace, cursor, counters)) in commits {
                // A cursor is always written, even before the workspace's first record: a
                // workspace without a key gets one here. (Dropping the cursor of a destination
                // created before its workspace's first append let truncation delete that
                // append before the destination read it.)
                let ws = Self::keyed_ws(&self.shared, &tx, *workspace, new_keys)?;
                let key = ws.key.load(Ordering::Acquire);
                cur.execute(params![dest.to_string(), key, cursor.seq as i64])?;
                let data = serde_json::to_string(counters).expect("counters serialise");
                cnt.execute(params![dest.to_string(), data])?;
            }
        }
        tx.commit()?;
        Ok(current)
    }

    /// Answers, with [`QueueError::Exhausted`], the appends that would not fit the id layout:
    /// a workspace without a key when the keys up to [`MAX_WORKSPACE_KEY`] are all taken, or a
    /// log that would pass [`SEQ_MASK`] records. Checked before the transaction, so that one
    /// such append does not fail the others of its group.
    fn refuse_exhausted(&self, appends: Vec<PendingAppend>) -> Vec<PendingAppend> {
        let mut next_key: Option<i64> = None;
        let mut new_workspaces: Vec<Uuid> = Vec::new();
        let mut heads: HashMap<Uuid, u64> = HashMap::new();
        let mut kept = Vec::with_capacity(appends.len());
        for a in appends {
            let ws = self.shared.ws(a.workspace);
            let unassigned = ws
                .as_ref()
                .is_none_or(|w| w.key.load(Ordering::Acquire) == UNASSIGNED);
            let refusal = if unassigned && !new_workspaces.contains(&a.workspace) {
                let next = match next_key {
                    Some(k) => k,
                    None => {
                        let max: rusqlite::Result<i64> = self.conn.query_row(
                            "SELECT COALESCE(MAX(ws), 0) FROM workspaces",
                            [],
                            |r| r.get(0),
                        );
                        max.map_or(1, |m| m.saturating_add(1))
                    }
                };
                let key = next.saturating_add(new_workspaces.len() as i64);
                next_key = Some(next);
                (key > MAX_WORKSPACE_KEY).then(|| {
                    format!(
                        "all {MAX_WORKSPACE_KEY} workspace keys of the queue are taken; workspace {} cannot get one",
                        a.workspace
                    )
                })
            } else {
                None
            };
            let head = heads
                .entry(a.workspace)
                .or_insert_with(|| ws.as_ref().map_or(0, |w| *w.head.borrow()));
            let refusal = refusal.or_else(|| {
                (*head + a.records.len() as u64 > SEQ_MASK as u64).then(|| {
                    format!(
                        "workspace {} would pass {SEQ_MASK} records, the most one log holds",
                        a.workspace
                    )
                })
            });
            match refusal {
                Some(msg) => {
                    tracing::error!(workspace = %a.workspace, "queue append refused: {msg}");
                    let _ = a.reply.send(Err(QueueError::Exhausted(msg)));
                }
                None => {
                    if unassigned && !new_workspaces.contains(&a.workspace) {
                        new_workspaces.push(a.workspace);
                    }
                    *head += a.records.len() as u64;
                    kept.push(a);
                }
            }
        }
        kept
    }

    /// The workspace's state, with its key assigned (and its row written in `tx`)
    /// if it had none; a newly keyed workspace is pushed to `new_keys`, to be reset if the
    /// transaction rolls back.
    fn keyed_ws(
        shared: &Shared,
        tx: &rusqlite::Transaction<'_>,
        workspace: Uuid,
        new_keys: &mut Vec<Arc<WsState>>,
    ) -> Result<Arc<WsState>> {
        let ws = {
            let mut map = shared.workspaces.lock().expect("poisoned");
            map.entry(workspace)
                .or_insert_with(|| new_ws(UNASSIGNED, 0, 0))
                .clone()
        };
        if ws.key.load(Ordering::Acquire) == UNASSIGNED {
            let key: i64 =
                tx.query_row("SELECT COALESCE(MAX(ws), 0) + 1 FROM workspaces", [], |r| {
                    r.get(0)
                })?;
            tx.execute(
                "INSERT INTO workspaces (ws, workspace_id, head, bytes) VALUES (?1, ?2, 0, 0)",
                params![key, workspace.to_string()],
            )?;
            ws.key.store(key, Ordering::Release);
            new_keys.push(ws.clone());
        }
        Ok(ws)
    }

    /// Makes newly committed records visible: tail first, then the head watch.
    fn publish(&self, ws: &Arc<WsState>, records: Vec<Record>, head: u64) {
        if !records.is_empty() {
            let mut tail = ws.tail.lock().expect("poisoned");
            // The tail must stay contiguous: if a gap appeared (it was cleared), restart it.
            if let Some(last) = tail.records.back()
                && last.seq + 1 != records[0].seq
            {
                let freed = tail.bytes;
                tail.records.clear();
                tail.bytes = 0;
                self.shared.tail_total.fetch_sub(freed, Ordering::Relaxed);
            }
            for r in records {
                tail.bytes += r.size as usize * PARSED_OVERHEAD;
                self.shared
                    .tail_total
                    .fetch_add(r.size as usize * PARSED_OVERHEAD, Ordering::Relaxed);
                tail.records.push_back(r);
            }
            let mut evicted = Vec::new();
            while self.shared.tail_total.load(Ordering::Relaxed) > self.shared.tail_budget {
                match tail.records.pop_front() {
                    Some(r) => {
                        let cost = r.size as usize * PARSED_OVERHEAD;
                        tail.bytes -= cost;
                        self.shared.tail_total.fetch_sub(cost, Ordering::Relaxed);
                        evicted.push(r);
                    }
                    None => break,
                }
            }
            drop(tail);
            if !evicted.is_empty() {
                let _ = self.reaper.send(evicted);
            }
        }
        ws.head.send_replace(head);
    }

    /// Writes the recently accepted keys into the dedup index, sorted, in one transaction, and
    /// records up to where each workspace's log is indexed.
    fn flush_dedup(&mut self) -> Result<()> {
        let mut keys: Vec<i64> = self.recent.iter().copied().collect();
        keys.sort_unstable();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 =
            tx.query_row("SELECT current FROM dedup_meta WHERE one = 1", [], |r| {
                r.get(0)
            })?;
        {
            let mut ins = tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO dedup_{current} (key) VALUES (?1)"
            ))?;
            for k in &keys {
                ins.execute(params![k])?;
            }
            // The head and byte count go along (the segments have the latest; these are what
            // a workspace whose segments are all truncated starts from).
            let mut mark = tx.prepare_cached(
                "UPDATE workspaces SET dedup_mark = ?2, head = MAX(head, ?2), bytes = MAX(bytes, ?3) WHERE ws = ?1",
            )?;
            let bytes: HashMap<i64, u64> = self
                .shared
                .workspaces
                .lock()
                .expect("poisoned")
                .values()
                .map(|w| {
                    (
                        w.key.load(Ordering::Acquire),
                        *w.bytes.lock().expect("poisoned"),
                    )
                })
                .collect();
            for (ws, head) in &self.recent_marks {
                let b = bytes.get(ws).copied().unwrap_or(0);
                mark.execute(params![ws, *head as i64, b as i64])?;
            }
        }
        tx.commit()?;
        self.recent.clear();
        self.recent_marks.clear();
        Ok(())
    }

    /// A live destination of `workspace` that has no cursor row, if any.
    fn uncursored_live(
        shared: &Shared,
        tx: &rusqlite::Transaction<'_>,
        workspace: Uuid,
    ) -> Result<Option<Uuid>> {
        let live: Vec<Uuid> = shared
            .live
            .lock()
            .expect("poisoned")
            .iter()
            .filter(|(_, ws)| **ws == workspace)
            .map(|(d, _)| *d)
            .collect();
        let mut has = tx.prepare_cached("SELECT 1 FROM cursors WHERE destination_id = ?1")?;
        for d in live {
            if has
                .query_row(params![d.to_string()], |_| Ok(()))
                .optional()?
                .is_none()
            {
                return Ok(Some(d));
            }
        }
        Ok(None)
    }

    /// Truncates each workspace's log up to the slowest cursor: readers no longer see those
    /// records, and the segments that hold only such records are deleted.
    fn truncate(&mut self) -> Result<()> {
        let workspaces: Vec<(Uuid, Arc<WsState>)> = self
            .shared
            .workspaces
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect();
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut truncated = Vec::new();
        for (workspace, ws) in workspaces {
            let key = ws.key.load(Ordering::Acquire);
            if key == UNASSIGNED {
                continue;
            }
            let head = *ws.head.borrow();
            let min: Option<i64> = tx.query_row(
                "SELECT MIN(seq) FROM cursors WHERE ws = ?1",
                params![key],
                |r| r.get(0),
            )?;
            // Records not yet in the dedup index are kept: a restart re-indexes them.
            let indexed: i64 = tx.query_row(
                "SELECT dedup_mark FROM workspaces WHERE ws = ?1",
                params![key],
                |r| r.get(0),
            )?;
            // A live destination without a persisted cursor (it cannot happen once
            // `register` has returned, but truncating past one loses accepted records) holds
            // the whole log.
            if let Some(missing) = Self::uncursored_live(&self.shared, &tx, workspace)? {
                tracing::error!(destination = %missing, %workspace, "a live destination has no persisted cursor: not truncating its workspace's log");
                continue;
            }
            let upto = min
                .map(|m| m as u64)
                .unwrap_or(head)
                .min(head)
                .min(indexed as u64);
            if upto <= ws.truncated.load(Ordering::Acquire) {
                continue;
            }
            tx.execute(
                "UPDATE workspaces SET truncated = ?2, head = MAX(head, ?3), bytes = MAX(bytes, ?4) WHERE ws = ?1",
                params![
                    key,
                    upto as i64,
                    head as i64,
                    *ws.bytes.lock().expect("poisoned") as i64
                ],
            )?;
            truncated.push((ws, upto));
        }
        tx.commit()?;
        // Readers stop seeing the records first; then whole segments go.
        for (ws, upto) in truncated {
            ws.truncated.store(upto, Ordering::Release);
            if let Some(segs) = ws.segments() {
                segs.delete_upto(upto)?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Queue for SqliteQueue {
    async fn append(&self, workspace: Uuid, records: Vec<NewRecord>) -> Result<AppendResult> {
        if records.is_empty() {
            return Ok(AppendResult {
                accepted: Vec::new(),
            });
        }
        let (reply, rx) = oneshot::channel();
        self.send(Cmd::Append {
            workspace,
            records,
            reply,
        })?;
        rx.await.map_err(|_| QueueError::Closed)?
    }

    fn head(&self, workspace: Uuid) -> u64 {
        self.shared
            .ws(workspace)
            .map(|w| *w.head.borrow())
            .unwrap_or(0)
    }

    fn subscribe(&self, workspace: Uuid) -> watch::Receiver<u64> {
        let mut map = self.shared.workspaces.lock().expect("poisoned");
        match map.get(&workspace) {
            Some(ws) => ws.head.subscribe(),
            None => {
                // Not in the log yet: its key is assigned on its first append.
                let ws = new_ws(UNASSIGNED, 0, 0);
                let rx = ws.head.subscribe();
                map.insert(workspace, ws);
                rx
            }
        }
    }

    async fn read(&self, workspace: Uuid, after: u64, max: usize) -> Result<Vec<Record>> {
        let Some(ws) = self.shared.ws(workspace) else {
            return Ok(Vec::new());
        };
        {
            let tail = ws.tail.lock().expect("poisoned");
            if let Some(front) = tail.records.front()
                && front.seq <= after + 1
            {
                let start = (after + 1 - front.seq) as usize;
                return Ok(tail.records.iter().skip(start).take(max).cloned().collect());
            }
        }
        self.read_log(&ws, after, u64::MAX, max).await
    }

    // The log is truncated once every cursor has passed a record, but the in-memory tail keeps
    // the newest records until its budget evicts them: the newest held records are the log's
    // part before the tail, then the tail.
    async fn recent(&self, workspace: Uuid, max: usize) -> Result<Vec<Record>> {
        let Some(ws) = self.shared.ws(workspace) else {
            return Ok(Vec::new());
        };
        let after = (*ws.head.borrow()).saturating_sub(max as u64);
        let (tail, tail_front) = {
            let tail = ws.tail.lock().expect("poisoned");
            let front = tail.records.front().map(|r| r.seq);
            let newest: Vec<Record> = tail
                .records
                .iter()
                .filter(|r| r.seq > after)
                .cloned()
                .collect();
            (newest, front)
        };
        if tail_front.is_some_and(|f| f <= after + 1) {
            return Ok(tail);
        }
        let before_tail = tail_front.map_or(u64::MAX, |f| f - 1);
        let mut out = self.read_log(&ws, after, before_tail, max).await?;
        out.extend(tail);
        let extra = out.len().saturating_sub(max);
        out.drain(..extra);
        Ok(out)
    }

    async fn backlog(&self, workspace: Uuid, after: u64) -> Result<Backlog> {
        let Some(ws) = self.shared.ws(workspace) else {
            return Ok(Backlog::default());
        };
        let head = *ws.head.borrow();
        let Some(segs) = ws.segments() else {
            return Ok(Backlog::default());
        };
        if head <= after {
            return Ok(Backlog::default());
        }
        let total_bytes = *ws.bytes.lock().expect("poisoned");
        let from = after.max(ws.truncated.load(Ordering::Acquire)) + 1;
        let first = tokio::task::spawn_blocking(move || segs.header_from(from))
            .await
            .map_err(|_| QueueError::Closed)??;
        Ok(match first {
            Some(h) => Backlog {
                records: head - after,
                bytes: total_bytes.saturating_sub(h.end_bytes - h.len as u64),
                oldest_received_at_ms: Some(h.received_at_ms),
            },
            None => Backlog {
                records: head - after,
                bytes: 0,
                oldest_received_at_ms: None,
            },
        })
    }

    async fn log_usage(&self) -> Result<Vec<(Uuid, LogUsage)>> {
        let workspaces: Vec<(Uuid, Arc<WsState>)> = self
            .shared
            .workspaces
            .lock()
            .expect("poisoned")
            .iter()
            .map(|(id, ws)| (*id, ws.clone()))
            .collect();
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(workspaces.len());
            for (id, ws) in workspaces {
                let Some(segs) = ws.segments() else {
                    continue;
                };
                let head = *ws.head.borrow();
                let total_bytes = *ws.bytes.lock().expect("poisoned");
                let from = ws.truncated.load(Ordering::Acquire) + 1;
                // The bytes from the first record kept to the head (`end_bytes` is cumulative).
                let usage = match segs.header_from(from)? {
                    Some(h) if h.seq <= head => LogUsage {
                        head,
                        records: (head + 1).saturating_sub(h.seq),
                        bytes: total_bytes.saturating_sub(h.end_bytes - h.len as u64),
                    },
                    _ => LogUsage {
                        head,
                        records: 0,
                        bytes: 0,
                    },
                };
                out.push((id, usage));
            }
            Ok(out)
        })
        .await
        .map_err(|_| QueueError::Closed)?
    }

    async fn storage(&self) -> Result<Option<Storage>> {
        let path = self.readers.path.clone();
        let log_dir = self.shared.log_dir.clone();
        tokio::task::spawn_blocking(move || {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
                _ => std::path::PathBuf::from("."),
            };
            let fs = rustix::fs::statvfs(&dir).map_err(std::io::Error::from)?;
            let block = fs.f_frsize.max(1);
            // The state database with its write-ahead log, and every workspace's segments.
            let mut queue_bytes = 0;
            for suffix in ["", "-wal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                if let Ok(m) = std::fs::metadata(&p) {
                    queue_bytes += m.len();
                }
            }
            queue_bytes += segments::dir_bytes(&log_dir)?;
            Ok(Some(Storage {
                total: fs.f_blocks.saturating_mul(block),
                available: fs.f_bavail.saturating_mul(block),
                queue_bytes,
            }))
        })
        .await
        .map_err(|_| QueueError::Closed)?
    }

    async fn cap_point(
        &self,
        workspace: Uuid,
        after: u64,
        max_records: u64,
        max_bytes: u64,
    ) -> Result<Option<u64>> {
        let Some(ws) = self.shared.ws(workspace) else {
            return Ok(None);
        };
        let head = *ws.head.borrow();
        let total_bytes = *ws.bytes.lock().expect("poisoned");
        let mut point = None;
        if head > after && head - after > max_records {
            point = Some(head - max_records);
        }
        let Some(segs) = ws.segments() else {
            return Ok(point);
        };
        // The byte cap: the first record whose end_bytes leaves at most max_bytes after it.
        if total_bytes > max_bytes {
            let threshold = total_bytes - max_bytes;
            let after_now = point.unwrap_or(after);
            // end_bytes grows with seq, so the first record past the threshold is found by
            // binary search over seq: ~20 header reads, where a scan would read the whole
            // backlog (a gigabyte at the cap) every time the cap is checked.
            let by_bytes: Option<u64> = tokio::task::spawn_blocking(move || {
                let (mut lo, mut hi) = (after_now + 1, head);
                let mut found = None;
                while lo <= hi {
                    let mid = lo + (hi - lo) / 2;
                    match segs.header_from(mid)? {
                        Some(h) if h.seq <= head && h.end_bytes >= threshold => {
                            // Only if the bytes before this record are under the threshold:
                            // else the backlog already fits.
                            found = (h.end_bytes - (h.len as u64) < threshold).then_some(h.seq);
                            if mid == 0 {
                                break;
                            }
                            hi = mid - 1;
                        }
                        Some(h) if h.seq <= head => lo = h.seq + 1,
                        _ => break,
                    }
                }
                Ok::<_, QueueError>(found)
            })
            .await
            .map_err(|_| QueueError::Closed)??;
            if let Some(seq) = by_bytes
                && seq > after_now
            {
                point = Some(seq);
            }
        }
        Ok(point)
    }

    async fn cursor(&self, destination: Uuid) -> Result<Option<Cursor>> {
        self.with_reader(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT seq FROM cursors WHERE destination_id = ?1",
                    params![destination.to_string()],
                    |r| r.get::<_, i64>(0),
                )
                .optional()?
                .map(|s| Cursor { seq: s as u64 }))
        })
        .await
    }

    fn commit(&self, destination: Uuid, workspace: Uuid, cursor: Cursor, counters: Counters) {
        let _ = self.send(Cmd::Commit {
            destination,
            workspace,
            cursor,
            counters,
        });
    }

    async fn register(
        &self,
        destination: Uuid,
        workspace: Uuid,
        cursor: Cursor,
        counters: Counters,
    ) -> Result<()> {
        self.shared
            .live
            .lock()
            .expect("poisoned")
            .insert(destination, workspace);
        self.send(Cmd::Commit {
            destination,
            workspace,
            cursor,
            counters,
        })?;
        self.flush().await
    }

    async fn counters(&self, destination: Uuid) -> Result<Counters> {
        self.with_reader(move |conn| {
            let data: Option<String> = conn
                .query_row(
                    "SELECT data FROM counters WHERE destination_id = ?1",
                    params![destination.to_string()],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(data
                .and_then(|d| serde_json::from_str(&d).ok())
                .unwrap_or_default())
        })
        .await
    }

    async fn forget(&self, destination: Uuid) -> Result<()> {
        self.shared
            .live
            .lock()
            .expect("poisoned")
            .remove(&destination);
        self.flush().await?;
        self.with_reader(move |conn| {
            conn.execute(
                "DELETE FROM cursors WHERE destination_id = ?1",
                params![destination.to_string()],
            )?;
            Ok(())
        })
        .await
    }

    async fn add_dead_letters(&self, letters: Vec<DeadLetter>) -> Result<()> {
        self.with_reader(move |conn| {
            let tx = conn.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO dead_letters (destination_id, body, error, status, attempts, failed_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for l in &letters {
                    let body = serde_json::to_vec(&*l.generation).expect("generations serialise");
                    stmt.execute(params![
                        l.destination_id.to_string(),
                        body,
                        l.error,
                        l.status.map(i64::from),
                        l.attempts as i64,
                        l.failed_at_ms
                    ])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn list_dead_letters(
        &self,
        destination: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DeadLetter>, u64)> {
        self.with_reader(move |conn| {
            let d = destination.to_string();
            let total: i64 = conn.query_row("SELECT COUNT(*) FROM dead_letters WHERE destination_id = ?1", params![d], |r| r.get(0))?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, body, error, status, attempts, failed_at, replay FROM dead_letters WHERE destination_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
            )?;
            let rows = stmt.query_map(params![d, limit as i64, offset as i64], dead_letter_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(finish_dead_letter(r?, destination)?);
            }
            Ok((out, total as u64))
        })
        .await
    }

    async fn list_dead_letter_summaries(
        &self,
        destination: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DeadLetterSummary>, u64)> {
        /// The fields a listing shows; the rest of the stored generation is skipped unparsed.
        #[derive(serde::Deserialize)]
        struct Shown {
            id: String,
            model: String,
            created_at: String,
        }
        self.with_reader(move |conn| {
            let d = destination.to_string();
            let total: i64 = conn.query_row(
                "SELECT COUNT(*) FROM dead_letters WHERE destination_id = ?1",
                params![d],
                |r| r.get(0),
            )?;
            let mut stmt = conn.prepare_cached(
                "SELECT id, body, error, status, attempts, failed_at, replay FROM dead_letters WHERE destination_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
            )?;
            let mut rows = stmt.query(params![d, limit as i64, offset as i64])?;
            let mut out = Vec::new();
            // One row at a time: its body is read (borrowed from SQLite) and dropped before the next.
            while let Some(r) = rows.next()? {
                let body = r
                    .get_ref(1)?
                    .as_blob()
                    .map_err(|e| QueueError::Corrupt(format!("stored generation: {e}")))?;
                let shown: Shown = serde_json::from_slice(body)
                    .map_err(|e| QueueError::Corrupt(format!("stored generation: {e}")))?;
                let status: Option<i64> = r.get(3)?;
                out.push(DeadLetterSummary {
                    id: r.get(0)?,
                    generation_id: shown.id,
                    model: shown.model,
                    created_at: shown.created_at,
                    error: r.get(2)?,
                    status: status.and_then(|s| u16::try_from(s).ok()),
                    attempts: r.get::<_, i64>(4)? as u32,
                    failed_at_ms: r.get(5)?,
                    replay_requested: r.get::<_, i64>(6)? != 0,
                });
            }
            Ok((out, total as u64))
        })
        .await
    }

    async fn request_replay(&self, destination: Uuid, ids: Option<Vec<i64>>) -> Result<u64> {
        self.with_reader(move |conn| {
            let d = destination.to_string();
            let n = match ids {
                None => conn.execute("UPDATE dead_letters SET replay = 1 WHERE destination_id = ?1", params![d])?,
                Some(ids) => {
                    let tx = conn.unchecked_transaction()?;
                    let mut n = 0;
                    {
                        let mut stmt = tx.prepare_cached("UPDATE dead_letters SET replay = 1 WHERE destination_id = ?1 AND id = ?2")?;
                        for id in ids {
                            n += stmt.execute(params![d, id])?;
                        }
                    }
                    tx.commit()?;
                    n
                }
            };
            Ok(n as u64)
        })
        .await
    }

    async fn replays(&self, destination: Uuid, max: usize) -> Result<Vec<DeadLetter>> {
        self.with_reader(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, body, error, status, attempts, failed_at, replay FROM dead_letters WHERE destination_id = ?1 AND replay = 1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![destination.to_string(), max as i64], dead_letter_row)?;
            let mut out = Vec::new();
            for r in rows {
                out.push(finish_dead_letter(r?, destination)?);
            }
            Ok(out)
        })
        .await
    }

    async fn delete_dead_letters(&self, ids: Vec<i64>) -> Result<()> {
        self.with_reader(move |conn| {
            let tx = conn.unchecked_transaction()?;
            {
                let mut stmt = tx.prepare_cached("DELETE FROM dead_letters WHERE id = ?1")?;
                for id in ids {
                    stmt.execute(params![id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn expire_dead_letters(&self, before_ms: i64) -> Result<u64> {
        self.with_reader(move |conn| {
            Ok(conn.execute(
                "DELETE FROM dead_letters WHERE failed_at < ?1",
                params![before_ms],
            )? as u64)
        })
        .await
    }

    async fn close(&self) {
        self.stop_checkpoints.store(true, Ordering::Relaxed);
        let tx = self.tx.lock().expect("poisoned").take();
        if let Some(tx) = tx {
            let (stop, rx) = oneshot::channel();
            if tx.send(Cmd::Stop(stop)).is_ok() {
                let _ = rx.await;
            }
        }
    }
}

type DeadLetterRow = (i64, Vec<u8>, String, Option<i64>, i64, i64, i64);

fn dead_letter_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeadLetterRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish_dead_letter(row: DeadLetterRow, destination: Uuid) -> Result<DeadLetter> {
    let (id, body, error, status, attempts, failed_at_ms, replay) = row;
    Ok(DeadLetter {
        id,
        destination_id: destination,
        generation: Arc::new(parse_body(&body)?),
        error,
        status: status.and_then(|s| u16::try_from(s).ok()),
        attempts: attempts as u32,
        failed_at_ms,
        replay_requested: replay != 0,
    })
}
