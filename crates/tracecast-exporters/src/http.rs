//! Sending a body over HTTP and classifying the answer the way every exporter does unless its
//! platform says otherwise.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use crate::{ExportError, Outcome};

/// At most this much of an error body is kept in an outcome's message.
const MAX_ERROR_BODY: usize = 512;

/// Builds a header map from a destination's custom `headers` config.
pub fn custom_headers(
    headers: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<HeaderMap, ExportError> {
    let mut out = HeaderMap::new();
    for (k, v) in headers.into_iter().flatten() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            ExportError::Config(format!("headers: {k:?} is not a valid header name"))
        })?;
        let value = v
            .as_str()
            .and_then(|s| HeaderValue::from_str(s).ok())
            .ok_or_else(|| {
                ExportError::Config(format!("headers.{k} is not a valid header value"))
            })?;
        out.insert(name, value);
    }
    Ok(out)
}

/// A header value built from a config field: `error` (naming the field, never the value) when
/// it cannot be sent in a header; `sensitive` for credentials, so that `Debug` never prints it.
pub fn header_value(value: &str, sensitive: bool, error: &str) -> Result<HeaderValue, ExportError> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ExportError::Config(error.to_owned()))?;
    v.set_sensitive(sensitive);
    Ok(v)
}

/// A credential header value ([`header_value`], marked sensitive).
pub fn secret_value(value: &str, error: &str) -> Result<HeaderValue, ExportError> {
    header_value(value, true, error)
}

/// A destination's custom `headers` with its credential headers set last, so that a custom
/// header of the same name cannot replace the credentials. Each credential is
/// `(name, value, config field)`; its value is marked sensitive (never printed by `Debug`) and
/// an invalid one is refused with an error naming the field, never the value.
pub fn headers_with_credentials(
    config: &serde_json::Map<String, serde_json::Value>,
    credentials: &[(HeaderName, &str, &str)],
) -> Result<HeaderMap, ExportError> {
    let mut headers = crate::config::custom_headers(config)?;
    for (name, value, field) in credentials {
        let value = secret_value(
            value,
            &format!("{field} contains characters that cannot be sent in an HTTP header"),
        )?;
        headers.insert(name.clone(), value);
    }
    Ok(headers)
}

/// `Basic base64(user:password)` (RFC 7617).
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {token}")
}

/// `Bearer <token>` (RFC 6750).
pub fn bearer_auth(token: &str) -> String {
    format!("Bearer {token}")
}

/// When to retry, capped at one hour: `Retry-After` (seconds or an HTTP date), else
/// `RateLimit-Reset` (seconds until the quota resets; the IETF rate-limit headers draft, sent
/// for example by Opik cloud instead of `Retry-After`).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if !headers.contains_key(RETRY_AFTER) {
        let reset = headers.get("ratelimit-reset")?.to_str().ok()?.trim();
        let secs = reset.parse::<u64>().ok().filter(|s| *s > 0)?;
        return Some(Duration::from_secs(secs.min(3600)));
    }
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let d = if let Ok(secs) = v.parse::<f64>() {
        (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))?
    } else {
        let when = httpdate::parse_http_date(v).ok()?;
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO)
    };
    Some(d.min(Duration::from_secs(3600)))
}

/// The standard classification of an HTTP answer.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> Outcome {
    let code = status.as_u16();
    let snippet: String = body.chars().take(MAX_ERROR_BODY).collect();
    let error = if snippet.trim().is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {}", snippet.trim())
    };
    match code {
        200..=299 => Outcome::Delivered,
        401 | 403 => Outcome::Unauthorized {
            status: code,
            error,
        },
        408 | 429 | 500..=599 => Outcome::Retry {
            status: Some(code),
            error,
            retry_after: retry_after(headers),
        },
        _ => Outcome::Rejected {
            status: Some(code),
            error,
        },
    }
}

/// Classifies a transport error (no HTTP answer): always worth retrying.
pub fn transport_error(e: &reqwest::Error) -> Outcome {
    Outcome::Retry {
        status: None,
        error: transport_message(e),
        retry_after: None,
    }
}

/// The text of a transport error: what failed, then the error and its sources (as
/// [`transport_error`] and connection checks word it).
pub fn transport_message(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut msg = format!("{kind}: {e}");
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// Reads at most `max` bytes of an answer's body, as (lossy) text.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= max {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An HTTP answer read for a caller that interprets it itself (connection tests, platforms with
/// their own error codes).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body, cut at the `max_body` given to [`fetch`].
    pub body: String,
}

/// Sends a request and reads its answer, the body cut at `max_body` bytes; no answer is a
/// [`transport_error`] outcome.
pub async fn fetch(req: reqwest::RequestBuilder, max_body: usize) -> Result<Answer, Outcome> {
    let resp = req.send().await.map_err(|e| transport_error(&e))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = read_capped(resp, max_body).await;
    Ok(Answer {
        status,
        headers,
        body,
    })
}

/// Sends `body` and classifies the answer with [`classify`].
pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: bytes::Bytes,
    timeout: Duration,
) -> Outcome {
    let resp = client
        .request(method, url)
        .headers(headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await;
    match resp {
        Ok(r) => {
            let status = r.status();
            let headers = r.headers().clone();
            let text = if status.is_success() {
                String::new()
            } else {
                r.text().await.unwrap_or_default()
            };
            classify(status, &headers, &text)
        }
        Err(e) => transport_error(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let h = HeaderMap::new();
        assert_eq!(classify(StatusCode::OK, &h, ""), Outcome::Delivered);
        assert_eq!(classify(StatusCode::NO_CONTENT, &h, ""), Outcome::Delivered);
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &h, "bad key"),
            Outcome::Unauthorized { status: 401, .. }
        ));
        assert!(matches!(
            classify(StatusCode::FORBIDDEN, &h, ""),
            Outcome::Unauthorized { status: 403, .. }
        ));
        for s in [408u16, 429, 500, 502, 503, 504] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(s).unwrap(), &h, ""),
                    Outcome::Retry { .. }
                ),
                "{s}"
            );
        }
        for s in [400u16, 404, 413, 422] {
            assert!(
                matches!(
                    classify(StatusCode::from_u16(s).unwrap(), &h, ""),
                    Outcome::Rejected { .. }
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn retry_after_forms() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        assert_eq!(
            retry_after(&h),
            Some(Duration::ZERO),
            "a past date means now"
        );
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("999999"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        // RateLimit-Reset only when there is no Retry-After.
        h.insert("ratelimit-reset", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3600)));
        h.remove(RETRY_AFTER);
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("ratelimit-reset", HeaderValue::from_static("0"));
        assert_eq!(retry_after(&h), None);
    }
}
