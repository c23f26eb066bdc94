//! A platform's limits on one OTLP attribute, applied visibly before sending.
//!
//! OTLP platforms bound each attribute (New Relic: 4095-character values, 255-character names,
//! 64-entry arrays; Grafana Tempo: `max_attribute_bytes`, 2048 bytes by default, on keys and
//! string values) and cut or drop what is over without telling the sender. [`truncate_attributes`]
//! applies such [`ValueLimits`] first, so what is cut is visible:
//!
//! - a string value over the limit is cut and ends with a marker saying how long it was
//!   (`…[truncated: N chars]`, or `…[truncated: N bytes]` for byte limits); the marker counts
//!   towards the limit, so the platform keeps it;
//! - an array over the limit keeps its first entries (each string in it limited as above);
//! - a key over the limit is cut (no marker: keys are names);
//! - every such attribute is listed in `tracecast.truncated_attributes` and `tracecast.truncated`
//!   is `true` on that span (`tracecast.resource.truncated*` on a resource, which platforms such
//!   as New Relic copy onto every span). Nothing is cut silently.
//!
//! Cuts are on character boundaries, so the result is always valid UTF-8.

use std::borrow::Cow;

use crate::otlp::{Attr, AttrValue, Attributes, Element};

/// `true` on a span some of whose attributes were truncated.
pub const TRUNCATED_FLAG: &str = crate::truncate::TRUNCATED;
/// The keys (after truncation) of the attributes that were truncated, in order.
pub const TRUNCATED_KEYS: &str = crate::truncate::TRUNCATED_ATTRIBUTES;
/// [`TRUNCATED_FLAG`] on a resource (platforms such as New Relic copy resource attributes onto
/// every span, so the resource's flags must not collide with the span's).
pub const RESOURCE_TRUNCATED_FLAG: &str = "tracecast.resource.truncated";
/// [`TRUNCATED_KEYS`] on a resource.
pub const RESOURCE_TRUNCATED_KEYS: &str = "tracecast.resource.truncated_attributes";

/// What a length limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Unicode scalar values (New Relic, and tracecast's own bounds).
    Chars,
    /// UTF-8 bytes (Grafana Tempo).
    Bytes,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::Chars => "chars",
            Unit::Bytes => "bytes",
        }
    }

    fn len(self, s: &str) -> usize {
        match self {
            Unit::Chars => s.chars().count(),
            Unit::Bytes => s.len(),
        }
    }

    /// Whether `s` is longer than `max` (cheap when `s` has at most `max` bytes).
    fn over(self, s: &str, max: usize) -> bool {
        s.len() > max && (self == Unit::Bytes || s.chars().count() > max)
    }

    /// The longest prefix of `s` of at most `max` units, ending on a character boundary.
    fn prefix(self, s: &str, max: usize) -> &str {
        match self {
            Unit::Chars => {
                let cut = s.char_indices().nth(max).map_or(s.len(), |(i, _)| i);
                &s[..cut]
            }
            Unit::Bytes => crate::truncate::prefix(s, max),
        }
    }
}

/// A platform's limits on one attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueLimits {
    /// Longest string value, marker included.
    pub max_value: usize,
    /// Longest key.
    pub max_key: usize,
    /// Most entries of an array value.
    pub max_array_len: usize,
    /// What `max_value` and `max_key` count.
    pub unit: Unit,
}

/// The marker that ends a truncated string value (`original` in `unit`s).
pub fn truncation_marker(original: usize, unit: Unit) -> String {
    format!("…[truncated: {original} {}]", unit.name())
}

/// `s` cut to at most `max` units including the marker, or `None` when it fits.
pub fn truncate_str(s: &str, max: usize, unit: Unit) -> Option<String> {
    if !unit.over(s, max) {
        return None;
    }
    let marker = truncation_marker(unit.len(s), unit);
    let kept = unit.prefix(s, max.saturating_sub(unit.len(&marker)));
    let mut out = String::with_capacity(kept.len() + marker.len());
    out.push_str(kept);
    out.push_str(&marker);
    Some(out)
}

impl ValueLimits {
    /// Whether an attribute breaks a limit.
    fn over(&self, a: &Attr<'_>) -> bool {
        let long = |s: &str| self.unit.over(s, self.max_value);
        self.unit.over(&a.key, self.max_key)
            || match &a.value {
                AttrValue::String(s) => long(s),
                AttrValue::StringArray(items) => {
                    items.len() > self.max_array_len || items.iter().any(|s| long(s))
                }
                _ => false,
            }
    }

    fn value<'a>(&self, s: Cow<'a, str>) -> Cow<'a, str> {
        match truncate_str(&s, self.max_value, self.unit) {
            Some(t) => Cow::Owned(t),
            None => s,
        }
    }
}

/// Applies `limits` to every attribute (see the module docs). Cheap when nothing is over.
pub fn truncate_attributes(attrs: &mut Attributes<'_, '_>, limits: &ValueLimits) {
    if !attrs.iter().any(|a| limits.over(a)) {
        return;
    }
    let all: Vec<Attr<'_>> = attrs.iter().cloned().collect();
    attrs.retain(|_| false);
    let mut truncated: Vec<Cow<'_, str>> = Vec::new();
    for mut a in all {
        if limits.over(&a) {
            if limits.unit.over(&a.key, limits.max_key) {
                a.key = Cow::Owned(limits.unit.prefix(&a.key, limits.max_key).to_owned());
            }
            a.value = match a.value {
                AttrValue::String(s) => AttrValue::String(limits.value(s)),
                AttrValue::StringArray(items) => AttrValue::StringArray(
                    items
                        .into_iter()
                        .take(limits.max_array_len)
                        .map(|s| limits.value(s))
                        .collect(),
                ),
                other => other,
            };
            truncated.push(a.key.clone());
        }
        attrs.push(a);
    }
    let keys = if attrs.element() == Element::Resource {
        (RESOURCE_TRUNCATED_FLAG, RESOURCE_TRUNCATED_KEYS)
    } else {
        (TRUNCATED_FLAG, TRUNCATED_KEYS)
    };
    truncated.truncate(limits.max_array_len);
    crate::truncate::flag(attrs, keys, truncated);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_limits_keep_the_limit_and_say_so() {
        assert_eq!(truncate_str("short", 10, Unit::Chars), None);
        let long = "é".repeat(5000);
        let t = truncate_str(&long, 4095, Unit::Chars).unwrap();
        assert_eq!(t.chars().count(), 4095);
        assert!(t.ends_with("…[truncated: 5000 chars]"), "{t}");
        assert!(t.starts_with("éé"));
        // A limit smaller than the marker still never panics.
        assert!(truncate_str(&long, 3, Unit::Chars).is_some());
        // Multi-byte strings under the limit in chars but over it in bytes are kept.
        assert_eq!(truncate_str(&"é".repeat(10), 10, Unit::Chars), None);
    }

    #[test]
    fn byte_limits_count_utf8_bytes_and_cut_on_char_boundaries() {
        // 10 chars, 20 bytes: over a 10-byte limit.
        assert!(truncate_str(&"é".repeat(10), 10, Unit::Bytes).is_some());
        assert_eq!(truncate_str(&"a".repeat(2048), 2048, Unit::Bytes), None);
        let long = "é".repeat(3000); // 6000 bytes
        let t = truncate_str(&long, 2048, Unit::Bytes).unwrap();
        assert!(t.len() <= 2048, "{}", t.len());
        assert!(t.len() >= 2046, "keeps as much as fits: {}", t.len());
        assert!(t.ends_with("…[truncated: 6000 bytes]"), "{t}");
        assert!(truncate_str(&long, 1, Unit::Bytes).is_some());
    }
}
