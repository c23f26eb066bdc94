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

/// The segment files of the first workspace that appended.
fn first_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let ws_dir = dir.join("queue-log").join("1");
    let mut files: Vec<_> = std::fs::read_dir(ws_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.pop().unwrap()
}

#[tokio::test]
async fn an_unclean_stop_keeps_records_and_their_dedup_and_cuts_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Uuid::now_v7();
    {
        let q = open(dir.path(), 1 << 20);
        q.append(ws, records(&ids("u", 50))).await.unwrap();
        // Dropped without `close`: the dedup index was never flushed (as in a crash).
    }
    // A write cut short by the crash: half a record at the end of the newest segment.
    let seg = first_segment(dir.path());
    let len = std::fs::metadata(&seg).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(&[7u8; 40]).unwrap();
    }
    let q = open(dir.path(), 1 << 20);
    assert_eq!(
        std::fs::metadata(&seg).unwrap().len(),
        len,
        "the torn end is cut"
    );
    assert_eq!(q.head(ws), 50);
    let again = q.append(ws, records(&ids("u", 52))).await.unwrap();
    assert_eq!(again.accepted, [vec![false; 50], vec![true; 2]].concat());
    let all = q.read(ws, 0, 100).await.unwrap();
    assert_eq!(all.len(), 52);
    assert_eq!(all[51].generation.id, "u-51");
    q.close().await;
}

#[tokio::test]
async fn records_in_the_old_log_table_move_into_segments() {
    let dir = tempfile::tempdir().unwrap();
    let ws = Uuid::now_v7();
    {
        // A queue file as the previous version left it: records as rows of `log`.
        let q = open(dir.path(), 1 << 20);
        q.close().await;
        let c = rusqlite::Connection::open(dir.path().join("queue.db")).unwrap();
        c.execute(
            "INSERT INTO workspaces (ws, workspace_id, head, bytes) VALUES (1, ?1, 3, 0)",
            [ws.to_string()],
        )
        .unwrap();
        let mut end = 0i64;
        for (seq, r) in (1..=3).zip(records(&ids("old", 3))) {
            end += r.body.len() as i64;
            c.execute(
                "INSERT INTO log (id, received_at, end_bytes, body) VALUES (?1, ?2, ?3, ?4)",
                rusqlite::params![(1i64 << 40) | seq, 1000 + seq, end, r.body],
            )
            .unwrap();
        }
        c.execute("UPDATE workspaces SET bytes = ?1", [end])
            .unwrap();
    }
    let q = open(dir.path(), 1 << 20);
    let all = q.read(ws, 0, 10).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.seq, r.received_at_ms))
            .collect::<Vec<_>>(),
        [(1, 1001), (2, 1002), (3, 1003)]
    );
    assert_eq!(all[2].generation.id, "old-2");
    assert_eq!(q.backlog(ws, 1).await.unwrap().records, 2);
    // Re-indexed for dedup, and the log goes on after them.
    let r = q.append(ws, records(&ids("old", 4))).await.unwrap();
    assert_eq!(r.accepted, [false, false, false, true]);
    assert_eq!(q.read(ws, 3, 10).await.unwrap()[0].seq, 4);
    q.close().await;
    let c = rusqlite::Connection::open(dir.path().join("queue.db")).unwrap();
    let left: i64 = c
        .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(left, 0);
}

/// `recent` (the dashboard's filter preview) returns the newest records the queue still holds:
/// the part of the log not yet truncated, then the in-memory tail. Once every cursor has
/// passed them the log is truncated, but the tail keeps the newest records, which a plain
/// `read` from `head - n` no longer reaches when the tail does not go back that far.
#[tokio::test]
async fn recent_records_outlive_the_log_in_the_tail() {
    let dir = tempfile::tempdir().unwrap();
    // How much tail memory one record takes.
    let size = {
        let q = open(dir.path(), 1 << 20);
        let probe = Uuid::now_v7();
        q.append(probe, records(&ids("probe", 1))).await.unwrap();
        let r = q.read(probe, 0, 1).await.unwrap();
        q.close().await;
        r[0].size as usize * tracecast_engine::queue::PARSED_OVERHEAD
    };
    let q = open(dir.path(), size * 60 + size / 2);
    let ws = Uuid::now_v7();
    let d = Uuid::now_v7();
    q.register(d, ws, Cursor { seq: 0 }, Counters::default())
        .await
        .unwrap();
    for chunk in 0..3 {
        q.append(ws, records(&ids(&format!("r{chunk}"), 50)))
            .await
            .unwrap();
    }
    assert_eq!(q.head(ws), 150);
    // Nothing truncated yet: the last 100 come from disk and the tail.
    let recent = q.recent(ws, 100).await.unwrap();
    let seqs: Vec<u64> = recent.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (51..=150).collect::<Vec<u64>>());
    assert_eq!(recent[99].generation.id, "r2-49");

    // Every record done: truncation (about once a second) empties the log on disk.
    q.commit(d, ws, Cursor { seq: 150 }, Counters::default());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let disk = open(dir.path(), 0);
        let left = disk.read(ws, 0, 1000).await.unwrap().len();
        disk.close().await;
        if left == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} records still on disk"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recent = q.recent(ws, 100).await.unwrap();
    let seqs: Vec<u64> = recent.iter().map(|r| r.seq).collect();
    assert_eq!(
        seqs,
        (91..=150).collect::<Vec<u64>>(),
        "the 60 records of the tail"
    );
    assert!(
        q.read(ws, 50, 100).await.unwrap().is_empty(),
        "a read from head - 100 goes to the truncated log"
    );
    // Fewer asked for than the tail holds: the newest ones.
    let last = q.recent(ws, 10).await.unwrap();
    assert_eq!(last.first().map(|r| r.seq), Some(141));
    assert_eq!(last.last().map(|r| r.seq), Some(150));
    q.close().await;
}
