//! The spans of one generation as borrowed data, and their two encodings: OTLP/JSON written
//! directly, and `opentelemetry-proto` messages (for protobuf, and as the reference the JSON is
//! tested against).

use std::borrow::Cow;

use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, SpanKind};
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::attributes::{Attr, AttrValue};

/// A span event (the `exception` event of a failed call).
#[derive(Debug, Clone, PartialEq)]
pub struct EventData<'a> {
    pub time_unix_nano: u64,
    pub name: Cow<'a, str>,
    pub attributes: Vec<Attr<'a>>,
}

/// One span.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanData<'a> {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// `None` for a root span.
    pub parent_span_id: Option<[u8; 8]>,
    pub name: Cow<'a, str>,
    pub kind: SpanKind,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<Attr<'a>>,
    pub events: Vec<EventData<'a>>,
    pub status_code: StatusCode,
    /// Empty unless the status is an error.
    pub status_message: Cow<'a, str>,
}

/// Everything one generation emits: one `ResourceSpans` with one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationSpans<'a> {
    pub resource: Vec<Attr<'a>>,
    pub scope_name: Cow<'static, str>,
    pub scope_version: Cow<'static, str>,
    /// The intermediate span (when there is one), then the generation span.
    pub spans: Vec<SpanData<'a>>,
}

// ---- protobuf messages ----

fn any(v: &AttrValue<'_>) -> Any {
    match v {
        AttrValue::String(s) => Any::StringValue(s.to_string()),
        AttrValue::Int(i) => Any::IntValue(*i),
        AttrValue::Double(d) => Any::DoubleValue(*d),
        AttrValue::Bool(b) => Any::BoolValue(*b),
        AttrValue::StringArray(items) => Any::ArrayValue(ArrayValue {
            values: items
                .iter()
                .map(|s| AnyValue {
                    value: Some(Any::StringValue(s.to_string())),
                })
                .collect(),
        }),
    }
}

fn key_values(attrs: &[Attr<'_>]) -> Vec<KeyValue> {
    attrs
        .iter()
        .map(|a| KeyValue {
            key: a.key.to_string(),
            value: Some(AnyValue {
                value: Some(any(&a.value)),
            }),
            key_strindex: 0,
        })
        .collect()
}

impl SpanData<'_> {
    pub fn to_proto(&self) -> Span {
        Span {
            trace_id: self.trace_id.to_vec(),
            span_id: self.span_id.to_vec(),
            parent_span_id: self.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: self.name.to_string(),
            kind: self.kind as i32,
            start_time_unix_nano: self.start_time_unix_nano,
            end_time_unix_nano: self.end_time_unix_nano,
            attributes: key_values(&self.attributes),
            events: self
                .events
                .iter()
                .map(|e| Event {
                    time_unix_nano: e.time_unix_nano,
                    name: e.name.to_string(),
                    attributes: key_values(&e.attributes),
                    dropped_attributes_count: 0,
                })
                .collect(),
            status: Some(Status {
                message: self.status_message.to_string(),
                code: self.status_code as i32,
            }),
            ..Default::default()
        }
    }
}

impl GenerationSpans<'_> {
    /// The `ResourceSpans` message.
    pub fn to_proto(&self) -> ResourceSpans {
        ResourceSpans {
            resource: Some(Resource {
                attributes: key_values(&self.resource),
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: self.scope_name.to_string(),
                    version: self.scope_version.to_string(),
                    ..Default::default()
                }),
                spans: self.spans.iter().map(SpanData::to_proto).collect(),
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }
    }

    /// Appends the `ResourceSpans` as OTLP/JSON: lowerCamelCase keys, hex ids, 64-bit integers
    /// as decimal strings, enums as integers, fields at their default value left out.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(br#"{"resource":{"attributes":"#);
        write_attrs(out, &self.resource)?;
        out.extend_from_slice(br#"},"scopeSpans":[{"scope":{"name":"#);
        write_str(out, &self.scope_name)?;
        if !self.scope_version.is_empty() {
            out.extend_from_slice(br#","version":"#);
            write_str(out, &self.scope_version)?;
        }
        out.extend_from_slice(br#"},"spans":["#);
        for (i, span) in self.spans.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            write_span(out, span)?;
        }
        out.extend_from_slice(b"]}]}");
        Ok(())
    }
}

// ---- OTLP/JSON ----

const ONES: u64 = 0x0101_0101_0101_0101;
const HIGHS: u64 = 0x8080_8080_8080_8080;

/// The high bit of each of the 8 bytes of `w` that JSON must escape (`"`, `\\` or below 0x20),
/// possibly also of bytes above the lowest such byte (the classic has-zero-byte and
/// has-less-than tricks): zero exactly when none does, and the lowest set bit is exact.
fn escape_mask(w: u64) -> u64 {
    let below_space = w.wrapping_sub(ONES * 0x20) & !w;
    let q = w ^ (ONES * u64::from(b'"'));
    let quote = q.wrapping_sub(ONES) & !q;
    let b = w ^ (ONES * u64::from(b'\\'));
    let backslash = b.wrapping_sub(ONES) & !b;
    (below_space | quote | backslash) & HIGHS
}

/// How serde_json writes the control characters that have no short escape.
const CONTROL: [&str; 32] = [
    "\\u0000", "\\u0001", "\\u0002", "\\u0003", "\\u0004", "\\u0005", "\\u0006", "\\u0007", "\\b",
    "\\t", "\\n", "\\u000b", "\\f", "\\r", "\\u000e", "\\u000f", "\\u0010", "\\u0011", "\\u0012",
    "\\u0013", "\\u0014", "\\u0015", "\\u0016", "\\u0017", "\\u0018", "\\u0019", "\\u001a",
    "\\u001b", "\\u001c", "\\u001d", "\\u001e", "\\u001f",
];

/// The contents of a JSON string (without its quotes), escaped exactly as serde_json escapes
/// it, as pieces: runs that need no escaping and escape sequences. Runs are found 8 bytes at a
/// time: message contents, and the JSON documents carried as string attributes (a quote every
/// few bytes), made serde_json's byte-by-byte escaper the largest single cost of OTLP encoding
/// (bench/RESULTS.md).
#[inline]
fn escape_pieces<'s>(s: &'s str, mut emit: impl FnMut(&'s str)) {
    let bytes = s.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(chunk) = bytes.get(i..i + 8) {
            let m = escape_mask(u64::from_le_bytes(chunk.try_into().expect("8 bytes")));
            if m == 0 {
                i += 8;
                continue;
            }
            // The lowest flagged byte is exact (the tricks only over-flag above a hit).
            i += (m.trailing_zeros() / 8) as usize;
        }
        let esc = match bytes[i] {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b @ 0x00..=0x1f => CONTROL[usize::from(b)],
            _ => {
                i += 1;
                continue;
            }
        };
        // `i` is at an ASCII byte, so both slices end on character boundaries.
        emit(&s[start..i]);
        emit(esc);
        i += 1;
        start = i;
    }
    emit(&s[start..]);
}

/// A JSON string into a byte buffer.
pub(crate) fn write_str(out: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    out.reserve(s.len() + 2);
    out.push(b'"');
    escape_pieces(s, |p| out.extend_from_slice(p.as_bytes()));
    out.push(b'"');
    Ok(())
}

/// A JSON string into a `String`.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    escape_pieces(s, |p| out.push_str(p));
    out.push('"');
}

/// A JSON value as serde_json writes it (compact, object keys in the map's order), with the
/// escaper above.
pub(crate) fn push_json_value(out: &mut String, v: &serde_json::Value) {
    use serde_json::Value;
    use std::fmt::Write;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // serde_json writes numbers as their Display does (itoa, and the same shortest form
        // for finite floats).
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_json_str(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                push_json_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 0x0f)]);
    }
    out.push(b'"');
}

/// A 64-bit integer as a JSON string, as OTLP/JSON requires.
fn write_quoted_int<T: serde::Serialize>(out: &mut Vec<u8>, n: T) -> serde_json::Result<()> {
    out.push(b'"');
    serde_json::to_writer(&mut *out, &n)?;
    out.push(b'"');
    Ok(())
}

fn write_value(out: &mut Vec<u8>, v: &AttrValue<'_>) -> serde_json::Result<()> {
    match v {
        AttrValue::String(s) => {
            out.extend_from_slice(br#"{"stringValue":"#);
            write_str(out, s)?;
        }
        AttrValue::Int(i) => {
            out.extend_from_slice(br#"{"intValue":"#);
            write_quoted_int(out, *i)?;
        }
        AttrValue::Double(d) => {
            out.extend_from_slice(br#"{"doubleValue":"#);
            serde_json::to_writer(&mut *out, d)?;
        }
        AttrValue::Bool(b) => {
            out.extend_from_slice(if *b {
                br#"{"boolValue":true"#
            } else {
                br#"{"boolValue":false"#
            });
        }
        AttrValue::StringArray(items) => {
            out.extend_from_slice(br#"{"arrayValue":{"values":["#);
            for (i, s) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(br#"{"stringValue":"#);
                write_str(out, s)?;
                out.push(b'}');
            }
            out.extend_from_slice(b"]}");
        }
    }
    out.push(b'}');
    Ok(())
}

fn write_attrs(out: &mut Vec<u8>, attrs: &[Attr<'_>]) -> serde_json::Result<()> {
    out.push(b'[');
    for (i, a) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"key":"#);
        write_str(out, &a.key)?;
        out.extend_from_slice(br#","value":"#);
        write_value(out, &a.value)?;
        out.push(b'}');
    }
    out.push(b']');
    Ok(())
}

fn write_span(out: &mut Vec<u8>, s: &SpanData<'_>) -> serde_json::Result<()> {
    out.extend_from_slice(br#"{"traceId":"#);
    write_hex(out, &s.trace_id);
    out.extend_from_slice(br#","spanId":"#);
    write_hex(out, &s.span_id);
    if let Some(parent) = &s.parent_span_id {
        out.extend_from_slice(br#","parentSpanId":"#);
        write_hex(out, parent);
    }
    out.extend_from_slice(br#","name":"#);
    write_str(out, &s.name)?;
    out.extend_from_slice(br#","kind":"#);
    serde_json::to_writer(&mut *out, &(s.kind as i32))?;
    out.extend_from_slice(br#","startTimeUnixNano":"#);
    write_quoted_int(out, s.start_time_unix_nano)?;
    out.extend_from_slice(br#","endTimeUnixNano":"#);
    write_quoted_int(out, s.end_time_unix_nano)?;
    out.extend_from_slice(br#","attributes":"#);
    write_attrs(out, &s.attributes)?;
    if !s.events.is_empty() {
        out.extend_from_slice(br#","events":["#);
        for (i, e) in s.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"timeUnixNano":"#);
            write_quoted_int(out, e.time_unix_nano)?;
            out.extend_from_slice(br#","name":"#);
            write_str(out, &e.name)?;
            out.extend_from_slice(br#","attributes":"#);
            write_attrs(out, &e.attributes)?;
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(br#","status":{"#);
    if !s.status_message.is_empty() {
        out.extend_from_slice(br#""message":"#);
        write_str(out, &s.status_message)?;
        out.push(b',');
    }
    out.extend_from_slice(br#""code":"#);
    serde_json::to_writer(&mut *out, &(s.status_code as i32))?;
    out.extend_from_slice(b"}}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_detection_matches_serde_json() {
        let mut samples: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "gen_ai.usage.input_tokens".into(),
            "ünïcødé ✓ \u{7f}".into(),
        ];
        for special in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\t'] {
            for pos in 0..20 {
                let mut s: String = "x".repeat(pos);
                s.push(special);
                s.push_str("tail-of-some-length");
                samples.push(s);
            }
        }
        for b in 0u8..=0x7f {
            samples.push(format!("abcdefg{}hijklmnop", b as char));
            samples.push(format!("{}", b as char).repeat(17));
        }
        // Escapes at every position of a word, next to multi-byte characters, in a JSON
        // document carried as a string.
        for pos in 0..24 {
            let mut s: String = "é".repeat(pos / 2) + &"y".repeat(pos % 2);
            s.push_str("\"\\\u{1}\u{8}\u{c}\u{7f}€\"");
            s.push_str(&"ab".repeat(pos));
            samples.push(s);
        }
        samples.push(
            serde_json::json!({"messages": [{"role": "user", "content": "say \"hi\"\n"}]})
                .to_string(),
        );
        for s in &samples {
            let mut ours = Vec::new();
            write_str(&mut ours, s).unwrap();
            assert_eq!(ours, serde_json::to_vec(s).unwrap(), "{s:?}");
            let mut text = String::new();
            push_json_str(&mut text, s);
            assert_eq!(text, serde_json::to_string(s).unwrap());
        }
        let value = serde_json::json!({
            "z": [1, -2, 2.5, 1e300, 0.1, u64::MAX, i64::MIN, null, true, false],
            "a": {"nested": samples, "empty": {}, "list": []},
        });
        let mut text = String::new();
        push_json_value(&mut text, &value);
        assert_eq!(text, serde_json::to_string(&value).unwrap());
    }
}
