//! Visible truncation, shared by the exporters: cutting text on a character boundary, cutting
//! the strings inside a JSON value with a marker, replacing an attribute by its shortened value,
//! and flagging what was cut (`tracecast.truncated` = `true` and
//! `tracecast.truncated_attributes`, the keys of the attributes cut).
//!
//! Markers, limits and flag names stay each platform's own (see `docs/destinations/<type>.md`):
//! the functions here take them as parameters.

use std::borrow::Cow;

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
