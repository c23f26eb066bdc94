//! Service settings.
//!
//! Precedence, lowest to highest: built-in defaults, then the config file (`--config`,
//! `TRACECAST_CONFIG`, or `./tracecast.toml` when present), then `TRACECAST_*` environment
//! variables, then command-line flags.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use tracecast_engine::EngineOptions;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Address the HTTP server binds.
    pub listen: String,
    /// Directory of the embedded database and the generated encryption key.
    pub data_dir: PathBuf,
    /// Database URL; default: SQLite `tracecast.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Most connections this node opens to a PostgreSQL `database_url`; default 10. Every
    /// node has its own pool, so the nodes together open up to nodes × this.
    pub database_pool_size: Option<u32>,
    /// Credential encryption keys, `kid:base64[,kid:base64...]`, first is primary. Default:
    /// the key file `encryption.key` in `data_dir`, generated on first start.
    pub encryption_keys: Option<String>,
    /// The first management key, used instead of a random one on first start.
    pub bootstrap_management_key: Option<String>,
    /// Bearer token `GET /metrics` requires (`Authorization: Bearer <token>`, at least 32
    /// characters). Unset: `/metrics` is open to whoever reaches `listen`; it names every
    /// tenant's destination ids, so set it whenever the listen address is not private.
    pub metrics_token: Option<String>,
    /// Log filter (`info`, `tracecast=debug`, ...).
    pub log: String,
    /// fsync the queue on every commit (power-loss safe). A process crash loses nothing even
    /// when this is off.
    pub queue_sync: bool,
    /// Memory for recently ingested generations kept parsed for the workers (MiB). Workers
    /// that fall further behind read from disk instead.
    pub queue_memory_mib: usize,
    /// NATS JetStream URL(s) (`nats://[user:pass@]host:4222`, comma separated): run as one
    /// node of a cluster sharing this queue and a PostgreSQL `database_url`. Default: the
    /// embedded queue in `data_dir`.
    pub queue_url: Option<String>,
    /// Names the cluster's streams and buckets; every node of one deployment uses the same.
    pub queue_prefix: String,
    /// JetStream replicas of the streams and buckets (3 on a three-server NATS cluster).
    pub queue_replicas: usize,
    /// This node's name in the cluster (`[A-Za-z0-9_-]`, unique). Default: host name and a
    /// random suffix.
    pub node_id: Option<String>,
    /// How long a node's destination leases outlive it (seconds): a dead node's destinations
    /// are taken over within this plus a third of it.
    pub lease_ttl_secs: u64,
    /// Delivery settings (`[delivery]` in the config file).
    pub delivery: EngineOptions,
    /// The capturing gateway (`[gateway]`): upstreams and limits. See `docs/gateway.md`.
    pub gateway: crate::gateway::upstream::GatewaySettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./tracecast-data"),
            database_url: None,
            database_pool_size: None,
            encryption_keys: None,
            bootstrap_management_key: None,
            metrics_token: None,
            log: "info".into(),
            queue_sync: true,
            queue_memory_mib: 32,
            queue_url: None,
            queue_prefix: "tracecast".into(),
            queue_replicas: 1,
            node_id: None,
            lease_ttl_secs: 10,
            delivery: EngineOptions::default(),
            gateway: Default::default(),
        }
    }
}

/// Values given on the command line (they win over everything else).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
}

impl Settings {
    pub fn load(config_file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Settings> {
        let mut fig = Figment::from(Serialized::defaults(Settings::default()));
        let env_file = std::env::var_os("TRACECAST_CONFIG").map(PathBuf::from);
        match config_file.map(Path::to_path_buf).or(env_file) {
            Some(path) => {
                if !path.exists() {
                    anyhow::bail!("config file {} does not exist", path.display());
                }
                fig = fig.merge(Toml::file(path));
            }
            None => fig = fig.merge(Toml::file("tracecast.toml")),
        }
        fig = fig
            .merge(Env::prefixed("TRACECAST_").ignore(&["CONFIG"]).split("__"))
            .merge(Serialized::defaults(overrides));
        Ok(fig.extract()?)
    }
}
