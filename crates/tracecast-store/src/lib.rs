//! tracecast's storage.
//!
//! [`Store`] is the one interface the server and the delivery engine use for management data
//! (tenants, workspaces, API keys, destinations). [`SqlStore`] implements it with portable SQL
//! over sqlx's `Any` driver: SQLite in the data directory by default, PostgreSQL where a
//! `postgres://` URL is given. Destination configs are sealed with the [`crypto::Keyring`] before
//! they reach the database and opened when read, so nothing above this crate sees ciphertext and
//! nothing below it sees a secret.

pub mod crypto;
mod sql;

use async_trait::async_trait;
use thiserror::Error;
use tracecast_model::{ApiKey, Destination, DestinationType, NewDestination, Tenant, Workspace};
use uuid::Uuid;

pub use crypto::{CryptoError, Keyring};
pub use sql::{BootstrapLock, DEFAULT_POSTGRES_POOL_SIZE, SqlStore};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or limit rule refused the write; the message is for the client.
    #[error("{0}")]
    Conflict(String),
    #[error("credential encryption: {0}")]
    Crypto(#[from] CryptoError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The database cannot be reached. `target` names the backend, host, port, database and
    /// user, never the password.
    #[error("cannot connect to {target}: {error}")]
    Connect { target: String, error: sqlx::Error },
    /// The store is misconfigured (an unsupported database URL, for example).
    #[error("{0}")]
    Config(String),
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A page of results and the total number matching.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub offset: u64,
    pub limit: u64,
}

/// A signed-in dashboard session. The browser holds the random session id; the store keeps only
/// its SHA-256 (`id_hash`), the management key it was opened with, and when it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DashboardSession {
    /// Hex SHA-256 of the session id.
    pub id_hash: String,
    /// Hash of the management key the session was opened with.
    pub key_hash: String,
    /// RFC 3339 UTC.
    pub created_at: String,
    /// RFC 3339 UTC: the session is refused from then on.
    pub expires_at: String,
}

/// An upstream of the capturing gateway, owned by a workspace. `config` is the upstream's
/// document (base URL, credential, model rules); the server validates it, the store seals it.
#[derive(Debug, Clone)]
pub struct GatewayUpstream {
    pub id: Uuid,
    pub workspace_id: Uuid,
    pub config: serde_json::Map<String, serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Readiness: the database answers.
    async fn ping(&self) -> Result<()>;

    /// Whether no tenant exists yet (first start).
    async fn is_empty(&self) -> Result<bool>;

    /// Serialises first-start bootstrap across every node sharing the database: hold the lock
    /// while checking [`Store::is_empty`] and creating the first tenant and key, then
    /// [`BootstrapLock::release`] it. Nodes that start together bootstrap exactly once.
    async fn lock_bootstrap(&self) -> Result<BootstrapLock>;

    /// Creates a tenant together with its default workspace.
    async fn create_tenant(&self, tenant: &Tenant, default_workspace: &Workspace) -> Result<()>;
    async fn list_tenants(&self) -> Result<Vec<Tenant>>;

    async fn list_workspaces(&self, tenant: Uuid, page: PageRequest) -> Result<Page<Workspace>>;
    /// Finds a live workspace of `tenant` by id or slug.
    async fn find_workspace(&self, tenant: Uuid, id_or_slug: &str) -> Result<Option<Workspace>>;
    /// Finds a live workspace by id, whichever tenant owns it.
    async fn workspace_by_id(&self, id: Uuid) -> Result<Option<Workspace>>;
    async fn default_workspace(&self, tenant: Uuid) -> Result<Workspace>;
    /// Fails with [`StoreError::Conflict`] when the slug is taken in the tenant.
    async fn insert_workspace(&self, ws: &Workspace) -> Result<()>;
    async fn update_workspace(&self, ws: &Workspace) -> Result<()>;
    /// Soft-deletes the workspace and its destinations. Fails with [`StoreError::Conflict`]
    /// while the workspace has active (enabled) workspace keys; atomically, so that a key
    /// created or enabled meanwhile on another node either blocks the delete or fails with
    /// [`StoreError::NotFound`].
    async fn delete_workspace(&self, id: Uuid, at: &str) -> Result<()>;
    /// The workspace's AWS ExternalId for S3 `iam_role` destinations: issued (randomly) on
    /// first use, then stable. [`StoreError::NotFound`] when the workspace is not live.
    async fn workspace_external_id(&self, workspace: Uuid) -> Result<String>;

    /// Fails with [`StoreError::NotFound`] when an enabled workspace key's workspace is
    /// deleted (or missing).
    async fn insert_key(&self, key: &ApiKey) -> Result<()>;
    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>>;
    /// Workspace keys of one workspace, oldest first.
    async fn list_keys(
        &self,
        workspace: Uuid,
        include_disabled: bool,
        page: PageRequest,
    ) -> Result<Page<ApiKey>>;
    /// Management keys of one tenant, oldest first.
    async fn list_management_keys(
        &self,
        tenant: Uuid,
        include_disabled: bool,
        page: PageRequest,
    ) -> Result<Page<ApiKey>>;
    /// Writes a key's name, disabled flag, workspace and expiry. A management key written
    /// disabled or with an expiry needs another active (enabled, unexpired) management key in
    /// its tenant, else this fails with [`StoreError::Conflict`]; the check and the write are
    /// atomic across nodes.
    async fn update_key(&self, key: &ApiKey) -> Result<()>;
    /// Deletes a key. Deleting a tenant's last active management key fails with
    /// [`StoreError::Conflict`], atomically as [`Store::update_key`].
    async fn delete_key(&self, hash: &str) -> Result<()>;
    async fn count_active_workspace_keys(&self, workspace: Uuid) -> Result<u64>;

    /// Inserts a destination unless its workspace already holds `max_per_type` live ones of
    /// its type, in which case it fails with [`StoreError::Conflict`].
    async fn insert_destination(
        &self,
        new: &NewDestination,
        id: Uuid,
        now: &str,
        max_per_type: usize,
    ) -> Result<Destination>;
    /// A live destination in any workspace of `tenant`.
    async fn get_destination(&self, tenant: Uuid, id: Uuid) -> Result<Option<Destination>>;
    async fn list_destinations(
        &self,
        workspace: Uuid,
        page: PageRequest,
    ) -> Result<Page<Destination>>;
    async fn update_destination(&self, d: &Destination) -> Result<()>;
    async fn delete_destination(&self, id: Uuid, at: &str) -> Result<()>;
    async fn count_destinations(&self, workspace: Uuid, ty: DestinationType) -> Result<u64>;
    /// Live destinations in the live workspaces of `tenant` (the per-tenant cap).
    async fn count_tenant_destinations(&self, tenant: Uuid) -> Result<u64>;

    /// Every live destination of every live workspace, with its workspace's broadcast switch
    /// (`is_observability_broadcast_enabled`). The delivery engine runs one worker for each.
    async fn live_destinations(&self) -> Result<Vec<(Destination, bool)>>;

    /// The destinations whose configuration may have changed at or after `since` (RFC 3339):
    /// the destination or its workspace was updated or deleted then. Each comes with its
    /// workspace's broadcast switch and whether it is still live; a deleted one is returned
    /// with `false`, so that the engine can stop it.
    async fn destinations_changed_since(
        &self,
        since: &str,
    ) -> Result<Vec<(Destination, bool, bool)>>;

    /// Re-seals every stored config (destinations and gateway upstreams) whose key is not the
    /// keyring's primary key. Returns how many were re-sealed.
    async fn reencrypt_all(&self) -> Result<u64>;

    // ---- dashboard sessions ----
    /// Stores a new session. Fails with [`StoreError::NotFound`] when its key does not exist.
    async fn insert_session(&self, session: &DashboardSession) -> Result<()>;
    /// A session by the hash of its id, whether or not it has expired (the caller checks).
    async fn session(&self, id_hash: &str) -> Result<Option<DashboardSession>>;
    /// Ends a session (sign-out). Ending one that does not exist is not an error.
    async fn delete_session(&self, id_hash: &str) -> Result<()>;
    /// Deletes the sessions that expired before `now` (RFC 3339); returns how many.
    async fn delete_expired_sessions(&self, now: &str) -> Result<u64>;

    // ---- gateway upstreams ----
    async fn insert_gateway_upstream(&self, u: &GatewayUpstream) -> Result<()>;
    /// The workspace's live upstreams, oldest first (the order their rules are tried in).
    async fn gateway_upstreams(&self, workspace: Uuid) -> Result<Vec<GatewayUpstream>>;
    /// Replaces the config of a live upstream of `u.workspace_id`; `NotFound` otherwise.
    async fn update_gateway_upstream(&self, u: &GatewayUpstream) -> Result<()>;
    /// Soft-deletes a live upstream of `workspace`; `NotFound` otherwise.
    async fn delete_gateway_upstream(&self, workspace: Uuid, id: Uuid, at: &str) -> Result<()>;
}
