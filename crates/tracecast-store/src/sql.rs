//! The SQL implementation of [`Store`](crate::Store), over sqlx's `Any` driver.
//!
//! One implementation serves SQLite and PostgreSQL. Every statement is portable: `$n`
//! placeholders (SQLite accepts them too), flags bound as Rust `bool`s (BOOLEAN on
//! PostgreSQL, stored as 0/1 INTEGER by SQLite) and compared with `TRUE`/`FALSE`, ids,
//! timestamps and JSON as TEXT, no upserts or RETURNING. Only what cannot be portable branches
//! on the backend: connection setup (SQLite pragmas, pool size), the migrations directory,
//! and the bootstrap lock (a PostgreSQL advisory lock).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use tracecast_model::api_key::KeyKind;
use tracecast_model::filter::FilterRules;
use tracecast_model::{
    ApiKey, Destination, DestinationType, NewDestination, Region, Tenant, Workspace, time,
};
use uuid::Uuid;

use crate::crypto::Keyring;
use crate::{DashboardSession, GatewayUpstream, Page, PageRequest, Result, Store, StoreError};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node when the database URL does not say otherwise: the management API and
/// the delivery engine's reloads are light, and several nodes share one PostgreSQL server
/// (100 connections by default).
pub const DEFAULT_POSTGRES_POOL_SIZE: u32 = 10;
/// SQLite serialises writers anyway; a few connections let reads run beside a write.
const SQLITE_POOL_SIZE: u32 = 8;
/// How long a query waits for a free connection, and how long connecting at start retries a
/// database that refuses connections (still starting, for example).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// The PostgreSQL advisory lock key (`pg_advisory_xact_lock`) that serialises first-start
/// bootstrap across nodes: "tracecast" in ASCII.
const BOOTSTRAP_LOCK_KEY: i64 = 0x7472_6163_6563_6173;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

pub struct SqlStore {
    pool: AnyPool,
    keyring: Keyring,
    backend: Backend,
}

/// Held while a starting node checks for an empty store and creates the first tenant and key
/// ([`Store::lock_bootstrap`]), so that nodes starting together bootstrap exactly once.
pub struct BootstrapLock {
    inner: LockInner,
}

enum LockInner {
    /// A PostgreSQL transaction holding a transaction-scoped advisory lock; ending the
    /// transaction (commit, rollback, or the connection closing) releases it.
    Postgres(sqlx::Transaction<'static, sqlx::Any>),
    /// SQLite is one node's embedded file: a process-wide mutex is enough.
    Sqlite(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>),
}

impl BootstrapLock {
    /// Releases the lock now. Dropping it also releases it (PostgreSQL: the transaction is
    /// rolled back when its connection goes back to the pool).
    pub async fn release(self) -> Result<()> {
        match self.inner {
            LockInner::Postgres(tx) => tx.commit().await?,
            LockInner::Sqlite(_) => {}
        }
        Ok(())
    }
}

static SQLITE_BOOTSTRAP: std::sync::LazyLock<std::sync::Arc<tokio::sync::Mutex<()>>> =
    std::sync::LazyLock::new(Default::default);

impl SqlStore {
    /// Opens (creating if needed) the embedded SQLite database `tracecast.db` in `data_dir`.
    pub async fn open_sqlite(data_dir: &Path, keyring: Keyring) -> Result<Self> {
        let path = data_dir.join("tracecast.db");
        let url = format!("sqlite://{}?mode=rwc", path.display());
        Self::connect(&url, keyring).await
    }

    /// Connects to a database URL (`sqlite://...`, `postgres://...` or `postgresql://...`)
    /// with the default pool size, running migrations.
    pub async fn connect(url: &str, keyring: Keyring) -> Result<Self> {
        Self::connect_with(url, keyring, None).await
    }

    /// Connects to a database URL and runs its migrations. `pool_size` is the most connections
    /// this store opens (PostgreSQL; default [`DEFAULT_POSTGRES_POOL_SIZE`]); SQLite always
    /// uses a few.
    pub async fn connect_with(url: &str, keyring: Keyring, pool_size: Option<u32>) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or_default();
        let backend = match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Backend::Sqlite,
            "postgres" | "postgresql" => Backend::Postgres,
            _ => {
                return Err(StoreError::Config(format!(
                    "unsupported database URL scheme {scheme:?}: use sqlite:// or postgres://"
                )));
            }
        };
        let pool = match backend {
            Backend::Sqlite => {
                let pool = AnyPoolOptions::new()
                    .max_connections(SQLITE_POOL_SIZE)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .after_connect(move |conn, _meta| {
                        Box::pin(async move {
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            Ok(())
                        })
                    })
                    .connect(url)
                    .await
                    .map_err(|error| connect_error(url, error))?;
                pool.execute("PRAGMA journal_mode = WAL").await?;
                SQLITE_MIGRATIONS.run(&pool).await?;
                pool
            }
            Backend::Postgres => {
                let size = pool_size.unwrap_or(DEFAULT_POSTGRES_POOL_SIZE).max(2);
                let pool = AnyPoolOptions::new()
                    // At least 2: bootstrap holds one connection for its lock while it writes
                    // through another.
                    .max_connections(size)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .connect(url)
                    .await
                    .map_err(|error| connect_error(url, error))?;
                // sqlx's migrator takes a PostgreSQL advisory lock, so nodes starting together
                // migrate one after the other.
                POSTGRES_MIGRATIONS.run(&pool).await?;
                pool
            }
        };
        Ok(SqlStore {
            pool,
            keyring,
            backend,
        })
    }

    fn seal_config(&self, id: Uuid, cfg: &Map<String, Value>) -> String {
        let plain = serde_json::to_vec(cfg).expect("a JSON map always serialises");
        self.keyring.seal(&plain, id.as_bytes())
    }

    fn destination_from_row(&self, row: &AnyRow) -> Result<Destination> {
        let id = uuid_col(row, "id")?;
        let ty_s: String = row.try_get("type")?;
        let ty = DestinationType::parse(&ty_s)
            .ok_or_else(|| StoreError::Corrupt(format!("destination {id}: unknown type {ty_s}")))?;
        let sealed: String = row.try_get("config_enc")?;
        let plain = self.keyring.open(&sealed, id.as_bytes())?;
        let mut config: Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("destination {id}: config: {e}")))?;
        // What the exporter is built from and what the API shows: the workspace's
        // server-issued ExternalId, whatever an older version stored.
        let external_id: Option<String> = row.try_get("ws_external_id")?;
        tracecast_model::config::set_server_external_id(ty, &mut config, external_id.as_deref());
        let api_key_hashes: Option<String> = row.try_get("api_key_hashes")?;
        let filter_rules: Option<String> = row.try_get("filter_rules")?;
        let regions: String = row.try_get("regions")?;
        Ok(Destination {
            id,
            workspace_id: uuid_col(row, "workspace_id")?,
            ty,
            name: row.try_get("name")?,
            enabled: bool_col(row, "enabled")?,
            privacy_mode: bool_col(row, "privacy_mode")?,
            broadcast_generation_cost: bool_col(row, "bg_cost")?,
            broadcast_generation_identity: bool_col(row, "bg_identity")?,
            broadcast_generation_request_context: bool_col(row, "bg_request_context")?,
            broadcast_generation_cost_allocation: bool_col(row, "bg_cost_allocation")?,
            sampling_rate: row.try_get("sampling_rate")?,
            api_key_hashes: api_key_hashes
                .map(|s| json_col::<Vec<String>>(&s, "api_key_hashes"))
                .transpose()?,
            filter_rules: filter_rules
                .map(|s| json_col::<FilterRules>(&s, "filter_rules"))
                .transpose()?,
            regions: json_col::<Vec<Region>>(&regions, "regions")?,
            config,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

fn uuid_col(row: &AnyRow, col: &str) -> Result<Uuid> {
    let s: String = row.try_get(col)?;
    Uuid::from_str(&s).map_err(|_| StoreError::Corrupt(format!("{col}: not a UUID: {s}")))
}

/// A flag: BOOLEAN on PostgreSQL, INTEGER 0/1 on SQLite (whose `Any` rows carry the declared
/// column type, INTEGER). Statements bind Rust `bool`s, which SQLite stores as 0/1, and
/// compare with `TRUE`/`FALSE`, which both understand.
fn bool_col(row: &AnyRow, col: &str) -> Result<bool> {
    match row.try_get::<bool, _>(col) {
        Ok(v) => Ok(v),
        Err(_) => Ok(row.try_get::<i64, _>(col)? != 0),
    }
}

/// "cannot connect": names the backend, host, port, database and user, never the password
/// (nor the rest of the URL, whose query may carry one).
fn connect_error(url: &str, error: sqlx::Error) -> StoreError {
    StoreError::Connect {
        target: describe_url(url),
        error,
    }
}

fn describe_url(url: &str) -> String {
    if let Some(rest) = url.split_once(':').map(|(_, r)| r)
        && url.to_ascii_lowercase().starts_with("sqlite:")
    {
        let path = rest.trim_start_matches("//");
        let path = path.split('?').next().unwrap_or_default();
        return format!("SQLite database {path}");
    }
    match url::Url::parse(url) {
        Ok(u) => {
            // A Unix socket is given as `?host=/run/postgresql`.
            let query_host = u.query_pairs().find(|(k, _)| k == "host").map(|(_, v)| v);
            let host = match (u.host_str(), &query_host) {
                (Some(h), _) if !h.is_empty() => h.to_string(),
                (_, Some(h)) => h.to_string(),
                _ => "localhost".to_string(),
            };
            let port = u.port().unwrap_or(5432);
            let db = u.path().trim_start_matches('/');
            let mut s = format!("PostgreSQL at {host}:{port}");
            if !db.is_empty() {
                s.push_str(&format!(", database {db}"));
            }
            if !u.username().is_empty() {
                s.push_str(&format!(", user {}", u.username()));
            }
            s
        }
        Err(_) => "PostgreSQL (the database URL does not parse)".into(),
    }
}

fn json_col<T: serde::de::DeserializeOwned>(s: &str, col: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("model types always serialise")
}

fn workspace_from_row(row: &AnyRow) -> Result<Workspace> {
    let settings: String = row.try_get("settings")?;
    Ok(Workspace {
        id: uuid_col(row, "id")?,
        tenant_id: uuid_col(row, "tenant_id")?,
        name: row.try_get("name")?,
        slug: row.try_get("slug")?,
        description: row.try_get("description")?,
        is_default: bool_col(row, "is_default")?,
        is_observability_broadcast_enabled: bool_col(row, "broadcast_enabled")?,
        settings: json_col(&settings, "settings")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl SqlStore {
    /// One page of the keys of `kind` whose `owner_column` (`workspace_id` or `tenant_id`, never
    /// user input) is `owner`, oldest first, with the total.
    async fn keys_page(
        &self,
        owner_column: &'static str,
        owner: Uuid,
        kind: &'static str,
        include_disabled: bool,
        page: PageRequest,
    ) -> Result<Page<ApiKey>> {
        let (limit, offset) = lim(page);
        let filter = if include_disabled {
            ""
        } else {
            " AND disabled = FALSE"
        };
        let cond = format!("{owner_column} = $1 AND kind = '{kind}'{filter}");
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLS} FROM api_keys WHERE {cond} ORDER BY created_at, hash LIMIT $2 OFFSET $3"
        ))
        .bind(owner.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM api_keys WHERE {cond}"))
            .bind(owner.to_string())
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(Page {
            items: rows.iter().map(key_from_row).collect::<Result<_>>()?,
            total: total as u64,
        })
    }
}

fn key_from_row(row: &AnyRow) -> Result<ApiKey> {
    let kind: String = row.try_get("kind")?;
    Ok(ApiKey {
        hash: row.try_get("hash")?,
        tenant_id: uuid_col(row, "tenant_id")?,
        workspace_id: uuid_col(row, "workspace_id")?,
        kind: KeyKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("key kind {kind}")))?,
        name: row.try_get("name")?,
        label: row.try_get("label")?,
        disabled: bool_col(row, "disabled")?,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// PostgreSQL text cannot hold U+0000 (SQLite text can). So that both backends behave alike,
/// a write of such text is refused on both, with a message for the client, and a lookup by
/// such a string finds nothing without asking the database. (JSON columns are unaffected:
/// serde_json writes U+0000 as `\u0000`.)
fn no_nul(field: &str, v: &str) -> Result<()> {
    if v.contains('\0') {
        return Err(StoreError::Conflict(format!(
            "{field} must not contain NUL characters"
        )));
    }
    Ok(())
}

/// An enabled workspace key: the kind a workspace may not be deleted with.
fn active_workspace_key(k: &ApiKey) -> bool {
    k.kind == KeyKind::Workspace && !k.disabled
}

fn workspace_text(ws: &Workspace) -> Result<()> {
    no_nul("name", &ws.name)?;
    no_nul("slug", &ws.slug)?;
    if let Some(d) = &ws.description {
        no_nul("description", d)?;
    }
    Ok(())
}

/// Takes the row lock of a live workspace until the transaction ends, or fails with
/// [`StoreError::NotFound`]. Writes whose rule spans several rows of one workspace (the
/// per-type destination limit; no active key in a deleted workspace) take it first, so that
/// they run one after the other across nodes. The no-op UPDATE is the portable way: PostgreSQL
/// locks the row until commit, SQLite takes its database write lock; and on PostgreSQL
/// (READ COMMITTED) every later statement of the transaction sees what the previous holders
/// committed. A plain `INSERT ... WHERE (SELECT COUNT(*) ...) < limit` is not enough there:
/// two transactions would both count 4 and both insert.
async fn lock_live_workspace(conn: &mut sqlx::AnyConnection, id: Uuid) -> Result<()> {
    let locked = sqlx::query(
        "UPDATE workspaces SET tenant_id = tenant_id WHERE id = $1 AND deleted_at IS NULL",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    if locked.rows_affected() == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Fails with [`StoreError::Conflict`] unless `tenant` keeps an active (enabled, unexpired)
/// management key other than `hash`. Takes the tenant's row lock first (the no-op UPDATE of
/// [`lock_live_workspace`]), so two requests removing the last two keys run one after the
/// other and the second one sees the first's change.
async fn keep_one_management_key(
    conn: &mut sqlx::AnyConnection,
    tenant: Uuid,
    hash: &str,
    now: &str,
) -> Result<()> {
    sqlx::query("UPDATE tenants SET name = name WHERE id = $1")
        .bind(tenant.to_string())
        .execute(&mut *conn)
        .await?;
    let others: i64 = sqlx::query(
        "SELECT COUNT(*) AS n FROM api_keys WHERE tenant_id = $1 AND kind = 'management' \
         AND hash <> $2 AND disabled = FALSE AND (expires_at IS NULL OR expires_at > $3)",
    )
    .bind(tenant.to_string())
    .bind(hash)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?
    .try_get("n")?;
    if others == 0 {
        return Err(StoreError::Conflict(
            "this is the account's last active management key: create another management key first"
                .into(),
        ));
    }
    Ok(())
}

fn lim(page: PageRequest) -> (i64, i64) {
    (
        page.limit.min(i64::MAX as u64) as i64,
        page.offset.min(i64::MAX as u64) as i64,
    )
}

const WORKSPACE_COLS: &str = "id, tenant_id, name, slug, description, is_default, broadcast_enabled, settings, created_at, updated_at";
const KEY_COLS: &str = "hash, tenant_id, workspace_id, kind, name, label, disabled, expires_at, created_at, updated_at";
const DEST_COLS: &str = "d.id, d.workspace_id, d.type, d.name, d.enabled, d.privacy_mode, d.bg_cost, d.bg_identity, d.bg_request_context, d.bg_cost_allocation, d.sampling_rate, d.api_key_hashes, d.filter_rules, d.regions, d.config_enc, d.created_at, d.updated_at, \
    (SELECT xw.aws_external_id FROM workspaces xw WHERE xw.id = d.workspace_id) AS ws_external_id";

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn is_empty(&self) -> Result<bool> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tenants")
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(n == 0)
    }

    // PostgreSQL: an advisory lock every node sharing the database sees; SQLite: a
    // process-wide mutex (the embedded file belongs to one node).
    async fn lock_bootstrap(&self) -> Result<BootstrapLock> {
        let inner = match self.backend {
            Backend::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(BOOTSTRAP_LOCK_KEY)
                    .execute(&mut *tx)
                    .await?;
                LockInner::Postgres(tx)
            }
            Backend::Sqlite => LockInner::Sqlite(SQLITE_BOOTSTRAP.clone().lock_owned().await),
        };
        Ok(BootstrapLock { inner })
    }

    async fn create_tenant(&self, tenant: &Tenant, ws: &Workspace) -> Result<()> {
        no_nul("name", &tenant.name)?;
        workspace_text(ws)?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(tenant.id.to_string())
            .bind(&tenant.name)
            .bind(&tenant.created_at)
            .execute(&mut *tx)
            .await?;
        insert_workspace_q(ws).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_tenants(&self) -> Result<Vec<Tenant>> {
        let rows = sqlx::query("SELECT id, name, created_at FROM tenants ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Tenant {
                    id: uuid_col(r, "id")?,
                    name: r.try_get("name")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn list_workspaces(&self, tenant: Uuid, page: PageRequest) -> Result<Page<Workspace>> {
        let (limit, offset) = lim(page);
        let rows = sqlx::query(&format!(
            "SELECT {WORKSPACE_COLS} FROM workspaces WHERE tenant_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id LIMIT $2 OFFSET $3"
        ))
        .bind(tenant.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM workspaces WHERE tenant_id = $1 AND deleted_at IS NULL",
        )
        .bind(tenant.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(Page {
            items: rows.iter().map(workspace_from_row).collect::<Result<_>>()?,
            total: total as u64,
        })
    }

    async fn find_workspace(&self, tenant: Uuid, id_or_slug: &str) -> Result<Option<Workspace>> {
        if id_or_slug.contains('\0') {
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {WORKSPACE_COLS} FROM workspaces WHERE tenant_id = $1 AND deleted_at IS NULL \
             AND (id = $2 OR slug = $2)"
        ))
        .bind(tenant.to_string())
        .bind(id_or_slug.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(workspace_from_row).transpose()
    }

    async fn workspace_by_id(&self, id: Uuid) -> Result<Option<Workspace>> {
        let row = sqlx::query(&format!(
            "SELECT {WORKSPACE_COLS} FROM workspaces WHERE id = $1 AND deleted_at IS NULL"
        ))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(workspace_from_row).transpose()
    }

    async fn default_workspace(&self, tenant: Uuid) -> Result<Workspace> {
        let row = sqlx::query(&format!(
            "SELECT {WORKSPACE_COLS} FROM workspaces WHERE tenant_id = $1 AND is_default = TRUE \
             AND deleted_at IS NULL"
        ))
        .bind(tenant.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(workspace_from_row)
            .transpose()?
            .ok_or(StoreError::NotFound)
    }

    async fn insert_workspace(&self, ws: &Workspace) -> Result<()> {
        workspace_text(ws)?;
        insert_workspace_q(ws)
            .execute(&self.pool)
            .await
            .map_err(|e| slug_conflict(e, &ws.slug))?;
        Ok(())
    }

    async fn update_workspace(&self, ws: &Workspace) -> Result<()> {
        workspace_text(ws)?;
        let r = sqlx::query(
            "UPDATE workspaces SET name = $2, slug = $3, description = $4, broadcast_enabled = $5, \
             settings = $6, updated_at = $7 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(ws.id.to_string())
        .bind(&ws.name)
        .bind(&ws.slug)
        .bind(ws.description.clone())
        .bind(ws.is_observability_broadcast_enabled)
        .bind(to_json(&ws.settings))
        .bind(ws.updated_at.clone())
        .execute(&self.pool)
        .await
        .map_err(|e| slug_conflict(e, &ws.slug))?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_workspace(&self, id: Uuid, at: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        // The workspace row first (the lock order of every write here): a key being created or
        // enabled in it on another node either commits before, and is counted below, or waits
        // and then finds the workspace deleted.
        let r = sqlx::query(
            "UPDATE workspaces SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.to_string())
        .bind(at)
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        let keys: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE workspace_id = $1 AND kind = 'workspace' AND disabled = FALSE",
        )
        .bind(id.to_string())
        .fetch_one(&mut *tx)
        .await?
        .try_get("n")?;
        if keys > 0 {
            return Err(StoreError::Conflict(format!(
                "Workspace has {keys} active API key(s); delete, disable or move them first"
            )));
        }
        sqlx::query("UPDATE destinations SET deleted_at = $2, enabled = FALSE WHERE workspace_id = $1 AND deleted_at IS NULL")
            .bind(id.to_string())
            .bind(at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn workspace_external_id(&self, workspace: Uuid) -> Result<String> {
        let issued = format!("tc-{}", Uuid::new_v4().simple());
        // Issue once: only a workspace without one takes this value; every caller then reads
        // whichever value won.
        sqlx::query(
            "UPDATE workspaces SET aws_external_id = $2 WHERE id = $1 AND aws_external_id IS NULL",
        )
        .bind(workspace.to_string())
        .bind(&issued)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT aws_external_id FROM workspaces WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(workspace.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        let id: Option<String> = row.try_get("aws_external_id")?;
        id.ok_or(StoreError::NotFound)
    }

    async fn insert_key(&self, k: &ApiKey) -> Result<()> {
        no_nul("hash", &k.hash)?;
        no_nul("name", &k.name)?;
        no_nul("label", &k.label)?;
        if let Some(e) = &k.expires_at {
            no_nul("expires_at", e)?;
        }
        let mut tx = self.pool.begin().await?;
        if active_workspace_key(k) {
            // Not into a workspace being deleted on another node (see delete_workspace).
            lock_live_workspace(&mut tx, k.workspace_id).await?;
        }
        sqlx::query(&format!(
            "INSERT INTO api_keys ({KEY_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&k.hash)
        .bind(k.tenant_id.to_string())
        .bind(k.workspace_id.to_string())
        .bind(k.kind.as_str())
        .bind(&k.name)
        .bind(&k.label)
        .bind(k.disabled)
        .bind(k.expires_at.clone())
        .bind(&k.created_at)
        .bind(k.updated_at.clone())
        .execute(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("a key with this hash already exists".into())
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>> {
        if hash.contains('\0') {
            return Ok(None);
        }
        let row = sqlx::query(&format!("SELECT {KEY_COLS} FROM api_keys WHERE hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(
        &self,
        workspace: Uuid,
        include_disabled: bool,
        page: PageRequest,
    ) -> Result<Page<ApiKey>> {
        self.keys_page(
            "workspace_id",
            workspace,
            "workspace",
            include_disabled,
            page,
        )
        .await
    }

    async fn list_management_keys(
        &self,
        tenant: Uuid,
        include_disabled: bool,
        page: PageRequest,
    ) -> Result<Page<ApiKey>> {
        self.keys_page("tenant_id", tenant, "management", include_disabled, page)
            .await
    }

    async fn update_key(&self, k: &ApiKey) -> Result<()> {
        if k.hash.contains('\0') {
            return Err(StoreError::NotFound);
        }
        no_nul("name", &k.name)?;
        if let Some(e) = &k.expires_at {
            no_nul("expires_at", e)?;
        }
        let mut tx = self.pool.begin().await?;
        if active_workspace_key(k) {
            // Not enabled in or moved into a workspace being deleted (see delete_workspace).
            lock_live_workspace(&mut tx, k.workspace_id).await?;
        }
        // A management key that is disabled, or will stop working at some time, needs another
        // active one beside it: the account must never be left without a working key.
        if k.kind == KeyKind::Management && (k.disabled || k.expires_at.is_some()) {
            keep_one_management_key(&mut tx, k.tenant_id, &k.hash, &time::now_rfc3339()).await?;
        }
        let r = sqlx::query(
            "UPDATE api_keys SET name = $2, disabled = $3, workspace_id = $4, updated_at = $5, expires_at = $6 WHERE hash = $1",
        )
        .bind(&k.hash)
        .bind(&k.name)
        .bind(k.disabled)
        .bind(k.workspace_id.to_string())
        .bind(k.updated_at.clone())
        .bind(k.expires_at.clone())
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn delete_key(&self, hash: &str) -> Result<()> {
        let Some(k) = self.key_by_hash(hash).await? else {
            return Err(StoreError::NotFound);
        };
        let mut tx = self.pool.begin().await?;
        if k.kind == KeyKind::Management {
            keep_one_management_key(&mut tx, k.tenant_id, &k.hash, &time::now_rfc3339()).await?;
        }
        let r = sqlx::query("DELETE FROM api_keys WHERE hash = $1")
            .bind(hash)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
        Ok(())
    }

    async fn count_active_workspace_keys(&self, workspace: Uuid) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE workspace_id = $1 AND kind = 'workspace' AND disabled = FALSE",
        )
        .bind(workspace.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as u64)
    }

    async fn insert_destination(
        &self,
        d: &NewDestination,
        id: Uuid,
        now: &str,
        max_per_type: usize,
    ) -> Result<Destination> {
        no_nul("name", &d.name)?;
        let sealed = self.seal_config(id, &d.config);
        let mut tx = self.pool.begin().await?;
        // Creates in one workspace run one after the other, across nodes, so the count below
        // includes every create committed before this one.
        lock_live_workspace(&mut tx, d.workspace_id).await?;
        let r = sqlx::query(
            "INSERT INTO destinations (id, workspace_id, type, name, enabled, privacy_mode, bg_cost, \
             bg_identity, bg_request_context, bg_cost_allocation, sampling_rate, api_key_hashes, \
             filter_rules, regions, config_enc, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $16 \
             WHERE (SELECT COUNT(*) FROM destinations WHERE workspace_id = $2 AND type = $3 \
                    AND deleted_at IS NULL) < $17",
        )
        .bind(id.to_string())
        .bind(d.workspace_id.to_string())
        .bind(d.ty.as_str())
        .bind(d.name.clone())
        .bind(d.enabled)
        .bind(d.privacy_mode)
        .bind(d.broadcast_generation_cost)
        .bind(d.broadcast_generation_identity)
        .bind(d.broadcast_generation_request_context)
        .bind(d.broadcast_generation_cost_allocation)
        .bind(d.sampling_rate)
        .bind(d.api_key_hashes.as_ref().map(to_json))
        .bind(d.filter_rules.as_ref().map(to_json))
        .bind(to_json(&d.regions))
        .bind(sealed)
        .bind(now)
        .bind(i64::try_from(max_per_type).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!(
                "A workspace may hold at most {max_per_type} destinations of type {}",
                d.ty
            )));
        }
        tx.commit().await?;
        Ok(Destination {
            id,
            workspace_id: d.workspace_id,
            ty: d.ty,
            name: Some(d.name.clone()),
            enabled: d.enabled,
            privacy_mode: d.privacy_mode,
            broadcast_generation_cost: d.broadcast_generation_cost,
            broadcast_generation_identity: d.broadcast_generation_identity,
            broadcast_generation_request_context: d.broadcast_generation_request_context,
            broadcast_generation_cost_allocation: d.broadcast_generation_cost_allocation,
            sampling_rate: d.sampling_rate,
            api_key_hashes: d.api_key_hashes.clone(),
            filter_rules: d.filter_rules.clone(),
            regions: d.regions.clone(),
            config: d.config.clone(),
            created_at: now.to_string(),
            updated_at: now.to_string(),
        })
    }

    async fn get_destination(&self, tenant: Uuid, id: Uuid) -> Result<Option<Destination>> {
        let row = sqlx::query(&format!(
            "SELECT {DEST_COLS} FROM destinations d JOIN workspaces w ON w.id = d.workspace_id \
             WHERE d.id = $1 AND w.tenant_id = $2 AND d.deleted_at IS NULL AND w.deleted_at IS NULL"
        ))
        .bind(id.to_string())
        .bind(tenant.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|r| self.destination_from_row(r))
            .transpose()
    }

    async fn list_destinations(
        &self,
        workspace: Uuid,
        page: PageRequest,
    ) -> Result<Page<Destination>> {
        let (limit, offset) = lim(page);
        let rows = sqlx::query(&format!(
            "SELECT {DEST_COLS} FROM destinations d WHERE d.workspace_id = $1 AND d.deleted_at IS NULL \
             ORDER BY d.created_at, d.id LIMIT $2 OFFSET $3"
        ))
        .bind(workspace.to_string())
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM destinations WHERE workspace_id = $1 AND deleted_at IS NULL",
        )
        .bind(workspace.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(Page {
            items: rows
                .iter()
                .map(|r| self.destination_from_row(r))
                .collect::<Result<_>>()?,
            total: total as u64,
        })
    }

    async fn update_destination(&self, d: &Destination) -> Result<()> {
        if let Some(name) = &d.name {
            no_nul("name", name)?;
        }
        let sealed = self.seal_config(d.id, &d.config);
        let r = sqlx::query(
            "UPDATE destinations SET name = $2, enabled = $3, privacy_mode = $4, bg_cost = $5, \
             bg_identity = $6, bg_request_context = $7, bg_cost_allocation = $8, sampling_rate = $9, \
             api_key_hashes = $10, filter_rules = $11, regions = $12, config_enc = $13, updated_at = $14 \
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(d.id.to_string())
        .bind(d.name.clone())
        .bind(d.enabled)
        .bind(d.privacy_mode)
        .bind(d.broadcast_generation_cost)
        .bind(d.broadcast_generation_identity)
        .bind(d.broadcast_generation_request_context)
        .bind(d.broadcast_generation_cost_allocation)
        .bind(d.sampling_rate)
        .bind(d.api_key_hashes.as_ref().map(to_json))
        .bind(d.filter_rules.as_ref().map(to_json))
        .bind(to_json(&d.regions))
        .bind(sealed)
        .bind(&d.updated_at)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_destination(&self, id: Uuid, at: &str) -> Result<()> {
        let r = sqlx::query(
            "UPDATE destinations SET deleted_at = $2 WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.to_string())
        .bind(at)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn count_destinations(&self, workspace: Uuid, ty: DestinationType) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM destinations WHERE workspace_id = $1 AND type = $2 AND deleted_at IS NULL",
        )
        .bind(workspace.to_string())
        .bind(ty.as_str())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as u64)
    }

    async fn destinations_changed_since(
        &self,
        since: &str,
    ) -> Result<Vec<(Destination, bool, bool)>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEST_COLS}, w.broadcast_enabled AS ws_broadcast, \
             CAST(CASE WHEN d.deleted_at IS NULL AND w.deleted_at IS NULL THEN 1 ELSE 0 END AS BIGINT) AS live \
             FROM destinations d JOIN workspaces w ON w.id = d.workspace_id \
             WHERE d.updated_at >= $1 OR d.deleted_at >= $1 OR w.updated_at >= $1 OR w.deleted_at >= $1 \
             ORDER BY d.created_at, d.id"
        ))
        .bind(since.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let live: i64 = r.try_get("live")?;
                Ok((
                    self.destination_from_row(r)?,
                    bool_col(r, "ws_broadcast")?,
                    live != 0,
                ))
            })
            .collect()
    }

    async fn count_tenant_destinations(&self, tenant: Uuid) -> Result<u64> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM destinations d JOIN workspaces w ON w.id = d.workspace_id \
             WHERE w.tenant_id = $1 AND d.deleted_at IS NULL AND w.deleted_at IS NULL",
        )
        .bind(tenant.to_string())
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        Ok(n as u64)
    }

    async fn live_destinations(&self) -> Result<Vec<(Destination, bool)>> {
        let rows = sqlx::query(&format!(
            "SELECT {DEST_COLS}, w.broadcast_enabled AS ws_broadcast FROM destinations d \
             JOIN workspaces w ON w.id = d.workspace_id \
             WHERE d.deleted_at IS NULL AND w.deleted_at IS NULL ORDER BY d.created_at, d.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((self.destination_from_row(r)?, bool_col(r, "ws_broadcast")?)))
            .collect()
    }

    async fn reencrypt_all(&self) -> Result<u64> {
        let mut n = 0;
        for table in ["destinations", "gateway_upstreams"] {
            n += self.reencrypt_table(table).await?;
        }
        Ok(n)
    }

    async fn insert_session(&self, s: &DashboardSession) -> Result<()> {
        let r = sqlx::query(
            "INSERT INTO dashboard_sessions (id_hash, key_hash, created_at, expires_at) \
             SELECT $1, hash, $3, $4 FROM api_keys WHERE hash = $2",
        )
        .bind(&s.id_hash)
        .bind(&s.key_hash)
        .bind(&s.created_at)
        .bind(&s.expires_at)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn session(&self, id_hash: &str) -> Result<Option<DashboardSession>> {
        let row = sqlx::query(
            "SELECT id_hash, key_hash, created_at, expires_at FROM dashboard_sessions WHERE id_hash = $1",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(DashboardSession {
                id_hash: r.try_get("id_hash")?,
                key_hash: r.try_get("key_hash")?,
                created_at: r.try_get("created_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM dashboard_sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_expired_sessions(&self, now: &str) -> Result<u64> {
        let r = sqlx::query("DELETE FROM dashboard_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn insert_gateway_upstream(&self, u: &GatewayUpstream) -> Result<()> {
        let sealed = self.seal_config(u.id, &u.config);
        let mut tx = self.pool.begin().await?;
        lock_live_workspace(&mut tx, u.workspace_id).await?;
        sqlx::query(
            "INSERT INTO gateway_upstreams (id, workspace_id, config_enc, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(u.id.to_string())
        .bind(u.workspace_id.to_string())
        .bind(sealed)
        .bind(u.created_at.clone())
        .bind(u.updated_at.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn gateway_upstreams(&self, workspace: Uuid) -> Result<Vec<GatewayUpstream>> {
        let rows = sqlx::query(
            "SELECT id, workspace_id, config_enc, created_at, updated_at FROM gateway_upstreams \
             WHERE workspace_id = $1 AND deleted_at IS NULL ORDER BY created_at, id",
        )
        .bind(workspace.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let id = uuid_col(row, "id")?;
                let sealed: String = row.try_get("config_enc")?;
                let plain = self.keyring.open(&sealed, id.as_bytes())?;
                let config = serde_json::from_slice(&plain).map_err(|e| {
                    StoreError::Corrupt(format!("gateway upstream {id}: config: {e}"))
                })?;
                Ok(GatewayUpstream {
                    id,
                    workspace_id: uuid_col(row, "workspace_id")?,
                    config,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn update_gateway_upstream(&self, u: &GatewayUpstream) -> Result<()> {
        let sealed = self.seal_config(u.id, &u.config);
        let r = sqlx::query(
            "UPDATE gateway_upstreams SET config_enc = $3, updated_at = $4 \
             WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        )
        .bind(u.id.to_string())
        .bind(u.workspace_id.to_string())
        .bind(sealed)
        .bind(u.updated_at.clone())
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn delete_gateway_upstream(&self, workspace: Uuid, id: Uuid, at: &str) -> Result<()> {
        let r = sqlx::query(
            "UPDATE gateway_upstreams SET deleted_at = $3 \
             WHERE id = $1 AND workspace_id = $2 AND deleted_at IS NULL",
        )
        .bind(id.to_string())
        .bind(workspace.to_string())
        .bind(at)
        .execute(&self.pool)
        .await?;
        if r.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }
}

impl SqlStore {
    /// Re-seals the `config_enc` of every row of `table` not sealed with the primary key.
    async fn reencrypt_table(&self, table: &str) -> Result<u64> {
        let rows = sqlx::query(&format!("SELECT id, config_enc FROM {table}"))
            .fetch_all(&self.pool)
            .await?;
        let mut n = 0;
        for row in &rows {
            let id = uuid_col(row, "id")?;
            let sealed: String = row.try_get("config_enc")?;
            if Keyring::key_id_of(&sealed) == Some(self.keyring.primary_id()) {
                continue;
            }
            let plain = self.keyring.open(&sealed, id.as_bytes())?;
            let resealed = self.keyring.seal(&plain, id.as_bytes());
            // Only if unchanged meanwhile (another node re-sealing, an update): counts what
            // this call re-sealed.
            let r = sqlx::query(&format!(
                "UPDATE {table} SET config_enc = $2 WHERE id = $1 AND config_enc = $3"
            ))
            .bind(id.to_string())
            .bind(resealed)
            .bind(sealed)
            .execute(&self.pool)
            .await?;
            n += r.rows_affected();
        }
        Ok(n)
    }
}

fn insert_workspace_q(
    ws: &Workspace,
) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments<'static>> {
    sqlx::query(
        "INSERT INTO workspaces (id, tenant_id, name, slug, description, is_default, broadcast_enabled, \
         settings, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(ws.id.to_string())
    .bind(ws.tenant_id.to_string())
    .bind(ws.name.clone())
    .bind(ws.slug.clone())
    .bind(ws.description.clone())
    .bind(ws.is_default)
    .bind(ws.is_observability_broadcast_enabled)
    .bind(to_json(&ws.settings))
    .bind(ws.created_at.clone())
    .bind(ws.updated_at.clone())
}

fn slug_conflict(e: sqlx::Error, slug: &str) -> StoreError {
    if is_unique_violation(&e) {
        StoreError::Conflict(format!(
            "slug {slug:?} is already used by another workspace"
        ))
    } else {
        e.into()
    }
}
