//! The SQL store on every backend: SQLite always, and PostgreSQL too when
//! `TRACECAST_TEST_DATABASE_URL` names a server (for example
//! `postgres://postgres@127.0.0.1:5432/postgres`). Each PostgreSQL test runs in a fresh
//! database it creates there and drops at the end.
//!
//! Besides behaviour, these check what must hold when several nodes share one database: the
//! per-type destination limit, unique slugs and first-start bootstrap under concurrent stores
//! (separate pools, as separate processes would have).

use std::sync::Arc;

use serde_json::json;
use sqlx::{Connection, Executor};
use tracecast_model::api_key::{KeyKind, hash_key, label_for};
use tracecast_model::destination::NewDestination;
use tracecast_model::{ApiKey, DestinationType, Region, Tenant, Workspace, config, time};
use tracecast_store::{Keyring, PageRequest, SqlStore, Store, StoreError, crypto};
use uuid::Uuid;

const ENV: &str = "TRACECAST_TEST_DATABASE_URL";

/// A database for one test: a temp dir for SQLite, a fresh PostgreSQL database otherwise.
enum TestDb {
    Sqlite(tempfile::TempDir),
    Postgres { admin_url: String, name: String },
}

impl TestDb {
    fn label(&self) -> &'static str {
        match self {
            TestDb::Sqlite(_) => "sqlite",
            TestDb::Postgres { .. } => "postgres",
        }
    }

    fn url(&self) -> String {
        match self {
            TestDb::Sqlite(dir) => {
                format!(
                    "sqlite://{}?mode=rwc",
                    dir.path().join("tracecast.db").display()
                )
            }
            TestDb::Postgres { admin_url, name } => {
                let mut u = url::Url::parse(admin_url).unwrap();
                u.set_path(name);
                u.to_string()
            }
        }
    }

    async fn open(&self, ring: Keyring) -> SqlStore {
        SqlStore::connect(&self.url(), ring).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let TestDb::Postgres { admin_url, name } = self {
            drop_database(admin_url.clone(), name.clone());
        }
    }
}

/// Best effort, from a thread of its own so that it works inside or outside a runtime.
fn drop_database(admin_url: String, name: String) {
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let mut c = sqlx::PgConnection::connect(&admin_url).await.ok()?;
            c.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await
                .ok()
        })
    })
    .join();
}

/// SQLite, plus PostgreSQL when the environment names a server.
async fn backends() -> Vec<TestDb> {
    let mut out = vec![TestDb::Sqlite(tempfile::tempdir().unwrap())];
    if let Ok(admin_url) = std::env::var(ENV)
        && !admin_url.is_empty()
    {
        let name = format!("tracecast_store_test_{}", Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("{ENV}: cannot connect: {e}"));
        c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        out.push(TestDb::Postgres { admin_url, name });
    }
    out
}

fn ring() -> Keyring {
    Keyring::from_spec(&crypto::generate_key_spec()).unwrap()
}

fn tenant_and_ws(name: &str) -> (Tenant, Workspace) {
    let t = Tenant {
        id: Uuid::now_v7(),
        name: name.into(),
        created_at: time::now_rfc3339(),
    };
    let w = Workspace {
        id: Uuid::now_v7(),
        tenant_id: t.id,
        name: "Default".into(),
        slug: "default".into(),
        description: Some("Default workspace".into()),
        is_default: true,
        is_observability_broadcast_enabled: true,
        settings: Default::default(),
        created_at: time::now_rfc3339(),
        updated_at: None,
    };
    (t, w)
}

fn workspace(t: &Tenant, slug: &str) -> Workspace {
    Workspace {
        id: Uuid::now_v7(),
        tenant_id: t.id,
        name: slug.to_uppercase(),
        slug: slug.into(),
        description: None,
        is_default: false,
        is_observability_broadcast_enabled: false,
        settings: serde_json::from_value(json!({"retention": {"days": 7}})).unwrap(),
        created_at: time::now_rfc3339(),
        updated_at: None,
    }
}

fn key(t: &Tenant, w: &Workspace, kind: KeyKind, name: &str) -> ApiKey {
    let raw = tracecast_model::generate_key();
    ApiKey {
        hash: hash_key(&raw),
        tenant_id: t.id,
        workspace_id: w.id,
        kind,
        name: name.into(),
        label: label_for(&raw),
        disabled: false,
        expires_at: None,
        created_at: time::now_rfc3339(),
        updated_at: None,
    }
}

fn new_langfuse(ws: Uuid) -> NewDestination {
    NewDestination {
        workspace_id: ws,
        ty: DestinationType::Langfuse,
        name: "lf".into(),
        enabled: true,
        privacy_mode: true,
        broadcast_generation_cost: true,
        broadcast_generation_identity: false,
        broadcast_generation_request_context: true,
        broadcast_generation_cost_allocation: false,
        sampling_rate: 0.25,
        api_key_hashes: Some(vec!["a".repeat(64)]),
        filter_rules: None,
        regions: vec![Region::Global, Region::Europe],
        config: config::validate(
            DestinationType::Langfuse,
            &json!({"publicKey": "pk-lf-0123456789", "secretKey": "sk-lf-supersecret-0123"}),
        )
        .unwrap(),
    }
}

fn all() -> PageRequest {
    PageRequest {
        offset: 0,
        limit: 100,
    }
}

#[tokio::test]
async fn workspaces_keys_and_destinations_behave_the_same() {
    for db in backends().await {
        let be = db.label();
        let store = db.open(ring()).await;
        store.ping().await.unwrap();
        assert!(store.is_empty().await.unwrap(), "{be}");
        let (t, w) = tenant_and_ws("acme");
        store.create_tenant(&t, &w).await.unwrap();
        assert!(!store.is_empty().await.unwrap(), "{be}");
        assert_eq!(store.list_tenants().await.unwrap(), vec![t.clone()], "{be}");
        assert_eq!(store.default_workspace(t.id).await.unwrap(), w, "{be}");

        // Workspaces: slugs unique per tenant among live ones, lookups by id or slug.
        let staging = workspace(&t, "staging");
        store.insert_workspace(&staging).await.unwrap();
        let mut dup = workspace(&t, "staging");
        let err = store.insert_workspace(&dup).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        let (t2, w2) = tenant_and_ws("other");
        store.create_tenant(&t2, &w2).await.unwrap();
        dup.tenant_id = t2.id;
        store.insert_workspace(&dup).await.unwrap();
        assert_eq!(
            store.find_workspace(t.id, "STAGING").await.unwrap(),
            Some(staging.clone()),
            "{be}: slugs are matched lower-cased"
        );
        assert_eq!(
            store
                .find_workspace(t.id, &staging.id.to_string())
                .await
                .unwrap(),
            Some(staging.clone()),
            "{be}"
        );
        assert!(
            store
                .find_workspace(t2.id, &staging.id.to_string())
                .await
                .unwrap()
                .is_none()
        );
        let mut renamed = staging.clone();
        renamed.slug = "default".into();
        let err = store.update_workspace(&renamed).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        renamed.slug = "stage".into();
        // `staging` had broadcast off: turn it on, and the default workspace's off.
        renamed.is_observability_broadcast_enabled = true;
        renamed.description = Some("Ünïcode ✓".into());
        renamed.updated_at = Some(time::now_rfc3339());
        store.update_workspace(&renamed).await.unwrap();
        assert_eq!(
            store.workspace_by_id(staging.id).await.unwrap(),
            Some(renamed.clone())
        );
        let mut w_off = w.clone();
        w_off.is_observability_broadcast_enabled = false;
        store.update_workspace(&w_off).await.unwrap();
        assert_eq!(store.default_workspace(t.id).await.unwrap(), w_off, "{be}");
        let page = store
            .list_workspaces(
                t.id,
                PageRequest {
                    offset: 1,
                    limit: 1,
                },
            )
            .await
            .unwrap();
        assert_eq!(page.total, 2, "{be}");
        assert_eq!(page.items, vec![renamed.clone()], "{be}: oldest first");

        // Keys: lookups, the disabled filter, updates, moves and deletes.
        let mgmt = key(&t, &w, KeyKind::Management, "admin");
        store.insert_key(&mgmt).await.unwrap();
        let err = store.insert_key(&mgmt).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        let mut k1 = key(&t, &renamed, KeyKind::Workspace, "one");
        k1.expires_at = Some("2999-01-01T00:00:00.000Z".into());
        k1.created_at = "2026-01-01T00:00:00.000Z".into();
        let k2 = key(&t, &renamed, KeyKind::Workspace, "two");
        store.insert_key(&k1).await.unwrap();
        store.insert_key(&k2).await.unwrap();
        assert_eq!(store.key_by_hash(&k1.hash).await.unwrap(), Some(k1.clone()));
        assert_eq!(
            store.key_by_hash(&mgmt.hash).await.unwrap(),
            Some(mgmt.clone())
        );
        assert!(store.key_by_hash(&"0".repeat(64)).await.unwrap().is_none());
        let mut k1d = k1.clone();
        k1d.disabled = true;
        k1d.name = "one (off)".into();
        k1d.updated_at = Some(time::now_rfc3339());
        store.update_key(&k1d).await.unwrap();
        assert_eq!(
            store.count_active_workspace_keys(renamed.id).await.unwrap(),
            1
        );
        let live = store.list_keys(renamed.id, false, all()).await.unwrap();
        assert_eq!((live.total, live.items), (1, vec![k2.clone()]), "{be}");
        let every = store.list_keys(renamed.id, true, all()).await.unwrap();
        assert_eq!(
            (every.total, every.items),
            (2, vec![k1d.clone(), k2.clone()])
        );
        // Management keys are not workspace keys.
        assert_eq!(store.list_keys(w.id, true, all()).await.unwrap().total, 0);
        let mut moved = k2.clone();
        moved.workspace_id = w.id;
        store.update_key(&moved).await.unwrap();
        assert_eq!(store.count_active_workspace_keys(w.id).await.unwrap(), 1);
        store.delete_key(&moved.hash).await.unwrap();
        assert!(matches!(
            store.delete_key(&moved.hash).await,
            Err(StoreError::NotFound)
        ));
        let mut ghost = k2.clone();
        ghost.hash = "f".repeat(64);
        assert!(matches!(
            store.update_key(&ghost).await,
            Err(StoreError::NotFound)
        ));

        // Destinations: sealed, flags and rates round-trip, limit per type, tenant scoping.
        let now = time::now_rfc3339();
        let mut made = Vec::new();
        for _ in 0..5 {
            made.push(
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
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        // The limit is per workspace.
        store
            .insert_destination(&new_langfuse(renamed.id), Uuid::now_v7(), &now, 5)
            .await
            .unwrap();
        let got = store
            .get_destination(t.id, made[0].id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, made[0], "{be}");
        assert!(got.privacy_mode && got.broadcast_generation_request_context);
        assert!(!got.broadcast_generation_identity);
        assert_eq!(got.sampling_rate, 0.25);
        assert!(
            store
                .get_destination(t2.id, made[0].id)
                .await
                .unwrap()
                .is_none()
        );
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
            vec![made[1].id, made[2].id],
            "{be}"
        );
        let mut upd = made[1].clone();
        upd.enabled = false;
        upd.sampling_rate = 1.0;
        upd.name = None;
        upd.api_key_hashes = None;
        upd.config
            .insert("baseUrl".into(), json!("https://lf.example.com"));
        upd.updated_at = time::now_rfc3339();
        store.update_destination(&upd).await.unwrap();
        assert_eq!(
            store.get_destination(t.id, upd.id).await.unwrap(),
            Some(upd.clone())
        );
        store.delete_destination(made[0].id, &now).await.unwrap();
        assert!(matches!(
            store.delete_destination(made[0].id, &now).await,
            Err(StoreError::NotFound)
        ));
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

        // What the engine runs, with each workspace's broadcast switch.
        let live = store.live_destinations().await.unwrap();
        assert_eq!(live.len(), 6, "{be}");
        for (d, on) in &live {
            assert_eq!(
                *on,
                d.workspace_id == renamed.id,
                "{be}: broadcast switch of {}",
                d.id
            );
        }

        // Deleting a workspace retires its destinations; a deleted one takes no more.
        store.delete_workspace(renamed.id, &now).await.unwrap();
        assert!(matches!(
            store.delete_workspace(renamed.id, &now).await,
            Err(StoreError::NotFound)
        ));
        assert_eq!(store.live_destinations().await.unwrap().len(), 5);
        assert!(store.find_workspace(t.id, "stage").await.unwrap().is_none());
        let err = store
            .insert_destination(&new_langfuse(renamed.id), Uuid::now_v7(), &now, 5)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::NotFound), "{be}: {err}");
        // Its slug is free again.
        store
            .insert_workspace(&workspace(&t, "stage"))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn secrets_are_sealed_and_rotation_reseals() {
    for db in backends().await {
        let be = db.label();
        let old_spec = crypto::generate_key_spec();
        let store = db.open(Keyring::from_spec(&old_spec).unwrap()).await;
        let (t, w) = tenant_and_ws("acme");
        store.create_tenant(&t, &w).await.unwrap();
        let d = store
            .insert_destination(&new_langfuse(w.id), Uuid::now_v7(), &time::now_rfc3339(), 5)
            .await
            .unwrap();
        drop(store);

        // Nothing in the database holds the secret in clear.
        let mut raw = sqlx::AnyConnection::connect(&db.url()).await.unwrap();
        let rows: Vec<(String,)> = sqlx::query_as("SELECT config_enc FROM destinations")
            .fetch_all(&mut raw)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert!(rows[0].0.starts_with("tc1:"), "{be}");
        assert!(!rows[0].0.contains("supersecret"), "{be}");
        raw.close().await.unwrap();

        let new_spec = crypto::generate_key_spec();
        let both = Keyring::from_spec(&format!("{new_spec}\n{old_spec}")).unwrap();
        let store = db.open(both).await;
        assert_eq!(store.reencrypt_all().await.unwrap(), 1, "{be}");
        assert_eq!(store.reencrypt_all().await.unwrap(), 0, "{be}");
        drop(store);
        let only_new = db.open(Keyring::from_spec(&new_spec).unwrap()).await;
        let got = only_new.get_destination(t.id, d.id).await.unwrap().unwrap();
        assert_eq!(got.config, d.config, "{be}");
        // Reopening runs no migration twice.
        drop(only_new);
        db.open(ring()).await.ping().await.unwrap();
    }
}

/// Several stores on one database, as several nodes would be: the per-type limit holds under
/// concurrent creates in one workspace.
#[tokio::test]
async fn destination_limit_holds_across_concurrent_nodes() {
    for db in backends().await {
        let be = db.label();
        let spec = crypto::generate_key_spec();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Arc::new(db.open(Keyring::from_spec(&spec).unwrap()).await));
        }
        let (t, w) = tenant_and_ws("acme");
        nodes[0].create_tenant(&t, &w).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let node = nodes[i % nodes.len()].clone();
            tasks.spawn(async move {
                node.insert_destination(
                    &new_langfuse(w.id),
                    Uuid::now_v7(),
                    &time::now_rfc3339(),
                    5,
                )
                .await
            });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(StoreError::Conflict(_)) => refused += 1,
                Err(e) => panic!("{be}: {e}"),
            }
        }
        assert_eq!((ok, refused), (5, 19), "{be}");
        assert_eq!(
            nodes[1]
                .count_destinations(w.id, DestinationType::Langfuse)
                .await
                .unwrap(),
            5,
            "{be}"
        );
    }
}

/// Concurrent creates of one slug: exactly one wins, the others get a conflict.
#[tokio::test]
async fn slugs_stay_unique_across_concurrent_nodes() {
    for db in backends().await {
        let be = db.label();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Arc::new(db.open(ring()).await));
        }
        let (t, w) = tenant_and_ws("acme");
        nodes[0].create_tenant(&t, &w).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..12 {
            let node = nodes[i % nodes.len()].clone();
            let ws = workspace(&t, "prod");
            tasks.spawn(async move { node.insert_workspace(&ws).await });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Conflict(_)) => refused += 1,
                Err(e) => panic!("{be}: {e}"),
            }
        }
        assert_eq!((ok, refused), (1, 11), "{be}");
    }
}

/// A workspace is never deleted with an active key in it, even when the key is created on
/// another node while the workspace is being deleted.
#[tokio::test]
async fn no_active_key_in_a_deleted_workspace_across_nodes() {
    for db in backends().await {
        let be = db.label();
        let (a, b) = (
            Arc::new(db.open(ring()).await),
            Arc::new(db.open(ring()).await),
        );
        let (t, w) = tenant_and_ws("acme");
        a.create_tenant(&t, &w).await.unwrap();

        // Sequentially: an active key blocks the delete, a disabled one does not.
        let ws = workspace(&t, "one");
        a.insert_workspace(&ws).await.unwrap();
        let mut k = key(&t, &ws, KeyKind::Workspace, "k");
        a.insert_key(&k).await.unwrap();
        let err = b
            .delete_workspace(ws.id, &time::now_rfc3339())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        k.disabled = true;
        a.update_key(&k).await.unwrap();
        b.delete_workspace(ws.id, &time::now_rfc3339())
            .await
            .unwrap();
        // A deleted workspace takes no active key, by insert or by re-enabling.
        k.disabled = false;
        assert!(
            matches!(a.update_key(&k).await, Err(StoreError::NotFound)),
            "{be}"
        );
        let k2 = key(&t, &ws, KeyKind::Workspace, "k2");
        assert!(
            matches!(a.insert_key(&k2).await, Err(StoreError::NotFound)),
            "{be}"
        );

        // Concurrently: exactly one of the two wins, every round.
        for round in 0..10 {
            let ws = workspace(&t, &format!("race-{round}"));
            a.insert_workspace(&ws).await.unwrap();
            let k = key(&t, &ws, KeyKind::Workspace, "k");
            let (na, nb) = (a.clone(), b.clone());
            let ins = tokio::spawn(async move { na.insert_key(&k).await });
            let del =
                tokio::spawn(async move { nb.delete_workspace(ws.id, &time::now_rfc3339()).await });
            let (ins, del) = (ins.await.unwrap(), del.await.unwrap());
            match (&ins, &del) {
                (Ok(()), Err(StoreError::Conflict(_))) | (Err(StoreError::NotFound), Ok(())) => {}
                other => panic!("{be}: round {round}: {other:?}"),
            }
        }
    }
}

/// First start on several nodes at once: under the bootstrap lock, exactly one finds the store
/// empty and creates the first tenant.
#[tokio::test]
async fn bootstrap_lock_lets_one_node_create_the_first_tenant() {
    for db in backends().await {
        let be = db.label();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Arc::new(db.open(ring()).await));
        }
        let mut tasks = tokio::task::JoinSet::new();
        for node in &nodes {
            let node = node.clone();
            tasks.spawn(async move {
                let lock = node.lock_bootstrap().await.unwrap();
                let created = if node.is_empty().await.unwrap() {
                    // Widen the window a racing node would need.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    let (t, w) = tenant_and_ws("default");
                    node.create_tenant(&t, &w).await.unwrap();
                    true
                } else {
                    false
                };
                lock.release().await.unwrap();
                created
            });
        }
        let mut created = 0;
        while let Some(r) = tasks.join_next().await {
            created += usize::from(r.unwrap());
        }
        assert_eq!(created, 1, "{be}");
        assert_eq!(nodes[2].list_tenants().await.unwrap().len(), 1, "{be}");
        // A dropped (not released) lock is released too.
        drop(nodes[0].lock_bootstrap().await.unwrap());
        let again =
            tokio::time::timeout(std::time::Duration::from_secs(5), nodes[1].lock_bootstrap())
                .await
                .expect("the dropped lock was released");
        again.unwrap().release().await.unwrap();
    }
}

/// PostgreSQL text cannot hold U+0000: both backends refuse it in writes (a conflict with a
/// message, not a database error) and find nothing by it.
#[tokio::test]
async fn nul_characters_are_refused_alike() {
    for db in backends().await {
        let be = db.label();
        let store = db.open(ring()).await;
        let (t, w) = tenant_and_ws("acme");
        store.create_tenant(&t, &w).await.unwrap();
        let mut ws = workspace(&t, "prod");
        ws.name = "a\0b".into();
        let err = store.insert_workspace(&ws).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        ws.name = "ok".into();
        ws.description = Some("\0".into());
        assert!(matches!(
            store.insert_workspace(&ws).await,
            Err(StoreError::Conflict(_))
        ));
        let mut nd = new_langfuse(w.id);
        nd.name = "x\0".into();
        let err = store
            .insert_destination(&nd, Uuid::now_v7(), &time::now_rfc3339(), 5)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        let mut k = key(&t, &w, KeyKind::Workspace, "k\0");
        assert!(matches!(
            store.insert_key(&k).await,
            Err(StoreError::Conflict(_))
        ));
        k.name = "k".into();
        store.insert_key(&k).await.unwrap();
        assert!(
            store.find_workspace(t.id, "\0").await.unwrap().is_none(),
            "{be}"
        );
        assert!(store.key_by_hash("\0").await.unwrap().is_none(), "{be}");
        assert!(matches!(
            store.delete_key("\0").await,
            Err(StoreError::NotFound)
        ));
        // JSON columns carry it escaped.
        let mut nd = new_langfuse(w.id);
        nd.api_key_hashes = Some(vec!["\0".into()]);
        let d = store
            .insert_destination(&nd, Uuid::now_v7(), &time::now_rfc3339(), 5)
            .await
            .unwrap();
        assert_eq!(
            store.get_destination(t.id, d.id).await.unwrap(),
            Some(d),
            "{be}"
        );
    }
}

#[tokio::test]
async fn bad_urls_fail_clearly_without_the_password() {
    let err = SqlStore::connect("mysql://u:hunter2@db.internal/x", ring())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("unsupported database URL scheme"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");

    // Nothing listens on port 1: connecting retries until the acquire timeout, then names the
    // host and port.
    let err = SqlStore::connect("postgres://tc:hunter2@127.0.0.1:1/tracecast", ring())
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.starts_with("cannot connect to PostgreSQL at 127.0.0.1:1"),
        "{err}"
    );
    assert!(
        err.contains("database tracecast") && err.contains("user tc"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    let err = SqlStore::connect(
        "postgresql:///tracecast?host=/nonexistent/dir&password=hunter2",
        ring(),
    )
    .await
    .err()
    .unwrap()
    .to_string();
    assert!(
        err.starts_with("cannot connect to PostgreSQL at /nonexistent/dir:5432"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");

    if let Ok(admin_url) = std::env::var(ENV)
        && !admin_url.is_empty()
    {
        // The server answers but the database does not exist.
        let mut u = url::Url::parse(&admin_url).unwrap();
        u.set_password(Some("hunter2")).unwrap();
        u.set_path("tracecast_no_such_database");
        let err = SqlStore::connect(u.as_str(), ring())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("cannot connect to PostgreSQL at"), "{err}");
        assert!(err.contains("tracecast_no_such_database"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}

/// Removing (deleting or disabling) every management key of a tenant at once, from several
/// nodes: all but one succeed, and the account keeps exactly one active management key.
#[tokio::test]
async fn the_last_management_key_survives_concurrent_removals() {
    for db in backends().await {
        let be = db.label();
        let spec = crypto::generate_key_spec();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Arc::new(db.open(Keyring::from_spec(&spec).unwrap()).await));
        }
        let (t, w) = tenant_and_ws("acme");
        nodes[0].create_tenant(&t, &w).await.unwrap();
        let keys: Vec<ApiKey> = (0..6)
            .map(|i| key(&t, &w, KeyKind::Management, &format!("m{i}")))
            .collect();
        for k in &keys {
            nodes[0].insert_key(k).await.unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for (i, k) in keys.iter().cloned().enumerate() {
            let node = nodes[i % nodes.len()].clone();
            tasks.spawn(async move {
                if i % 2 == 0 {
                    node.delete_key(&k.hash).await
                } else {
                    let mut k = k;
                    k.disabled = true;
                    node.update_key(&k).await
                }
            });
        }
        let (mut ok, mut refused) = (0, 0);
        while let Some(r) = tasks.join_next().await {
            match r.unwrap() {
                Ok(()) => ok += 1,
                Err(StoreError::Conflict(m)) => {
                    assert!(m.contains("last active management key"), "{be}: {m}");
                    refused += 1
                }
                Err(e) => panic!("{be}: {e}"),
            }
        }
        assert_eq!((ok, refused), (5, 1), "{be}");
        let active = nodes[1]
            .list_management_keys(t.id, false, all())
            .await
            .unwrap();
        assert_eq!(active.total, 1, "{be}");
        // The survivor cannot be given an expiry either (it would lock the account out later).
        let mut last = active.items[0].clone();
        last.expires_at = Some("2999-01-01T00:00:00.000Z".into());
        let err = nodes[2].update_key(&last).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        // A workspace key is not a management key and does not count.
        let wk = key(&t, &w, KeyKind::Workspace, "app");
        nodes[0].insert_key(&wk).await.unwrap();
        let err = nodes[0].delete_key(&last.hash).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{be}: {err}");
        nodes[0].delete_key(&wk.hash).await.unwrap();
    }
}

/// The S3 ExternalId: issued once per workspace (concurrent first uses agree), and what every
/// read of an `iam_role` destination carries, whatever was stored in its config.
#[tokio::test]
async fn external_ids_are_issued_once_per_workspace_and_override_stored_ones() {
    for db in backends().await {
        let be = db.label();
        let spec = crypto::generate_key_spec();
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(Arc::new(db.open(Keyring::from_spec(&spec).unwrap()).await));
        }
        let (t, w) = tenant_and_ws("acme");
        nodes[0].create_tenant(&t, &w).await.unwrap();
        let other = workspace(&t, "other");
        nodes[0].insert_workspace(&other).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..9 {
            let node = nodes[i % nodes.len()].clone();
            tasks.spawn(async move { node.workspace_external_id(w.id).await.unwrap() });
        }
        let mut ids = std::collections::BTreeSet::new();
        while let Some(r) = tasks.join_next().await {
            ids.insert(r.unwrap());
        }
        assert_eq!(ids.len(), 1, "{be}: {ids:?}");
        let issued = ids.into_iter().next().unwrap();
        assert!(issued.starts_with("tc-"), "{be}: {issued}");
        let other_id = nodes[1].workspace_external_id(other.id).await.unwrap();
        assert_ne!(other_id, issued, "{be}");

        // A config stored with a tenant-chosen ExternalId (as an older version allowed).
        let mut d = new_langfuse(w.id);
        d.ty = DestinationType::S3;
        d.config = config::validate(
            DestinationType::S3,
            &json!({"bucketName": "b", "authMode": "iam_role", "externalId": "chosen-by-tenant",
                "roleArn": "arn:aws:iam::123456789012:role/other-tenant"}),
        )
        .unwrap();
        let id = Uuid::now_v7();
        nodes[0]
            .insert_destination(&d, id, &time::now_rfc3339(), 5)
            .await
            .unwrap();
        let read = nodes[2].get_destination(t.id, id).await.unwrap().unwrap();
        assert_eq!(read.config["externalId"], issued.as_str(), "{be}");
        let live = nodes[2].live_destinations().await.unwrap();
        let (engine, _) = live.iter().find(|(x, _)| x.id == id).unwrap();
        assert_eq!(engine.config["externalId"], issued.as_str(), "{be}");
    }
}

#[tokio::test]
async fn dashboard_sessions_belong_to_their_key_and_expire() {
    for db in backends().await {
        let label = db.label();
        let store = db.open(ring()).await;
        let (t, w) = tenant_and_ws("sessions");
        store.create_tenant(&t, &w).await.unwrap();
        let k = key(&t, &w, KeyKind::Management, "admin");
        let k2 = key(&t, &w, KeyKind::Management, "second");
        store.insert_key(&k).await.unwrap();
        store.insert_key(&k2).await.unwrap();
        let session =
            |id: &str, key_hash: &str, expires_at: &str| tracecast_store::DashboardSession {
                id_hash: id.repeat(64),
                key_hash: key_hash.into(),
                created_at: "2026-01-01T00:00:00.000Z".into(),
                expires_at: expires_at.into(),
            };
        let live = session("a", &k.hash, "2999-01-01T00:00:00.000Z");
        let old = session("b", &k.hash, "2026-01-01T01:00:00.000Z");
        let other = session("c", &k2.hash, "2999-01-01T00:00:00.000Z");
        for s in [&live, &old, &other] {
            store.insert_session(s).await.unwrap();
        }
        assert_eq!(
            store.session(&live.id_hash).await.unwrap().as_ref(),
            Some(&live),
            "{label}"
        );
        // A key that does not exist cannot hold a session.
        let orphan = session("d", &"f".repeat(64), "2999-01-01T00:00:00.000Z");
        assert!(
            matches!(
                store.insert_session(&orphan).await,
                Err(StoreError::NotFound)
            ),
            "{label}"
        );
        // Expired ones go; live ones stay.
        assert_eq!(
            store
                .delete_expired_sessions("2026-06-01T00:00:00.000Z")
                .await
                .unwrap(),
            1,
            "{label}"
        );
        assert!(
            store.session(&old.id_hash).await.unwrap().is_none(),
            "{label}"
        );
        // Deleting a key deletes its sessions, and only its own.
        store.delete_key(&k2.hash).await.unwrap();
        assert!(
            store.session(&other.id_hash).await.unwrap().is_none(),
            "{label}"
        );
        assert!(
            store.session(&live.id_hash).await.unwrap().is_some(),
            "{label}"
        );
        // Sign-out, twice: the second is not an error.
        store.delete_session(&live.id_hash).await.unwrap();
        store.delete_session(&live.id_hash).await.unwrap();
        assert!(
            store.session(&live.id_hash).await.unwrap().is_none(),
            "{label}"
        );
    }
}
