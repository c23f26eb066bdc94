"""The golden PostHog event against PostHog's own SDK.

`crates/tracecast-exporters/tests/golden/posthog.json` (every metadata group on) and
`posthog_default.json` (the default settings: no group) are `$ai_generation` events of a
capture-API batch. PostHog publishes no schema for them. Checked here:
- `$ai_input` and `$ai_output_choices` fit the message TypedDict PostHog's AI SDK formats
  messages with (`posthog.ai.types.FormattedMessage`);
- every `$ai_*` property is one the `posthog` package's AI integrations send, or one listed in
  PostHog's manual-capture reference (posthog.com/docs/llm-analytics/manual-capture);
- the token and cost properties have the types the SDK's `TokenUsage` gives them;
- PostHog's ingestion keeps the cost we send (the billed one) instead of pricing the event from
  its own model table, and does not count cached prompt tokens twice. PostHog's cost code is
  TypeScript and cannot run here, so its rule is encoded below from the source:
  PostHog/posthog `nodejs/src/ingestion/pipelines/ai/costs/index.ts` at commit
  fdb18fb41aeb936ce1f3becf3ec12c408981eb09, `processCost` (line 90): the early return at line 98
  keeps client costs only when `$ai_input_cost_usd` and `$ai_output_cost_usd` are both truthy
  (present and non-zero); otherwise `setCostsOnEvent` (line 50) fills them from the model table.
  PostHog/posthog pull request #88457 (merged 2026-08-25) added a second keep: a true
  `$ai_cost_passthrough` with a numeric `$ai_total_cost_usd` (zero included).
  `resolveCacheReportingExclusive` (same folder, `input-costs.ts`): an explicit boolean
  `$ai_cache_reporting_exclusive` wins; else Anthropic events are read as exclusive.
"""

import json
import math
import pathlib
import re
import typing
import uuid

import pytest


import posthog
import posthog.ai.types as ph_types

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden"
GOLDEN = GOLDEN_DIR / "posthog.json"
GOLDENS = [GOLDEN, GOLDEN_DIR / "posthog_default.json"]

# In PostHog's manual-capture reference but not (all) sent by the Python AI integrations.
DOCUMENTED = {
    "$ai_trace_id", "$ai_session_id", "$ai_span_id", "$ai_span_name", "$ai_parent_id",
    "$ai_model", "$ai_provider", "$ai_input", "$ai_input_tokens", "$ai_output_choices",
    "$ai_output_tokens", "$ai_latency", "$ai_time_to_first_token", "$ai_stream", "$ai_tools",
    "$ai_http_status", "$ai_base_url", "$ai_request_url", "$ai_is_error", "$ai_error",
    "$ai_temperature", "$ai_max_tokens", "$ai_input_cost_usd", "$ai_output_cost_usd",
    "$ai_total_cost_usd",
    # "Pre-calculated costs" table of the manual-capture reference (PostHog/posthog#88457).
    "$ai_cost_passthrough",
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


def event(golden=GOLDEN):
    return json.loads(golden.read_text())


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


def cost_number(v):
    """`parsePrecalculatedCosts` / `finiteNumberOrUndefined`: a finite number (or numeric text)."""
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def posthog_keeps_client_cost(props):
    """PostHog's `processCost` rule (module docstring): True when the client's cost is kept."""
    inp = cost_number(props.get("$ai_input_cost_usd"))
    out = cost_number(props.get("$ai_output_cost_usd"))
    if inp and out:  # index.ts line 98: both truthy, so non-zero
        return True
    passthrough = props.get("$ai_cost_passthrough") in (True, "true")
    return passthrough and cost_number(props.get("$ai_total_cost_usd")) is not None


def cache_reporting_exclusive(props):
    """`resolveCacheReportingExclusive`: an explicit boolean wins, else Anthropic is exclusive."""
    explicit = props.get("$ai_cache_reporting_exclusive")
    if isinstance(explicit, bool):
        return explicit
    model = str(props.get("$ai_model", "")).lower()
    return props.get("$ai_provider") == "anthropic" or "claude" in model


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_posthog_keeps_the_billed_cost(golden):
    props = event(golden)["properties"]
    assert isinstance(props["$ai_total_cost_usd"], (int, float))
    assert posthog_keeps_client_cost(props), "PostHog would price this event from its own table"


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_cached_prompt_tokens_are_read_as_included(golden):
    # OpenRouter's prompt_tokens include cached tokens, so PostHog must not add them again.
    props = dict(event(golden)["properties"])
    assert props["$ai_cache_read_input_tokens"] <= props["$ai_input_tokens"]
    for provider, model in [("anthropic", "anthropic/claude-sonnet-4"), ("openai", "openai/gpt-4o")]:
        props.update({"$ai_provider": provider, "$ai_model": model})
        assert cache_reporting_exclusive(props) is False, provider


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_every_ai_property_of_each_golden_is_known(golden):
    known = sdk_property_names()
    unknown = [k for k in event(golden)["properties"] if k.startswith("$ai_") and k not in known]
    assert not unknown, f"not PostHog $ai_ properties: {unknown}"
