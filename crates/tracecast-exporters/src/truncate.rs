//! Visible truncation, shared by the exporters: cutting text on a character boundary, cutting
//! the strings inside a JSON value with a marker, replacing an attribute by its shortened value,
//! and flagging what was cut (`tracecast.truncated` = `true` and
//! `tracecast.truncated_attributes`, the keys of the attributes cut).
//!
//! Markers, limits and flag names stay each platform's own (see `docs/destinations/<type>.md`):
//! the functions here take them as parameters.

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

use crate::otlp::{Attr, AttrValue, Attributes};

/// `true` on a span whose content was shortened.
pub const TRUNCATED: &str = "tracecast.truncated";
/// The keys of the shortened attributes (a string array).
pub const TRUNCATED_ATTRIBUTES: &str = "tracecast.truncated_attributes";

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn prefix(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// [`prefix`] of `s` (at most `keep` bytes) followed by `marker`.
pub fn cut_with_marker(s: &str, keep: usize, marker: &str) -> String {
    let kept = prefix(s, keep);
    let mut out = String::with_capacity(kept.len() + marker.len());
    out.push_str(kept);
    out.push_str(marker);
    out
}

/// Cuts every string inside `v` (keys kept) that is longer than `over` bytes to its first
/// `keep` bytes (at a character boundary) and appends `marker`. Returns whether anything was
/// cut.
pub fn shorten_strings(v: &mut Value, over: usize, keep: usize, marker: &str) -> bool {
    match v {
        Value::String(s) if s.len() > over => {
            let end = prefix(s, keep).len();
            s.truncate(end);
            s.push_str(marker);
            true
        }
        Value::Array(a) => a
            .iter_mut()
            .fold(false, |acc, x| shorten_strings(x, over, keep, marker) | acc),
        Value::Object(o) => o
            .values_mut()
            .fold(false, |acc, x| shorten_strings(x, over, keep, marker) | acc),
        _ => false,
    }
}

/// Sets the string attribute `key` to its shortened `value` (moved to the end of the list).
pub fn replace_string<'a>(
    attrs: &mut Attributes<'a, '_>,
    key: impl Into<Cow<'a, str>>,
    value: String,
) {
    attrs.set(key, AttrValue::String(Cow::Owned(value)));
}

/// The marker that replaces an oversized attribute value in [`replace_oversized`]: still valid
/// JSON, so platforms that parse the attribute as JSON show it, with what was cut.
#[derive(Serialize)]
struct TruncationMarker<'s> {
    truncated: bool,
    original_bytes: usize,
    kept_bytes: usize,
    note: &'static str,
    preview: &'s str,
}

/// Replaces every string attribute longer than `cap` bytes (in practice the prompt, the
/// completion, tool definitions, or an outsized custom metadata value) with a JSON truncation
/// marker `{"truncated":true,"original_bytes":N,"kept_bytes":K,"note":"...","preview":"<first
/// K bytes>"}` (`K` at most `preview_bytes`), in place. Returns whether anything was replaced;
/// the caller then flags the span in the platform's own terms.
pub fn replace_oversized(attrs: &mut Attributes<'_, '_>, cap: usize, preview_bytes: usize) -> bool {
    let oversized: Vec<String> = attrs
        .iter()
        .filter(|a| matches!(&a.value, AttrValue::String(s) if s.len() > cap))
        .map(|a| a.key.to_string())
        .collect();
    if oversized.is_empty() {
        return false;
    }
    let mut replaced = Vec::with_capacity(oversized.len());
    for key in &oversized {
        if let Some(AttrValue::String(s)) = attrs.get(key) {
            let preview = prefix(s, preview_bytes);
            if let Ok(marker) = serde_json::to_string(&TruncationMarker {
                truncated: true,
                original_bytes: s.len(),
                kept_bytes: preview.len(),
                note: "truncated by tracecast: the value exceeded the per-attribute limit",
                preview,
            }) {
                replaced.push((key.clone(), marker));
            }
        }
    }
    for (key, marker) in replaced {
        replace_string(attrs, key, marker);
    }
    true
}

/// Flags a span (or resource) some of whose attributes were shortened: `flag_key` = `true` and
/// `keys_key` = the keys cut. Nothing is added when `cut` is empty.
pub fn flag<'a>(
    attrs: &mut Attributes<'a, '_>,
    (flag_key, keys_key): (&'static str, &'static str),
    cut: Vec<Cow<'a, str>>,
) {
    if cut.is_empty() {
        return;
    }
    attrs.push(Attr {
        key: Cow::Borrowed(flag_key),
        value: AttrValue::Bool(true),
    });
    attrs.push(Attr {
        key: Cow::Borrowed(keys_key),
        value: AttrValue::StringArray(cut),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_end_on_char_boundaries() {
        assert_eq!(prefix("héllo", 2), "h");
        assert_eq!(prefix("héllo", 3), "hé");
        assert_eq!(prefix("abc", 10), "abc");
        assert_eq!(cut_with_marker("héllo", 2, "…"), "h…");
    }

    #[test]
    fn strings_inside_json_are_cut_with_the_marker() {
        let mut v = serde_json::json!({"a": "xxxxxxxx", "b": ["yyyyyyyy", 1], "c": "zz"});
        assert!(shorten_strings(&mut v, 3, 3, "…"));
        assert_eq!(
            v,
            serde_json::json!({"a": "xxx…", "b": ["yyy…", 1], "c": "zz"})
        );
        assert!(!shorten_strings(&mut v, 100, 3, "…"));
    }
}
