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

pub mod arize;
pub mod attribute_limits;
pub mod bigquery;
pub mod braintrust;
mod chunking;
pub mod clickhouse;
pub mod compression;
pub mod config;
mod content;
pub mod datadog;
pub mod derived_ids;
pub mod egress;
pub mod endpoint;
pub mod grafana;
pub mod http;
pub mod ident;
pub mod json_fit;
pub mod langfuse;
pub mod langsmith;
pub mod newrelic;
pub mod opik;
pub mod otel_collector;
pub mod otlp;
pub mod posthog;
pub mod raindrop;
pub mod ramp;
pub mod s3;
pub mod sentry;
pub mod sized_otlp;
pub mod snowflake;
pub mod tags;
pub mod truncate;
pub mod weave;
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

/// What exporters share: the HTTP client, the request timeout and the endpoint overrides.
#[derive(Clone)]
pub struct ExportContext {
    pub client: reqwest::Client,
    pub timeout: Duration,
    /// Base URLs that replace a platform's fixed endpoint, by destination type name (for
    /// example `opik`, `newrelic`, `snowflake`): for self-hosted deployments of a platform,
    /// egress proxies, and tests. Types whose config has a URL field use that field instead.
    pub endpoint_overrides: std::collections::BTreeMap<String, String>,
}

impl ExportContext {
    /// A context with the default egress policy (loopback and private ranges allowed).
    pub fn new(timeout: Duration) -> Self {
        Self::with_egress(timeout, &egress::EgressPolicy::default())
    }

    /// A context whose client enforces `policy` on every connection and never follows
    /// redirects ([`egress::http_client`]).
    pub fn with_egress(timeout: Duration, policy: &egress::EgressPolicy) -> Self {
        ExportContext {
            client: egress::http_client(policy),
            timeout,
            endpoint_overrides: Default::default(),
        }
    }

    /// Sets the base URL used instead of `ty`'s fixed platform endpoint.
    pub fn with_endpoint_override(mut self, ty: DestinationType, base_url: &str) -> Self {
        self.endpoint_overrides.insert(
            ty.as_str().to_owned(),
            base_url.trim_end_matches('/').to_owned(),
        );
        self
    }

    /// The base URL that replaces `ty`'s fixed platform endpoint, if one is configured.
    pub fn endpoint_override(&self, ty: DestinationType) -> Option<&str> {
        self.endpoint_overrides
            .get(ty.as_str())
            .map(|s| s.trim_end_matches('/'))
    }
}

/// Builds the exporter for a destination from its (validated, decrypted) config.
///
/// The exporter is wrapped so that every message it hands out (outcome errors, which become
/// `last_error`, dead letter errors and log lines, and connection check messages) is
/// [`http::clean_message`]: control characters escaped, length capped.
pub fn build(
    ty: DestinationType,
    config: &Map<String, Value>,
    ctx: &ExportContext,
) -> Result<Arc<dyn Exporter>, ExportError> {
    let inner: Arc<dyn Exporter> = match ty {
        DestinationType::Webhook => Arc::new(webhook::exporter(config, ctx)?),
        DestinationType::OtelCollector => Arc::new(otel_collector::exporter(config, ctx)?),
        DestinationType::Arize => arize::build(config, ctx)?,
        DestinationType::Bigquery => bigquery::build(config, ctx)?,
        DestinationType::Braintrust => braintrust::build(config, ctx)?,
        DestinationType::Clickhouse => clickhouse::build(config, ctx)?,
        DestinationType::Datadog => datadog::build(config, ctx)?,
        DestinationType::Grafana => grafana::build(config, ctx)?,
        DestinationType::Langfuse => langfuse::build(config, ctx)?,
        DestinationType::Langsmith => langsmith::build(config, ctx)?,
        DestinationType::Newrelic => newrelic::build(config, ctx)?,
        DestinationType::Opik => opik::build(config, ctx)?,
        DestinationType::Posthog => posthog::build(config, ctx)?,
        DestinationType::Raindrop => raindrop::build(config, ctx)?,
        DestinationType::Ramp => ramp::build(config, ctx)?,
        DestinationType::S3 => s3::build(config, ctx)?,
        DestinationType::Sentry => sentry::build(config, ctx)?,
        DestinationType::Snowflake => snowflake::build(config, ctx)?,
        DestinationType::Weave => weave::build(config, ctx)?,
    };
    Ok(Arc::new(CleanMessages(inner)))
}

/// An exporter whose outcome errors and connection check messages are cleaned
/// ([`http::clean_message`]) before anyone stores, logs or returns them.
struct CleanMessages(Arc<dyn Exporter>);

#[async_trait]
impl Exporter for CleanMessages {
    fn limits(&self) -> BatchLimits {
        self.0.limits()
    }

    fn fragments(&self) -> Option<&dyn FragmentEncoder> {
        self.0.fragments()
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        self.0.encode(traces)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        use crate::http::clean_message as clean;
        match self.0.send(payload).await {
            Outcome::Delivered => Outcome::Delivered,
            Outcome::Retry {
                status,
                error,
                retry_after,
            } => Outcome::Retry {
                status,
                error: clean(&error),
                retry_after,
            },
            Outcome::Rejected { status, error } => Outcome::Rejected {
                status,
                error: clean(&error),
            },
            Outcome::Unauthorized { status, error } => Outcome::Unauthorized {
                status,
                error: clean(&error),
            },
            Outcome::Partial(items) => Outcome::Partial(
                items
                    .into_iter()
                    .map(|i| match i {
                        ItemOutcome::Delivered => ItemOutcome::Delivered,
                        ItemOutcome::Retry { error } => ItemOutcome::Retry {
                            error: clean(&error),
                        },
                        ItemOutcome::Rejected { error } => ItemOutcome::Rejected {
                            error: clean(&error),
                        },
                    })
                    .collect(),
            ),
        }
    }

    async fn test_connection(&self) -> ConnectionCheck {
        let mut check = self.0.test_connection().await;
        check.message = crate::http::clean_message(&check.message);
        check
    }
}
