//! The SQLite queue's log ids pack a workspace key and a seq (`key << 40 | seq`): once the
//! keys that fit a positive `i64` are used up, a new workspace is refused with a clear error,
//! instead of getting ids that go negative and then wrap onto another workspace's.

mod support;

use support::{ids, records};
use tracecast_engine::queue::{Queue, QueueError, SqliteQueue, SqliteQueueOptions};
use uuid::Uuid;

fn open(dir: &std::path::Path) -> SqliteQueue {
    SqliteQueue::open(SqliteQueueOptions::new(dir.join("queue.db"))).unwrap()
}

/// Registers a workspace under `key` directly in the file, as if that many had come before.
fn take_key(dir: &std::path::Path, key: i64) {
    let c = rusqlite::Connection::open(dir.join("queue.db")).unwrap();
    c.execute(
        "INSERT INTO workspaces (ws, workspace_id, head, bytes) VALUES (?1, ?2, 0, 0)",
        rusqlite::params![key, Uuid::now_v7().to_string()],
    )
    .unwrap();
}

async fn seeded(dir: &std::path::Path, last_key: i64) -> (SqliteQueue, Uuid) {
    let first = Uuid::now_v7();
    let q = open(dir);
    q.append(first, records(&ids("first", 3))).await.unwrap();
    q.close().await;
    take_key(dir, last_key);
    (open(dir), first)
}

#[tokio::test]
async fn the_last_workspace_key_works_and_the_next_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let max = (1i64 << 23) - 1;
    let (q, first) = seeded(dir.path(), max - 1).await;
    // Key 2^23 - 1: the last whose ids are positive.
    let last = Uuid::now_v7();
    q.append(last, records(&ids("last", 2))).await.unwrap();
    let read = q.read(last, 0, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].generation.id, "last-1");
    // Key 2^23 would make negative ids: refused, naming the limit.
    let refused = Uuid::now_v7();
    let err = q
        .append(refused, records(&ids("refused", 1)))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Exhausted(m) if m.contains("8388607 workspace keys")),
        "{err}"
    );
    assert_eq!(q.head(refused), 0);
    // The workspaces that have keys go on.
    q.append(first, records(&ids("more", 1))).await.unwrap();
    assert_eq!(q.read(first, 0, 10).await.unwrap().len(), 4);
    q.close().await;
}

#[tokio::test]
async fn a_key_past_the_range_never_shares_another_workspace_ids() {
    let dir = tempfile::tempdir().unwrap();
    // Key 2^24 + 1 shifted by 40 wraps to key 1's ids.
    let (q, first) = seeded(dir.path(), 1 << 24).await;
    let other = Uuid::now_v7();
    let err = q
        .append(other, records(&ids("other", 1)))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Exhausted(_)), "{err}");
    // An append of a workspace that has its key, sent together with the refused one, is kept.
    let (a, b) = tokio::join!(
        q.append(first, records(&ids("together", 1))),
        q.append(Uuid::now_v7(), records(&ids("refused-too", 1)))
    );
    assert!(a.unwrap().accepted[0]);
    assert!(matches!(b, Err(QueueError::Exhausted(_))));
    let read = q.read(first, 0, 10).await.unwrap();
    assert_eq!(read.len(), 4);
    assert!(
        read.iter().all(
            |r| r.generation.id.starts_with("first") || r.generation.id.starts_with("together")
        )
    );
    q.close().await;
}
