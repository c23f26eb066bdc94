//! The NATS JetStream queue against a local server (`TRACECAST_TEST_NATS`, default
//! `nats://127.0.0.1:4222`, JetStream enabled). Each test uses its own prefix and deletes its
//! streams and buckets at the end, even when it fails.

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use support::{generation_with_session, ids, records};
use tracecast_engine::queue::{Counters, Cursor, NatsQueue, NatsQueueOptions, Queue};
use uuid::Uuid;

fn url() -> String {
    std::env::var("TRACECAST_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// A fresh prefix whose streams and buckets are deleted when this is dropped.
struct Prefix(String);

impl Prefix {
    fn new() -> Self {
        Prefix(format!("tc_test_{}", Uuid::new_v4().simple()))
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let prefix = self.0.to_ascii_uppercase();
        // Best effort, on its own runtime: works after a panic inside the test's runtime too.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(client) = async_nats::connect(url()).await else {
                    return;
                };
                let js = async_nats::jetstream::new(client);
                let mut names = js.stream_names();
                let mut mine = Vec::new();
                while let Some(Ok(n)) = names.next().await {
                    if n.starts_with(&format!("{prefix}_"))
                        || n.starts_with(&format!("KV_{prefix}_"))
                    {
                        mine.push(n);
                    }
                }
                for n in mine {
                    let _ = js.delete_stream(&n).await;
                }
            });
        })
        .join();
    }
}

async fn open(prefix: &Prefix, tail_bytes: usize) -> NatsQueue {
    let mut o = NatsQueueOptions::new(url(), prefix.0.clone());
    o.tail_bytes = tail_bytes;
    NatsQueue::connect(o).await.unwrap()
}

#[tokio::test]
async fn append_dedups_and_reads_back_in_order() {
    let p = Prefix::new();
    let q = open(&p, 1 << 20).await;
    support::append_dedups_and_reads_back_in_order(&q).await;
    q.close().await;
}

#[tokio::test]
async fn records_survive_reopen_and_reads_fall_back_to_the_server() {
    let p = Prefix::new();
    let ws = Uuid::now_v7();
    {
        // A tiny tail: most reads must come from JetStream.
        let q = open(&p, 4096).await;
        for chunk in 0..5 {
            q.append(ws, records(&ids(&format!("c{chunk}"), 100)))
                .await
                .unwrap();
        }
        let early = q.read(ws, 0, 10).await.unwrap();
        assert_eq!(early[0].generation.id, "c0-0");
        // Read back from the server, the record is rebuilt exactly: derivations included.
        assert_eq!(early[0].generation.session_id.as_deref(), Some("sess-hdr"));
        assert_eq!(*early[0].generation, *generation_with_session("c0-0"));
        assert!(early[0].received_at_ms > 0);
        q.close().await;
    }
    let q = open(&p, 1 << 20).await;
    assert_eq!(q.head(ws), 500);
    let all = q.read(ws, 0, 1000).await.unwrap();
    assert_eq!(all.len(), 500);
    assert_eq!(all[499].generation.id, "c4-99");
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
    // Dedup state survived too.
    let again = q.append(ws, records(&ids("c4", 100))).await.unwrap();
    assert!(again.accepted.iter().all(|a| !a));
    q.close().await;
}

#[tokio::test]
async fn cursors_counters_truncation_and_backlog() {
    let p = Prefix::new();
    let q = open(&p, 1 << 20).await;
    let ws = Uuid::now_v7();
    let (d1, d2) = (Uuid::now_v7(), Uuid::now_v7());
    q.append(ws, records(&ids("t", 100))).await.unwrap();
    let counters = support::full_counters(60, Some("HTTP 500"));
    q.commit(d1, ws, Cursor { seq: 60 }, counters.clone());
    q.commit(d2, ws, Cursor { seq: 30 }, Counters::default());
    q.flush().await.unwrap();
    assert_eq!(q.cursor(d1).await.unwrap(), Some(Cursor { seq: 60 }));
    assert_eq!(q.counters(d1).await.unwrap(), counters);
    let b = q.backlog(ws, 30).await.unwrap();
    assert_eq!(b.records, 70);
    assert!(b.bytes > 70 * 200 && b.oldest_received_at_ms.is_some());

    // Truncation keeps everything after the slowest cursor (it runs about once a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let q2 = open(&p, 0).await;
        let from_server = q2.read(ws, 0, 1000).await.unwrap();
        q2.close().await;
        if from_server.first().map(|r| r.seq) == Some(31) {
            assert_eq!(from_server.len(), 70);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "log was not truncated to the slowest cursor: first = {:?}",
            from_server.first().map(|r| r.seq)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Truncated records stay de-duplicated.
    let again = q.append(ws, records(&ids("t", 100))).await.unwrap();
    assert!(again.accepted.iter().all(|a| !a));
    assert_eq!(q.head(ws), 100);

    support::cap_points(&q, ws).await;
    support::usage(&q, ws).await;

    // A forgotten destination loses its cursor but keeps its counters.
    q.forget(d2).await.unwrap();
    assert_eq!(q.cursor(d2).await.unwrap(), None);
    assert_eq!(q.counters(d1).await.unwrap(), counters);
    q.close().await;
}

#[tokio::test]
async fn dead_letters_list_replay_and_expire() {
    let p = Prefix::new();
    let q = open(&p, 1 << 20).await;
    support::dead_letters_list_replay_and_expire(&q).await;
    q.close().await;
}

#[tokio::test]
async fn dead_letters_are_the_same_from_every_node() {
    let p = Prefix::new();
    let (a, b) = (open(&p, 1 << 20).await, open(&p, 1 << 20).await);
    let d = Uuid::now_v7();
    let letter = |i: i64| tracecast_engine::queue::DeadLetter {
        id: 0,
        destination_id: d,
        generation: support::generation(&format!("x-{i}")),
        error: "HTTP 400".into(),
        status: Some(400),
        attempts: 3,
        failed_at_ms: 5_000 + i,
        replay_requested: false,
    };
    a.add_dead_letters(vec![letter(0), letter(1)])
        .await
        .unwrap();
    b.add_dead_letters(vec![letter(2)]).await.unwrap();
    let (la, ta) = a.list_dead_letters(d, 0, 10).await.unwrap();
    let (lb, tb) = b.list_dead_letters(d, 0, 10).await.unwrap();
    assert_eq!((ta, tb), (3, 3));
    let ids_a: Vec<i64> = la.iter().map(|l| l.id).collect();
    assert_eq!(ids_a, lb.iter().map(|l| l.id).collect::<Vec<_>>());
    assert_eq!(
        la.iter()
            .map(|l| l.generation.id.as_str())
            .collect::<Vec<_>>(),
        ["x-0", "x-1", "x-2"]
    );
    assert_eq!(la[2].attempts, 3);
    // Replay all on one node, seen on the other.
    assert_eq!(a.request_replay(d, None).await.unwrap(), 3);
    assert_eq!(b.replays(d, 2).await.unwrap().len(), 2);
    assert_eq!(b.list_dead_letters(d, 0, 0).await.unwrap().1, 3);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn duplicates_are_caught_across_nodes() {
    let p = Prefix::new();
    let (a, b) = (open(&p, 1 << 20).await, open(&p, 1 << 20).await);
    let ws = Uuid::now_v7();
    let ra = a.append(ws, records(&ids("n", 10))).await.unwrap();
    assert!(ra.accepted.iter().all(|x| *x));
    let mut overlapping = ids("n", 15);
    overlapping.drain(..5);
    let rb = b.append(ws, records(&overlapping)).await.unwrap();
    assert_eq!(rb.accepted, [vec![false; 5], vec![true; 5]].concat());
    assert_eq!(b.head(ws), 15);

    // Both nodes sending the same ids at once: each accepted exactly once.
    let all = ids("m", 200);
    let (x, y) = tokio::join!(a.append(ws, records(&all)), b.append(ws, records(&all)));
    let accepted = x.unwrap().accepted.iter().filter(|v| **v).count()
        + y.unwrap().accepted.iter().filter(|v| **v).count();
    assert_eq!(accepted, 200);
    // A's head includes B's appends once B's announcement arrives.
    tokio::time::timeout(
        Duration::from_secs(30),
        a.subscribe(ws).wait_for(|h| *h == 215),
    )
    .await
    .expect("node A's head did not reach 215")
    .unwrap();
    let got = a.read(ws, 0, 1000).await.unwrap();
    assert_eq!(got.len(), 215);
    let distinct: std::collections::HashSet<&str> =
        got.iter().map(|r| r.generation.id.as_str()).collect();
    assert_eq!(distinct.len(), 215);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn head_on_another_node_follows_appends() {
    let p = Prefix::new();
    let (a, b) = (open(&p, 1 << 20).await, open(&p, 1 << 20).await);
    let ws = Uuid::now_v7();
    let mut rx = b.subscribe(ws);
    let started = Instant::now();
    a.append(ws, records(&ids("h", 7))).await.unwrap();
    // A deadline against hangs, not a speed check (the time is printed, not asserted).
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|h| *h == 7))
        .await
        .expect("node B's head never followed node A's append")
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(b.head(ws), 7);
    let got = b.read(ws, 3, 100).await.unwrap();
    assert_eq!(
        got.iter()
            .map(|r| r.generation.id.as_str())
            .collect::<Vec<_>>(),
        ["h-3", "h-4", "h-5", "h-6"]
    );
    // Again, on a workspace B already knows.
    a.append(ws, records(&ids("i", 3))).await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), rx.wait_for(|h| *h == 10))
        .await
        .expect("second append never seen on node B")
        .unwrap();
    println!("head reached node B {waited:?} after the append started");
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn cursors_and_counters_are_shared_between_nodes() {
    let p = Prefix::new();
    let (a, b) = (open(&p, 1 << 20).await, open(&p, 1 << 20).await);
    let (ws, d) = (Uuid::now_v7(), Uuid::now_v7());
    let counters = Counters {
        received: 5,
        delivered: 4,
        dropped: 1,
        ..Default::default()
    };
    // Fire-and-forget: persisted within about a second without any flush.
    a.commit(d, ws, Cursor { seq: 5 }, counters.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while b.cursor(d).await.unwrap() != Some(Cursor { seq: 5 }) {
        assert!(Instant::now() < deadline, "the cursor never reached node B");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.counters(d).await.unwrap(), counters);
    a.close().await;
    b.close().await;
}

#[tokio::test]
async fn one_node_holds_a_lease_until_it_lapses() {
    let p = Prefix::new();
    let q = open(&p, 0).await;
    let ttl = Duration::from_secs(2);
    let renew_every = Duration::from_millis(500);
    let a = q.leases("node-a", ttl).await.unwrap();
    let b = q.leases("node-b", ttl).await.unwrap();
    let key = format!("dest.{}", Uuid::now_v7().simple());
    let (ga, gb) = tokio::join!(a.try_acquire(&key), b.try_acquire(&key));
    let (ga, gb) = (ga.unwrap(), gb.unwrap());
    assert!(ga ^ gb, "exactly one node wins: a={ga} b={gb}");
    let (winner, loser) = if ga { (&a, &b) } else { (&b, &a) };
    // Renewing keeps it past the TTL.
    for _ in 0..6 {
        tokio::time::sleep(renew_every).await;
        assert!(winner.renew(&key).await.unwrap());
        assert!(!loser.try_acquire(&key).await.unwrap());
    }
    assert!(!loser.renew(&key).await.unwrap());
    // The winner stops renewing (it died): the other node gets it within TTL + one interval.
    let stopped = Instant::now();
    loop {
        if loser.try_acquire(&key).await.unwrap() {
            break;
        }
        // A deadline against a lease that never lapses; how soon it lapses is printed below.
        assert!(
            stopped.elapsed() < Duration::from_secs(30),
            "the lease never lapsed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = stopped.elapsed();
    println!("lease taken over {took:?} after the last renew");
    // The old owner learns it lost the lease.
    assert!(!winner.renew(&key).await.unwrap());
    assert!(!winner.holds(&key));
    // Releasing hands it over at once.
    loser.release(&key).await.unwrap();
    assert!(winner.try_acquire(&key).await.unwrap());
    q.close().await;
}

#[tokio::test]
async fn config_changes_reach_every_node() {
    let p = Prefix::new();
    let (a, b) = (open(&p, 0).await, open(&p, 0).await);
    let mut on_a = a.subscribe_config_changed().await.unwrap();
    let mut on_b = b.subscribe_config_changed().await.unwrap();
    a.publish_config_changed().await.unwrap();
    for sub in [&mut on_a, &mut on_b] {
        tokio::time::timeout(Duration::from_secs(30), sub.next())
            .await
            .expect("config change never received")
            .expect("subscription closed");
    }
    a.close().await;
    b.close().await;
}

/// Appends/s of 2.4 KB records in batches of 500 (and the sequential read rate from the
/// server, without the tail).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn append_rate() {
    let p = Prefix::new();
    let q = open(&p, 0).await;
    let ws = Uuid::now_v7();
    let make = |id: &str| {
        let mut raw = support::raw(id);
        raw["request"]["messages"][0]["content"] = serde_json::json!("y".repeat(2200));
        let g = std::sync::Arc::new(
            tracecast_model::generation::Generation::from_json(raw.clone(), &Default::default())
                .unwrap(),
        );
        let body = tracecast_engine::queue::log_body(&g, &serde_json::to_vec(&raw).unwrap(), None);
        tracecast_engine::queue::NewRecord {
            generation: g,
            body,
        }
    };
    let size = make("probe").body.len();
    let batches = 40;
    let batch_records: Vec<Vec<_>> = (0..batches)
        .map(|b| (0..500).map(|i| make(&format!("r-{b}-{i}"))).collect())
        .collect();
    let started = Instant::now();
    for batch in batch_records {
        let r = q.append(ws, batch).await.unwrap();
        assert!(r.accepted.iter().all(|a| *a));
    }
    let secs = started.elapsed().as_secs_f64();
    let n = batches * 500;
    println!(
        "append_rate: {n} records of {size} bytes in {secs:.2} s = {:.0} records/s ({:.1} MB/s)",
        n as f64 / secs,
        (n * size) as f64 / secs / 1e6
    );
    let started = Instant::now();
    let mut after = 0;
    while after < n as u64 {
        let got = q.read(ws, after, 500).await.unwrap();
        after = got.last().map(|r| r.seq).expect("records");
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "read_rate (pull consumer, no tail): {:.0} records/s",
        n as f64 / secs
    );
    q.close().await;
}

#[tokio::test]
async fn a_log_nobody_reads_is_purged_and_its_ids_stay_deduplicated() {
    let p = Prefix::new();
    let mut o = NatsQueueOptions::new(url(), p.0.clone());
    o.uncursored_grace = Duration::ZERO;
    let q = NatsQueue::connect(o).await.unwrap();
    let ws = Uuid::now_v7();
    q.append(ws, records(&ids("u", 20))).await.unwrap();
    // Truncation runs every second; with no cursor on the workspace, everything goes.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let fresh = open(&p, 0).await;
        let left = fresh.read(ws, 0, 100).await.unwrap().len();
        fresh.close().await;
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} records left");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let again = q.append(ws, records(&ids("u", 21))).await.unwrap();
    assert_eq!(again.accepted, [vec![false; 20], vec![true]].concat());
    assert_eq!(q.head(ws), 21);
    q.close().await;
}

/// Regression: truncation listed the cursors with the client's key listing, which skips keys
/// rewritten while it runs. With cursors rewritten all the time (as the delivering nodes do
/// every 100 ms), a truncation could miss the slowest cursor and purge records it had not
/// read (seen in the two-node benchmark: 20,000 records gone under two destinations).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncation_never_passes_a_cursor_that_is_being_rewritten() {
    let p = Prefix::new();
    let (a, b) = (open(&p, 1 << 20).await, open(&p, 1 << 20).await);
    let ws = Uuid::now_v7();
    a.append(ws, records(&ids("r", 400))).await.unwrap();
    let (slow, fast) = (Uuid::now_v7(), Uuid::now_v7());
    a.commit(slow, ws, Cursor { seq: 50 }, Counters::default());
    a.commit(fast, ws, Cursor { seq: 390 }, Counters::default());
    a.flush().await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let counters = Counters {
                    delivered: n,
                    ..Default::default()
                };
                a.commit(slow, ws, Cursor { seq: 50 }, counters.clone());
                a.commit(fast, ws, Cursor { seq: 390 }, counters);
                a.flush().await.unwrap();
            }
            a
        })
    };
    for _ in 0..100 {
        b.truncate_now().await.unwrap();
        let read = b.read(ws, 50, 1).await.unwrap();
        assert_eq!(
            read.first().map(|r| r.seq),
            Some(51),
            "record 51 must stay while a cursor is at 50"
        );
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let a = writer.await.unwrap();
    // It does truncate up to the slowest cursor.
    let info = a
        .jetstream()
        .get_stream(format!("{}_LOG_{}", p.0.to_ascii_uppercase(), ws.simple()))
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .first_sequence;
    assert_eq!(info, 51);
    a.close().await;
    b.close().await;
}
