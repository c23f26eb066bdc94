//! Shortening a JSON document to a byte budget while it stays valid JSON and the cut is
//! visible, and applying that to content attributes ([`cap_content`]).
//!
//! Content attributes (prompt, completion, tool definitions) are JSON documents carried as
//! strings. When one is longer than the exporter's cap, it is shortened so that it stays valid
//! JSON and the cut is visible:
//!
//! 1. the longest strings inside the document are cut to a common length and end with
//!    [`TRUNCATION_MARKER`], so every message is kept and only the huge ones shrink;
//! 2. if the document is still too long (thousands of small messages), the oldest elements of
//!    the top-level array are dropped, the most recent kept (what Sentry's own SDKs do);
//! 3. as a last resort the JSON text itself is cut and ends with the marker.
//!
//! The span then carries `tracecast.truncated` = `true` and `tracecast.truncated_attributes`,
//! the list of attribute keys that were shortened. Nothing is dropped silently. Used by the
//! `sentry` and `ramp` exporters.

use std::borrow::Cow;

use serde_json::Value;

use crate::otlp::{AttrValue, Attributes};
use crate::truncate;

/// Appended to every string that was cut.
pub const TRUNCATION_MARKER: &str = "…[truncated by tracecast]";
pub use crate::truncate::{TRUNCATED, TRUNCATED_ATTRIBUTES};

/// Shortens each of `keys` that holds a string longer than `max` bytes (see the module docs)
/// and, when any was shortened, adds the `tracecast.truncated*` attributes.
pub fn cap_content(attrs: &mut Attributes<'_, '_>, keys: &[&str], max: usize) {
    let mut cut: Vec<Cow<'static, str>> = Vec::new();
    for key in keys {
        let long = match attrs.get(key) {
            Some(AttrValue::String(s)) if s.len() > max => s.to_string(),
            _ => continue,
        };
        truncate::replace_string(attrs, (*key).to_owned(), fit_json_text(&long, max));
        cut.push(Cow::Owned((*key).to_owned()));
    }
    truncate::flag(attrs, (TRUNCATED, TRUNCATED_ATTRIBUTES), cut);
}

/// `text` (a JSON document, or plain text) shortened to at most `max` bytes.
pub fn fit_json_text(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    match serde_json::from_str::<Value>(text) {
        Ok(v) if v.is_array() || v.is_object() => fit_json(v, max),
        _ => cut_text(text, max),
    }
}

/// `value` serialised in at most `max` bytes, valid JSON whenever that is possible.
pub fn fit_json(value: Value, max: usize) -> String {
    let full = serde_json::to_string(&value).unwrap_or_default();
    if full.len() <= max {
        return full;
    }
    // 1. Cut the longest strings to a common length (binary search on that length).
    let longest = longest_string(&value);
    let (mut lo, mut hi) = (0usize, longest);
    let mut best: Option<String> = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let mut v = value.clone();
        cut_strings(&mut v, mid);
        let s = serde_json::to_string(&v).unwrap_or_default();
        if s.len() <= max {
            best = Some(s);
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if let Some(s) = best {
        return s;
    }
    // 2. Drop the oldest elements of a top-level array (strings cut to nothing but the marker).
    let mut v = value;
    cut_strings(&mut v, 0);
    if let Value::Array(items) = &mut v {
        let mut sizes: Vec<usize> = items
            .iter()
            .map(|i| serde_json::to_string(i).map(|s| s.len() + 1).unwrap_or(1))
            .collect();
        let mut total: usize = 2 + sizes.iter().sum::<usize>();
        let mut drop = 0;
        while total > max && drop + 1 < sizes.len() {
            total -= sizes[drop];
            drop += 1;
        }
        items.drain(..drop);
        sizes.drain(..drop);
        let s = serde_json::to_string(&v).unwrap_or_default();
        if s.len() <= max {
            return s;
        }
    }
    // 3. Cut the text.
    cut_text(&serde_json::to_string(&v).unwrap_or_default(), max)
}

/// Plain text cut at a character boundary so that it and the marker fit in `max` bytes.
fn cut_text(text: &str, max: usize) -> String {
    truncate::cut_with_marker(
        text,
        max.saturating_sub(TRUNCATION_MARKER.len()),
        TRUNCATION_MARKER,
    )
}

fn longest_string(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(longest_string).max().unwrap_or(0),
        Value::Object(o) => o.values().map(longest_string).max().unwrap_or(0),
        _ => 0,
    }
}

/// Cuts every string longer than `len` + the marker to `len` bytes (at a character boundary)
/// and appends the marker.
fn cut_strings(v: &mut Value, len: usize) {
    truncate::shorten_strings(v, len + TRUNCATION_MARKER.len(), len, TRUNCATION_MARKER);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn small_documents_are_untouched() {
        let v = json!([{"role": "user", "content": "hi"}]);
        assert_eq!(fit_json(v.clone(), 1000), v.to_string());
        assert_eq!(fit_json_text("plain", 10), "plain");
    }

    #[test]
    fn long_strings_are_cut_and_the_json_stays_valid() {
        let big = "x".repeat(10_000);
        let v =
            json!([{"role": "system", "content": big}, {"role": "user", "content": "question?"}]);
        let s = fit_json(v, 2_000);
        assert!(s.len() <= 2_000, "{}", s.len());
        let back: Value = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(back[1]["content"], "question?", "short strings are kept");
        let first = back[0]["content"].as_str().unwrap();
        assert!(first.ends_with(TRUNCATION_MARKER) && first.len() > 1_000);
    }

    #[test]
    fn many_messages_drop_the_oldest() {
        let v = Value::Array(
            (0..2_000)
                .map(|i| json!({"role": "user", "n": i}))
                .collect(),
        );
        let s = fit_json(v, 1_000);
        assert!(s.len() <= 1_000);
        let back: Value = serde_json::from_str(&s).expect("valid JSON");
        let items = back.as_array().unwrap();
        assert_eq!(items.last().unwrap()["n"], 1999, "the most recent is kept");
        assert!(items.len() < 2_000);
    }

    #[test]
    fn text_is_cut_at_a_char_boundary() {
        let t = "é".repeat(1_000);
        let s = fit_json_text(&t, 101);
        assert!(s.len() <= 101 && s.ends_with(TRUNCATION_MARKER));
        // A single huge object with one key: the string is cut.
        let s = fit_json(json!({"k": "ü".repeat(5_000)}), 300);
        assert!(s.len() <= 300);
        serde_json::from_str::<Value>(&s).expect("valid JSON");
        // Nothing fits: the text is cut.
        let s = fit_json(json!({"a-very-long-key-name-that-does-not-fit": 1}), 10);
        assert!(s.len() <= 10 + TRUNCATION_MARKER.len());
    }
}
