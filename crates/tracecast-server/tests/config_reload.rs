//! A configuration change made through the API reloads only what changed (the destinations
//! updated, deleted, or in a workspace updated or deleted since the last reload), not every
//! destination; the periodic full reload still catches everything.

mod common;

use common::TestServer;
use serde_json::json;
use tracecast_store::PageRequest;

const DEST: &str = "/api/v1/observability/destinations";

async fn state(s: &TestServer, id: &str) -> String {
    let r = s.get(&format!("{DEST}/{id}/status")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"]["state"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn an_api_change_reloads_the_changed_destinations_only() {
    // A long refresh: only the reloads this test triggers run.
    let s = TestServer::start_with(|st| st.delivery.config_refresh_ms = 3_600_000).await;
    let body = |name: &str| json!({"type": "langfuse", "name": name, "config": {"publicKey": "pk-lf-0123456789abcd", "secretKey": "sk-lf-secret-0123wxyz"}});
    let r = s.post(DEST, body("quiet")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let quiet = r.body["data"]["id"].as_str().unwrap().to_string();
    let ws: uuid::Uuid = r.body["data"]["workspace_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(state(&s, &quiet).await, "active");
    // Its workspace's broadcast switch turned off behind the API's back, with timestamps long
    // past: no change shows it. (The status reads the switch from the running worker.)
    let mut d = s
        .store
        .list_destinations(
            ws,
            PageRequest {
                offset: 0,
                limit: 10,
            },
        )
        .await
        .unwrap()
        .items
        .remove(0);
    d.updated_at = "2020-01-01T00:00:00.000Z".into();
    s.store.update_destination(&d).await.unwrap();
    let mut w = s.store.workspace_by_id(ws).await.unwrap().unwrap();
    w.is_observability_broadcast_enabled = false;
    w.updated_at = Some("2020-01-01T00:00:00.000Z".into());
    s.store.update_workspace(&w).await.unwrap();
    // Another change through the API: the new destination is read (with the switch as it is
    // now), the untouched one is not.
    let r = s.post(DEST, body("new")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let new = r.body["data"]["id"].as_str().unwrap().to_string();
    assert_eq!(state(&s, &new).await, "disabled");
    assert_eq!(state(&s, &quiet).await, "active");
    // The full reload (periodic, every minute) sees everything.
    s.engine.reload().await.unwrap();
    assert_eq!(state(&s, &quiet).await, "disabled");
    // Deleting through the API stops the worker at once.
    assert_eq!(s.delete(&format!("{DEST}/{new}")).await.status, 200);
    assert_eq!(s.get(&format!("{DEST}/{new}/status")).await.status, 404);
}
