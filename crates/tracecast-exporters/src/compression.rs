//! Compressed request bodies: gzip, by default for the platforms that accept it, as the
//! OpenTelemetry Collector's OTLP/HTTP exporter does. A user pays for egress, and trace bodies
//! (JSON with repeated keys and prompt text) shrink several times.
//!
//! # Which platforms, and the sources
//!
//! - **Every OTLP/HTTP receiver**, so on by default for `otel-collector`, `grafana`, `newrelic`,
//!   `arize`, `langfuse`, `langsmith`, `braintrust`, `weave` and `sentry`: the OTLP
//!   specification says "All server components MUST support the following transport
//!   compression options: No compression [...] Gzip compression", and a client that gzips
//!   includes `Content-Encoding: gzip` (`opentelemetry-proto`, `docs/specification.md`,
//!   "Protocol Details" and "OTLP/HTTP Request"). Vendor notes agree where they say anything:
//!   Langfuse's OTLP route inflates gzip (`web/src/pages/api/public/otel/v1/traces/index.ts`),
//!   New Relic's OTLP endpoint takes gzip and zstd (its "OpenTelemetry OTLP" best-practices
//!   page); see `destination-protocols.md` §1.3 and §15.
//! - **PostHog** `/batch/`, on by default: the official client sends `Content-Encoding: gzip`
//!   there when its `gzip` option is on (`posthog-python`, `posthog/request.py`, `post` and
//!   `batch_post`).
//! - **Off unless the destination sets `compression: "gzip"`**: `webhook` (any receiver;
//!   OpenRouter's own webhook sends plain JSON), `ramp` (an endpoint built for OpenRouter's
//!   exports, which are not compressed) and `datadog` (the LLM Observability spans intake
//!   documents no `Content-Encoding`, and neither `ddtrace`'s `llmobs/_writer.py` nor
//!   `dd-trace-js`'s `llmobs/writers/base.js` compresses what it sends there).
//! - The other types (ClickHouse, S3, Snowflake, BigQuery, Opik, Raindrop) speak their own
//!   protocols and are sent as before; their schemas have no `compression` field.
//!
//! A destination's `compression` config field (`"gzip"` or `"none"`) overrides its type's
//! default. Only the bytes on the wire change: payloads are encoded, sized against the
//! platforms' limits and stored (dead letters) uncompressed.

use bytes::Bytes;
use reqwest::header::{CONTENT_ENCODING, HeaderMap, HeaderValue};
use serde_json::{Map, Value};
use tracecast_model::DestinationType;

/// The gzip level: 1, the fastest. On ~2.4 KB generation records in OTLP/JSON it keeps most of
/// the savings of the default level 6 for about a third of its CPU time (measure with
/// `bench/gzip_cost.rs`).
pub const GZIP_LEVEL: u32 = 1;

/// How a destination's request bodies are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

impl Compression {
    /// The default of a destination type (see the module docs for the sources).
    pub fn default_for(ty: DestinationType) -> Compression {
        use DestinationType::*;
        match ty {
            OtelCollector | Grafana | Newrelic | Arize | Langfuse | Langsmith | Braintrust
            | Weave | Sentry | Posthog => Compression::Gzip,
            _ => Compression::None,
        }
    }

    /// The destination's `compression` setting, or its type's default.
    pub fn for_destination(ty: DestinationType, config: &Map<String, Value>) -> Compression {
        match config.get("compression").and_then(Value::as_str) {
            Some("gzip") => Compression::Gzip,
            Some("none") => Compression::None,
            _ => Self::default_for(ty),
        }
    }

    /// The body to send: gzipped with `Content-Encoding: gzip` set in `headers` when on,
    /// unchanged when off.
    pub fn apply(self, body: Bytes, headers: &mut HeaderMap) -> Bytes {
        match self {
            Compression::None => body,
            Compression::Gzip => {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                gzip(&body).into()
            }
        }
    }
}

/// `data` gzipped at [`GZIP_LEVEL`].
pub fn gzip(data: &[u8]) -> Vec<u8> {
    gzip_at(data, GZIP_LEVEL)
}

/// `data` gzipped at `level` (0-9).
pub fn gzip_at(data: &[u8], level: u32) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 4 + 64),
        flate2::Compression::new(level),
    );
    // Writing to a Vec cannot fail.
    enc.write_all(data).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_round_trips_and_sets_the_header() {
        let body = Bytes::from(r#"{"resourceSpans":[]}"#.repeat(100));
        let mut headers = HeaderMap::new();
        let sent = Compression::Gzip.apply(body.clone(), &mut headers);
        assert_eq!(headers[CONTENT_ENCODING], "gzip");
        assert!(sent.len() < body.len() / 10);
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&sent[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, body);
        let mut headers = HeaderMap::new();
        assert_eq!(Compression::None.apply(body.clone(), &mut headers), body);
        assert!(headers.is_empty());
    }

    #[test]
    fn defaults_and_overrides() {
        let none = Map::new();
        for (ty, want) in [
            (DestinationType::OtelCollector, Compression::Gzip),
            (DestinationType::Langfuse, Compression::Gzip),
            (DestinationType::Posthog, Compression::Gzip),
            (DestinationType::Webhook, Compression::None),
            (DestinationType::Datadog, Compression::None),
            (DestinationType::Ramp, Compression::None),
            (DestinationType::S3, Compression::None),
        ] {
            assert_eq!(Compression::for_destination(ty, &none), want, "{ty}");
        }
        let mut on = Map::new();
        on.insert("compression".into(), "gzip".into());
        assert_eq!(
            Compression::for_destination(DestinationType::Webhook, &on),
            Compression::Gzip
        );
        let mut off = Map::new();
        off.insert("compression".into(), "none".into());
        assert_eq!(
            Compression::for_destination(DestinationType::OtelCollector, &off),
            Compression::None
        );
    }
}
