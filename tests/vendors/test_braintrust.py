"""The `braintrust` exporter's golden body, checked with Braintrust's own Python package.

crates/tracecast-exporters/tests/golden/braintrust.json is what tracecast POSTs to
`{baseUrl}/otel/v1/traces` for one representative generation. Here it is:
- parsed strictly as an OTLP `ExportTraceServiceRequest` (opentelemetry-proto);
- checked for parents (`otlp_parents.py`): every parent is a span of the request or of the
  user's own OpenTelemetry trace (Braintrust's SDK ids are OpenTelemetry ids by default,
  braintrust 0.48.1 `braintrust/id_gen.py`), so the trace has a root Braintrust lists; the
  golden's parent (no span of its derived trace) is `metadata.parent_span_id` of the root;
- turned into the project-logs row its `braintrust.*` attributes describe (input_json ->
  input, output_json -> output, braintrust.metadata.<k> -> metadata, braintrust.metrics.<k>
  -> metrics, braintrust.tags -> tags, braintrust.span_attributes.<k> -> span_attributes),
  and each part validated strictly against the braintrust package's generated API types
  (`ProjectLogsEvent`'s `metadata`, `metrics`, `tags` and `span_attributes` field types:
  `ProjectLogsEventMetrics`, `ProjectLogsEventMetadata`, `SpanAttributes` with its `SpanType`
  literal).
"""

import base64
import json
import pathlib
import re
import collections.abc
import typing

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from braintrust import _generated_types as T
from otlp_parents import check_parents, orphan_of

GOLDEN = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/braintrust.json"
)


def load_otlp(path):
    """Parses an OTLP/JSON body strictly. OTLP/JSON writes ids as hex where protobuf's JSON
    mapping expects base64: each id is checked (lower-case hex of the right length) and
    converted before the strict parse."""
    body = json.loads(path.read_text())
    for rs in body["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for field, size in (("traceId", 16), ("spanId", 8), ("parentSpanId", 8)):
                    if field in span:
                        h = span[field]
                        assert re.fullmatch(r"[0-9a-f]{%d}" % (2 * size), h), (field, h)
                        span[field] = base64.b64encode(bytes.fromhex(h)).decode()
    req = ExportTraceServiceRequest()
    json_format.Parse(json.dumps(body), req, ignore_unknown_fields=False)
    return req

PREFIXES = {
    "braintrust.metadata.": "metadata",
    "braintrust.metrics.": "metrics",
    "braintrust.span_attributes.": "span_attributes",
}
JSON_FIELDS = {"braintrust.input_json": "input", "braintrust.output_json": "output"}


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


@pytest.fixture(scope="module")
def request_():
    return load_otlp(GOLDEN)


@pytest.fixture(scope="module")
def spans(request_):
    return [s for rs in request_.resource_spans for ss in rs.scope_spans for s in ss.spans]


def test_every_parent_is_sent_or_the_users_own(request_, spans):
    roots = check_parents(request_)
    assert [row(r)["metadata"].get("parent_span_id") for r in roots] == ["00f067aa0ba902b7"]
    # Tags live on the root, where Braintrust keeps them.
    assert row(roots[0])["tags"] == ["a", "b"]
    with pytest.raises(AssertionError):
        check_parents(orphan_of(request_))


def row(span):
    keys = [kv.key for kv in span.attributes]
    assert len(keys) == len(set(keys)), f"repeated attributes on {span.name}"
    # Ids as Braintrust's OTLP ingestion makes them: hex span id, trace id as the root span id.
    out = {
        "metadata": {},
        "metrics": {},
        "span_attributes": {"name": span.name},
        "span_id": span.span_id.hex(),
        "root_span_id": span.trace_id.hex(),
    }
    if span.parent_span_id:
        out["span_parents"] = [span.parent_span_id.hex()]
    for kv in span.attributes:
        key, v = kv.key, value(kv.value)
        if not key.startswith("braintrust."):
            continue
        if key in JSON_FIELDS:
            # Braintrust parses these as JSON; a value that does not parse lands in metadata.
            out[JSON_FIELDS[key]] = json.loads(v)
        elif key == "braintrust.tags":
            out["tags"] = v
        else:
            prefix = next((p for p in PREFIXES if key.startswith(p)), None)
            assert prefix, f"{key} is not a braintrust attribute family tracecast documents"
            out[PREFIXES[prefix]][key[len(prefix):]] = v
    return out


def strict(tp, data, path="$"):
    """Checks `data` against a type of the braintrust package's generated API types, strictly:
    ints are not bools, TypedDict keys are declared ones with their declared types, required
    keys are present, Literals match. (The generated TypedDicts use `typing.TypedDict`, which
    pydantic refuses on Python < 3.12, hence this small checker.)"""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return
    if origin in (typing.NotRequired, typing.Required):
        return strict(args[0], data, path)
    if origin is typing.Union or type(tp).__name__ == "UnionType":
        errors = []
        for arm in args:
            try:
                return strict(arm, data, path)
            except AssertionError as e:
                errors.append(str(e))
        raise AssertionError(f"{path}: {data!r} matches none of {tp}: {errors}")
    if origin is typing.Literal:
        assert data in args, f"{path}: {data!r} is not one of {args}"
        return
    if tp is type(None):
        assert data is None, f"{path}: {data!r} is not null"
        return
    if typing.is_typeddict(tp):
        assert isinstance(data, dict), f"{path}: {data!r} is not an object"
        hints = typing.get_type_hints(tp, include_extras=True)
        for key in tp.__required_keys__:
            if typing.get_origin(hints[key]) is not typing.NotRequired:
                assert key in data, f"{path}.{key} is required"
        for key, v in data.items():
            if key in hints:
                strict(hints[key], v, f"{path}.{key}")
        return
    if origin in (collections.abc.Sequence, list):
        assert isinstance(data, list), f"{path}: {data!r} is not an array"
        for i, v in enumerate(data):
            strict(args[0], v, f"{path}[{i}]")
        return
    if origin in (collections.abc.Mapping, dict):
        assert isinstance(data, dict), f"{path}: {data!r} is not an object"
        for k, v in data.items():
            strict(args[0], k, f"{path} key")
            strict(args[1], v, f"{path}.{k}")
        return
    if tp is float:
        assert isinstance(data, (int, float)) and not isinstance(data, bool), f"{path}: {data!r} is not a number"
        return
    if tp is int:
        assert isinstance(data, int) and not isinstance(data, bool), f"{path}: {data!r} is not an integer"
        return
    assert isinstance(data, tp), f"{path}: {data!r} is not a {tp}"


def test_the_checker_rejects_what_braintrust_would():
    with pytest.raises(AssertionError):
        strict(T.ProjectLogsEventMetrics, {"prompt_tokens": 1.5})
    with pytest.raises(AssertionError):
        strict(T.ProjectLogsEventMetrics, {"prompt_tokens": True})
    with pytest.raises(AssertionError):
        strict(T.SpanAttributes, {"type": "generation"})
    with pytest.raises(AssertionError):
        strict(T.ProjectLogsEventMetadata, {"model": 4})
    strict(T.SpanAttributes, {"type": "llm", "name": "x"})


def test_rows_satisfy_the_generated_types(spans):
    assert len(spans) == 2
    for span in spans:
        r = row(span)
        fields = typing.get_type_hints(T.ProjectLogsEvent, include_extras=True)
        for field in ("metadata", "metrics", "span_attributes", "tags", "input", "output",
                      "span_id", "root_span_id", "span_parents"):
            if field in r:
                strict(fields[field], r[field], field)
        assert r["span_attributes"]["type"] in typing.get_args(T.SpanType)
        # Metrics beyond the declared ones are numbers ("numerical measurements").
        assert all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in r["metrics"].values())


def test_llm_row_content_and_metrics(spans):
    llm = next(row(s) for s in spans if row(s)["span_attributes"]["type"] == "llm")
    assert llm["input"][1] == {"role": "user", "content": "Process this order: 2 widgets"}
    assert llm["output"][0]["message"]["content"] == "Looking up the SKU."
    assert json.loads(llm["metadata"]["tools"])[0]["function"]["name"] == "lookup_sku"
    m = llm["metrics"]
    assert (m["prompt_tokens"], m["completion_tokens"], m["tokens"]) == (120, 30, 150)
    assert m["prompt_cached_tokens"] == 100 and m["completion_reasoning_tokens"] == 8
    assert m["total_cost"] == pytest.approx(m["prompt_cost"] + m["completion_cost"])
    md = llm["metadata"]
    assert md["model"] == "openai/gpt-4o"
    assert (md["user_id"], md["session_id"]) == ("user_12345", "session_abc")
    assert md["order_id"] == "ORD-12345"
    assert llm["span_attributes"]["name"] == "Extract Order Details"


def test_the_task_span_parents_the_llm_span(spans):
    task = next(s for s in spans if row(s)["span_attributes"]["type"] == "task")
    llm = next(s for s in spans if row(s)["span_attributes"]["type"] == "llm")
    assert llm.parent_span_id == task.span_id
    assert llm.trace_id == task.trace_id
    assert row(task)["metadata"]["trace_name"] == "Order Processing Pipeline"
