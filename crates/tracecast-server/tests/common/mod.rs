//! Test harness: the real server on 127.0.0.1:0 with a temp data dir, and a small client.
//!
//! The store is SQLite in the data dir unless `TRACECAST_TEST_DATABASE_URL` names a PostgreSQL
//! server (e.g. `postgres://postgres@127.0.0.1:5432/postgres`): then every server gets a fresh,
//! uniquely named database there, dropped (best effort) with the server.
#![allow(dead_code)]

pub mod credentials;
pub mod e2e;
pub mod receiver;

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tracecast_server::app::{Running, start};
use tracecast_server::settings::Settings;
use tracecast_store::Store;

pub struct TestServer {
    pub base: String,
    pub engine: Arc<tracecast_engine::Engine>,
    pub mgmt_key: String,
    pub store: Arc<dyn Store>,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    _shutdown: tokio::sync::oneshot::Sender<()>,
    _running: Running,
    /// Last: dropped after the server.
    _db: Option<TempDatabase>,
}

/// The environment variable naming a PostgreSQL server to test against.
pub const TEST_DATABASE_ENV: &str = "TRACECAST_TEST_DATABASE_URL";

/// The PostgreSQL server to test against, if any.
pub fn test_database_url() -> Option<String> {
    std::env::var(TEST_DATABASE_ENV)
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh PostgreSQL database, dropped (best effort, `WITH (FORCE)`) when this is.
pub struct TempDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl TempDatabase {
    /// Creates `tracecast_test_<random>` on the server `admin_url` connects to.
    pub async fn create(admin_url: &str) -> TempDatabase {
        use sqlx::{Connection, Executor};
        let name = format!("tracecast_test_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::PgConnection::connect(admin_url)
            .await
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_ENV}: cannot connect: {e}"));
        c.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .unwrap();
        let _ = c.close().await;
        let mut url = url::Url::parse(admin_url).unwrap();
        url.set_path(&name);
        TempDatabase {
            admin_url: admin_url.to_string(),
            name,
            url: url.to_string(),
        }
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin_url.clone(), self.name.clone());
        // A thread of its own: Drop may run inside or outside a runtime.
        let _ = std::thread::spawn(move || {
            use sqlx::{Connection, Executor};
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut c = sqlx::PgConnection::connect(&admin).await.ok()?;
                c.execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await
                    .ok()
            })
        })
        .join();
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub text: String,
}

impl TestServer {
    /// A destination of the management key's tenant as the store holds it (secrets decrypted).
    pub async fn stored_destination(&self, id: &str) -> tracecast_model::destination::Destination {
        let tenant = self
            .store
            .key_by_hash(&tracecast_model::hash_key(&self.mgmt_key))
            .await
            .unwrap()
            .unwrap()
            .tenant_id;
        self.store
            .get_destination(tenant, id.parse().unwrap())
            .await
            .unwrap()
            .unwrap()
    }

    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts with settings adjusted by `f` (delivery timings, for example).
    pub async fn start_with(f: impl FnOnce(&mut Settings)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mgmt_key = tracecast_model::generate_key();
        let mut settings = Settings {
            listen: "127.0.0.1:0".into(),
            data_dir: dir.path().to_path_buf(),
            bootstrap_management_key: Some(mgmt_key.clone()),
            ..Settings::default()
        };
        f(&mut settings);
        // A test that sets its own database URL (several servers on one database) keeps it.
        let db = match test_database_url() {
            Some(admin) if settings.database_url.is_none() => {
                let db = TempDatabase::create(&admin).await;
                settings.database_url = Some(db.url.clone());
                Some(db)
            }
            _ => None,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let running = start(&settings, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
        TestServer {
            base: format!("http://{}", running.addr),
            mgmt_key,
            store: running.state.store.clone(),
            engine: running.state.engine.clone(),
            http: reqwest::Client::new(),
            _dir: dir,
            _shutdown: tx,
            _running: running,
            _db: db,
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Sends a request with `key` as bearer (None: no auth header) and a JSON or raw body.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Body>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        match body {
            Some(Body::Json(v)) => req = req.json(&v),
            Some(Body::Raw(b)) => req = req.header("content-type", "application/json").body(b),
            None => {}
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, body, text }
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(Method::GET, path, Some(&self.mgmt_key.clone()), None)
            .await
    }
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.send(
            Method::POST,
            path,
            Some(&self.mgmt_key.clone()),
            Some(Body::Json(body)),
        )
        .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Resp {
        self.send(
            Method::PATCH,
            path,
            Some(&self.mgmt_key.clone()),
            Some(Body::Json(body)),
        )
        .await
    }
    pub async fn delete(&self, path: &str) -> Resp {
        self.send(Method::DELETE, path, Some(&self.mgmt_key.clone()), None)
            .await
    }

    /// Creates a workspace key through the API; returns (key, hash).
    pub async fn workspace_key(&self, workspace: Option<&str>) -> (String, String) {
        let mut body = serde_json::json!({"name": "app"});
        if let Some(w) = workspace {
            body["workspace_id"] = w.into();
        }
        let r = self.post("/api/v1/keys", body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        (
            r.body["key"].as_str().unwrap().to_string(),
            r.body["data"]["hash"].as_str().unwrap().to_string(),
        )
    }

    /// A second tenant with its own management key.
    pub async fn other_tenant(&self) -> String {
        let (tenant, ws) = tracecast_server::provision::create_tenant(&self.store, "other")
            .await
            .unwrap();
        let (key, raw) = tracecast_server::provision::new_key(
            tracecast_model::api_key::KeyKind::Management,
            tenant.id,
            ws.id,
            "other-admin",
            None,
            None,
        );
        self.store.insert_key(&key).await.unwrap();
        raw
    }
}

pub enum Body {
    Json(Value),
    Raw(Vec<u8>),
}

pub fn assert_error(r: &Resp, status: u16, message_starts: &str) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], status, "{}", r.text);
    let msg = r.body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.starts_with(message_starts),
        "message {msg:?} should start with {message_starts:?}"
    );
}

/// The address a spawned `tracecast serve` (stderr piped) prints ("listening on ..."), within
/// 30 s. Its stderr keeps being drained afterwards, so the child never blocks on a full pipe.
pub fn listening_address(child: &mut std::process::Child) -> String {
    use std::io::{BufRead, BufReader};
    let stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent && let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.trim().to_owned());
                sent = true;
            }
        }
    });
    rx.recv_timeout(std::time::Duration::from_secs(30))
        .expect("tracecast printed its listening address")
}
