//! How much JSON one export may turn into: the size rules of `/api/v1/generations` (a record
//! nests at most [`MAX_DEPTH`] deep and holds at most [`MAX_VALUES_PER_RECORD`] JSON values, a
//! request at most [`MAX_VALUES_PER_REQUEST`]), applied to the JSON text that spans carry in
//! attributes (messages, tool definitions, request bodies, metadata) and to the records built
//! from them.
//!
//! JSON ingest measures each record's bytes before parsing it. Here the texts are parsed by a
//! seed that counts values and depth as it builds them and stops at the first one over the
//! limit: the same bound on memory (a small export of tiny values, `[[],[],...]`, cannot turn
//! into gigabytes of parsed values) without a second pass over the text.

use std::cell::{Cell, RefCell};
use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use tracecast_model::generation::Generation;

use crate::api::generations::{MAX_DEPTH, MAX_VALUES_PER_RECORD, MAX_VALUES_PER_REQUEST};

/// The JSON budget of one export: what its span may still parse, and the export as a whole.
pub struct Budget {
    span: Cell<usize>,
    request: Cell<usize>,
    /// Why the current span cannot be used.
    problem: RefCell<Option<String>>,
    /// The export as a whole holds too much JSON.
    request_exceeded: Cell<bool>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            span: Cell::new(MAX_VALUES_PER_RECORD),
            request: Cell::new(MAX_VALUES_PER_REQUEST),
            problem: RefCell::new(None),
            request_exceeded: Cell::new(false),
        }
    }
}

impl Budget {
    /// A JSON object or array written as text, parsed within the budget. `None` for other
    /// text, malformed JSON and JSON over a limit; over a limit, the span is marked as unusable
    /// (naming `key`) or the export as too large.
    pub fn parse(&self, key: &str, text: &str) -> Option<Value> {
        let t = text.trim_start();
        if !(t.starts_with('{') || t.starts_with('[')) {
            return None;
        }
        let limit = self.span.get().min(self.request.get());
        let count = Cell::new(0);
        let over = Cell::new(Over::No);
        let mut de = serde_json::Deserializer::from_str(t);
        let parsed = Bounded {
            count: &count,
            limit,
            depth: 0,
            over: &over,
        }
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
        match (parsed, over.get()) {
            (Ok(v), _) => {
                self.span.set(self.span.get() - count.get());
                self.request.set(self.request.get() - count.get());
                Some(v)
            }
            (Err(_), Over::Depth) => {
                self.fail(format!(
                    "{key}: nests arrays and objects more than {MAX_DEPTH} deep"
                ));
                None
            }
            (Err(_), Over::Values) if limit == self.span.get() => {
                self.fail(format!(
                    "{key}: the span's JSON attributes hold more than {MAX_VALUES_PER_RECORD} JSON values"
                ));
                None
            }
            (Err(_), Over::Values) => {
                self.request_exceeded.set(true);
                None
            }
            (Err(_), Over::No) => None,
        }
    }

    fn fail(&self, why: String) {
        self.problem.borrow_mut().get_or_insert(why);
    }

    /// The export holds more JSON than one request may.
    pub fn request_exceeded(&self) -> bool {
        self.request_exceeded.get()
    }

    /// The current span's problem, if any; the next span starts with a full span budget.
    pub fn next_span(&self) -> Option<String> {
        self.span.set(MAX_VALUES_PER_RECORD);
        self.problem.borrow_mut().take()
    }
}

/// Checks a record built from a span against the record rules of `/api/v1/generations`: its
/// JSON nests at most [`MAX_DEPTH`] deep and holds at most [`MAX_VALUES_PER_RECORD`] values.
/// Only the free-form parts can be large or deep (`request`, `response`, `trace`,
/// `usage.cost_details`, `error.code`); the typed fields add a few levels and values at most.
pub fn check_record(g: &Generation) -> Result<(), String> {
    let mut values = 0;
    let mut depth = 0;
    let mut part = |v: Option<&Map<String, Value>>, below: usize| {
        if let Some(m) = v {
            let (n, d) = object_shape(m);
            values += n;
            depth = depth.max(below + d);
        }
    };
    part(g.request.as_ref(), 1);
    part(g.response.as_ref(), 1);
    part(g.trace.as_ref(), 1);
    part(g.usage.as_ref().and_then(|u| u.cost_details.as_ref()), 2);
    if let Some(code) = g.error.as_ref().and_then(|e| e.code.as_ref()) {
        let (n, d) = value_shape(code);
        values += n;
        depth = depth.max(2 + d);
    }
    let depth = depth.max(3); // the record, `usage`, its token details
    if depth > MAX_DEPTH {
        return Err(format!(
            "the record nests arrays and objects {depth} deep, at most {MAX_DEPTH}"
        ));
    }
    if values > MAX_VALUES_PER_RECORD {
        return Err(format!(
            "the record holds more than {MAX_VALUES_PER_RECORD} JSON values"
        ));
    }
    Ok(())
}

/// JSON values (keys included, as JSON ingest counts them) and nesting depth of an object.
fn object_shape(m: &Map<String, Value>) -> (usize, usize) {
    let (mut values, mut depth) = (1, 1);
    for v in m.values() {
        let (n, d) = value_shape(v);
        values += 1 + n;
        depth = depth.max(1 + d);
    }
    (values, depth)
}

fn value_shape(v: &Value) -> (usize, usize) {
    match v {
        Value::Object(m) => object_shape(m),
        Value::Array(items) => {
            let (mut values, mut depth) = (1, 1);
            for x in items {
                let (n, d) = value_shape(x);
                values += n;
                depth = depth.max(1 + d);
            }
            (values, depth)
        }
        _ => (1, 0),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Over {
    No,
    Depth,
    Values,
}

/// Builds a [`Value`] like serde_json's own visitor, counting values (keys included) and
/// stopping at the first one over `limit` or nested deeper than [`MAX_DEPTH`].
struct Bounded<'c> {
    count: &'c Cell<usize>,
    limit: usize,
    /// Containers around the value.
    depth: usize,
    over: &'c Cell<Over>,
}

impl Bounded<'_> {
    fn tick<E: de::Error>(&self) -> Result<(), E> {
        let n = self.count.get() + 1;
        self.count.set(n);
        if n > self.limit {
            self.over.set(Over::Values);
            return Err(E::custom("too many JSON values"));
        }
        Ok(())
    }

    fn open<E: de::Error>(&self) -> Result<Bounded<'_>, E> {
        self.tick()?;
        if self.depth + 1 > MAX_DEPTH {
            self.over.set(Over::Depth);
            return Err(E::custom("nested too deep"));
        }
        Ok(Bounded {
            count: self.count,
            limit: self.limit,
            depth: self.depth + 1,
            over: self.over,
        })
    }
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(n))
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::from(n))
    }

    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Value, E> {
        self.tick()?;
        Ok(serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.tick()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.open()?;
        let mut items = Vec::new();
        while let Some(v) = seq.next_element_seed(inner.reborrow())? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.open()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            inner.tick()?;
            let v = map.next_value_seed(inner.reborrow())?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

impl Bounded<'_> {
    fn reborrow(&self) -> Bounded<'_> {
        Bounded {
            count: self.count,
            limit: self.limit,
            depth: self.depth,
            over: self.over,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_like_serde_json_within_the_limits() {
        let b = Budget::default();
        let text = r#" {"a": [1, -2, 2.5, true, null, "x\n"], "b": {"c": {}}, "a": 3}"#;
        assert_eq!(
            b.parse("k", text),
            Some(serde_json::from_str::<Value>(text).unwrap())
        );
        assert_eq!(b.parse("k", "plain text"), None);
        assert_eq!(b.parse("k", "[1, 2"), None, "malformed");
        assert_eq!(b.parse("k", "[1] x"), None, "trailing characters");
        assert_eq!(b.next_span(), None);
    }

    #[test]
    fn depth_and_values_are_bounded() {
        let b = Budget::default();
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(b.parse("ok", &deep(MAX_DEPTH)).is_some());
        assert_eq!(b.parse("k", &deep(MAX_DEPTH + 1)), None);
        assert_eq!(
            b.next_span().as_deref(),
            Some("k: nests arrays and objects more than 64 deep")
        );
        let many = |n: usize| format!("[{}]", vec!["0"; n].join(","));
        // One span: 100,000 values in all (the array itself counts).
        assert!(b.parse("a", &many(60_000)).is_some());
        assert_eq!(b.parse("b", &many(40_000)), None);
        assert!(b.next_span().unwrap().starts_with("b: the span's JSON"));
        // The request: 400,000 in all; what failed above was not counted.
        for _ in 0..5 {
            assert!(b.parse("c", &many(60_000)).is_some());
            b.next_span();
        }
        assert!(!b.request_exceeded());
        assert_eq!(b.parse("d", &many(60_000)), None);
        assert!(b.request_exceeded());
    }
}
