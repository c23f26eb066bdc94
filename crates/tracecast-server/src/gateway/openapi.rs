//! The gateway's part of the served OpenAPI document (`/api/v1/openapi.json`): the OpenAI-
//! compatible calls and `/api/v1/gateway/upstreams`. The path attributes sit on the handlers
//! ([`super::proxy`], [`super::api`]); the shapes only described here are below.
//!
//! A call's body and a successful answer belong to the upstream's API and are passed through
//! untouched, so they are described as open objects: the fields tracecast itself reads, and
//! any other field allowed.

use serde::Serialize;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::error::{OpenAiError, OpenAiErrorBody};
use super::upstream::UpstreamKind;

#[derive(OpenApi)]
#[openapi(
    paths(
        super::proxy::chat_completions, super::proxy::completions, super::proxy::responses,
        super::proxy::embeddings, super::models::models,
        super::api::list, super::api::create, super::api::get, super::api::update, super::api::delete,
    ),
    components(schemas(OpenAiErrorBody, OpenAiError, UpstreamFields, UpstreamKind)),
    tags(
        (name = "Gateway", description = "tracecast extension: OpenAI-compatible calls forwarded to an upstream and captured as generations (docs/gateway.md)"),
        (name = "Gateway upstreams", description = "tracecast extension: a workspace's own gateway upstreams"),
    )
)]
pub struct GatewayDoc;

/// A call: the upstream API's request (OpenAI's chat completion, completion, Responses or
/// embeddings request). tracecast reads the fields below; every other field is forwarded
/// untouched (OpenRouter's own fields are removed for a non-OpenRouter upstream).
#[derive(Serialize, ToSchema)]
pub struct CallRequest {
    /// The model; picks the upstream (resolution rules in docs/gateway.md). A `vendor/*` rule
    /// strips its prefix before forwarding.
    pub model: String,
    /// Stream the answer as server-sent events (not for embeddings).
    pub stream: Option<bool>,
    /// Recorded as the generation's `session_id` (else the `x-session-id` header).
    pub session_id: Option<String>,
    /// Recorded as the generation's `user`.
    pub user: Option<String>,
    /// OpenRouter's `trace` object, recorded with the generation.
    #[schema(value_type = Option<Object>)]
    pub trace: Option<serde_json::Value>,
}

/// The upstream's answer, passed on unchanged (status, headers and body).
#[derive(Serialize, ToSchema)]
pub struct UpstreamAnswer {
    /// The upstream's id of the answer.
    pub id: Option<String>,
    /// `chat.completion`, `text_completion`, `response`, `list`, ...
    pub object: Option<String>,
}

/// `GET /api/v1/models`: the models of every upstream of the caller's workspace and of the
/// global list, each under the name a call must use.
#[derive(Serialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    pub data: Vec<ModelEntry>,
}

/// One model as its upstream lists it; `id` carries the `vendor/` prefix of the rule that
/// routes it, and any other field is the upstream's.
#[derive(Serialize, ToSchema)]
pub struct ModelEntry {
    /// The model name to send as `model`.
    pub id: String,
    /// `model`.
    pub object: Option<String>,
    pub created: Option<i64>,
    pub owned_by: Option<String>,
}

/// An upstream's fields: those of `[[gateway.upstreams]]` in `tracecast.toml`
/// ([`super::upstream::UpstreamSettings`], which refuses unknown fields; this description leaves
/// them open so that the answers and the create body can add theirs).
#[derive(Serialize, ToSchema)]
pub struct UpstreamFields {
    /// Name in logs and the default `provider_name` of its generations.
    pub name: String,
    /// Base URL of the OpenAI-compatible API, ending before `/chat/completions`
    /// (`https://api.openai.com/v1`, `https://openrouter.ai/api/v1`, `http://localhost:11434/v1`).
    pub base_url: String,
    /// Bearer credential sent to the upstream (none for a local server without auth). Masked
    /// in every answer (`sk-a...wxyz`).
    pub api_key: Option<String>,
    /// Model rules, in order: `vendor/*` (prefix stripped when forwarding), `prefix*`, or an
    /// exact name (resolution rules: docs/gateway.md). Default: none.
    #[schema(required = false)]
    pub models: Vec<String>,
    /// Takes every model no rule matches (at most one per workspace). Default: false.
    #[schema(required = false)]
    pub default: bool,
    /// `openrouter` keeps OpenRouter's own request fields; `openai` has them removed. Default:
    /// `openrouter` when the host is `openrouter.ai`, else `openai`.
    pub kind: Option<UpstreamKind>,
    /// `provider_name` of its generations when the answer names none. Default: `name`.
    pub provider_name: Option<String>,
}

/// An upstream as answered: its fields with the credential masked (`sk-a...wxyz`), its id,
/// workspace and times.
#[derive(Serialize, ToSchema)]
#[schema(as = GatewayUpstream)]
pub struct UpstreamView {
    pub id: Uuid,
    pub workspace_id: Uuid,
    #[serde(flatten)]
    pub fields: UpstreamFields,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Serialize, ToSchema)]
pub struct UpstreamResponse {
    pub data: UpstreamView,
}

#[derive(Serialize, ToSchema)]
pub struct UpstreamList {
    /// Oldest first (the order of resolution).
    pub data: Vec<UpstreamView>,
}

/// `POST /api/v1/gateway/upstreams`: the upstream's fields and, optionally, its workspace.
#[derive(Serialize, ToSchema)]
pub struct CreateUpstream {
    /// Workspace id or slug; default: the key's workspace.
    pub workspace_id: Option<String>,
    #[serde(flatten)]
    pub fields: UpstreamFields,
}

/// `PATCH /api/v1/gateway/upstreams/{id}`: only the fields sent change; `null` clears an
/// optional field. A masked `api_key` sent back keeps the stored one; changing `base_url` needs
/// `api_key` sent again.
#[derive(Serialize, ToSchema)]
pub struct UpdateUpstream {
    pub name: Option<String>,
    pub base_url: Option<String>,
    #[schema(nullable)]
    pub api_key: Option<String>,
    #[schema(nullable)]
    pub models: Option<Vec<String>>,
    #[schema(nullable)]
    pub default: Option<bool>,
    #[schema(nullable)]
    pub kind: Option<UpstreamKind>,
    #[schema(nullable)]
    pub provider_name: Option<String>,
}

/// tracecast's own refusals of a call, in OpenAI's error shape. An upstream's error answers
/// reach the client unchanged, with the upstream's status.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // only described, never built: the handlers answer through GatewayError
pub enum CallErrors {
    #[response(
        status = 400,
        description = "The body is not a JSON object or has no string `model` (`invalid_request_error`, `param` names the field)"
    )]
    BadRequest(OpenAiErrorBody),
    #[response(
        status = 401,
        description = "Missing, wrong, disabled or expired workspace key (`authentication_error`, `invalid_api_key`)"
    )]
    Unauthorized(OpenAiErrorBody),
    #[response(
        status = 403,
        description = "A management key: calls take a workspace key (`permission_error`)"
    )]
    Forbidden(OpenAiErrorBody),
    #[response(
        status = 404,
        description = "No upstream serves the model (`model_not_found`)"
    )]
    NotFound(OpenAiErrorBody),
    #[response(status = 413, description = "The body is over `max_request_bytes`")]
    TooLarge(OpenAiErrorBody),
    #[response(
        status = 429,
        description = "The key's rate limit is reached (`retry-after` says when to retry)"
    )]
    TooMany(OpenAiErrorBody),
    #[response(
        status = 502,
        description = "The upstream cannot be reached, or its answer is over `max_response_bytes` (`upstream_error`)"
    )]
    BadGateway(OpenAiErrorBody),
    #[response(
        status = 504,
        description = "The upstream did not answer within `timeout_secs` (`upstream_timeout`)"
    )]
    Timeout(OpenAiErrorBody),
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The described fields are exactly those the settings (de)serialise.
    #[test]
    fn upstream_fields_describe_the_settings() {
        let settings = super::super::upstream::UpstreamSettings {
            name: "n".into(),
            base_url: "http://x/v1".into(),
            api_key: Some("k".into()),
            models: vec!["a/*".into()],
            default: true,
            kind: Some(UpstreamKind::Openai),
            provider_name: Some("P".into()),
        };
        let serde_keys: Vec<String> = match serde_json::to_value(&settings).unwrap() {
            serde_json::Value::Object(m) => m.keys().cloned().collect(),
            _ => unreachable!(),
        };
        let schema = serde_json::to_value(UpstreamFields::schema()).unwrap();
        let mut described: Vec<String> = schema["properties"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut serde_keys = serde_keys;
        serde_keys.sort();
        described.sort();
        assert_eq!(described, serde_keys);
    }
}
