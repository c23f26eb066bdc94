//! The `s3` destination end to end: the real server ingests generations and delivers them to
//! an in-process S3 (`s3s` over a temporary directory, `s3s-fs`) that verifies every SigV4
//! signature; the test finds the objects in that directory.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::e2e::{
    DEST, create_destination, fast_with, ingest, record_with, test_config, wait_status,
};
use common::{TestServer, assert_error};
use serde_json::{Value, json};

const BUCKET: &str = "e2e-traces";
const ACCESS_KEY: &str = "AKIATRACECASTE2E0001";
const SECRET_KEY: &str = "e2e-secret-key-0123456789abcdefghijklmn";

/// s3s-fs on 127.0.0.1:0 with one bucket and one key pair.
struct S3s {
    url: String,
    root: tempfile::TempDir,
    task: tokio::task::JoinHandle<()>,
}

impl S3s {
    async fn start() -> S3s {
        use hyper_util::rt::{TokioExecutor, TokioIo};
        use hyper_util::server::conn::auto::Builder as ConnBuilder;
        use s3s::auth::SimpleAuth;
        use s3s::service::S3ServiceBuilder;

        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(BUCKET)).unwrap();
        let fs = s3s_fs::FileSystem::new(root.path()).unwrap();
        let mut b = S3ServiceBuilder::new(fs);
        b.set_auth(SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
        let service = b.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let service = service.clone();
                tokio::spawn(async move {
                    let _ = ConnBuilder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(sock), service)
                        .await;
                });
            }
        });
        S3s {
            url: format!("http://{addr}"),
            root,
            task,
        }
    }

    /// Object keys (relative paths) of files in the bucket, skipping s3s-fs's hidden files.
    fn keys(&self) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    walk(base, &p, out);
                } else {
                    out.push(
                        p.strip_prefix(base)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
        let base = self.root.path().join(BUCKET);
        let mut out = Vec::new();
        walk(&base, &base, &mut out);
        out.sort();
        out
    }

    fn read(&self, key: &str) -> Value {
        serde_json::from_slice(&std::fs::read(self.root.path().join(BUCKET).join(key)).unwrap())
            .unwrap()
    }

    async fn wait_keys(&self, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let keys = self.keys();
            if keys.len() >= n {
                return keys;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} objects; have {keys:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for S3s {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn record(id: &str) -> Value {
    record_with(
        id,
        json!({
            "finish_reason": null,
            "session_id": "session-1",
            "request": {"messages": [{"role": "user", "content": "PROMPT-TEXT"}]},
            "trace": {"trace_name": "Doc pipeline", "generation_name": "Summarise", "env": "prod"}
        }),
    )
}

#[tokio::test]
async fn ingested_generations_land_as_objects_in_the_bucket() {
    let s3 = S3s::start().await;
    let s = TestServer::start_with(fast_with(5, 1)).await;
    let config = json!({
        "bucketName": BUCKET,
        "accessKeyId": ACCESS_KEY,
        "secretAccessKey": SECRET_KEY,
        "endpoint": s3.url,
        "provider": "other",
        "prefix": "e2e",
        "pathTemplate": "{prefix}/{year}/{month}/{day}"
    });

    // Test connection through the API: writes and deletes a test object.
    let t = test_config(
        &s,
        json!({"type": "s3", "name": "bucket", "config": config}),
    )
    .await;
    assert_eq!(t.status, 200, "{}", t.text);
    assert_eq!(t.body["data"]["ok"], true, "{}", t.text);
    assert!(s3.keys().is_empty(), "the test object was deleted");

    // Unknown template variables are refused when the destination is saved.
    let mut bad = config.clone();
    bad["pathTemplate"] = json!("{prefix}/{hour}");
    assert_error(
        &s.post(DEST, json!({"type": "s3", "name": "bad", "config": bad}))
            .await,
        400,
        "config.pathTemplate uses unknown variable {hour}",
    );

    let (id, r) = create_destination(
        &s,
        json!({"type": "s3", "name": "bucket", "config": config}),
        json!({}),
    )
    .await;
    assert!(
        !r.text.contains(SECRET_KEY),
        "the secret is masked: {}",
        r.text
    );

    let (key, _) = s.workspace_key(None).await;
    ingest(&s, &key, &[record("gen-e2e-1"), record("gen-e2e-2")]).await;

    let keys = s3.wait_keys(2).await;
    assert_eq!(
        keys,
        vec![
            "e2e/2026/03/01/gen-e2e-1-1772366400.json".to_string(),
            "e2e/2026/03/01/gen-e2e-2-1772366400.json".to_string(),
        ]
    );
    let doc = s3.read(&keys[0]);
    assert_eq!(doc["id"], "gen-e2e-1");
    assert_eq!(doc["name"], "Doc pipeline");
    assert_eq!(doc["userId"], "user-1");
    assert_eq!(doc["sessionId"], "session-1");
    assert_eq!(doc["metadata"]["env"], "prod");
    let g = &doc["observations"][0];
    assert_eq!(g["name"], "Summarise");
    assert_eq!(g["input"]["messages"][0]["content"], "PROMPT-TEXT");
    assert_eq!(g["output"]["content"], "COMPLETION-TEXT");

    let st = wait_status(&s, &id, "delivered", |st| st["counts"]["delivered"] == 2).await;
    assert_eq!(st["state"], "active");
}

#[tokio::test]
async fn privacy_mode_and_a_wrong_secret_end_to_end() {
    let s3 = S3s::start().await;
    let s = TestServer::start_with(fast_with(5, 1)).await;
    let private = s
        .post(
            DEST,
            json!({"type": "s3", "name": "private", "privacy_mode": true, "config": {
                "bucketName": BUCKET, "accessKeyId": ACCESS_KEY, "secretAccessKey": SECRET_KEY,
                "endpoint": s3.url, "provider": "other"
            }}),
        )
        .await;
    assert_eq!(private.status, 201, "{}", private.text);
    let wrong = s
        .post(
            DEST,
            json!({"type": "s3", "name": "wrong", "config": {
                "bucketName": BUCKET, "accessKeyId": ACCESS_KEY,
                "secretAccessKey": "definitely-not-the-secret-000", "endpoint": s3.url,
                "provider": "other", "prefix": "wrong"
            }}),
        )
        .await;
    assert_eq!(wrong.status, 201, "{}", wrong.text);
    let wrong_id = wrong.body["data"]["id"].as_str().unwrap().to_string();

    let (key, _) = s.workspace_key(None).await;
    ingest(&s, &key, &[record("gen-private")]).await;
    let keys = s3.wait_keys(1).await;
    assert_eq!(
        keys,
        vec!["openrouter-traces/2026-03-01/gen-private-1772366400.json".to_string()]
    );
    let text = serde_json::to_string(&s3.read(&keys[0])).unwrap();
    assert!(
        !text.contains("PROMPT-TEXT") && !text.contains("COMPLETION-TEXT"),
        "privacy mode leaked content: {text}"
    );
    assert!(text.contains("\"total\":17"), "usage is kept: {text}");

    let st = wait_status(&s, &wrong_id, "paused", |st| st["state"] == "paused").await;
    let reason = st["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("SignatureDoesNotMatch"), "{st}");
    assert_eq!(st["queue"]["depth"], 1, "the trace is kept while paused");
    assert_eq!(s3.keys().len(), 1, "nothing written with the wrong secret");
}
