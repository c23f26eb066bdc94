//! What the `langsmith` and `braintrust` exporters share: tags taken from custom metadata,
//! visible truncation of oversized content attributes, credential headers, and URL joining.

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName};
use serde::Serialize;
use tracecast_model::trace::TraceView;

use crate::ExportError;
use crate::otlp::{AttrValue, Attributes};
use crate::truncate::{prefix, replace_string};

/// Largest content attribute (prompt, completion, tool definitions) sent as is, in bytes.
/// Larger values are replaced by a truncation marker (see [`truncate_content`]), so that one
/// generation stays far below the platforms' request size limits.
pub const CONTENT_CAP: usize = 1024 * 1024;

/// How many bytes of the original value a truncation marker keeps as its `preview`.
pub const PREVIEW_BYTES: usize = 64 * 1024;

/// Every batch carries at most this many generations (the LangSmith SDK batches at most 100
/// runs per call; Braintrust's SDK flushes 100 rows at a time).
pub const MAX_ITEMS: usize = 100;

/// Request bodies are kept under this size (OTLP's recommended receiver limit is 20 MiB;
/// neither platform documents a lower one, so this leaves a wide margin).
pub const MAX_BYTES: usize = 5 * 1024 * 1024;

/// Tags from custom metadata, as OpenRouter documents for both platforms ("any array of
/// strings passed in metadata can be used as tags"): the elements of every custom `trace` value
/// that is a non-empty array of strings only, in metadata order, without repeats or empty
/// strings.
pub fn tags<'a>(view: &TraceView<'a>) -> Vec<&'a str> {
    let mut out: Vec<&'a str> = Vec::new();
    for (_, value) in view.metadata() {
        let Some(items) = value.as_array() else {
            continue;
        };
        if items.is_empty() || !items.iter().all(serde_json::Value::is_string) {
            continue;
        }
        for tag in items.iter().filter_map(serde_json::Value::as_str) {
            let tag = tag.trim();
            if !tag.is_empty() && !out.contains(&tag) {
                out.push(tag);
            }
        }
    }
    out
}

/// The marker that replaces an oversized content value: still valid JSON, so platforms that
/// parse the attribute as JSON show it, with what was cut.
#[derive(Serialize)]
struct TruncationMarker<'s> {
    truncated: bool,
    original_bytes: usize,
    kept_bytes: usize,
    note: &'static str,
    preview: &'s str,
}

/// Replaces every string attribute longer than [`CONTENT_CAP`] bytes (in practice the prompt,
/// the completion, tool definitions, or an outsized custom metadata value) with a JSON
/// truncation marker `{"truncated":true,"original_bytes":N,"kept_bytes":K,"note":"...",
/// "preview":"<first K bytes>"}`, in place. Returns whether anything was truncated; the caller
/// then flags the span so the cut is visible in the platform.
pub fn truncate_oversized(attrs: &mut Attributes<'_, '_>) -> bool {
    let oversized: Vec<String> = attrs
        .iter()
        .filter(|a| matches!(&a.value, AttrValue::String(s) if s.len() > CONTENT_CAP))
        .map(|a| a.key.to_string())
        .collect();
    if oversized.is_empty() {
        return false;
    }
    let mut replaced = Vec::with_capacity(oversized.len());
    for key in &oversized {
        if let Some(AttrValue::String(s)) = attrs.get(key) {
            let preview = prefix(s, PREVIEW_BYTES);
            if let Ok(marker) = serde_json::to_string(&TruncationMarker {
                truncated: true,
                original_bytes: s.len(),
                kept_bytes: preview.len(),
                note: "truncated by tracecast: the value exceeded the per-attribute limit",
                preview,
            }) {
                replaced.push((key.clone(), marker));
            }
        }
    }
    for (key, marker) in replaced {
        replace_string(attrs, key, marker);
    }
    true
}

/// A header carrying a credential or a config value: invalid values are a config error that
/// names the field (never the value), and secrets are marked sensitive so they never appear in
/// debug output.
pub fn header(
    headers: &mut HeaderMap,
    name: &'static str,
    value: &str,
    field: &str,
    secret: bool,
) -> Result<(), ExportError> {
    let v = crate::http::header_value(
        value,
        secret,
        &format!("{field} is not a valid HTTP header value"),
    )?;
    headers.insert(HeaderName::from_static(name), v);
    Ok(())
}

/// `base` (a configured base URL) with `path` appended (`path` starts with `/`): trailing
/// slashes of the base are ignored. The base must be an absolute http(s) URL.
pub fn join_url(base: &str, path: &str, field: &str) -> Result<Url, ExportError> {
    let joined = format!("{}{path}", base.trim_end_matches('/'));
    let url = Url::parse(&joined)
        .map_err(|e| ExportError::Config(format!("{field}: {base:?} is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ExportError::Config(format!(
            "{field}: {base:?} is not an http(s) URL"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ExportError::Config(format!(
            "{field}: {base:?} must not have a query or fragment"
        )));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_join_and_reject_bad_bases() {
        assert_eq!(
            join_url(
                "https://api.smith.langchain.com/",
                "/otel/v1/traces",
                "endpoint"
            )
            .unwrap()
            .as_str(),
            "https://api.smith.langchain.com/otel/v1/traces"
        );
        assert!(join_url("not a url", "/x", "endpoint").is_err());
        assert!(join_url("ftp://h", "/x", "endpoint").is_err());
        let e = join_url("https://h?a=1", "/x", "baseUrl").unwrap_err();
        assert!(e.to_string().contains("baseUrl"), "{e}");
    }

    #[test]
    fn header_errors_name_the_field_not_the_value() {
        let mut h = HeaderMap::new();
        let e = header(&mut h, "x-api-key", "bad\nsecret", "apiKey", true).unwrap_err();
        assert!(e.to_string().contains("apiKey") && !e.to_string().contains("secret"));
        header(&mut h, "x-api-key", "lsv2_pt_x", "apiKey", true).unwrap();
        assert!(h["x-api-key"].is_sensitive());
    }
}
