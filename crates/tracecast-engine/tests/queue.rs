//! The embedded SQLite queue against a real file in a temp dir.

mod support;

use std::time::Duration;

use support::{generation_with_session, ids, records};
use tracecast_engine::queue::{Counters, Cursor, Queue, SqliteQueue, SqliteQueueOptions};
use uuid::Uuid;

fn open(dir: &std::path::Path, tail_bytes: usize) -> SqliteQueue {
    let mut o = SqliteQueueOptions::new(dir.join("queue.db"));
    o.tail_bytes = tail_bytes;
    SqliteQueue::open(o).unwrap()
}

#[tokio::test]
async fn append_dedups_and_reads_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), 1 << 20);
    support::append_dedups_and_reads_back_in_order(&q).await;
}

#[tokio::test]
async fn records_survive_reopen_and_reads_fall_back_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Uuid::now_v7();
    {
        // A tiny tail: most reads must come from SQLite.
        let q = open(dir.path(), 4096);
        for chunk in 0..5 {
            q.append(ws, records(&ids(&format!("c{chunk}"), 100)))
                .await
                .unwrap();
            if chunk == 0 {
                // A destination that has read nothing yet holds the log: without one, the
                // queue may truncate a log nobody reads (about once a second).
                q.commit(Uuid::now_v7(), ws, Cursor { seq: 0 }, Counters::default());
            }
        }
        let early = q.read(ws, 0, 10).await.unwrap();
        assert_eq!(early[0].generation.id, "c0-0");
        // Read back from disk, the record is rebuilt exactly: derivations included.
        assert_eq!(early[0].generation.session_id.as_deref(), Some("sess-hdr"));
        assert_eq!(*early[0].generation, *generation_with_session("c0-0"));
        q.close().await;
    }
    let q = open(dir.path(), 1 << 20);
    assert_eq!(q.head(ws), 500);
    let all = q.read(ws, 0, 1000).await.unwrap();
    assert_eq!(all.len(), 500);
    assert_eq!(all[499].generation.id, "c4-99");
    // Dedup state survived too.
    let again = q.append(ws, records(&ids("c4", 100))).await.unwrap();
    assert!(again.accepted.iter().all(|a| !a));
}

#[tokio::test]
async fn cursors_counters_truncation_and_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), 1 << 20);
    let ws = Uuid::now_v7();
    let (d1, d2) = (Uuid::now_v7(), Uuid::now_v7());
    q.append(ws, records(&ids("t", 100))).await.unwrap();
    let counters = support::full_counters(60, None);
    q.commit(d1, ws, Cursor { seq: 60 }, counters.clone());
    q.commit(d2, ws, Cursor { seq: 30 }, Counters::default());
    q.flush().await.unwrap();
    assert_eq!(q.cursor(d1).await.unwrap(), Some(Cursor { seq: 60 }));
    assert_eq!(q.counters(d1).await.unwrap(), counters);
    let b = q.backlog(ws, 30).await.unwrap();
    assert_eq!(b.records, 70);
    assert!(b.bytes > 70 * 200 && b.oldest_received_at_ms.is_some());

    // Truncation keeps everything after the slowest cursor (it runs about once a second).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let q2 = open(dir.path(), 0);
        let from_disk = q2.read(ws, 0, 1000).await.unwrap();
        q2.close().await;
        if from_disk.first().map(|r| r.seq) == Some(31) {
            assert_eq!(from_disk.len(), 70);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "log was not truncated to the slowest cursor: first = {:?}",
            from_disk.first().map(|r| r.seq)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    support::cap_points(&q, ws).await;
    support::usage(&q, ws).await;
    // The embedded queue always knows its file system (statvfs of the data dir).
    assert!(q.storage().await.unwrap().is_some());
}

#[tokio::test]
async fn dead_letters_list_replay_and_expire() {
    let dir = tempfile::tempdir().unwrap();
    let q = open(dir.path(), 1 << 20);
    support::dead_letters_list_replay_and_expire(&q).await;
}
