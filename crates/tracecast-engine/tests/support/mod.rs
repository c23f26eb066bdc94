//! Queue scenarios shared by the SQLite (`tests/queue.rs`) and NATS (`tests/nats_queue.rs`)
//! tests: every backend must behave the same.
#![allow(dead_code)]

use std::sync::Arc;

use serde_json::json;
use tracecast_engine::queue::{Counters, DeadLetter, NewRecord, PausedState, Queue, RetryState};
use tracecast_model::generation::{Generation, IngestContext};
use uuid::Uuid;

pub fn raw(id: &str) -> serde_json::Value {
    json!({"id": id, "model": "m", "created_at": "2026-01-01T00:00:00Z", "request": {"messages": [{"role": "user", "content": "x".repeat(200)}]}})
}

pub fn generation(id: &str) -> Arc<Generation> {
    Arc::new(Generation::from_json(raw(id), &IngestContext::default()).unwrap())
}

pub fn generation_with_session(id: &str) -> Arc<Generation> {
    let ctx = IngestContext {
        session_header: Some("sess-hdr".into()),
    };
    Arc::new(Generation::from_json(raw(id), &ctx).unwrap())
}

pub fn records(ids: &[String]) -> Vec<NewRecord> {
    ids.iter()
        .map(|id| {
            let g = generation_with_session(id);
            let raw = serde_json::to_vec(&raw(id)).unwrap();
            let body = tracecast_engine::queue::log_body(&g, &raw, Some("sess-hdr"));
            NewRecord {
                generation: g,
                body,
            }
        })
        .collect()
}

pub fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

pub async fn append_dedups_and_reads_back_in_order(q: &dyn Queue) {
    let ws = Uuid::now_v7();
    let mut first = ids("a", 10);
    first.push("a-3".into()); // a duplicate inside the same request
    let r = q.append(ws, records(&first)).await.unwrap();
    assert_eq!(r.accepted.iter().filter(|a| **a).count(), 10);
    assert!(!r.accepted[10]);
    assert_eq!(q.head(ws), 10);
    let again = q.append(ws, records(&ids("a", 12))).await.unwrap();
    assert_eq!(again.accepted, [vec![false; 10], vec![true; 2]].concat());
    // The same id in another workspace is not a duplicate.
    let other = Uuid::now_v7();
    assert_eq!(
        q.append(other, records(&ids("a", 1)))
            .await
            .unwrap()
            .accepted,
        vec![true]
    );

    let got = q.read(ws, 0, 100).await.unwrap();
    assert_eq!(
        got.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=12).collect::<Vec<u64>>()
    );
    assert_eq!(got[11].generation.id, "a-11");
    let tail = q.read(ws, 10, 100).await.unwrap();
    assert_eq!(tail.len(), 2);
}

/// Cap points over a workspace whose log holds seqs 31..=100 of ~250-byte records.
pub async fn cap_points(q: &dyn Queue, ws: Uuid) {
    // The cap: keep at most 10 records after the cursor.
    assert_eq!(q.cap_point(ws, 30, 10, u64::MAX).await.unwrap(), Some(90));
    assert_eq!(q.cap_point(ws, 95, 10, u64::MAX).await.unwrap(), None);
    let by_bytes = q
        .cap_point(ws, 30, u64::MAX, 5 * 250)
        .await
        .unwrap()
        .unwrap();
    // Exactly the records after the point fit under the byte cap; one more would not.
    let all = q.read(ws, 30, 1000).await.unwrap();
    let after = |p: u64| -> u64 {
        all.iter()
            .filter(|r| r.seq > p)
            .map(|r| u64::from(r.size))
            .sum()
    };
    assert!(after(by_bytes) <= 5 * 250, "{by_bytes}");
    assert!(after(by_bytes - 1) > 5 * 250, "{by_bytes}");
    // From a later position the point is the same; past it there is nothing to drop.
    assert_eq!(
        q.cap_point(ws, 60, u64::MAX, 5 * 250).await.unwrap(),
        Some(by_bytes)
    );
    assert_eq!(
        q.cap_point(ws, by_bytes, u64::MAX, 5 * 250).await.unwrap(),
        None
    );
}

/// What the queue reports of a workspace whose log holds seqs 31..=100 (for the outage
/// budget), and of its storage.
pub async fn usage(q: &dyn Queue, ws: Uuid) {
    let all = q.log_usage().await.unwrap();
    let u = all
        .iter()
        .find(|(w, _)| *w == ws)
        .map(|(_, u)| *u)
        .expect("the workspace is listed");
    assert_eq!((u.head, u.records), (100, 70));
    let bodies: u64 = q
        .read(ws, 30, 1000)
        .await
        .unwrap()
        .iter()
        .map(|r| u64::from(r.size))
        .sum();
    // SQLite counts the stored bodies; JetStream its stored messages (headers and subject too).
    assert!(
        u.bytes >= bodies && u.bytes < bodies * 2,
        "{} bytes kept for {bodies} bytes of records",
        u.bytes
    );
    if let Some(s) = q.storage().await.unwrap() {
        assert!(s.total > 0 && s.available <= s.total, "{s:?}");
        assert!(s.queue_bytes >= u.bytes, "{s:?}");
    }
}

pub async fn dead_letters_list_replay_and_expire(q: &dyn Queue) {
    let d = Uuid::now_v7();
    let letters = (0..3)
        .map(|i| DeadLetter {
            id: 0,
            destination_id: d,
            generation: generation(&format!("dl-{i}")),
            error: "HTTP 400: bad".into(),
            status: Some(400),
            attempts: 1,
            failed_at_ms: 1_000 + i,
            replay_requested: false,
        })
        .collect();
    q.add_dead_letters(letters).await.unwrap();
    let (page, total) = q.list_dead_letters(d, 1, 10).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].generation.id, "dl-1");
    assert_eq!(page[0].status, Some(400));
    assert_eq!(
        q.request_replay(d, Some(vec![page[0].id])).await.unwrap(),
        1
    );
    let replays = q.replays(d, 10).await.unwrap();
    assert_eq!(replays.len(), 1);
    assert_eq!(replays[0].generation.id, "dl-1");
    assert!(replays[0].replay_requested);
    q.delete_dead_letters(vec![replays[0].id]).await.unwrap();
    assert_eq!(q.list_dead_letters(d, 0, 10).await.unwrap().1, 2);
    assert_eq!(q.expire_dead_letters(1_001).await.unwrap(), 1);
    let (rest, total) = q.list_dead_letters(d, 0, 10).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(rest[0].generation.id, "dl-2");
}

/// Counters with every persisted field set: the retry and pause state travel with them (a
/// restart or a takeover carries on the same backoff).
pub fn full_counters(delivered: u64, last_error_message: Option<&str>) -> Counters {
    Counters {
        delivered,
        last_error_message: last_error_message.map(str::to_string),
        retry: Some(RetryState {
            attempts: 3,
            not_before_ms: 1_700_000_004_000,
            first_failure_ms: 1_700_000_000_000,
        }),
        paused: Some(PausedState {
            status: Some(401),
            message: "credentials rejected".into(),
            since_ms: 1_700_000_000_000,
        }),
        ..Default::default()
    }
}
