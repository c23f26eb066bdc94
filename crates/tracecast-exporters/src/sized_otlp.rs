//! An OTLP/HTTP exporter with a cap on the request body: [`SizedExporter`].
//!
//! Platforms refuse request bodies over a size (New Relic: 1 MB) and the engine batches by
//! stored record size, which is not the encoded size. A body over the cap is split into requests
//! under it (one `ResourceSpans` per generation, packed greedily and in order, protobuf or JSON);
//! per-request answers become per-generation outcomes ([`Outcome::Partial`]). A generation that
//! alone exceeds the cap is rejected with a message naming the limit, so it is dead-lettered, not
//! lost.

use async_trait::async_trait;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde::Deserialize;
use serde_json::value::RawValue;
use tracecast_model::trace::TraceView;

use crate::chunking::group_by_size;
use crate::otlp::{OtlpDialect, OtlpExporter};
use crate::{
    BatchLimits, ConnectionCheck, ExportError, Exporter, FragmentEncoder, ItemOutcome, Outcome,
    Payload,
};

/// An [`OtlpExporter`] whose requests never exceed `max_request_bytes` (see the module docs).
pub struct SizedExporter<D: OtlpDialect + Clone + 'static> {
    inner: OtlpExporter<D>,
    platform: &'static str,
    max_request_bytes: usize,
}

impl<D: OtlpDialect + Clone + 'static> SizedExporter<D> {
    pub fn new(inner: OtlpExporter<D>, platform: &'static str, max_request_bytes: usize) -> Self {
        SizedExporter {
            inner,
            platform,
            max_request_bytes,
        }
    }

    pub fn inner(&self) -> &OtlpExporter<D> {
        &self.inner
    }

    pub fn max_request_bytes(&self) -> usize {
        self.max_request_bytes
    }

    /// The `ExportTraceServiceRequest` a batch becomes (for tests and tooling).
    pub fn request(&self, traces: &[TraceView<'_>]) -> ExportTraceServiceRequest {
        self.inner.request(traces)
    }
}

/// One request of a split payload, or one generation too large for any request.
enum Piece {
    Send { payload: Payload },
    TooLarge { bytes: usize },
}

#[derive(Deserialize)]
struct JsonBody<'a> {
    #[serde(borrow, rename = "resourceSpans")]
    resource_spans: Vec<&'a RawValue>,
}

/// Splits an OTLP body (one `ResourceSpans` per generation) into bodies of at most `max`
/// bytes, greedily and in order.
fn split(payload: &Payload, max: usize) -> Result<Vec<Piece>, String> {
    if payload.content_type.contains("protobuf") {
        let req = ExportTraceServiceRequest::decode(payload.body.as_ref())
            .map_err(|e| format!("cannot split the protobuf body: {e}"))?;
        let items: Vec<Vec<u8>> = req
            .resource_spans
            .into_iter()
            .map(|rs| {
                ExportTraceServiceRequest {
                    resource_spans: vec![rs],
                }
                .encode_to_vec()
            })
            .collect();
        // Concatenated encodings of single-field messages are the encoding of the merged
        // message (repeated fields append).
        Ok(pack(items, max, (0, 0), |parts| {
            let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                out.extend_from_slice(p);
            }
            out
        })
        .into_iter()
        .map(|packed| piece(packed, payload.content_type))
        .collect())
    } else {
        let body: JsonBody<'_> = serde_json::from_slice(&payload.body)
            .map_err(|e| format!("cannot split the JSON body: {e}"))?;
        let items: Vec<Vec<u8>> = body
            .resource_spans
            .iter()
            .map(|r| r.get().as_bytes().to_vec())
            .collect();
        const FRAME: usize = r#"{"resourceSpans":[]}"#.len();
        Ok(pack(items, max, (FRAME, 1), |parts| {
            let mut out =
                Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum::<usize>() + FRAME);
            out.extend_from_slice(br#"{"resourceSpans":["#);
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(p);
            }
            out.extend_from_slice(b"]}");
            out
        })
        .into_iter()
        .map(|packed| piece(packed, payload.content_type))
        .collect())
    }
}

/// A packed request (or an item too large for any) as a [`Piece`].
fn piece((body, items): (Result<Vec<u8>, usize>, usize), content_type: &'static str) -> Piece {
    match body {
        Ok(body) => Piece::Send {
            payload: Payload {
                body: Bytes::from(body),
                content_type,
                items,
            },
        },
        Err(bytes) => Piece::TooLarge { bytes },
    }
}

/// Greedy packing ([`group_by_size`]): `(Ok(body), items)` per request, `(Err(size), 1)` per
/// item that alone exceeds `max` (`frame` bytes of framing per request and `sep` between items
/// are counted).
fn pack(
    items: Vec<Vec<u8>>,
    max: usize,
    (frame, sep): (usize, usize),
    join: impl Fn(&[Vec<u8>]) -> Vec<u8>,
) -> Vec<(Result<Vec<u8>, usize>, usize)> {
    let sizes: Vec<usize> = items.iter().map(Vec::len).collect();
    group_by_size(&sizes, max, frame, sep)
        .into_iter()
        .map(|g| {
            let n = g.items.len();
            if g.oversized {
                (Err(sizes[g.items.start]), n)
            } else {
                (Ok(join(&items[g.items])), n)
            }
        })
        .collect()
}

#[async_trait]
impl<D: OtlpDialect + Clone + 'static> Exporter for SizedExporter<D> {
    fn limits(&self) -> BatchLimits {
        self.inner.limits()
    }

    fn fragments(&self) -> Option<&dyn FragmentEncoder> {
        self.inner.fragments()
    }

    fn encode(&self, traces: &[TraceView<'_>]) -> Result<Payload, ExportError> {
        self.inner.encode(traces)
    }

    async fn send(&self, payload: &Payload) -> Outcome {
        if payload.body.len() <= self.max_request_bytes {
            return self.inner.send(payload).await;
        }
        let pieces = match split(payload, self.max_request_bytes) {
            Ok(p) => p,
            Err(e) => {
                return Outcome::Rejected {
                    status: None,
                    error: e,
                };
            }
        };
        let mut results = Vec::with_capacity(payload.items);
        for piece in pieces {
            match piece {
                Piece::TooLarge { bytes } => results.push(ItemOutcome::Rejected {
                    error: format!(
                        "this generation encodes to {bytes} bytes, over {}'s request limit of {} bytes even alone (after truncating attribute values)",
                        self.platform, self.max_request_bytes
                    ),
                }),
                Piece::Send { payload } => {
                    let n = payload.items;
                    let item = match self.inner.send(&payload).await {
                        Outcome::Delivered => ItemOutcome::Delivered,
                        // The credentials are the same for every piece: pause the whole batch
                        // (pieces already delivered are sent again after the resume; OTLP
                        // receivers accept duplicates).
                        unauthorized @ Outcome::Unauthorized { .. } => return unauthorized,
                        Outcome::Retry { error, .. } => ItemOutcome::Retry { error },
                        Outcome::Rejected { error, .. } => ItemOutcome::Rejected { error },
                        Outcome::Partial(_) => ItemOutcome::Delivered,
                    };
                    results.extend(std::iter::repeat_n(item, n));
                }
            }
        }
        if results.iter().all(|r| *r == ItemOutcome::Delivered) {
            Outcome::Delivered
        } else {
            Outcome::Partial(results)
        }
    }

    async fn test_connection(&self) -> ConnectionCheck {
        self.inner.test_connection().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(pieces: &[Piece]) -> Vec<Result<(String, usize), usize>> {
        pieces
            .iter()
            .map(|p| match p {
                Piece::Send { payload } => Ok((
                    String::from_utf8_lossy(&payload.body).into_owned(),
                    payload.items,
                )),
                Piece::TooLarge { bytes } => Err(*bytes),
            })
            .collect()
    }

    #[test]
    fn json_bodies_split_into_valid_requests() {
        let body = r#"{"resourceSpans":[{"a":"1111"},{"b":"2222"},{"c":"x"}]}"#;
        let payload = Payload {
            body: Bytes::from(body),
            content_type: "application/json",
            items: 3,
        };
        let pieces = split(&payload, 44).unwrap();
        assert_eq!(
            bodies(&pieces),
            vec![
                Ok((r#"{"resourceSpans":[{"a":"1111"}]}"#.to_owned(), 1)),
                Ok((
                    r#"{"resourceSpans":[{"b":"2222"},{"c":"x"}]}"#.to_owned(),
                    2
                )),
            ]
        );
        for p in &pieces {
            if let Piece::Send { payload } = p {
                assert!(payload.body.len() <= 44);
                serde_json::from_slice::<ExportTraceServiceRequest>(&payload.body).unwrap();
            }
        }
        // An item over the cap alone, and a body that is not OTLP/JSON.
        assert_eq!(bodies(&split(&payload, 25).unwrap())[0], Err(12));
        let bad = Payload {
            body: Bytes::from_static(b"nope"),
            content_type: "application/json",
            items: 1,
        };
        assert!(split(&bad, 10).is_err());
    }

    #[test]
    fn protobuf_bodies_split_into_the_same_spans() {
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let rs = |name: &str| ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    name: name.repeat(20),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let req = ExportTraceServiceRequest {
            resource_spans: vec![rs("a"), rs("b"), rs("c")],
        };
        let body = req.encode_to_vec();
        let one = body.len() / 3;
        let payload = Payload {
            body: Bytes::from(body),
            content_type: "application/x-protobuf",
            items: 3,
        };
        let pieces = split(&payload, one * 2 + 1).unwrap();
        let mut back = Vec::new();
        let mut counts = Vec::new();
        for p in pieces {
            match p {
                Piece::Send { payload } => {
                    assert!(payload.body.len() <= one * 2 + 1);
                    counts.push(payload.items);
                    back.extend(
                        ExportTraceServiceRequest::decode(payload.body.as_ref())
                            .unwrap()
                            .resource_spans,
                    );
                }
                Piece::TooLarge { .. } => panic!("nothing is too large"),
            }
        }
        assert_eq!(counts, vec![2, 1]);
        assert_eq!(back, req.resource_spans);
    }

    #[test]
    fn packing_respects_the_cap() {
        let items = vec![vec![1u8; 40], vec![2; 40], vec![3; 200], vec![4; 10]];
        let out = pack(items, 100, (0, 0), |p| p.concat());
        let shape: Vec<_> = out
            .iter()
            .map(|(r, n)| (r.as_ref().map(Vec::len).map_err(|e| *e), *n))
            .collect();
        assert_eq!(shape, vec![(Ok(80), 2), (Err(200), 1), (Ok(10), 1)]);
    }
}
