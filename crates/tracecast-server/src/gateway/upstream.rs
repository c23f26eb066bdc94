//! Upstreams of the gateway and the rules that pick one for a model.
//!
//! The `[gateway]` table of `tracecast.toml` lists upstreams in order. A call goes to the first
//! upstream with a rule matching its `model`; when none matches, to the upstream marked
//! `default = true`. Rules (see `docs/gateway.md`):
//!
//! - `"openai/*"`: every model that starts with `openai/`; the prefix is stripped before the
//!   call is forwarded (`openai/gpt-4o` reaches the upstream as `gpt-4o`).
//! - `"gpt-4o*"`: every model that starts with `gpt-4o`, forwarded unchanged.
//! - `"gpt-4o-mini"`: exactly that model, forwarded unchanged.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The `[gateway]` table.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Upstreams, tried in order.
    pub upstreams: Vec<UpstreamSettings>,
    /// Longest wait for the upstream's answer and, while streaming, between two chunks
    /// (seconds).
    pub timeout_secs: u64,
    /// Largest request body a client may send (bytes).
    pub max_request_bytes: usize,
    /// Largest non-streamed answer read from an upstream (bytes); a larger one is a 502.
    pub max_response_bytes: usize,
    /// Captured generations waiting to be queued; when full, a capture is dropped and counted
    /// (`tracecast_gateway_capture_dropped_total`), the call is never slowed.
    pub capture_queue: usize,
    /// Prices added to or replacing the default price table (see `pricing`).
    pub prices_file: Option<std::path::PathBuf>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            upstreams: Vec::new(),
            timeout_secs: 600,
            max_request_bytes: 32 * 1024 * 1024,
            max_response_bytes: 64 * 1024 * 1024,
            capture_queue: 4096,
            prices_file: None,
        }
    }
}

/// One upstream: an OpenAI-compatible API. Described in the OpenAPI document as
/// `openapi::UpstreamFields`.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSettings {
    /// Name in logs and the default `provider_name` of its generations.
    pub name: String,
    /// Base URL of the OpenAI-compatible API, ending before `/chat/completions`
    /// (`https://api.openai.com/v1`, `https://openrouter.ai/api/v1`, `http://localhost:11434/v1`).
    pub base_url: String,
    /// Bearer credential sent to the upstream (none for a local server without auth). Masked
    /// in every answer of the API.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Model rules, in order: `vendor/*` (prefix stripped when forwarding), `prefix*`, or an
    /// exact name (resolution rules: docs/gateway.md).
    #[serde(default)]
    pub models: Vec<String>,
    /// Takes every model no rule matches.
    #[serde(default)]
    pub default: bool,
    /// `openrouter` keeps OpenRouter's own request fields (`provider`, `session_id`, `trace`,
    /// ...); `openai` (any other OpenAI-compatible API) has them removed. Default: `openrouter`
    /// when the host is `openrouter.ai`, else `openai`.
    #[serde(default)]
    pub kind: Option<UpstreamKind>,
    /// `provider_name` of the generations it serves, when the answer does not name one.
    /// Default: `name`.
    #[serde(default)]
    pub provider_name: Option<String>,
}

/// Never shows the credential.
impl std::fmt::Debug for UpstreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamSettings")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "********"))
            .field("models", &self.models)
            .field("default", &self.default)
            .field("kind", &self.kind)
            .field("provider_name", &self.provider_name)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamKind {
    Openrouter,
    Openai,
}

#[derive(Debug, Error, PartialEq)]
pub enum UpstreamError {
    #[error("gateway.upstreams[{0}].name must not be empty")]
    EmptyName(usize),
    #[error("gateway.upstreams[{0}].base_url must be an http(s) URL: {1}")]
    BadUrl(usize, String),
    #[error("gateway.upstreams[{0}].models[{1}] must not be empty or \"*\" (use default = true)")]
    BadRule(usize, usize),
    #[error("gateway.upstreams: only one upstream may be the default ({0} and {1} are)")]
    TwoDefaults(String, String),
    #[error("gateway.upstreams[{0}].api_key must not contain control characters")]
    BadKey(usize),
    #[error("gateway.{0} must be greater than 0")]
    Zero(&'static str),
}

/// A validated upstream.
pub struct Upstream {
    pub name: String,
    /// Base URL without a trailing slash.
    pub base_url: String,
    pub api_key: Option<String>,
    pub rules: Vec<Rule>,
    pub default: bool,
    pub kind: UpstreamKind,
    pub provider_name: String,
}

#[derive(Debug, PartialEq)]
pub enum Rule {
    /// `vendor/*`: the prefix including the slash, stripped when forwarding.
    Namespace(String),
    /// `prefix*`: models starting with it, unchanged.
    Prefix(String),
    /// An exact model name.
    Exact(String),
}

impl Rule {
    fn parse(s: &str) -> Option<Rule> {
        let s = s.trim();
        if s.is_empty() || s == "*" {
            return None;
        }
        Some(if let Some(ns) = s.strip_suffix("/*") {
            Rule::Namespace(format!("{ns}/"))
        } else if let Some(p) = s.strip_suffix('*') {
            Rule::Prefix(p.to_string())
        } else {
            Rule::Exact(s.to_string())
        })
    }

    /// The model name to forward when this rule matches `model`.
    fn apply<'m>(&self, model: &'m str) -> Option<&'m str> {
        match self {
            Rule::Namespace(ns) => model.strip_prefix(ns.as_str()).filter(|m| !m.is_empty()),
            Rule::Prefix(p) => model.starts_with(p.as_str()).then_some(model),
            Rule::Exact(e) => (model == e).then_some(model),
        }
    }
}

/// The upstreams, in order.
#[derive(Default)]
pub struct Upstreams(pub Vec<Arc<Upstream>>);

/// Names and URLs only: never the credentials.
impl std::fmt::Debug for Upstreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|u| (&u.name, &u.base_url)))
            .finish()
    }
}

/// The upstream chosen for a call and the model name it receives.
pub struct Resolved {
    pub upstream: Arc<Upstream>,
    pub model: String,
}

impl Upstreams {
    pub fn from_settings(s: &GatewaySettings) -> Result<Upstreams, UpstreamError> {
        if s.timeout_secs == 0 {
            return Err(UpstreamError::Zero("timeout_secs"));
        }
        if s.capture_queue == 0 {
            return Err(UpstreamError::Zero("capture_queue"));
        }
        if s.max_request_bytes == 0 {
            return Err(UpstreamError::Zero("max_request_bytes"));
        }
        if s.max_response_bytes == 0 {
            return Err(UpstreamError::Zero("max_response_bytes"));
        }
        let mut out: Vec<Arc<Upstream>> = Vec::with_capacity(s.upstreams.len());
        for (i, u) in s.upstreams.iter().enumerate() {
            let u = Upstream::from_settings(i, u)?;
            if u.default
                && let Some(d) = out.iter().find(|o| o.default)
            {
                return Err(UpstreamError::TwoDefaults(d.name.clone(), u.name.clone()));
            }
            out.push(Arc::new(u));
        }
        Ok(Upstreams(out))
    }

    /// The first upstream with a rule matching `model`, else the default upstream.
    pub fn resolve(&self, model: &str) -> Option<Resolved> {
        resolve(&[self], model)
    }
}

/// Resolution over several lists (a workspace's own upstreams, then the global ones): every
/// rule of every list in order first, then the first list's default, then the next's.
pub fn resolve(lists: &[&Upstreams], model: &str) -> Option<Resolved> {
    for list in lists {
        for u in &list.0 {
            for r in &u.rules {
                if let Some(m) = r.apply(model) {
                    return Some(Resolved {
                        upstream: u.clone(),
                        model: m.to_string(),
                    });
                }
            }
        }
    }
    lists
        .iter()
        .find_map(|l| l.0.iter().find(|u| u.default))
        .map(|u| Resolved {
            upstream: u.clone(),
            model: model.to_string(),
        })
}

impl Upstream {
    /// Validates one upstream; `i` is its index in the list (named in errors).
    pub fn from_settings(i: usize, u: &UpstreamSettings) -> Result<Upstream, UpstreamError> {
        if u.name.trim().is_empty() {
            return Err(UpstreamError::EmptyName(i));
        }
        let url = url::Url::parse(u.base_url.trim())
            .map_err(|e| UpstreamError::BadUrl(i, e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(UpstreamError::BadUrl(
                i,
                "scheme must be http or https".into(),
            ));
        }
        if u.api_key
            .as_deref()
            .is_some_and(|k| k.chars().any(char::is_control))
        {
            return Err(UpstreamError::BadKey(i));
        }
        let rules = u
            .models
            .iter()
            .enumerate()
            .map(|(j, r)| Rule::parse(r).ok_or(UpstreamError::BadRule(i, j)))
            .collect::<Result<Vec<_>, _>>()?;
        let kind = u.kind.unwrap_or_else(|| {
            if url
                .host_str()
                .is_some_and(|h| h == "openrouter.ai" || h.ends_with(".openrouter.ai"))
            {
                UpstreamKind::Openrouter
            } else {
                UpstreamKind::Openai
            }
        });
        Ok(Upstream {
            name: u.name.clone(),
            base_url: u.base_url.trim().trim_end_matches('/').to_string(),
            api_key: u.api_key.clone().filter(|k| !k.is_empty()),
            rules,
            default: u.default,
            kind,
            provider_name: u.provider_name.clone().unwrap_or_else(|| u.name.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, models: &[&str], default: bool) -> UpstreamSettings {
        UpstreamSettings {
            name: name.into(),
            base_url: format!("https://{name}.example/v1/"),
            api_key: None,
            models: models.iter().map(|s| s.to_string()).collect(),
            default,
            kind: None,
            provider_name: None,
        }
    }

    fn settings(ups: Vec<UpstreamSettings>) -> GatewaySettings {
        GatewaySettings {
            upstreams: ups,
            ..GatewaySettings::default()
        }
    }

    #[test]
    fn namespace_strips_prefix_exact_and_prefix_keep_the_model_default_takes_the_rest() {
        let u = Upstreams::from_settings(&settings(vec![
            up("openai", &["openai/*", "gpt-4o*"], false),
            up("local", &["llama3"], false),
            up("openrouter", &[], true),
        ]))
        .unwrap();
        let r = u.resolve("openai/gpt-4o").unwrap();
        assert_eq!(r.upstream.name, "openai");
        assert_eq!(
            (r.upstream.name.as_str(), r.model.as_str()),
            ("openai", "gpt-4o")
        );
        let r = u.resolve("gpt-4o-mini").unwrap();
        assert_eq!(
            (r.upstream.name.as_str(), r.model.as_str()),
            ("openai", "gpt-4o-mini")
        );
        let r = u.resolve("llama3").unwrap();
        assert_eq!(r.upstream.name, "local");
        let r = u.resolve("llama3.1").unwrap();
        assert_eq!(
            (r.upstream.name.as_str(), r.model.as_str()),
            ("openrouter", "llama3.1")
        );
        // `openai/` alone names no model: it falls to the default, unchanged.
        let r = u.resolve("openai/").unwrap();
        assert_eq!(
            (r.upstream.name.as_str(), r.model.as_str()),
            ("openrouter", "openai/")
        );
        assert_eq!(u.0[0].base_url, "https://openai.example/v1");
    }

    #[test]
    fn no_default_means_no_upstream() {
        let u =
            Upstreams::from_settings(&settings(vec![up("openai", &["openai/*"], false)])).unwrap();
        assert!(u.resolve("anthropic/claude").is_none());
    }

    #[test]
    fn kind_follows_the_host_unless_set() {
        let mut or = up("or", &[], true);
        or.base_url = "https://openrouter.ai/api/v1".into();
        let u = Upstreams::from_settings(&settings(vec![or, up("x", &["a"], false)])).unwrap();
        assert_eq!(u.0[0].kind, UpstreamKind::Openrouter);
        assert_eq!(u.0[1].kind, UpstreamKind::Openai);
    }

    #[test]
    fn invalid_settings_name_the_field() {
        let mut bad = up("a", &[], false);
        bad.base_url = "ftp://x".into();
        assert!(matches!(
            Upstreams::from_settings(&settings(vec![bad])),
            Err(UpstreamError::BadUrl(0, _))
        ));
        assert_eq!(
            Upstreams::from_settings(&settings(vec![up("a", &["x", "*"], false)])).unwrap_err(),
            UpstreamError::BadRule(0, 1)
        );
        assert_eq!(
            Upstreams::from_settings(&settings(vec![up("a", &[], true), up("b", &[], true)]))
                .unwrap_err(),
            UpstreamError::TwoDefaults("a".into(), "b".into())
        );
        let e = Upstreams::from_settings(&settings(vec![up("a", &["x", ""], false)])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "gateway.upstreams[0].models[1] must not be empty or \"*\" (use default = true)"
        );
    }
}

/// Upstreams for tests: `(name, model rules, default)`, each at `https://{name}.example/v1`.
#[cfg(test)]
pub(crate) fn test_upstreams(ups: &[(&str, &[&str], bool)]) -> Upstreams {
    Upstreams(
        ups.iter()
            .enumerate()
            .map(|(i, (name, models, default))| {
                let s = UpstreamSettings {
                    name: name.to_string(),
                    base_url: format!("https://{name}.example/v1"),
                    api_key: None,
                    models: models.iter().map(|m| m.to_string()).collect(),
                    default: *default,
                    kind: None,
                    provider_name: None,
                };
                Arc::new(Upstream::from_settings(i, &s).unwrap())
            })
            .collect(),
    )
}

#[cfg(test)]
mod chain_tests {
    use super::*;

    fn list(ups: &[(&str, &[&str], bool)]) -> Upstreams {
        test_upstreams(ups)
    }

    #[test]
    fn workspace_rules_then_global_rules_then_workspace_default_then_global_default() {
        let global = list(&[("g-openai", &["openai/*"], false), ("g-default", &[], true)]);
        let ws = list(&[("w-local", &["llama*"], false)]);
        let name = |m: &str, lists: &[&Upstreams]| resolve(lists, m).unwrap().upstream.name.clone();
        assert_eq!(name("llama3", &[&ws, &global]), "w-local");
        assert_eq!(name("openai/gpt-4o", &[&ws, &global]), "g-openai");
        assert_eq!(name("other", &[&ws, &global]), "g-default");
        let ws_default = list(&[("w-default", &[], true)]);
        // A rule anywhere beats any default; the workspace's default beats the global one.
        assert_eq!(name("openai/gpt-4o", &[&ws_default, &global]), "g-openai");
        assert_eq!(name("other", &[&ws_default, &global]), "w-default");
    }
}
