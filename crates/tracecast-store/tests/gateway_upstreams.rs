//! Gateway upstreams in the SQL store (SQLite in a temp dir): sealed at rest, per workspace,
//! ordered, soft-deleted, and re-sealed by key rotation like destination configs.

use serde_json::json;
use tracecast_model::{Tenant, Workspace, time};
use tracecast_store::{GatewayUpstream, Keyring, SqlStore, Store, StoreError, crypto};
use uuid::Uuid;

fn tenant_and_ws(slug: &str) -> (Tenant, Workspace) {
    let t = Tenant {
        id: Uuid::new_v4(),
        name: "acme".into(),
        created_at: time::now_rfc3339(),
    };
    let w = Workspace {
        id: Uuid::new_v4(),
        tenant_id: t.id,
        name: "Default".into(),
        slug: slug.into(),
        description: None,
        is_default: true,
        is_observability_broadcast_enabled: true,
        settings: Default::default(),
        created_at: time::now_rfc3339(),
        updated_at: None,
    };
    (t, w)
}

const SECRET: &str = "sk-gateway-upstream-secret-4242";

fn upstream(ws: Uuid, name: &str) -> GatewayUpstream {
    let now = time::now_rfc3339();
    GatewayUpstream {
        id: Uuid::now_v7(),
        workspace_id: ws,
        config: json!({"name": name, "base_url": "https://api.example/v1", "api_key": SECRET})
            .as_object()
            .unwrap()
            .clone(),
        created_at: now.clone(),
        updated_at: now,
    }
}

#[tokio::test]
async fn upstreams_are_sealed_isolated_updated_deleted_and_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let old_spec = crypto::generate_key_spec();
    let store = SqlStore::open_sqlite(dir.path(), Keyring::from_spec(&old_spec).unwrap())
        .await
        .unwrap();
    let (t, w) = tenant_and_ws("default");
    store.create_tenant(&t, &w).await.unwrap();
    let (t2, w2) = tenant_and_ws("other");
    store.create_tenant(&t2, &w2).await.unwrap();
    let a = upstream(w.id, "a");
    let b = upstream(w.id, "b");
    store.insert_gateway_upstream(&a).await.unwrap();
    store.insert_gateway_upstream(&b).await.unwrap();
    let listed = store.gateway_upstreams(w.id).await.unwrap();
    assert_eq!(
        listed.iter().map(|u| u.id).collect::<Vec<_>>(),
        vec![a.id, b.id]
    );
    assert_eq!(listed[0].config["api_key"], SECRET);
    assert!(store.gateway_upstreams(w2.id).await.unwrap().is_empty());
    let db = std::fs::read(dir.path().join("tracecast.db")).unwrap();
    let wal = std::fs::read(dir.path().join("tracecast.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(!bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    }

    // Another workspace can neither change nor delete them.
    let mut foreign = a.clone();
    foreign.workspace_id = w2.id;
    assert!(matches!(
        store.update_gateway_upstream(&foreign).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.delete_gateway_upstream(w2.id, a.id, "now").await,
        Err(StoreError::NotFound)
    ));
    let mut changed = a.clone();
    changed.config.insert("name".into(), json!("a2"));
    store.update_gateway_upstream(&changed).await.unwrap();
    store
        .delete_gateway_upstream(w.id, b.id, &time::now_rfc3339())
        .await
        .unwrap();
    let listed = store.gateway_upstreams(w.id).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].config["name"], "a2");
    drop(store);

    let new_spec = crypto::generate_key_spec();
    let both = Keyring::from_spec(&format!("{new_spec}\n{old_spec}")).unwrap();
    let store = SqlStore::open_sqlite(dir.path(), both).await.unwrap();
    // Both upstreams (the deleted one too, as destinations): sealed with the old key.
    assert_eq!(store.reencrypt_all().await.unwrap(), 2);
    assert_eq!(store.reencrypt_all().await.unwrap(), 0);
    drop(store);
    let only_new = SqlStore::open_sqlite(dir.path(), Keyring::from_spec(&new_spec).unwrap())
        .await
        .unwrap();
    assert_eq!(
        only_new.gateway_upstreams(w.id).await.unwrap()[0].config["api_key"],
        SECRET
    );
}
