//! [`OtlpExporter`]: the one [`Exporter`] for every destination that speaks OTLP/HTTP. A
//! destination type is an endpoint, headers, a dialect and a way of reading its connection
//! test; the encoding, fragment sharing, sending and classification are the same for all.

use async_trait::async_trait;
use bytes::Bytes;
use reqwest::header::{HeaderName, HeaderValue};
use tracecast_model::trace::TraceView;

use super::{
    EMPTY_REQUEST_JSON, JsonFragments, OtlpDialect, OtlpEncoding, OtlpHttp, encode, export_request,
    snippet,
};
use crate::{
    BatchLimits, ConnectionCheck, ExportError, Exporter, FragmentEncoder, Outcome, Payload,
};

/// How a platform's connection test is sent and read. The test sends an OTLP export request
/// with no spans, which every OTLP receiver must accept, to the destination's own endpoint
/// with its own headers: it proves the URL and the credentials at once.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The platform's name as users know it, for messages ("Langfuse", "Webhook").
    pub platform: &'static str,
    /// What a 401 or 403 means in the platform's words, e.g. "the public/secret key pair".
    pub credentials: &'static str,
    /// Headers sent only with the test (the webhook's `X-Test-Connection: true`).
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
    /// Count a 400 as a pass (some webhook endpoints reject an empty payload).
    pub accept_400: bool,
    /// Added to the message of a 404, e.g. where the traces path usually is.
    pub hint_404: Option<&'static str>,
}

impl Probe {
    pub fn new(platform: &'static str) -> Self {
        Probe {
            platform,
            credentials: "the credentials",
            extra_headers: Vec::new(),
            accept_400: false,
            hint_404: None,
        }
    }

    /// Reads the answer to a connection test: 2xx passes; 401 and 403 name the rejected
    /// credentials; anything else fails with the status and the start of the body.
    pub fn read(&self, status: u16, body: &str) -> ConnectionCheck {
        let p = self.platform;
        match status {
            200..=299 => ConnectionCheck::passed(
                status,
                format!("{p} accepted an empty OTLP export request ({status})"),
            ),
            400 if self.accept_400 => ConnectionCheck::passed(
                status,
                format!(
                    "{p} answered 400 to the empty test payload, which counts as reachable (some endpoints reject empty payloads)"
                ),
            ),
            401 | 403 => ConnectionCheck::failed(
                Some(status),
                format!("{p} rejected {} ({status})", self.credentials),
            ),
            404 => ConnectionCheck::failed(
                Some(status),
                format!(
                    "{p} answered 404 to the test request{}{}",
                    self.hint_404.map(|h| format!(": {h}")).unwrap_or_default(),
                    snippet(body)
                ),
            ),
            _ => ConnectionCheck::failed(
                Some(status),
                format!("{p} answered {status} to the test request{}", snippet(body)),
            ),
        }
    }
}

/// An OTLP/HTTP destination: a dialect, an encoding, an endpoint with its headers, and a
/// connection probe.
pub struct OtlpExporter<D: OtlpDialect + Clone + 'static> {
    http: OtlpHttp,
    dialect: D,
    encoding: OtlpEncoding,
    fragments: JsonFragments<D>,
    limits: BatchLimits,
    probe: Probe,
}

impl<D: OtlpDialect + Clone + 'static> OtlpExporter<D> {
    /// An exporter sending OTLP/JSON. `fragment_key` names the dialect's encoding for the
    /// engine's shared fragment cache: destinations whose dialects produce the same bytes for
    /// the same trace may share a key, all others must not.
    pub fn new(http: OtlpHttp, dialect: D, fragment_key: &'static str, probe: Probe) -> Self {
        OtlpExporter {
            http,
            fragments: JsonFragments::new(dialect.clone(), fragment_key),
            dialect,
            encoding: OtlpEncoding::Json,
            limits: BatchLimits::default(),
            probe,
        }
    }

    /// Sends binary protobuf instead of JSON (no fragment sharing then).
    pub fn protobuf(mut self) -> Self {
        self.encoding = OtlpEncoding::Protobuf;
        self
    }

    /// The platform's batch limits (the default is 500 traces or 4 MiB).
    pub fn with_limits(mut self, limits: BatchLimits) -> Self {
        self.limits = limits;
        self
    }

    pub fn http(&self) -> &OtlpHttp {
        &self.http
    }

    pub fn dialect(&self) -> &D {
        &self.dialect
    }

    /// The `ExportTraceServiceRequest` a batch becomes (for tests and tooling).
    pub fn request(
        &self,
        traces: &[TraceView<'_>],
    ) -> opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest {
        export_request(traces, &self.dialect)
    }
}

#[async_trait]
impl<D: OtlpDialect + Clone + 'static> Exporter for OtlpExporter<D> {
    fn limits(&self) -> BatchLimits {
        self.limits
    }

    fn fragments(&self) -> Option<&dyn FragmentEncoder> {
        match self.encoding {
            OtlpEncoding::Json => Some(&self.fragments),
            OtlpEncoding::Protobuf => None,
        }
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        encode(traces, &self.dialect, self.encoding)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        self.http.send(payload).await
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let body = match self.encoding {
            OtlpEncoding::Json => Bytes::from_static(EMPTY_REQUEST_JSON.as_bytes()),
            // An empty ExportTraceServiceRequest is zero bytes of protobuf.
            OtlpEncoding::Protobuf => Bytes::new(),
        };
        match self
            .http
            .send_raw(body, self.encoding, &self.probe.extra_headers)
            .await
        {
            Ok(answer) => self.probe.read(answer.status.as_u16(), &answer.body),
            Err(e) => ConnectionCheck::unreachable(self.probe.platform, &e),
        }
    }
}
