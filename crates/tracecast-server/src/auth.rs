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
pub struct Caller(pub ApiKey);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
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
        let presented = hash_key(token);
        let key = state
            .store
            .key_by_hash(&presented)
            .await?
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
        let path = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map_or(parts.uri.path(), |u| u.0.path());
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
}

impl Caller {
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
