//! One destination's worker: reads its workspace's log from its cursor, routes each record,
//! batches the kept ones, and sends batches with retries, backoff, dead letters and pausing.
//!
//! Progress is tracked in *units*: each dispatched batch covers every seq up to the last record
//! it holds (records filtered or sampled out before it included). The cursor advances over the
//! contiguous prefix of completed units, so a batch stuck in retries holds the cursor (and the
//! log) back but never the other batches, and a restart resumes at the cursor: at-least-once.
//! At most `concurrency` batches are in flight, retries included, so a dead destination holds a
//! bounded amount of memory while its backlog waits on disk, up to its outage budget
//! ([`crate::budget`]): past it, the oldest pending records (the waiting batches first) are
//! dropped and counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tracecast_exporters::{Exporter, ItemOutcome, Outcome, Payload};
use tracecast_model::destination::Destination;
use tracecast_model::trace::{TraceOptions, TraceView};
use uuid::Uuid;

use crate::budget::Budget;
use crate::history::{History, Tally};
use crate::options::EngineOptions;
use crate::queue::{Counters, Cursor, DeadLetter, PausedState, Queue, Record, RetryState};
use crate::route::{CompiledRoute, Decision};

/// Everything a worker needs to know about its destination, replaced as a whole on change.
pub(crate) struct DestConfig {
    pub destination: Destination,
    pub workspace_enabled: bool,
    pub deleted: bool,
    pub route: CompiledRoute,
    pub opts: TraceOptions,
    pub exporter: Result<Arc<dyn Exporter>, String>,
    /// Bumped on every change, so in-flight batches re-encode after a change of privacy mode
    /// or metadata groups.
    pub version: u64,
}

impl DestConfig {
    pub fn active(&self) -> bool {
        !self.deleted && self.destination.enabled && self.workspace_enabled
    }
}

/// Why a destination is not sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub status: Option<u16>,
    pub message: String,
    pub since_ms: i64,
}

/// Shared state of a running destination.
pub(crate) struct Runtime {
    pub id: Uuid,
    pub workspace: Uuid,
    pub type_label: &'static str,
    pub config: watch::Receiver<Arc<DestConfig>>,
    pub counters: Mutex<Counters>,
    pub pause: Mutex<Option<Pause>>,
    pub resume: Notify,
    pub replay: Notify,
    /// Signalled when a batch is delivered: batches waiting out a retry delay try again at
    /// once, so a destination that comes back drains without waiting for each batch's backoff.
    pub recovered: Notify,
    /// Committed cursor.
    pub cursor: AtomicU64,
    /// Recent activity per minute and recent errors (the dashboard's charts).
    pub history: Arc<History>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Runtime {
    fn count(&self, f: impl FnOnce(&mut Counters)) {
        let (before, after) = {
            let mut c = self.counters.lock().expect("poisoned");
            let before = Tally::of(&c);
            f(&mut c);
            (before, Tally::of(&c))
        };
        if before != after {
            self.history.record(now_ms(), before, after);
        }
    }

    fn record_error(&self, status: Option<u16>, message: &str) {
        let now = now_ms();
        self.count(|c| {
            c.last_error_at_ms = Some(now);
            c.last_error_status = status;
            c.last_error_message = Some(message.to_string());
        });
        self.history.error(now, status, message);
    }

    fn set_pause(&self, status: Option<u16>, message: String) {
        let since_ms = now_ms();
        {
            let mut p = self.pause.lock().expect("poisoned");
            if p.is_none() {
                tracing::warn!(destination = %self.id, %message, "destination paused");
            }
            *p = Some(Pause {
                status,
                message: message.clone(),
                since_ms,
            });
        }
        // Persisted too, for the status answered by the other nodes of a cluster.
        self.count(|c| {
            c.paused = Some(PausedState {
                status,
                message,
                since_ms,
            })
        });
    }

    /// Clears a pause (new config or a successful probe) and wakes the waiting batches.
    pub fn unpause(&self) {
        let was = self.pause.lock().expect("poisoned").take();
        if was.is_some() {
            tracing::info!(destination = %self.id, "destination resumed");
            self.count(|c| c.paused = None);
        }
        self.resume.notify_waiters();
    }

    /// A batch failed and waits `delay` before its retry number `attempts + 1`: the persisted
    /// retry state keeps the largest attempt count, the latest not-before time and the earliest
    /// first failure of the destination's failing batches.
    fn note_retry(&self, attempts: u32, delay: Duration, first_failure: Instant) {
        let now = now_ms();
        let not_before_ms = now + delay.as_millis() as i64;
        let first_failure_ms = now - first_failure.elapsed().as_millis() as i64;
        self.count(|c| {
            let r = c.retry.get_or_insert(RetryState {
                attempts,
                not_before_ms,
                first_failure_ms,
            });
            r.attempts = r.attempts.max(attempts);
            r.not_before_ms = r.not_before_ms.max(not_before_ms);
            r.first_failure_ms = r.first_failure_ms.min(first_failure_ms);
        });
    }

    /// A batch got through, or a failing one was given up: no retry state to carry over.
    fn clear_retry(&self) {
        self.count(|c| c.retry = None);
    }

    pub fn paused(&self) -> Option<Pause> {
        self.pause.lock().expect("poisoned").clone()
    }
}

/// Progress units (see the module docs).
struct Progress {
    units: BTreeMap<u64, bool>,
    covered: u64,
    cursor: u64,
}

impl Progress {
    fn new(at: u64) -> Self {
        Progress {
            units: BTreeMap::new(),
            covered: at,
            cursor: at,
        }
    }

    fn add(&mut self, upto: u64, done: bool) {
        if upto > self.covered {
            self.units.insert(upto, done);
            self.covered = upto;
        }
    }

    fn complete(&mut self, unit: u64) {
        if let Some(d) = self.units.get_mut(&unit) {
            *d = true;
        }
    }

    fn advance(&mut self) -> bool {
        let mut moved = false;
        while let Some((&k, &done)) = self.units.first_key_value() {
            if !done {
                break;
            }
            self.cursor = k;
            self.units.pop_first();
            moved = true;
        }
        moved
    }
}

/// A log batch in flight (sent, or waiting out a retry).
struct Sending {
    task: tokio::task::AbortHandle,
    /// The seq of its first record.
    first: u64,
    records: usize,
}

struct Worker {
    rt: Arc<Runtime>,
    queue: Arc<dyn Queue>,
    opts: Arc<EngineOptions>,
    progress: Progress,
    read_pos: u64,
    batch: Vec<Record>,
    batch_bytes: usize,
    batch_since: Option<Instant>,
    inflight: JoinSet<Option<u64>>,
    /// The log batches in flight by unit, for the budget to drop them (see [`Worker::drop_through`]).
    sending: BTreeMap<u64, Sending>,
    budget: Arc<Budget>,
    replaying: bool,
    replay_pending: bool,
    last_commit: Instant,
    last_cap_check: Instant,
    /// The retry state persisted before this worker started (a restart, or a takeover from
    /// another node): the first batches it sends carry on from it (see [`RetryState`]).
    carry: Option<RetryState>,
    carry_left: usize,
    /// Consecutive reads that found nothing although the cursor is behind the head (records
    /// missing from the log): each one backs off, the second one skips the gap.
    empty_reads: u32,
}

/// Runs a destination until it is deleted or `shutdown` flips.
pub(crate) async fn run(
    rt: Arc<Runtime>,
    queue: Arc<dyn Queue>,
    opts: Arc<EngineOptions>,
    budget: Arc<Budget>,
    start: u64,
    mut shutdown: watch::Receiver<bool>,
) {
    let opts_concurrency = opts.concurrency;
    let mut w = Worker {
        rt: rt.clone(),
        queue: queue.clone(),
        opts,
        progress: Progress::new(start),
        read_pos: start,
        batch: Vec::new(),
        batch_bytes: 0,
        batch_since: None,
        inflight: JoinSet::new(),
        sending: BTreeMap::new(),
        budget,
        replaying: false,
        replay_pending: true,
        last_commit: Instant::now(),
        last_cap_check: Instant::now() - Duration::from_secs(60),
        carry: rt.counters.lock().expect("poisoned").retry,
        carry_left: opts_concurrency,
        empty_reads: 0,
    };
    let mut head_rx = queue.subscribe(rt.workspace);
    let mut cfg_rx = rt.config.clone();
    loop {
        if *shutdown.borrow() {
            w.commit(true);
            return;
        }
        let cfg = cfg_rx.borrow_and_update().clone();
        if cfg.deleted {
            w.discard_all();
            w.commit(true);
            return;
        }
        if !cfg.active() {
            w.discard_all();
            w.commit(true);
            tokio::select! {
                _ = cfg_rx.changed() => {}
                _ = head_rx.changed() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        while let Some(done) = w.inflight.try_join_next() {
            w.finished(done);
        }
        w.enforce_cap().await;
        let head = w.queue.head(rt.workspace);
        let can_send = cfg.exporter.is_ok() && rt.paused().is_none();
        let room = w.inflight.len() < w.opts.concurrency;
        let max_items = cfg
            .exporter
            .as_ref()
            .map(|e| e.limits().max_items)
            .unwrap_or(500)
            .min(w.opts.batch_max_items)
            .max(1);
        if can_send && room && w.read_pos < head && w.batch.len() < max_items {
            if let Err(e) = w.fill(&cfg, max_items).await {
                tracing::error!(destination = %rt.id, error = %e, "reading the queue failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            w.commit(false);
            continue;
        }
        if can_send
            && room
            && !w.batch.is_empty()
            && (w.batch.len() >= max_items || w.linger_expired())
        {
            w.dispatch();
            continue;
        }
        if can_send && !w.replaying && w.inflight.len() < w.opts.concurrency && w.replay_pending {
            w.start_replay(&cfg).await;
        }
        w.commit(false);
        let linger_at = w.batch_since.map(|s| s + w.opts.linger());
        let room_for_linger = room && can_send;
        tokio::select! {
            Some(done) = w.inflight.join_next(), if !w.inflight.is_empty() => w.finished(done),
            _ = head_rx.changed() => {}
            _ = cfg_rx.changed() => {}
            _ = rt.replay.notified() => { w.replay_pending = true; }
            _ = async { match linger_at { Some(t) => tokio::time::sleep_until(t.into()).await, None => std::future::pending().await } }, if room_for_linger => {}
            _ = rt.resume.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.changed() => {}
        }
    }
}

impl Worker {
    fn linger_expired(&self) -> bool {
        self.batch_since
            .is_some_and(|s| s.elapsed() >= self.opts.linger())
    }

    /// Reads and routes records until the batch is full or the log is exhausted.
    async fn fill(&mut self, cfg: &Arc<DestConfig>, max_items: usize) -> crate::queue::Result<()> {
        let want = (max_items - self.batch.len()).max(64);
        let head = self.queue.head(self.rt.workspace);
        let records = self
            .queue
            .read(self.rt.workspace, self.read_pos, want)
            .await?;
        let Some(first) = records.first() else {
            // Behind the head with nothing to read: the records are gone from the log. Back
            // off (never spin); if they are still missing on the next read, skip them.
            if self.read_pos < head {
                self.empty_reads += 1;
                if self.empty_reads >= 2 {
                    self.skip_gap(head);
                }
                let backoff = Duration::from_millis(100 << self.empty_reads.min(4))
                    .min(Duration::from_secs(1));
                tokio::time::sleep(backoff).await;
            }
            return Ok(());
        };
        self.empty_reads = 0;
        if first.seq > self.read_pos + 1 {
            self.skip_gap(first.seq - 1);
        }
        let max_bytes = cfg
            .exporter
            .as_ref()
            .map(|e| e.limits().max_bytes)
            .unwrap_or(usize::MAX)
            .min(self.opts.batch_max_bytes);
        let (mut received, mut filtered, mut sampled, mut discarded) = (0u64, 0u64, 0u64, 0u64);
        for r in records {
            self.read_pos = r.seq;
            received += 1;
            match cfg.route.decide(&r.generation, cfg.workspace_enabled) {
                Decision::Deliver => {
                    self.batch_bytes += r.size as usize;
                    self.batch.push(r);
                    self.batch_since.get_or_insert_with(Instant::now);
                    if self.batch.len() >= max_items || self.batch_bytes >= max_bytes * 4 / 5 {
                        self.dispatch();
                        if self.inflight.len() >= self.opts.concurrency {
                            break;
                        }
                    }
                }
                Decision::SampledOut => sampled += 1,
                Decision::Disabled => discarded += 1,
                Decision::WrongRegion | Decision::KeyNotAllowed | Decision::Filtered => {
                    filtered += 1
                }
            }
        }
        if self.batch.is_empty() {
            self.progress.add(self.read_pos, true);
        }
        self.rt.count(|c| {
            c.received += received;
            c.filtered += filtered;
            c.sampled_out += sampled;
            c.discarded += discarded;
        });
        let ty = self.rt.type_label;
        metrics::counter!("tracecast_delivery_records_total", "type" => ty, "outcome" => "filtered").increment(filtered);
        metrics::counter!("tracecast_delivery_records_total", "type" => ty, "outcome" => "sampled_out").increment(sampled);
        Ok(())
    }

    /// Records after the read position up to `to` are missing from the log (it was truncated
    /// past this destination's cursor): count them as dropped, say so, and go on after them.
    fn skip_gap(&mut self, to: u64) {
        if to <= self.read_pos {
            return;
        }
        let n = to - self.read_pos;
        tracing::error!(
            destination = %self.rt.id,
            from = self.read_pos + 1,
            to,
            dropped = n,
            "records missing from the queue: counting them as dropped and skipping them"
        );
        self.rt.count(|c| c.dropped += n);
        metrics::counter!("tracecast_delivery_records_total", "type" => self.rt.type_label, "outcome" => "dropped").increment(n);
        metrics::counter!("tracecast_delivery_dropped_total", "destination" => self.rt.id.to_string(), "type" => self.rt.type_label).increment(n);
        self.read_pos = to;
        if self.batch.is_empty() {
            self.progress.add(to, true);
        }
        self.empty_reads = 0;
    }

    fn dispatch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let items = std::mem::take(&mut self.batch);
        self.batch_bytes = 0;
        self.batch_since = None;
        // The unit covers everything read so far: this batch's records and any filtered or
        // sampled-out ones read while it lingered.
        let unit = self.read_pos;
        self.progress.add(unit, false);
        let carried = self.carried();
        let (first, records) = (items[0].seq, items.len());
        let task = self.inflight.spawn(deliver(
            self.rt.clone(),
            self.queue.clone(),
            self.opts.clone(),
            items,
            None,
            Some(unit),
            carried,
        ));
        self.sending.insert(
            unit,
            Sending {
                task,
                first,
                records,
            },
        );
    }

    /// The carried-over retry state for the next batch: the first `concurrency` batches after
    /// the start take it, until one gets through.
    fn carried(&mut self) -> Option<RetryState> {
        let c = self.carry?;
        if self.carry_left == 0 || self.rt.counters.lock().expect("poisoned").retry.is_none() {
            self.carry = None;
            return None;
        }
        self.carry_left -= 1;
        Some(c)
    }

    fn finished(&mut self, done: Result<Option<u64>, tokio::task::JoinError>) {
        match done {
            Ok(Some(unit)) => {
                self.sending.remove(&unit);
                self.progress.complete(unit);
            }
            Ok(None) => {
                self.replaying = false;
                self.replay_pending = true;
            }
            Err(e) if e.is_cancelled() => {}
            Err(e) => {
                tracing::error!(destination = %self.rt.id, error = %e, "delivery task failed")
            }
        }
    }

    /// Dead letters marked for replay go out as their own batch, one at a time.
    async fn start_replay(&mut self, cfg: &Arc<DestConfig>) {
        self.replay_pending = false;
        let max = cfg
            .exporter
            .as_ref()
            .map(|e| e.limits().max_items)
            .unwrap_or(500)
            .min(self.opts.batch_max_items);
        match self.queue.replays(self.rt.id, max).await {
            Ok(letters) if !letters.is_empty() => {
                let ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
                let items: Vec<Record> = letters
                    .into_iter()
                    .map(|l| Record::new(0, now_ms(), 0, l.generation))
                    .collect();
                self.replaying = true;
                self.inflight.spawn(deliver(
                    self.rt.clone(),
                    self.queue.clone(),
                    self.opts.clone(),
                    items,
                    Some(ids),
                    None,
                    None,
                ));
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(destination = %self.rt.id, error = %e, "reading dead letters failed")
            }
        }
    }

    /// Drops everything queued and not in flight (destination disabled or deleted).
    fn discard_all(&mut self) {
        self.inflight.abort_all();
        self.sending.clear();
        let head = self.queue.head(self.rt.workspace);
        let from = self.progress.cursor;
        if head > from {
            let n = head - from;
            self.rt.count(|c| c.discarded += n);
            metrics::counter!("tracecast_delivery_records_total", "type" => self.rt.type_label, "outcome" => "discarded").increment(n);
        }
        self.batch.clear();
        self.batch_bytes = 0;
        self.batch_since = None;
        self.progress = Progress::new(head.max(from));
        self.read_pos = self.progress.cursor;
    }

    /// The outage budget ([`crate::budget`]) and `max_backlog_records`: past them, the oldest
    /// pending records are dropped and counted. Checked about once a second.
    async fn enforce_cap(&mut self) {
        if self.last_cap_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last_cap_check = Instant::now();
        let max_bytes = self.budget.allowance(self.rt.workspace);
        let max_records = self.opts.max_backlog_records;
        if max_bytes.is_none() && max_records.is_none() {
            return;
        }
        // Measured from the cursor, not the read position: the batches waiting out retries hold
        // the log back from there, and they are the oldest records.
        let from = self.progress.cursor;
        let point = self
            .queue
            .cap_point(
                self.rt.workspace,
                from,
                max_records.unwrap_or(u64::MAX),
                max_bytes.unwrap_or(u64::MAX),
            )
            .await;
        match point {
            Ok(Some(p)) if p > from => self.drop_through(p, max_bytes),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(destination = %self.rt.id, error = %e, "checking the backlog against its budget failed")
            }
        }
    }

    /// Drops every pending record up to seq `through`, the oldest first: the batches in flight
    /// that start there (whole: they are stuck in retries, or the budget would not be reached;
    /// one being sent at this very moment may still arrive), the batch being filled, and the
    /// records not read yet. Each one is counted in `dropped`. The cursor then moves past them
    /// and the log is truncated: without dropping the waiting batches, the cursor would stay
    /// behind them and the log would keep growing past the budget.
    fn drop_through(&mut self, mut through: u64, budget: Option<u64>) {
        let mut dropped = 0u64;
        let stuck: Vec<u64> = self
            .sending
            .iter()
            .filter(|(_, b)| b.first <= through)
            .map(|(unit, _)| *unit)
            .collect();
        for unit in stuck {
            let b = self.sending.remove(&unit).expect("listed above");
            b.task.abort();
            dropped += b.records as u64;
            self.progress.complete(unit);
            through = through.max(unit);
        }
        if self.batch.first().is_some_and(|r| r.seq <= through) {
            dropped += self.batch.len() as u64;
            self.batch.clear();
            self.batch_bytes = 0;
            self.batch_since = None;
            through = through.max(self.read_pos);
        }
        if through > self.read_pos {
            dropped += through - self.read_pos;
            self.read_pos = through;
        }
        if self.batch.is_empty() {
            self.progress.add(self.read_pos, true);
        }
        if dropped == 0 {
            return;
        }
        tracing::warn!(
            destination = %self.rt.id,
            dropped,
            budget_bytes = budget,
            "the backlog passed its outage budget: dropped its oldest records"
        );
        self.rt.count(|c| c.dropped += dropped);
        let ty = self.rt.type_label;
        metrics::counter!("tracecast_delivery_records_total", "type" => ty, "outcome" => "dropped")
            .increment(dropped);
        metrics::counter!("tracecast_delivery_dropped_total", "destination" => self.rt.id.to_string(), "type" => ty).increment(dropped);
    }

    fn commit(&mut self, force: bool) {
        let moved = self.progress.advance();
        if !(force
            || (moved && self.last_commit.elapsed() >= Duration::from_millis(100))
            || self.last_commit.elapsed() >= Duration::from_secs(1))
        {
            return;
        }
        self.last_commit = Instant::now();
        let cursor = self.progress.cursor;
        self.rt.cursor.store(cursor, Ordering::Relaxed);
        let counters = self.rt.counters.lock().expect("poisoned").clone();
        self.queue.commit(
            self.rt.id,
            self.rt.workspace,
            Cursor { seq: cursor },
            counters,
        );
        let depth = self.queue.head(self.rt.workspace).saturating_sub(cursor);
        metrics::gauge!("tracecast_queue_depth", "destination" => self.rt.id.to_string(), "type" => self.rt.type_label).set(depth as f64);
    }
}

/// The records of a batch in flight. While the batch waits (a retry delay, or a destination
/// paused for its credentials) it keeps only its encoded payload and where its records are in
/// the log: the parsed generations pinned by a dead destination's in-flight batches were the
/// largest part of peak memory with one destination down (bench B2). They are read back from
/// the log when needed again (to re-encode after a config change, to dead-letter, or to split a
/// partial answer); the log keeps them, since the cursor cannot pass an unfinished batch.
struct Batch {
    records: Option<Vec<Record>>,
    /// (seq, received_at_ms) of each record, in order.
    positions: Vec<(u64, i64)>,
}

impl Batch {
    fn new(records: Vec<Record>) -> Self {
        Batch {
            positions: records.iter().map(|r| (r.seq, r.received_at_ms)).collect(),
            records: Some(records),
        }
    }

    fn len(&self) -> usize {
        self.positions.len()
    }

    /// Drops the parsed records of a log batch (replayed dead letters are not in the log and
    /// stay loaded).
    fn park(&mut self) {
        if self.positions.iter().all(|(seq, _)| *seq != 0) {
            self.records = None;
        }
    }

    /// The records, read back from the log if parked.
    async fn load(&mut self, rt: &Runtime, queue: &Arc<dyn Queue>) -> &[Record] {
        if self.records.is_none() {
            let (first, last) = (self.positions[0].0, self.positions[self.len() - 1].0);
            let mut out = Vec::with_capacity(self.len());
            match queue
                .read(rt.workspace, first - 1, (last - first + 1) as usize)
                .await
            {
                Ok(records) => {
                    // Both in seq order: keep the records whose seq is one of the batch's.
                    let mut i = 0;
                    for r in records {
                        while i < self.positions.len() && self.positions[i].0 < r.seq {
                            i += 1;
                        }
                        if i < self.positions.len() && self.positions[i].0 == r.seq {
                            out.push(r);
                            i += 1;
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(destination = %rt.id, error = %e, "reading a parked batch back failed")
                }
            }
            if out.len() != self.len() {
                tracing::error!(destination = %rt.id, expected = self.len(), found = out.len(), "records of a waiting batch are missing from the log");
                self.positions = out.iter().map(|r| (r.seq, r.received_at_ms)).collect();
            }
            self.records = Some(out);
        }
        self.records.as_deref().expect("loaded above")
    }
}

/// Delivers one batch to the end: delivered, dead-lettered, or discarded because the
/// destination went away. Returns the batch's progress unit (`None` for a replay batch).
async fn deliver(
    rt: Arc<Runtime>,
    queue: Arc<dyn Queue>,
    opts: Arc<EngineOptions>,
    items: Vec<Record>,
    replay_ids: Option<Vec<i64>>,
    unit: Option<u64>,
    carried: Option<RetryState>,
) -> Option<u64> {
    let mut batch = Batch::new(items);
    let mut attempts: u32 = carried.map_or(0, |r| r.attempts);
    let mut first_failure: Option<Instant> = carried.map(|r| {
        let ago = Duration::from_millis((now_ms() - r.first_failure_ms).max(0) as u64);
        Instant::now().checked_sub(ago).unwrap_or_else(Instant::now)
    });
    // Carried over from before a restart or takeover: honour the wait the failing destination
    // asked for (its `Retry-After`, or the backoff) before sending anything.
    if let Some(r) = carried {
        let wait = r.not_before_ms - now_ms();
        if wait > 0 {
            batch.park();
            wait_to_retry(&rt, Duration::from_millis(wait as u64)).await;
        }
    }
    let mut encoded: Option<(u64, Payload)> = None;
    let ty = rt.type_label;
    let finish = |queue: Arc<dyn Queue>, ids: Option<Vec<i64>>| async move {
        if let Some(ids) = ids
            && let Err(e) = queue.delete_dead_letters(ids).await
        {
            tracing::error!(error = %e, "removing replayed dead letters failed");
        }
    };
    loop {
        let cfg = rt.config.borrow().clone();
        if !cfg.active() {
            let n = batch.len() as u64;
            rt.count(|c| c.discarded += n);
            return unit;
        }
        // Paused for credentials: wait for new config, or probe after the interval.
        if rt.paused().is_some() {
            let probe = tokio::time::sleep(Duration::from_secs(opts.auth_probe_secs));
            tokio::select! {
                _ = rt.resume.notified() => continue,
                _ = probe => {}
            }
        }
        let exporter = match &cfg.exporter {
            Ok(e) => e.clone(),
            Err(msg) => {
                rt.set_pause(None, msg.clone());
                continue;
            }
        };
        if encoded.as_ref().is_none_or(|(v, _)| *v != cfg.version) {
            let items = batch.load(&rt, &queue).await;
            if items.is_empty() {
                return unit;
            }
            match encode(exporter.as_ref(), items, cfg.opts) {
                Ok(p) => encoded = Some((cfg.version, p)),
                Err(e) => {
                    dead_letter(&rt, &queue, items, &e.to_string(), None, attempts).await;
                    finish(queue, replay_ids).await;
                    return unit;
                }
            }
        }
        let payload = &encoded.as_ref().expect("encoded above").1;
        let outcome = exporter.send(payload).await;
        match outcome {
            Outcome::Delivered => {
                delivered(&rt, &batch.positions);
                rt.clear_retry();
                rt.recovered.notify_waiters();
                if rt.paused().is_some() {
                    rt.unpause();
                }
                finish(queue, replay_ids).await;
                return unit;
            }
            Outcome::Rejected { status, error } => {
                rt.record_error(status, &error);
                let items = batch.load(&rt, &queue).await;
                dead_letter(&rt, &queue, items, &error, status, attempts + 1).await;
                finish(queue, replay_ids).await;
                return unit;
            }
            Outcome::Unauthorized { status, error } => {
                rt.record_error(Some(status), &error);
                rt.count(|c| c.failed_attempts += 1);
                metrics::counter!("tracecast_delivery_failed_attempts_total", "type" => ty)
                    .increment(1);
                let why = if matches!(status, 401 | 403) {
                    "credentials rejected"
                } else {
                    "the destination refused delivery"
                };
                rt.set_pause(Some(status), format!("{why} ({status}): {error}"));
                batch.park();
            }
            Outcome::Retry {
                status,
                error,
                retry_after,
            } => {
                rt.record_error(status, &error);
                rt.count(|c| c.failed_attempts += 1);
                metrics::counter!("tracecast_delivery_failed_attempts_total", "type" => ty)
                    .increment(1);
                attempts += 1;
                let since = *first_failure.get_or_insert_with(Instant::now);
                if attempts >= opts.max_attempts
                    || since.elapsed() >= Duration::from_secs(opts.max_retry_age_secs)
                {
                    let msg = format!("gave up after {attempts} attempts: {error}");
                    rt.clear_retry();
                    let items = batch.load(&rt, &queue).await;
                    dead_letter(&rt, &queue, items, &msg, status, attempts).await;
                    finish(queue, replay_ids).await;
                    return unit;
                }
                batch.park();
                let delay = opts.backoff(attempts, retry_after);
                rt.note_retry(attempts, delay, since);
                wait_to_retry(&rt, delay).await;
            }
            Outcome::Partial(results) => {
                let mut retry = Vec::new();
                let mut ok = Vec::new();
                let mut rejected: Vec<(Record, String)> = Vec::new();
                let mut last_retry_error = None;
                batch.load(&rt, &queue).await;
                let items = batch.records.take().unwrap_or_default();
                for (item, res) in items.into_iter().zip(
                    results
                        .into_iter()
                        .chain(std::iter::repeat(ItemOutcome::Delivered)),
                ) {
                    match res {
                        ItemOutcome::Delivered => ok.push(item),
                        ItemOutcome::Retry { error } => {
                            last_retry_error = Some(error);
                            retry.push(item);
                        }
                        ItemOutcome::Rejected { error } => rejected.push((item, error)),
                    }
                }
                let ok: Vec<(u64, i64)> = ok.iter().map(|r| (r.seq, r.received_at_ms)).collect();
                delivered(&rt, &ok);
                if !ok.is_empty() {
                    rt.clear_retry();
                    rt.recovered.notify_waiters();
                }
                for (item, error) in rejected {
                    rt.record_error(None, &error);
                    dead_letter(
                        &rt,
                        &queue,
                        std::slice::from_ref(&item),
                        &error,
                        None,
                        attempts + 1,
                    )
                    .await;
                }
                if retry.is_empty() {
                    finish(queue, replay_ids).await;
                    return unit;
                }
                let error = last_retry_error.unwrap_or_default();
                rt.record_error(None, &error);
                rt.count(|c| c.failed_attempts += 1);
                attempts += 1;
                batch = Batch::new(retry);
                encoded = None;
                let since = *first_failure.get_or_insert_with(Instant::now);
                if attempts >= opts.max_attempts
                    || since.elapsed() >= Duration::from_secs(opts.max_retry_age_secs)
                {
                    rt.clear_retry();
                    let items = batch.load(&rt, &queue).await;
                    dead_letter(
                        &rt,
                        &queue,
                        items,
                        &format!("gave up after {attempts} attempts: {error}"),
                        None,
                        attempts,
                    )
                    .await;
                    finish(queue, replay_ids).await;
                    return unit;
                }
                batch.park();
                let delay = opts.backoff(attempts, None);
                rt.note_retry(attempts, delay, since);
                wait_to_retry(&rt, delay).await;
            }
        }
    }
}

/// Waits out a retry delay. A config change (new endpoint or credentials) or another batch
/// of the destination getting through ends the wait early.
async fn wait_to_retry(rt: &Runtime, delay: Duration) {
    let mut cfg_rx = rt.config.clone();
    // A clone starts at the runtime receiver's version, which never advances: mark the current
    // config seen, or an old change would end every wait at once.
    cfg_rx.borrow_and_update();
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = cfg_rx.changed() => {}
        _ = rt.recovered.notified() => {}
    }
}

/// Encodes a batch, through the shared per-record fragment cache when the exporter supports it.
fn encode(
    exporter: &dyn Exporter,
    items: &[Record],
    opts: TraceOptions,
) -> Result<Payload, tracecast_exporters::ExportError> {
    match exporter.fragments() {
        Some(fe) => {
            let key = {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                fe.key().hash(&mut h);
                opts.hash(&mut h);
                h.finish()
            };
            let mut frags = Vec::with_capacity(items.len());
            for r in items {
                frags.push(r.fragments.get_or_try_insert(key, || {
                    fe.fragment(&TraceView::new(&r.generation, opts))
                })?);
            }
            Ok(fe.assemble(&frags))
        }
        None => {
            let views: Vec<TraceView<'_>> = items
                .iter()
                .map(|r| TraceView::new(&r.generation, opts))
                .collect();
            exporter.encode(&views)
        }
    }
}

/// Counts delivered records; `positions` are their (seq, received_at_ms).
fn delivered(rt: &Runtime, positions: &[(u64, i64)]) {
    if positions.is_empty() {
        return;
    }
    let now = now_ms();
    let n = positions.len() as u64;
    rt.count(|c| {
        c.delivered += n;
        c.last_success_at_ms = Some(now);
    });
    let ty = rt.type_label;
    metrics::counter!("tracecast_delivery_records_total", "type" => ty, "outcome" => "delivered")
        .increment(n);
    let hist = metrics::histogram!("tracecast_delivery_latency_seconds", "type" => ty);
    for (seq, received_at_ms) in positions {
        if *seq != 0 {
            hist.record((now - received_at_ms).max(0) as f64 / 1000.0);
        }
    }
}

/// Stores dead letters, retrying until it succeeds (a full disk, a queue server away): the batch
/// stays unfinished meanwhile, so the cursor cannot pass its records and a restart delivers them
/// again. A dead letter that could not be stored is never counted as one.
async fn store_dead_letters(rt: &Runtime, queue: &Arc<dyn Queue>, letters: Vec<DeadLetter>) {
    let mut wait = Duration::from_millis(500);
    loop {
        match queue.add_dead_letters(letters.clone()).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(destination = %rt.id, error = %e, retry_in_ms = wait.as_millis() as u64, "storing dead letters failed; their records stay queued");
                metrics::counter!("tracecast_dead_letter_store_failures_total", "type" => rt.type_label).increment(1);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn dead_letter(
    rt: &Runtime,
    queue: &Arc<dyn Queue>,
    items: &[Record],
    error: &str,
    status: Option<u16>,
    attempts: u32,
) {
    let now = now_ms();
    let letters = items
        .iter()
        .map(|r| DeadLetter {
            id: 0,
            destination_id: rt.id,
            generation: r.generation.clone(),
            error: error.to_string(),
            status,
            attempts,
            failed_at_ms: now,
            replay_requested: false,
        })
        .collect();
    let n = items.len() as u64;
    store_dead_letters(rt, queue, letters).await;
    tracing::warn!(destination = %rt.id, records = n, %error, "dead-lettered");
    rt.count(|c| c.dead_lettered += n);
    metrics::counter!("tracecast_delivery_records_total", "type" => rt.type_label, "outcome" => "dead_lettered").increment(n);
}
