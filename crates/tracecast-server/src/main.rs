//! The `tracecast` command line.

/// jemalloc: with glibc's allocator the fan-out path spent a fifth of its time in malloc/free
/// (many small JSON allocations across threads); jemalloc's background threads also return
/// freed memory to the OS, which keeps RSS flat under load.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc tuning: return dirty pages after 250 ms instead of 10 s, and purge them at once,
/// so a burst's memory goes back to the OS quickly (RSS is what operators see and cap). A
/// destination draining its backlog at ~50,000 records/s frees hundreds of MB/s; with 1 s of
/// decay the peak RSS of bench B2 was 257-275 MiB, with 200-250 ms it stays near 250.
#[allow(non_upper_case_globals)]
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static malloc_conf: &[u8] = b"background_thread:true,dirty_decay_ms:250,muzzy_decay_ms:0\0";

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tracecast_model::ApiKey;
use tracecast_model::api_key::KeyKind;
use tracecast_server::provision::{create_tenant, new_key};
use tracecast_server::say;
use tracecast_server::settings::{Overrides, Settings};
use tracecast_store::{PageRequest, Store, StoreError, crypto};

#[derive(Parser)]
#[command(
    name = "tracecast",
    version,
    about = "Self-hosted OpenRouter Broadcast: deliver a trace of every LLM call to your observability destinations"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// Config file (default: ./tracecast.toml when present; or TRACECAST_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Data directory of the embedded store [default: ./tracecast-data].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL [default: SQLite in the data directory].
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Address to listen on [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<String>,
        /// NATS JetStream URL (`nats://host:4222`): run as one node of a cluster sharing this
        /// queue and a PostgreSQL `--database-url` [default: the embedded queue].
        #[arg(long)]
        queue_url: Option<String>,
        /// This node's name in the cluster [default: generated].
        #[arg(long)]
        node_id: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Manage tenants (accounts). Each has its own workspaces and management keys.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Manage the keys that encrypt destination credentials at rest.
    Encryption {
        #[command(subcommand)]
        command: EncryptionCommand,
    },
    /// Print the CREATE TABLE for a warehouse destination (run it once before creating the
    /// destination).
    Schema {
        #[command(subcommand)]
        warehouse: SchemaCommand,
    },
}

#[derive(Subcommand)]
enum SchemaCommand {
    /// ClickHouse (MergeTree) table for the `clickhouse` destination.
    Clickhouse {
        /// Schema v2: adds CACHE_WRITE_TOKENS (for `shouldIncludeCacheWriteTokens`).
        #[arg(long)]
        v2: bool,
        /// The variant for ClickHouse servers older than 20.1.
        #[arg(long)]
        legacy: bool,
    },
    /// Snowflake table for the `snowflake` destination.
    Snowflake {
        /// Schema v2: adds CACHE_WRITE_TOKENS (for `shouldIncludeCacheWriteTokens`).
        #[arg(long)]
        v2: bool,
    },
    /// BigQuery table for the `bigquery` destination.
    Bigquery {
        /// The Google Cloud project ID that qualifies the table name.
        #[arg(long, default_value = "my-gcp-project")]
        project: String,
        /// The dataset ID (config `dataset`).
        #[arg(long, default_value = "openrouter")]
        dataset: String,
        /// The table ID (config `table`).
        #[arg(long, default_value = "openrouter_traces")]
        table: String,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (once) on stdout.
    Create {
        /// A management key (manages destinations, workspaces and keys).
        #[arg(
            long,
            conflicts_with = "workspace",
            required_unless_present = "workspace"
        )]
        management: bool,
        /// A workspace key for this workspace (id or slug).
        #[arg(long)]
        workspace: Option<String>,
        /// The key's name.
        #[arg(long)]
        name: String,
        /// Tenant id (default: the first tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// List keys (tab separated: hash, kind, label, state, name, workspace, expires_at).
    List {
        /// Only keys of this kind.
        #[arg(long, value_parser = ["management", "workspace"])]
        kind: Option<String>,
        /// Tenant id or name (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        common: Common,
    },
    /// Disable a key (by hash): it stops working at once. Refused for a tenant's last active
    /// management key.
    Disable {
        hash: String,
        #[command(flatten)]
        common: Common,
    },
    /// Enable a disabled key again.
    Enable {
        hash: String,
        #[command(flatten)]
        common: Common,
    },
    /// Delete a key (by hash). Refused for a tenant's last active management key.
    Delete {
        hash: String,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Create a tenant with a default workspace and print its first management key.
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        common: Common,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Subcommand)]
enum EncryptionCommand {
    /// Print a new key line (`kid:base64`) for TRACECAST_ENCRYPTION_KEYS or the key file.
    GenerateKey,
    /// Add a new primary key at the top of the data dir's key file (restart to use it).
    AddKey {
        #[command(flatten)]
        common: Common,
    },
    /// Re-encrypt every stored credential with the primary key.
    Rotate {
        #[command(flatten)]
        common: Common,
    },
}

fn settings(common: &Common, overrides: Overrides) -> anyhow::Result<Settings> {
    Settings::load(
        common.config.as_deref(),
        &Overrides {
            data_dir: common.data_dir.clone(),
            database_url: common.database_url.clone(),
            ..overrides
        },
    )
}

fn init_logging(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        // A closed or full stderr must not take the service down.
        .log_internal_errors(false)
        .init();
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Opens the store for an admin command, creating the default tenant on an empty store.
async fn admin_store(common: &Common) -> anyhow::Result<Arc<dyn Store>> {
    let s = settings(common, Overrides::default())?;
    let store = tracecast_server::app::open_store(&s).await?;
    // Nodes starting at the same time on one PostgreSQL database must not each create a
    // default tenant: the same lock `serve` takes around its bootstrap.
    let lock = store.lock_bootstrap().await?;
    if store.is_empty().await? {
        create_tenant(&store, "default").await?;
    }
    lock.release().await?;
    Ok(store)
}

/// Every item of a paged listing: `fetch` is called with successive pages until one is empty
/// or the total is reached.
async fn all_pages<T, F, Fut>(mut fetch: F) -> anyhow::Result<Vec<T>>
where
    F: FnMut(PageRequest) -> Fut,
    Fut:
        std::future::Future<Output = Result<tracecast_store::Page<T>, tracecast_store::StoreError>>,
{
    const PAGE: u64 = 100;
    let mut out = Vec::new();
    loop {
        let page = fetch(PageRequest {
            offset: out.len() as u64,
            limit: PAGE,
        })
        .await?;
        let done =
            page.items.is_empty() || out.len() as u64 + page.items.len() as u64 >= page.total;
        out.extend(page.items);
        if done {
            return Ok(out);
        }
    }
}

/// Every key of a tenant (both kinds unless `kind` says), disabled ones included, oldest first.
async fn list_tenant_keys(
    store: &Arc<dyn Store>,
    tenant: uuid::Uuid,
    kind: Option<KeyKind>,
) -> anyhow::Result<Vec<ApiKey>> {
    let mut out = Vec::new();
    if kind != Some(KeyKind::Workspace) {
        out.extend(all_pages(|page| store.list_management_keys(tenant, true, page)).await?);
    }
    if kind != Some(KeyKind::Management) {
        for ws in all_pages(|page| store.list_workspaces(tenant, page)).await? {
            out.extend(all_pages(|page| store.list_keys(ws.id, true, page)).await?);
        }
    }
    Ok(out)
}

/// A key by its full hash (as `keys list` prints it).
async fn find_key(store: &Arc<dyn Store>, hash: &str) -> anyhow::Result<ApiKey> {
    let hash = hash.trim().to_ascii_lowercase();
    if !tracecast_model::api_key::is_key_hash(&hash) {
        bail!("{hash:?} is not a key hash (64 hex characters, as `tracecast keys list` prints)");
    }
    store
        .key_by_hash(&hash)
        .await?
        .with_context(|| format!("no key with hash {hash}"))
}

/// The store's refusal to remove the last active management key, as a plain message.
fn key_error(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::Conflict(m) => anyhow::anyhow!("{m}"),
        e => e.into(),
    }
}

async fn set_disabled(common: &Common, hash: &str, disabled: bool) -> anyhow::Result<()> {
    let store = admin_store(common).await?;
    let mut key = find_key(&store, hash).await?;
    key.disabled = disabled;
    key.updated_at = Some(tracecast_model::time::now_rfc3339());
    store.update_key(&key).await.map_err(key_error)?;
    say!(
        "{} {} key {} ({})",
        if disabled { "disabled" } else { "enabled" },
        key.kind.as_str(),
        key.label,
        key.name
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            listen,
            queue_url,
            node_id,
            common,
        } => {
            let s = settings(
                &common,
                Overrides {
                    listen,
                    queue_url,
                    node_id,
                    ..Default::default()
                },
            )?;
            init_logging(&s.log);
            let running = tracecast_server::app::start(&s, shutdown_signal()).await?;
            running.task.await??;
        }
        Command::Keys {
            command:
                KeysCommand::Create {
                    management,
                    workspace,
                    name,
                    tenant,
                    common,
                },
        } => {
            let store = admin_store(&common).await?;
            let tenants = store.list_tenants().await?;
            let tenant = match tenant {
                Some(t) => tenants
                    .iter()
                    .find(|x| x.id.to_string() == t || x.name == t)
                    .with_context(|| format!("no tenant {t:?}"))?,
                None => tenants.first().context("no tenant")?,
            };
            let (kind, ws) = if management {
                (
                    KeyKind::Management,
                    store.default_workspace(tenant.id).await?,
                )
            } else {
                let w = workspace.as_deref().unwrap_or_default();
                let ws = store
                    .find_workspace(tenant.id, w)
                    .await?
                    .with_context(|| format!("no workspace {w:?} in tenant {}", tenant.name))?;
                (KeyKind::Workspace, ws)
            };
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            let (key, raw) = new_key(kind, tenant.id, ws.id, &name, None, None);
            store.insert_key(&key).await?;
            say!(
                "created {} key {:?} (hash {}) in workspace {}; it is shown only once:",
                kind.as_str(),
                name,
                key.hash,
                ws.slug
            );
            println!("{raw}");
        }
        Command::Keys {
            command:
                KeysCommand::List {
                    kind,
                    tenant,
                    common,
                },
        } => {
            let store = admin_store(&common).await?;
            let tenants = store.list_tenants().await?;
            let kind = kind.as_deref().and_then(KeyKind::parse);
            let now = tracecast_model::time::now_rfc3339();
            for t in tenants.iter().filter(|t| {
                tenant
                    .as_ref()
                    .is_none_or(|x| t.id.to_string() == *x || t.name == *x)
            }) {
                for k in list_tenant_keys(&store, t.id, kind).await? {
                    let state = if k.disabled {
                        "disabled"
                    } else if k.expires_at.as_deref().is_some_and(|e| e <= now.as_str()) {
                        "expired"
                    } else {
                        "active"
                    };
                    println!(
                        "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                        k.hash,
                        k.kind.as_str(),
                        k.label,
                        state,
                        k.name,
                        k.workspace_id,
                        k.expires_at.as_deref().unwrap_or("-")
                    );
                }
            }
        }
        Command::Keys {
            command: KeysCommand::Disable { hash, common },
        } => set_disabled(&common, &hash, true).await?,
        Command::Keys {
            command: KeysCommand::Enable { hash, common },
        } => set_disabled(&common, &hash, false).await?,
        Command::Keys {
            command: KeysCommand::Delete { hash, common },
        } => {
            let store = admin_store(&common).await?;
            let key = find_key(&store, &hash).await?;
            store.delete_key(&key.hash).await.map_err(key_error)?;
            say!(
                "deleted {} key {} ({})",
                key.kind.as_str(),
                key.label,
                key.name
            );
        }
        Command::Tenants {
            command: TenantsCommand::Create { name, common },
        } => {
            let store = admin_store(&common).await?;
            let (tenant, ws) = create_tenant(&store, &name).await?;
            let (key, raw) = new_key(
                KeyKind::Management,
                tenant.id,
                ws.id,
                "bootstrap",
                None,
                None,
            );
            store.insert_key(&key).await?;
            say!(
                "created tenant {} ({}); its management key is shown only once:",
                name,
                tenant.id
            );
            println!("{raw}");
        }
        Command::Tenants {
            command: TenantsCommand::List { common },
        } => {
            let store = admin_store(&common).await?;
            for t in store.list_tenants().await? {
                println!("{}\t{}\t{}", t.id, t.name, t.created_at);
            }
        }
        Command::Schema { warehouse } => {
            use tracecast_exporters::clickhouse::{self, warehouse::DEFAULT_TABLE};
            let ddl = match warehouse {
                SchemaCommand::Clickhouse { v2, legacy: false } => {
                    clickhouse::ddl(None, DEFAULT_TABLE, v2)
                }
                SchemaCommand::Clickhouse { v2, legacy: true } => {
                    clickhouse::ddl_legacy(None, DEFAULT_TABLE, v2)
                }
                SchemaCommand::Snowflake { v2 } => {
                    tracecast_exporters::snowflake::ddl(None, None, DEFAULT_TABLE, v2)
                }
                SchemaCommand::Bigquery {
                    project,
                    dataset,
                    table,
                } => tracecast_exporters::bigquery::ddl(Some(&project), &dataset, &table),
            };
            println!("{ddl}");
        }
        Command::Encryption {
            command: EncryptionCommand::GenerateKey,
        } => {
            println!("{}", crypto::generate_key_spec());
        }
        Command::Encryption {
            command: EncryptionCommand::AddKey { common },
        } => {
            let s = settings(&common, Overrides::default())?;
            let path = s.data_dir.join("encryption.key");
            let old = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let line = crypto::generate_key_spec();
            let (comments, keys): (Vec<&str>, Vec<&str>) = old
                .lines()
                .partition(|l| l.trim_start().starts_with('#') || l.trim().is_empty());
            let mut text = comments.join("\n");
            text.push('\n');
            text.push_str(&line);
            text.push('\n');
            for k in keys {
                text.push_str(k);
                text.push('\n');
            }
            crypto::Keyring::from_spec(&text)?;
            let tmp = path.with_extension("key.tmp");
            {
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create(true).truncate(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts.open(&tmp)?;
                f.write_all(text.as_bytes())?;
                f.sync_all()?;
            }
            std::fs::rename(&tmp, &path)?;
            let kid = line.split(':').next().unwrap_or_default();
            say!(
                "added primary key {kid} to {}; restart tracecast, then run `tracecast encryption rotate`",
                path.display()
            );
        }
        Command::Encryption {
            command: EncryptionCommand::Rotate { common },
        } => {
            let s = settings(&common, Overrides::default())?;
            let store = tracecast_server::app::open_store(&s).await?;
            let n = store.reencrypt_all().await?;
            say!("re-encrypted {n} destination config(s) with the primary key");
        }
    }
    Ok(())
}
