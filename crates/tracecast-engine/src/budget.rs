//! The outage budget: how much log the backlogs of destinations that are down or behind may
//! keep on disk, and what happens when they reach it.
//!
//! A workspace's log is shared by its destinations and is truncated up to the slowest cursor
//! (see [`crate::queue`]), so the log bytes a workspace retains are those behind its slowest
//! destination. The budget bounds the sum over every workspace of the queue:
//!
//! - **By default it is a share of the disk**: `backlog_budget = "50%"` of the space the queue's
//!   file system has for the log (its free space plus what the queue's files already take, so
//!   the budget does not shrink as the log grows into it). A size (`"20GiB"`) sets it outright.
//! - **A floor keeps the machine usable**: whatever the budget, the backlogs never take the
//!   file system below `backlog_min_free` of free space (`"5%"` of its size by default). If
//!   something else fills the disk during an outage, the budget shrinks with it.
//! - In cluster mode the log is in NATS JetStream: percentages apply to the account's JetStream
//!   file storage limit when it has one; without one tracecast sets no budget of its own
//!   (JetStream's own storage limit then applies, and a full store refuses ingest with a 503
//!   rather than losing acknowledged records), unless `backlog_budget` is a size.
//!
//! Every workspace's log may grow to one common level ([`Snapshot::allowance`]): within the
//! budget, the largest log's size plus the room left; past it, the level that brings the sum
//! back to the budget by cutting the largest logs down to it while the smaller ones keep what
//! they have. An outage in one workspace never costs a healthy one anything: a healthy log
//! (records in flight) is small, far under the level, and may fluctuate freely. A destination whose backlog is larger than
//! its workspace's allowance drops its oldest pending records (counted per destination in
//! `dropped`); the other destinations of the workspace, being less far behind, lose nothing.
//! The free-space floor never cuts the budget below [`MIN_BUDGET`] (unless the budget is set
//! smaller), the room healthy destinations need for the records in flight.
//!
//! [`Tracker::tick`] measures all of this every couple of seconds, publishes it for the
//! workers and the status API, sets the gauges, and warns (log and metrics) when a
//! destination's backlog passes [`WARN_AT`] of what it may keep, before anything is dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::options::{Amount, EngineOptions};
use crate::queue::{LogUsage, Queue, Storage};

/// A destination is warned about once its backlog reaches this share of what it may keep...
pub const WARN_AT: f64 = 0.8;
/// ... and again only after it has gone back under this share.
const REARM_AT: f64 = 0.7;
/// The ingest rate is averaged over this long.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// The least budget the free-space floor leaves: healthy destinations always have some records
/// in flight (at 30,000 records/s, half a second is about 36 MB), and a budget at zero would
/// have them drop what arrived since the last measurement.
pub const MIN_BUDGET: u64 = 256 << 20;

/// The bytes the log may hold in all: the configured budget, limited by the free-space floor
/// (but not below [`MIN_BUDGET`]). `None`: no budget (a share was asked for, but the size of
/// the storage is unknown).
pub fn resolve(
    budget: Amount,
    min_free: Amount,
    storage: Option<Storage>,
    retained: u64,
) -> Option<u64> {
    let Some(s) = storage else {
        return match budget {
            Amount::Bytes(n) => Some(n),
            Amount::Share(_) => None,
        };
    };
    // Everything the log could take: what is free now, plus what it already holds.
    let floor = retained.saturating_add(s.available.saturating_sub(min_free.of(s.total)));
    let wanted = budget.of(s.available.saturating_add(s.queue_bytes));
    Some(wanted.min(floor.max(MIN_BUDGET)))
}

/// The level every workspace's log may reach: past the budget, the one that cuts `retained`
/// (bytes per workspace) down to `budget` in all (those above it are cut to it, those under it
/// keep what they have); within it, the largest plus the room left.
fn level(retained: impl Iterator<Item = u64>, budget: u64) -> u64 {
    let mut sizes: Vec<u64> = retained.collect();
    sizes.sort_unstable();
    let mut left = budget;
    let n = sizes.len() as u64;
    for (i, size) in sizes.iter().enumerate() {
        let rest = n - i as u64;
        if size.saturating_mul(rest) > left {
            return left / rest;
        }
        left -= size;
    }
    // Everything fits (`budget` is not exceeded).
    sizes.last().copied().unwrap_or(0) + left
}

/// What the last measurement found.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Bytes the log may hold, all workspaces together; `None`: no budget.
    pub budget: Option<u64>,
    /// Bytes the log holds now, all workspaces together.
    pub retained: u64,
    /// Bytes each workspace's log holds now.
    pub workspaces: HashMap<Uuid, LogUsage>,
    /// Bytes per second appended to the log, all workspaces, over the last minute.
    pub ingest_bytes_per_sec: f64,
    /// The level every workspace's log may reach ([`Snapshot::allowance`]); `None`: no budget.
    pub level: Option<u64>,
}

impl Snapshot {
    /// How many bytes of backlog a destination of `workspace` may keep before its oldest
    /// records are dropped: the common level of every workspace's log ([`Snapshot::level`]).
    /// (The same for every workspace today; asked per workspace so that it may not be.)
    pub fn allowance(&self, _workspace: Uuid) -> Option<u64> {
        self.level
    }

    /// The average stored size of a record of `workspace`, when known.
    pub fn record_bytes(&self, workspace: Uuid) -> Option<f64> {
        self.workspaces
            .get(&workspace)
            .filter(|u| u.records > 0)
            .map(|u| u.bytes as f64 / u.records as f64)
    }

    /// Seconds until a backlog of `bytes` in `workspace` reaches its allowance, if the ingest
    /// continues at the current rate and nothing more is delivered. `None` when there is no
    /// budget or nothing is being ingested.
    pub fn secs_until_drop(&self, workspace: Uuid, bytes: u64) -> Option<f64> {
        let allowance = self.allowance(workspace)?;
        if self.ingest_bytes_per_sec <= 0.0 {
            return None;
        }
        Some(allowance.saturating_sub(bytes) as f64 / self.ingest_bytes_per_sec)
    }
}

/// The latest [`Snapshot`], shared by the engine, its workers and the status API.
#[derive(Default)]
pub struct Budget(RwLock<Arc<Snapshot>>);

impl Budget {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.0.read().expect("poisoned").clone()
    }

    fn publish(&self, s: Snapshot) {
        *self.0.write().expect("poisoned") = Arc::new(s);
    }

    /// See [`Snapshot::allowance`].
    pub fn allowance(&self, workspace: Uuid) -> Option<u64> {
        self.snapshot().allowance(workspace)
    }
}

/// A running destination, as the tracker sees it.
pub struct DestinationView {
    pub id: Uuid,
    pub workspace: Uuid,
    pub type_label: &'static str,
    /// Its committed cursor.
    pub cursor: u64,
}

/// Measures the budget over time: the ingest rate and which destinations were warned about.
#[derive(Default)]
pub struct Tracker {
    /// (when, estimated bytes appended so far), oldest first.
    appended: VecDeque<(Instant, f64)>,
    /// Per workspace: the head last seen and its records' average size.
    heads: HashMap<Uuid, (u64, f64)>,
    appended_total: f64,
    warned: HashSet<Uuid>,
}

impl Tracker {
    /// Measures the log and the storage, publishes the result to `budget`, sets the gauges and
    /// warns about the destinations whose backlogs near their allowance.
    pub async fn tick(
        &mut self,
        queue: &Arc<dyn Queue>,
        opts: &EngineOptions,
        budget: &Budget,
        destinations: &[DestinationView],
    ) -> crate::queue::Result<()> {
        let usage = queue.log_usage().await?;
        let storage = queue.storage().await?;
        let retained: u64 = usage.iter().map(|(_, u)| u.bytes).sum();
        let total = resolve(opts.budget(), opts.backlog_min_free, storage, retained);
        let rate = self.rate(&usage);
        let level = total.map(|b| level(usage.iter().map(|(_, u)| u.bytes), b));
        let snapshot = Snapshot {
            budget: total,
            retained,
            workspaces: usage.into_iter().collect(),
            ingest_bytes_per_sec: rate,
            level,
        };
        metrics::gauge!("tracecast_backlog_retained_bytes").set(retained as f64);
        metrics::gauge!("tracecast_backlog_budget_bytes").set(total.map_or(-1.0, |b| b as f64));
        self.warn(&snapshot, destinations);
        budget.publish(snapshot);
        Ok(())
    }

    /// Bytes per second appended to the log over the last [`RATE_WINDOW`], estimated from each
    /// workspace's head and its records' average size.
    fn rate(&mut self, usage: &[(Uuid, LogUsage)]) -> f64 {
        let now = Instant::now();
        for (ws, u) in usage {
            let avg = if u.records > 0 {
                u.bytes as f64 / u.records as f64
            } else {
                self.heads.get(ws).map_or(0.0, |(_, a)| *a)
            };
            if let Some((head, _)) = self.heads.get(ws) {
                self.appended_total += u.head.saturating_sub(*head) as f64 * avg;
            }
            self.heads.insert(*ws, (u.head, avg));
        }
        self.appended.push_back((now, self.appended_total));
        while self
            .appended
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > RATE_WINDOW)
        {
            self.appended.pop_front();
        }
        match (self.appended.front(), self.appended.back()) {
            (Some((t0, b0)), Some((t1, b1))) if t1 > t0 => {
                (b1 - b0) / t1.duration_since(*t0).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    fn warn(&mut self, s: &Snapshot, destinations: &[DestinationView]) {
        let mut running = HashSet::with_capacity(destinations.len());
        for d in destinations {
            running.insert(d.id);
            let (Some(allowance), Some(size)) =
                (s.allowance(d.workspace), s.record_bytes(d.workspace))
            else {
                continue;
            };
            let head = s.workspaces.get(&d.workspace).map_or(0, |u| u.head);
            let bytes = (head.saturating_sub(d.cursor) as f64 * size) as u64;
            let used = if allowance == 0 {
                if bytes > 0 { 1.0 } else { 0.0 }
            } else {
                bytes as f64 / allowance as f64
            };
            metrics::gauge!("tracecast_backlog_budget_used_ratio", "destination" => d.id.to_string(), "type" => d.type_label).set(used);
            if used >= WARN_AT && self.warned.insert(d.id) {
                let secs = s.secs_until_drop(d.workspace, bytes);
                tracing::warn!(
                    destination = %d.id,
                    backlog_bytes = bytes,
                    budget_bytes = allowance,
                    percent_used = (used * 100.0).round(),
                    secs_until_drop = secs.map(|s| s.round()),
                    "a destination's backlog is nearing its outage budget: past it, its oldest records are dropped"
                );
                metrics::counter!("tracecast_backlog_budget_warnings_total", "type" => d.type_label)
                    .increment(1);
            } else if used < REARM_AT {
                self.warned.remove(&d.id);
            }
        }
        self.warned.retain(|id| running.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn storage(total: u64, available: u64, queue_bytes: u64) -> Option<Storage> {
        Some(Storage {
            total,
            available,
            queue_bytes,
        })
    }

    #[test]
    fn the_default_budget_is_half_the_room_and_keeps_the_floor_free() {
        let (share, floor) = (Amount::Share(0.5), Amount::Share(0.05));
        // 100 GiB disk, 60 free, the queue holds 4 of which 3 are retained log.
        assert_eq!(
            resolve(share, floor, storage(100 * GIB, 60 * GIB, 4 * GIB), 3 * GIB),
            Some(32 * GIB)
        );
        // The log growing into its budget does not shrink it: free space moves into the queue.
        assert_eq!(
            resolve(
                share,
                floor,
                storage(100 * GIB, 40 * GIB, 24 * GIB),
                23 * GIB
            ),
            Some(32 * GIB)
        );
        // Something else filled the disk: 7 GiB free, 5 of which the floor keeps.
        assert_eq!(
            resolve(share, floor, storage(100 * GIB, 7 * GIB, GIB), GIB),
            Some(3 * GIB)
        );
        // Already under the floor: the log may keep what it holds, and no more.
        assert_eq!(
            resolve(share, floor, storage(100 * GIB, 4 * GIB, 4 * GIB), 3 * GIB),
            Some(3 * GIB)
        );
        // ... but never less than the room healthy destinations need, unless set smaller.
        assert_eq!(
            resolve(share, floor, storage(100 * GIB, 4 * GIB, GIB), 0),
            Some(MIN_BUDGET)
        );
        assert_eq!(
            resolve(
                Amount::Bytes(1000),
                floor,
                storage(100 * GIB, 4 * GIB, GIB),
                0
            ),
            Some(1000)
        );
        // An absolute size, limited by the floor; without storage information, as given.
        let abs = Amount::Bytes(20 * GIB);
        assert_eq!(
            resolve(abs, floor, storage(100 * GIB, 60 * GIB, 0), 0),
            Some(20 * GIB)
        );
        assert_eq!(
            resolve(abs, floor, storage(100 * GIB, 10 * GIB, 0), 0),
            Some(5 * GIB)
        );
        assert_eq!(resolve(abs, floor, None, 0), Some(20 * GIB));
        assert_eq!(resolve(share, floor, None, 0), None);
    }

    fn usage(head: u64, records: u64, bytes: u64) -> LogUsage {
        LogUsage {
            head,
            records,
            bytes,
        }
    }

    #[test]
    fn allowances_share_the_budget_between_workspaces() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut s = Snapshot {
            budget: Some(1000),
            retained: 600,
            workspaces: [(a, usage(10, 5, 500)), (b, usage(10, 1, 100))].into(),
            ingest_bytes_per_sec: 100.0,
            level: Some(level([500, 100].into_iter(), 1000)),
        };
        // Within the budget: each may grow to the largest plus the room left.
        assert_eq!(s.allowance(a), Some(900));
        assert_eq!(s.allowance(b), Some(900));
        assert_eq!(s.allowance(c), Some(900));
        assert_eq!(s.secs_until_drop(a, 500), Some(4.0));
        assert_eq!(s.record_bytes(a), Some(100.0));
        // Past it: the largest is cut down to the level that fits; the smaller ones keep theirs.
        s.retained = 1610;
        s.workspaces.insert(a, usage(30, 15, 1500));
        s.workspaces.insert(c, usage(10, 5, 10));
        s.level = Some(level([1500, 100, 10].into_iter(), 1000));
        assert_eq!(s.allowance(a), Some(890));
        assert_eq!(s.allowance(b), Some(890));
        assert_eq!(s.secs_until_drop(a, 1500), Some(0.0));
        // No ingest, or no budget: no estimate.
        s.ingest_bytes_per_sec = 0.0;
        assert_eq!(s.secs_until_drop(a, 0), None);
        s.budget = None;
        s.level = None;
        assert_eq!(s.allowance(a), None);
    }

    #[test]
    fn the_level_cuts_the_largest_first() {
        assert_eq!(level([1500, 500].into_iter(), 1000), 500);
        assert_eq!(level([600, 600, 600].into_iter(), 1200), 400);
        assert_eq!(level([100, 2000, 50].into_iter(), 1000), 850);
        // Within the budget: the largest may grow by the room left.
        assert_eq!(level([100, 200].into_iter(), 1000), 900);
        assert_eq!(level(std::iter::empty(), 1000), 1000);
    }

    #[test]
    fn the_rate_follows_the_heads() {
        let mut t = Tracker::default();
        let ws = Uuid::new_v4();
        assert_eq!(t.rate(&[(ws, usage(100, 10, 1000))]), 0.0);
        t.appended.front_mut().unwrap().0 -= Duration::from_secs(2);
        // 200 more records of 100 bytes in 2 s.
        let r = t.rate(&[(ws, usage(300, 10, 1000))]);
        assert!((r - 10_000.0).abs() < 200.0, "{r}");
    }
}
