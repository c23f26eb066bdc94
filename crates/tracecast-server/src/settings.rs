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
use tracecast_exporters::egress::EgressSettings;

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
    /// Address of the OTLP/gRPC receiver (`TraceService/Export`), e.g. `0.0.0.0:4317`. Unset
    /// (the default): no gRPC receiver; OTLP/HTTP is always on `listen` at `/v1/traces`.
    pub otlp_grpc_listen: Option<String>,
    /// Delivery settings (`[delivery]` in the config file).
    pub delivery: EngineOptions,
    /// What destinations may connect to (`[egress]` in the config file,
    /// `TRACECAST_EGRESS__ALLOW_PRIVATE`, `TRACECAST_EGRESS__ALLOW`); see docs/deploy.md.
    pub egress: EgressSettings,
    /// Resource limits (`[limits]` in the config file): HTTP timeouts, connections, rate
    /// limits and per-tenant caps. See `docs/deploy.md`, "Limits".
    #[serde(default)]
    pub limits: Limits,
    /// The capturing gateway (`[gateway]`): upstreams and limits. See `docs/gateway.md`.
    pub gateway: crate::gateway::upstream::GatewaySettings,
    /// The web dashboard (`[dashboard]`). See `docs/dashboard.md`.
    #[serde(default)]
    pub dashboard: DashboardSettings,
}

/// `[dashboard]`: the web dashboard served at `/`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct DashboardSettings {
    /// Serve the dashboard (default true). Off: `/` and the dashboard's pages answer 404.
    pub enabled: bool,
    /// How long a sign-in lasts, in hours (default 12); then the dashboard asks for the key
    /// again.
    pub session_hours: u64,
    /// Always mark the session cookie `Secure`. Without it the cookie is `Secure` when the
    /// request came over HTTPS through a proxy (`X-Forwarded-Proto: https` or `Forwarded:
    /// proto=https`).
    pub secure_cookies: bool,
}

impl Default for DashboardSettings {
    fn default() -> Self {
        DashboardSettings {
            enabled: true,
            session_hours: 12,
            secure_cookies: false,
        }
    }
}

/// `[limits]`: what one client or tenant may use. Every value is configurable; a rate of 0
/// turns that rate limit off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Most inbound connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, counted from when the connection
    /// opens or the previous response is sent: so also how long an idle keep-alive connection
    /// stays open.
    pub header_read_timeout_secs: u64,
    /// Seconds a client has to send a request body (each read of it).
    pub body_timeout_secs: u64,
    /// Seconds a request may take from its headers to its answer; then 408.
    pub request_timeout_secs: u64,
    /// Requests per second per API key on the ways in (`POST /api/v1/generations`, OTLP's
    /// `/v1/traces`, the gateway's calls), 0: off.
    pub ingest_rate_per_key: f64,
    /// Ingest requests a key may send at once above its rate.
    pub ingest_burst_per_key: u32,
    /// Ingest requests per second per tenant, all its keys together (0: off).
    pub ingest_rate_per_tenant: f64,
    pub ingest_burst_per_tenant: u32,
    /// Management API requests (every other `/api/v1` path) per second per key (0: off).
    pub api_rate_per_key: f64,
    pub api_burst_per_key: u32,
    /// Management API requests per second per tenant (0: off).
    pub api_rate_per_tenant: f64,
    pub api_burst_per_tenant: u32,
    /// Most live workspaces per tenant.
    pub max_workspaces_per_tenant: u64,
    /// Most live destinations per tenant, all workspaces together.
    pub max_destinations_per_tenant: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            header_read_timeout_secs: 30,
            body_timeout_secs: 30,
            request_timeout_secs: 120,
            ingest_rate_per_key: 10000.0,
            ingest_burst_per_key: 20000,
            ingest_rate_per_tenant: 20000.0,
            ingest_burst_per_tenant: 40000,
            api_rate_per_key: 500.0,
            api_burst_per_key: 1000,
            api_rate_per_tenant: 1000.0,
            api_burst_per_tenant: 2000,
            max_workspaces_per_tenant: 1000,
            max_destinations_per_tenant: 5000,
        }
    }
}

impl Limits {
    /// Rejects values that would make the service unusable.
    pub fn validate(&self) -> anyhow::Result<()> {
        let positive = [
            ("max_connections", self.max_connections as u64),
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("max_workspaces_per_tenant", self.max_workspaces_per_tenant),
            (
                "max_destinations_per_tenant",
                self.max_destinations_per_tenant,
            ),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            anyhow::bail!("limits.{name} must be at least 1");
        }
        let rates = [
            ("ingest_rate_per_key", self.ingest_rate_per_key),
            ("ingest_rate_per_tenant", self.ingest_rate_per_tenant),
            ("api_rate_per_key", self.api_rate_per_key),
            ("api_rate_per_tenant", self.api_rate_per_tenant),
        ];
        if let Some((name, _)) = rates.iter().find(|(_, v)| !v.is_finite() || *v < 0.0) {
            anyhow::bail!("limits.{name} must be a number of at least 0 (0: off)");
        }
        Ok(())
    }
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
            otlp_grpc_listen: None,
            delivery: EngineOptions::default(),
            egress: EgressSettings::default(),
            limits: Limits::default(),
            gateway: Default::default(),
            dashboard: DashboardSettings::default(),
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
