//! Several nodes on one PostgreSQL database: three servers start at once on a fresh database
//! and share it. The server is `TRACECAST_TEST_DATABASE_URL`, else the local one
//! (`postgres://postgres@127.0.0.1:5432/postgres`, as on the CI machine): without a PostgreSQL
//! server this test fails rather than pass without checking anything.

mod common;

use common::{TempDatabase, TestServer, test_database_url};
use serde_json::{Value, json};
use tokio::task::JoinSet;

const DEST: &str = "/api/v1/observability/destinations";

fn langfuse(i: usize) -> Value {
    json!({"type": "langfuse", "name": format!("lf-{i}"), "config": {"publicKey": "pk-lf-0123456789abcd", "secretKey": "sk-lf-secret-0123wxyz"}})
}

/// POSTs `body` to `path` on `s` with `key` in a task of its own; resolves to the status.
fn post_task(set: &mut JoinSet<u16>, s: &TestServer, key: &str, path: &str, body: Value) {
    let (http, url, key) = (s.http.clone(), format!("{}{path}", s.base), key.to_string());
    set.spawn(async move {
        let r = http
            .post(url)
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        r.status().as_u16()
    });
}

async fn statuses(mut set: JoinSet<u16>) -> Vec<u16> {
    let mut out = Vec::new();
    while let Some(s) = set.join_next().await {
        out.push(s.unwrap());
    }
    out.sort_unstable();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_one_database() {
    let admin = test_database_url()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = TempDatabase::create(&admin).await;
    // Nodes share the credential keys (a key file per data dir would not be shared).
    let keys = tracecast_store::crypto::generate_key_spec();
    let node = || {
        let (url, keys) = (db.url.clone(), keys.clone());
        TestServer::start_with(move |s| {
            s.database_url = Some(url);
            s.encryption_keys = Some(keys);
            s.database_pool_size = Some(4);
        })
    };
    // Each server offers its own bootstrap key; they all find the fresh database empty.
    let (a, b, c) = tokio::join!(node(), node(), node());
    let mut nodes = [a, b, c];

    // Bootstrap happened exactly once: one tenant, and exactly one of the offered keys works,
    // on every node.
    assert_eq!(nodes[0].store.list_tenants().await.unwrap().len(), 1);
    let mut winners = Vec::new();
    for offered in nodes.iter().map(|n| n.mgmt_key.clone()).collect::<Vec<_>>() {
        let mut ok = 0;
        for n in &nodes {
            let r = n
                .send(
                    reqwest::Method::GET,
                    "/api/v1/workspaces",
                    Some(&offered),
                    None,
                )
                .await;
            assert!(r.status == 200 || r.status == 401, "{}", r.text);
            ok += usize::from(r.status == 200);
        }
        assert!(
            ok == 0 || ok == nodes.len(),
            "a key works on every node or none"
        );
        if ok > 0 {
            winners.push(offered);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one node bootstrapped");
    let key = winners.pop().unwrap();
    for n in &mut nodes {
        n.mgmt_key = key.clone();
    }

    // The per-type limit holds under concurrent creates spread over the nodes.
    let mut set = JoinSet::new();
    for i in 0..15 {
        post_task(&mut set, &nodes[i % 3], &key, DEST, langfuse(i));
    }
    let got = statuses(set).await;
    assert_eq!(got.iter().filter(|&&s| s == 201).count(), 5, "{got:?}");
    assert_eq!(got.iter().filter(|&&s| s == 409).count(), 10, "{got:?}");
    for n in &nodes {
        let list = n.get(DEST).await;
        assert_eq!(list.status, 200, "{}", list.text);
        assert_eq!(list.body["data"].as_array().unwrap().len(), 5);
        assert_eq!(list.body["total_count"], 5, "{}", list.text);
    }

    // A destination created on one node reads (decrypted, masked) on another.
    let list = nodes[0].get(DEST).await;
    let id = list.body["data"][0]["id"].as_str().unwrap().to_string();
    let r = nodes[2].get(&format!("{DEST}/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["config"]["secretKey"], "sk-l...wxyz");

    // Workspace slugs stay unique under concurrent creates on different nodes.
    let mut set = JoinSet::new();
    for i in 0..6 {
        post_task(
            &mut set,
            &nodes[i % 3],
            &key,
            "/api/v1/workspaces",
            json!({"name": "Production", "slug": "production"}),
        );
    }
    let got = statuses(set).await;
    assert_eq!(got, vec![201, 409, 409, 409, 409, 409]);

    drop(nodes);
    drop(db);
}
