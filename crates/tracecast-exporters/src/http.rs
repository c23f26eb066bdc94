//! Sending a body over HTTP and classifying the answer the way every exporter does unless its
//! platform says otherwise.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use reqwest::{Method, StatusCode};

use crate::{ExportError, Outcome};

/// At most this many characters of an error body are kept in an outcome's message.
pub const MAX_ERROR_BODY: usize = 256;

/// At most this many bytes of a remote answer are read when its body is only parsed for an
/// error or a connection check ([`read_capped`]).
pub const MAX_ANSWER: usize = 64 * 1024;

/// At most this many characters of a message are stored, logged or returned
/// ([`clean_message`]).
pub const MAX_MESSAGE: usize = 512;

/// A message fit to store, log and return: control characters (line breaks, terminal
/// escapes, NUL, C1 controls) escaped as `\n`, `\u{1b}`..., so a remote body cannot forge log
/// lines or drive a terminal, and at most [`MAX_MESSAGE`] characters (then `…`).
pub fn clean_message(s: &str) -> String {
    clean(s, MAX_MESSAGE)
}

/// At most `max` characters of `s` (then `…`), control characters escaped.
fn clean(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max + 8));
    for (n, c) in s.chars().enumerate() {
        if n == max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The part of a remote error body quoted in a message: trimmed, at most [`MAX_ERROR_BODY`]
/// characters, control characters escaped.
pub fn body_snippet(body: &str) -> String {
    clean(body.trim(), MAX_ERROR_BODY)
}

/// Builds a header map from a destination's custom `headers` config.
pub fn custom_headers(
    headers: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<HeaderMap, ExportError> {
    let mut out = HeaderMap::new();
    for (k, v) in headers.into_iter().flatten() {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
            ExportError::Config(format!("headers: {k:?} is not a valid header name"))
        })?;
        // Validation refuses these; a config stored before it did must not send them either.
        if tracecast_model::config::is_transport_header(k) {
            return Err(ExportError::Config(format!(
                "headers.{k} cannot be set: it is a transport header"
            )));
        }
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
    let snippet = body_snippet(body);
    let error = if snippet.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code}: {snippet}")
    };
    match code {
        200..=299 => Outcome::Delivered,
        // The client refuses to follow redirects (`egress::http_client`), so only those it
        // could not follow (no or a bad `Location`) get here: the URL needs fixing, and the
        // traces are kept (retried) meanwhile, as for a refused redirect.
        300..=399 => Outcome::Retry {
            status: Some(code),
            error: format!(
                "HTTP {code} redirect{}; redirects are not followed: set the destination URL to the final address",
                headers
                    .get(reqwest::header::LOCATION)
                    .map(|l| format!(
                        " to {}",
                        clean(&String::from_utf8_lossy(l.as_bytes()), MAX_ERROR_BODY)
                    ))
                    .unwrap_or_default()
            ),
            retry_after: retry_after(headers),
        },
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

/// Classifies a transport error (no HTTP answer): always worth retrying. This includes a
/// refused redirect ([`crate::egress::RedirectRefused`]: the destination URL needs fixing,
/// the traces are kept meanwhile) and a connection the egress policy denied
/// ([`crate::egress::EgressDenied`]: the operator's policy or the name's DNS may change).
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
    let kind = if e.is_redirect() {
        "redirect refused"
    } else if e.is_timeout() {
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

/// Sends `body` (compressed as `compression` says, see [`crate::compression`]) and classifies
/// the answer with [`classify`].
pub async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    mut headers: HeaderMap,
    body: bytes::Bytes,
    compression: crate::compression::Compression,
    timeout: Duration,
) -> Outcome {
    let body = compression.apply(body, &mut headers);
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
                read_capped(r, MAX_ANSWER).await
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
    fn redirects_that_reach_classification_are_retried_naming_the_location() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LOCATION,
            HeaderValue::from_static("https://new.example/x"),
        );
        for s in [300u16, 304, 399] {
            match classify(StatusCode::from_u16(s).unwrap(), &h, "") {
                Outcome::Retry { status, error, .. } => {
                    assert_eq!(status, Some(s));
                    assert!(
                        error.starts_with(&format!("HTTP {s} redirect to https://new.example/x;")),
                        "{error}"
                    );
                }
                other => panic!("{s}: {other:?}"),
            }
        }
    }

    #[test]
    fn messages_are_cleaned_and_capped() {
        assert_eq!(
            clean_message("a\r\nb\u{1b}[31mc\u{0}\u{9b}d\té"),
            "a\\r\\nb\\u{1b}[31mc\\u{0}\\u{9b}d\\té"
        );
        let long = clean_message(&"x".repeat(2000));
        assert_eq!(long.chars().count(), MAX_MESSAGE + 1);
        assert!(long.ends_with('…'));
        let snippet = body_snippet(&format!("  {}  ", "y".repeat(1000)));
        assert_eq!(snippet.chars().count(), MAX_ERROR_BODY + 1);
        match classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &"z".repeat(10_000),
        ) {
            Outcome::Rejected { error, .. } => {
                assert_eq!(
                    error.chars().count(),
                    "HTTP 400: ".len() + MAX_ERROR_BODY + 1
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transport_headers_are_never_sent() {
        let mut m = serde_json::Map::new();
        m.insert("X-Key".into(), "v".into());
        assert!(custom_headers(Some(&m)).is_ok());
        m.insert("Transfer-Encoding".into(), "chunked".into());
        match custom_headers(Some(&m)) {
            Err(ExportError::Config(e)) => {
                assert!(
                    e.starts_with("headers.Transfer-Encoding cannot be set"),
                    "{e}"
                )
            }
            other => panic!("{other:?}"),
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
