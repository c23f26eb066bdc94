//! From an OTLP/HTTP request body to an `ExportTraceServiceRequest`: the encoding from
//! `Content-Type` (`application/x-protobuf` or `application/json`), `Content-Encoding: gzip`
//! undone with a cap on the inflated size, then protobuf (`prost`) or OTLP/JSON
//! (`opentelemetry-proto`'s serde types: hex ids, `int64` as strings or numbers).

use std::io::Read;

use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_TYPE};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;

/// At most this many bytes on the wire per request.
pub const MAX_WIRE_BYTES: usize = 16 * 1024 * 1024;
/// At most this many bytes once a gzip body is inflated.
pub const MAX_DECODED_BYTES: usize = 16 * 1024 * 1024;

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "Content-Type must be application/x-protobuf or application/json (OTLP/HTTP), not {0:?}"
    )]
    ContentType(String),
    #[error("Content-Encoding must be gzip or identity, not {0:?}")]
    ContentEncoding(String),
    #[error("the gzip body is not valid gzip: {0}")]
    Gzip(String),
    #[error("the body is larger than {MAX_DECODED_BYTES} bytes once inflated")]
    TooLarge,
    #[error("malformed OTLP protobuf (ExportTraceServiceRequest): {0}")]
    Protobuf(String),
    #[error("malformed OTLP/JSON (ExportTraceServiceRequest): {0}")]
    Json(String),
}

impl DecodeError {
    pub fn is_too_large(&self) -> bool {
        matches!(self, DecodeError::TooLarge)
    }
}

/// The request's encoding, from `Content-Type` (parameters ignored).
pub fn encoding(headers: &HeaderMap) -> Result<Encoding, DecodeError> {
    let raw = headers
        .get(CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let base = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match base.as_str() {
        "application/x-protobuf" | "application/protobuf" => Ok(Encoding::Protobuf),
        "application/json" => Ok(Encoding::Json),
        _ => Err(DecodeError::ContentType(raw)),
    }
}

/// Undoes `Content-Encoding` and decodes the request.
pub fn decode(
    headers: &HeaderMap,
    encoding: Encoding,
    body: &[u8],
) -> Result<ExportTraceServiceRequest, DecodeError> {
    let content_encoding = headers
        .get(CONTENT_ENCODING)
        .map(|v| {
            String::from_utf8_lossy(v.as_bytes())
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let inflated;
    let bytes: &[u8] = match content_encoding.as_str() {
        "" | "identity" => body,
        "gzip" | "x-gzip" => {
            inflated = gunzip(body)?;
            &inflated
        }
        other => return Err(DecodeError::ContentEncoding(other.to_string())),
    };
    match encoding {
        Encoding::Protobuf => ExportTraceServiceRequest::decode(bytes)
            .map_err(|e| DecodeError::Protobuf(e.to_string())),
        Encoding::Json => serde_json::from_slice(bytes).map_err(|e| {
            let s = e.to_string();
            DecodeError::Json(match s.rfind(" at line ") {
                Some(i) => s[..i].to_string(),
                None => s,
            })
        }),
    }
}

/// Inflates at most [`MAX_DECODED_BYTES`]; one byte more is an error, so a gzip bomb costs no
/// more memory than the cap.
fn gunzip(body: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(MAX_DECODED_BYTES));
    flate2::read::MultiGzDecoder::new(body)
        .take(MAX_DECODED_BYTES as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Gzip(e.to_string()))?;
    if out.len() > MAX_DECODED_BYTES {
        return Err(DecodeError::TooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn headers(ct: &str, ce: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, ct.parse().unwrap());
        if let Some(ce) = ce {
            h.insert(CONTENT_ENCODING, ce.parse().unwrap());
        }
        h
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        enc.write_all(&vec![0u8; MAX_DECODED_BYTES + 10]).unwrap();
        let body = enc.finish().unwrap();
        let h = headers("application/x-protobuf", Some("gzip"));
        let err = decode(&h, Encoding::Protobuf, &body).unwrap_err();
        assert!(err.is_too_large(), "{err}");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            encoding(&headers("application/json; charset=utf-8", None)).unwrap(),
            Encoding::Json
        );
        assert_eq!(
            encoding(&headers("application/x-protobuf", None)).unwrap(),
            Encoding::Protobuf
        );
        assert!(encoding(&headers("text/plain", None)).is_err());
        assert!(encoding(&HeaderMap::new()).is_err());
    }
}
