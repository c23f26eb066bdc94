//! The engine: one worker per live destination, kept in step with the store.
//!
//! [`Engine::reload`] reads every live destination and workspace switch from the store and
//! reconciles the running workers: new destinations start at the head of their workspace's log,
//! changed ones get their new config (routing, credentials, privacy) without a restart, and
//! deleted ones discard their backlog and stop. The API calls [`Engine::changed`] after every
//! change, which runs [`Engine::reload_changed`]: only the destinations updated or deleted (or
//! whose workspace was) since the last reload, read with `Store::destinations_changed_since`
//! from 10 s before that reload began (clock differences between nodes). A background task
//! also does that every `config_refresh_ms` (and on a cluster announcement), and a full
//! [`Engine::reload`] every minute as the safety net.
//!
//! In cluster mode ([`Engine::start_cluster`]) a node runs the workers of the destinations whose
//! lease it holds, and serves the status of the others from the shared queue state; see
//! [`crate::cluster`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tracecast_exporters::{ExportContext, ExportError};
use tracecast_model::DestinationType;
use tracecast_model::destination::Destination;
use tracecast_model::generation::Generation;
use tracecast_model::trace::TraceOptions;
use tracecast_store::Store;
use uuid::Uuid;

use crate::budget::{Budget, DestinationView, Tracker};
use crate::cluster::{Cluster, ClusterOptions, lease_key, preferred};
use crate::delivery::{self, DestConfig, Pause, Runtime, now_ms};
use crate::history::{History, HistorySnapshot};
use crate::options::EngineOptions;
use crate::queue::{
    AppendResult, Counters, DeadLetterSummary, NatsQueue, NewRecord, Queue, QueueError,
};
use crate::route::CompiledRoute;

struct Handle {
    rt: Arc<Runtime>,
    cfg_tx: watch::Sender<Arc<DestConfig>>,
    /// Stops this worker alone (its lease lost or handed over; the engine shutting down).
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

pub struct Engine {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    ctx: ExportContext,
    opts: Arc<EngineOptions>,
    /// The outage budget as last measured ([`crate::budget`]).
    budget: Arc<Budget>,
    workers: Mutex<HashMap<Uuid, Handle>>,
    /// Recent activity of the destinations this node delivers (the dashboard's charts);
    /// dropped when the destination is deleted or another node of the cluster takes it over.
    histories: Mutex<HashMap<Uuid, Arc<History>>>,
    /// Every live destination as last read from the store, with its workspace switch.
    known: Mutex<HashMap<Uuid, (Destination, bool)>>,
    cluster: Option<Cluster>,
    reload_lock: tokio::sync::Mutex<()>,
    /// Where the next incremental reload reads changes from (RFC 3339): the start of the last
    /// successful reload less [`CHANGE_MARGIN_MS`]. `None` until the first full reload.
    synced_since: Mutex<Option<String>>,
    version: AtomicU64,
    shutdown: watch::Sender<bool>,
    background: Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

/// The state a destination reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Active,
    /// Not sending: its credentials were rejected, or it cannot deliver (see the reason).
    Paused,
    Disabled,
}

/// `GET /observability/destinations/{id}/status`.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationStatus {
    pub state: State,
    /// Why the destination is paused or disabled.
    pub reason: Option<String>,
    pub counts: Counts,
    pub queue: QueueStatus,
    pub last_success_at: Option<String>,
    pub last_error: Option<LastError>,
    /// Cluster mode only: the node delivering the destination now (`null`: none at this
    /// moment, e.g. during a takeover).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Option<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Counts {
    pub received: u64,
    pub filtered: u64,
    pub sampled_out: u64,
    pub delivered: u64,
    pub failed_attempts: u64,
    pub dead_lettered: u64,
    pub dropped: u64,
    pub discarded: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueStatus {
    /// Records accepted and not yet done (delivered, filtered, dead-lettered or dropped).
    pub depth: u64,
    /// Their stored bytes: the log this destination's backlog keeps on disk.
    pub bytes: u64,
    /// Age of the oldest pending record in seconds.
    pub oldest_pending_age_secs: Option<f64>,
    pub dead_letters: u64,
    /// The outage budget of this backlog: how many bytes it may reach before its oldest
    /// records are dropped (`null`: no budget, see docs/delivery.md).
    pub budget_bytes: Option<u64>,
    /// `bytes` as a share of `budget_bytes` (a warning is logged from 0.8).
    pub budget_used: Option<f64>,
    /// If records keep arriving at the current rate and none is delivered, about how long
    /// until the oldest pending one is dropped (`null` with nothing pending, no budget, or no
    /// ingest).
    pub secs_until_drop: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    pub at: String,
    pub status: Option<u16>,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] tracecast_store::StoreError),
}

/// How far before a reload's start the next incremental reload looks for changes: covers
/// clocks of nodes that differ a little and a change committed a moment after its timestamp.
const CHANGE_MARGIN_MS: i64 = 10_000;
/// How often the periodic refresh reloads every destination rather than the changed ones: the
/// safety net for a change an incremental reload could not see.
const FULL_RELOAD_EVERY: Duration = Duration::from_secs(60);
/// How often the log is measured against the outage budget.
const BUDGET_EVERY: Duration = Duration::from_secs(2);

fn ms_to_rfc3339(ms: i64) -> String {
    let dt = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).unwrap_or_default();
    dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Engine {
    /// Starts the engine: loads destinations, starts their workers and the background tasks.
    pub async fn start(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        opts: EngineOptions,
    ) -> Result<Arc<Engine>, EngineError> {
        Self::start_with(store, queue, opts, None).await
    }

    /// Starts the engine as one node of a cluster sharing `nats` (see [`crate::cluster`]).
    pub async fn start_cluster(
        store: Arc<dyn Store>,
        nats: Arc<NatsQueue>,
        opts: EngineOptions,
        cluster: ClusterOptions,
    ) -> Result<Arc<Engine>, EngineError> {
        let changes = nats.subscribe_config_changed().await?;
        let cluster = Cluster::join(nats.clone(), cluster).await?;
        let engine = Self::start_with(store, nats, opts, Some(cluster)).await?;
        engine.balance().await;
        let weak = Arc::downgrade(&engine);
        let mut stop = engine.shutdown.subscribe();
        let tick = engine.cluster.as_ref().map(Cluster::tick).expect("cluster");
        let task = tokio::spawn(async move {
            let mut changes = changes;
            loop {
                let announced = tokio::select! {
                    _ = tokio::time::sleep(tick) => false,
                    c = changes.next() => c.is_some(),
                    _ = stop.changed() => return,
                };
                let Some(engine) = weak.upgrade() else { return };
                if announced {
                    if let Err(e) = engine.reload_changed().await {
                        tracing::warn!(error = %e, "reloading destinations failed");
                    }
                    // A replay may have been requested on another node.
                    for h in engine.workers.lock().expect("poisoned").values() {
                        h.rt.replay.notify_one();
                    }
                }
                engine.balance().await;
            }
        });
        engine.background.lock().expect("poisoned").push(task);
        Ok(engine)
    }

    async fn start_with(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        opts: EngineOptions,
        cluster: Option<Cluster>,
    ) -> Result<Arc<Engine>, EngineError> {
        let mut ctx = ExportContext::with_egress(
            Duration::from_secs(opts.request_timeout_secs),
            &opts.egress,
        );
        // `ExportContext::endpoint_override` normalises trailing slashes when read.
        ctx.endpoint_overrides = opts.endpoint_overrides.clone();
        let (shutdown, _) = watch::channel(false);
        let engine = Arc::new(Engine {
            store,
            queue,
            ctx,
            opts: Arc::new(opts),
            budget: Arc::default(),
            workers: Mutex::new(HashMap::new()),
            histories: Mutex::new(HashMap::new()),
            known: Mutex::new(HashMap::new()),
            cluster,
            reload_lock: tokio::sync::Mutex::new(()),
            synced_since: Mutex::new(None),
            version: AtomicU64::new(1),
            shutdown,
            background: Mutex::new(Vec::new()),
        });
        engine.reload().await?;
        let weak = Arc::downgrade(&engine);
        let refresh = Duration::from_millis(engine.opts.config_refresh_ms.max(100));
        let mut stop = engine.shutdown.subscribe();
        let refresher = tokio::spawn(async move {
            let mut last_expiry = std::time::Instant::now() - Duration::from_secs(3600);
            let mut last_full = std::time::Instant::now();
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(refresh) => {}
                    _ = stop.changed() => return,
                }
                let Some(engine) = weak.upgrade() else { return };
                let reloaded = if last_full.elapsed() >= FULL_RELOAD_EVERY {
                    last_full = std::time::Instant::now();
                    engine.reload().await
                } else {
                    engine.reload_changed().await
                };
                if let Err(e) = reloaded {
                    tracing::warn!(error = %e, "reloading destinations failed");
                }
                if last_expiry.elapsed() >= Duration::from_secs(600) {
                    last_expiry = std::time::Instant::now();
                    engine.forget_orphans().await;
                    let before = now_ms() - (engine.opts.dead_letter_retention_secs as i64) * 1000;
                    match engine.queue.expire_dead_letters(before).await {
                        Ok(n) if n > 0 => tracing::info!(expired = n, "expired old dead letters"),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "expiring dead letters failed"),
                    }
                }
            }
        });
        engine.background.lock().expect("poisoned").push(refresher);
        // The outage budget, measured before the first worker checks it and then every
        // BUDGET_EVERY.
        let mut tracker = Tracker::default();
        engine.measure_budget(&mut tracker).await;
        let weak = Arc::downgrade(&engine);
        let mut stop = engine.shutdown.subscribe();
        let budget = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(BUDGET_EVERY) => {}
                    _ = stop.changed() => return,
                }
                let Some(engine) = weak.upgrade() else { return };
                engine.measure_budget(&mut tracker).await;
            }
        });
        engine.background.lock().expect("poisoned").push(budget);
        Ok(engine)
    }

    /// Measures the log against the outage budget (see [`Tracker::tick`]).
    async fn measure_budget(&self, tracker: &mut Tracker) {
        let destinations: Vec<DestinationView> = self
            .workers
            .lock()
            .expect("poisoned")
            .values()
            .map(|h| DestinationView {
                id: h.rt.id,
                workspace: h.rt.workspace,
                type_label: h.rt.type_label,
                cursor: h.rt.cursor.load(Ordering::Relaxed),
            })
            .collect();
        if let Err(e) = tracker
            .tick(&self.queue, &self.opts, &self.budget, &destinations)
            .await
        {
            tracing::warn!(error = %e, "measuring the log against the outage budget failed");
        }
    }

    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    pub fn queue(&self) -> &Arc<dyn Queue> {
        &self.queue
    }

    fn build_config(&self, d: Destination, workspace_enabled: bool, deleted: bool) -> DestConfig {
        let exporter = tracecast_exporters::build(d.ty, &d.config, &self.ctx).map_err(|e| match e {
            ExportError::Unsupported(t) => format!("tracecast cannot deliver to {t} destinations yet; records are kept until it can (up to the outage budget)"),
            other => other.to_string(),
        });
        DestConfig {
            route: CompiledRoute::new(&d),
            opts: TraceOptions::from(&d),
            exporter,
            workspace_enabled,
            deleted,
            version: self.version.fetch_add(1, Ordering::Relaxed),
            destination: d,
        }
    }

    /// Applies a change made through the API: reloads here, and in cluster mode tells every
    /// other node to reload too.
    pub async fn changed(&self) -> Result<(), EngineError> {
        let reloaded = self.reload_changed().await;
        if let Some(c) = &self.cluster {
            c.nats.publish_config_changed().await?;
        }
        reloaded
    }

    /// Reconciles the workers with the store: every destination.
    pub async fn reload(&self) -> Result<(), EngineError> {
        let _guard = self.reload_lock.lock().await;
        let since = ms_to_rfc3339(now_ms() - CHANGE_MARGIN_MS);
        let live = self.store.live_destinations().await?;
        let mut seen = std::collections::HashSet::new();
        let mut to_start = Vec::new();
        let known_before: std::collections::HashSet<Uuid> = self
            .known
            .lock()
            .expect("poisoned")
            .keys()
            .copied()
            .collect();
        *self.known.lock().expect("poisoned") = live
            .iter()
            .map(|(d, ws)| (d.id, (d.clone(), *ws)))
            .collect();
        for (d, ws_enabled) in live {
            seen.insert(d.id);
            let was_known = known_before.contains(&d.id);
            self.apply_live(d, ws_enabled, was_known, &mut to_start)
                .await?;
        }
        for (d, ws_enabled) in to_start {
            self.start_worker(d, ws_enabled).await?;
        }
        let gone: Vec<Uuid> = self
            .workers
            .lock()
            .expect("poisoned")
            .keys()
            .filter(|id| !seen.contains(id))
            .copied()
            .collect();
        for id in gone {
            self.stop_deleted(id).await;
        }
        *self.synced_since.lock().expect("poisoned") = Some(since);
        Ok(())
    }

    /// Reconciles the workers with the destinations changed since the last reload (created,
    /// updated, deleted, or in a workspace updated or deleted): the cost of a change does not
    /// grow with the number of destinations. Falls back to [`Engine::reload`] before the first.
    pub async fn reload_changed(&self) -> Result<(), EngineError> {
        let guard = self.reload_lock.lock().await;
        let Some(from) = self.synced_since.lock().expect("poisoned").clone() else {
            drop(guard);
            return self.reload().await;
        };
        let since = ms_to_rfc3339(now_ms() - CHANGE_MARGIN_MS);
        let changed = self.store.destinations_changed_since(&from).await?;
        let mut to_start = Vec::new();
        for (d, ws_enabled, live) in changed {
            let was_known = {
                let mut known = self.known.lock().expect("poisoned");
                if live {
                    known.insert(d.id, (d.clone(), ws_enabled)).is_some()
                } else {
                    known.remove(&d.id).is_some()
                }
            };
            if live {
                self.apply_live(d, ws_enabled, was_known, &mut to_start)
                    .await?;
            } else if self.workers.lock().expect("poisoned").contains_key(&d.id) {
                self.stop_deleted(d.id).await;
            }
        }
        for (d, ws_enabled) in to_start {
            self.start_worker(d, ws_enabled).await?;
        }
        *self.synced_since.lock().expect("poisoned") = Some(since);
        Ok(())
    }

    /// Brings one live destination's worker up to date: a new configuration for a running
    /// worker, a start (queued in `to_start`), or in a cluster a starting cursor for a
    /// destination no node knew.
    async fn apply_live(
        &self,
        d: Destination,
        ws_enabled: bool,
        was_known: bool,
        to_start: &mut Vec<(Destination, bool)>,
    ) -> Result<(), EngineError> {
        let existing = {
            let workers = self.workers.lock().expect("poisoned");
            workers
                .get(&d.id)
                .map(|h| (h.cfg_tx.borrow().clone(), h.rt.clone()))
        };
        match existing {
            Some((cur, rt)) => {
                if cur.destination != d || cur.workspace_enabled != ws_enabled {
                    let credentials_changed = cur.destination.config != d.config;
                    let cfg = Arc::new(self.build_config(d, ws_enabled, false));
                    if let Some(h) = self
                        .workers
                        .lock()
                        .expect("poisoned")
                        .get(&cfg.destination.id)
                    {
                        h.cfg_tx.send_replace(cfg);
                    }
                    // New credentials (or any change) end a pause at once.
                    if credentials_changed || rt.paused().is_some() {
                        rt.unpause();
                    }
                }
            }
            // In a cluster the lease holder starts the worker (see `balance`); the first
            // node to see a new destination gives it its starting cursor, so it receives
            // everything ingested from now on on any node.
            None => match &self.cluster {
                Some(c) if !was_known => c.nats.ensure_cursor(d.id, d.workspace_id).await?,
                Some(_) => {}
                None => to_start.push((d, ws_enabled)),
            },
        }
        Ok(())
    }

    async fn start_worker(&self, d: Destination, ws_enabled: bool) -> Result<(), EngineError> {
        let id = d.id;
        let workspace = d.workspace_id;
        // A new destination starts at the head of its workspace's log: it receives what is
        // ingested from now on. A known one resumes at its cursor.
        let start = match self.queue.cursor(id).await? {
            Some(c) => c.seq,
            None => match &self.cluster {
                Some(c) => c.nats.sync_head(workspace).await?,
                None => self.queue.head(workspace),
            },
        };
        let mut counters = self.queue.counters(id).await?;
        // A pause is not carried over: the first attempt finds out whether it still holds.
        counters.paused = None;
        let type_label = d.ty.as_str();
        let cfg = Arc::new(self.build_config(d, ws_enabled, false));
        let (cfg_tx, cfg_rx) = watch::channel(cfg);
        let (stop, stop_rx) = watch::channel(false);
        let rt = Arc::new(Runtime {
            id,
            workspace,
            type_label,
            config: cfg_rx,
            counters: Mutex::new(counters.clone()),
            pause: Mutex::new(None),
            resume: tokio::sync::Notify::new(),
            replay: tokio::sync::Notify::new(),
            recovered: tokio::sync::Notify::new(),
            cursor: AtomicU64::new(start),
            history: self
                .histories
                .lock()
                .expect("poisoned")
                .entry(id)
                .or_default()
                .clone(),
        });
        // Persist the starting point before the worker starts (and before the API answers
        // the create), so records arriving before its first commit are never truncated away.
        self.queue
            .register(id, workspace, crate::queue::Cursor { seq: start }, counters)
            .await?;
        let task = tokio::spawn(delivery::run(
            rt.clone(),
            self.queue.clone(),
            self.opts.clone(),
            self.budget.clone(),
            start,
            stop_rx,
        ));
        self.workers.lock().expect("poisoned").insert(
            id,
            Handle {
                rt,
                cfg_tx,
                stop,
                task,
            },
        );
        Ok(())
    }

    /// Stops a worker without forgetting its cursor (in cluster mode: its lease was lost or is
    /// handed over). With `release`, the cursor is written and the lease given up, so another
    /// node resumes exactly there.
    async fn stop_worker(&self, id: Uuid, release: bool) {
        // The node taking the destination over keeps its history from now on.
        self.histories.lock().expect("poisoned").remove(&id);
        let handle = self.workers.lock().expect("poisoned").remove(&id);
        if let Some(h) = handle {
            h.stop.send_replace(true);
            h.rt.resume.notify_waiters();
            let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
            // The node delivering it now reports its depth; this one no longer does.
            metrics::gauge!("tracecast_queue_depth", "destination" => id.to_string(), "type" => h.rt.type_label).set(0.0);
        }
        if let Some(c) = &self.cluster {
            c.renewed.lock().expect("poisoned").remove(&id);
            if release {
                if let Err(e) = c.nats.flush().await {
                    tracing::warn!(destination = %id, error = %e, "writing the cursor before a handover failed");
                }
                if let Err(e) = c.leases.release(&lease_key(id)).await {
                    tracing::warn!(destination = %id, error = %e, "releasing a lease failed");
                }
            }
        }
    }

    /// Cluster mode: renews this node's leases, hands destinations over to their preferred
    /// nodes, and takes those preferred to this node or left without a holder (see
    /// [`crate::cluster`]).
    async fn balance(&self) {
        let Some(c) = &self.cluster else { return };
        let _guard = self.reload_lock.lock().await;
        let nodes = match c.nodes().await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "listing the cluster's nodes failed");
                vec![c.node_id.clone()]
            }
        };
        metrics::gauge!("tracecast_cluster_nodes").set(nodes.len() as f64);
        let known: Vec<(Destination, bool)> = self
            .known
            .lock()
            .expect("poisoned")
            .values()
            .cloned()
            .collect();
        let mut handed_over = false;
        for (d, ws_enabled) in known {
            let id = d.id;
            let key = lease_key(id);
            let mine = preferred(id, &nodes) == Some(c.node_id.as_str());
            let running = self.workers.lock().expect("poisoned").contains_key(&id);
            if running {
                match c.leases.renew(&key).await {
                    Ok(true) => {
                        c.renewed
                            .lock()
                            .expect("poisoned")
                            .insert(id, std::time::Instant::now());
                        if !mine {
                            tracing::info!(destination = %id, "handing the destination over to its preferred node");
                            self.stop_worker(id, true).await;
                            handed_over = true;
                        }
                    }
                    Ok(false) => {
                        tracing::warn!(destination = %id, "lease lost: another node delivers this destination now");
                        self.stop_worker(id, false).await;
                    }
                    Err(e) => {
                        tracing::warn!(destination = %id, error = %e, "renewing a lease failed");
                        if c.renewal_overdue(id) {
                            self.stop_worker(id, false).await;
                        }
                    }
                }
                continue;
            }
            let take = mine || {
                match c.leases.holder(&key).await {
                    Ok(holder) => c.free_for_long(id, holder.is_none()),
                    Err(e) => {
                        tracing::warn!(destination = %id, error = %e, "reading a lease failed");
                        false
                    }
                }
            };
            if !take {
                continue;
            }
            match c.leases.try_acquire(&key).await {
                Ok(true) => {
                    c.free_for_long(id, false);
                    c.renewed
                        .lock()
                        .expect("poisoned")
                        .insert(id, std::time::Instant::now());
                    if let Err(e) = self.start_worker(d, ws_enabled).await {
                        tracing::warn!(destination = %id, error = %e, "starting a destination's worker failed");
                        let _ = c.leases.release(&key).await;
                    } else {
                        tracing::info!(destination = %id, "took over the destination's delivery");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(destination = %id, error = %e, "acquiring a lease failed"),
            }
        }
        let owned = self.workers.lock().expect("poisoned").len();
        metrics::gauge!("tracecast_cluster_destinations_owned").set(owned as f64);
        if handed_over && let Err(e) = c.nats.publish_config_changed().await {
            tracing::warn!(error = %e, "announcing a handover failed");
        }
    }

    /// Forgets the cursors of deleted destinations that no node forgot (in a cluster, a node
    /// that died while one was being deleted), so they stop holding their logs back.
    async fn forget_orphans(&self) {
        let Some(c) = &self.cluster else { return };
        // Cursors first, then the store: a destination created in between has its row before
        // its cursor, so it is never taken for deleted.
        let Ok(cursors) = c.nats.cursor_destinations().await else {
            return;
        };
        let Ok(live) = self.store.live_destinations().await else {
            return;
        };
        let live: std::collections::HashSet<Uuid> = live.iter().map(|(d, _)| d.id).collect();
        for id in cursors.into_iter().filter(|id| !live.contains(id)) {
            if let Err(e) = self.queue.forget(id).await {
                tracing::warn!(destination = %id, error = %e, "forgetting a deleted destination's cursor failed");
            }
        }
    }

    async fn stop_deleted(&self, id: Uuid) {
        self.histories.lock().expect("poisoned").remove(&id);
        let handle = self.workers.lock().expect("poisoned").remove(&id);
        if let Some(h) = handle {
            let cur = h.cfg_tx.borrow().clone();
            let mut cfg = self.build_config(cur.destination.clone(), cur.workspace_enabled, true);
            cfg.deleted = true;
            h.cfg_tx.send_replace(Arc::new(cfg));
            h.rt.unpause();
            let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
            if let Err(e) = self.queue.forget(id).await {
                tracing::warn!(destination = %id, error = %e, "forgetting a deleted destination's cursor failed");
            }
            if let Some(c) = &self.cluster {
                c.renewed.lock().expect("poisoned").remove(&id);
                let _ = c.leases.release(&lease_key(id)).await;
            }
        }
    }

    /// Appends a workspace's generations to the log, each with the bytes it was sent as.
    /// Returns once they are durable.
    pub async fn ingest(
        &self,
        workspace: Uuid,
        generations: Vec<(Generation, &[u8])>,
        session_header: Option<&str>,
    ) -> Result<AppendResult, EngineError> {
        let records = generations
            .into_iter()
            .map(|(g, raw)| {
                let body = crate::queue::log_body(&g, raw, session_header);
                NewRecord {
                    generation: Arc::new(g),
                    body,
                }
            })
            .collect();
        let res = self.queue.append(workspace, records).await?;
        let accepted = res.accepted.iter().filter(|a| **a).count() as u64;
        metrics::counter!("tracecast_ingest_records_total", "result" => "accepted")
            .increment(accepted);
        metrics::counter!("tracecast_ingest_records_total", "result" => "duplicate")
            .increment(res.accepted.len() as u64 - accepted);
        Ok(res)
    }

    /// The status of a live destination.
    pub async fn status(&self, d: &Destination) -> Result<DestinationStatus, EngineError> {
        let (rt, cfg) = {
            let workers = self.workers.lock().expect("poisoned");
            match workers.get(&d.id) {
                Some(h) => (Some(h.rt.clone()), Some(h.cfg_tx.borrow().clone())),
                None => (None, None),
            }
        };
        let counters = match &rt {
            Some(rt) => rt.counters.lock().expect("poisoned").clone(),
            None => self.queue.counters(d.id).await?,
        };
        let cursor = match &rt {
            Some(rt) => rt.cursor.load(Ordering::Relaxed),
            None => self
                .queue
                .cursor(d.id)
                .await?
                .map(|c| c.seq)
                .unwrap_or_else(|| self.queue.head(d.workspace_id)),
        };
        let backlog = self.queue.backlog(d.workspace_id, cursor).await?;
        let (_, dead) = self.queue.list_dead_letters(d.id, 0, 0).await?;
        let ws_enabled = match &cfg {
            Some(c) => c.workspace_enabled,
            None => self
                .known
                .lock()
                .expect("poisoned")
                .get(&d.id)
                .is_none_or(|(_, ws)| *ws),
        };
        // The delivering node's pause; on the other nodes of a cluster, as it last persisted.
        let pause = match &rt {
            Some(rt) => rt.paused(),
            None if self.cluster.is_some() => counters.paused.clone().map(|p| Pause {
                status: p.status,
                message: p.message,
                since_ms: p.since_ms,
            }),
            None => None,
        };
        let owner = match (&self.cluster, &rt) {
            (None, _) => None,
            (Some(c), Some(_)) => Some(Some(c.node_id.clone())),
            (Some(c), None) => Some(c.leases.holder(&lease_key(d.id)).await?),
        };
        let (state, reason) = if !d.enabled {
            (
                State::Disabled,
                Some("the destination is disabled".to_string()),
            )
        } else if !ws_enabled {
            (
                State::Disabled,
                Some("broadcast is disabled for the workspace".to_string()),
            )
        } else if let Some(p) = pause {
            (State::Paused, Some(p.message))
        } else {
            (State::Active, None)
        };
        let now = now_ms();
        let budget = self.budget.snapshot();
        let budget_bytes = budget.allowance(d.workspace_id);
        Ok(DestinationStatus {
            state,
            reason,
            counts: counts(&counters),
            queue: QueueStatus {
                depth: backlog.records,
                bytes: backlog.bytes,
                oldest_pending_age_secs: backlog
                    .oldest_received_at_ms
                    .map(|t| ((now - t).max(0)) as f64 / 1000.0),
                dead_letters: dead,
                budget_bytes,
                budget_used: budget_bytes.map(|b| match b {
                    0 if backlog.bytes == 0 => 0.0,
                    0 => 1.0,
                    b => backlog.bytes as f64 / b as f64,
                }),
                secs_until_drop: if backlog.records == 0 {
                    None
                } else {
                    budget.secs_until_drop(d.workspace_id, backlog.bytes)
                },
            },
            last_success_at: counters.last_success_at_ms.map(ms_to_rfc3339),
            last_error: counters.last_error_at_ms.map(|at| LastError {
                at: ms_to_rfc3339(at),
                status: counters.last_error_status,
                message: counters.last_error_message.clone().unwrap_or_default(),
            }),
            owner,
        })
    }

    /// A destination's recent activity per minute and its recent errors, as recorded on this
    /// node since it started delivering the destination; `None` when this node has not
    /// delivered it (in a cluster, another node does).
    pub fn history(&self, destination: Uuid) -> Option<HistorySnapshot> {
        let h = self
            .histories
            .lock()
            .expect("poisoned")
            .get(&destination)
            .cloned()?;
        Some(h.snapshot(now_ms()))
    }

    /// Whether this node runs the destination's worker now.
    pub fn delivers(&self, destination: Uuid) -> bool {
        self.workers
            .lock()
            .expect("poisoned")
            .contains_key(&destination)
    }

    /// Up to `max` of the most recent generations of a workspace's log that the queue still
    /// holds (its in-memory tail, else the part of the log not yet truncated), oldest first.
    /// The dashboard's filter preview evaluates routing rules against them.
    pub async fn recent_generations(
        &self,
        workspace: Uuid,
        max: usize,
    ) -> Result<Vec<Arc<Generation>>, EngineError> {
        let records = self.queue.recent(workspace, max).await?;
        Ok(records.into_iter().map(|r| r.generation).collect())
    }

    /// A page of a destination's dead letters, without the generations' bodies.
    pub async fn dead_letters(
        &self,
        destination: Uuid,
        offset: u64,
        limit: u64,
    ) -> Result<(Vec<DeadLetterSummary>, u64), EngineError> {
        Ok(self
            .queue
            .list_dead_letter_summaries(destination, offset, limit)
            .await?)
    }

    /// Marks dead letters for replay and wakes the worker.
    pub async fn replay(
        &self,
        destination: Uuid,
        ids: Option<Vec<i64>>,
    ) -> Result<u64, EngineError> {
        let n = self.queue.request_replay(destination, ids).await?;
        if let Some(h) = self.workers.lock().expect("poisoned").get(&destination) {
            h.rt.replay.notify_one();
        }
        // The node delivering it may be another one.
        if let Some(c) = &self.cluster {
            c.nats.publish_config_changed().await?;
        }
        Ok(n)
    }

    /// Sends a destination type's test payload with the given config.
    pub async fn test_connection(
        &self,
        ty: DestinationType,
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> TestResult {
        let started = std::time::Instant::now();
        let exporter = match tracecast_exporters::build(ty, config, &self.ctx) {
            Ok(e) => e,
            Err(e) => {
                return TestResult {
                    ok: false,
                    status: None,
                    message: e.to_string(),
                    latency_ms: 0.0,
                };
            }
        };
        let check = exporter.test_connection().await;
        TestResult {
            ok: check.ok,
            status: check.status,
            message: check.message,
            latency_ms: started.elapsed().as_secs_f64() * 1000.0,
        }
    }

    /// Stops the workers, persisting their cursors and counters.
    pub async fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let handles: Vec<Handle> = self
            .workers
            .lock()
            .expect("poisoned")
            .drain()
            .map(|(_, h)| h)
            .collect();
        for t in self.background.lock().expect("poisoned").drain(..) {
            t.abort();
        }
        let mut stopped = Vec::with_capacity(handles.len());
        for h in handles {
            h.stop.send_replace(true);
            h.rt.resume.notify_waiters();
            let _ = tokio::time::timeout(Duration::from_secs(5), h.task).await;
            stopped.push(h.rt.id);
        }
        // Cluster: write the cursors, then hand the leases back, so the other nodes resume
        // exactly where this one stopped, at once rather than after the lease TTL.
        if let Some(c) = &self.cluster {
            if let Err(e) = c.nats.flush().await {
                tracing::warn!(error = %e, "writing cursors at shutdown failed");
            }
            for id in &stopped {
                let _ = c.leases.release(&lease_key(*id)).await;
            }
            let _ = c.members.leave().await;
            if !stopped.is_empty() {
                let _ = c.nats.publish_config_changed().await;
            }
        }
        self.queue.close().await;
    }
}

/// `POST .../test` answer.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    pub ok: bool,
    pub status: Option<u16>,
    pub message: String,
    pub latency_ms: f64,
}

fn counts(c: &Counters) -> Counts {
    Counts {
        received: c.received,
        filtered: c.filtered,
        sampled_out: c.sampled_out,
        delivered: c.delivered,
        failed_attempts: c.failed_attempts,
        dead_lettered: c.dead_lettered,
        dropped: c.dropped,
        discarded: c.discarded,
    }
}
