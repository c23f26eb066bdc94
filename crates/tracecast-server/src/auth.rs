//! Bearer-key authentication.
//!
//! A key is looked up by its SHA-256 hash (the only form ever stored); the stored hash is then
//! compared with the presented key's hash in constant time before the key is trusted.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use subtle::ConstantTimeEq;
use tracecast_model::{ApiKey, Workspace, hash_key};

use crate::error::{ApiError, ApiResult};
use crate::rate_limit::RateClass;
use crate::state::AppState;

/// The answer to a `workspace_id` that names no live workspace of the caller's tenant.
pub const UNKNOWN_WORKSPACE: &str = "workspace_id does not name a workspace of this account";

/// The authenticated caller.
#[derive(Clone)]
pub struct Caller(pub ApiKey);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        // Already authenticated (and counted by the rate limits) by [`refuse_before_body`].
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        Caller::authenticate(parts, state).await
    }
}

/// At most this much of a refused request's body is read before the answer.
const DRAIN_MAX: usize = 64 * 1024;
/// At most this long is spent reading it.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Authenticates a request that carries a body before any handler runs, and refuses it (401,
/// 429) only after reading its body (at most [`DRAIN_MAX`] bytes, within [`DRAIN_TIME`]).
/// hyper keeps a connection alive only when the request body was read to its end; a refusal
/// answered with the body unread closes the connection, and a client that has already sent its
/// next request on it (SDKs keep connections alive) fails with "server disconnected". A
/// request that passes carries its [`Caller`] to the handler. OTLP's `/v1/traces` answers in
/// its own format and authenticates in its handler.
pub async fn refuse_before_body(
    axum::extract::State(state): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
    use axum::response::IntoResponse;
    let has_body = req.headers().contains_key(TRANSFER_ENCODING)
        || req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > 0);
    if !has_body || !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let (mut parts, body) = req.into_parts();
    match Caller::authenticate(&mut parts, &state).await {
        Ok(caller) => {
            parts.extensions.insert(caller);
            next.run(axum::extract::Request::from_parts(parts, body))
                .await
        }
        Err(refused) => {
            drain(body, DRAIN_MAX).await;
            refused.into_response()
        }
    }
}

/// Reads and discards a refused request's body, at most `max` bytes and for at most
/// [`DRAIN_TIME`], so that hyper can keep the connection alive (see [`refuse_before_body`]).
/// A longer or slower body is left unread: the connection is then closed after the answer.
pub async fn drain(body: axum::body::Body, max: usize) {
    use futures_util::StreamExt;
    let mut data = body.into_data_stream();
    let mut read = 0usize;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while read <= max {
            match data.next().await {
                Some(Ok(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
    })
    .await;
}

/// How long a key read from the store is trusted without reading it again. A change made
/// through this node's API (disable, expire, delete) applies at once ([`KeyCache::forget`]); a
/// change made on another node of a cluster, or with the `tracecast keys` command, within this.
pub const KEY_CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(5);

/// Keys recently read from the store, by hash, so that a request is not one store read more
/// (for a gateway call, the store read was a third of its CPU). Only keys that exist are kept
/// (an unknown key is read every time, so a key created on another node works at once), at
/// most as many as exist; an entry is dropped once older than [`KEY_CACHE_TTL`]. Expiry and
/// `disabled` are still checked on every request, on the cached copy.
#[derive(Default)]
pub struct KeyCache {
    map: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, ApiKey)>>,
}

impl KeyCache {
    /// The cached key of this hash, if read within [`KEY_CACHE_TTL`].
    pub fn get(&self, hash: &str) -> Option<ApiKey> {
        let map = self.lock();
        map.get(hash)
            .filter(|(at, _)| at.elapsed() < KEY_CACHE_TTL)
            .map(|(_, k)| k.clone())
    }

    fn put(&self, key: &ApiKey) {
        let mut map = self.lock();
        // Stale entries go when the map grows: it stays bounded by the keys in use.
        if map.len() >= 1024 && map.len().is_power_of_two() {
            map.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
        }
        map.insert(key.hash.clone(), (std::time::Instant::now(), key.clone()));
    }

    /// Drops a key (after it changed or was deleted through the API).
    pub fn forget(&self, hash: &str) {
        self.lock().remove(hash);
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, (std::time::Instant, ApiKey)>>
    {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Caller {
    /// Checks the bearer key (and the rate limits of its class) of a request.
    async fn authenticate(parts: &mut Parts, state: &AppState) -> ApiResult<Caller> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("Missing Authentication header"))?;
        let value = header
            .to_str()
            .map_err(|_| ApiError::unauthorized("Invalid Authentication header"))?;
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::unauthorized("Authentication header must be 'Bearer <key>'")
            })?;
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(parts.uri.path(), |u| u.0.path())
            .to_string();
        Self::for_key_hash(state, &hash_key(token), &path).await
    }

    /// The caller holding the key with this hash, with the same checks (exists, enabled, not
    /// expired) and rate limits as a bearer key on `path`. The dashboard authenticates its
    /// sessions' keys through here.
    pub async fn for_key_hash(state: &AppState, presented: &str, path: &str) -> ApiResult<Caller> {
        let key = match state.keys.get(presented) {
            Some(k) => Some(k),
            None => {
                let found = state.store.key_by_hash(presented).await?;
                if let Some(k) = &found {
                    state.keys.put(k);
                }
                found
            }
        }
        .filter(|k| bool::from(k.hash.as_bytes().ct_eq(presented.as_bytes())))
        .ok_or_else(|| ApiError::unauthorized("Invalid API key"))?;
        if key.disabled {
            return Err(ApiError::unauthorized("API key is disabled"));
        }
        if let Some(exp) = &key.expires_at
            && exp.as_str() <= tracecast_model::time::now_rfc3339().as_str()
        {
            return Err(ApiError::unauthorized("API key has expired"));
        }
        let class = RateClass::of_path(path);
        state
            .rate_limiter
            .check(class, &key.hash, key.tenant_id)
            .map_err(|l| {
                let what = match class {
                    RateClass::Ingest => "ingest",
                    RateClass::Api => "API",
                };
                let mut e = ApiError::new(
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many {what} requests: the {} rate limit is reached; retry in {} s",
                        l.scope, l.retry_after_secs
                    ),
                );
                e.retry_after = Some(l.retry_after_secs);
                e
            })?;
        Ok(Caller(key))
    }

    /// Fails with 403 unless the caller holds a management key.
    pub fn management(&self) -> ApiResult<&ApiKey> {
        if self.0.is_management() {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(
                "Only management keys can perform this operation",
            ))
        }
    }

    /// The workspace a request addresses: `requested` (id or slug) when given, else the key's
    /// default workspace. An unknown `workspace_id` and another tenant's both answer 400 with
    /// the same message ([`UNKNOWN_WORKSPACE`]), as OpenRouter's spec documents 400 for an
    /// invalid `workspace_id`; nothing tells a foreign workspace from a nonexistent one.
    pub async fn workspace(
        &self,
        state: &AppState,
        requested: Option<&str>,
    ) -> ApiResult<Workspace> {
        match requested {
            Some(id) => state
                .store
                .find_workspace(self.0.tenant_id, id)
                .await?
                .ok_or_else(|| ApiError::bad_request(UNKNOWN_WORKSPACE)),
            None => state
                .store
                .workspace_by_id(self.0.workspace_id)
                .await?
                .ok_or_else(|| {
                    ApiError::new(axum::http::StatusCode::NOT_FOUND, "Workspace not found")
                }),
        }
    }
}
