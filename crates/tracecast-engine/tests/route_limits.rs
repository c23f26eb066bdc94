//! Routing cost is bounded: a filter regex scans only the first `MAX_SCAN_BYTES` of a field
//! (`docs/routing.md`, "Limits"), whatever the size of the record.

use serde_json::{Map, json};
use tracecast_engine::route::{CompiledRoute, Decision};
use tracecast_model::config::DestinationType;
use tracecast_model::destination::Destination;
use tracecast_model::filter::{FilterRules, MAX_SCAN_BYTES};
use tracecast_model::generation::{Generation, IngestContext};
use tracecast_model::region::Region;
use uuid::Uuid;

fn route(rule: serde_json::Value) -> CompiledRoute {
    let rules =
        FilterRules::parse("filter_rules", &json!({"groups": [{"rules": [rule]}]})).unwrap();
    CompiledRoute::new(&Destination {
        filter_rules: Some(rules),
        ..destination()
    })
}

fn with_input(text: &str) -> Generation {
    Generation::from_json(
        json!({"id": "g", "model": "m", "created_at": "2026-01-01T00:00:00Z",
               "request": {"messages": [{"role": "user", "content": text}]}}),
        &IngestContext::default(),
    )
    .unwrap()
}

#[test]
fn a_regex_sees_only_the_start_of_a_huge_field() {
    let regex = route(json!({"field": "input", "operator": "regex", "value": "needle"}));
    let early = with_input(&format!("needle {}", "a".repeat(2 * MAX_SCAN_BYTES)));
    let late = with_input(&format!("{} needle", "a".repeat(2 * MAX_SCAN_BYTES)));
    assert_eq!(regex.decide(&early, true), Decision::Deliver);
    assert_eq!(regex.decide(&late, true), Decision::Filtered);
    // Substring operators are linear and unbounded: contains still finds it.
    let contains = route(json!({"field": "input", "operator": "contains", "value": "needle"}));
    assert_eq!(contains.decide(&late, true), Decision::Deliver);
}

/// Measurement, not a check (`cargo test --release --test route_limits -- --ignored
/// --nocapture`): CPU time to route one record with a 1 MiB input through as many
/// worst-case regexes (no literal to skip to, so each one scans) as one destination's budget
/// allows.
#[test]
#[ignore]
fn cost_of_routing_a_huge_record() {
    use tracecast_model::filter::{DESTINATION_REGEX_BUDGET, compile_regex, regex_cost};
    let pattern = "[a-z]{3}[0-9]{3}[A-Z]";
    let n = DESTINATION_REGEX_BUDGET / regex_cost(&compile_regex(pattern).unwrap());
    let rules: Vec<_> = (0..n)
        .map(|_| json!({"field": "input", "operator": "regex", "value": pattern}))
        .collect();
    let groups: Vec<_> = rules
        .chunks(25)
        .map(|c| json!({"logic": "or", "rules": c}))
        .collect();
    let rules = FilterRules::parse("filter_rules", &json!({ "groups": groups })).unwrap();
    let d = CompiledRoute::new(&Destination {
        filter_rules: Some(rules),
        ..destination()
    });
    let g = with_input(&"abc12x".repeat(1024 * 1024 / 6));
    let start = std::time::Instant::now();
    let decision = d.decide(&g, true);
    eprintln!(
        "{n} regexes, 1 MiB input: {decision:?} in {:?}",
        start.elapsed()
    );
}

fn destination() -> Destination {
    Destination {
        id: Uuid::from_u128(1),
        workspace_id: Uuid::from_u128(7),
        ty: DestinationType::Webhook,
        name: None,
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
