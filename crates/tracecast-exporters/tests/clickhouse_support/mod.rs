//! The chdb-backed ClickHouse HTTP endpoint for tests: spawns tests/clickhouse_shim.py with the
//! Python in TRACECAST_TEST_PYTHON (default `.venv/bin/python` at the workspace root) and fails
//! with a clear message when that Python or chdb is missing. Used by tests/clickhouse.rs and by
//! the server's end-to-end test (included there with `#[path]`).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

pub const USER: &str = "tracecast";
pub const PASSWORD: &str = "ch-pass-Secret-42";
pub const DB: &str = "tracecast";
/// The time zone the engines run in (chdb through `TZ`, clickhouse-server through
/// `<timezone>`): not UTC, so a time sent without a zone would land shifted.
pub const SERVER_TZ: &str = "Asia/Kolkata";

/// OpenRouter's ClickHouse DDL (the fixture `openrouter_ddl.sql`; see its header for what is
/// copied from OpenRouter's setup screen and what is inferred).
pub fn openrouter_ddl() -> String {
    include_str!("openrouter_ddl.sql").to_string()
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

pub fn python() -> PathBuf {
    let p = std::env::var_os("TRACECAST_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "the ClickHouse tests need a Python with chdb: {} does not exist. Run scripts/test.sh, or \
         `python3 -m venv .venv && .venv/bin/pip install -r tests/vendors/requirements-clickhouse.txt`, \
         or set TRACECAST_TEST_PYTHON",
        p.display()
    );
    p
}

// ---- the chdb shim ----

pub struct Shim {
    pub url: String,
    log: PathBuf,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Shim {
    pub async fn start() -> Shim {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("requests.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tracecast-exporters/tests/clickhouse_shim.py");
        let mut child = tokio::process::Command::new(python())
            .arg(&script)
            .args(["--user", USER, "--password", PASSWORD, "--data"])
            .arg(dir.path().join("chdb"))
            .arg("--log")
            .arg(&log)
            .env("TZ", SERVER_TZ)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn the chdb shim");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let port = match first {
            Ok(Ok(Some(line))) if line.starts_with("LISTENING ") => {
                line["LISTENING ".len()..].trim().to_string()
            }
            other => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use tokio::io::AsyncReadExt;
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut err))
                            .await;
                }
                panic!(
                    "the chdb shim did not start ({other:?}). Is chdb installed in {}? \
                     (pip install -r tests/vendors/requirements-clickhouse.txt)\n{err}",
                    python().display()
                );
            }
        };
        let shim = Shim {
            url: format!("http://127.0.0.1:{port}"),
            log,
            _child: child,
            _dir: dir,
        };
        shim.sql(&format!("CREATE DATABASE IF NOT EXISTS {DB}"))
            .await;
        shim
    }

    /// Runs SQL as the test's user and returns the body; panics on an error answer.
    pub async fn sql(&self, sql: &str) -> String {
        run_sql(&self.url, sql, None).await
    }

    /// Runs a query in database `tracecast` and returns JSONEachRow rows.
    pub async fn rows(&self, sql: &str) -> Vec<Value> {
        let sql = sql.trim().trim_end_matches(';');
        run_sql(&self.url, sql, Some(DB))
            .await
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSONEachRow line"))
            .collect()
    }

    /// The requests the shim received, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line"))
            .collect()
    }
}

pub async fn run_sql(base: &str, sql: &str, database: Option<&str>) -> String {
    let mut url = reqwest::Url::parse(base).unwrap();
    if let Some(db) = database {
        url.query_pairs_mut()
            .append_pair("database", db)
            .append_pair("default_format", "JSONEachRow");
    }
    let r = reqwest::Client::new()
        .post(url)
        .header("X-ClickHouse-User", USER)
        .header("X-ClickHouse-Key", PASSWORD)
        .body(sql.to_string())
        .send()
        .await
        .expect("ClickHouse answers");
    let status = r.status();
    let text = r.text().await.unwrap();
    assert!(status.is_success(), "{sql}\n-> {status}: {text}");
    text
}
