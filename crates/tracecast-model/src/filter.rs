//! Filter rules: which generations a destination forwards.
//!
//! Shape (OpenRouter's `ObservabilityFilterRulesConfig`):
//! `{enabled?: bool = true, groups: [{logic?: "and"|"or" = "and", rules: [{field, operator, value?}]}]}`.
//! A generation is kept when *any* group matches; within a group the rules are joined by the
//! group's `logic`. Validation here is strict so that evaluation never meets a bad rule.
//!
//! Regexes are bounded three ways (see `docs/routing.md`, "Limits"): each compiles within
//! [`REGEX_SIZE_LIMIT`] and searches with a lazy-DFA cache of at most [`REGEX_CACHE_BYTES`];
//! the regexes of one destination together cost at most [`DESTINATION_REGEX_BUDGET`] (compiled
//! size, `regex_automata::meta::Regex::memory_usage`, plus the cache); and a rule scans at most
//! [`MAX_SCAN_BYTES`] of a field.

use regex_automata::meta;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::error::ValidationError;

/// Regexes in filter rules are compiled with this size limit (Rust's `regex` crate syntax).
pub const REGEX_SIZE_LIMIT: usize = 256 * 1024;
/// The lazy-DFA cache of one regex (per thread evaluating it). A regex that needs more falls
/// back to slower engines, never to more memory.
pub const REGEX_CACHE_BYTES: usize = 64 * 1024;
/// What the regexes of one destination may cost together: compiled size plus cache.
pub const DESTINATION_REGEX_BUDGET: usize = 4 * 1024 * 1024;
/// A rule's regex sees at most this much of a field (its first bytes, cut at a character
/// boundary): the cost of routing one record is bounded whatever its size.
pub const MAX_SCAN_BYTES: usize = 64 * 1024;

/// A compiled filter regex.
pub type FilterRegex = meta::Regex;
const MAX_GROUPS: usize = 20;
const MAX_RULES_PER_GROUP: usize = 50;
const MAX_VALUE_LEN: usize = 4096;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilterRules {
    pub enabled: bool,
    pub groups: Vec<FilterGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilterGroup {
    pub logic: Logic,
    pub rules: Vec<FilterRule>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FilterRule {
    pub field: FilterField,
    pub operator: FilterOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<FilterValue>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Logic {
    And,
    Or,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum FilterValue {
    Text(String),
    Number(f64),
}

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        pub enum $name { $( #[serde(rename = $s)] $variant ),+ }
        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $s),+ } }
            pub fn parse(s: &str) -> Option<Self> { Self::ALL.iter().copied().find(|v| v.as_str() == s) }
            fn names() -> String { Self::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(", ") }
        }
    };
}

string_enum!(
    /// The generation field a rule looks at.
    FilterField {
        Model = "model",
        Provider = "provider",
        SessionId = "session_id",
        UserId = "user_id",
        ApiKeyName = "api_key_name",
        FinishReason = "finish_reason",
        Input = "input",
        Output = "output",
        TotalCost = "total_cost",
        TotalTokens = "total_tokens",
        PromptTokens = "prompt_tokens",
        CompletionTokens = "completion_tokens",
    }
);

string_enum!(
    /// How a rule compares the field with its value.
    FilterOperator {
        Equals = "equals",
        NotEquals = "not_equals",
        Contains = "contains",
        NotContains = "not_contains",
        Regex = "regex",
        StartsWith = "starts_with",
        EndsWith = "ends_with",
        Gt = "gt",
        Lt = "lt",
        Gte = "gte",
        Lte = "lte",
        Exists = "exists",
        NotExists = "not_exists",
    }
);

impl FilterField {
    /// Numeric fields compare as numbers; the rest as case-sensitive strings.
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Self::TotalCost | Self::TotalTokens | Self::PromptTokens | Self::CompletionTokens
        )
    }
}

impl FilterOperator {
    pub fn is_numeric(self) -> bool {
        matches!(self, Self::Gt | Self::Lt | Self::Gte | Self::Lte)
    }
    pub fn takes_no_value(self) -> bool {
        matches!(self, Self::Exists | Self::NotExists)
    }
}

/// A rule's regex that does not parse, or does not compile within [`REGEX_SIZE_LIMIT`].
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct RegexError(Box<meta::BuildError>);

/// Compiles a rule's regex with tracecast's size limits.
pub fn compile_regex(pattern: &str) -> Result<FilterRegex, RegexError> {
    meta::Regex::builder()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                .hybrid_cache_capacity(REGEX_CACHE_BYTES),
        )
        .build(pattern)
        .map_err(|e| RegexError(Box::new(e)))
}

/// What one compiled regex costs against [`DESTINATION_REGEX_BUDGET`]: its heap size plus its
/// cache.
pub fn regex_cost(re: &FilterRegex) -> usize {
    re.memory_usage() + REGEX_CACHE_BYTES
}

/// The start of `text` a regex scans: at most [`MAX_SCAN_BYTES`], cut at a character boundary.
pub fn scan_window(text: &str) -> &str {
    if text.len() <= MAX_SCAN_BYTES {
        return text;
    }
    let mut end = MAX_SCAN_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn reject_unknown(
    path: &str,
    obj: &serde_json::Map<String, Value>,
    known: &[&str],
) -> Result<(), ValidationError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ValidationError::new(format!(
            "{path}.{k} is not a valid field (valid fields: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

impl FilterRules {
    /// Parses and validates a `filter_rules` value (not null) found at `path`.
    pub fn parse(path: &str, v: &Value) -> Result<FilterRules, ValidationError> {
        let obj = v
            .as_object()
            .ok_or_else(|| ValidationError::new(format!("{path} must be an object or null")))?;
        reject_unknown(path, obj, &["enabled", "groups"])?;
        let enabled = match obj.get("enabled") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ValidationError::new(format!(
                    "{path}.enabled must be a boolean"
                )));
            }
        };
        let groups_v = obj
            .get("groups")
            .ok_or_else(|| ValidationError::new(format!("{path}.groups is required")))?
            .as_array()
            .ok_or_else(|| ValidationError::new(format!("{path}.groups must be an array")))?;
        if groups_v.len() > MAX_GROUPS {
            return Err(ValidationError::new(format!(
                "{path}.groups may hold at most {MAX_GROUPS} groups"
            )));
        }
        let mut groups = Vec::with_capacity(groups_v.len());
        let mut regex_bytes = 0usize;
        for (gi, g) in groups_v.iter().enumerate() {
            let gpath = format!("{path}.groups[{gi}]");
            let gobj = g
                .as_object()
                .ok_or_else(|| ValidationError::new(format!("{gpath} must be an object")))?;
            reject_unknown(&gpath, gobj, &["logic", "rules"])?;
            let logic = match gobj.get("logic") {
                None | Some(Value::Null) => Logic::And,
                Some(Value::String(s)) if s == "and" => Logic::And,
                Some(Value::String(s)) if s == "or" => Logic::Or,
                Some(_) => {
                    return Err(ValidationError::new(format!(
                        "{gpath}.logic must be \"and\" or \"or\""
                    )));
                }
            };
            let rules_v = gobj
                .get("rules")
                .ok_or_else(|| ValidationError::new(format!("{gpath}.rules is required")))?
                .as_array()
                .ok_or_else(|| ValidationError::new(format!("{gpath}.rules must be an array")))?;
            if rules_v.is_empty() {
                return Err(ValidationError::new(format!(
                    "{gpath}.rules must contain at least one rule"
                )));
            }
            if rules_v.len() > MAX_RULES_PER_GROUP {
                return Err(ValidationError::new(format!(
                    "{gpath}.rules may hold at most {MAX_RULES_PER_GROUP} rules"
                )));
            }
            let mut rules = Vec::with_capacity(rules_v.len());
            for (ri, r) in rules_v.iter().enumerate() {
                rules.push(parse_rule(
                    &format!("{gpath}.rules[{ri}]"),
                    r,
                    &mut regex_bytes,
                )?);
            }
            groups.push(FilterGroup { logic, rules });
        }
        Ok(FilterRules { enabled, groups })
    }
}

/// Parses one rule; a regex rule adds its cost to `regex_bytes`, the destination's total.
fn parse_rule(
    path: &str,
    r: &Value,
    regex_bytes: &mut usize,
) -> Result<FilterRule, ValidationError> {
    let obj = r
        .as_object()
        .ok_or_else(|| ValidationError::new(format!("{path} must be an object")))?;
    reject_unknown(path, obj, &["field", "operator", "value"])?;
    let field_s = obj.get("field").and_then(Value::as_str).ok_or_else(|| {
        ValidationError::new(format!("{path}.field is required and must be a string"))
    })?;
    let field = FilterField::parse(field_s).ok_or_else(|| {
        ValidationError::new(format!(
            "{path}.field must be one of {}, got {field_s:?}",
            FilterField::names()
        ))
    })?;
    let op_s = obj.get("operator").and_then(Value::as_str).ok_or_else(|| {
        ValidationError::new(format!("{path}.operator is required and must be a string"))
    })?;
    let operator = FilterOperator::parse(op_s).ok_or_else(|| {
        ValidationError::new(format!(
            "{path}.operator must be one of {}, got {op_s:?}",
            FilterOperator::names()
        ))
    })?;
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            if s.len() > MAX_VALUE_LEN {
                return Err(ValidationError::new(format!(
                    "{path}.value must be at most {MAX_VALUE_LEN} bytes"
                )));
            }
            Some(FilterValue::Text(s.clone()))
        }
        Some(Value::Number(n)) => Some(FilterValue::Number(n.as_f64().ok_or_else(|| {
            ValidationError::new(format!("{path}.value is not a representable number"))
        })?)),
        Some(_) => {
            return Err(ValidationError::new(format!(
                "{path}.value must be a string or a number"
            )));
        }
    };
    let vpath = format!("{path}.value");
    match operator {
        op if op.takes_no_value() => {
            if value.is_some() {
                return Err(ValidationError::new(format!(
                    "{vpath} must be omitted for operator {}",
                    op.as_str()
                )));
            }
        }
        op if op.is_numeric() => {
            if !field.is_numeric() {
                return Err(ValidationError::new(format!(
                    "{path}.operator {} needs a numeric field (total_cost, total_tokens, prompt_tokens or completion_tokens), got {}",
                    op.as_str(),
                    field.as_str()
                )));
            }
            match value {
                Some(FilterValue::Number(n)) if n.is_finite() => {}
                _ => {
                    return Err(ValidationError::new(format!(
                        "{vpath} must be a number for operator {}",
                        op.as_str()
                    )));
                }
            }
        }
        FilterOperator::Equals | FilterOperator::NotEquals => {
            if value.is_none() {
                return Err(ValidationError::new(format!(
                    "{vpath} is required for operator {}",
                    operator.as_str()
                )));
            }
        }
        op => {
            let Some(FilterValue::Text(s)) = &value else {
                return Err(ValidationError::new(format!(
                    "{vpath} must be a string for operator {}",
                    op.as_str()
                )));
            };
            if op == FilterOperator::Regex {
                let re = compile_regex(s).map_err(|e| {
                    let first = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    ValidationError::new(format!("{vpath} is not a valid regex: {first}"))
                })?;
                *regex_bytes += regex_cost(&re);
                if *regex_bytes > DESTINATION_REGEX_BUDGET {
                    return Err(ValidationError::new(format!(
                        "{vpath}: the destination's regexes would take {} KiB compiled, over the budget of {} KiB per destination; use fewer or simpler regexes",
                        regex_bytes.div_ceil(1024),
                        DESTINATION_REGEX_BUDGET / 1024
                    )));
                }
            }
        }
    }
    Ok(FilterRule {
        field,
        operator,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        FilterRules::parse("filter_rules", &v).unwrap_err().0
    }

    #[test]
    fn valid_rules_parse_with_defaults() {
        let r = FilterRules::parse(
            "filter_rules",
            &json!({"groups":[{"rules":[{"field":"model","operator":"equals","value":"openai/gpt-4o"},{"field":"total_cost","operator":"gte","value":0.5},{"field":"user_id","operator":"exists"}]}]}),
        )
        .unwrap();
        assert!(r.enabled);
        assert_eq!(r.groups[0].logic, Logic::And);
        assert_eq!(r.groups[0].rules.len(), 3);
        let back = serde_json::to_value(&r).unwrap();
        assert_eq!(
            back["groups"][0]["rules"][2],
            json!({"field":"user_id","operator":"exists"})
        );
    }

    #[test]
    fn invalid_rules_name_the_field() {
        assert_eq!(
            err(json!({"groups":[{"rules":[{"field":"colour","operator":"equals","value":"x"}]}]})),
            "filter_rules.groups[0].rules[0].field must be one of model, provider, session_id, user_id, api_key_name, finish_reason, input, output, total_cost, total_tokens, prompt_tokens, completion_tokens, got \"colour\""
        );
        assert!(
            err(json!({"groups":[{"rules":[{"field":"model","operator":"like","value":"x"}]}]}))
                .starts_with("filter_rules.groups[0].rules[0].operator must be one of")
        );
        assert!(
            err(json!({"groups":[{"rules":[{"field":"model","operator":"regex","value":"("}]}]}))
                .starts_with("filter_rules.groups[0].rules[0].value is not a valid regex")
        );
        assert_eq!(
            err(
                json!({"groups":[{"rules":[{"field":"total_cost","operator":"gt","value":"a lot"}]}]})
            ),
            "filter_rules.groups[0].rules[0].value must be a number for operator gt"
        );
        assert_eq!(
            err(json!({"groups":[{"rules":[{"field":"model","operator":"exists","value":"x"}]}]})),
            "filter_rules.groups[0].rules[0].value must be omitted for operator exists"
        );
        assert_eq!(err(json!({})), "filter_rules.groups is required");
        assert_eq!(
            err(json!({"groups":[{"logic":"xor","rules":[]}]})),
            "filter_rules.groups[0].logic must be \"and\" or \"or\""
        );
    }

    #[test]
    fn the_regexes_of_one_destination_share_a_budget() {
        // Each alone compiles within the size limit; together they pass the budget.
        let rule = json!({"field":"input","operator":"regex","value":"[a-z0-9_]{30}x[0-9]{1,20}"});
        let alone = compile_regex("[a-z0-9_]{30}x[0-9]{1,20}").unwrap();
        let fit = DESTINATION_REGEX_BUDGET / regex_cost(&alone);
        assert!(fit < 500, "{fit} regexes fit");
        let groups: Vec<Value> = (0..20)
            .map(|_| json!({"rules": vec![rule.clone(); 25]}))
            .collect();
        let e = err(json!({ "groups": groups }));
        let (gi, ri) = (fit / 25, fit % 25);
        assert!(
            e.starts_with(&format!(
                "filter_rules.groups[{gi}].rules[{ri}].value: the destination's regexes would take"
            )),
            "{e}"
        );
        assert!(
            e.contains("over the budget of 4096 KiB per destination"),
            "{e}"
        );
        // Fewer of them are fine.
        let groups: Vec<Value> = (0..fit / 25)
            .map(|_| json!({"rules": vec![rule.clone(); 25]}))
            .collect();
        FilterRules::parse("filter_rules", &json!({ "groups": groups })).unwrap();
    }

    #[test]
    fn a_regex_scans_a_bounded_window_cut_at_a_character() {
        let short = "abc";
        assert_eq!(scan_window(short), short);
        let long = format!("{}é{}", "a".repeat(MAX_SCAN_BYTES - 1), "b".repeat(100));
        // 'é' is two bytes and straddles the limit: the window stops before it.
        assert_eq!(scan_window(&long).len(), MAX_SCAN_BYTES - 1);
    }

    #[test]
    fn huge_regexes_are_rejected() {
        let e = err(
            json!({"groups":[{"rules":[{"field":"input","operator":"regex","value":"(\\w{100}){100}"}]}]}),
        );
        assert!(e.contains("not a valid regex"), "{e}");
    }
}
