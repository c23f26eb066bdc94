//! Secrets and keys hardening of the management API: credentials that follow a URL change,
//! management-key lifecycle, key labels, file permissions, the server-issued S3 ExternalId,
//! the metrics token, and OpenRouter's 400 for a bad `workspace_id`.

mod common;

use common::{Body, TestServer, assert_error};
use reqwest::Method;
use serde_json::{Value, json};

const DEST: &str = "/api/v1/observability/destinations";

async fn create(s: &TestServer, body: Value) -> Value {
    let r = s.post(DEST, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["data"].clone()
}

#[tokio::test]
async fn moving_a_destination_needs_its_credentials_again() {
    let s = TestServer::start().await;
    let d = create(
        &s,
        json!({"type": "langfuse", "name": "lf", "config": {
            "publicKey": "pk-lf-0123456789abcdef", "secretKey": "sk-lf-0123456789abcdef",
            "baseUrl": "https://cloud.langfuse.com", "headers": {"X-Tenant": "tenant-secret-123"}}}),
    )
    .await;
    let path = format!("{DEST}/{}", d["id"].as_str().unwrap());
    let shown = d["config"].clone();

    // Only the URL: the stored keys would be sent to the new host.
    assert_error(
        &s.patch(
            &path,
            json!({"config": {"baseUrl": "https://collector.attacker.example"}}),
        )
        .await,
        400,
        "config.baseUrl changes where this destination's credentials are sent: send config.publicKey, config.secretKey, config.headers.X-Tenant again",
    );
    // Masked values sent back are not the credentials.
    assert_error(
        &s.patch(
            &path,
            json!({"config": {"baseUrl": "https://collector.attacker.example",
                "publicKey": shown["publicKey"], "secretKey": shown["secretKey"], "headers": shown["headers"]}}),
        )
        .await,
        400,
        "config.baseUrl changes where",
    );
    // Nothing was changed by the refused requests.
    let now = s.get(&path).await;
    assert_eq!(
        now.body["data"]["config"]["baseUrl"],
        "https://cloud.langfuse.com"
    );
    let stored = s
        .store
        .get_destination(
            tenant_of(&s).await,
            d["id"].as_str().unwrap().parse().unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.config["secretKey"], "sk-lf-0123456789abcdef");

    // Everything sent again: accepted, and the new values are stored.
    let r = s
        .patch(
            &path,
            json!({"config": {"baseUrl": "https://eu.cloud.langfuse.com",
                "publicKey": "pk-lf-new-0000000000", "secretKey": "sk-lf-new-1111111111",
                "headers": {"X-Tenant": "tenant-secret-456"}}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    // A change that does not move the credentials keeps masked secrets as before.
    let shown = r.body["data"]["config"].clone();
    let r = s
        .patch(
            &path,
            json!({"name": "renamed", "config": {"publicKey": shown["publicKey"], "headers": shown["headers"]}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    // A region (no URL at all) is a credential target too.
    let nr = create(
        &s,
        json!({"type": "newrelic", "name": "nr", "config": {"licenseKey": "nr-license-0123456789"}}),
    )
    .await;
    assert_error(
        &s.patch(
            &format!("{DEST}/{}", nr["id"].as_str().unwrap()),
            json!({"config": {"region": "eu"}}),
        )
        .await,
        400,
        "config.region changes where this destination's credentials are sent: send config.licenseKey again",
    );
}

async fn tenant_of(s: &TestServer) -> uuid::Uuid {
    s.store
        .key_by_hash(&tracecast_model::hash_key(&s.mgmt_key))
        .await
        .unwrap()
        .unwrap()
        .tenant_id
}

#[tokio::test]
async fn management_keys_can_be_listed_disabled_expired_and_deleted_but_never_the_last() {
    let s = TestServer::start().await;
    let boot_hash = tracecast_model::hash_key(&s.mgmt_key);
    let boot_path = format!("/api/v1/keys/{boot_hash}");

    let list = s.get("/api/v1/keys?kind=management").await;
    assert_eq!(list.status, 200, "{}", list.text);
    assert_eq!(list.body["total_count"], 1);
    let boot = &list.body["data"][0];
    assert_eq!(boot["hash"], boot_hash);
    assert_eq!(boot["kind"], "management");
    assert_eq!(boot["name"], "bootstrap");
    assert!(!list.text.contains(&s.mgmt_key));
    // The workspace listing (OpenRouter's) still holds workspace keys only.
    assert_eq!(s.get("/api/v1/keys").await.body["total_count"], 0);
    assert_error(
        &s.get("/api/v1/keys?kind=admin").await,
        400,
        "kind must be workspace or management",
    );

    // The only active management key: neither disabled, nor expired, nor deleted.
    let last = "this is the account's last active management key";
    assert_error(
        &s.patch(&boot_path, json!({"disabled": true})).await,
        409,
        last,
    );
    assert_error(
        &s.patch(&boot_path, json!({"expires_at": "2999-01-01T00:00:00Z"}))
            .await,
        409,
        last,
    );
    assert_error(&s.delete(&boot_path).await, 409, last);
    assert_eq!(s.get("/api/v1/key").await.status, 200);

    // A second management key (created through the API) makes the first removable.
    let r = s
        .post("/api/v1/keys", json!({"name": "ops", "kind": "management"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["kind"], "management");
    let ops = r.body["key"].as_str().unwrap().to_string();
    let ops_path = format!("/api/v1/keys/{}", r.body["data"]["hash"].as_str().unwrap());
    assert_error(
        &s.post(
            "/api/v1/keys",
            json!({"name": "x", "kind": "management", "workspace_id": "default"}),
        )
        .await,
        400,
        "workspace_id does not apply to a management key",
    );

    let r = s
        .patch(&boot_path, json!({"expires_at": "2999-01-01T00:00:00Z"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["expires_at"], "2999-01-01T00:00:00.000Z");
    let r = s.patch(&boot_path, json!({"disabled": true})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_error(
        &s.send(Method::GET, "/api/v1/key", Some(&s.mgmt_key), None)
            .await,
        401,
        "API key is disabled",
    );
    let as_ops = |m: Method, p: &str, b: Option<Value>| {
        let ops = ops.clone();
        let p = p.to_string();
        let s = &s;
        async move { s.send(m, &p, Some(&ops), b.map(Body::Json)).await }
    };
    let list = as_ops(Method::GET, "/api/v1/keys?kind=management", None).await;
    assert_eq!(
        list.body["total_count"], 1,
        "disabled keys are hidden by default"
    );
    let list = as_ops(
        Method::GET,
        "/api/v1/keys?kind=management&include_disabled=true",
        None,
    )
    .await;
    assert_eq!(list.body["total_count"], 2, "{}", list.text);
    // Now ops is the last active one.
    assert_error(&as_ops(Method::DELETE, &ops_path, None).await, 409, last);
    assert_error(
        &as_ops(Method::PATCH, &ops_path, Some(json!({"disabled": true}))).await,
        409,
        last,
    );
    // The disabled bootstrap key can be deleted.
    assert_eq!(
        as_ops(Method::DELETE, &boot_path, None).await.body,
        json!({"deleted": true})
    );
    assert_error(
        &s.send(Method::GET, "/api/v1/key", Some(&s.mgmt_key), None)
            .await,
        401,
        "Invalid API key",
    );

    // Another tenant's management key is not addressable.
    let other = s.other_tenant().await;
    assert_error(
        &s.send(Method::GET, &ops_path, Some(&other), None).await,
        404,
        "Resource not found",
    );
}

#[tokio::test]
async fn key_labels_show_only_a_short_suffix() {
    let s = TestServer::start().await;
    let r = s.post("/api/v1/keys", json!({"name": "app"})).await;
    let key = r.body["key"].as_str().unwrap();
    assert_eq!(
        r.body["data"]["label"],
        format!("sk-tc-v1-...{}", &key[key.len() - 4..])
    );
    let me = s.get("/api/v1/key").await;
    let boot = &s.mgmt_key;
    assert_eq!(
        me.body["data"]["label"],
        format!("sk-tc-v1-...{}", &boot[boot.len() - 4..])
    );
}

#[tokio::test]
async fn a_short_bootstrap_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let settings = tracecast_server::settings::Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        // 31 characters.
        bootstrap_management_key: Some("sk-tc-v1-0123456789abcdef012345".into()),
        ..Default::default()
    };
    let err = match tracecast_server::app::start(&settings, std::future::pending()).await {
        Ok(_) => panic!("a 31-character bootstrap key was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("bootstrap_management_key (TRACECAST_BOOTSTRAP_MANAGEMENT_KEY) must be at least 32 characters"),
        "{err}"
    );
    assert!(!err.contains("0123456789abcdef012345"), "{err}");
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_every_database_file_are_owner_only() {
    let s = TestServer::start_with(|st| st.data_dir = st.data_dir.join("data")).await;
    // Writes to both databases, so that their WAL files exist.
    create(
        &s,
        json!({"type": "webhook", "name": "w", "config": {"url": "https://h.example/x"}}),
    )
    .await;
    let (ws_key, _) = s.workspace_key(None).await;
    common::e2e::ingest(&s, &ws_key, &[common::e2e::record("gen-perm-1")]).await;

    let dir = s.data_dir().join("data");
    assert_eq!(mode(&dir), 0o700);
    let mut seen = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.contains(".db") || name == "encryption.key" {
            assert_eq!(mode(&p), 0o600, "{name}");
            seen.push(name);
        }
    }
    seen.sort();
    let mut expected = vec!["queue.db", "queue.db-wal"];
    if common::test_database_url().is_none() {
        expected.extend(["tracecast.db", "tracecast.db-wal"]);
    }
    for must in expected {
        assert!(
            seen.iter().any(|n| n == must),
            "{must} not found in {seen:?}"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn loose_database_files_are_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A first run, then its files loosened (as by a careless copy or an older version).
    {
        let _s = TestServer::start_with(|st| st.data_dir = data.clone()).await;
    }
    let mut files = vec!["queue.db", "encryption.key"];
    if common::test_database_url().is_none() {
        files.push("tracecast.db");
    }
    for name in &files {
        std::fs::set_permissions(data.join(name), std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let _s = TestServer::start_with(|st| st.data_dir = data.clone()).await;
    for name in &files {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
}

#[tokio::test]
async fn the_s3_external_id_is_issued_by_the_server() {
    let s = TestServer::start().await;
    let cfg = |ext: Option<&str>| {
        let mut c = json!({"bucketName": "traces", "authMode": "iam_role",
            "roleArn": "arn:aws:iam::123456789012:role/tracecast", "region": "us-east-1"});
        if let Some(e) = ext {
            c["externalId"] = e.into();
        }
        c
    };
    // A tenant-chosen ExternalId (another tenant's, say) is refused.
    assert_error(
        &s.post(
            DEST,
            json!({"type": "s3", "name": "s3", "config": cfg(Some("their-ext-id"))}),
        )
        .await,
        400,
        "config.externalId is issued by the server",
    );
    let d = create(&s, json!({"type": "s3", "name": "s3", "config": cfg(None)})).await;
    let issued = d["config"]["externalId"].as_str().unwrap().to_string();
    assert!(issued.starts_with("tc-") && issued.len() > 20, "{issued}");
    // Stable per workspace: a second destination gets the same one; sending it back is fine.
    let d2 = create(
        &s,
        json!({"type": "s3", "name": "s3b", "config": cfg(Some(&issued))}),
    )
    .await;
    assert_eq!(d2["config"]["externalId"], issued);
    // Another workspace has its own.
    let ws = s
        .post(
            "/api/v1/workspaces",
            json!({"name": "Other", "slug": "other"}),
        )
        .await;
    let d3 = create(
        &s,
        json!({"type": "s3", "name": "s3c", "workspace_id": "other", "config": cfg(None)}),
    )
    .await;
    assert_eq!(d3["workspace_id"], ws.body["data"]["id"]);
    assert_ne!(d3["config"]["externalId"], issued);

    let path = format!("{DEST}/{}", d["id"].as_str().unwrap());
    assert_error(
        &s.patch(&path, json!({"config": {"externalId": "their-ext-id"}}))
            .await,
        400,
        "config.externalId is issued by the server",
    );
    let r = s
        .patch(
            &path,
            json!({"config": {"externalId": null, "prefix": "p"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"]["config"]["externalId"], issued);
    assert_eq!(
        s.get(&path).await.body["data"]["config"]["externalId"],
        issued
    );

    // The config the delivery engine builds exporters from carries the issued value.
    let live = s.store.live_destinations().await.unwrap();
    let (engine_view, _) = live
        .iter()
        .find(|(x, _)| x.id.to_string() == d["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(engine_view.config["externalId"], issued.as_str());
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let open = TestServer::start().await;
    assert_eq!(
        open.send(Method::GET, "/metrics", None, None).await.status,
        200
    );

    let token = "metrics-token-0123456789abcdef0123";
    let s = TestServer::start_with(|st| st.metrics_token = Some(token.into())).await;
    assert_error(
        &s.send(Method::GET, "/metrics", None, None).await,
        401,
        "/metrics requires the metrics token",
    );
    assert_error(
        &s.send(
            Method::GET,
            "/metrics",
            Some("metrics-token-0123456789abcdef0124"),
            None,
        )
        .await,
        401,
        "/metrics requires the metrics token",
    );
    // A management key is not the metrics token.
    assert_eq!(
        s.send(Method::GET, "/metrics", Some(&s.mgmt_key.clone()), None)
            .await
            .status,
        401
    );
    let r = s.send(Method::GET, "/metrics", Some(token), None).await;
    assert_eq!(r.status, 200, "{}", r.text);

    let dir = tempfile::tempdir().unwrap();
    let settings = tracecast_server::settings::Settings {
        listen: "127.0.0.1:0".into(),
        data_dir: dir.path().to_path_buf(),
        metrics_token: Some("short".into()),
        ..Default::default()
    };
    let err = match tracecast_server::app::start(&settings, std::future::pending()).await {
        Ok(_) => panic!("a short metrics token was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("metrics_token (TRACECAST_METRICS_TOKEN) must be"),
        "{err}"
    );
}

#[tokio::test]
async fn an_invalid_or_null_workspace_id_is_a_bad_request() {
    let s = TestServer::start().await;
    let other = s.other_tenant().await;
    let foreign = s
        .send(Method::GET, "/api/v1/workspaces", Some(&other), None)
        .await
        .body["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let msg = "workspace_id does not name a workspace of this account";
    for ws in [
        foreign.as_str(),
        "00000000-0000-0000-0000-000000000000",
        "no-such-slug",
    ] {
        assert_error(&s.get(&format!("{DEST}?workspace_id={ws}")).await, 400, msg);
        assert_error(
            &s.post(
                DEST,
                json!({"type": "webhook", "name": "w", "workspace_id": ws,
                "config": {"url": "https://h.example/x"}}),
            )
            .await,
            400,
            msg,
        );
    }
    assert_error(
        &s.post(
            DEST,
            json!({"type": "webhook", "name": "w", "workspace_id": null,
            "config": {"url": "https://h.example/x"}}),
        )
        .await,
        400,
        "workspace_id must be a string",
    );
}
