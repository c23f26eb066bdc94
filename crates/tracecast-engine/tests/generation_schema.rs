//! Keeps `docs/generation.schema.json` honest: the schema and `Generation::from_json` must agree
//! on every sample record (valid: both accept; invalid: both reject), and the known divergences
//! listed in `docs/generation.md` must be exactly those.

use serde_json::{Map, Value, json};
use tracecast_model::generation::{Generation, IngestContext};

const DOCS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs");

fn validator() -> jsonschema::Validator {
    let raw = std::fs::read_to_string(format!("{DOCS}/generation.schema.json")).unwrap();
    let schema: Value = serde_json::from_str(&raw).unwrap();
    assert!(
        jsonschema::draft202012::meta::is_valid(&schema),
        "not a valid draft 2020-12 schema"
    );
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn parses(v: &Value) -> Result<Generation, String> {
    Generation::from_json(v.clone(), &IngestContext::default()).map_err(|e| e.0)
}

/// The minimal record with `extra` merged in (a `null` in `extra` removes the key).
fn rec(extra: Value) -> Value {
    let mut base: Map<String, Value> = json!({
        "id": "gen-1", "model": "openai/gpt-4o", "created_at": "2026-09-05T08:24:27.107Z"
    })
    .as_object()
    .unwrap()
    .clone();
    for (k, v) in extra.as_object().unwrap() {
        base.insert(k.clone(), v.clone());
    }
    Value::Object(base)
}

fn without(key: &str) -> Value {
    let mut v = rec(json!({}));
    v.as_object_mut().unwrap().remove(key);
    v
}

/// The JSON block under `## Full example` in docs/generation.md, and every other JSON block.
fn doc_examples() -> Vec<Value> {
    let md = std::fs::read_to_string(format!("{DOCS}/generation.md")).unwrap();
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in md.lines() {
        match (&mut block, line.trim_end()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                out.push(serde_json::from_str(b).expect("a JSON block of generation.md parses"));
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

fn valid_samples() -> Vec<Value> {
    let mut v = doc_examples();
    assert!(
        v.len() >= 2,
        "generation.md has its full and minimal examples"
    );
    v.extend([
        rec(json!({})),
        // every optional field null
        rec(json!({
            "provider_name": null, "api_type": null, "streamed": null, "cancelled": null,
            "finish_reason": null, "native_finish_reason": null, "latency": null,
            "generation_time": null, "moderation_latency": null, "time_to_first_token": null,
            "usage": null, "total_cost": null, "upstream_inference_cost": null,
            "cache_discount": null, "is_byok": null, "user": null, "session_id": null,
            "trace": null, "external_user": null, "request": null, "response": null,
            "error": null, "http_referer": null, "x_title": null, "user_agent": null,
            "origin": null, "request_id": null, "upstream_id": null, "router": null,
            "preset_id": null, "data_region": null, "api_key_hash": null, "app_id": null
        })),
        // OpenRouter's generation object, forwarded as is
        rec(json!({
            "usage": 0.0021, "tokens_prompt": 10, "tokens_completion": 5,
            "native_tokens_prompt": 11, "native_tokens_completion": 6, "native_tokens_cached": 2,
            "native_tokens_reasoning": 1, "native_tokens_completion_images": 0, "num_fetches": 0,
            "num_input_audio_prompt": 0, "num_media_completion": 0, "num_media_prompt": 1,
            "num_search_results": 0, "provider_responses": [{"status": 200}],
            "service_tier": "default", "web_search_engine": null, "workspace_id": "ws-x",
            "response_cache_source_id": null, "app_id": 42, "is_byok": false,
            "origin": "https://app.test", "upstream_id": "chatcmpl-1", "api_type": "completions"
        })),
        // extras take any value
        rec(json!({"tokens_prompt": "ten", "app_id": {"a": 1}, "provider_responses": "x"})),
        // timestamps
        rec(json!({"created_at": "2026-09-05T10:24:27+02:00"})),
        rec(json!({"created_at": "2026-09-05T08:24:27Z"})),
        rec(json!({"created_at": "2026-09-05t08:24:27.123456789z"})),
        rec(json!({"created_at": "2026-12-31T23:59:60Z"})),
        rec(json!({"created_at": "2026-09-05T08:24:27-00:00"})),
        // lengths at their limits, counted in characters
        rec(json!({"id": "x".repeat(256)})),
        rec(json!({"id": "é".repeat(256)})),
        rec(json!({"user": "é".repeat(128), "session_id": "🦀".repeat(256)})),
        rec(json!({"model": " m ", "id": "🦀"})),
        rec(json!({"model": "\u{feff}"})),
        // numbers
        rec(json!({"latency": 0, "generation_time": 0.5, "moderation_latency": 1e3, "time_to_first_token": 12})),
        rec(json!({"total_cost": -0.5, "cache_discount": -0.0001, "upstream_inference_cost": 0})),
        rec(json!({"usage": {"prompt_tokens": 0, "completion_tokens": u64::MAX}})),
        // usage shapes
        rec(json!({"usage": {}})),
        rec(json!({"usage": {"prompt_tokens": 3, "extra_key": "kept out", "prompt_tokens_details": {"cached_tokens": 1, "other": true}, "completion_tokens_details": null, "cost_details": {"prompt_cost": 0.1, "anything": "x"}}})),
        rec(json!({"response": {"usage": {"prompt_tokens": -1}}})),
        // trace
        rec(json!({"trace": {}})),
        rec(json!({"trace": {"trace_id": "t", "trace_name": null, "env": 5, "tags": ["a"], "nested": {"x": null}}})),
        rec(json!({"request": {"trace": {"trace_id": 5}, "user": "u".repeat(500), "session_id": "s".repeat(500)}})),
        // error
        rec(json!({"error": {"message": "boom"}})),
        rec(json!({"error": {"message": "boom", "code": 429, "metadata": {"x": 1}}})),
        rec(json!({"error": {"message": "", "code": "rate_limited"}})),
        rec(json!({"error": {"message": "m", "code": null}})),
        // regions
        rec(json!({"data_region": "global"})),
        rec(json!({"data_region": "europe"})),
        rec(json!({"data_region": "us"})),
        rec(json!({"data_region": "eu"})),
        // key hashes
        rec(json!({"api_key_hash": "ab".repeat(32)})),
        rec(json!({"api_key_hash": "AB".repeat(32)})),
        // content with media
        rec(json!({"request": {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "AAAA"}}]}]}, "response": {"choices": []}})),
        rec(json!({"streamed": true, "cancelled": false, "is_byok": true})),
    ]);
    v
}

fn invalid_samples() -> Vec<Value> {
    vec![
        // not an object
        json!([rec(json!({}))]),
        json!("gen-1"),
        json!(null),
        json!(42),
        // required fields
        without("id"),
        without("model"),
        without("created_at"),
        rec(json!({"id": null})),
        rec(json!({"id": ""})),
        rec(json!({"id": 7})),
        rec(json!({"id": "x".repeat(257)})),
        rec(json!({"id": "é".repeat(257)})),
        rec(json!({"model": ""})),
        rec(json!({"model": "   "})),
        rec(json!({"model": "\t\n\u{a0}\u{2028}\u{3000}"})),
        rec(json!({"model": "\u{85}"})),
        rec(json!({"model": 4})),
        rec(json!({"created_at": "yesterday"})),
        rec(json!({"created_at": "2026-09-05"})),
        rec(json!({"created_at": "2026-09-05T08:24:27"})),
        rec(json!({"created_at": "2026-09-05T08:24:27+0200"})),
        rec(json!({"created_at": "2026-13-05T08:24:27Z"})),
        rec(json!({"created_at": "2026-02-30T08:24:27Z"})),
        rec(json!({"created_at": "2026-09-05T24:00:00Z"})),
        rec(json!({"created_at": "2026-09-05T08:24:27.Z"})),
        rec(json!({"created_at": "2026-09-05T08:24:27+24:00"})),
        rec(json!({"created_at": 1_757_060_667})),
        // unknown fields
        rec(json!({"tags": ["a"]})),
        rec(json!({"metadata": {"a": 1}})),
        rec(json!({"name": "x"})),
        rec(json!({"identity": {"workspace_id": "w"}})),
        rec(json!({"Model": "x"})),
        // lengths
        rec(json!({"user": "u".repeat(129)})),
        rec(json!({"user": "🦀".repeat(129)})),
        rec(json!({"session_id": "s".repeat(257)})),
        // types and ranges
        rec(json!({"latency": -1})),
        rec(json!({"latency": "fast"})),
        rec(json!({"time_to_first_token": -0.001})),
        rec(json!({"total_cost": "0.1"})),
        rec(json!({"streamed": "yes"})),
        rec(json!({"is_byok": 1})),
        rec(json!({"provider_name": 5})),
        rec(json!({"finish_reason": ["stop"]})),
        rec(json!({"usage": "lots"})),
        rec(json!({"usage": {"prompt_tokens": -1}})),
        rec(json!({"usage": {"prompt_tokens": 1.5}})),
        rec(json!({"usage": {"prompt_tokens": "10"}})),
        rec(json!({"usage": {"total_tokens": true}})),
        rec(json!({"usage": {"prompt_tokens_details": 5}})),
        rec(json!({"usage": {"prompt_tokens_details": {"cached_tokens": -2}}})),
        rec(json!({"usage": {"completion_tokens_details": {"reasoning_tokens": "1"}}})),
        rec(json!({"usage": {"cost_details": [0.1]}})),
        rec(json!({"usage": {"cost_details": 0.1}})),
        // trace
        rec(json!({"trace": []})),
        rec(json!({"trace": "t"})),
        rec(json!({"trace": {"trace_id": 5}})),
        rec(json!({"trace": {"parent_span_id": {"id": "x"}}})),
        rec(json!({"trace": {"generation_name": false}})),
        // content
        rec(json!({"request": "hi"})),
        rec(json!({"request": [{"role": "user"}]})),
        rec(json!({"response": 5})),
        // error
        rec(json!({"error": "boom"})),
        rec(json!({"error": {}})),
        rec(json!({"error": {"code": 500}})),
        rec(json!({"error": {"message": null}})),
        rec(json!({"error": {"message": 5}})),
        // regions
        rec(json!({"data_region": "mars"})),
        rec(json!({"data_region": "Europe"})),
        rec(json!({"data_region": 1})),
        // key hashes
        rec(json!({"api_key_hash": "xyz"})),
        rec(json!({"api_key_hash": "a".repeat(63)})),
        rec(json!({"api_key_hash": "a".repeat(65)})),
        rec(json!({"api_key_hash": "g".repeat(64)})),
        rec(json!({"api_key_hash": 5})),
        // other strings
        rec(json!({"external_user": 5})),
        rec(json!({"router": {}})),
    ]
}

#[test]
fn schema_and_parser_agree_on_valid_records() {
    let v = validator();
    for (i, sample) in valid_samples().iter().enumerate() {
        let errors: Vec<String> = v.iter_errors(sample).map(|e| e.to_string()).collect();
        assert!(
            errors.is_empty(),
            "valid sample {i}: schema says {errors:?}\n{sample:#}"
        );
        if let Err(e) = parses(sample) {
            panic!("valid sample {i}: parser says {e}\n{sample:#}");
        }
    }
}

#[test]
fn schema_and_parser_agree_on_invalid_records() {
    let v = validator();
    for (i, sample) in invalid_samples().iter().enumerate() {
        assert!(
            !v.is_valid(sample),
            "invalid sample {i}: the schema accepts it\n{sample:#}"
        );
        if let Ok(g) = parses(sample) {
            panic!("invalid sample {i}: the parser accepts it as {g:?}");
        }
    }
}

/// The divergences documented in docs/generation.md ("The JSON Schema and the parser"): if one
/// goes away, update the table there and move the sample above.
#[test]
fn documented_divergences() {
    let v = validator();
    let cases = [
        (rec(json!({"usage": {"prompt_tokens": 10.0}})), false, true),
        (
            rec(json!({"created_at": "2026-09-05 08:24:27Z"})),
            true,
            false,
        ),
        (
            rec(json!({"created_at": "2026-09-05T12:59:60Z"})),
            true,
            false,
        ),
        (rec(json!({"usage": [10, 5]})), true, false),
        (rec(json!({"error": [500, "boom"]})), true, false),
    ];
    for (sample, parser, schema) in cases {
        assert_eq!(parses(&sample).is_ok(), parser, "parser on {sample}");
        assert_eq!(v.is_valid(&sample), schema, "schema on {sample}");
    }
}

#[test]
fn the_full_example_is_complete_and_derives() {
    let examples = doc_examples();
    let full = &examples[0];
    // The schema has every record field, and the full example shows each of them but `error`
    // (shown by the failed-call example).
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DOCS}/generation.schema.json")).unwrap(),
    )
    .unwrap();
    for field in tracecast_model::generation::FIELDS {
        assert!(
            schema["properties"].get(*field).is_some(),
            "the schema lacks {field}"
        );
        assert!(
            full.get(*field).is_some() || *field == "error",
            "the full example lacks {field}"
        );
    }
    assert!(
        examples[1].get("error").is_some(),
        "the failed-call example"
    );
    let g = parses(full).unwrap();
    let parts = &g.request.as_ref().unwrap()["messages"][1]["content"];
    assert_eq!(parts[1], json!({"type": "text", "text": "[image omitted]"}));
    assert_eq!(g.sampling_key(), "chat-2026-09-05-7f3a");
    // Error messages quoted in docs/generation.md.
    let e = parses(&rec(json!({"tags": ["a"]}))).unwrap_err();
    assert_eq!(
        e,
        "tags is not a known field; put custom metadata in `trace`"
    );
    let e = parses(&rec(json!({"usage": {"prompt_tokens": -1}}))).unwrap_err();
    assert_eq!(
        e,
        "usage.prompt_tokens: invalid value: integer `-1`, expected u64"
    );
}

#[test]
fn every_schema_property_is_a_field_the_parser_knows() {
    let v = validator();
    let schema: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{DOCS}/generation.schema.json")).unwrap(),
    )
    .unwrap();
    let props = schema["properties"].as_object().unwrap();
    let required = ["id", "model", "created_at"];
    for name in props.keys() {
        if required.contains(&name.as_str()) {
            continue;
        }
        // Every optional property may be null, for both.
        let sample = rec(json!({ name.clone(): null }));
        assert!(v.is_valid(&sample), "schema rejects {name}: null");
        if let Err(e) = parses(&sample) {
            panic!("the schema lists {name}, the parser says {e}");
        }
    }
    for name in required {
        let sample = rec(json!({ name: null }));
        assert!(!v.is_valid(&sample) && parses(&sample).is_err(), "{name}");
    }
}
