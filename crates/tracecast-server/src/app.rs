//! Opening the store and running the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tracecast_engine::queue::{
    NatsQueue, NatsQueueOptions, SqliteQueue, SqliteQueueOptions, valid_name,
};
use tracecast_engine::{ClusterOptions, Engine};
use tracecast_store::{Keyring, SqlStore, Store};

use crate::settings::Settings;
use crate::state::AppState;

/// Opens the configured store: SQLite in the data dir unless `database_url` says otherwise.
/// Creates the data dir and (in embedded mode) the encryption key file on first use.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Arc<dyn Store>> {
    crate::permissions::prepare_dir(&settings.data_dir)
        .with_context(|| format!("creating data dir {}", settings.data_dir.display()))?;
    if settings.database_url.is_none() {
        let db = settings.data_dir.join("tracecast.db");
        crate::permissions::prepare_db_file(&db)
            .with_context(|| format!("creating {}", db.display()))?;
    }
    let keyring = match &settings.encryption_keys {
        Some(spec) => Keyring::from_spec(spec).context("TRACECAST_ENCRYPTION_KEYS")?,
        None => {
            let path = settings.data_dir.join("encryption.key");
            crate::permissions::tighten(&path)
                .with_context(|| format!("securing {}", path.display()))?;
            Keyring::load_or_create(&path)?
        }
    };
    let store = match &settings.database_url {
        Some(url) => SqlStore::connect_with(url, keyring, settings.database_pool_size).await,
        None => SqlStore::open_sqlite(&settings.data_dir, keyring).await,
    }
    .context("opening the store")?;
    Ok(Arc::new(store))
}

/// Checks settings that only make sense together, before anything is opened.
pub fn validate(settings: &Settings) -> anyhow::Result<()> {
    if settings.queue_url.is_some() {
        let shared = settings
            .database_url
            .as_deref()
            .is_some_and(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"));
        if !shared {
            anyhow::bail!(
                "queue_url (a cluster of nodes) needs a shared PostgreSQL database_url: every node must see the same destinations"
            );
        }
        if settings.encryption_keys.is_none() {
            anyhow::bail!(
                "queue_url (a cluster of nodes) needs encryption_keys (TRACECAST_ENCRYPTION_KEYS) shared by every node: a key file in each node's data dir could not decrypt the other nodes' credentials"
            );
        }
        if settings.lease_ttl_secs < 3 {
            anyhow::bail!("lease_ttl_secs must be at least 3");
        }
    }
    if let Some(id) = &settings.node_id
        && !valid_name(id)
    {
        anyhow::bail!("node_id must be 1-64 characters of A-Z, a-z, 0-9, _ and -");
    }
    if let Some(k) = &settings.bootstrap_management_key {
        crate::provision::check_bootstrap_key(k)?;
    }
    if let Some(t) = &settings.metrics_token {
        crate::api::metrics::check_token_setting(t)?;
    }
    if !valid_name(&settings.queue_prefix) {
        anyhow::bail!("queue_prefix must be 1-64 characters of A-Z, a-z, 0-9, _ and -");
    }
    Ok(())
}

/// `<host name>-<random>`: unique per process, recognisable in logs and status.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .take(40)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{:06x}", rand::random::<u32>() & 0xff_ffff)
}

/// A running server: its address and a handle that resolves when it stops.
pub struct Running {
    pub addr: SocketAddr,
    pub state: AppState,
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Binds `settings.listen`, bootstraps an empty store, and serves until `shutdown` resolves.
pub async fn start(
    settings: &Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    validate(settings)?;
    let store = open_store(settings).await?;
    // Nodes sharing one database may start together: under the lock exactly one of them finds
    // the store empty and creates the first tenant and management key.
    let lock = store
        .lock_bootstrap()
        .await
        .context("taking the bootstrap lock")?;
    let created =
        crate::provision::bootstrap(&store, settings.bootstrap_management_key.as_deref()).await?;
    lock.release()
        .await
        .context("releasing the bootstrap lock")?;
    if let Some(key) = created {
        if settings.bootstrap_management_key.is_some() {
            say!(
                "tracecast: first start: TRACECAST_BOOTSTRAP_MANAGEMENT_KEY is the management key"
            );
        } else {
            say!("tracecast: first start: created a management key. It is shown only this once:");
            say!("\n    {key}\n");
        }
    }
    let listener = TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let addr = listener.local_addr()?;
    // TCP_NODELAY on every accepted connection: without it a streamed answer's last small
    // write (the chunked terminator) waits for the client's delayed ACK, ~40 ms on Linux.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
    });
    let engine = match &settings.queue_url {
        None => {
            let path = settings.data_dir.join("queue.db");
            crate::permissions::prepare_db_file(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut qopts = SqliteQueueOptions::new(path);
            qopts.sync_full = settings.queue_sync;
            qopts.tail_bytes = settings.queue_memory_mib.max(1) * 1024 * 1024;
            let queue = Arc::new(SqliteQueue::open(qopts).context("opening the queue")?);
            Engine::start(store.clone(), queue, settings.delivery.clone()).await
        }
        Some(url) => {
            let mut qopts = NatsQueueOptions::new(url.clone(), settings.queue_prefix.clone());
            qopts.tail_bytes = settings.queue_memory_mib.max(1) * 1024 * 1024;
            qopts.replicas = settings.queue_replicas.max(1);
            let queue = Arc::new(
                NatsQueue::connect(qopts)
                    .await
                    .context("opening the NATS JetStream queue (queue_url)")?,
            );
            let node_id = settings.node_id.clone().unwrap_or_else(default_node_id);
            say!(
                "tracecast: cluster node {node_id} (queue prefix {})",
                settings.queue_prefix
            );
            let cluster = ClusterOptions {
                node_id,
                lease_ttl: std::time::Duration::from_secs(settings.lease_ttl_secs),
            };
            Engine::start_cluster(store.clone(), queue, settings.delivery.clone(), cluster).await
        }
    }
    .context("starting the delivery engine")?;
    let state = AppState {
        store,
        engine: engine.clone(),
        metrics: crate::api::metrics::handle(),
        metrics_token: settings.metrics_token.as_deref().map(Into::into),
    };
    let app = crate::api::router(state.clone())
        .merge(crate::gateway::routes(state.clone(), &settings.gateway)?);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        // In-flight HTTP requests are done; stop the workers and persist their cursors.
        engine.shutdown().await;
        served
    });
    say!("tracecast: listening on http://{addr}");
    tracing::info!(%addr, "listening");
    Ok(Running { addr, state, task })
}
