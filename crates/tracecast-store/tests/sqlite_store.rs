//! The SQL store against a real SQLite file in a temp dir.

use serde_json::json;
use tracecast_model::api_key::{KeyKind, hash_key, label_for};
use tracecast_model::destination::{Destination, NewDestination};
use tracecast_model::{ApiKey, DestinationType, Region, Tenant, Workspace, config, time};
use tracecast_store::{Keyring, PageRequest, SqlStore, Store, StoreError, crypto};
use uuid::Uuid;

async fn open(dir: &std::path::Path) -> SqlStore {
    let ring = Keyring::load_or_create(&dir.join("encryption.key")).unwrap();
    SqlStore::open_sqlite(dir, ring).await.unwrap()
}

fn tenant_and_ws() -> (Tenant, Workspace) {
    let t = Tenant {
        id: Uuid::new_v4(),
        name: "acme".into(),
        created_at: time::now_rfc3339(),
    };
    let w = Workspace {
        id: Uuid::new_v4(),
        tenant_id: t.id,
        name: "Default".into(),
        slug: "default".into(),
        description: None,
        is_default: true,
        is_observability_broadcast_enabled: true,
        settings: Default::default(),
        created_at: time::now_rfc3339(),
        updated_at: None,
    };
    (t, w)
}

fn new_langfuse(ws: Uuid) -> NewDestination {
    NewDestination {
        workspace_id: ws,
        ty: DestinationType::Langfuse,
        name: "lf".into(),
        enabled: true,
        privacy_mode: false,
        broadcast_generation_cost: true,
        broadcast_generation_identity: false,
        broadcast_generation_request_context: false,
        broadcast_generation_cost_allocation: false,
        sampling_rate: 0.25,
        api_key_hashes: None,
        filter_rules: None,
        regions: vec![Region::Global, Region::Europe],
        config: config::validate(
            DestinationType::Langfuse,
            &json!({"publicKey": "pk-lf-0123456789", "secretKey": "sk-lf-supersecret-0123"}),
        )
        .unwrap(),
    }
}

#[tokio::test]
async fn destinations_round_trip_encrypted_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    assert!(store.is_empty().await.unwrap());
    let (t, w) = tenant_and_ws();
    store.create_tenant(&t, &w).await.unwrap();
    assert!(!store.is_empty().await.unwrap());

    let now = time::now_rfc3339();
    let mut created: Vec<Destination> = Vec::new();
    for _ in 0..5 {
        created.push(
            store
                .insert_destination(&new_langfuse(w.id), Uuid::now_v7(), &now, 5)
                .await
                .unwrap(),
        );
    }
    let err = store
        .insert_destination(&new_langfuse(w.id), Uuid::now_v7(), &now, 5)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    let got = store
        .get_destination(t.id, created[0].id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, created[0]);
    assert_eq!(got.sampling_rate, 0.25);
    assert!(got.broadcast_generation_cost);
    // Another tenant cannot see it.
    assert!(
        store
            .get_destination(Uuid::new_v4(), created[0].id)
            .await
            .unwrap()
            .is_none()
    );

    // Secrets never reach the database file in clear.
    let db = std::fs::read(dir.path().join("tracecast.db")).unwrap();
    let wal = std::fs::read(dir.path().join("tracecast.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes
                .windows(b"supersecret".len())
                .any(|w| w == b"supersecret")
        );
    }

    let page = store
        .list_destinations(
            w.id,
            PageRequest {
                offset: 1,
                limit: 2,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(
        page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![created[1].id, created[2].id]
    );

    store.delete_destination(created[0].id, &now).await.unwrap();
    assert!(
        store
            .get_destination(t.id, created[0].id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store
            .count_destinations(w.id, DestinationType::Langfuse)
            .await
            .unwrap(),
        4
    );
    store
        .insert_destination(&new_langfuse(w.id), Uuid::now_v7(), &now, 5)
        .await
        .unwrap();
}

#[tokio::test]
async fn rotation_reseals_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let old_spec = crypto::generate_key_spec();
    let store = SqlStore::open_sqlite(dir.path(), Keyring::from_spec(&old_spec).unwrap())
        .await
        .unwrap();
    let (t, w) = tenant_and_ws();
    store.create_tenant(&t, &w).await.unwrap();
    let d = store
        .insert_destination(&new_langfuse(w.id), Uuid::now_v7(), &time::now_rfc3339(), 5)
        .await
        .unwrap();
    drop(store);

    let new_spec = crypto::generate_key_spec();
    let both = Keyring::from_spec(&format!("{new_spec}\n{old_spec}")).unwrap();
    let store = SqlStore::open_sqlite(dir.path(), both).await.unwrap();
    assert_eq!(store.reencrypt_all().await.unwrap(), 1);
    assert_eq!(store.reencrypt_all().await.unwrap(), 0);
    drop(store);

    let only_new = SqlStore::open_sqlite(dir.path(), Keyring::from_spec(&new_spec).unwrap())
        .await
        .unwrap();
    assert_eq!(
        only_new
            .get_destination(t.id, d.id)
            .await
            .unwrap()
            .unwrap()
            .config,
        d.config
    );
}

#[tokio::test]
async fn keys_and_workspaces() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (t, w) = tenant_and_ws();
    store.create_tenant(&t, &w).await.unwrap();
    let raw = tracecast_model::generate_key();
    let key = ApiKey {
        hash: hash_key(&raw),
        tenant_id: t.id,
        workspace_id: w.id,
        kind: KeyKind::Workspace,
        name: "app".into(),
        label: label_for(&raw),
        disabled: false,
        expires_at: None,
        created_at: time::now_rfc3339(),
        updated_at: None,
    };
    store.insert_key(&key).await.unwrap();
    assert_eq!(store.key_by_hash(&key.hash).await.unwrap().unwrap(), key);
    assert_eq!(store.count_active_workspace_keys(w.id).await.unwrap(), 1);
    assert_eq!(
        store
            .find_workspace(t.id, "default")
            .await
            .unwrap()
            .unwrap()
            .id,
        w.id
    );
    assert_eq!(
        store
            .find_workspace(t.id, &w.id.to_string())
            .await
            .unwrap()
            .unwrap()
            .id,
        w.id
    );
    assert!(
        store
            .find_workspace(Uuid::new_v4(), "default")
            .await
            .unwrap()
            .is_none()
    );

    let mut w2 = w.clone();
    w2.id = Uuid::new_v4();
    w2.is_default = false;
    let err = store.insert_workspace(&w2).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");
    w2.slug = "staging".into();
    store.insert_workspace(&w2).await.unwrap();
    assert_eq!(
        store
            .list_workspaces(
                t.id,
                PageRequest {
                    offset: 0,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .total,
        2
    );
    store
        .delete_workspace(w2.id, &time::now_rfc3339())
        .await
        .unwrap();
    assert_eq!(
        store
            .list_workspaces(
                t.id,
                PageRequest {
                    offset: 0,
                    limit: 10
                }
            )
            .await
            .unwrap()
            .total,
        1
    );
}

/// Labels written before the secrets migration (first 12 and last 4 characters) are cut down
/// to the prefix and the last 4; existing workspaces get an ExternalId.
#[tokio::test]
async fn the_secrets_migration_shortens_old_labels() {
    use sqlx::Executor;
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("tracecast.db").display()
    );
    {
        // The schema as the first migration left it, with a key labelled the old way.
        let mut first = sqlx::migrate!("./migrations/sqlite");
        first.migrations = std::borrow::Cow::Owned(first.migrations[..1].to_vec());
        let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
        first.run(&pool).await.unwrap();
        let (t, w) = tenant_and_ws();
        pool.execute(sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, 'acme', '2025-01-01T00:00:00.000Z')").bind(t.id.to_string())).await.unwrap();
        pool.execute(sqlx::query("INSERT INTO workspaces (id, tenant_id, name, slug, description, is_default, broadcast_enabled, settings, created_at) VALUES ($1, $2, 'Default', 'default', NULL, 1, 1, '{}', '2025-01-01T00:00:00.000Z')").bind(w.id.to_string()).bind(t.id.to_string())).await.unwrap();
        for (hash, label) in [
            ("a".repeat(64), "sk-tc-v1-3f2...9a1c"),
            ("b".repeat(64), "my-bootstrap...WXYZ"),
            ("c".repeat(64), "sk-..."),
        ] {
            pool.execute(sqlx::query("INSERT INTO api_keys (hash, tenant_id, workspace_id, kind, name, label, disabled, created_at) VALUES ($1, $2, $3, 'management', 'k', $4, 0, '2025-01-01T00:00:00.000Z')").bind(hash).bind(t.id.to_string()).bind(w.id.to_string()).bind(label)).await.unwrap();
        }
        pool.close().await;
    }
    let store = open(dir.path()).await;
    let label = |c: char| {
        let store = &store;
        async move {
            store
                .key_by_hash(&c.to_string().repeat(64))
                .await
                .unwrap()
                .unwrap()
                .label
        }
    };
    assert_eq!(label('a').await, "sk-tc-v1-...9a1c");
    assert_eq!(label('b').await, "...WXYZ");
    assert_eq!(label('c').await, "sk-...");
    let ws = store.list_tenants().await.unwrap()[0].id;
    let ws = store.default_workspace(ws).await.unwrap();
    assert!(
        store
            .workspace_external_id(ws.id)
            .await
            .unwrap()
            .starts_with("tc-")
    );
}
