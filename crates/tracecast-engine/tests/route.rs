//! Routing: switches, regions, key allowlists, filter rules and deterministic sampling.
//! `docs/routing.md` is the specification these tests hold the code to.

use serde_json::{Map, Value, json};
use tracecast_engine::route::{
    CompiledRoute, Decision, RouteSubject, sampled_in, sampling_hash, sampling_threshold,
};
use tracecast_model::config::DestinationType;
use tracecast_model::destination::Destination;
use tracecast_model::filter::{
    FilterField, FilterGroup, FilterOperator, FilterRule, FilterRules, FilterValue, Logic,
};
use tracecast_model::generation::{Generation, IngestContext};
use tracecast_model::region::Region;
use uuid::Uuid;

const DEST: Uuid = Uuid::from_u128(0x99999999_aaaa_bbbb_cccc_dddddddddddd);
const KEY_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const KEY_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn destination() -> Destination {
    Destination {
        id: DEST,
        workspace_id: Uuid::from_u128(7),
        ty: DestinationType::Webhook,
        name: Some("test".into()),
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
        config: Map::new(),
        created_at: "2026-01-01T00:00:00.000Z".into(),
        updated_at: "2026-01-01T00:00:00.000Z".into(),
    }
}

fn dest_with(f: impl FnOnce(&mut Destination)) -> CompiledRoute {
    let mut d = destination();
    f(&mut d);
    CompiledRoute::new(&d)
}

/// A generation: the minimal record plus `extra` fields.
fn generation(extra: Value) -> Generation {
    let mut v =
        json!({"id": "gen-1", "model": "openai/gpt-4o", "created_at": "2026-01-01T00:00:00Z"});
    v.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Generation::from_json(v, &IngestContext::default()).unwrap()
}

/// A rich generation: every filter field present.
fn full() -> Generation {
    let mut g = generation(json!({
        "provider_name": "OpenAI",
        "session_id": "sess-1",
        "user": "user-42",
        "total_cost": 0.003,
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
        "request": {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the capital of France?"}]},
        "response": {"choices": [{"finish_reason": "stop", "message": {"role": "assistant", "content": "Paris."}}]}
    }));
    g.identity.api_key_name = Some("gateway".into());
    g.identity.api_key_hash = Some(KEY_A.into());
    g
}

fn parse_rules(v: Value) -> FilterRules {
    FilterRules::parse("filter_rules", &v).unwrap()
}

fn route_with_rules(v: Value) -> CompiledRoute {
    let rules = parse_rules(v);
    dest_with(|d| d.filter_rules = Some(rules))
}

/// Whether a single rule keeps `g`.
fn rule_keeps(rule: Value, g: &Generation) -> bool {
    let route = route_with_rules(json!({"groups": [{"rules": [rule]}]}));
    match route.decide(g, true) {
        Decision::Deliver => true,
        Decision::Filtered => false,
        other => panic!("unexpected decision {other:?}"),
    }
}

fn r(field: &str, operator: &str, value: Value) -> Value {
    if value.is_null() {
        json!({"field": field, "operator": operator})
    } else {
        json!({"field": field, "operator": operator, "value": value})
    }
}

// ---- switches, regions, allowlists ----

#[test]
fn defaults_deliver_everything() {
    let route = CompiledRoute::new(&destination());
    assert_eq!(route.decide(&full(), true), Decision::Deliver);
    assert_eq!(
        route.decide(&generation(json!({})), true),
        Decision::Deliver
    );
    assert_eq!(route.destination_id(), DEST);
    assert_eq!(route.workspace_id(), Uuid::from_u128(7));
    assert_eq!(route.sampling_threshold(), None);
    assert!(!route.needs_text());
}

#[test]
fn switches() {
    let g = full();
    let on = CompiledRoute::new(&destination());
    assert_eq!(on.decide(&g, false), Decision::Disabled);
    let off = dest_with(|d| d.enabled = false);
    assert_eq!(off.decide(&g, true), Decision::Disabled);
    assert_eq!(off.decide(&g, false), Decision::Disabled);
}

#[test]
fn regions() {
    let global = generation(json!({}));
    let eu = generation(json!({"data_region": "europe"}));
    let us = generation(json!({"data_region": "us"}));
    let only_global = CompiledRoute::new(&destination());
    assert_eq!(only_global.decide(&global, true), Decision::Deliver);
    assert_eq!(only_global.decide(&eu, true), Decision::WrongRegion);
    assert_eq!(only_global.decide(&us, true), Decision::WrongRegion);

    let eu_us = dest_with(|d| d.regions = vec![Region::Europe, Region::Us]);
    assert_eq!(eu_us.decide(&global, true), Decision::WrongRegion);
    assert_eq!(eu_us.decide(&eu, true), Decision::Deliver);
    assert_eq!(eu_us.decide(&us, true), Decision::Deliver);

    let all = dest_with(|d| d.regions = Region::ALL.to_vec());
    for g in [&global, &eu, &us] {
        assert_eq!(all.decide(g, true), Decision::Deliver);
    }
    // An empty list (impossible through the API) means the default, ["global"].
    let empty = dest_with(|d| d.regions = vec![]);
    assert_eq!(empty.decide(&global, true), Decision::Deliver);
    assert_eq!(empty.decide(&eu, true), Decision::WrongRegion);
}

#[test]
fn api_key_allowlist() {
    let with_key = |k: Option<&str>| {
        let mut g = generation(json!({}));
        g.identity.api_key_hash = k.map(str::to_string);
        g
    };
    let a = with_key(Some(KEY_A));
    let a_upper = with_key(Some(&KEY_A.to_uppercase()));
    let b = with_key(Some(KEY_B));
    let none = with_key(None);

    // null: every key, and records without one.
    let all = CompiledRoute::new(&destination());
    for g in [&a, &b, &none] {
        assert_eq!(all.decide(g, true), Decision::Deliver);
    }

    let only_a = dest_with(|d| d.api_key_hashes = Some(vec![KEY_A.into()]));
    assert_eq!(only_a.decide(&a, true), Decision::Deliver);
    assert_eq!(only_a.decide(&a_upper, true), Decision::Deliver);
    assert_eq!(only_a.decide(&b, true), Decision::KeyNotAllowed);
    assert_eq!(only_a.decide(&none, true), Decision::KeyNotAllowed);

    let both = dest_with(|d| d.api_key_hashes = Some(vec![KEY_B.into(), KEY_A.to_uppercase()]));
    assert_eq!(both.decide(&a, true), Decision::Deliver);
    assert_eq!(both.decide(&b, true), Decision::Deliver);

    // A malformed entry (impossible through the API) matches nothing and admits nothing.
    let bad = dest_with(|d| d.api_key_hashes = Some(vec!["not-a-hash".into()]));
    assert_eq!(bad.decide(&a, true), Decision::KeyNotAllowed);
    let mut weird = with_key(Some("zz"));
    assert_eq!(only_a.decide(&weird, true), Decision::KeyNotAllowed);
    weird.identity.api_key_hash = Some(String::new());
    assert_eq!(only_a.decide(&weird, true), Decision::KeyNotAllowed);
}

#[test]
fn checks_run_in_order() {
    // A record that fails every check gets the first failure.
    let mut g = generation(json!({"data_region": "us", "session_id": "session-42"}));
    g.identity.api_key_hash = Some(KEY_B.into());
    let mut d = destination();
    d.enabled = false;
    d.api_key_hashes = Some(vec![KEY_A.into()]);
    d.filter_rules = Some(parse_rules(
        json!({"groups": [{"rules": [r("model", "equals", json!("other"))]}]}),
    ));
    d.sampling_rate = 0.1; // session-42 hashes to ≈ 0.94: sampled out
    type Fix = fn(&mut Destination, &mut Generation);
    let steps: [(Fix, Decision); 5] = [
        (|_, _| {}, Decision::Disabled),
        (|d, _| d.enabled = true, Decision::WrongRegion),
        (|d, _| d.regions.push(Region::Us), Decision::KeyNotAllowed),
        (
            |_, g| g.identity.api_key_hash = Some(KEY_A.into()),
            Decision::Filtered,
        ),
        (|d, _| d.filter_rules = None, Decision::SampledOut),
    ];
    for (fix, expected) in steps {
        fix(&mut d, &mut g);
        assert_eq!(CompiledRoute::new(&d).decide(&g, true), expected);
    }
    d.sampling_rate = 1.0;
    assert_eq!(CompiledRoute::new(&d).decide(&g, true), Decision::Deliver);
    // The workspace switch comes first of all.
    assert_eq!(CompiledRoute::new(&d).decide(&g, false), Decision::Disabled);
}

#[test]
fn decisions_are_copy_and_named() {
    let names: Vec<&str> = Decision::ALL.iter().map(|d| d.as_str()).collect();
    assert_eq!(
        names,
        [
            "deliver",
            "disabled",
            "wrong_region",
            "key_not_allowed",
            "filtered",
            "sampled_out"
        ]
    );
    let d = Decision::Filtered;
    let e = d;
    assert_eq!(d.to_string(), e.as_str());
    assert!(Decision::Deliver.is_deliver() && !Decision::SampledOut.is_deliver());
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<CompiledRoute>();
}

// ---- filter rules: string fields ----

#[test]
fn string_operators_on_a_present_field() {
    let g = full();
    let cases = [
        ("equals", json!("openai/gpt-4o"), true),
        ("equals", json!("openai/GPT-4o"), false), // case-sensitive
        ("equals", json!("openai"), false),
        ("not_equals", json!("openai/gpt-4o"), false),
        ("not_equals", json!("anthropic/claude"), true),
        ("contains", json!("gpt"), true),
        ("contains", json!("GPT"), false),
        ("not_contains", json!("gpt"), false),
        ("not_contains", json!("claude"), true),
        ("starts_with", json!("openai/"), true),
        ("starts_with", json!("gpt"), false),
        ("ends_with", json!("-4o"), true),
        ("ends_with", json!("openai"), false),
        ("regex", json!("^openai/gpt-4(o|\\.1)$"), true),
        ("regex", json!("^anthropic/"), false),
        ("regex", json!("GPT"), false),
        ("regex", json!("(?i)GPT"), true),
        ("exists", Value::Null, true),
        ("not_exists", Value::Null, false),
    ];
    for (op, value, expected) in cases {
        assert_eq!(
            rule_keeps(r("model", op, value.clone()), &g),
            expected,
            "model {op} {value}"
        );
    }
}

#[test]
fn string_operators_on_a_missing_field() {
    // `user_id` absent; and present but empty, which counts as missing.
    let absent = generation(json!({}));
    let mut empty = generation(json!({}));
    empty.user = Some(String::new());
    let cases = [
        ("equals", json!("u"), false),
        ("equals", json!(""), false),
        ("not_equals", json!("u"), true),
        ("contains", json!("u"), false),
        ("contains", json!(""), false),
        ("not_contains", json!("u"), true),
        ("starts_with", json!("u"), false),
        ("ends_with", json!("u"), false),
        ("regex", json!(".*"), false),
        ("regex", json!("^$"), false),
        ("exists", Value::Null, false),
        ("not_exists", Value::Null, true),
    ];
    for g in [&absent, &empty] {
        for (op, value, expected) in &cases {
            assert_eq!(
                rule_keeps(r("user_id", op, value.clone()), g),
                *expected,
                "user_id {op} {value} on {:?}",
                g.user
            );
        }
    }
}

#[test]
fn every_string_field_is_read_from_the_right_place() {
    let g = full();
    let present = [
        ("model", "openai/gpt-4o"),
        ("provider", "OpenAI"),
        ("session_id", "sess-1"),
        ("user_id", "user-42"),
        ("api_key_name", "gateway"),
        ("finish_reason", "stop"),
        ("input", "Be brief.\nWhat is the capital of France?"),
        ("output", "Paris."),
    ];
    for (field, value) in present {
        assert!(rule_keeps(r(field, "equals", json!(value)), &g), "{field}");
        assert!(rule_keeps(r(field, "exists", Value::Null), &g), "{field}");
    }
    let bare = generation(json!({}));
    for (field, _) in &present[1..] {
        assert!(
            rule_keeps(r(field, "not_exists", Value::Null), &bare),
            "{field}"
        );
        assert!(
            !rule_keeps(r(field, "contains", json!("a")), &bare),
            "{field}"
        );
    }
    // finish_reason: the record's own wins over the response's.
    let own = generation(
        json!({"finish_reason": "length", "response": {"choices": [{"finish_reason": "stop"}]}}),
    );
    assert!(rule_keeps(
        r("finish_reason", "equals", json!("length")),
        &own
    ));
    // input: completions `prompt`, Responses-API `input`; output: Responses-API output.
    let prompt = generation(json!({"request": {"prompt": "Once upon"}}));
    assert!(rule_keeps(
        r("input", "starts_with", json!("Once")),
        &prompt
    ));
    let responses = generation(json!({
        "request": {"input": "Tell me a joke"},
        "response": {"output": [{"type": "message", "content": [{"type": "output_text", "text": "Knock knock"}]}]}
    }));
    assert!(rule_keeps(
        r("input", "equals", json!("Tell me a joke")),
        &responses
    ));
    assert!(rule_keeps(
        r("output", "contains", json!("Knock")),
        &responses
    ));
    // Regexes on long text.
    assert!(rule_keeps(
        r("input", "regex", json!("(?i)capital\\s+of\\s+france")),
        &g
    ));
    assert!(rule_keeps(r("output", "not_contains", json!("London")), &g));
}

#[test]
fn a_number_as_the_value_of_a_string_rule_is_rendered() {
    let g = generation(json!({"user": "42"}));
    assert!(rule_keeps(r("user_id", "equals", json!(42)), &g));
    assert!(!rule_keeps(r("user_id", "not_equals", json!(42)), &g));
    assert!(!rule_keeps(r("user_id", "equals", json!(42.5)), &g));
}

// ---- filter rules: numeric fields ----

#[test]
fn numeric_operators_on_a_present_field() {
    let g = full(); // total_cost 0.003, prompt 10, completion 5, total 15 (derived)
    let cases = [
        ("total_tokens", "equals", json!(15), true),
        ("total_tokens", "equals", json!("15"), true),
        ("total_tokens", "equals", json!(" 15.0 "), true),
        ("total_tokens", "equals", json!(16), false),
        ("total_tokens", "equals", json!("fifteen"), false),
        ("total_tokens", "not_equals", json!(15), false),
        ("total_tokens", "not_equals", json!("16"), true),
        ("total_tokens", "not_equals", json!("fifteen"), true),
        ("total_cost", "equals", json!(0.003), true),
        ("total_cost", "equals", json!("0.003"), true),
        ("total_cost", "gt", json!(0.001), true),
        ("total_cost", "gt", json!(0.003), false),
        ("total_cost", "gte", json!(0.003), true),
        ("total_cost", "lt", json!(0.003), false),
        ("total_cost", "lt", json!(0.01), true),
        ("total_cost", "lte", json!(0.003), true),
        ("prompt_tokens", "gt", json!(9), true),
        ("prompt_tokens", "gte", json!(10), true),
        ("prompt_tokens", "lt", json!(10), false),
        ("prompt_tokens", "lte", json!(10), true),
        ("completion_tokens", "equals", json!(5), true),
        ("completion_tokens", "lt", json!(6), true),
        // String operators compare the decimal rendering.
        ("total_cost", "starts_with", json!("0.00"), true),
        ("total_cost", "contains", json!("003"), true),
        ("total_cost", "ends_with", json!("3"), true),
        ("total_cost", "not_contains", json!("9"), true),
        ("total_tokens", "starts_with", json!("1"), true),
        ("total_tokens", "ends_with", json!("5"), true),
        ("total_tokens", "contains", json!("15.0"), false),
        ("total_tokens", "regex", json!("^1[0-9]$"), true),
        ("prompt_tokens", "regex", json!("^\\d$"), false),
        ("total_tokens", "exists", Value::Null, true),
        ("total_tokens", "not_exists", Value::Null, false),
    ];
    for (field, op, value, expected) in cases {
        assert_eq!(
            rule_keeps(r(field, op, value.clone()), &g),
            expected,
            "{field} {op} {value}"
        );
    }
    // Zero is a value, not a missing field.
    let zero = generation(json!({"total_cost": 0, "usage": {"completion_tokens": 0}}));
    assert!(rule_keeps(r("total_cost", "exists", Value::Null), &zero));
    assert!(rule_keeps(
        r("completion_tokens", "equals", json!(0)),
        &zero
    ));
    assert!(rule_keeps(
        r("total_cost", "starts_with", json!("0")),
        &zero
    ));
}

#[test]
fn numeric_operators_on_a_missing_field() {
    let g = generation(json!({})); // no cost, no usage
    let mut no_total = generation(json!({"usage": {"prompt_tokens": 3}}));
    assert_eq!(no_total.usage.as_ref().unwrap().total_tokens, None);
    no_total.total_cost = None;
    let cases = [
        ("equals", json!(0), false),
        ("equals", json!("fifteen"), false),
        ("not_equals", json!(0), true),
        ("not_equals", json!("fifteen"), true),
        ("gt", json!(-1), false),
        ("lt", json!(1e9), false),
        ("gte", json!(0), false),
        ("lte", json!(0), false),
        ("contains", json!("1"), false),
        ("not_contains", json!("1"), true),
        ("starts_with", json!("1"), false),
        ("ends_with", json!("1"), false),
        ("regex", json!(".*"), false),
        ("exists", Value::Null, false),
        ("not_exists", Value::Null, true),
    ];
    for gen_ in [&g, &no_total] {
        for field in ["total_cost", "total_tokens"] {
            for (op, value, expected) in &cases {
                assert_eq!(
                    rule_keeps(r(field, op, value.clone()), gen_),
                    *expected,
                    "{field} {op} {value}"
                );
            }
        }
    }
}

// ---- groups ----

#[test]
fn and_or_groups_and_any_group() {
    let g = full();
    let yes = r("model", "starts_with", json!("openai/"));
    let no = r("provider", "equals", json!("Anthropic"));
    let group = |logic: &str, rules: Vec<Value>| json!({"logic": logic, "rules": rules});
    let keeps = |groups: Vec<Value>| {
        route_with_rules(json!({"groups": groups})).decide(&g, true) == Decision::Deliver
    };
    // and
    assert!(keeps(vec![group("and", vec![yes.clone(), yes.clone()])]));
    assert!(!keeps(vec![group("and", vec![yes.clone(), no.clone()])]));
    // default logic is and
    assert!(!keeps(vec![json!({"rules": [yes.clone(), no.clone()]})]));
    // or
    assert!(keeps(vec![group("or", vec![no.clone(), yes.clone()])]));
    assert!(!keeps(vec![group("or", vec![no.clone(), no.clone()])]));
    // any group
    assert!(keeps(vec![
        group("and", vec![no.clone()]),
        group("and", vec![yes.clone()])
    ]));
    assert!(!keeps(vec![
        group("and", vec![no.clone()]),
        group("or", vec![no.clone(), no.clone()])
    ]));
    assert!(keeps(vec![
        group("and", vec![yes.clone(), no.clone()]),
        group("or", vec![no.clone(), yes.clone()])
    ]));
}

#[test]
fn disabled_or_empty_rules_keep_everything() {
    let g = full();
    let never = json!({"rules": [r("model", "equals", json!("nope"))]});
    let disabled = route_with_rules(json!({"enabled": false, "groups": [never.clone()]}));
    assert_eq!(disabled.decide(&g, true), Decision::Deliver);
    assert!(!disabled.needs_text());
    let enabled = route_with_rules(json!({"enabled": true, "groups": [never]}));
    assert_eq!(enabled.decide(&g, true), Decision::Filtered);
    // No groups: nothing to fail.
    let none = route_with_rules(json!({"groups": []}));
    assert_eq!(none.decide(&g, true), Decision::Deliver);
}

#[test]
fn broken_rules_never_match() {
    // Rules the API rejects; built by hand to check that routing neither panics nor matches.
    let g = full();
    let rule = |field, operator, value| FilterRule {
        field,
        operator,
        value,
    };
    let text = |s: &str| Some(FilterValue::Text(s.into()));
    let broken = [
        rule(FilterField::Model, FilterOperator::Regex, text("(")),
        rule(FilterField::Model, FilterOperator::Regex, None),
        rule(
            FilterField::Input,
            FilterOperator::Regex,
            text("(\\w{100}){100}"),
        ),
        rule(FilterField::Model, FilterOperator::NotEquals, None),
        rule(FilterField::Model, FilterOperator::NotContains, None),
        rule(
            FilterField::Model,
            FilterOperator::Gt,
            Some(FilterValue::Number(1.0)),
        ),
        rule(FilterField::TotalCost, FilterOperator::Gt, text("a lot")),
        rule(FilterField::TotalCost, FilterOperator::Lt, None),
        rule(
            FilterField::TotalTokens,
            FilterOperator::Gte,
            Some(FilterValue::Number(f64::NAN)),
        ),
    ];
    for b in broken {
        let desc = format!("{b:?}");
        let rules = FilterRules {
            enabled: true,
            groups: vec![FilterGroup {
                logic: Logic::Or,
                rules: vec![b],
            }],
        };
        let route = dest_with(|d| d.filter_rules = Some(rules));
        assert_eq!(route.decide(&g, true), Decision::Filtered, "{desc}");
    }
    // A broken rule does not spoil the other rules of an `or` group or the other groups.
    let rules = FilterRules {
        enabled: true,
        groups: vec![
            FilterGroup {
                logic: Logic::And,
                rules: vec![rule(FilterField::Model, FilterOperator::Regex, text("("))],
            },
            FilterGroup {
                logic: Logic::Or,
                rules: vec![
                    rule(FilterField::Model, FilterOperator::Regex, text("[")),
                    rule(FilterField::Model, FilterOperator::Exists, None),
                ],
            },
        ],
    };
    let route = dest_with(|d| d.filter_rules = Some(rules));
    assert_eq!(route.decide(&g, true), Decision::Deliver);
    // A numeric comparison with a numeric string (the API wants a number) still works.
    let rules = FilterRules {
        enabled: true,
        groups: vec![FilterGroup {
            logic: Logic::And,
            rules: vec![rule(
                FilterField::TotalTokens,
                FilterOperator::Gt,
                text("14"),
            )],
        }],
    };
    assert_eq!(
        dest_with(|d| d.filter_rules = Some(rules)).decide(&g, true),
        Decision::Deliver
    );
}

#[test]
fn input_and_output_text_are_built_lazily_and_once() {
    let g = full();
    // A rule on `model` alone never builds the texts.
    let cheap =
        route_with_rules(json!({"groups": [{"rules": [r("model", "exists", Value::Null)]}]}));
    assert!(!cheap.needs_text());
    let s = RouteSubject::new(&g);
    assert_eq!(cheap.decide_subject(&s, true), Decision::Deliver);
    assert_eq!(s.texts_computed(), (false, false));

    // `and`: the cheap rule fails first (whatever the written order), so no text is built.
    let and = route_with_rules(json!({"groups": [{"logic": "and", "rules": [
        r("input", "contains", json!("France")),
        r("model", "equals", json!("other")),
    ]}]}));
    assert!(and.needs_text());
    let s = RouteSubject::new(&g);
    assert_eq!(and.decide_subject(&s, true), Decision::Filtered);
    assert_eq!(s.texts_computed(), (false, false));

    // `or`: a cheap match in another group wins before the text is needed.
    let or = route_with_rules(json!({"groups": [
        {"rules": [r("output", "regex", json!("Par.s"))]},
        {"rules": [r("provider", "equals", json!("OpenAI"))]},
    ]}));
    let s = RouteSubject::new(&g);
    assert_eq!(or.decide_subject(&s, true), Decision::Deliver);
    assert_eq!(s.texts_computed(), (false, false));

    // When needed, one subject shared by several destinations builds each text once.
    let input =
        route_with_rules(json!({"groups": [{"rules": [r("input", "contains", json!("France"))]}]}));
    let output =
        route_with_rules(json!({"groups": [{"rules": [r("output", "equals", json!("Paris."))]}]}));
    let s = RouteSubject::new(&g);
    assert_eq!(input.decide_subject(&s, true), Decision::Deliver);
    assert_eq!(s.texts_computed(), (true, false));
    assert_eq!(output.decide_subject(&s, true), Decision::Deliver);
    assert_eq!(input.decide_subject(&s, true), Decision::Deliver);
    assert_eq!(s.texts_computed(), (true, true));
    // Switches, region and allowlist are checked before any text is built.
    let s = RouteSubject::new(&g);
    assert_eq!(input.decide_subject(&s, false), Decision::Disabled);
    assert_eq!(s.texts_computed(), (false, false));
}

// ---- sampling ----

#[test]
fn sampling_test_vectors() {
    // docs/routing.md: SHA-256(destination id's 16 raw bytes || key), first 8 bytes big-endian.
    assert_eq!(sampling_hash(&DEST, "session-42"), 0xf1d8_5f67_6f00_0feb);
    assert_eq!(
        sampling_hash(&DEST, "session-42"),
        17_426_783_655_958_679_531
    );
    assert_eq!(sampling_hash(&DEST, "session-10"), 0x0a1b_2312_db41_cb10);
    assert_eq!(sampling_hash(&DEST, ""), 0x0e35_3598_078e_3c3f);
    assert_eq!(sampling_threshold(0.1), Some(0x1999_9999_9999_9a00));
    assert!(!sampled_in(0.1, &DEST, "session-42"));
    assert!(sampled_in(0.1, &DEST, "session-10"));
    assert!(sampled_in(0.95, &DEST, "session-42"));
    assert!(!sampled_in(0.94, &DEST, "session-42"));
}

fn session_generation(session: &str, id: &str) -> Generation {
    generation(json!({"id": id, "session_id": session}))
}

#[test]
fn sampling_keeps_about_the_rate() {
    let route = dest_with(|d| d.sampling_rate = 0.1);
    let n = 10_000;
    let kept = (0..n)
        .filter(|i| {
            let g = session_generation(&format!("session-{i}"), "gen");
            route.decide(&g, true) == Decision::Deliver
        })
        .count();
    let share = kept as f64 / n as f64;
    println!(
        "rate 0.1: kept {kept} of {n} sessions ({:.2}%)",
        share * 100.0
    );
    assert!((0.08..=0.12).contains(&share), "kept share {share}");
    // Every decision at this rate is Deliver or SampledOut.
    let g = session_generation("session-42", "gen");
    assert_eq!(route.decide(&g, true), Decision::SampledOut);
}

#[test]
fn a_session_is_wholly_in_or_wholly_out() {
    let route = dest_with(|d| d.sampling_rate = 0.3);
    let (mut sessions_in, mut sessions_out) = (0, 0);
    for s in 0..500 {
        let session = format!("sess-{s}");
        let decisions: Vec<Decision> = (0..8)
            .map(|i| route.decide(&session_generation(&session, &format!("gen-{s}-{i}")), true))
            .collect();
        assert!(
            decisions.iter().all(|d| *d == decisions[0]),
            "{session}: {decisions:?}"
        );
        match decisions[0] {
            Decision::Deliver => sessions_in += 1,
            Decision::SampledOut => sessions_out += 1,
            other => panic!("{other:?}"),
        }
    }
    assert!(sessions_in > 0 && sessions_out > 0);
}

#[test]
fn sampling_key_falls_back_to_trace_id_then_generation_id() {
    let route = dest_with(|d| d.sampling_rate = 0.5);
    // Same trace id, different generation ids: one decision.
    let by_trace: Vec<Decision> = (0..20)
        .map(|i| {
            let g = generation(json!({"id": format!("g{i}"), "trace": {"trace_id": "trace-7"}}));
            assert_eq!(g.sampling_key(), "trace-7");
            route.decide(&g, true)
        })
        .collect();
    assert!(by_trace.iter().all(|d| *d == by_trace[0]));
    assert_eq!(by_trace[0].is_deliver(), sampled_in(0.5, &DEST, "trace-7"));
    // No session, no trace: each generation on its own, so both outcomes occur.
    let by_id: Vec<Decision> = (0..64)
        .map(|i| route.decide(&generation(json!({"id": format!("g{i}")})), true))
        .collect();
    assert!(by_id.contains(&Decision::Deliver) && by_id.contains(&Decision::SampledOut));
    for (i, d) in by_id.iter().enumerate() {
        assert_eq!(d.is_deliver(), sampled_in(0.5, &DEST, &format!("g{i}")));
    }
    // The session wins over the trace id.
    let g = generation(json!({"session_id": "session-10", "trace": {"trace_id": "session-42"}}));
    assert_eq!(
        dest_with(|d| d.sampling_rate = 0.1).decide(&g, true),
        Decision::Deliver
    );
}

#[test]
fn sampling_differs_between_destinations() {
    let a = dest_with(|d| d.sampling_rate = 0.1);
    let b = dest_with(|d| {
        d.id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        d.sampling_rate = 0.1;
    });
    let (mut in_a, mut in_b, mut in_both, mut differ) = (0, 0, 0, 0);
    for i in 0..10_000 {
        let g = session_generation(&format!("session-{i}"), "gen");
        let (da, db) = (
            a.decide(&g, true).is_deliver(),
            b.decide(&g, true).is_deliver(),
        );
        in_a += usize::from(da);
        in_b += usize::from(db);
        in_both += usize::from(da && db);
        differ += usize::from(da != db);
    }
    println!("destination A kept {in_a}, B kept {in_b}, both {in_both}, differ {differ}");
    // Independent choices: about 10% × 10% = 1% in both, far from the 10% of identical ones.
    assert!(differ > 1_000, "differ {differ}");
    assert!(in_both < 300, "in both {in_both}");
}

#[test]
fn rate_one_keeps_everything() {
    let route = dest_with(|d| d.sampling_rate = 1.0);
    assert_eq!(route.sampling_threshold(), None);
    for i in 0..2_000 {
        let g = session_generation(&format!("session-{i}"), "gen");
        assert_eq!(route.decide(&g, true), Decision::Deliver);
    }
    // The lowest rate the API allows keeps almost nothing, and never panics.
    let tiny = dest_with(|d| d.sampling_rate = 0.0001);
    let kept = (0..2_000)
        .filter(|i| {
            tiny.decide(&session_generation(&format!("session-{i}"), "gen"), true)
                .is_deliver()
        })
        .count();
    assert!(kept < 5, "{kept}");
    // Rates the API rejects: nothing for 0, NaN or negative.
    for rate in [0.0, -0.5, f64::NAN] {
        let route = dest_with(|d| d.sampling_rate = rate);
        assert_eq!(
            route.decide(&session_generation("session-10", "g"), true),
            Decision::SampledOut
        );
    }
}

/// Throughput of `decide` (run with `cargo test --release -p tracecast-engine --test route --
/// --ignored --nocapture`).
#[test]
#[ignore]
fn throughput() {
    use std::time::Instant;
    let gens: Vec<Generation> = (0..1_000)
        .map(|i| {
            let mut g = full();
            g.id = format!("gen-{i}");
            g.session_id = Some(format!("session-{}", i % 97));
            g
        })
        .collect();
    let cases = [
        ("no rules, rate 1", dest_with(|_| {})),
        (
            "allowlist + rate 0.5",
            dest_with(|d| {
                d.api_key_hashes = Some(vec![KEY_B.into(), KEY_A.into()]);
                d.sampling_rate = 0.5;
            }),
        ),
        ("3 rules on metadata + rate 0.5", {
            let rules = parse_rules(json!({"groups": [{"rules": [
                r("model", "starts_with", json!("openai/")),
                r("total_cost", "lt", json!(1)),
                r("user_id", "regex", json!("^user-[0-9]+$")),
            ]}]}));
            dest_with(|d| {
                d.filter_rules = Some(rules);
                d.sampling_rate = 0.5;
            })
        }),
        (
            "regex on input text",
            route_with_rules(json!({"groups": [{"rules": [
                r("input", "regex", json!("(?i)capital of \\w+")),
            ]}]})),
        ),
    ];
    for (name, route) in cases {
        let n = 1_000_000;
        let start = Instant::now();
        let mut delivered = 0usize;
        for i in 0..n {
            delivered += usize::from(route.decide(&gens[i % gens.len()], true).is_deliver());
        }
        let el = start.elapsed();
        println!(
            "{name}: {:.0} ns/decision ({:.2} M/s), {delivered} delivered",
            el.as_nanos() as f64 / n as f64,
            n as f64 / el.as_secs_f64() / 1e6
        );
    }
}
