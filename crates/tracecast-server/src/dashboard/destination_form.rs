//! The add/edit form of a destination, for every type.
//!
//! The form is generated from the type's config schema ([`DestinationType::schema`]): one
//! input per [`FieldSpec`] with its label, help text, default and required mark; secrets as
//! password inputs that keep the stored value unless replaced; enums as selects; booleans as
//! checkboxes; headers as name/value rows. What the browser sends is turned into the API's own
//! request ([`CreateDestinationRequest`], [`UpdateDestinationRequest`]) and handed to the same
//! functions as `POST` and `PATCH /api/v1/observability/destinations`, so the form and the API
//! cannot disagree: an error comes back with the API's message, shown next to the field it
//! names ([`slot_of`]).
//!
//! The form is also its own state: adding a filter group, rule or header row posts the form
//! and renders it again with one more (`op=add-rule:0`), so it works with or without htmx.
//! "Test connection" runs the exporter's test with what is on the form; "Save" runs it first
//! when "Require a passing test" is ticked (the default, as OpenRouter does).

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tracecast_engine::TestResult;
use tracecast_engine::route::{CompiledRoute, Decision};
use tracecast_model::config::{self, DefaultValue, FieldKind, FieldSpec};
use tracecast_model::destination::{normalize_key_hashes, validate_sampling_rate};
use tracecast_model::filter::{FilterField, FilterOperator, FilterRules};
use tracecast_model::generation::Generation;
use tracecast_model::{Destination, DestinationType, Region};
use tracecast_store::PageRequest;
use uuid::Uuid;

use super::form::{Fields, slot_of};
use super::session::{PostForm, Session};
use super::view::{self, Chrome, TypeMark};
use super::{Dash, DashError, DashResult, after_post, render};
use crate::api::delivery::test_new_destination;
use crate::api::destinations::{
    CreateDestinationRequest, UpdateDestinationRequest, create_destination, find_destination,
    prepare_update, update_destination,
};
use crate::api::keys::list_keys;
use crate::api::workspaces::all_workspaces;
use crate::auth::Caller;
use crate::error::ApiError;

/// How many recent generations the filter preview evaluates.
pub const PREVIEW_GENERATIONS: usize = 100;

/// The metadata groups: form name, label, help.
const GROUPS: [(&str, &str, &str); 4] = [
    (
        "bg_cost",
        "Cost",
        "Send the generation's cost and token usage.",
    ),
    (
        "bg_identity",
        "Identity",
        "Send the user and the API key's name.",
    ),
    (
        "bg_request_context",
        "Request context",
        "Send the request's parameters and context (tools, settings).",
    ),
    (
        "bg_cost_allocation",
        "Cost allocation (beta)",
        "Send per-token-kind usage and cost when they add up to the billed cost.",
    ),
];

/// A rule of the filter builder, as typed.
#[derive(Clone, Default)]
struct RuleDraft {
    field: String,
    op: String,
    value: String,
}

#[derive(Clone)]
struct GroupDraft {
    or: bool,
    rules: Vec<RuleDraft>,
}

impl GroupDraft {
    fn new() -> Self {
        GroupDraft {
            or: false,
            rules: vec![RuleDraft {
                field: "model".into(),
                op: "equals".into(),
                value: String::new(),
            }],
        }
    }
}

/// Everything on the form, as typed.
#[derive(Clone)]
struct Draft {
    ty: DestinationType,
    workspace_id: String,
    name: String,
    enabled: bool,
    privacy_mode: bool,
    groups_on: [bool; 4],
    sampling_rate: String,
    regions: Vec<String>,
    all_keys: bool,
    keys: Vec<String>,
    /// Config values by field name (not headers); a secret's entry is a new value or "".
    config: BTreeMap<&'static str, String>,
    /// Optional secrets to remove (edit).
    clear: Vec<&'static str>,
    headers: Vec<(String, String)>,
    filter_enabled: bool,
    filter_groups: Vec<GroupDraft>,
    require_test: bool,
}

fn default_text(f: &FieldSpec) -> String {
    match f.default {
        Some(DefaultValue::Str(s)) => s.to_string(),
        Some(DefaultValue::Bool(b)) => b.to_string(),
        None => String::new(),
    }
}

impl Draft {
    /// A new destination's form: the schema's defaults filled in.
    fn blank(ty: DestinationType, workspace_id: String) -> Draft {
        let config = ty
            .schema()
            .iter()
            .filter(|f| !matches!(f.kind, FieldKind::Headers))
            .map(|f| (f.name, default_text(f)))
            .collect();
        Draft {
            ty,
            workspace_id,
            name: String::new(),
            enabled: true,
            privacy_mode: false,
            groups_on: [false; 4],
            sampling_rate: "1".into(),
            regions: vec!["global".into()],
            all_keys: true,
            keys: Vec::new(),
            config,
            clear: Vec::new(),
            headers: Vec::new(),
            filter_enabled: true,
            filter_groups: Vec::new(),
            require_test: true,
        }
    }

    /// The form of a stored destination. Secret inputs start empty (the stored value is
    /// kept unless replaced); header values are masked, as the API shows them.
    fn of(d: &Destination) -> Draft {
        let masked = config::masked(d.ty, &d.config);
        let mut config = BTreeMap::new();
        let mut headers = Vec::new();
        for f in d.ty.schema() {
            match f.kind {
                FieldKind::Headers => {
                    if let Some(map) = masked.get(f.name).and_then(Value::as_object) {
                        headers = map
                            .iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                            .collect();
                    }
                }
                _ if f.secret => {
                    config.insert(f.name, String::new());
                }
                _ => {
                    let v = match d.config.get(f.name) {
                        Some(Value::String(s)) => s.clone(),
                        Some(Value::Bool(b)) => b.to_string(),
                        Some(other) => other.to_string(),
                        None => String::new(),
                    };
                    config.insert(f.name, v);
                }
            }
        }
        let (filter_enabled, filter_groups) = match &d.filter_rules {
            Some(r) => (
                r.enabled,
                r.groups
                    .iter()
                    .map(|g| GroupDraft {
                        or: g.logic == tracecast_model::filter::Logic::Or,
                        rules: g
                            .rules
                            .iter()
                            .map(|r| RuleDraft {
                                field: r.field.as_str().into(),
                                op: r.operator.as_str().into(),
                                value: match &r.value {
                                    Some(tracecast_model::filter::FilterValue::Text(s)) => {
                                        s.clone()
                                    }
                                    Some(tracecast_model::filter::FilterValue::Number(n)) => {
                                        n.to_string()
                                    }
                                    None => String::new(),
                                },
                            })
                            .collect(),
                    })
                    .collect(),
            ),
            None => (true, Vec::new()),
        };
        Draft {
            ty: d.ty,
            workspace_id: d.workspace_id.to_string(),
            name: d.name.clone().unwrap_or_default(),
            enabled: d.enabled,
            privacy_mode: d.privacy_mode,
            groups_on: [
                d.broadcast_generation_cost,
                d.broadcast_generation_identity,
                d.broadcast_generation_request_context,
                d.broadcast_generation_cost_allocation,
            ],
            sampling_rate: number_text(d.sampling_rate),
            regions: d.regions.iter().map(|r| r.as_str().to_string()).collect(),
            all_keys: d.api_key_hashes.is_none(),
            keys: d.api_key_hashes.clone().unwrap_or_default(),
            config,
            clear: Vec::new(),
            headers,
            filter_enabled,
            filter_groups,
            require_test: true,
        }
    }

    /// The form as posted.
    fn parse(ty: DestinationType, f: &Fields) -> Draft {
        let mut config = BTreeMap::new();
        let mut clear = Vec::new();
        for spec in ty.schema() {
            match spec.kind {
                FieldKind::Headers => {}
                FieldKind::Bool => {
                    config.insert(
                        spec.name,
                        f.checked(&format!("cfg.{}", spec.name)).to_string(),
                    );
                }
                _ => {
                    config.insert(spec.name, f.text(&format!("cfg.{}", spec.name)).to_string());
                    if spec.secret && f.checked(&format!("clear.{}", spec.name)) {
                        clear.push(spec.name);
                    }
                }
            }
        }
        let headers = f
            .all("hdr_name")
            .zip(f.all("hdr_value"))
            .map(|(n, v)| (n.trim().to_string(), v.to_string()))
            .collect();
        // Filter groups and rules: g<i>.logic, g<i>.r<j>.field / .op / .value.
        let mut groups: BTreeMap<usize, (bool, BTreeMap<usize, RuleDraft>)> = BTreeMap::new();
        for (k, v) in f.pairs() {
            let Some(rest) = k.strip_prefix('g') else {
                continue;
            };
            let Some((gi, rest)) = rest.split_once('.') else {
                continue;
            };
            let Ok(gi) = gi.parse::<usize>() else {
                continue;
            };
            let group = groups.entry(gi).or_insert((false, BTreeMap::new()));
            if rest == "logic" {
                group.0 = v == "or";
                continue;
            }
            let Some((ri, part)) = rest
                .strip_prefix('r')
                .and_then(|r| r.split_once('.'))
                .and_then(|(ri, part)| Some((ri.parse::<usize>().ok()?, part)))
            else {
                continue;
            };
            let rule = group.1.entry(ri).or_default();
            match part {
                "field" => rule.field = v.to_string(),
                "op" => rule.op = v.to_string(),
                "value" => rule.value = v.to_string(),
                _ => {}
            }
        }
        let filter_groups = groups
            .into_values()
            .map(|(or, rules)| GroupDraft {
                or,
                rules: rules.into_values().collect(),
            })
            .filter(|g| !g.rules.is_empty())
            .collect();
        Draft {
            ty,
            workspace_id: f.text("workspace_id").to_string(),
            name: f.text("name").to_string(),
            enabled: f.checked("enabled"),
            privacy_mode: f.checked("privacy_mode"),
            groups_on: GROUPS.map(|(n, _, _)| f.checked(n)),
            sampling_rate: f.text("sampling_rate").trim().to_string(),
            regions: f.all("regions").map(str::to_string).collect(),
            all_keys: f.text("keys_mode") != "some",
            keys: f.all("key").map(str::to_string).collect(),
            config,
            clear,
            headers,
            filter_enabled: f.checked("filter_enabled"),
            filter_groups,
            require_test: f.checked("require_test"),
        }
    }

    /// Applies a form-building operation (`add-rule:0`, `remove-header:2`, ...); false when
    /// `op` is not one.
    fn apply_op(&mut self, op: &str) -> bool {
        let (verb, arg) = op.split_once(':').unwrap_or((op, ""));
        let mut nums = arg.split(':').filter_map(|n| n.parse::<usize>().ok());
        let (a, b) = (nums.next(), nums.next());
        match (verb, a, b) {
            ("add-group", _, _) => self.filter_groups.push(GroupDraft::new()),
            ("remove-group", Some(g), _) if g < self.filter_groups.len() => {
                self.filter_groups.remove(g);
            }
            ("add-rule", Some(g), _) if g < self.filter_groups.len() => {
                self.filter_groups[g]
                    .rules
                    .push(GroupDraft::new().rules.remove(0));
            }
            ("remove-rule", Some(g), Some(r))
                if g < self.filter_groups.len() && r < self.filter_groups[g].rules.len() =>
            {
                self.filter_groups[g].rules.remove(r);
                if self.filter_groups[g].rules.is_empty() {
                    self.filter_groups.remove(g);
                }
            }
            ("add-header", _, _) => self.headers.push((String::new(), String::new())),
            ("remove-header", Some(i), _) if i < self.headers.len() => {
                self.headers.remove(i);
            }
            ("refresh", _, _) => {}
            _ => return false,
        }
        true
    }

    fn sampling(&self) -> Result<Option<f64>, (String, String)> {
        if self.sampling_rate.is_empty() {
            return Ok(None);
        }
        self.sampling_rate.parse::<f64>().map(Some).map_err(|_| {
            (
                "sampling_rate".to_string(),
                format!(
                    "sampling_rate must be a number between 0.0001 and 1, got {:?}",
                    self.sampling_rate
                ),
            )
        })
    }

    /// The filter rules as the API takes them; `None` without groups.
    fn filter_json(&self) -> Option<Value> {
        if self.filter_groups.is_empty() {
            return None;
        }
        let groups: Vec<Value> = self
            .filter_groups
            .iter()
            .map(|g| {
                let rules: Vec<Value> = g
                    .rules
                    .iter()
                    .map(|r| {
                        let mut o = Map::new();
                        o.insert("field".into(), Value::String(r.field.clone()));
                        o.insert("operator".into(), Value::String(r.op.clone()));
                        let no_value = FilterOperator::parse(&r.op)
                            .is_some_and(FilterOperator::takes_no_value);
                        let numeric =
                            FilterField::parse(&r.field).is_some_and(FilterField::is_numeric);
                        let v = r.value.trim();
                        if !no_value && !r.value.is_empty() {
                            let value = match v.parse::<f64>() {
                                Ok(n) if numeric && n.is_finite() => json!(n),
                                _ => Value::String(r.value.clone()),
                            };
                            o.insert("value".into(), value);
                        }
                        Value::Object(o)
                    })
                    .collect();
                json!({"logic": if g.or { "or" } else { "and" }, "rules": rules})
            })
            .collect();
        Some(json!({"enabled": self.filter_enabled, "groups": groups}))
    }

    fn schema_fields(&self) -> impl Iterator<Item = &'static FieldSpec> {
        self.ty.schema().iter().filter(|f| !f.server_issued)
    }

    fn headers_json(&self) -> Option<Value> {
        let rows: Vec<&(String, String)> = self
            .headers
            .iter()
            .filter(|(n, v)| !n.is_empty() || !v.is_empty())
            .collect();
        if rows.is_empty() {
            return None;
        }
        Some(Value::Object(
            rows.into_iter()
                .map(|(n, v)| (n.clone(), Value::String(v.clone())))
                .collect(),
        ))
    }

    /// The create request the API would get.
    fn create_request(&self) -> Result<CreateDestinationRequest, (String, String)> {
        let mut cfg = Map::new();
        for f in self.schema_fields() {
            match f.kind {
                FieldKind::Headers => {
                    if let Some(h) = self.headers_json() {
                        cfg.insert(f.name.into(), h);
                    }
                }
                FieldKind::Bool => {
                    let on = self.config.get(f.name).is_some_and(|v| v == "true");
                    cfg.insert(f.name.into(), Value::Bool(on));
                }
                _ => {
                    let v = self
                        .config
                        .get(f.name)
                        .map(|v| v.trim())
                        .unwrap_or_default();
                    if !v.is_empty() {
                        cfg.insert(f.name.into(), Value::String(v.to_string()));
                    }
                }
            }
        }
        Ok(CreateDestinationRequest {
            ty: self.ty.as_str().into(),
            name: self.name.trim().to_string(),
            config: Value::Object(cfg),
            enabled: Some(self.enabled),
            privacy_mode: Some(self.privacy_mode),
            broadcast_generation_cost: Some(self.groups_on[0]),
            broadcast_generation_identity: Some(self.groups_on[1]),
            broadcast_generation_request_context: Some(self.groups_on[2]),
            broadcast_generation_cost_allocation: Some(self.groups_on[3]),
            sampling_rate: self.sampling()?,
            api_key_hashes: if self.all_keys {
                None
            } else {
                Some(Some(self.keys.clone()))
            },
            filter_rules: self.filter_json().map(Some),
            regions: Some(self.regions.clone()),
            workspace_id: Some(Some(self.workspace_id.clone())),
        })
    }

    /// The PATCH the API would get for `current`: every field of the form; secrets only when
    /// replaced (or cleared).
    fn update_request(
        &self,
        current: &Destination,
    ) -> Result<UpdateDestinationRequest, (String, String)> {
        let mut cfg = Map::new();
        for f in self.schema_fields() {
            match f.kind {
                FieldKind::Headers => match self.headers_json() {
                    Some(h) => {
                        cfg.insert(f.name.into(), h);
                    }
                    None if current.config.contains_key(f.name) => {
                        cfg.insert(f.name.into(), Value::Null);
                    }
                    None => {}
                },
                FieldKind::Bool => {
                    let on = self.config.get(f.name).is_some_and(|v| v == "true");
                    cfg.insert(f.name.into(), Value::Bool(on));
                }
                _ if f.secret => {
                    let v = self
                        .config
                        .get(f.name)
                        .map(|v| v.trim())
                        .unwrap_or_default();
                    if !v.is_empty() {
                        cfg.insert(f.name.into(), Value::String(v.to_string()));
                    } else if self.clear.contains(&f.name) {
                        cfg.insert(f.name.into(), Value::Null);
                    }
                }
                _ => {
                    let v = self
                        .config
                        .get(f.name)
                        .map(|v| v.trim())
                        .unwrap_or_default();
                    let value = if v.is_empty() {
                        Value::Null
                    } else {
                        Value::String(v.to_string())
                    };
                    cfg.insert(f.name.into(), value);
                }
            }
        }
        Ok(UpdateDestinationRequest {
            name: Some(self.name.trim().to_string()),
            enabled: Some(self.enabled),
            privacy_mode: Some(self.privacy_mode),
            broadcast_generation_cost: Some(self.groups_on[0]),
            broadcast_generation_identity: Some(self.groups_on[1]),
            broadcast_generation_request_context: Some(self.groups_on[2]),
            broadcast_generation_cost_allocation: Some(self.groups_on[3]),
            sampling_rate: self.sampling()?.or(Some(1.0)),
            api_key_hashes: Some(if self.all_keys {
                None
            } else {
                Some(self.keys.clone())
            }),
            filter_rules: Some(self.filter_json()),
            regions: Some(Some(self.regions.clone())),
            config: Some(Value::Object(cfg)),
            ..Default::default()
        })
    }
}

/// `0.5`, `1`, `0.0001`: a number without a trailing `.0`.
fn number_text(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------

struct Opt {
    value: String,
    label: String,
    selected: bool,
}

/// One config input.
struct FieldView {
    name: &'static str,
    id: String,
    label: String,
    help: &'static str,
    /// `text`, `url`, `password`, `select`, `checkbox`, `textarea`, `readonly`.
    input: &'static str,
    required: bool,
    value: String,
    checked: bool,
    options: Vec<Opt>,
    placeholder: String,
    /// Edit: the stored secret, masked ("" when none is stored).
    masked: String,
    /// Edit: an optional secret that is stored can be removed.
    can_clear: bool,
    clear: bool,
    error: Option<String>,
}

struct HeaderRow {
    index: usize,
    name: String,
    value: String,
}

struct CheckView {
    name: &'static str,
    value: String,
    id: String,
    label: String,
    help: &'static str,
    checked: bool,
}

struct RuleView {
    g: usize,
    r: usize,
    fields: Vec<Opt>,
    ops: Vec<Opt>,
    value: String,
    no_value: bool,
    error: Option<String>,
}

struct GroupView {
    index: usize,
    number: usize,
    or: bool,
    rules: Vec<RuleView>,
}

struct KeyOpt {
    hash: String,
    name: String,
    label: String,
    checked: bool,
    disabled: bool,
}

struct TestView {
    ok: bool,
    summary: String,
    message: String,
}

impl TestView {
    fn of(t: &TestResult) -> Self {
        let status = t.status.map(|s| format!("HTTP {s}, ")).unwrap_or_default();
        TestView {
            ok: t.ok,
            summary: format!(
                "{} ({status}{:.0} ms)",
                if t.ok {
                    "Connection OK"
                } else {
                    "Connection failed"
                },
                t.latency_ms
            ),
            message: t.message.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "destination_form.html")]
struct FormPage {
    chrome: Chrome,
    editing: bool,
    action: String,
    cancel: String,
    mark: TypeMark,
    type_slug: &'static str,
    dest_id: String,
    workspaces: Vec<Opt>,
    workspace_id: String,
    workspace_name: String,
    workspace_error: Option<String>,
    name: String,
    name_error: Option<String>,
    fields: Vec<FieldView>,
    has_headers: bool,
    headers: Vec<HeaderRow>,
    headers_error: Option<String>,
    enabled: bool,
    privacy_mode: bool,
    groups: Vec<CheckView>,
    sampling_rate: String,
    sampling_error: Option<String>,
    regions: Vec<CheckView>,
    regions_error: Option<String>,
    all_keys: bool,
    keys: Vec<KeyOpt>,
    keys_error: Option<String>,
    filter_enabled: bool,
    filter_groups: Vec<GroupView>,
    filter_error: Option<String>,
    general_error: Option<String>,
    test: Option<TestView>,
    require_test: bool,
    warehouse: bool,
}

/// Errors by slot ([`slot_of`]).
type Errors = BTreeMap<String, String>;

fn errors_of(message: &str) -> Errors {
    let mut e = Errors::new();
    e.insert(slot_of(message), message.to_string());
    e
}

fn operator_label(op: FilterOperator) -> &'static str {
    match op {
        FilterOperator::Equals => "equals",
        FilterOperator::NotEquals => "does not equal",
        FilterOperator::Contains => "contains",
        FilterOperator::NotContains => "does not contain",
        FilterOperator::Regex => "matches regex",
        FilterOperator::StartsWith => "starts with",
        FilterOperator::EndsWith => "ends with",
        FilterOperator::Gt => "is greater than",
        FilterOperator::Lt => "is less than",
        FilterOperator::Gte => "is at least",
        FilterOperator::Lte => "is at most",
        FilterOperator::Exists => "is set",
        FilterOperator::NotExists => "is not set",
    }
}

fn field_input(f: &FieldSpec) -> &'static str {
    if f.server_issued {
        return "readonly";
    }
    match &f.kind {
        FieldKind::Bool => "checkbox",
        FieldKind::Enum(_) => "select",
        _ if f.multiline => "textarea",
        _ if f.secret => "password",
        FieldKind::Url => "url",
        _ => "text",
    }
}

struct Page<'a> {
    dash: &'a Dash,
    session: &'a Session,
    /// The destination being edited.
    current: Option<&'a Destination>,
}

impl Page<'_> {
    async fn render(
        &self,
        draft: &Draft,
        errors: &Errors,
        test: Option<TestView>,
    ) -> DashResult<Response> {
        let caller = &self.session.caller;
        let state = &self.dash.app;
        let workspaces = all_workspaces(state, caller).await?;
        let workspace_name = workspaces
            .iter()
            .find(|w| w.id.to_string() == draft.workspace_id)
            .map(|w| w.name.clone())
            .unwrap_or_default();
        // The allowlist picker: the workspace's keys (enabled or not).
        let keys = match Uuid::parse_str(&draft.workspace_id)
            .ok()
            .filter(|id| workspaces.iter().any(|w| w.id == *id))
        {
            Some(_) => list_keys(
                state,
                caller,
                tracecast_model::api_key::KeyKind::Workspace,
                Some(&draft.workspace_id),
                true,
                PageRequest {
                    offset: 0,
                    limit: 100,
                },
            )
            .await?
            .items
            .into_iter()
            .map(|k| KeyOpt {
                checked: draft.keys.iter().any(|h| h.eq_ignore_ascii_case(&k.hash)),
                hash: k.hash,
                name: k.name,
                label: k.label,
                disabled: k.disabled,
            })
            .collect(),
            None => Vec::new(),
        };
        let masked = self
            .current
            .map(|d| config::masked(d.ty, &d.config))
            .unwrap_or_default();
        let editing = self.current.is_some();
        let fields = draft
            .ty
            .schema()
            .iter()
            .filter(|f| !matches!(f.kind, FieldKind::Headers))
            .map(|f| {
                let input = field_input(f);
                let stored_secret = masked
                    .get(f.name)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let value = if f.server_issued {
                    self.current
                        .and_then(|d| d.config.get(f.name))
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| "issued when the destination assumes a role".into())
                } else {
                    draft.config.get(f.name).cloned().unwrap_or_default()
                };
                let options = match &f.kind {
                    FieldKind::Enum(opts) => {
                        let mut out: Vec<Opt> = Vec::new();
                        if f.default.is_none() {
                            out.push(Opt {
                                value: String::new(),
                                label: "(not set)".into(),
                                selected: value.is_empty(),
                            });
                        }
                        out.extend(opts.iter().map(|o| Opt {
                            value: o.to_string(),
                            label: o.to_string(),
                            selected: value == *o,
                        }));
                        out
                    }
                    _ => Vec::new(),
                };
                FieldView {
                    name: f.name,
                    id: format!("f-cfg-{}", f.name),
                    label: view::field_label(f.name),
                    help: f.help,
                    input,
                    required: f.required && !(f.secret && editing),
                    checked: value == "true",
                    placeholder: if f.secret && editing && !stored_secret.is_empty() {
                        "unchanged".into()
                    } else {
                        default_text(f)
                    },
                    can_clear: editing && f.secret && !f.required && !stored_secret.is_empty(),
                    clear: draft.clear.contains(&f.name),
                    masked: if f.secret {
                        stored_secret
                    } else {
                        String::new()
                    },
                    // A secret typed on the form is rendered back into its (password) input,
                    // so that a test followed by save does not ask for it twice.
                    value,
                    options,
                    error: errors.get(&format!("cfg.{}", f.name)).cloned(),
                }
            })
            .collect();
        let has_headers = draft
            .ty
            .schema()
            .iter()
            .any(|f| matches!(f.kind, FieldKind::Headers));
        let groups = GROUPS
            .iter()
            .enumerate()
            .map(|(i, (name, label, help))| CheckView {
                name,
                value: "on".into(),
                id: format!("f-{name}"),
                label: label.to_string(),
                help,
                checked: draft.groups_on[i],
            })
            .collect();
        let regions = Region::ALL
            .iter()
            .map(|r| CheckView {
                name: "regions",
                value: r.as_str().into(),
                id: format!("f-region-{}", r.as_str()),
                label: match r {
                    Region::Global => "Global".into(),
                    Region::Europe => "Europe".into(),
                    Region::Us => "United States".into(),
                },
                help: "",
                checked: draft.regions.iter().any(|x| Region::parse(x) == Some(*r)),
            })
            .collect();
        let filter_groups = draft
            .filter_groups
            .iter()
            .enumerate()
            .map(|(gi, g)| GroupView {
                index: gi,
                number: gi + 1,
                or: g.or,
                rules: g
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(ri, r)| RuleView {
                        g: gi,
                        r: ri,
                        fields: FilterField::ALL
                            .iter()
                            .map(|f| Opt {
                                value: f.as_str().into(),
                                label: f.as_str().into(),
                                selected: r.field == f.as_str(),
                            })
                            .collect(),
                        ops: FilterOperator::ALL
                            .iter()
                            .map(|o| Opt {
                                value: o.as_str().into(),
                                label: operator_label(*o).into(),
                                selected: r.op == o.as_str(),
                            })
                            .collect(),
                        value: r.value.clone(),
                        no_value: FilterOperator::parse(&r.op)
                            .is_some_and(FilterOperator::takes_no_value),
                        error: errors.get(&format!("g{gi}.r{ri}")).cloned(),
                    })
                    .collect(),
            })
            .collect();
        let (title, action, cancel) = match self.current {
            Some(d) => (
                format!(
                    "Edit {}",
                    d.name.clone().unwrap_or_else(|| d.ty.display_name().into())
                ),
                format!("/destinations/{}/edit", d.id),
                format!("/destinations/{}", d.id),
            ),
            None => (
                format!("New {} destination", draft.ty.display_name()),
                format!("/destinations/new/{}", draft.ty.as_str()),
                "/destinations".to_string(),
            ),
        };
        let page = FormPage {
            chrome: self.session.chrome(title, "destinations"),
            editing,
            action,
            cancel,
            mark: TypeMark::of(draft.ty),
            type_slug: draft.ty.as_str(),
            dest_id: self.current.map(|d| d.id.to_string()).unwrap_or_default(),
            workspaces: workspaces
                .iter()
                .map(|w| Opt {
                    value: w.id.to_string(),
                    label: w.name.clone(),
                    selected: w.id.to_string() == draft.workspace_id,
                })
                .collect(),
            workspace_id: draft.workspace_id.clone(),
            workspace_name,
            workspace_error: errors.get("workspace").cloned(),
            name: draft.name.clone(),
            name_error: errors.get("name").cloned(),
            fields,
            has_headers,
            headers: draft
                .headers
                .iter()
                .enumerate()
                .map(|(index, (name, value))| HeaderRow {
                    index,
                    name: name.clone(),
                    value: value.clone(),
                })
                .collect(),
            headers_error: errors.get("headers").cloned(),
            enabled: draft.enabled,
            privacy_mode: draft.privacy_mode,
            groups,
            sampling_rate: draft.sampling_rate.clone(),
            sampling_error: errors.get("sampling_rate").cloned(),
            regions,
            regions_error: errors.get("regions").cloned(),
            all_keys: draft.all_keys,
            keys,
            keys_error: errors.get("keys").cloned(),
            filter_enabled: draft.filter_enabled,
            filter_groups,
            filter_error: errors.get("filter").cloned(),
            general_error: errors.get("general").cloned(),
            test,
            require_test: draft.require_test,
            warehouse: setup_sql_of(draft).is_some(),
        };
        let mut res = render(&page);
        if !errors.is_empty() {
            *res.status_mut() = axum::http::StatusCode::UNPROCESSABLE_ENTITY;
        }
        Ok(res)
    }
}

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "choose_type.html")]
struct ChooseType {
    chrome: Chrome,
    types: Vec<TypeMark>,
    query: String,
}

#[derive(Deserialize)]
pub struct WorkspaceQuery {
    workspace: Option<String>,
}

/// `GET /destinations/new`: pick a type.
pub async fn choose_type(session: Session, Query(q): Query<WorkspaceQuery>) -> Response {
    let mut types: Vec<TypeMark> = DestinationType::ALL
        .iter()
        .map(|t| TypeMark::of(*t))
        .collect();
    types.sort_by_key(|t| t.name.to_ascii_lowercase());
    let query = q
        .workspace
        .filter(|w| !w.is_empty())
        .map(|w| {
            format!(
                "?workspace={}",
                url::form_urlencoded::byte_serialize(w.as_bytes()).collect::<String>()
            )
        })
        .unwrap_or_default();
    render(&ChooseType {
        chrome: session.chrome("Add a destination", "destinations"),
        types,
        query,
    })
}

fn parse_type(s: &str) -> DashResult<DestinationType> {
    DestinationType::parse(s).ok_or_else(|| DashError::Api(ApiError::not_found()))
}

/// `GET /destinations/new/{type}`.
pub async fn new_form(
    State(dash): State<Dash>,
    session: Session,
    Path(ty): Path<String>,
    Query(q): Query<WorkspaceQuery>,
) -> DashResult<Response> {
    let ty = parse_type(&ty)?;
    let ws = session
        .caller
        .workspace(&dash.app, q.workspace.as_deref().filter(|w| !w.is_empty()))
        .await?;
    let draft = Draft::blank(ty, ws.id.to_string());
    Page {
        dash: &dash,
        session: &session,
        current: None,
    }
    .render(&draft, &Errors::new(), None)
    .await
}

/// `POST /destinations/new/{type}`: build, test or save.
pub async fn new_submit(
    State(dash): State<Dash>,
    Path(ty): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let ty = parse_type(&ty)?;
    let mut draft = Draft::parse(ty, &form.fields);
    let page = Page {
        dash: &dash,
        session: &form.session,
        current: None,
    };
    let op = form.fields.text("op").to_string();
    if draft.apply_op(&op) {
        return page.render(&draft, &Errors::new(), None).await;
    }
    let caller = &form.session.caller;
    let req = match draft.create_request() {
        Ok(r) => r,
        Err((slot, msg)) => {
            return page
                .render(&draft, &BTreeMap::from([(slot, msg)]), None)
                .await;
        }
    };
    let testing = op == "test";
    if testing || draft.require_test {
        let result = match test_new_destination(&dash.app, caller, &req).await {
            Ok(r) => r,
            Err(e) => return api_error(&page, &draft, e, None).await,
        };
        let view = TestView::of(&result);
        if testing {
            return page.render(&draft, &Errors::new(), Some(view)).await;
        }
        if !result.ok {
            let errors = BTreeMap::from([(
                "general".to_string(),
                "Not saved: the connection test failed. Fix the settings, or untick \"Require a passing test\" to save anyway.".to_string(),
            )]);
            return page.render(&draft, &errors, Some(view)).await;
        }
    }
    match create_destination(&dash.app, caller, &req).await {
        Ok(d) => Ok(after_post(
            form.htmx,
            &format!("/destinations/{}?created", d.id),
        )),
        Err(e) => api_error(&page, &draft, e, None).await,
    }
}

/// Renders the form again with an API error next to its field; answers other errors (404,
/// 503) as themselves.
async fn api_error(
    page: &Page<'_>,
    draft: &Draft,
    e: ApiError,
    test: Option<TestView>,
) -> DashResult<Response> {
    use axum::http::StatusCode;
    if matches!(e.status, StatusCode::BAD_REQUEST | StatusCode::CONFLICT) {
        return page.render(draft, &errors_of(&e.message), test).await;
    }
    Err(e.into())
}

/// `GET /destinations/{id}/edit`.
pub async fn edit_form(
    State(dash): State<Dash>,
    session: Session,
    Path(id): Path<String>,
) -> DashResult<Response> {
    let d = find_destination(&dash.app, &session.caller, &id).await?;
    let draft = Draft::of(&d);
    Page {
        dash: &dash,
        session: &session,
        current: Some(&d),
    }
    .render(&draft, &Errors::new(), None)
    .await
}

/// `POST /destinations/{id}/edit`: build, test or save.
pub async fn edit_submit(
    State(dash): State<Dash>,
    Path(id): Path<String>,
    form: PostForm,
) -> DashResult<Response> {
    let caller = &form.session.caller;
    let d = find_destination(&dash.app, caller, &id).await?;
    let mut draft = Draft::parse(d.ty, &form.fields);
    draft.workspace_id = d.workspace_id.to_string();
    let page = Page {
        dash: &dash,
        session: &form.session,
        current: Some(&d),
    };
    let op = form.fields.text("op").to_string();
    if draft.apply_op(&op) {
        return page.render(&draft, &Errors::new(), None).await;
    }
    let req = match draft.update_request(&d) {
        Ok(r) => r,
        Err((slot, msg)) => {
            return page
                .render(&draft, &BTreeMap::from([(slot, msg)]), None)
                .await;
        }
    };
    let testing = op == "test";
    if testing || draft.require_test {
        let updated = match prepare_update(&dash.app, caller, &id, &req).await {
            Ok(u) => u,
            Err(e) => return api_error(&page, &draft, e, None).await,
        };
        let result = dash
            .app
            .engine
            .test_connection(updated.ty, &updated.config)
            .await;
        let view = TestView::of(&result);
        if testing {
            return page.render(&draft, &Errors::new(), Some(view)).await;
        }
        if !result.ok {
            let errors = BTreeMap::from([(
                "general".to_string(),
                "Not saved: the connection test failed. Fix the settings, or untick \"Require a passing test\" to save anyway.".to_string(),
            )]);
            return page.render(&draft, &errors, Some(view)).await;
        }
    }
    match update_destination(&dash.app, caller, &id, &req).await {
        Ok(d) => Ok(after_post(
            form.htmx,
            &format!("/destinations/{}?saved", d.id),
        )),
        Err(e) => api_error(&page, &draft, e, None).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Live preview and setup SQL
// ---------------------------------------------------------------------------------------------

struct PreviewRow {
    when: String,
    model: String,
    provider: String,
    user: String,
    key: String,
    tokens: String,
    cost: String,
    decision: &'static str,
    passes: bool,
}

#[derive(Template)]
#[template(path = "preview.html")]
struct PreviewFragment {
    error: Option<String>,
    total: usize,
    passing: usize,
    rows: Vec<PreviewRow>,
    sampled: bool,
    new_destination: bool,
}

fn decision_label(d: Decision) -> &'static str {
    match d {
        Decision::Deliver => "passes",
        Decision::Disabled => "switched off",
        Decision::WrongRegion => "other region",
        Decision::KeyNotAllowed => "key not allowed",
        Decision::Filtered => "filtered out",
        Decision::SampledOut => "sampled out",
    }
}

fn preview_row(g: &Generation, decision: Decision) -> PreviewRow {
    let tokens = g
        .usage
        .as_ref()
        .and_then(|u| u.total_tokens)
        .map(|t| t.to_string())
        .unwrap_or_default();
    PreviewRow {
        when: view::utc(&g.created_at),
        model: g.model.clone(),
        provider: g.provider_name.clone().unwrap_or_default(),
        user: g.user.clone().unwrap_or_default(),
        key: g.identity.api_key_name.clone().unwrap_or_default(),
        tokens,
        cost: g.total_cost.map(|c| format!("${c:.6}")).unwrap_or_default(),
        decision: decision_label(decision),
        passes: decision.is_deliver(),
    }
}

/// The draft's routing as a destination: the same validation as the API's (filter rules,
/// regions, sampling rate, allowlist shape), then compiled by the engine's router.
fn draft_destination(draft: &Draft, id: Uuid, workspace: Uuid) -> Result<Destination, String> {
    let filter_rules = draft
        .filter_json()
        .map(|v| FilterRules::parse("filter_rules", &v))
        .transpose()
        .map_err(|e| e.0)?;
    let regions = Region::parse_list("regions", &draft.regions).map_err(|e| e.0)?;
    let sampling_rate = match draft.sampling().map_err(|(_, m)| m)? {
        Some(r) => validate_sampling_rate(r).map_err(|e| e.0)?,
        None => 1.0,
    };
    let api_key_hashes = if draft.all_keys {
        None
    } else {
        Some(normalize_key_hashes(&draft.keys).map_err(|e| e.0)?)
    };
    Ok(Destination {
        id,
        workspace_id: workspace,
        ty: draft.ty,
        name: None,
        enabled: true,
        privacy_mode: draft.privacy_mode,
        broadcast_generation_cost: false,
        broadcast_generation_identity: false,
        broadcast_generation_request_context: false,
        broadcast_generation_cost_allocation: false,
        sampling_rate,
        api_key_hashes,
        filter_rules,
        regions,
        config: Map::new(),
        created_at: String::new(),
        updated_at: String::new(),
    })
}

/// The destination a preview or setup request is about: the one being edited (`dest_id`),
/// else a new one of `type` in `workspace_id`. Both must belong to the caller's tenant.
async fn preview_subject(
    dash: &Dash,
    caller: &Caller,
    f: &Fields,
) -> DashResult<(Draft, Uuid, Uuid, bool)> {
    if let Some(id) = f.get("dest_id").filter(|s| !s.is_empty()) {
        let d = find_destination(&dash.app, caller, id).await?;
        let mut draft = Draft::parse(d.ty, f);
        draft.workspace_id = d.workspace_id.to_string();
        return Ok((draft, d.id, d.workspace_id, false));
    }
    let ty = parse_type(f.text("type"))?;
    let ws = caller
        .workspace(
            &dash.app,
            Some(f.text("workspace_id")).filter(|w| !w.is_empty()),
        )
        .await?;
    let mut draft = Draft::parse(ty, f);
    draft.workspace_id = ws.id.to_string();
    Ok((draft, Uuid::nil(), ws.id, true))
}

/// `POST /destinations/preview`: which of the workspace's last generations the form's
/// routing (regions, key allowlist, filter rules, sampling) would let through.
pub async fn preview(State(dash): State<Dash>, form: PostForm) -> DashResult<Response> {
    let (draft, id, workspace, new_destination) =
        preview_subject(&dash, &form.session.caller, &form.fields).await?;
    let recent: Vec<Arc<Generation>> = dash
        .app
        .engine
        .recent_generations(workspace, PREVIEW_GENERATIONS)
        .await
        .map_err(crate::api::delivery::engine_error)?;
    let fragment = match draft_destination(&draft, id, workspace) {
        Err(message) => PreviewFragment {
            error: Some(message),
            total: recent.len(),
            passing: 0,
            rows: Vec::new(),
            sampled: false,
            new_destination,
        },
        Ok(d) => {
            let route = CompiledRoute::new(&d);
            let rows: Vec<PreviewRow> = recent
                .iter()
                .rev()
                .map(|g| preview_row(g, route.decide(g, true)))
                .collect();
            PreviewFragment {
                error: None,
                total: rows.len(),
                passing: rows.iter().filter(|r| r.passes).count(),
                rows,
                sampled: d.sampling_rate < 1.0,
                new_destination,
            }
        }
    };
    Ok(render(&fragment))
}

#[derive(Template)]
#[template(path = "setup_sql.html")]
struct SetupSqlFragment {
    title: &'static str,
    sql: String,
    note: &'static str,
}

/// The `CREATE TABLE` for a warehouse destination with the form's database and table names.
fn setup_sql_of(draft: &Draft) -> Option<SetupSqlFragment> {
    use tracecast_exporters::{bigquery, clickhouse, snowflake};
    let get = |k: &str| {
        draft
            .config
            .get(k)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let default = |k: &str| {
        draft
            .ty
            .schema()
            .iter()
            .find(|f| f.name == k)
            .map(default_text)
            .unwrap_or_default()
    };
    let v2 = get("shouldIncludeCacheWriteTokens") == Some("true");
    match draft.ty {
        DestinationType::Clickhouse => Some(SetupSqlFragment {
            title: "Run this in ClickHouse before saving",
            sql: clickhouse::ddl(
                get("database"),
                get("table").unwrap_or(&default("table")),
                v2,
            ),
            note: "For ClickHouse servers older than 20.1, run `tracecast schema clickhouse --legacy` for the variant they accept.",
        }),
        DestinationType::Snowflake => Some(SetupSqlFragment {
            title: "Run this in Snowflake before saving",
            sql: snowflake::ddl(
                Some(get("database").unwrap_or(&default("database"))),
                Some(get("schema").unwrap_or(&default("schema"))),
                get("table").unwrap_or(&default("table")),
                v2,
            ),
            note: "The token's role needs INSERT on the table and USAGE on the warehouse.",
        }),
        DestinationType::Bigquery => Some(SetupSqlFragment {
            title: "Run this in BigQuery before saving",
            sql: bigquery::ddl(
                get("projectId"),
                get("dataset").unwrap_or(&default("dataset")),
                get("table").unwrap_or(&default("table")),
            ),
            note: "The service account needs the BigQuery Data Editor role on the dataset.",
        }),
        _ => None,
    }
}

/// `POST /destinations/setup-sql`: the warehouse table for what is on the form.
pub async fn setup_sql(State(dash): State<Dash>, form: PostForm) -> DashResult<Response> {
    let (draft, _, _, _) = preview_subject(&dash, &form.session.caller, &form.fields).await?;
    Ok(match setup_sql_of(&draft) {
        Some(f) => render(&f),
        None => ().into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(s: &str) -> Fields {
        Fields::parse(s.as_bytes())
    }

    #[test]
    fn a_posted_form_becomes_the_api_create_request() {
        let f = fields(
            "workspace_id=w1&name=+Hook+&enabled=on&sampling_rate=0.5&regions=global&regions=eu\
             &keys_mode=all&cfg.url=http%3A%2F%2Fx%2Ft&cfg.method=PUT&hdr_name=X-A&hdr_value=1\
             &hdr_name=&hdr_value=&filter_enabled=on&g0.logic=or&g0.r0.field=total_cost&g0.r0.op=gt\
             &g0.r0.value=0.5&g0.r1.field=user_id&g0.r1.op=exists&g0.r1.value=ignored&require_test=on",
        );
        let d = Draft::parse(DestinationType::Webhook, &f);
        let req = d.create_request().unwrap();
        assert_eq!(req.name, "Hook");
        assert_eq!(req.sampling_rate, Some(0.5));
        assert_eq!(req.regions, Some(vec!["global".into(), "eu".into()]));
        assert_eq!(
            req.config,
            json!({"url": "http://x/t", "method": "PUT", "headers": {"X-A": "1"}})
        );
        assert_eq!(
            req.filter_rules,
            Some(Some(
                json!({"enabled": true, "groups": [{"logic": "or", "rules": [
                    {"field": "total_cost", "operator": "gt", "value": 0.5},
                    {"field": "user_id", "operator": "exists"}
                ]}]})
            ))
        );
        assert!(req.api_key_hashes.is_none());
        assert_eq!(req.workspace_id, Some(Some("w1".into())));
        assert!(d.require_test);
    }

    #[test]
    fn building_operations_change_the_draft() {
        let mut d = Draft::blank(DestinationType::Webhook, "w".into());
        assert!(d.apply_op("add-group"));
        assert!(d.apply_op("add-rule:0"));
        assert_eq!(d.filter_groups[0].rules.len(), 2);
        assert!(d.apply_op("remove-rule:0:1"));
        assert!(d.apply_op("remove-rule:0:0"));
        assert!(d.filter_groups.is_empty(), "a group without rules goes");
        assert!(d.apply_op("add-header"));
        assert!(d.apply_op("remove-header:0"));
        assert!(d.headers.is_empty());
        // Out of range or unknown: nothing happens, and save/test are not building ops.
        assert!(!d.apply_op("remove-rule:5:0"));
        assert!(!d.apply_op("save"));
        assert!(!d.apply_op("test"));
    }

    #[test]
    fn an_edit_sends_secrets_only_when_replaced_or_cleared() {
        let current = Destination {
            id: Uuid::nil(),
            workspace_id: Uuid::nil(),
            ty: DestinationType::S3,
            name: Some("s3".into()),
            enabled: true,
            privacy_mode: false,
            broadcast_generation_cost: false,
            broadcast_generation_identity: false,
            broadcast_generation_request_context: false,
            broadcast_generation_cost_allocation: false,
            sampling_rate: 1.0,
            api_key_hashes: None,
            filter_rules: None,
            regions: vec![Region::Global],
            config: json!({"bucketName": "b", "accessKeyId": "AKIAxxxxxxxxxxxx", "secretAccessKey": "s3cr3ts3cr3ts3cr3t", "sessionToken": "tok-tok-tok-tok", "headers": {"x-a": "1"}})
                .as_object()
                .unwrap()
                .clone(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        let d = Draft::of(&current);
        assert_eq!(d.config["accessKeyId"], "", "secrets start empty");
        assert_eq!(d.headers, vec![("x-a".to_string(), "********".to_string())]);
        let f = fields(
            "name=s3&enabled=on&regions=global&keys_mode=all&cfg.bucketName=b2&cfg.secretAccessKey=new-secret-value\
             &clear.sessionToken=on&cfg.authMode=access_keys&hdr_name=x-a&hdr_value=********",
        );
        let req = Draft::parse(DestinationType::S3, &f)
            .update_request(&current)
            .unwrap();
        let cfg = req.config.unwrap();
        assert_eq!(cfg["bucketName"], "b2");
        assert_eq!(cfg["secretAccessKey"], "new-secret-value");
        assert!(cfg.get("accessKeyId").is_none(), "kept: not sent");
        assert_eq!(cfg["sessionToken"], Value::Null, "cleared");
        assert_eq!(cfg["region"], Value::Null, "empty optional: reset");
        assert!(cfg.get("externalId").is_none(), "server-issued: never sent");
        assert_eq!(cfg["headers"], json!({"x-a": "********"}));
        assert_eq!(req.api_key_hashes, Some(None));
        assert_eq!(req.filter_rules, Some(None));
    }

    #[test]
    fn every_type_renders_a_form_from_its_schema() {
        for ty in DestinationType::ALL {
            let d = Draft::blank(ty, "w".into());
            for f in ty.schema() {
                if !matches!(f.kind, FieldKind::Headers) {
                    assert!(d.config.contains_key(f.name), "{ty}.{}", f.name);
                }
            }
            let warehouse = matches!(
                ty,
                DestinationType::Clickhouse
                    | DestinationType::Snowflake
                    | DestinationType::Bigquery
            );
            let sql = setup_sql_of(&d);
            assert_eq!(sql.is_some(), warehouse, "{ty}");
            if let Some(s) = sql {
                assert!(s.sql.contains("CREATE TABLE"), "{ty}");
            }
        }
    }

    #[test]
    fn the_preview_routes_with_the_engine() {
        let mut d = Draft::blank(DestinationType::Webhook, "w".into());
        d.filter_groups = vec![GroupDraft {
            or: false,
            rules: vec![RuleDraft {
                field: "model".into(),
                op: "starts_with".into(),
                value: "openai/".into(),
            }],
        }];
        let dest = draft_destination(&d, Uuid::nil(), Uuid::nil()).unwrap();
        let route = CompiledRoute::new(&dest);
        let g = |model: &str| Generation {
            id: "g".into(),
            model: model.into(),
            created_at: "2026-01-01T00:00:00Z".into(),
            ..Default::default()
        };
        assert_eq!(route.decide(&g("openai/gpt-4o"), true), Decision::Deliver);
        assert_eq!(
            route.decide(&g("anthropic/claude"), true),
            Decision::Filtered
        );
        d.filter_groups[0].rules[0].op = "regex".into();
        d.filter_groups[0].rules[0].value = "(".into();
        let e = draft_destination(&d, Uuid::nil(), Uuid::nil()).unwrap_err();
        assert!(
            e.starts_with("filter_rules.groups[0].rules[0].value is not a valid regex"),
            "{e}"
        );
    }
}
