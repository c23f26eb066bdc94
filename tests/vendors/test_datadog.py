"""The golden Datadog body against Datadog's own SDK models.

`crates/tracecast-exporters/tests/golden/datadog.json` (every metadata group on) and
`datadog_default.json` (the default settings: no group) are requests to the LLM Observability
spans API. Datadog publishes no schema for it; its Python SDK, ddtrace, describes the span event
it sends with TypedDicts (`ddtrace.llmobs._event_types.LLMObsSpanEvent`, `ddtrace.llmobs.types`).
Each span here must fit those types: only known fields, with the SDK's types. Parents: ddtrace
writes span ids in decimal (`"span_id": str(span.span_id)`, `ddtrace/llmobs/_llmobs.py`) and
trace ids with `format_trace_id` (32 hex characters, or decimal for 64-bit ids); every
`parent_id` must be a span of the same request, `"undefined"` (a root), or the user's own
parent (the value in the llm span's metadata) in that Datadog form, so every trace has a root
in Datadog and shows in its trace list. Two documented
differences between the public HTTP API and the SDK's own intake are allowed: the HTTP API puts
the span kind at `meta.kind` (the SDK at `meta.span.kind`), and `_dd` (SDK bookkeeping) is absent.
"""

import json
import pathlib
import re
import typing

import pytest


import ddtrace.llmobs._event_types as event_types
import ddtrace.llmobs.types as ddtrace_types

GOLDEN_DIR = pathlib.Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden"
GOLDENS = [GOLDEN_DIR / "datadog.json", GOLDEN_DIR / "datadog_default.json"]


def check(value, tp, path):
    """Checks `value` against a typing annotation (TypedDicts, lists, dicts, unions, scalars)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is typing.Any:
        return
    if typing.is_typeddict(tp):
        assert isinstance(value, dict), f"{path}: expected an object for {tp.__name__}"
        hints = typing.get_type_hints(tp)
        for key in value:
            assert key in hints, f"{path}.{key} is not a field of {tp.__name__}"
        for key in tp.__required_keys__:
            assert key in value, f"{path}.{key} is required by {tp.__name__}"
        for key, v in value.items():
            check(v, hints[key], f"{path}.{key}")
        return
    if origin is typing.Union:
        errors = []
        for a in args:
            try:
                check(value, a, path)
                return
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{path}: matches none of {args}: {errors}")
    if origin is list:
        assert isinstance(value, list), f"{path}: expected a list"
        for i, v in enumerate(value):
            check(v, args[0], f"{path}[{i}]")
        return
    if origin is dict:
        assert isinstance(value, dict), f"{path}: expected an object"
        for k, v in value.items():
            assert isinstance(k, str)
            check(v, args[1], f"{path}.{k}")
        return
    if tp is type(None):
        assert value is None, f"{path}: expected null"
        return
    if tp is float:
        assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{path}: float"
        return
    if tp is int:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: int"
        return
    if tp in (str, bool):
        assert isinstance(value, tp), f"{path}: expected {tp.__name__}, got {value!r}"
        return
    raise AssertionError(f"{path}: no check for {tp}")


def spans(golden=GOLDENS[0]):
    body = json.loads(golden.read_text())
    attrs = body["data"]["attributes"]
    assert body["data"]["type"] == "span"
    assert isinstance(attrs["ml_app"], str) and attrs["ml_app"]
    return attrs["spans"]


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_spans_fit_the_sdk_span_event(golden):
    event = event_types.LLMObsSpanEvent
    for span in spans(golden):
        span = dict(span)
        meta = dict(span.pop("meta"))
        kind = meta.pop("kind")
        assert kind in {"agent", "workflow", "llm", "tool", "task", "embedding", "retrieval"}
        # The SDK's shape of the same span.
        sdk_span = {**span, "meta": {**meta, "span": {"kind": kind}}, "_dd": {}}
        sdk_span.setdefault("metrics", {})
        check(sdk_span, event, f"span {span['name']!r}")
        assert span["trace_id"] and span["span_id"] and span["parent_id"]
        assert span["status"] in {"ok", "error"}


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_llm_span_io_messages_and_tool_calls_fit_the_sdk_types(golden):
    llm = [s for s in spans(golden) if s["meta"]["kind"] == "llm"]
    assert len(llm) == 1
    meta = llm[0]["meta"]
    for io in ("input", "output"):
        check(meta[io], ddtrace_types._MetaIO, io)
        for m in meta[io]["messages"]:
            check(m, ddtrace_types.Message, f"{io}.message")
    calls = meta["output"]["messages"][0]["tool_calls"]
    for c in calls:
        check(c, ddtrace_types.ToolCall, "tool_call")
    # meta.metadata: Datadog's HTTP API takes flat values only.
    for k, v in meta["metadata"].items():
        assert isinstance(v, (str, int, float, bool)), f"metadata.{k} = {v!r}"
    for k, v in llm[0]["metrics"].items():
        assert isinstance(v, (int, float)) and not isinstance(v, bool), f"metrics.{k}"


def is_datadog_span_id(s):
    return bool(re.fullmatch(r"[0-9]{1,20}", s)) and 0 < int(s) < 2**64


def is_datadog_trace_id(s):
    return bool(re.fullmatch(r"[0-9a-f]{32}", s)) or is_datadog_span_id(s)


@pytest.mark.parametrize("golden", GOLDENS, ids=lambda p: p.name)
def test_every_parent_is_sent_or_the_users_own_datadog_span(golden):
    sp = spans(golden)
    ids = {s["span_id"] for s in sp}
    for s in sp:
        assert is_datadog_span_id(s["span_id"]), s["span_id"]
    given = {
        s["meta"]["metadata"].get("parent_span_id") for s in sp if s["meta"]["kind"] == "llm"
    }
    for s in sp:
        p = s["parent_id"]
        ok = (
            p == "undefined"
            or p in ids
            or (p in given and is_datadog_span_id(p) and is_datadog_trace_id(s["trace_id"]))
        )
        assert ok, f"parent_id {p!r} of {s['name']!r} names a span Datadog never receives"
    for trace in {s["trace_id"] for s in sp}:
        in_trace = [s for s in sp if s["trace_id"] == trace]
        assert any(s["parent_id"] not in ids for s in in_trace), f"trace {trace} has no root"
