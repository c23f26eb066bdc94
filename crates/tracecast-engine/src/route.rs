//! Routing: whether one generation goes to one destination.
//!
//! [`CompiledRoute::new`] turns a [`Destination`] into a form that is cheap to evaluate (region
//! bitmask, sorted binary allowlist, filter rules with their regexes compiled once, integer
//! sampling threshold). [`CompiledRoute::decide`] then answers for one generation, without
//! allocating unless a filter rule needs the text of the input or the output.
//!
//! The checks run in this order, and the first one that fails names the [`Decision`]:
//!
//! 1. switches: the workspace's `is_observability_broadcast_enabled` and the destination's
//!    `enabled` ([`Decision::Disabled`]);
//! 2. region: the record's `data_region` (default `global`) is one of the destination's
//!    `regions` ([`Decision::WrongRegion`]);
//! 3. API key: `api_key_hashes` is null, or lists the record's key ([`Decision::KeyNotAllowed`]);
//! 4. filter rules ([`Decision::Filtered`]);
//! 5. deterministic sampling ([`Decision::SampledOut`]).
//!
//! `docs/routing.md` documents every rule; the summary of the filter semantics:
//!
//! - A string field is *missing* when it is absent or empty. A numeric field is missing when it
//!   is absent.
//! - `exists` is "not missing"; `not_exists`, `not_equals` and `not_contains` are the exact
//!   negations of `exists`, `equals` and `contains` (so they are true on a missing field).
//! - `equals`, `contains`, `starts_with`, `ends_with` and `regex` are false on a missing field;
//!   `gt`, `lt`, `gte` and `lte` too.
//! - String operators are case-sensitive. On a numeric field they compare its decimal rendering
//!   (`15`, `0.003`). A number used as the value of a string operator is rendered the same way.
//! - `equals` and `not_equals` on a numeric field compare numbers; the value may be a number or
//!   a numeric string (`"15"`). A value that is not a number never equals the field.
//! - A rule that cannot be evaluated (a regex that does not compile, a missing value, a numeric
//!   comparison on a text field: all rejected by the API) never matches, whatever its operator,
//!   and is logged once, when the route is compiled.
//!
//! Sampling is [`sampling_hash`] compared with [`sampling_threshold`].

use std::cell::OnceCell;
use std::fmt::{self, Write as _};

use sha2::{Digest, Sha256};
use tracecast_model::destination::Destination;
use tracecast_model::filter::{
    FilterField, FilterOperator, FilterRegex, FilterRule, FilterRules, FilterValue, Logic,
    compile_regex, scan_window,
};
use tracecast_model::generation::Generation;
use tracecast_model::region::Region;
use tracecast_model::trace::{TraceOptions, TraceView};
use uuid::Uuid;

/// The outcome of routing one generation to one destination. Every variant but
/// [`Decision::Deliver`] is a reason not to deliver; `docs/routing.md` says which status
/// counter each one feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Every check passed: the generation goes to the destination.
    Deliver,
    /// The workspace's broadcast switch or the destination's `enabled` is off.
    Disabled,
    /// The record's `data_region` is not one of the destination's `regions`.
    WrongRegion,
    /// The destination has an `api_key_hashes` allowlist and the record's key is not on it
    /// (or the record has no key).
    KeyNotAllowed,
    /// The destination's filter rules are enabled and no group matched.
    Filtered,
    /// Deterministic sampling left the record's session (or trace, or generation) out.
    SampledOut,
}

impl Decision {
    /// Every decision, in the order the checks run (`Deliver` first).
    pub const ALL: [Decision; 6] = [
        Decision::Deliver,
        Decision::Disabled,
        Decision::WrongRegion,
        Decision::KeyNotAllowed,
        Decision::Filtered,
        Decision::SampledOut,
    ];

    /// Whether the generation goes to the destination.
    pub fn is_deliver(self) -> bool {
        self == Decision::Deliver
    }

    /// A stable snake_case name, for logs and metric labels: `deliver`, `disabled`,
    /// `wrong_region`, `key_not_allowed`, `filtered`, `sampled_out`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Deliver => "deliver",
            Decision::Disabled => "disabled",
            Decision::WrongRegion => "wrong_region",
            Decision::KeyNotAllowed => "key_not_allowed",
            Decision::Filtered => "filtered",
            Decision::SampledOut => "sampled_out",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------------------------
// Sampling
// ---------------------------------------------------------------------------------------------

/// The sampling hash of a key for a destination: the first 8 bytes, read as a big-endian
/// `u64`, of `SHA-256(destination_id as its 16 raw bytes || key as UTF-8)`.
///
/// The raw bytes of a UUID are its 32 hex digits in the order they are written
/// (`99999999-aaaa-...` starts `0x99 0x99 0x99 0x99 0xaa 0xaa`). No separator, no length
/// prefix. Test vectors, destination `99999999-aaaa-bbbb-cccc-dddddddddddd`:
/// - key `session-42` → `0xf1d8_5f67_6f00_0feb` (17426783655958679531, ≈ 0.9447 × 2^64);
/// - key `session-10` → `0x0a1b_2312_db41_cb10` (728214328645372688, ≈ 0.0395 × 2^64).
///
/// At rate 0.1 (threshold `0x1999_9999_9999_9a00`) the first is sampled out, the second kept.
pub fn sampling_hash(destination_id: &Uuid, key: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(destination_id.as_bytes());
    h.update(key.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The threshold a sampling hash must stay below to be kept, or `None` when every record is
/// kept (`rate >= 1`).
///
/// `threshold = rate × 2^64`, computed in IEEE-754 double precision (multiplying by a power of
/// two is exact) and truncated toward zero to a `u64`. A rate that is not a positive number
/// gives `Some(0)`: nothing is kept.
pub fn sampling_threshold(rate: f64) -> Option<u64> {
    if rate >= 1.0 {
        None
    } else if rate > 0.0 {
        // rate < 1, so rate * 2^64 < 2^64: the cast truncates and never saturates.
        Some((rate * 18_446_744_073_709_551_616.0) as u64)
    } else {
        // 0, negative or NaN.
        Some(0)
    }
}

/// Whether a record with sampling key `key` is kept by a destination sampling at `rate`:
/// `rate >= 1`, or [`sampling_hash`] `<` [`sampling_threshold`].
pub fn sampled_in(rate: f64, destination_id: &Uuid, key: &str) -> bool {
    match sampling_threshold(rate) {
        None => true,
        Some(t) => sampling_hash(destination_id, key) < t,
    }
}

// ---------------------------------------------------------------------------------------------
// The generation as the router sees it
// ---------------------------------------------------------------------------------------------

/// A generation being routed. It computes the filter texts (`input`, `output`) lazily, at most
/// once each, so that one subject can be passed to every destination of the workspace
/// ([`CompiledRoute::decide_subject`]) and the texts are built once per generation, only if a
/// rule needs them. Creating one does not allocate.
pub struct RouteSubject<'g> {
    g: &'g Generation,
    input: OnceCell<String>,
    output: OnceCell<String>,
}

impl<'g> RouteSubject<'g> {
    pub fn new(g: &'g Generation) -> Self {
        RouteSubject {
            g,
            input: OnceCell::new(),
            output: OnceCell::new(),
        }
    }

    pub fn generation(&self) -> &'g Generation {
        self.g
    }

    /// Whether the input or output text has been computed (for tests and metrics).
    pub fn texts_computed(&self) -> (bool, bool) {
        (self.input.get().is_some(), self.output.get().is_some())
    }

    fn input_text(&self) -> &str {
        self.input.get_or_init(|| TraceView::input_text(self.g))
    }

    fn output_text(&self) -> &str {
        self.output.get_or_init(|| TraceView::output_text(self.g))
    }

    fn field(&self, field: FilterField) -> Val<'_> {
        let g = self.g;
        fn text(s: Option<&str>) -> Val<'_> {
            match s {
                Some(s) if !s.is_empty() => Val::Str(s),
                _ => Val::Missing,
            }
        }
        let tokens = |f: fn(&tracecast_model::generation::Usage) -> Option<u64>| {
            g.usage.as_ref().and_then(f).map_or(Val::Missing, Val::Int)
        };
        match field {
            FilterField::Model => text(Some(&g.model)),
            FilterField::Provider => text(g.provider_name.as_deref()),
            FilterField::SessionId => text(g.session_id.as_deref()),
            FilterField::UserId => text(g.user.as_deref()),
            FilterField::ApiKeyName => text(g.identity.api_key_name.as_deref()),
            FilterField::FinishReason => {
                text(TraceView::new(g, TraceOptions::default()).finish_reason())
            }
            FilterField::Input => text(Some(self.input_text())),
            FilterField::Output => text(Some(self.output_text())),
            FilterField::TotalCost => g.total_cost.map_or(Val::Missing, Val::Float),
            FilterField::TotalTokens => tokens(|u| u.total_tokens),
            FilterField::PromptTokens => tokens(|u| u.prompt_tokens),
            FilterField::CompletionTokens => tokens(|u| u.completion_tokens),
        }
    }
}

/// A field's value for one record.
#[derive(Debug, Clone, Copy)]
enum Val<'a> {
    Missing,
    Str(&'a str),
    Int(u64),
    Float(f64),
}

impl Val<'_> {
    fn number(self) -> Option<f64> {
        match self {
            Val::Int(n) => Some(n as f64),
            Val::Float(x) => Some(x),
            Val::Missing | Val::Str(_) => None,
        }
    }

    /// Runs `f` on the field as text (numbers in their decimal rendering); `None` when missing.
    fn with_text<R>(self, f: impl FnOnce(&str) -> R) -> Option<R> {
        match self {
            Val::Missing => None,
            Val::Str(s) => Some(f(s)),
            Val::Int(n) => Some(with_rendered(format_args!("{n}"), f)),
            Val::Float(x) => Some(with_rendered(format_args!("{x}"), f)),
        }
    }
}

/// A fixed buffer for rendering numbers without allocating. 512 bytes holds every `u64` and
/// every `f64` Display rendering (at most ~330 characters); longer output falls back to a
/// `String`.
struct StackBuf {
    buf: [u8; 512],
    len: usize,
}

impl fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len.checked_add(s.len()).ok_or(fmt::Error)?;
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

fn with_rendered<R>(args: fmt::Arguments<'_>, f: impl FnOnce(&str) -> R) -> R {
    let mut sb = StackBuf {
        buf: [0; 512],
        len: 0,
    };
    if sb.write_fmt(args).is_ok()
        && let Ok(s) = std::str::from_utf8(&sb.buf[..sb.len])
    {
        return f(s);
    }
    f(&args.to_string())
}

/// The decimal rendering of a number, as used on both sides of string operators: Rust's
/// shortest round-trip `Display` (`15`, `0.003`, `1000000`, never an exponent).
fn render_number(x: f64) -> String {
    format!("{x}")
}

// ---------------------------------------------------------------------------------------------
// Compiled filter rules
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Filter {
    /// Kept when any group matches; never empty (no groups means no filter).
    groups: Box<[Group]>,
}

#[derive(Debug, Clone)]
struct Group {
    logic: Logic,
    /// Cheapest first: evaluation order cannot change the result (rules have no side effects),
    /// only how soon `and`/`or` short-circuit before the input/output text is needed.
    rules: Box<[Rule]>,
}

#[derive(Debug, Clone)]
struct Rule {
    field: FilterField,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    /// `exists` (true) or `not_exists` (false).
    Exists(bool),
    /// `equals`, `contains`, `starts_with`, `ends_with` on text; `negate` for `not_equals` and
    /// `not_contains`.
    Text {
        op: TextOp,
        needle: Box<str>,
        negate: bool,
    },
    Regex(FilterRegex),
    /// `equals` / `not_equals` on a numeric field.
    NumEq {
        value: f64,
        negate: bool,
    },
    /// `gt`, `lt`, `gte`, `lte` on a numeric field.
    NumCmp {
        op: Cmp,
        value: f64,
    },
    /// A rule whose result does not depend on the record: a broken rule (always `false`), or
    /// `equals` / `not_equals` of a numeric field with a non-numeric value.
    Const(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TextOp {
    Equals,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Gt,
    Lt,
    Gte,
    Lte,
}

impl Rule {
    fn matches(&self, s: &RouteSubject<'_>) -> bool {
        if let Test::Const(b) = self.test {
            return b;
        }
        let v = s.field(self.field);
        match &self.test {
            Test::Const(b) => *b,
            Test::Exists(want) => !matches!(v, Val::Missing) == *want,
            Test::Text { op, needle, negate } => {
                let hit = v
                    .with_text(|t| match op {
                        TextOp::Equals => t == &**needle,
                        TextOp::Contains => t.contains(&**needle),
                        TextOp::StartsWith => t.starts_with(&**needle),
                        TextOp::EndsWith => t.ends_with(&**needle),
                    })
                    .unwrap_or(false);
                hit != *negate
            }
            // Bounded: a regex sees the first MAX_SCAN_BYTES of the field.
            Test::Regex(re) => v
                .with_text(|t| re.is_match(scan_window(t)))
                .unwrap_or(false),
            Test::NumEq { value, negate } => {
                let hit = v.number().is_some_and(|x| x == *value);
                hit != *negate
            }
            Test::NumCmp { op, value } => v.number().is_some_and(|x| match op {
                Cmp::Gt => x > *value,
                Cmp::Lt => x < *value,
                Cmp::Gte => x >= *value,
                Cmp::Lte => x <= *value,
            }),
        }
    }

    /// Evaluation cost class: rules on `input`/`output` need the text built; regexes scan.
    fn cost(&self) -> u8 {
        let text = matches!(self.field, FilterField::Input | FilterField::Output)
            && !matches!(self.test, Test::Const(_));
        let regex = matches!(self.test, Test::Regex(_));
        u8::from(text) * 2 + u8::from(regex)
    }
}

impl Group {
    fn matches(&self, s: &RouteSubject<'_>) -> bool {
        match self.logic {
            Logic::And => self.rules.iter().all(|r| r.matches(s)),
            Logic::Or => self.rules.iter().any(|r| r.matches(s)),
        }
    }

    fn cost(&self) -> u8 {
        self.rules.iter().map(Rule::cost).max().unwrap_or(0)
    }
}

impl Filter {
    fn matches(&self, s: &RouteSubject<'_>) -> bool {
        self.groups.iter().any(|g| g.matches(s))
    }

    /// `None` when the rules keep everything: disabled, or no group with a rule.
    fn compile(rules: &FilterRules, destination_id: &Uuid) -> Option<Filter> {
        if !rules.enabled {
            return None;
        }
        let mut groups: Vec<Group> = rules
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| !g.rules.is_empty())
            .map(|(gi, g)| {
                let mut compiled: Vec<Rule> = g
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(ri, r)| Rule {
                        field: r.field,
                        test: compile_test(r, destination_id, gi, ri),
                    })
                    .collect();
                compiled.sort_by_key(Rule::cost);
                Group {
                    logic: g.logic,
                    rules: compiled.into_boxed_slice(),
                }
            })
            .collect();
        if groups.is_empty() {
            return None;
        }
        groups.sort_by_key(Group::cost);
        Some(Filter {
            groups: groups.into_boxed_slice(),
        })
    }

    fn needs_text(&self) -> bool {
        self.groups.iter().any(|g| g.cost() >= 2)
    }
}

/// A rule value as a number: a finite number, or a string that parses as one (after trimming).
fn numeric_value(v: &FilterValue) -> Option<f64> {
    match v {
        FilterValue::Number(x) => Some(*x),
        FilterValue::Text(s) => s.trim().parse::<f64>().ok(),
    }
    .filter(|x| x.is_finite())
}

/// A rule value as text: a string as is, a number in its decimal rendering.
fn text_value(v: &FilterValue) -> Box<str> {
    match v {
        FilterValue::Text(s) => s.as_str().into(),
        FilterValue::Number(x) => render_number(*x).into_boxed_str(),
    }
}

fn compile_test(r: &FilterRule, destination_id: &Uuid, gi: usize, ri: usize) -> Test {
    let broken = |why: &dyn fmt::Display| {
        tracing::warn!(
            destination_id = %destination_id,
            rule = %format_args!("filter_rules.groups[{gi}].rules[{ri}]"),
            field = r.field.as_str(),
            operator = r.operator.as_str(),
            "filter rule cannot be evaluated ({why}); it never matches"
        );
        Test::Const(false)
    };
    let op = r.operator;
    let field = r.field;
    match op {
        FilterOperator::Exists => Test::Exists(true),
        FilterOperator::NotExists => Test::Exists(false),
        FilterOperator::Gt | FilterOperator::Lt | FilterOperator::Gte | FilterOperator::Lte => {
            if !field.is_numeric() {
                return broken(&"a numeric comparison needs a numeric field");
            }
            let Some(value) = r.value.as_ref().and_then(numeric_value) else {
                return broken(&"the value is not a number");
            };
            let op = match op {
                FilterOperator::Gt => Cmp::Gt,
                FilterOperator::Lt => Cmp::Lt,
                FilterOperator::Gte => Cmp::Gte,
                _ => Cmp::Lte,
            };
            Test::NumCmp { op, value }
        }
        FilterOperator::Equals | FilterOperator::NotEquals => {
            let negate = op == FilterOperator::NotEquals;
            let Some(value) = r.value.as_ref() else {
                return broken(&"the value is missing");
            };
            if field.is_numeric() {
                match numeric_value(value) {
                    Some(value) => Test::NumEq { value, negate },
                    // Not a number: never equal to the field, present or not.
                    None => Test::Const(negate),
                }
            } else {
                Test::Text {
                    op: TextOp::Equals,
                    needle: text_value(value),
                    negate,
                }
            }
        }
        FilterOperator::Contains
        | FilterOperator::NotContains
        | FilterOperator::StartsWith
        | FilterOperator::EndsWith => {
            let Some(value) = r.value.as_ref() else {
                return broken(&"the value is missing");
            };
            let (op, negate) = match op {
                FilterOperator::Contains => (TextOp::Contains, false),
                FilterOperator::NotContains => (TextOp::Contains, true),
                FilterOperator::StartsWith => (TextOp::StartsWith, false),
                _ => (TextOp::EndsWith, false),
            };
            Test::Text {
                op,
                needle: text_value(value),
                negate,
            }
        }
        FilterOperator::Regex => {
            let Some(value) = r.value.as_ref() else {
                return broken(&"the value is missing");
            };
            match compile_regex(&text_value(value)) {
                Ok(re) => Test::Regex(re),
                Err(e) => {
                    let first = e.to_string();
                    let first = first.lines().last().unwrap_or_default().trim();
                    broken(&format_args!("the regex does not compile: {first}"))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The route
// ---------------------------------------------------------------------------------------------

fn region_bit(r: Region) -> u8 {
    match r {
        Region::Global => 1,
        Region::Europe => 2,
        Region::Us => 4,
    }
}

/// A destination's routing rules, compiled for fast evaluation. Build it once per destination
/// config (again after every change), share it between threads (`Send + Sync`) and call
/// [`CompiledRoute::decide`] per generation.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    destination_id: Uuid,
    workspace_id: Uuid,
    enabled: bool,
    /// Bitmask of [`region_bit`]s.
    regions: u8,
    /// Sorted, de-duplicated raw SHA-256 key hashes; `None` admits every key.
    allowlist: Option<Box<[[u8; 32]]>>,
    /// `None` keeps every record.
    filter: Option<Filter>,
    /// See [`sampling_threshold`]; `None` keeps every record.
    threshold: Option<u64>,
}

impl CompiledRoute {
    /// Compiles a destination's routing rules. Never fails: a rule that cannot be evaluated is
    /// logged and never matches; an allowlist entry that is not a key hash matches no key; an
    /// empty `regions` list means the default, `["global"]`.
    pub fn new(d: &Destination) -> Self {
        let mut regions = d.regions.iter().fold(0u8, |m, r| m | region_bit(*r));
        if regions == 0 {
            regions = region_bit(Region::Global);
        }
        let allowlist = d.api_key_hashes.as_ref().map(|hashes| {
            let mut out: Vec<[u8; 32]> = Vec::with_capacity(hashes.len());
            for (i, h) in hashes.iter().enumerate() {
                let mut raw = [0u8; 32];
                if hex::decode_to_slice(h, &mut raw).is_ok() {
                    out.push(raw);
                } else {
                    tracing::warn!(
                        destination_id = %d.id,
                        "api_key_hashes[{i}] is not a SHA-256 hex hash; it matches no key"
                    );
                }
            }
            out.sort_unstable();
            out.dedup();
            out.into_boxed_slice()
        });
        CompiledRoute {
            destination_id: d.id,
            workspace_id: d.workspace_id,
            enabled: d.enabled,
            regions,
            allowlist,
            filter: d
                .filter_rules
                .as_ref()
                .and_then(|f| Filter::compile(f, &d.id)),
            threshold: sampling_threshold(d.sampling_rate),
        }
    }

    pub fn destination_id(&self) -> Uuid {
        self.destination_id
    }

    /// The destination's workspace: route only generations of this workspace through it.
    pub fn workspace_id(&self) -> Uuid {
        self.workspace_id
    }

    /// The sampling threshold ([`sampling_threshold`]); `None` keeps everything.
    pub fn sampling_threshold(&self) -> Option<u64> {
        self.threshold
    }

    /// Whether some filter rule looks at `input` or `output` (so routing may build their text).
    pub fn needs_text(&self) -> bool {
        self.filter.as_ref().is_some_and(Filter::needs_text)
    }

    /// Whether the generation goes to this destination. `workspace_broadcast_enabled` is the
    /// record's workspace's `is_observability_broadcast_enabled`. When routing one generation
    /// to several destinations, [`Self::decide_subject`] with one shared [`RouteSubject`]
    /// builds the filter texts only once.
    pub fn decide(&self, g: &Generation, workspace_broadcast_enabled: bool) -> Decision {
        self.decide_subject(&RouteSubject::new(g), workspace_broadcast_enabled)
    }

    /// [`Self::decide`] for a prepared generation.
    pub fn decide_subject(
        &self,
        s: &RouteSubject<'_>,
        workspace_broadcast_enabled: bool,
    ) -> Decision {
        let g = s.g;
        if !workspace_broadcast_enabled || !self.enabled {
            return Decision::Disabled;
        }
        if self.regions & region_bit(g.region()) == 0 {
            return Decision::WrongRegion;
        }
        if let Some(list) = &self.allowlist
            && !key_allowed(list, g.identity.api_key_hash.as_deref())
        {
            return Decision::KeyNotAllowed;
        }
        if let Some(filter) = &self.filter
            && !filter.matches(s)
        {
            return Decision::Filtered;
        }
        match self.threshold {
            None => Decision::Deliver,
            Some(t) if sampling_hash(&self.destination_id, g.sampling_key()) < t => {
                Decision::Deliver
            }
            Some(_) => Decision::SampledOut,
        }
    }
}

/// Whether `hash` (hex, either case) is on the sorted raw allowlist.
fn key_allowed(list: &[[u8; 32]], hash: Option<&str>) -> bool {
    let Some(hash) = hash else {
        return false;
    };
    let mut raw = [0u8; 32];
    hex::decode_to_slice(hash, &mut raw).is_ok() && list.binary_search(&raw).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_render_in_shortest_decimal() {
        assert_eq!(render_number(15.0), "15");
        assert_eq!(render_number(0.003), "0.003");
        assert_eq!(render_number(1e21), "1000000000000000000000");
        assert_eq!(render_number(1e-7), "0.0000001");
        assert_eq!(
            Val::Int(u64::MAX).with_text(str::to_owned).unwrap(),
            u64::MAX.to_string()
        );
        // The longest f64 renderings still fit the stack buffer, and agree with `format!`.
        for x in [f64::MIN_POSITIVE, 5e-324, -f64::MAX, f64::MAX] {
            assert_eq!(
                Val::Float(x).with_text(str::to_owned).unwrap(),
                format!("{x}")
            );
        }
        assert_eq!(Val::Missing.with_text(str::len), None);
    }

    #[test]
    fn stack_buffer_overflow_falls_back_to_a_string() {
        let long = "x".repeat(600);
        assert_eq!(with_rendered(format_args!("{long}"), str::len), 600);
    }

    #[test]
    fn thresholds() {
        assert_eq!(sampling_threshold(1.0), None);
        assert_eq!(sampling_threshold(2.0), None);
        assert_eq!(sampling_threshold(0.5), Some(1 << 63));
        assert_eq!(sampling_threshold(0.25), Some(1 << 62));
        assert_eq!(sampling_threshold(0.0), Some(0));
        assert_eq!(sampling_threshold(-1.0), Some(0));
        assert_eq!(sampling_threshold(f64::NAN), Some(0));
        let just_below_one = f64::from_bits(1.0f64.to_bits() - 1);
        assert_eq!(sampling_threshold(just_below_one), Some(u64::MAX - 2047));
    }

    #[test]
    fn numeric_values() {
        assert_eq!(numeric_value(&FilterValue::Text(" 15 ".into())), Some(15.0));
        assert_eq!(
            numeric_value(&FilterValue::Text("1e3".into())),
            Some(1000.0)
        );
        assert_eq!(numeric_value(&FilterValue::Text("inf".into())), None);
        assert_eq!(numeric_value(&FilterValue::Text("NaN".into())), None);
        assert_eq!(numeric_value(&FilterValue::Text("abc".into())), None);
        assert_eq!(numeric_value(&FilterValue::Number(0.5)), Some(0.5));
    }
}
