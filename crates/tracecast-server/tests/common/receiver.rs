//! A programmable HTTP receiver on 127.0.0.1:0: records every request and answers as told
//! (200, a status with or without Retry-After, or a stall).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;

#[derive(Clone, Debug)]
pub enum Mode {
    Ok,
    Status(u16),
    /// The status with `Retry-After: <secs>`.
    RetryAfter(u16, u64),
    /// Never answers (until the mode changes).
    Stall,
}

/// A request as the receiver saw it; a gzipped body (`Content-Encoding: gzip`) is inflated,
/// as a real receiver does (the header stays, for tests that check it).
#[derive(Clone, Debug)]
pub struct Captured {
    pub method: Method,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
    pub answered: u16,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Captured>,
    mode: Option<Mode>,
    /// Answers to give before falling back to `mode`.
    script: VecDeque<Mode>,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    changed: Arc<tokio::sync::Notify>,
}

async fn handle(
    State(r): State<Receiver>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    loop {
        let mode = {
            let mut i = r.inner.lock().unwrap();
            i.script
                .pop_front()
                .or_else(|| i.mode.clone())
                .unwrap_or(Mode::Ok)
        };
        let (status, retry_after) = match mode {
            Mode::Ok => (200, None),
            Mode::Status(s) => (s, None),
            Mode::RetryAfter(s, secs) => (s, Some(secs)),
            Mode::Stall => {
                // Wait for a mode change, then answer according to the new mode.
                let _ = tokio::time::timeout(Duration::from_secs(60), r.changed.notified()).await;
                continue;
            }
        };
        r.inner.lock().unwrap().requests.push(Captured {
            method: method.clone(),
            headers: headers.clone(),
            body: inflate(&headers, &body),
            at: Instant::now(),
            answered: status,
        });
        let code = StatusCode::from_u16(status).unwrap();
        let mut resp = (
            code,
            if status < 300 {
                "{}".to_string()
            } else {
                format!("{{\"error\":\"answer {status}\"}}")
            },
        )
            .into_response();
        if let Some(s) = retry_after {
            resp.headers_mut()
                .insert("retry-after", s.to_string().parse().unwrap());
        }
        return resp;
    }
}

/// `body` inflated when `headers` say it is gzipped.
pub fn inflate(headers: &HeaderMap, body: &Bytes) -> Bytes {
    use std::io::Read;
    match headers.get("content-encoding").map(|v| v.as_bytes()) {
        None => body.clone(),
        Some(b"gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&body[..])
                .read_to_end(&mut out)
                .expect("a valid gzip body");
            out.into()
        }
        Some(other) => panic!(
            "unexpected Content-Encoding {:?}",
            String::from_utf8_lossy(other)
        ),
    }
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let r = Receiver {
            url: format!("http://{addr}/v1/traces"),
            inner: Arc::new(Mutex::new(Inner::default())),
            changed: Arc::new(tokio::sync::Notify::new()),
        };
        let app = axum::Router::new().fallback(handle).with_state(r.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    pub fn set_mode(&self, mode: Mode) {
        self.inner.lock().unwrap().mode = Some(mode);
        self.changed.notify_waiters();
    }

    /// Answers the next requests with these, in order, then falls back to the mode.
    pub fn script(&self, answers: impl IntoIterator<Item = Mode>) {
        self.inner.lock().unwrap().script.extend(answers);
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Every span of every successfully answered request, decoded with the OTLP definitions.
    pub fn spans(&self) -> Vec<Span> {
        self.accepted_requests()
            .into_iter()
            .flat_map(|r| r.resource_spans)
            .flat_map(|rs| rs.scope_spans)
            .flat_map(|ss| ss.spans)
            .collect()
    }

    pub fn accepted_requests(&self) -> Vec<ExportTraceServiceRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered < 300)
            .map(|r| decode_otlp(&r))
            .collect()
    }

    /// Generation ids (`gen_ai.response.id`) of every accepted span.
    pub fn generation_ids(&self) -> Vec<String> {
        self.spans().iter().filter_map(generation_id).collect()
    }

    /// Waits until `cond` holds for this receiver, failing after `secs`.
    pub async fn wait(&self, secs: u64, what: &str, cond: impl Fn(&Receiver) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !cond(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} ({} requests so far)",
                self.requests().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn attr<'a>(
    span: &'a Span,
    key: &str,
) -> Option<&'a opentelemetry_proto::tonic::common::v1::any_value::Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

/// The generation id a span carries (`gen_ai.response.id`).
pub fn generation_id(span: &Span) -> Option<String> {
    string_attr(span, "gen_ai.response.id")
}

/// An OTLP export request, protobuf or JSON as its content type says.
pub fn decode_otlp(r: &Captured) -> ExportTraceServiceRequest {
    let protobuf = r
        .headers
        .get("content-type")
        .is_some_and(|v| v.as_bytes() == b"application/x-protobuf");
    if protobuf {
        <ExportTraceServiceRequest as prost::Message>::decode(&r.body[..])
            .expect("valid OTLP protobuf")
    } else {
        serde_json::from_slice::<ExportTraceServiceRequest>(&r.body).expect("valid OTLP/JSON")
    }
}

/// The generation ids in an OTLP/JSON body, decoded with the OTLP definitions; `None` when
/// it is not valid OTLP/JSON.
pub fn generation_ids_in(body: &[u8]) -> Option<Vec<String>> {
    let req = serde_json::from_slice::<ExportTraceServiceRequest>(body).ok()?;
    Some(
        req.resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
            .filter_map(generation_id)
            .collect(),
    )
}

pub fn string_attr(span: &Span, key: &str) -> Option<String> {
    match attr(span, key)? {
        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

pub fn int_attr(span: &Span, key: &str) -> Option<i64> {
    match attr(span, key)? {
        opentelemetry_proto::tonic::common::v1::any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

pub fn double_attr(span: &Span, key: &str) -> Option<f64> {
    match attr(span, key)? {
        opentelemetry_proto::tonic::common::v1::any_value::Value::DoubleValue(d) => Some(*d),
        _ => None,
    }
}
