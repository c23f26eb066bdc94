//! `webhook`: OTLP/HTTP JSON to any URL, with POST (default) or PUT and the destination's
//! custom headers, as OpenRouter's webhook destination sends it.
//!
//! Config: `url` (required), `method` (`POST` or `PUT`), `headers`.
//!
//! Test connection (OpenRouter's behaviour): the empty payload `{"resourceSpans":[]}` with
//! `X-Test-Connection: true`. Any 2xx passes, and so does 400, since some endpoints reject an
//! empty payload; 401 and 403 mean the credentials were refused.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};
use tracecast_model::trace::TraceView;

use crate::otlp::{self, DefaultDialect, EMPTY_REQUEST_JSON, OtlpEncoding, OtlpHttp, snippet};
use crate::{ExportContext, ExportError, Exporter, Outcome, Payload};

/// The header that marks a connection test.
pub const TEST_HEADER: &str = "x-test-connection";

pub struct WebhookExporter {
    http: OtlpHttp,
    fragments: otlp::JsonFragments<DefaultDialect>,
}

impl WebhookExporter {
    pub fn new(config: &Map<String, Value>, ctx: &ExportContext) -> Result<Self, ExportError> {
        let url = config
            .get("url")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ExportError::Config("url is required".into()))?;
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
        let headers =
            crate::http::custom_headers(config.get("headers").and_then(Value::as_object))?;
        Ok(WebhookExporter {
            http: OtlpHttp::new(ctx, method, url, headers)
                .map_err(|e| ExportError::Config(format!("url: {e}")))?,
            fragments: otlp::JsonFragments::new(DefaultDialect, "otlp-json/default"),
        })
    }
}

#[async_trait]
impl Exporter for WebhookExporter {
    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        otlp::encode(traces, &DefaultDialect, OtlpEncoding::Json)
    }

    fn fragments(&self) -> Option<&dyn crate::FragmentEncoder> {
        Some(&self.fragments)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        self.http.send(payload).await
    }

    async fn test_connection(&self) -> Result<String, String> {
        let answer = self
            .http
            .send_raw(
                Bytes::from_static(EMPTY_REQUEST_JSON.as_bytes()),
                OtlpEncoding::Json,
                &[(
                    HeaderName::from_static(TEST_HEADER),
                    HeaderValue::from_static("true"),
                )],
            )
            .await
            .map_err(|e| format!("Webhook could not be reached: {e}"))?;
        let code = answer.status.as_u16();
        match code {
            200..=299 => Ok(format!("Webhook accepted the test payload ({code})")),
            400 => Ok(
                "Webhook answered 400 to the empty test payload, which is accepted (some endpoints reject empty payloads)"
                    .into(),
            ),
            401 | 403 => Err(format!("Webhook rejected the credentials ({code})")),
            _ => Err(format!(
                "Webhook answered {code} to the test payload{}",
                snippet(&answer.body)
            )),
        }
    }
}
