//! Attributes: borrowed key-values, built through a key-renaming rule (a dialect's
//! [`super::OtlpDialect::attribute_key`], passed in as a function so that this module does not
//! depend on the dialect).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::Value;

/// Which of the (at most two) spans of a generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpanRole {
    /// The span named by `trace.span_name`, parent of the generation span (kind INTERNAL).
    Intermediate,
    /// The LLM call itself (kind CLIENT).
    Generation,
}

/// What a set of attributes belongs to (passed to the key-renaming rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Element {
    Resource,
    Span(SpanRole),
    /// The `exception` event of a failed generation span.
    ExceptionEvent,
}

/// What the key-renaming rule does with a standard attribute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttributeKey {
    /// Send it under its standard key.
    Keep,
    /// Do not send it.
    Drop,
    /// Send it under another key (a `&'static str` costs no allocation).
    Rename(Cow<'static, str>),
}

/// The key-renaming rule: what happens to standard attribute `key` of an `Element`.
pub type KeyRule<'d> = dyn Fn(Element, &str) -> AttributeKey + 'd;

/// The value of an attribute: the OTLP `AnyValue` kinds tracecast sends.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrValue<'a> {
    String(Cow<'a, str>),
    Int(i64),
    /// Always finite ([`Attributes`] skips other doubles).
    Double(f64),
    Bool(bool),
    StringArray(Vec<Cow<'a, str>>),
}

/// One attribute. Keys and values borrow from the generation and from `'static` key names
/// wherever they can, so that building a span allocates little.
#[derive(Debug, Clone, PartialEq)]
pub struct Attr<'a> {
    pub key: Cow<'a, str>,
    pub value: AttrValue<'a>,
}

/// The attributes of one resource, span or event under construction.
///
/// The encoder adds its standard attributes through the dialect's
/// [`super::OtlpDialect::attribute_key`], which may keep, rename or drop each one. The
/// dialect's own hooks ([`super::OtlpDialect::resource_attributes`],
/// [`super::OtlpDialect::span_attributes`]) get an `Attributes` that adds keys verbatim, and
/// may also [`Attributes::remove`] or [`Attributes::retain`] what the encoder added.
///
/// Values OTLP cannot carry are skipped rather than sent broken: non-finite doubles and JSON
/// `null`.
pub struct Attributes<'a, 'd> {
    list: Vec<Attr<'a>>,
    keys: &'d KeyRule<'d>,
    element: Element,
    rename: bool,
}

impl<'a, 'd> Attributes<'a, 'd> {
    /// Attributes of `element` whose standard keys go through `keys` (for a dialect `d`:
    /// `&|e, k| d.attribute_key(e, k)`).
    pub(crate) fn new(keys: &'d KeyRule<'d>, element: Element, capacity: usize) -> Self {
        Attributes {
            list: Vec::with_capacity(capacity),
            keys,
            element,
            rename: true,
        }
    }

    /// Turns key renaming off (for the dialect's own hooks).
    pub(crate) fn verbatim(&mut self) {
        self.rename = false;
    }

    pub(crate) fn into_vec(self) -> Vec<Attr<'a>> {
        self.list
    }

    /// What these attributes belong to.
    pub fn element(&self) -> Element {
        self.element
    }

    /// The key an attribute gets, or `None` when the dialect drops it.
    fn resolve(&self, key: Cow<'a, str>) -> Option<Cow<'a, str>> {
        if !self.rename {
            return Some(key);
        }
        match (self.keys)(self.element, &key) {
            AttributeKey::Keep => Some(key),
            AttributeKey::Drop => None,
            AttributeKey::Rename(k) => Some(k),
        }
    }

    fn add(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl FnOnce() -> Option<AttrValue<'a>>,
    ) -> &mut Self {
        if let Some(key) = self.resolve(key.into())
            && let Some(value) = value()
        {
            self.list.push(Attr { key, value });
        }
        self
    }

    /// A `stringValue`.
    pub fn string(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: impl Into<Cow<'a, str>>,
    ) -> &mut Self {
        self.add(key, || Some(AttrValue::String(value.into())))
    }

    /// A `stringValue` when `value` is `Some`.
    pub fn opt_string(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: Option<&'a str>,
    ) -> &mut Self {
        match value {
            Some(v) => self.string(key, v),
            None => self,
        }
    }

    /// An `intValue`.
    pub fn int(&mut self, key: impl Into<Cow<'a, str>>, value: i64) -> &mut Self {
        self.add(key, || Some(AttrValue::Int(value)))
    }

    /// An `intValue` from an unsigned count (saturating at `i64::MAX`), when `Some`.
    pub fn opt_uint(&mut self, key: impl Into<Cow<'a, str>>, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.int(key, i64::try_from(v).unwrap_or(i64::MAX)),
            None => self,
        }
    }

    /// A `doubleValue`; skipped when not finite.
    pub fn double(&mut self, key: impl Into<Cow<'a, str>>, value: f64) -> &mut Self {
        if !value.is_finite() {
            return self;
        }
        self.add(key, || Some(AttrValue::Double(value)))
    }

    /// A `doubleValue` when `Some` and finite.
    pub fn opt_double(&mut self, key: impl Into<Cow<'a, str>>, value: Option<f64>) -> &mut Self {
        match value {
            Some(v) => self.double(key, v),
            None => self,
        }
    }

    /// A `boolValue`.
    pub fn bool(&mut self, key: impl Into<Cow<'a, str>>, value: bool) -> &mut Self {
        self.add(key, || Some(AttrValue::Bool(value)))
    }

    /// A `boolValue` when `Some`.
    pub fn opt_bool(&mut self, key: impl Into<Cow<'a, str>>, value: Option<bool>) -> &mut Self {
        match value {
            Some(v) => self.bool(key, v),
            None => self,
        }
    }

    /// An `arrayValue` of strings.
    pub fn strings<I, S>(&mut self, key: impl Into<Cow<'a, str>>, values: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<Cow<'a, str>>,
    {
        self.add(key, || {
            Some(AttrValue::StringArray(
                values.into_iter().map(Into::into).collect(),
            ))
        })
    }

    /// A `stringValue` holding `value` serialised as JSON; skipped if it cannot be.
    pub fn json<T: Serialize + ?Sized>(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        value: &T,
    ) -> &mut Self {
        // serde_json's own `to_string` skips the UTF-8 check its output never needs (a
        // `from_utf8` over every message content was 2% of B1's instructions).
        self.add(key, || {
            serde_json::to_string(value)
                .ok()
                .map(|s| AttrValue::String(Cow::Owned(s)))
        })
    }

    /// A JSON document built by `write` as a `stringValue` (written only when the dialect
    /// keeps the key).
    pub(crate) fn json_text(
        &mut self,
        key: impl Into<Cow<'a, str>>,
        write: impl FnOnce(&mut String),
    ) -> &mut Self {
        self.add(key, || {
            // Content is rarely small: start with room for it.
            let mut out = String::with_capacity(1024);
            write(&mut out);
            Some(AttrValue::String(Cow::Owned(out)))
        })
    }

    /// A JSON value with its natural OTLP type: strings as `stringValue`, integers as
    /// `intValue` (beyond `i64`: `stringValue` of the decimal), other numbers as `doubleValue`,
    /// booleans as `boolValue`, objects and arrays as a JSON `stringValue`. `null` is skipped.
    pub fn value(&mut self, key: impl Into<Cow<'a, str>>, value: &'a Value) -> &mut Self {
        if value.is_null() {
            return self;
        }
        self.add(key, || json_value(value))
    }

    /// [`Self::value`] for an owned JSON value.
    pub fn owned_value(&mut self, key: impl Into<Cow<'a, str>>, value: Value) -> &mut Self {
        if value.is_null() {
            return self;
        }
        self.add(key, || owned_json_value(value))
    }

    /// Adds a ready attribute verbatim (no renaming, no checks).
    pub fn push(&mut self, attr: Attr<'a>) -> &mut Self {
        self.list.push(attr);
        self
    }

    /// Sets `key` to `value`, replacing every attribute of that key added before (moved to the
    /// end of the list): the value set last wins.
    pub fn set(&mut self, key: impl Into<Cow<'a, str>>, value: AttrValue<'a>) -> &mut Self {
        let key = key.into();
        self.remove(&key);
        self.list.push(Attr { key, value });
        self
    }

    /// The value of the first attribute with this key.
    pub fn get(&self, key: &str) -> Option<&AttrValue<'a>> {
        self.list.iter().find(|a| a.key == key).map(|a| &a.value)
    }

    /// Removes every attribute with this key; returns how many there were.
    pub fn remove(&mut self, key: &str) -> usize {
        let before = self.list.len();
        self.list.retain(|a| a.key != key);
        before - self.list.len()
    }

    /// Keeps only the attributes for which `keep` says true.
    pub fn retain(&mut self, keep: impl FnMut(&Attr<'a>) -> bool) {
        self.list.retain(keep);
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Attr<'a>> {
        self.list.iter()
    }
}

/// `prefix` + `name`, for attribute families such as `trace.metadata.<key>`.
pub(crate) fn join(prefix: &str, name: &str) -> String {
    let mut k = String::with_capacity(prefix.len() + name.len());
    k.push_str(prefix);
    k.push_str(name);
    k
}

fn number(n: &serde_json::Number) -> Option<AttrValue<'static>> {
    if let Some(i) = n.as_i64() {
        Some(AttrValue::Int(i))
    } else if n.is_u64() {
        Some(AttrValue::String(Cow::Owned(n.to_string())))
    } else {
        n.as_f64().filter(|f| f.is_finite()).map(AttrValue::Double)
    }
}

/// The attribute value of a borrowed JSON value (see [`Attributes::value`]).
pub(crate) fn json_value(value: &Value) -> Option<AttrValue<'_>> {
    match value {
        Value::Null => None,
        Value::Bool(b) => Some(AttrValue::Bool(*b)),
        Value::String(s) => Some(AttrValue::String(Cow::Borrowed(s))),
        Value::Number(n) => number(n),
        Value::Array(_) | Value::Object(_) => serde_json::to_string(value)
            .ok()
            .map(|s| AttrValue::String(Cow::Owned(s))),
    }
}

fn owned_json_value(value: Value) -> Option<AttrValue<'static>> {
    match value {
        Value::String(s) => Some(AttrValue::String(Cow::Owned(s))),
        Value::Null => None,
        Value::Bool(b) => Some(AttrValue::Bool(b)),
        Value::Number(n) => number(&n),
        other => serde_json::to_string(&other)
            .ok()
            .map(|s| AttrValue::String(Cow::Owned(s))),
    }
}
