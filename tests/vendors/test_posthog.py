"""The golden PostHog event against PostHog's own SDK.

`crates/tracecast-exporters/tests/golden/posthog.json` is one `$ai_generation` event of a
capture-API batch. PostHog publishes no schema for it. Checked here:
- `$ai_input` and `$ai_output_choices` fit the message TypedDict PostHog's AI SDK formats
  messages with (`posthog.ai.types.FormattedMessage`);
- every `$ai_*` property is one the `posthog` package's AI integrations send, or one listed in
  PostHog's manual-capture reference (posthog.com/docs/llm-analytics/manual-capture);
- the token and cost properties have the types the SDK's `TokenUsage` gives them.
"""

import json
import pathlib
import re
import typing
import uuid


import posthog
import posthog.ai.types as ph_types

GOLDEN = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/posthog.json"
)

# In PostHog's manual-capture reference but not (all) sent by the Python AI integrations.
DOCUMENTED = {
    "$ai_trace_id", "$ai_session_id", "$ai_span_id", "$ai_span_name", "$ai_parent_id",
    "$ai_model", "$ai_provider", "$ai_input", "$ai_input_tokens", "$ai_output_choices",
    "$ai_output_tokens", "$ai_latency", "$ai_time_to_first_token", "$ai_stream", "$ai_tools",
    "$ai_http_status", "$ai_base_url", "$ai_request_url", "$ai_is_error", "$ai_error",
    "$ai_temperature", "$ai_max_tokens", "$ai_input_cost_usd", "$ai_output_cost_usd",
    "$ai_total_cost_usd",
}


def check(value, tp, path):
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return
    if typing.is_typeddict(tp):
        assert isinstance(value, dict), f"{path}: expected an object"
        hints = typing.get_type_hints(tp)
        for key in tp.__required_keys__:
            assert key in value, f"{path}.{key} is required by {tp.__name__}"
        for key, v in value.items():
            assert key in hints, f"{path}.{key} is not a field of {tp.__name__}"
            check(v, hints[key], f"{path}.{key}")
        return
    if origin is typing.Union:
        for a in args:
            try:
                check(value, a, path)
                return
            except AssertionError:
                pass
        raise AssertionError(f"{path}: matches none of {args}")
    if origin is list:
        assert isinstance(value, list), f"{path}: expected a list"
        for i, v in enumerate(value):
            check(v, args[0], f"{path}[{i}]")
        return
    if origin is dict:
        assert isinstance(value, dict), f"{path}: expected an object"
        return
    if tp is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: int"
        return
    if tp is type(None):
        assert value is None
        return
    assert isinstance(value, tp), f"{path}: expected {tp}, got {value!r}"


def sdk_property_names():
    """`$ai_*` string literals in the posthog package, plus the documented list."""
    root = pathlib.Path(posthog.__file__).parent
    text = "".join(p.read_text(errors="ignore") for p in root.rglob("*.py"))
    return DOCUMENTED | set(re.findall(r"[\"'](\$ai_[a-z_]+)[\"']", text))


def event():
    return json.loads(GOLDEN.read_text())


def test_envelope():
    ev = event()
    assert ev["event"] == "$ai_generation"
    assert isinstance(ev["distinct_id"], str) and ev["distinct_id"]
    uuid.UUID(ev["uuid"])
    assert "T" in ev["timestamp"]


def test_messages_fit_the_sdk_formatted_message():
    props = event()["properties"]
    for key in ("$ai_input", "$ai_output_choices"):
        check(props[key], typing.List[ph_types.FormattedMessage], key)


def test_every_ai_property_is_known_to_posthog():
    known = sdk_property_names()
    sent = [k for k in event()["properties"] if k.startswith("$ai_")]
    assert sent
    unknown = [k for k in sent if k not in known]
    assert not unknown, f"not PostHog $ai_ properties: {unknown}"


def test_token_and_cost_types():
    props = event()["properties"]
    usage_hints = typing.get_type_hints(ph_types.TokenUsage)
    for prop, field in [
        ("$ai_input_tokens", "input_tokens"),
        ("$ai_output_tokens", "output_tokens"),
        ("$ai_cache_read_input_tokens", "cache_read_input_tokens"),
        ("$ai_cache_creation_input_tokens", "cache_creation_input_tokens"),
        ("$ai_reasoning_tokens", "reasoning_tokens"),
    ]:
        check(props[prop], usage_hints[field], prop)
    for prop in ("$ai_total_cost_usd", "$ai_input_cost_usd", "$ai_output_cost_usd", "$ai_latency"):
        assert isinstance(props[prop], (int, float)) and not isinstance(props[prop], bool)
    assert isinstance(props["$ai_is_error"], bool)
    assert isinstance(props["$ai_http_status"], int)
