//! `GET /api/v1/models`: the union of the models of every upstream a workspace's calls can
//! reach, each under the name a call must use.
//!
//! Every upstream (the workspace's own, then the global ones) is asked for its `/models`
//! concurrently, each within [`LIST_TIMEOUT`] (or `timeout_secs`, if shorter). A model `m` of
//! upstream `U` is listed under each name `n` (`m` itself, and `vendor/m` for each `vendor/*`
//! rule of `U`) for which a call with `"model": n` would be forwarded to `U` as `m` by the
//! resolution rules: the list names exactly what works, a model shadowed by another upstream's
//! rule is left out, and no name is listed twice. An upstream that fails (unreachable, timeout,
//! an error status, an answer that is no model list) is logged and left out; the others are
//! still listed. Only when every upstream fails is the answer an error (502).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::GatewayState;
use super::error::GatewayError;
use super::openapi::{CallErrors, ModelList};
use super::proxy::{
    PASSTHROUGH_HEADER, authenticate, counted, forwarded_headers, header_str, read_body,
    set_credential, store_unavailable, transport_message,
};
use super::upstream::{Rule, Upstream, Upstreams, resolve};

/// The longest wait for one upstream's list.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(10);

#[utoipa::path(
    get, path = "/api/v1/models", tag = "Gateway",
    responses(
        (status = 200, body = ModelList, description = "The models of every upstream the workspace's calls reach, each under the name a call must use"),
        CallErrors,
    ),
    security(("bearer" = []))
)]
/// Not captured: it is no model call.
pub async fn models(State(gw): State<GatewayState>, req: Request) -> Response {
    counted(list(gw, req).await.unwrap_or_else(|e| e))
}

async fn list(gw: GatewayState, req: Request) -> Result<Response, Response> {
    let (mut parts, _) = req.into_parts();
    let key = authenticate(&gw, &mut parts).await?;
    let ws = gw
        .inner
        .workspace_upstreams(&gw.app, key.workspace_id)
        .await
        .map_err(|e| store_unavailable(&e))?;
    let lists = [ws.as_ref(), &gw.inner.upstreams];
    let upstreams: Vec<&Arc<Upstream>> = lists.iter().flat_map(|l| l.0.iter()).collect();
    if upstreams.is_empty() {
        return Err(GatewayError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "No upstream is configured",
        )
        .into_response());
    }
    let headers = forwarded_headers(&parts.headers);
    let passthrough = header_str(&parts.headers, PASSTHROUGH_HEADER);
    let timeout = gw.inner.timeout.min(LIST_TIMEOUT);
    let fetches = upstreams.iter().map(|u| {
        let mut headers = headers.clone();
        // A list has no single target: the caller's own key goes only to upstreams that have
        // none configured, never to one that has its own.
        set_credential(
            &mut headers,
            u.api_key.as_deref().or(passthrough.as_deref()),
        );
        fetch(&gw, u, headers, timeout)
    });
    let answers = futures_util::future::join_all(fetches).await;

    let mut data = Vec::new();
    let mut seen = HashSet::new();
    let mut failed = 0;
    for (u, answer) in upstreams.iter().zip(answers) {
        let Some(models) = answer else {
            failed += 1;
            continue;
        };
        for m in models {
            let Some(id) = m.get("id").and_then(Value::as_str) else {
                continue;
            };
            for name in names(&lists, u, id) {
                if seen.insert(name.clone()) {
                    let mut entry = m.clone();
                    entry.insert("id".into(), json!(name));
                    data.push(Value::Object(entry));
                }
            }
        }
    }
    if failed == upstreams.len() {
        return Err(GatewayError::bad_gateway(
            "No upstream answered its list of models; see the server log",
        )
        .into_response());
    }
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"object": "list", "data": data}).to_string(),
    )
        .into_response())
}

/// The names under which upstream `u`'s model `model` is reachable: `model` itself and
/// `vendor/model` for each `vendor/*` rule of `u`, each kept only when resolution sends it to
/// `u` as `model`.
fn names(lists: &[&Upstreams], u: &Arc<Upstream>, model: &str) -> Vec<String> {
    let mut candidates = vec![model.to_string()];
    for r in &u.rules {
        if let Rule::Namespace(ns) = r {
            candidates.push(format!("{ns}{model}"));
        }
    }
    candidates.retain(|name| {
        resolve(lists, name).is_some_and(|r| Arc::ptr_eq(&r.upstream, u) && r.model == model)
    });
    candidates
}

/// One upstream's models (the `data` of its answer), or `None` (logged) when it fails.
async fn fetch(
    gw: &GatewayState,
    u: &Upstream,
    headers: HeaderMap,
    timeout: Duration,
) -> Option<Vec<Map<String, Value>>> {
    let url = format!("{}/models", u.base_url);
    let max = gw.inner.max_response_bytes;
    let attempt = async {
        let resp = gw
            .inner
            .http
            .get(url)
            .headers(headers)
            .send()
            .await
            .map_err(|e| transport_message(&e))?;
        let status = resp.status();
        let body = read_body(resp, max, timeout).await.map_err(|e| e.message)?;
        if !status.is_success() {
            return Err(format!("answered {status}"));
        }
        let v: Value = serde_json::from_slice(&body).map_err(|_| "answered no JSON".to_string())?;
        match v.get("data") {
            Some(Value::Array(items)) => Ok(items
                .iter()
                .filter_map(|i| i.as_object().cloned())
                .collect()),
            _ => Err("answered no `data` list".to_string()),
        }
    };
    let result = match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Err(format!("did not answer within {} s", timeout.as_secs_f32())),
    };
    match result {
        Ok(models) => Some(models),
        Err(error) => {
            tracing::warn!(upstream = %u.name, %error, "listing an upstream's models failed; it is left out of GET /models");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(ups: &[(&str, &[&str], bool)]) -> Upstreams {
        crate::gateway::upstream::test_upstreams(ups)
    }

    #[test]
    fn a_model_is_listed_under_the_names_that_reach_it() {
        let global = list(&[
            ("openai", &["openai/*", "oai/*"], false),
            ("local", &["llama3"], false),
            ("openrouter", &[], true),
        ]);
        let ws = Upstreams::default();
        let lists = [&ws, &global];
        let (openai, local, or) = (&global.0[0], &global.0[1], &global.0[2]);
        // The prefix is re-added, for each namespace rule; the bare name goes to the default.
        assert_eq!(
            names(&lists, openai, "gpt-4o"),
            ["openai/gpt-4o", "oai/gpt-4o"]
        );
        // An exact rule: only that model is reachable through it.
        assert_eq!(names(&lists, local, "llama3"), ["llama3"]);
        assert!(names(&lists, local, "qwen").is_empty());
        // The default lists what no rule takes; `openai/gpt-4o` is OpenAI's, not OpenRouter's.
        assert_eq!(names(&lists, or, "anthropic/claude"), ["anthropic/claude"]);
        assert!(names(&lists, or, "openai/gpt-4o").is_empty());
        assert!(names(&lists, or, "llama3").is_empty());
    }
}
