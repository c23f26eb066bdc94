//! `webhook`: OTLP/HTTP JSON to any URL, with POST (default) or PUT and the destination's
//! custom headers, as OpenRouter's webhook destination sends it.
//!
//! Config: `url` (required), `method` (`POST` or `PUT`), `headers`.
//!
//! Test connection (OpenRouter's behaviour): the empty payload `{"resourceSpans":[]}` with
//! `X-Test-Connection: true`. Any 2xx passes, and so does 400, since some endpoints reject an
//! empty payload; 401 and 403 mean the credentials were refused.

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::config::required_str;
use crate::otlp::{DefaultDialect, OtlpExporter, OtlpHttp, Probe};
use crate::{ExportContext, ExportError};

/// The header that marks a connection test.
pub const TEST_HEADER: &str = "x-test-connection";

pub fn exporter(
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<OtlpExporter<DefaultDialect>, ExportError> {
    let url = required_str(config, "url")?;
    let method = match config.get("method") {
        None | Some(Value::Null) => Method::POST,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("POST") => Method::POST,
        Some(Value::String(m)) if m.eq_ignore_ascii_case("PUT") => Method::PUT,
        Some(other) => {
            return Err(ExportError::Config(format!(
                "method must be POST or PUT, got {other}"
            )));
        }
    };
    let headers = crate::config::custom_headers(config)?;
    let http = OtlpHttp::new(ctx, method, url, headers)
        .map_err(|e| ExportError::Config(format!("url: {e}")))?
        .with_compression(crate::compression::Compression::for_destination(
            tracecast_model::DestinationType::Webhook,
            config,
        ));
    let probe = Probe {
        extra_headers: vec![(
            HeaderName::from_static(TEST_HEADER),
            HeaderValue::from_static("true"),
        )],
        accept_400: true,
        ..Probe::new("Webhook")
    };
    Ok(OtlpExporter::new(
        http,
        DefaultDialect,
        "otlp-json/default",
        probe,
    ))
}
