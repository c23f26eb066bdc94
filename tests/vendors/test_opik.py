"""The `opik` exporter's golden payload, checked with Comet Opik's own Python package.

crates/tracecast-exporters/tests/golden/opik.ndjson holds the request bodies tracecast sends
for one representative generation, one per line: `{"traces":[...]}` for
`POST {base}/v1/private/traces/batch`, then `{"spans":[...]}` for
`POST {base}/v1/private/spans/batch`. Here each item is:
- validated with the `opik` package's generated REST models (`TraceWrite`, `SpanWrite`,
  `ErrorInfoWrite`), with no field those models do not know (they allow extras, Opik's
  server ignores them: an unknown field would be a silent mapping bug);
- checked for what Opik's backend requires beyond the models: UUIDv7 ids, a non-blank name,
  a span type, 32-bit usage counts;
- checked against the mapping OpenRouter documents for Opik (opik.mdx);
- checked for where Opik files it: Opik lists and partitions traces by the time inside the
  UUIDv7 id (its backend filters `id >= :uuid_from_time`), and the `opik` SDK stamps an id with
  its record's start (`opik.id_helpers.generate_id(start_time)`), so each id's time must be in
  the same minute as the record's `start_time` (not midnight of the day).
"""

import datetime
import json
import pathlib
import uuid

import pytest
from opik.rest_api.types import ErrorInfoWrite, SpanWrite, TraceWrite
from opik.rest_api.types.span_write_type import SpanWriteType
import typing

GOLDEN = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/opik.ndjson"
)
SPAN_TYPES = set(typing.get_args(typing.get_args(SpanWriteType)[0]))


@pytest.fixture(scope="module")
def documents():
    lines = [l for l in GOLDEN.read_text().split("\n") if l]
    return [json.loads(l) for l in lines]


@pytest.fixture(scope="module")
def traces(documents):
    return [t for d in documents for t in d.get("traces", [])]


@pytest.fixture(scope="module")
def spans(documents):
    return [s for d in documents for s in d.get("spans", [])]


def test_documents_are_trace_batches_then_span_batches(documents):
    kinds = [next(iter(d)) for d in documents]
    assert kinds == ["traces", "spans"]
    for d in documents:
        assert len(d) == 1
        assert 1 <= len(next(iter(d.values()))) <= 1000


def _is_uuid7(s):
    u = uuid.UUID(s)
    return u.version == 7 and str(u) == s


def _check_model(model, item):
    unknown = set(item) - set(model.model_fields)
    assert not unknown, f"fields {model.__name__} does not know: {unknown}"
    parsed = model.model_validate(item)
    # Round trip: nothing was coerced away.
    dumped = json.loads(parsed.json(exclude_unset=True))
    for k, v in item.items():
        if isinstance(getattr(parsed, k), datetime.datetime):
            assert getattr(parsed, k).tzinfo is not None, f"{k} has no time zone"
            continue
        assert dumped[k] == v, k
    return parsed


def test_traces_are_opik_trace_writes(traces):
    assert len(traces) == 1
    for t in traces:
        parsed = _check_model(TraceWrite, t)
        assert _is_uuid7(t["id"])
        assert t["name"].strip()
        assert parsed.end_time >= parsed.start_time
        if "error_info" in t:
            ErrorInfoWrite.model_validate(t["error_info"])


def test_spans_are_opik_span_writes(spans, traces):
    assert len(spans) == 2
    ids = {s["id"] for s in spans}
    for s in spans:
        _check_model(SpanWrite, s)
        assert _is_uuid7(s["id"]) and _is_uuid7(s["trace_id"])
        assert s["trace_id"] == traces[0]["id"]
        assert s["type"] in SPAN_TYPES
        assert s["name"].strip()
        for k, v in s.get("usage", {}).items():
            assert isinstance(v, int) and 0 <= v < 2**31, k
        if "parent_span_id" in s:
            assert _is_uuid7(s["parent_span_id"])
            assert s["parent_span_id"] in ids


def test_the_opik_mdx_mapping(traces, spans):
    trace = traces[0]
    general, llm = spans
    # trace_id -> trace metadata openrouter_trace_id
    assert trace["metadata"]["openrouter_trace_id"] == "order_processing_001"
    # trace_name -> trace name; span_name / generation_name -> span names
    assert trace["name"] == "Order Processing Pipeline"
    assert (general["type"], general["name"]) == ("general", "Extraction")
    assert (llm["type"], llm["name"]) == ("llm", "Extract Order Details")
    assert llm["parent_span_id"] == general["id"]
    # the original ids in metadata
    assert llm["metadata"]["openrouter_observation_id"] == "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
    assert llm["metadata"]["openrouter_trace_id"] == "order_processing_001"
    # custom metadata in both the trace and the span
    for m in (trace["metadata"], llm["metadata"]):
        assert m["order_id"] == "ORD-12345"
        assert m["priority"] == "high"
    # cost (input, output, total), model parameters and finish reasons in span metadata
    assert llm["metadata"]["cost"] == {"input": 0.00083, "output": 0.0004, "total": 0.00123}
    assert llm["metadata"]["model_parameters"]["temperature"] == 0.2
    assert llm["metadata"]["finish_reasons"] == ["tool_calls"]
    # user in trace metadata; session as Opik's thread
    assert trace["metadata"]["user_id"] == "user_12345"
    assert trace["thread_id"] == "session_abc"
    # model, provider, usage, cost as Opik fields
    assert llm["model"] == "openai/gpt-4o"
    assert llm["usage"]["prompt_tokens"] == 120
    assert llm["usage"]["completion_tokens"] == 30
    assert llm["total_estimated_cost"] == 0.00123
    assert trace["tags"] == ["checkout", "eval"]
    assert trace["environment"] == "production"


def _uuid7_time(s):
    ms = uuid.UUID(s).int >> 80
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def test_each_id_carries_its_records_start_time(traces, spans):
    for rec in traces + spans:
        start = TraceWrite.model_validate(rec).start_time if rec in traces else SpanWrite.model_validate(rec).start_time
        at = _uuid7_time(rec["id"])
        assert at.replace(second=0, microsecond=0) == start.astimezone(datetime.timezone.utc).replace(
            second=0, microsecond=0
        ), f"{rec['name']}: id time {at} is not in the minute of start_time {start}"
        assert at <= start, f"{rec['name']}: id time {at} is after start_time {start}"
