//! Recent delivery activity of one destination, in memory: per-minute counts of the last
//! [`MINUTES`] minutes and the last [`ERRORS`] errors. The dashboard draws its charts and its
//! "last hour" figures from it.
//!
//! It is kept by the node that delivers the destination and starts empty when tracecast
//! starts (or, in a cluster, when another node takes the destination over): the persisted
//! [`Counters`](crate::queue::Counters) hold the totals, this holds their recent shape. Only
//! minutes with activity take memory, so an idle destination costs a few bytes and a busy one
//! at most `MINUTES` buckets.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::queue::Counters;

/// How many minutes of per-minute counts are kept.
pub const MINUTES: usize = 180;
/// How many recent errors are kept.
pub const ERRORS: usize = 20;
/// Longest error message kept (bytes, cut at a character boundary).
const ERROR_MESSAGE_MAX: usize = 1024;

/// What happened in one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Minute {
    /// Unix time of the minute's start, in minutes.
    pub minute: i64,
    /// Records delivered.
    pub delivered: u64,
    /// Delivery attempts that failed (each one a batch; retried later).
    pub failed_attempts: u64,
    /// Records given up on and kept as dead letters.
    pub dead_lettered: u64,
    /// Records dropped (backlog cap, or missing from the queue).
    pub dropped: u64,
}

impl Minute {
    fn is_empty(&self) -> bool {
        self.delivered == 0
            && self.failed_attempts == 0
            && self.dead_lettered == 0
            && self.dropped == 0
    }
}

/// One recent error of a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecentError {
    /// Unix ms.
    pub at_ms: i64,
    pub status: Option<u16>,
    pub message: String,
}

/// A copy of a destination's recent activity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HistorySnapshot {
    /// Minutes with activity, oldest first, within the last [`MINUTES`].
    pub minutes: Vec<Minute>,
    /// Newest first.
    pub errors: Vec<RecentError>,
}

impl HistorySnapshot {
    /// Totals of the minutes that start at or after `since_minute`.
    pub fn totals_since(&self, since_minute: i64) -> Minute {
        let mut t = Minute {
            minute: since_minute,
            ..Minute::default()
        };
        for m in self.minutes.iter().filter(|m| m.minute >= since_minute) {
            t.delivered += m.delivered;
            t.failed_attempts += m.failed_attempts;
            t.dead_lettered += m.dead_lettered;
            t.dropped += m.dropped;
        }
        t
    }
}

#[derive(Default)]
struct Inner {
    minutes: VecDeque<Minute>,
    errors: VecDeque<RecentError>,
}

/// A destination's recent activity (see the module docs).
#[derive(Default)]
pub struct History(Mutex<Inner>);

/// The counters the history follows, before and after a change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tally {
    delivered: u64,
    failed_attempts: u64,
    dead_lettered: u64,
    dropped: u64,
}

impl Tally {
    pub(crate) fn of(c: &Counters) -> Self {
        Tally {
            delivered: c.delivered,
            failed_attempts: c.failed_attempts,
            dead_lettered: c.dead_lettered,
            dropped: c.dropped,
        }
    }
}

impl History {
    /// Adds what changed between two tallies to the minute of `now_ms`.
    pub(crate) fn record(&self, now_ms: i64, before: Tally, after: Tally) {
        let add = Minute {
            minute: now_ms.div_euclid(60_000),
            delivered: after.delivered.saturating_sub(before.delivered),
            failed_attempts: after.failed_attempts.saturating_sub(before.failed_attempts),
            dead_lettered: after.dead_lettered.saturating_sub(before.dead_lettered),
            dropped: after.dropped.saturating_sub(before.dropped),
        };
        if add.is_empty() {
            return;
        }
        let mut inner = self.0.lock().expect("poisoned");
        match inner.minutes.back_mut() {
            Some(last) if last.minute == add.minute => {
                last.delivered += add.delivered;
                last.failed_attempts += add.failed_attempts;
                last.dead_lettered += add.dead_lettered;
                last.dropped += add.dropped;
            }
            // A clock stepping back adds to the newest minute rather than breaking the order.
            Some(last) if last.minute > add.minute => {
                last.delivered += add.delivered;
                last.failed_attempts += add.failed_attempts;
                last.dead_lettered += add.dead_lettered;
                last.dropped += add.dropped;
            }
            _ => inner.minutes.push_back(add),
        }
        let oldest = add.minute - MINUTES as i64 + 1;
        while inner.minutes.front().is_some_and(|m| m.minute < oldest) {
            inner.minutes.pop_front();
        }
    }

    /// Keeps an error (the newest [`ERRORS`]).
    pub(crate) fn error(&self, at_ms: i64, status: Option<u16>, message: &str) {
        let mut end = message.len().min(ERROR_MESSAGE_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut inner = self.0.lock().expect("poisoned");
        inner.errors.push_front(RecentError {
            at_ms,
            status,
            message: message[..end].to_string(),
        });
        inner.errors.truncate(ERRORS);
    }

    /// A copy, with the minutes older than [`MINUTES`] before `now_ms` left out.
    pub fn snapshot(&self, now_ms: i64) -> HistorySnapshot {
        let oldest = now_ms.div_euclid(60_000) - MINUTES as i64 + 1;
        let inner = self.0.lock().expect("poisoned");
        HistorySnapshot {
            minutes: inner
                .minutes
                .iter()
                .filter(|m| m.minute >= oldest)
                .copied()
                .collect(),
            errors: inner.errors.iter().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(delivered: u64, failed: u64, dead: u64, dropped: u64) -> Tally {
        Tally {
            delivered,
            failed_attempts: failed,
            dead_lettered: dead,
            dropped,
        }
    }

    #[test]
    fn changes_add_up_per_minute_and_old_minutes_leave() {
        let h = History::default();
        let t0 = 1_000 * 60_000;
        h.record(t0, tally(0, 0, 0, 0), tally(3, 0, 0, 0));
        h.record(t0 + 30_000, tally(3, 0, 0, 0), tally(5, 1, 0, 0));
        h.record(t0 + 60_000, tally(5, 1, 0, 0), tally(5, 1, 2, 4));
        // Nothing changed: no bucket.
        h.record(t0 + 120_000, tally(5, 1, 2, 4), tally(5, 1, 2, 4));
        let s = h.snapshot(t0 + 120_000);
        assert_eq!(
            s.minutes,
            vec![
                Minute {
                    minute: 1_000,
                    delivered: 5,
                    failed_attempts: 1,
                    dead_lettered: 0,
                    dropped: 0
                },
                Minute {
                    minute: 1_001,
                    delivered: 0,
                    failed_attempts: 0,
                    dead_lettered: 2,
                    dropped: 4
                },
            ]
        );
        assert_eq!(s.totals_since(1_001).dropped, 4);
        assert_eq!(s.totals_since(1_000).delivered, 5);
        // MINUTES later the first minute is gone from snapshots and from memory.
        let later = t0 + MINUTES as i64 * 60_000;
        assert_eq!(h.snapshot(later).minutes.len(), 1);
        h.record(later, tally(5, 1, 2, 4), tally(6, 1, 2, 4));
        assert_eq!(h.0.lock().unwrap().minutes.len(), 2);
        assert_eq!(h.snapshot(later).minutes[0].minute, 1_001);
    }

    #[test]
    fn errors_keep_the_newest_few_and_cut_long_messages() {
        let h = History::default();
        for i in 0..(ERRORS as i64 + 5) {
            h.error(i, Some(500), &format!("error {i}"));
        }
        h.error(99, None, &"é".repeat(ERROR_MESSAGE_MAX));
        let s = h.snapshot(0);
        assert_eq!(s.errors.len(), ERRORS);
        assert_eq!(s.errors[1].message, format!("error {}", ERRORS + 4));
        assert!(s.errors[0].message.len() <= ERROR_MESSAGE_MAX);
        assert!(s.errors[0].message.chars().all(|c| c == 'é'));
    }
}
