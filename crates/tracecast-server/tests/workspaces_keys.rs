//! Workspaces, keys, health and the OpenAPI document.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

#[tokio::test]
async fn workspace_lifecycle() {
    let s = TestServer::start().await;
    let list = s.get("/api/v1/workspaces").await;
    assert_eq!(list.body["total_count"], 1);
    let default = &list.body["data"][0];
    assert_eq!(default["slug"], "default");
    assert_eq!(default["is_observability_broadcast_enabled"], true);
    for field in [
        "id",
        "default_guardrail_id",
        "name",
        "slug",
        "description",
        "default_text_model",
        "default_image_model",
        "default_provider_sort",
        "is_observability_io_logging_enabled",
        "is_observability_broadcast_enabled",
        "is_data_discount_logging_enabled",
        "io_logging_sampling_rate",
        "io_logging_api_key_ids",
        "created_at",
        "updated_at",
        "created_by",
    ] {
        assert!(default.get(field).is_some(), "workspace lacks {field}");
    }

    let r = s.post("/api/v1/workspaces", json!({"name": "Production", "slug": "production", "description": "prod", "default_text_model": "openai/gpt-4o"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["data"]["default_text_model"], "openai/gpt-4o");
    assert_eq!(r.body["data"]["updated_at"], Value::Null);
    let id = r.body["data"]["id"].as_str().unwrap().to_string();
    assert_error(
        &s.post(
            "/api/v1/workspaces",
            json!({"name": "Dup", "slug": "production"}),
        )
        .await,
        409,
        "slug \"production\" is already used",
    );
    assert_error(
        &s.post(
            "/api/v1/workspaces",
            json!({"name": "Bad", "slug": "Bad Slug"}),
        )
        .await,
        400,
        "slug must be",
    );
    // U+0000 cannot be stored by PostgreSQL: refused alike on every backend, naming the field.
    assert_error(
        &s.post(
            "/api/v1/workspaces",
            json!({"name": "Bad\u{0}Name", "slug": "nul-name"}),
        )
        .await,
        400,
        "name must not contain NUL characters",
    );
    assert_error(
        &s.post("/api/v1/workspaces", json!({"slug": "x"})).await,
        400,
        "name is required",
    );
    assert_error(
        &s.post(
            "/api/v1/workspaces",
            json!({"name": "x", "slug": "y", "io_logging_sampling_rate": 5}),
        )
        .await,
        400,
        "io_logging_sampling_rate must be",
    );
    assert_error(
        &s.post(
            "/api/v1/workspaces",
            json!({"name": "x", "slug": "y", "colour": "red"}),
        )
        .await,
        400,
        "colour is not a valid workspace field",
    );

    let by_slug = s.get("/api/v1/workspaces/production").await;
    assert_eq!(by_slug.body["data"]["id"], id.as_str());
    let p = s
        .patch(
            &format!("/api/v1/workspaces/{id}"),
            json!({"is_observability_broadcast_enabled": false, "description": null}),
        )
        .await;
    assert_eq!(p.status, 200, "{}", p.text);
    assert_eq!(p.body["data"]["is_observability_broadcast_enabled"], false);
    assert_eq!(p.body["data"]["description"], Value::Null);
    assert!(p.body["data"]["updated_at"].is_string());

    // A workspace with an active key cannot be deleted; the default never.
    let (_, hash) = s.workspace_key(Some(&id)).await;
    assert_error(
        &s.delete(&format!("/api/v1/workspaces/{id}")).await,
        409,
        "Workspace has 1 active API key",
    );
    assert_eq!(s.delete(&format!("/api/v1/keys/{hash}")).await.status, 200);
    let d = s.post("/api/v1/observability/destinations", json!({"type": "webhook", "name": "w", "workspace_id": id, "config": {"url": "https://h.test"}})).await;
    assert_eq!(d.status, 201);
    assert_eq!(
        s.delete(&format!("/api/v1/workspaces/{id}")).await.body,
        json!({"deleted": true})
    );
    assert_error(
        &s.get(&format!("/api/v1/workspaces/{id}")).await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.get(&format!(
            "/api/v1/observability/destinations/{}",
            d.body["data"]["id"].as_str().unwrap()
        ))
        .await,
        404,
        "Resource not found",
    );
    assert_error(
        &s.delete("/api/v1/workspaces/default").await,
        403,
        "The default workspace cannot be deleted",
    );
}

#[tokio::test]
async fn key_lifecycle() {
    let s = TestServer::start().await;
    let r = s
        .post(
            "/api/v1/keys",
            json!({"name": "ingest", "expires_at": "2999-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["key"].as_str().unwrap().to_string();
    let hash = r.body["data"]["hash"].as_str().unwrap().to_string();
    assert_eq!(hash, tracecast_model::hash_key(&key));
    assert_eq!(r.body["data"]["expires_at"], "2999-01-01T00:00:00.000Z");
    assert!(
        r.body["data"].get("usage").is_none(),
        "no invented billing numbers"
    );
    assert!(
        !r.body["data"]["label"]
            .as_str()
            .unwrap()
            .contains(&key[12..60])
    );

    let list = s.get("/api/v1/keys").await;
    assert_eq!(list.body["total_count"], 1);
    assert!(!list.text.contains(&key), "a key is shown only once");
    assert_eq!(
        s.get(&format!("/api/v1/keys/{hash}")).await.body["data"]["name"],
        "ingest"
    );

    let p = s
        .patch(
            &format!("/api/v1/keys/{hash}"),
            json!({"name": "renamed", "disabled": true}),
        )
        .await;
    assert_eq!(p.body["data"]["name"], "renamed");
    assert_eq!(
        s.get("/api/v1/keys").await.body["total_count"],
        0,
        "disabled keys are hidden by default"
    );
    assert_eq!(
        s.get("/api/v1/keys?include_disabled=true").await.body["total_count"],
        1
    );

    assert_error(
        &s.post("/api/v1/keys", json!({"name": "x", "limit": 10}))
            .await,
        400,
        "limit is not supported",
    );
    assert_error(
        &s.post(
            "/api/v1/keys",
            json!({"name": "x", "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await,
        400,
        "expires_at must be in the future",
    );
    assert_error(
        &s.post(
            "/api/v1/keys",
            json!({"name": "x", "expires_at": "2999-01-01T00:00:00+02:00"}),
        )
        .await,
        400,
        "expires_at must be in UTC",
    );
    assert_error(
        &s.post("/api/v1/keys", json!({"name": "x", "workspace_id": "nope"}))
            .await,
        400,
        "workspace_id does not name a workspace of this account",
    );
    assert_error(&s.get("/api/v1/keys/abc").await, 404, "Resource not found");
    // Management keys are not in OpenRouter's workspace listing, but are addressable by hash
    // (and listed with kind=management), saying their kind.
    let mgmt_hash = tracecast_model::hash_key(&s.mgmt_key);
    let mk = s.get(&format!("/api/v1/keys/{mgmt_hash}")).await;
    assert_eq!(mk.status, 200, "{}", mk.text);
    assert_eq!(mk.body["data"]["kind"], "management");

    assert_eq!(
        s.delete(&format!("/api/v1/keys/{hash}")).await.body,
        json!({"deleted": true})
    );
    assert_error(
        &s.get(&format!("/api/v1/keys/{hash}")).await,
        404,
        "Resource not found",
    );

    let me = s.get("/api/v1/key").await;
    assert_eq!(me.body["data"]["is_management_key"], true);
}

#[tokio::test]
async fn health_and_openapi() {
    let s = TestServer::start().await;
    let h = s.send(reqwest::Method::GET, "/health", None, None).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.body["ready"], true);
    assert_eq!(h.body["checks"]["store"]["status"], "ok");

    let doc = s
        .send(reqwest::Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    assert_eq!(doc.status, 200);
    assert_eq!(doc.body["openapi"], "3.1.0");
    for p in [
        "/api/v1/observability/destinations",
        "/api/v1/observability/destinations/{id}",
        "/api/v1/workspaces",
        "/api/v1/workspaces/{id}",
        "/api/v1/keys",
        "/api/v1/keys/{hash}",
        "/api/v1/key",
        "/health",
    ] {
        assert!(doc.body["paths"].get(p).is_some(), "openapi lacks {p}");
    }
    assert!(
        doc.body["paths"]["/api/v1/observability/destinations"]["post"]["responses"]
            .get("409")
            .is_some()
    );
    // Every destination type, including the two OpenRouter documents but has not yet put in
    // its API enum.
    let types = doc.body["components"]["schemas"]["DestinationType"]["enum"]
        .as_array()
        .unwrap_or_else(|| {
            panic!(
                "DestinationType enum: {}",
                doc.body["components"]["schemas"]["DestinationType"]
            )
        });
    for t in tracecast_model::DestinationType::ALL {
        assert!(types.contains(&json!(t.as_str())), "openapi lacks type {t}");
    }
    assert!(types.contains(&json!("bigquery")) && types.contains(&json!("raindrop")));
    // The shared error responses (ItemErrors, RequestErrors) are listed with the envelope.
    let status =
        &doc.body["paths"]["/api/v1/observability/destinations/{id}/status"]["get"]["responses"];
    for code in ["200", "401", "403", "404"] {
        assert!(status.get(code).is_some(), "status lacks {code}: {status}");
    }
    assert!(status.get("400").is_none(), "{status}");
    let replay = &doc.body["paths"]["/api/v1/observability/destinations/{id}/dead-letters/replay"]
        ["post"]["responses"];
    assert_eq!(
        replay["400"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ErrorBody",
        "{replay}"
    );
    assert!(
        doc.body["components"]["schemas"]
            .get("DestinationOut")
            .is_some()
    );
    assert!(
        doc.body["components"]["securitySchemes"]
            .get("bearer")
            .is_some()
    );
}
