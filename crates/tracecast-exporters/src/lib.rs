//! Exporters: one module per destination type, all behind the small [`Exporter`] trait.
//!
//! An exporter does two things. [`Exporter::encode`] turns a batch of traces into one request
//! body (pure, no I/O; credential-free, so a retry can resend it after the credentials change).
//! [`Exporter::send`] sends a body with the destination's current endpoint and credentials and
//! classifies the answer into an [`Outcome`]; the delivery engine owns batching, retries,
//! backoff, dead letters and pausing, and acts on that outcome.
//!
//! Exporters see generations only through [`TraceView`], which has already applied the
//! destination's privacy mode and metadata groups.

pub mod config;
pub mod http;
pub mod otel_collector;
pub mod otlp;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Map, Value};
use thiserror::Error;
use tracecast_model::DestinationType;
use tracecast_model::trace::TraceView;

/// How many traces and bytes one request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_items: usize,
    pub max_bytes: usize,
}

impl Default for BatchLimits {
    fn default() -> Self {
        BatchLimits {
            max_items: 500,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// An encoded request body for a batch.
#[derive(Debug, Clone)]
pub struct Payload {
    pub body: Bytes,
    pub content_type: &'static str,
    /// Number of traces in the body, in batch order.
    pub items: usize,
}

/// What happened to one trace of a batch (for partial answers such as Langfuse's 207).
#[derive(Debug, Clone, PartialEq)]
pub enum ItemOutcome {
    Delivered,
    /// Worth retrying (the platform said 5xx or 429 for this item).
    Retry {
        error: String,
    },
    /// Will never succeed as is: dead-letter it with this error.
    Rejected {
        error: String,
    },
}

/// The classified answer to one send.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every trace in the payload was accepted.
    Delivered,
    /// Transient failure (connection error, timeout, 408, 429, 5xx): retry the same payload
    /// later, no earlier than `retry_after` when the platform said so.
    Retry {
        status: Option<u16>,
        error: String,
        retry_after: Option<Duration>,
    },
    /// Permanent failure for this payload (other 4xx): dead-letter its traces.
    Rejected { status: Option<u16>, error: String },
    /// The credentials were refused (401, 403): pause the destination, keep the traces.
    Unauthorized { status: u16, error: String },
    /// Per-trace answers, in payload order.
    Partial(Vec<ItemOutcome>),
}

#[derive(Debug, Error)]
pub enum ExportError {
    /// The destination's config cannot be used (it passed validation, so this is rare: for
    /// example a header value that is not a valid HTTP header).
    #[error("invalid destination config: {0}")]
    Config(String),
    /// A trace cannot be encoded at all.
    #[error("cannot encode trace: {0}")]
    Encode(String),
    /// This destination type has no exporter in this build.
    #[error("destination type {0} cannot deliver yet")]
    Unsupported(DestinationType),
}

/// For formats whose request body is a concatenation of per-trace pieces (OTLP/JSON's
/// `ResourceSpans`): each piece depends only on the trace, the encoding and the trace options,
/// so destinations that share an encoding can share the pieces. The engine caches fragments
/// per (generation, [`FragmentEncoder::key`], trace options) and encodes each once, however
/// many destinations send it.
pub trait FragmentEncoder: Send + Sync {
    /// Identifies the encoding: equal keys mean byte-identical fragments for the same view.
    fn key(&self) -> &'static str;
    /// One trace's piece.
    fn fragment(&self, trace: &TraceView<'_>) -> Result<Bytes, ExportError>;
    /// A request body from pieces, in order.
    fn assemble(&self, fragments: &[Bytes]) -> Payload;
}

/// A destination type's wire format and transport.
#[async_trait]
pub trait Exporter: Send + Sync {
    /// Batch limits of the platform.
    fn limits(&self) -> BatchLimits {
        BatchLimits::default()
    }

    /// When the body is built from shareable per-trace fragments, the encoder of those; the
    /// engine then uses it instead of [`Exporter::encode`]. Both must produce the same bytes.
    fn fragments(&self) -> Option<&dyn FragmentEncoder> {
        None
    }

    /// Encodes a batch into one request body.
    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError>;

    /// Sends a body and classifies the answer.
    async fn send(&self, payload: &Payload) -> Outcome;

    /// A cheap authenticated call proving the endpoint and the credentials.
    async fn test_connection(&self) -> ConnectionCheck;
}

/// The result of [`Exporter::test_connection`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionCheck {
    /// The endpoint answered and accepted the credentials.
    pub ok: bool,
    /// The HTTP status of the (last) answer; `None` when no answer came.
    pub status: Option<u16>,
    /// A sentence for the user naming what passed or what was rejected, e.g. "Langfuse
    /// rejected the public/secret key pair (401)".
    pub message: String,
}

impl ConnectionCheck {
    pub fn passed(status: u16, message: impl Into<String>) -> Self {
        ConnectionCheck {
            ok: true,
            status: Some(status),
            message: message.into(),
        }
    }

    pub fn failed(status: Option<u16>, message: impl Into<String>) -> Self {
        ConnectionCheck {
            ok: false,
            status,
            message: message.into(),
        }
    }

    /// No HTTP answer: `error` is the transport error.
    pub fn unreachable(platform: &str, error: &str) -> Self {
        Self::failed(None, format!("{platform} could not be reached: {error}"))
    }
}

/// What exporters share: the HTTP client and request timeout.
#[derive(Clone)]
pub struct ExportContext {
    pub client: reqwest::Client,
    pub timeout: Duration,
}

impl ExportContext {
    pub fn new(timeout: Duration) -> Self {
        let client = reqwest::Client::builder()
            .user_agent(concat!("tracecast/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("a TLS backend is compiled in");
        ExportContext { client, timeout }
    }
}

/// Builds the exporter for a destination from its (validated, decrypted) config.
pub fn build(
    ty: DestinationType,
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    match ty {
        DestinationType::Webhook => Ok(Arc::new(webhook::exporter(config, ctx)?)),
        DestinationType::OtelCollector => Ok(Arc::new(otel_collector::exporter(config, ctx)?)),
        _ => Err(ExportError::Unsupported(ty)),
    }
}
