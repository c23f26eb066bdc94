//! Listing dead letters reads only what a listing shows: the SQLite queue parses each stored
//! generation's id, model and start time, one letter at a time, and skips the rest of its body.

mod support;

use std::sync::Arc;

use tracecast_engine::queue::{
    DeadLetter, DeadLetterSummary, Queue, SqliteQueue, SqliteQueueOptions,
};
use uuid::Uuid;

#[tokio::test]
async fn summaries_page_the_letters_without_their_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let q = SqliteQueue::open(SqliteQueueOptions::new(dir.path().join("queue.db"))).unwrap();
    let d = Uuid::now_v7();
    let letters = (0..3)
        .map(|i| {
            let mut g = (*support::generation(&format!("dl-{i}"))).clone();
            // A big body: a listing must not need it.
            g.user = Some("u".repeat(100));
            g.trace = Some(
                serde_json::json!({"blob": "x".repeat(2 * 1024 * 1024)})
                    .as_object()
                    .unwrap()
                    .clone(),
            );
            DeadLetter {
                id: 0,
                destination_id: d,
                generation: Arc::new(g),
                error: "HTTP 400: bad".into(),
                status: Some(400),
                attempts: 2,
                failed_at_ms: 1_000 + i,
                replay_requested: false,
            }
        })
        .collect();
    q.add_dead_letters(letters).await.unwrap();
    let (full, _) = q.list_dead_letters(d, 1, 10).await.unwrap();
    let (page, total) = q.list_dead_letter_summaries(d, 1, 10).await.unwrap();
    assert_eq!(total, 3);
    // The same as the full letters' summaries: id, generation fields, error, status...
    let expected: Vec<DeadLetterSummary> = full.iter().map(DeadLetterSummary::from).collect();
    assert_eq!(page, expected);
    assert_eq!(page[0].generation_id, "dl-1");
    assert_eq!(page[0].model, full[0].generation.model);
    assert_eq!(page[0].attempts, 2);
    assert_eq!(page[1].failed_at_ms, 1_002);
    q.close().await;
}
