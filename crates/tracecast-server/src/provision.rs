//! Creating tenants, workspaces and keys: shared by first start, the admin CLI and the API.

use std::sync::Arc;

use serde_json::Map;
use tracecast_model::api_key::{KeyKind, is_key_hash, label_for};
use tracecast_model::{ApiKey, Tenant, Workspace, generate_key, hash_key, time};
use tracecast_store::{Store, StoreError};
use uuid::Uuid;

/// A new key record and the key itself (shown once, never stored).
pub fn new_key(
    kind: KeyKind,
    tenant: Uuid,
    workspace: Uuid,
    name: &str,
    expires_at: Option<String>,
    raw: Option<String>,
) -> (ApiKey, String) {
    let raw = raw.unwrap_or_else(generate_key);
    let key = ApiKey {
        hash: hash_key(&raw),
        tenant_id: tenant,
        workspace_id: workspace,
        kind,
        name: name.to_string(),
        label: label_for(&raw),
        disabled: false,
        expires_at,
        created_at: time::now_rfc3339(),
        updated_at: None,
    };
    (key, raw)
}

/// Creates a tenant with its default workspace (slug `default`).
pub async fn create_tenant(
    store: &Arc<dyn Store>,
    name: &str,
) -> Result<(Tenant, Workspace), StoreError> {
    let now = time::now_rfc3339();
    let tenant = Tenant {
        id: Uuid::now_v7(),
        name: name.to_string(),
        created_at: now.clone(),
    };
    let ws = Workspace {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        name: "Default".into(),
        slug: "default".into(),
        description: Some("Default workspace".into()),
        is_default: true,
        is_observability_broadcast_enabled: true,
        settings: Map::new(),
        created_at: now,
        updated_at: None,
    };
    store.create_tenant(&tenant, &ws).await?;
    Ok((tenant, ws))
}

/// Shortest accepted `bootstrap_management_key`: 32 characters (at least 160 bits even when
/// drawn from a small alphabet), as long as the hex part of a generated key's half.
pub const MIN_BOOTSTRAP_KEY_CHARS: usize = 32;

/// Checks the operator-chosen first management key. It is checked at every start where it is
/// set (not only the first), so a weak key still configured is reported rather than forgotten.
pub fn check_bootstrap_key(k: &str) -> anyhow::Result<()> {
    if k.chars().count() < MIN_BOOTSTRAP_KEY_CHARS
        || k.chars().any(char::is_whitespace)
        || is_key_hash(k)
    {
        anyhow::bail!(
            "bootstrap_management_key (TRACECAST_BOOTSTRAP_MANAGEMENT_KEY) must be at least {MIN_BOOTSTRAP_KEY_CHARS} characters without spaces (and not a key hash); generate one with `openssl rand -hex 32`"
        );
    }
    Ok(())
}

/// First start: on an empty store, creates the default tenant and workspace and its first
/// management key. Returns the key when one was created, so the caller can show it once.
/// `bootstrap_key` (from `TRACECAST_BOOTSTRAP_MANAGEMENT_KEY`) is used instead of a random key.
pub async fn bootstrap(
    store: &Arc<dyn Store>,
    bootstrap_key: Option<&str>,
) -> anyhow::Result<Option<String>> {
    if let Some(k) = bootstrap_key {
        check_bootstrap_key(k)?;
    }
    if !store.is_empty().await? {
        return Ok(None);
    }
    let (tenant, ws) = create_tenant(store, "default").await?;
    let (key, raw) = new_key(
        KeyKind::Management,
        tenant.id,
        ws.id,
        "bootstrap",
        None,
        bootstrap_key.map(str::to_string),
    );
    store.insert_key(&key).await?;
    Ok(Some(raw))
}
