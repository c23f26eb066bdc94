//! Opening the store and running the HTTP server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};
use tracecast_engine::queue::{
    NatsQueue, NatsQueueOptions, SqliteQueue, SqliteQueueOptions, valid_name,
};
use tracecast_engine::{ClusterOptions, Engine};
use tracecast_store::{Keyring, SqlStore, Store};

use crate::rate_limit::RateLimiter;
use crate::settings::{Limits, Settings};
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
    if settings.dashboard.session_hours == 0 || settings.dashboard.session_hours > 24 * 366 {
        anyhow::bail!("dashboard.session_hours must be between 1 and 8784 (a year)");
    }
    if !valid_name(&settings.queue_prefix) {
        anyhow::bail!("queue_prefix must be 1-64 characters of A-Z, a-z, 0-9, _ and -");
    }
    settings.egress.policy()?;
    settings.limits.validate()
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
    /// The OTLP/gRPC receiver's address, when `otlp_grpc_listen` is set.
    pub otlp_grpc_addr: Option<SocketAddr>,
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
    let mut delivery = settings.delivery.clone();
    delivery.egress = settings.egress.policy()?;
    let grpc_listener = match &settings.otlp_grpc_listen {
        Some(a) => Some(
            TcpListener::bind(a)
                .await
                .with_context(|| format!("binding otlp_grpc_listen {a}"))?,
        ),
        None => None,
    };
    let engine = match &settings.queue_url {
        None => {
            let path = settings.data_dir.join("queue.db");
            crate::permissions::prepare_db_file(&path)
                .with_context(|| format!("creating {}", path.display()))?;
            let mut qopts = SqliteQueueOptions::new(path);
            qopts.sync_full = settings.queue_sync;
            qopts.tail_bytes = settings.queue_memory_mib.max(1) * 1024 * 1024;
            let queue = Arc::new(SqliteQueue::open(qopts).context("opening the queue")?);
            Engine::start(store.clone(), queue, delivery).await
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
            Engine::start_cluster(store.clone(), queue, delivery, cluster).await
        }
    }
    .context("starting the delivery engine")?;
    let state = AppState {
        store,
        engine: engine.clone(),
        metrics: crate::api::metrics::handle(),
        metrics_token: settings.metrics_token.as_deref().map(Into::into),
        limits: Arc::new(settings.limits.clone()),
        rate_limiter: Arc::new(RateLimiter::new(&settings.limits)),
        keys: Arc::default(),
    };
    let mut app = crate::api::router(state.clone())
        .merge(crate::gateway::routes(state.clone(), &settings.gateway)?);
    if settings.dashboard.enabled {
        app = app.merge(crate::dashboard::routes(state.clone(), &settings.dashboard));
    }
    let limits = settings.limits.clone();
    // One shutdown signal for the HTTP server and the OTLP/gRPC receiver.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let mut otlp_grpc_addr = None;
    let grpc = match grpc_listener {
        Some(l) => {
            otlp_grpc_addr = Some(l.local_addr()?);
            let grpc_state = state.clone();
            Some(tokio::spawn(async move {
                let stop = async move {
                    let _ = stop_rx.wait_for(|s| *s).await;
                };
                if let Err(e) = crate::ingest::otlp::grpc::serve(l, grpc_state, stop).await {
                    tracing::error!(error = %e, "the OTLP/gRPC receiver stopped");
                }
            }))
        }
        None => None,
    };
    let task = tokio::spawn(async move {
        let served = serve(listener, app, &limits, shutdown).await;
        if let Some(g) = grpc {
            let _ = g.await;
        }
        // In-flight HTTP requests are done; stop the workers and persist their cursors.
        engine.shutdown().await;
        served
    });
    say!("tracecast: listening on http://{addr}");
    if settings.dashboard.enabled {
        // An unspecified address (0.0.0.0) is not one a browser should be sent to.
        let mut shown = addr;
        if shown.ip().is_unspecified() {
            shown.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        say!(
            "tracecast: dashboard at http://{shown}/ (sign in with a management key; `tracecast keys create --management --name me` makes a new one)"
        );
    }
    tracing::info!(%addr, "listening");
    if let Some(g) = otlp_grpc_addr {
        say!("tracecast: OTLP/gRPC on {g}");
    }
    Ok(Running {
        addr,
        state,
        task,
        otlp_grpc_addr,
    })
}

/// The answer to a connection over `max_connections`.
const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 87\r\n\r\n{\"error\":{\"code\":503,\"message\":\"Too many connections (limits.max_connections); retry\"}}";

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the requests in flight.
///
/// The `[limits]` hold for every connection: at most `max_connections` are served at once (one
/// more gets 503 and is closed), a client must send a request's headers within
/// `header_read_timeout_secs` of connecting or of the previous answer (so an idle keep-alive
/// connection is closed then), each read of a body must come within `body_timeout_secs`, and
/// a request answered later than `request_timeout_secs` gets 408.
async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let service = tower::ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(limits.request_timeout_secs),
        ))
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
            limits.body_timeout_secs,
        )))
        .service(app);
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_timeout_secs));
    let slots = Arc::new(Semaphore::new(connection_slots(
        limits.max_connections,
        open_files_limit(),
    )));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    // TCP_NODELAY: without it a streamed answer's last small write (the
                    // chunked terminator) waits for the client's delayed ACK, ~40 ms on Linux.
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(error = %e, "setting TCP_NODELAY failed");
                    }
                    stream
                }
                Err(e) => {
                    // Out of descriptors (EMFILE) or a connection reset before it was
                    // accepted: wait a moment instead of spinning on the error.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over max_connections: a fixed answer written without waiting (a fresh socket's
            // send buffer takes it), then the connection is closed.
            metrics::counter!("tracecast_http_connections_refused_total").increment(1);
            let _ = stream.try_write(TOO_MANY_CONNECTIONS);
            continue;
        };
        let conn = builder
            .serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(service.clone()),
            )
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Errors are the client's doing (reset, header timeout) and end only its connection.
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Descriptors kept for everything but inbound connections: databases, queue files, outbound
/// deliveries, the listener.
const RESERVED_FDS: u64 = 128;

/// The soft limit of open files of this process (Linux `/proc/self/limits`), if known.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// `max_connections`, lowered so that connections leave [`RESERVED_FDS`] descriptors free
/// under the process's open-files limit: else idle sockets could take every descriptor and
/// the service could open neither its files nor a delivery.
fn connection_slots(configured: usize, open_files: Option<u64>) -> usize {
    let Some(open_files) = open_files else {
        return configured;
    };
    let fit = usize::try_from(open_files.saturating_sub(RESERVED_FDS))
        .unwrap_or(usize::MAX)
        .max(1);
    if fit < configured {
        tracing::warn!(
            max_connections = configured,
            open_files,
            "limits.max_connections lowered to {fit} to stay under the open-files limit"
        );
        say!(
            "tracecast: limits.max_connections lowered from {configured} to {fit}: the open-files limit is {open_files}"
        );
    }
    fit.min(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_leave_descriptors_free() {
        assert_eq!(connection_slots(1024, Some(256)), 128);
        assert_eq!(connection_slots(1024, Some(1_048_576)), 1024);
        assert_eq!(connection_slots(1024, Some(10)), 1);
        assert_eq!(connection_slots(1024, None), 1024);
        // This process's limit is read (Linux).
        assert!(open_files_limit().is_some_and(|n| n > 0));
    }
}
