//! Sending OTLP/HTTP requests: one endpoint, method and header set per destination.

use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};

use super::encode::OtlpEncoding;
use crate::compression::Compression;
use crate::http::{classify, transport_error};
use crate::{ExportContext, ExportError, Outcome, Payload};

/// At most this much of an answer is read on success (to find a partial success) and kept in
/// test messages.
const MAX_ANSWER: usize = 64 * 1024;

/// An OTLP/HTTP endpoint with its method and headers.
#[derive(Clone)]
pub struct OtlpHttp {
    client: reqwest::Client,
    timeout: Duration,
    method: Method,
    url: Url,
    headers: HeaderMap,
    read_partial_success: bool,
    compression: Compression,
}

/// The answer to a request sent by [`OtlpHttp::send_raw`] (body cut at 64 KiB).
pub use crate::http::Answer as RawAnswer;

impl OtlpHttp {
    /// `url` must be an absolute http(s) URL; `headers` are sent with every request (the
    /// encoder's `Content-Type` replaces any given there).
    pub fn new(
        ctx: &ExportContext,
        method: Method,
        url: &str,
        headers: HeaderMap,
    ) -> Result<Self, ExportError> {
        let url = Url::parse(url)
            .map_err(|e| ExportError::Config(format!("{url:?} is not a valid URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ExportError::Config(format!("{url} is not an http(s) URL")));
        }
        Ok(OtlpHttp {
            client: ctx.client.clone(),
            timeout: ctx.timeout,
            method,
            url,
            headers,
            read_partial_success: false,
            compression: Compression::None,
        })
    }

    /// Compresses every request body, connection tests included (so a test proves the
    /// endpoint takes the encoding); see [`crate::compression`].
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// Reads successful answers as `ExportTraceServiceResponse` and logs a partial success
    /// (OTLP receivers answer 200 with `partialSuccess` when they dropped some spans; the spec
    /// says not to retry those, so the payload still counts as delivered).
    pub fn with_partial_success(mut self, on: bool) -> Self {
        self.read_partial_success = on;
        self
    }

    pub fn url(&self) -> &Url {
        &self.url
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    fn request(&self, body: Bytes, content_type: &'static str) -> reqwest::RequestBuilder {
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let body = self.compression.apply(body, &mut headers);
        self.client
            .request(self.method.clone(), self.url.clone())
            .headers(headers)
            .body(body)
            .timeout(self.timeout)
    }

    /// Sends an encoded payload and classifies the answer ([`crate::http::classify`]).
    pub async fn send(&self, payload: &Payload) -> Outcome {
        let resp = match self
            .request(payload.body.clone(), payload.content_type)
            .send()
            .await
        {
            Ok(r) => r,
            Err(e) => return transport_error(&e),
        };
        let status = resp.status();
        let headers = resp.headers().clone();
        if status.is_success() {
            if self.read_partial_success {
                let body = crate::http::read_capped(resp, MAX_ANSWER).await;
                if let Some((rejected, message)) = partial_success(&headers, body.as_bytes()) {
                    tracing::warn!(
                        url = %self.url,
                        rejected_spans = rejected,
                        message = %message,
                        "OTLP receiver accepted the payload partially"
                    );
                }
            }
            return Outcome::Delivered;
        }
        let body = crate::http::read_capped(resp, MAX_ANSWER).await;
        classify(status, &headers, &body)
    }

    /// Sends a body with extra headers and returns the raw answer (for connection tests).
    pub async fn send_raw(
        &self,
        body: Bytes,
        encoding: OtlpEncoding,
        extra_headers: &[(HeaderName, HeaderValue)],
    ) -> Result<RawAnswer, String> {
        let mut req = self.request(body, encoding.content_type());
        for (name, value) in extra_headers {
            req = req.header(name, value);
        }
        crate::http::fetch(req, MAX_ANSWER)
            .await
            .map_err(|outcome| match outcome {
                Outcome::Retry { error, .. } => error,
                other => format!("{other:?}"),
            })
    }
}

/// The rejected span count and message of an OTLP partial success, if the answer is one.
///
/// JSON answers are read by hand: OTLP/JSON writes `rejectedSpans` (an int64) as a string,
/// which `opentelemetry-proto`'s serde types do not accept there.
pub fn partial_success(headers: &HeaderMap, body: &[u8]) -> Option<(i64, String)> {
    if body.is_empty() {
        return None;
    }
    let ct = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let (rejected, message) = if ct.contains("protobuf") {
        let resp: ExportTraceServiceResponse = prost::Message::decode(body).ok()?;
        let p = resp.partial_success?;
        (p.rejected_spans, p.error_message)
    } else {
        let v: serde_json::Value = serde_json::from_slice(body).ok()?;
        let p = v.get("partialSuccess")?;
        let rejected = match p.get("rejectedSpans") {
            None | Some(serde_json::Value::Null) => 0,
            Some(serde_json::Value::String(s)) => s.parse().ok()?,
            Some(n) => n.as_i64()?,
        };
        let message = p
            .get("errorMessage")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        (rejected, message)
    };
    (rejected > 0 || !message.is_empty()).then(|| (rejected, crate::http::clean_message(&message)))
}

/// A body excerpt for messages.
pub(crate) fn snippet(body: &str) -> String {
    let s: String = body.trim().chars().take(300).collect();
    if s.is_empty() { s } else { format!(": {s}") }
}
