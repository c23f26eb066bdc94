"""The `weave` exporter's golden body, run through W&B Weave's own OTLP ingestion code.

crates/tracecast-exporters/tests/golden/weave.pb is the protobuf body tracecast POSTs to
`{baseUrl}/otel/v1/traces` for one representative generation (weave.json is its OTLP/JSON
rendering for review). Here it is:
- parsed strictly as an OTLP `ExportTraceServiceRequest` (opentelemetry-proto);
- converted span by span with Weave's converter, `python_spans.Span.from_proto(...).to_call()`,
  the function Weave's trace servers call in `otel_export` (a span it cannot convert, e.g. with
  an attribute path conflict, raises here as it is rejected there);
- validated as Weave's `CallStartReq` / `CallEndReq`;
- checked for parents (`otlp_parents.py`): every call's `parent_id` is a call of the request or
  of the user's own OTLP trace, so the trace has a root call, which Weave's call list shows;
  the golden's parent (no span of its derived trace) is the root call's
  `attributes.parent_span_id`;
- checked against the mapping OpenRouter documents for Weave (weave.mdx): op_name, attributes
  (user_id, session_id, openrouter_trace_id, custom keys), inputs (messages and model
  parameters), summary (usage, latency), thread.
"""

import base64
import json
import pathlib

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from weave.trace_server import trace_server_interface as tsi
from weave.trace_server.opentelemetry.python_spans import Resource, Span
from otlp_parents import check_parents, orphan_of

GOLDEN = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden"
)
PROJECT_ID = "acme/support-bot"


@pytest.fixture(scope="module")
def request_pb():
    req = ExportTraceServiceRequest()
    req.ParseFromString((GOLDEN / "weave.pb").read_bytes())
    return req


@pytest.fixture(scope="module")
def calls(request_pb):
    """op_name -> (start, end) as Weave stores them."""
    out = {}
    for rs in request_pb.resource_spans:
        resource = Resource.from_proto(rs.resource)
        for ss in rs.scope_spans:
            for proto_span in ss.spans:
                start, end = Span.from_proto(proto_span, resource).to_call(PROJECT_ID)
                # Weave's own request models accept them.
                start = tsi.CallStartReq(start=start).start
                end = tsi.CallEndReq(end=end).end
                out[start.op_name] = (start, end)
    return out


def _hex_ids_to_base64(node):
    """OTLP/JSON writes ids in hex; protobuf's JSON mapping wants base64."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str):
                node[k] = base64.b64encode(bytes.fromhex(v)).decode()
            else:
                _hex_ids_to_base64(v)
    elif isinstance(node, list):
        for v in node:
            _hex_ids_to_base64(v)
    return node


def test_the_rendering_for_review_matches_the_protobuf(request_pb):
    rendered = _hex_ids_to_base64(json.loads((GOLDEN / "weave.json").read_text()))
    parsed = ExportTraceServiceRequest()
    json_format.ParseDict(rendered, parsed)
    assert parsed == request_pb


def test_routing_resource_attributes(request_pb):
    resource = Resource.from_proto(request_pb.resource_spans[0].resource).attributes
    assert resource["wandb"] == {"entity": "acme", "project": "support-bot"}


def test_every_parent_call_is_sent_or_the_users_own(request_pb, calls):
    roots = check_parents(request_pb)
    assert len(roots) == 1
    # As Weave stores them: one root call (parent_id None) carrying the user's parent id.
    root_calls = [start for start, _ in calls.values() if start.parent_id is None]
    assert [c.attributes.get("parent_span_id") for c in root_calls] == ["00f067aa0ba902b7"]
    ids = {start.id for start, _ in calls.values()}
    assert all(start.parent_id in ids for start, _ in calls.values() if start.parent_id)
    with pytest.raises(AssertionError):
        check_parents(orphan_of(request_pb))


def test_two_calls_parent_and_llm(calls):
    assert set(calls) == {"Extraction", "Extract Order Details"}
    parent, _ = calls["Extraction"]
    llm, _ = calls["Extract Order Details"]
    assert llm.parent_id == parent.id
    assert llm.trace_id == parent.trace_id


def test_llm_call_attributes(calls):
    start, _ = calls["Extract Order Details"]
    a = start.attributes
    # weave.mdx: trace_id -> openrouter_trace_id; user -> user_id; session_id -> session_id;
    # custom trace keys merged into the attributes.
    assert a["openrouter_trace_id"] == "order_processing_001"
    assert a["openrouter_observation_id"] == "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
    assert a["user_id"] == "user_12345"
    assert a["session_id"] == "session_abc"
    assert a["order_id"] == "ORD-12345"
    assert a["attempt"] == 2
    assert a["customer"] == {"tier": "gold"}
    assert "nothing" not in a
    assert a["cost"] == {"input": 0.00083, "output": 0.0004, "total": 0.00123}
    # Weave's standard LLM attributes.
    assert a["kind"] == "llm"
    assert a["model"] == "openai/gpt-4o-2024-08-06"
    assert a["provider"] == "openai"
    assert a["operation_name"] == "chat"
    assert a["finish_reasons"] == ["tool_calls"]
    assert a["model_parameters"]["temperature"] == 0.2
    # A session is a Weave thread, each call a turn.
    assert start.thread_id == "session_abc"
    assert start.turn_id == start.id


def test_llm_call_inputs_and_output(calls):
    start, end = calls["Extract Order Details"]
    # weave.mdx: inputs = the request data, messages and model parameters.
    assert start.inputs["messages"][1] == {
        "role": "user",
        "content": "Process this order: 2 widgets",
    }
    assert start.inputs["model"] == "openai/gpt-4o"
    for param, value in {"temperature": 0.2, "max_tokens": 256, "top_p": 0.9}.items():
        assert start.inputs[param] == value
    assert start.inputs["tools"][0]["function"]["name"] == "lookup_sku"
    assert end.output["completion"] == "Looking up the SKU."
    assert end.output["reasoning"] == "Need the SKU first."
    assert end.output["tool_calls"][0]["id"] == "call_1"
    assert end.exception is None


def test_llm_call_summary(calls):
    start, end = calls["Extract Order Details"]
    summary = end.summary
    usage = summary["usage"]["openai/gpt-4o-2024-08-06"]
    assert usage["prompt_tokens"] == 120
    assert usage["completion_tokens"] == 30
    assert usage["total_tokens"] == 150
    assert usage["cache_read_input_tokens"] == 100
    assert usage["cache_creation_input_tokens"] == 4
    assert summary["weave"]["status"] == tsi.TraceStatus.SUCCESS
    assert summary["weave"]["latency_ms"] == 1523
    assert (end.ended_at - start.started_at).total_seconds() == pytest.approx(1.5235)


def test_parent_call_attributes(calls):
    start, end = calls["Extraction"]
    a = start.attributes
    assert a["agent_name"] == "Extraction"
    assert a["trace_name"] == "Order Processing Pipeline"
    assert a["user_id"] == "user_12345"
    assert a["session_id"] == "session_abc"
    assert a["openrouter_trace_id"] == "order_processing_001"
    assert a["order_id"] == "ORD-12345"
    assert start.inputs == {}
    assert end.summary["weave"]["status"] == tsi.TraceStatus.SUCCESS


def test_no_content_leaks_into_attributes(calls):
    start, _ = calls["Extract Order Details"]
    text = json.dumps(start.attributes)
    assert "Process this order" not in text
    assert "Looking up the SKU" not in text
