//! The `tracecast` binary as a user runs it: first start, admin commands, config precedence,
//! key rotation, SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tracecast");

struct Served {
    child: Child,
    base: String,
    lines: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `tracecast serve` and reads stderr until it says where it listens (30 s deadline).
fn serve(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .current_dir(dir);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // Owned by `Served` from here on, whose Drop kills and reaps it even if we panic below.
    let mut served = Served {
        child,
        base: String::new(),
        lines: Vec::new(),
    };
    let stderr = served.child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no listening line; stderr so far: {:#?}", served.lines));
        if let Some(rest) = line.split("listening on ").nth(1) {
            served.base = rest.trim().to_string();
            served.lines.push(line);
            return served;
        }
        served.lines.push(line);
    }
}

fn run(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .current_dir(dir)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn get(base: &str, path: &str, key: &str) -> (u16, serde_json::Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(format!("{base}{path}"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or_default())
    })
}

#[test]
fn first_start_prints_a_working_management_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let s = serve(dir.path(), &["--listen", "127.0.0.1:0"], &[]);
        let key = s
            .lines
            .iter()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("sk-tc-v1-")
                    .map(|k| format!("sk-tc-v1-{k}"))
            })
            .unwrap_or_else(|| panic!("no key line in {:#?}", s.lines));
        let (status, body) = get(&s.base, "/api/v1/observability/destinations", &key);
        assert_eq!(status, 200, "{body}");
        key
    };
    // The key file is private, and the database holds only the key's hash.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("encryption.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let db = std::fs::read(dir.path().join("tracecast.db")).unwrap();
    assert!(!db.windows(key.len()).any(|w| w == key.as_bytes()));
    // A second start prints no key.
    let s = serve(dir.path(), &["--listen", "127.0.0.1:0"], &[]);
    assert!(
        !s.lines.iter().any(|l| l.contains("sk-tc-v1-")),
        "{:#?}",
        s.lines
    );
    assert_eq!(get(&s.base, "/api/v1/key", &key).0, 200);
}

#[test]
fn bootstrap_key_from_env_and_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let boot = "sk-tc-v1-bootstrap-for-tests-0001";
    let s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0"],
        &[("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", boot)],
    );
    assert!(
        !s.lines.iter().any(|l| l.contains(boot)),
        "the env key is not echoed"
    );
    assert_eq!(get(&s.base, "/api/v1/key", boot).0, 200);

    // `keys create` works against the running server's data dir.
    let (ok, mgmt, err) = run(
        dir.path(),
        &["keys", "create", "--management", "--name", "ops"],
    );
    assert!(ok, "{err}");
    assert_eq!(get(&s.base, "/api/v1/workspaces", &mgmt).0, 200);
    let (ok, wskey, err) = run(
        dir.path(),
        &[
            "keys",
            "create",
            "--workspace",
            "default",
            "--name",
            "gateway",
        ],
    );
    assert!(ok, "{err}");
    assert!(wskey.starts_with("sk-tc-v1-"));
    let (status, body) = get(&s.base, "/api/v1/key", &wskey);
    assert_eq!(status, 200);
    assert_eq!(body["data"]["is_management_key"], false);
    assert_eq!(get(&s.base, "/api/v1/workspaces", &wskey).0, 403);
    let (ok, _, err) = run(
        dir.path(),
        &["keys", "create", "--workspace", "nope", "--name", "x"],
    );
    assert!(!ok && err.contains("no workspace \"nope\""), "{err}");

    // A new tenant sees only itself.
    let (ok, other, err) = run(dir.path(), &["tenants", "create", "--name", "globex"]);
    assert!(ok, "{err}");
    let (status, body) = get(&s.base, "/api/v1/workspaces", &other);
    assert_eq!(status, 200);
    assert_eq!(body["total_count"], 1);
    let (_, mine) = get(&s.base, "/api/v1/workspaces", boot);
    assert_ne!(body["data"][0]["id"], mine["data"][0]["id"]);
}

#[test]
fn flags_beat_env_beat_config_file() {
    let dir = tempfile::tempdir().unwrap();
    // 192.0.2.1 (TEST-NET-1) is not an address of this machine, so binding it fails at once and
    // the error names it: proof that the file's value was used.
    std::fs::write(
        dir.path().join("tracecast.toml"),
        "listen = \"192.0.2.1:9\"\nlog = \"debug\"\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("192.0.2.1:9"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Env beats the file ...
    let s = serve(dir.path(), &[], &[("TRACECAST_LISTEN", "127.0.0.1:0")]);
    assert!(s.base.starts_with("http://127.0.0.1:"));
    drop(s);
    // ... and the flag beats env.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let s = serve(
        dir.path(),
        &["--listen", &free.to_string()],
        &[("TRACECAST_LISTEN", "192.0.2.1:9")],
    );
    assert_eq!(s.base, format!("http://{free}"));
}

#[test]
fn encryption_key_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let boot = "sk-tc-v1-bootstrap-for-tests-0002";
    let id;
    {
        let s = serve(
            dir.path(),
            &["--listen", "127.0.0.1:0"],
            &[("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", boot)],
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        id = rt.block_on(async {
            let r = reqwest::Client::new()
                .post(format!("{}/api/v1/observability/destinations", s.base))
                .bearer_auth(boot)
                .json(&serde_json::json!({"type": "langfuse", "name": "lf", "config": {"publicKey": "pk-lf-rotate-0001", "secretKey": "sk-lf-rotate-0002"}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            r.json::<serde_json::Value>().await.unwrap()["data"]["id"].as_str().unwrap().to_string()
        });
    }
    let old = std::fs::read_to_string(dir.path().join("encryption.key")).unwrap();
    let (ok, _, err) = run(dir.path(), &["encryption", "add-key"]);
    assert!(ok, "{err}");
    let (ok, _, err) = run(dir.path(), &["encryption", "rotate"]);
    assert!(ok, "{err}");
    assert!(err.contains("re-encrypted 1"), "{err}");
    // Drop the old key: the data is readable with the new key alone.
    let new_text = std::fs::read_to_string(dir.path().join("encryption.key")).unwrap();
    let old_line = old
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty())
        .unwrap();
    std::fs::write(
        dir.path().join("encryption.key"),
        new_text.replace(old_line, ""),
    )
    .unwrap();
    let s = serve(dir.path(), &["--listen", "127.0.0.1:0"], &[]);
    let (status, body) = get(
        &s.base,
        &format!("/api/v1/observability/destinations/{id}"),
        boot,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["config"]["secretKey"], "sk-l...0002");
}

#[cfg(unix)]
#[test]
fn sigterm_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = serve(dir.path(), &["--listen", "127.0.0.1:0"], &[]);
    let pid = s.child.id() as i32;
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            assert!(st.success(), "exit status {st:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "tracecast did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Logging must never take the service down: with stderr unwritable (a full disk, a closed
/// pipe), the server starts and answers requests that log.
#[cfg(unix)]
#[test]
fn unwritable_stderr_does_not_stop_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let boot = "sk-tc-v1-bootstrap-for-tests-0003";
    let child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", boot)
        .stderr(Stdio::from(full))
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut served = Served {
        child,
        base: format!("http://127.0.0.1:{port}"),
        lines: Vec::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::new();
    loop {
        let up = rt
            .block_on(client.get(format!("{}/health", served.base)).send())
            .is_ok();
        if up {
            break;
        }
        assert!(
            served.child.try_wait().unwrap().is_none(),
            "tracecast exited"
        );
        assert!(Instant::now() < deadline, "tracecast never answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A request that logs (destination created) still gets its answer.
    let status = rt.block_on(async {
        client
            .post(format!("{}/api/v1/observability/destinations", served.base))
            .bearer_auth(boot)
            .json(&serde_json::json!({"type": "webhook", "name": "w", "config": {"url": "http://127.0.0.1:9/hook"}}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 201);
    assert!(
        served.child.try_wait().unwrap().is_none(),
        "tracecast exited after logging"
    );
    served.lines.clear();
}

#[test]
fn schema_prints_the_warehouse_ddl() {
    let ddl = |args: &[&str]| {
        let out = Command::new(BIN).arg("schema").args(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let v1 = ddl(&["clickhouse"]);
    let v2 = ddl(&["clickhouse", "--v2"]);
    assert!(
        v1.starts_with("CREATE TABLE IF NOT EXISTS `OPENROUTER_TRACES`"),
        "{v1}"
    );
    assert!(
        v1.contains("`TOTAL_COST`") && !v1.contains("CACHE_WRITE_TOKENS"),
        "{v1}"
    );
    assert!(v2.contains("`CACHE_WRITE_TOKENS`"), "{v2}");
    // The same text the exporter module documents and the docs show.
    assert_eq!(
        v2.trim_end(),
        tracecast_exporters::clickhouse::ddl(None, "OPENROUTER_TRACES", true).trim_end()
    );
    let legacy = ddl(&["clickhouse", "--legacy"]);
    assert_ne!(legacy, v1);
    let sf = ddl(&["snowflake", "--v2"]);
    assert!(
        sf.starts_with("CREATE TABLE IF NOT EXISTS OPENROUTER_TRACES"),
        "{sf}"
    );
    assert!(
        sf.contains("CACHE_WRITE_TOKENS") && sf.contains("VARIANT"),
        "{sf}"
    );
    let bq = ddl(&["bigquery"]);
    assert!(
        bq.starts_with("CREATE TABLE IF NOT EXISTS `my-gcp-project.openrouter.openrouter_traces`"),
        "{bq}"
    );
    assert!(
        bq.contains("ARRAY<STRING>") && bq.contains(" JSON "),
        "{bq}"
    );
    assert_eq!(
        bq.trim_end(),
        tracecast_exporters::bigquery::ddl(
            Some("my-gcp-project"),
            "openrouter",
            "openrouter_traces"
        )
        .trim_end()
    );
    let named = ddl(&[
        "bigquery",
        "--project",
        "acme-prod",
        "--dataset",
        "obs",
        "--table",
        "t1",
    ]);
    assert!(
        named.starts_with("CREATE TABLE IF NOT EXISTS `acme-prod.obs.t1`"),
        "{named}"
    );
    let bad = Command::new(BIN)
        .args(["schema", "redshift"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
}

#[test]
fn keys_list_disable_and_delete_but_never_the_last_management_key() {
    let dir = tempfile::tempdir().unwrap();
    let boot = "sk-tc-v1-bootstrap-for-tests-0004";
    let boot_hash = tracecast_model::hash_key(boot);
    let s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0"],
        &[("TRACECAST_BOOTSTRAP_MANAGEMENT_KEY", boot)],
    );
    let (ok, out, err) = run(dir.path(), &["keys", "list", "--kind", "management"]);
    assert!(ok, "{err}");
    let cols: Vec<&str> = out.lines().next().unwrap().split('\t').collect();
    assert_eq!(
        cols[..4],
        [
            boot_hash.as_str(),
            "management",
            "sk-tc-v1-...0004",
            "active"
        ]
    );
    assert!(!out.contains(boot), "the key itself is never printed");

    // The last active management key: refused, with a clear message.
    for cmd in ["disable", "delete"] {
        let (ok, _, err) = run(dir.path(), &["keys", cmd, &boot_hash]);
        assert!(
            !ok && err.contains("last active management key"),
            "{cmd}: {err}"
        );
    }
    assert_eq!(get(&s.base, "/api/v1/key", boot).0, 200);

    let (ok, ops, err) = run(
        dir.path(),
        &["keys", "create", "--management", "--name", "ops"],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = run(dir.path(), &["keys", "disable", &boot_hash]);
    assert!(ok, "{err}");
    // A running server caches existing keys for 5 s (auth::KeyCache); a change made by the
    // CLI, outside the server, applies within that time (API changes apply at once).
    let eventually = |key: &str, status: u16| {
        let deadline = Instant::now() + Duration::from_secs(15);
        while get(&s.base, "/api/v1/key", key).0 != status {
            assert!(
                Instant::now() < deadline,
                "the key does not answer {status} after 15 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    eventually(boot, 401);
    let (ok, out, _) = run(dir.path(), &["keys", "list"]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l.starts_with(&boot_hash) && l.contains("\tdisabled\t")),
        "{out}"
    );
    let (ok, _, err) = run(dir.path(), &["keys", "enable", &boot_hash]);
    assert!(ok, "{err}");
    eventually(boot, 200);
    let (ok, _, err) = run(dir.path(), &["keys", "delete", &boot_hash]);
    assert!(ok, "{err}");
    eventually(boot, 401);
    assert_eq!(get(&s.base, "/api/v1/key", &ops).0, 200);
    let (ok, _, err) = run(dir.path(), &["keys", "delete", "not-a-hash"]);
    assert!(!ok && err.contains("is not a key hash"), "{err}");
}

#[cfg(unix)]
#[test]
fn loose_data_dir_is_reported_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let s = serve(
        dir.path(),
        &["--listen", "127.0.0.1:0"],
        &[(
            "TRACECAST_BOOTSTRAP_MANAGEMENT_KEY",
            "sk-tc-v1-bootstrap-for-tests-0005",
        )],
    );
    assert!(
        s.lines
            .iter()
            .any(|l| l.contains("WARN")
                && l.contains("the data directory is readable by other users")),
        "{:#?}",
        s.lines
    );
}
