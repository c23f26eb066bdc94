//! The destinations API over HTTP against the real server.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

const DEST: &str = "/api/v1/observability/destinations";

fn langfuse() -> Value {
    json!({"type": "langfuse", "name": "Prod", "config": {"publicKey": "pk-lf-0123456789abcd", "secretKey": "sk-lf-secret-0123wxyz"}})
}

#[tokio::test]
async fn create_list_get_update_delete() {
    let s = TestServer::start().await;
    let r = s.post(DEST, langfuse()).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let d = &r.body["data"];
    // Every field, in OpenRouter's order: read the order from the raw text, since parsed
    // JSON maps are sorted.
    let data_text = &r.text[r.text.find("\"data\":").unwrap()..];
    let mut keys: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_by_key(|k| data_text.find(&format!("\"{k}\":")).unwrap());
    assert_eq!(
        keys,
        [
            "id",
            "workspace_id",
            "name",
            "enabled",
            "privacy_mode",
            "broadcast_generation_cost",
            "broadcast_generation_identity",
            "broadcast_generation_request_context",
            "broadcast_generation_cost_allocation",
            "sampling_rate",
            "api_key_hashes",
            "filter_rules",
            "regions",
            "created_at",
            "updated_at",
            "type",
            "config"
        ]
    );
    assert_eq!(
        d["config"],
        json!({"publicKey": "pk-l...abcd", "secretKey": "sk-l...wxyz", "baseUrl": "https://us.cloud.langfuse.com"})
    );
    assert_eq!(d["api_key_hashes"], Value::Null);
    assert_eq!(d["filter_rules"], Value::Null);
    assert_eq!(d["regions"], json!(["global"]));
    assert_eq!(d["sampling_rate"], json!(1));
    assert_eq!(d["enabled"], true);
    assert!(!r.text.contains("0123456789abcd") && !r.text.contains("secret-0123"));
    let id = d["id"].as_str().unwrap().to_string();

    let list = s.get(DEST).await;
    assert_eq!(list.status, 200);
    assert_eq!(list.body["total_count"], 1);
    assert_eq!(list.body["data"][0]["id"], id.as_str());

    let got = s.get(&format!("{DEST}/{id}")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["data"], *d);

    // PATCH: send back the masked public key, a new secret, a new name; baseUrl untouched.
    let p = s
        .patch(&format!("{DEST}/{id}"), json!({"name": "Renamed", "sampling_rate": 0.5, "config": {"publicKey": "pk-l...abcd", "secretKey": "sk-lf-rotated-9999"}}))
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["data"]["name"], "Renamed");
    assert_eq!(p.body["data"]["sampling_rate"], 0.5);
    assert_eq!(p.body["data"]["config"]["publicKey"], "pk-l...abcd");
    assert_eq!(p.body["data"]["config"]["secretKey"], "sk-l...9999");
    assert_eq!(
        p.body["data"]["config"]["baseUrl"],
        "https://us.cloud.langfuse.com"
    );
    assert_ne!(p.body["data"]["updated_at"], d["updated_at"]);
    // The real values were kept/replaced in the store.
    let stored = s.stored_destination(&id).await;
    assert_eq!(stored.config["publicKey"], "pk-lf-0123456789abcd");
    assert_eq!(stored.config["secretKey"], "sk-lf-rotated-9999");

    let del = s.delete(&format!("{DEST}/{id}")).await;
    assert_eq!(del.status, 200);
    assert_eq!(del.body, json!({"deleted": true}));
    assert_error(
        &s.get(&format!("{DEST}/{id}")).await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.delete(&format!("{DEST}/{id}")).await,
        404,
        "Resource not found",
    );
    assert_eq!(s.get(DEST).await.body["total_count"], 0);
}

#[tokio::test]
async fn tri_state_patch_of_hashes_and_filter_rules() {
    let s = TestServer::start().await;
    let (_, hash) = s.workspace_key(None).await;
    let mut body = langfuse();
    body["api_key_hashes"] = json!([hash.to_uppercase()]);
    body["filter_rules"] = json!({"groups": [{"logic": "or", "rules": [{"field": "model", "operator": "starts_with", "value": "openai/"}]}]});
    let r = s.post(DEST, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["api_key_hashes"], json!([hash]));
    assert_eq!(
        r.body["data"]["filter_rules"],
        json!({"enabled": true, "groups": [{"logic": "or", "rules": [{"field": "model", "operator": "starts_with", "value": "openai/"}]}]})
    );
    let path = format!("{DEST}/{}", r.body["data"]["id"].as_str().unwrap());

    let kept = s.patch(&path, json!({"enabled": false})).await;
    assert_eq!(kept.body["data"]["api_key_hashes"], json!([hash]));
    assert_eq!(
        kept.body["data"]["filter_rules"],
        r.body["data"]["filter_rules"]
    );
    assert_eq!(kept.body["data"]["enabled"], false);

    let cleared = s
        .patch(&path, json!({"api_key_hashes": null, "filter_rules": null}))
        .await;
    assert_eq!(cleared.status, 200, "{}", cleared.text);
    assert_eq!(cleared.body["data"]["api_key_hashes"], Value::Null);
    assert_eq!(cleared.body["data"]["filter_rules"], Value::Null);

    assert_error(
        &s.patch(&path, json!({"api_key_hashes": []})).await,
        400,
        "api_key_hashes must contain at least one hash",
    );
    assert_error(
        &s.patch(&path, json!({"regions": null})).await,
        400,
        "regions cannot be cleared",
    );
    let r = s.patch(&path, json!({"regions": ["eu", "us"]})).await;
    assert_eq!(r.body["data"]["regions"], json!(["europe", "us"]));
    assert_error(
        &s.patch(&path, json!({"type": "webhook"})).await,
        400,
        "type cannot be changed",
    );
}

#[tokio::test]
async fn validation_errors_name_the_field() {
    let s = TestServer::start().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"type": "langfuse", "name": "x", "config": {"publicKey": "pk"}}),
            "config.secretKey is required for type langfuse",
        ),
        (
            json!({"type": "langfuse", "name": "x", "config": {"publicKey": "", "secretKey": "s"}}),
            "config.publicKey is required for type langfuse",
        ),
        (
            json!({"type": "langfuse", "name": "x", "config": {"publicKey": "p", "secretKey": "s", "region": "eu"}}),
            "config.region is not a valid field for type langfuse",
        ),
        (
            json!({"type": "nosuch", "name": "x", "config": {}}),
            "type must be one of arize, bigquery, braintrust",
        ),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "not a url"}}),
            "config.url must be an absolute http(s) URL",
        ),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "https://h.test", "method": "GET"}}),
            "config.method must be one of POST, PUT",
        ),
        (
            json!({"type": "newrelic", "name": "x", "config": {"licenseKey": "k", "region": "ap"}}),
            "config.region must be one of us, eu",
        ),
        (
            json!({"type": "s3", "name": "x", "config": {"bucketName": "b", "authMode": "magic"}}),
            "config.authMode must be one of access_keys, iam_role",
        ),
        (
            json!({"type": "s3", "name": "x", "config": {"bucketName": "b", "accessKeyId": "a", "secretAccessKey": "s", "provider": "azure"}}),
            "config.provider must be one of aws, cloudflare_r2, gcs, other",
        ),
        (
            json!({"type": "sentry", "name": "x", "config": {"otlpEndpoint": "https://o.test/api/1/otlp", "dsn": "https://nope"}}),
            "config.dsn must be a Sentry DSN",
        ),
        (
            json!({"type": "snowflake", "name": "x", "config": {"account": "has space", "token": "t"}}),
            "config.account must be a Snowflake account identifier",
        ),
        (
            json!({"type": "webhook", "name": "x", "config": {"url": "https://h.test", "headers": {"X": 1}}}),
            "config.headers.X must be a string",
        ),
        (
            json!({"type": "webhook", "name": "x", "config": "https://h.test"}),
            "config must be an object",
        ),
        (
            json!({"type": "webhook", "name": "", "config": {"url": "https://h.test"}}),
            "name must not be empty",
        ),
        (
            json!({"type": "webhook", "name": "x", "sampling_rate": 0, "config": {"url": "https://h.test"}}),
            "sampling_rate must be between 0.0001 and 1",
        ),
        (
            json!({"type": "webhook", "name": "x", "sampling_rate": 1.5, "config": {"url": "https://h.test"}}),
            "sampling_rate must be between 0.0001 and 1",
        ),
        (
            json!({"type": "webhook", "name": "x", "api_key_hashes": [], "config": {"url": "https://h.test"}}),
            "api_key_hashes must contain at least one hash",
        ),
        (
            json!({"type": "webhook", "name": "x", "api_key_hashes": ["zz"], "config": {"url": "https://h.test"}}),
            "api_key_hashes[0] must be the 64-character hex",
        ),
        (
            json!({"type": "webhook", "name": "x", "api_key_hashes": ["0".repeat(64)], "config": {"url": "https://h.test"}}),
            "api_key_hashes[0] is not the hash of an API key in workspace",
        ),
        (
            json!({"type": "webhook", "name": "x", "regions": [], "config": {"url": "https://h.test"}}),
            "regions must contain at least one region",
        ),
        (
            json!({"type": "webhook", "name": "x", "regions": ["mars"], "config": {"url": "https://h.test"}}),
            "regions[0] must be one of global, europe, us",
        ),
        (
            json!({"type": "webhook", "name": "x", "filter_rules": {"groups": [{"rules": [{"field": "colour", "operator": "equals", "value": "x"}]}]}, "config": {"url": "https://h.test"}}),
            "filter_rules.groups[0].rules[0].field must be one of",
        ),
        (
            json!({"type": "webhook", "name": "x", "filter_rules": {"groups": [{"rules": [{"field": "model", "operator": "like", "value": "x"}]}]}, "config": {"url": "https://h.test"}}),
            "filter_rules.groups[0].rules[0].operator must be one of",
        ),
        (
            json!({"type": "webhook", "name": "x", "filter_rules": {"groups": [{"rules": [{"field": "model", "operator": "regex", "value": "(unclosed"}]}]}, "config": {"url": "https://h.test"}}),
            "filter_rules.groups[0].rules[0].value is not a valid regex",
        ),
        (
            json!({"type": "webhook", "name": "x", "filter_rules": {"groups": [{"rules": [{"field": "total_cost", "operator": "gt", "value": "ten"}]}]}, "config": {"url": "https://h.test"}}),
            "filter_rules.groups[0].rules[0].value must be a number for operator gt",
        ),
        (
            json!({"type": "webhook", "name": "x", "filter_rules": {"groups": [{"rules": [{"field": "user_id", "operator": "exists", "value": "x"}]}]}, "config": {"url": "https://h.test"}}),
            "filter_rules.groups[0].rules[0].value must be omitted for operator exists",
        ),
        (
            json!({"type": "webhook", "name": "x", "enabled": "yes", "config": {"url": "https://h.test"}}),
            "Invalid value for enabled",
        ),
        (
            json!({"type": "webhook", "name": "x", "sampling_rate": "all", "config": {"url": "https://h.test"}}),
            "Invalid value for sampling_rate",
        ),
        (
            json!({"type": "webhook", "config": {"url": "https://h.test"}}),
            "Invalid request body: missing field `name`",
        ),
        (
            json!({"type": "webhook", "name": "x", "colour": "red", "config": {"url": "https://h.test"}}),
            "Unknown field colour (expected one of `type`",
        ),
    ];
    for (body, msg) in cases {
        let r = s.post(DEST, body.clone()).await;
        assert_error(&r, 400, msg);
    }
    assert_eq!(
        s.get(DEST).await.body["total_count"],
        0,
        "nothing was created"
    );
}

#[tokio::test]
async fn sixth_destination_of_a_type_conflicts() {
    let s = TestServer::start().await;
    for i in 0..5 {
        let r = s.post(DEST, json!({"type": "webhook", "name": format!("w{i}"), "config": {"url": "https://h.test"}})).await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let r = s
        .post(
            DEST,
            json!({"type": "webhook", "name": "w6", "config": {"url": "https://h.test"}}),
        )
        .await;
    assert_error(
        &r,
        409,
        "A workspace may hold at most 5 destinations of type webhook",
    );
    // Other types and other workspaces are unaffected.
    assert_eq!(s.post(DEST, json!({"type": "otel-collector", "name": "o", "config": {"endpoint": "https://h.test/v1/traces"}})).await.status, 201);
    let ws = s
        .post(
            "/api/v1/workspaces",
            json!({"name": "Staging", "slug": "staging"}),
        )
        .await;
    assert_eq!(ws.status, 201, "{}", ws.text);
    let r = s.post(DEST, json!({"type": "webhook", "name": "w", "workspace_id": "staging", "config": {"url": "https://h.test"}})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["workspace_id"], ws.body["data"]["id"]);
    // Pagination over the default workspace's six destinations.
    let p = s.get(&format!("{DEST}?offset=4&limit=4")).await;
    assert_eq!(p.body["total_count"], 6);
    assert_eq!(p.body["data"].as_array().unwrap().len(), 2);
    assert_error(
        &s.get(&format!("{DEST}?limit=0")).await,
        400,
        "limit must be an integer between 1 and 100",
    );
    assert_error(
        &s.get(&format!("{DEST}?limit=101")).await,
        400,
        "limit must be an integer between 1 and 100",
    );
    assert_error(
        &s.get(&format!("{DEST}?offset=-1")).await,
        400,
        "offset must be an integer",
    );
    let staging = s.get(&format!("{DEST}?workspace_id=staging")).await;
    assert_eq!(staging.body["total_count"], 1);
}

#[tokio::test]
async fn every_type_masks_its_secrets_and_headers() {
    let s = TestServer::start().await;
    let secret = "SECRETvalue-0123456789";
    let cases = [
        (
            "arize",
            json!({"apiKey": secret, "spaceKey": secret, "modelId": "m"}),
            vec!["apiKey", "spaceKey"],
        ),
        (
            "braintrust",
            json!({"apiKey": secret, "projectId": "p"}),
            vec!["apiKey"],
        ),
        (
            "clickhouse",
            json!({"host": "https://ch.test:8443", "database": "db", "username": "u", "password": secret}),
            vec!["password"],
        ),
        (
            "datadog",
            json!({"apiKey": secret, "mlApp": "app"}),
            vec!["apiKey"],
        ),
        (
            "grafana",
            json!({"apiKey": secret, "instanceId": "123456"}),
            vec!["apiKey"],
        ),
        ("langsmith", json!({"apiKey": secret}), vec!["apiKey"]),
        (
            "newrelic",
            json!({"licenseKey": secret}),
            vec!["licenseKey"],
        ),
        (
            "opik",
            json!({"apiKey": secret, "workspace": "w", "projectName": "p"}),
            vec!["apiKey"],
        ),
        ("posthog", json!({"apiKey": secret}), vec!["apiKey"]),
        ("ramp", json!({"apiKey": secret}), vec!["apiKey"]),
        (
            "s3",
            json!({"bucketName": "b", "accessKeyId": secret, "secretAccessKey": secret, "sessionToken": secret}),
            vec!["accessKeyId", "secretAccessKey", "sessionToken"],
        ),
        (
            "sentry",
            json!({"otlpEndpoint": "https://o1.ingest.sentry.io/api/2/integration/otlp/v1/traces", "dsn": "https://SECRETvalue0123@o1.ingest.sentry.io/2"}),
            vec!["dsn"],
        ),
        (
            "snowflake",
            json!({"account": "xy12345.us-east-1", "token": secret}),
            vec!["token"],
        ),
        (
            "weave",
            json!({"apiKey": secret, "entity": "e", "project": "p"}),
            vec!["apiKey"],
        ),
        ("webhook", json!({"url": "https://h.test/hook"}), vec![]),
        (
            "otel-collector",
            json!({"endpoint": "https://h.test/v1/traces"}),
            vec![],
        ),
        (
            "langfuse",
            json!({"publicKey": secret, "secretKey": secret}),
            vec!["publicKey", "secretKey"],
        ),
        (
            "bigquery",
            json!({"projectId": "my-gcp-project", "serviceAccountKey": json!({
                "type": "service_account",
                "client_email": "b@my-gcp-project.iam.gserviceaccount.com",
                "private_key": format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
                "token_uri": "https://oauth2.googleapis.com/token"
            }).to_string()}),
            vec!["serviceAccountKey"],
        ),
        ("raindrop", json!({"writeKey": secret}), vec!["writeKey"]),
    ];
    for (ty, mut config, secrets) in cases {
        config["headers"] = json!({"X-Api-Token": "SECRETvalue-header-1234"});
        let r = s
            .post(DEST, json!({"type": ty, "name": ty, "config": config}))
            .await;
        assert_eq!(r.status, 201, "{ty}: {}", r.text);
        assert!(
            !r.text.contains("SECRETvalue"),
            "{ty} leaked a secret: {}",
            r.text
        );
        let cfg = &r.body["data"]["config"];
        assert_eq!(cfg["headers"]["X-Api-Token"], "SECR...1234", "{ty}");
        for f in secrets {
            assert!(
                cfg[f].as_str().unwrap().contains("..."),
                "{ty}.{f} = {}",
                cfg[f]
            );
        }
    }
    let list = s.get(&format!("{DEST}?limit=100")).await;
    assert_eq!(list.body["total_count"], 19);
    assert!(!list.text.contains("SECRETvalue"));
}
