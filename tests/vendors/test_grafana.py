"""Grafana Cloud: the golden body (tests/golden/grafana.json, sent byte for byte) is a valid
OTLP/JSON ExportTraceServiceRequest for the official `opentelemetry-proto` package, with what
grafana.mdx documents for TraceQL queries."""

import base64
import json
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

GOLDEN = Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden/grafana.json"
IDS = {"traceId", "spanId", "parentSpanId"}


def hex_ids_to_base64(node):
    """OTLP/JSON writes ids as hex; protobuf's JSON mapping reads bytes as base64."""
    if isinstance(node, dict):
        return {
            k: base64.b64encode(bytes.fromhex(v)).decode() if k in IDS and isinstance(v, str) else hex_ids_to_base64(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids_to_base64(v) for v in node]
    return node


def value(kv):
    return getattr(kv.value, kv.value.WhichOneof("value"))


def load():
    msg = ExportTraceServiceRequest()
    json_format.ParseDict(hex_ids_to_base64(json.loads(GOLDEN.read_bytes())), msg)
    return msg


def test_golden_is_a_valid_otlp_json_request():
    msg = load()
    spans = msg.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["Extraction", "Extract Order Details"]
    assert spans[1].parent_span_id == spans[0].span_id
    assert spans[1].kind == 3  # SPAN_KIND_CLIENT


def test_documented_traceql_attributes():
    msg = load()
    res = {kv.key: value(kv) for kv in msg.resource_spans[0].resource.attributes}
    assert res["service.name"] == "openrouter"
    assert res["service.version"] == "1.0.0"
    assert "openrouter.trace.id" in res
    attrs = {kv.key: value(kv) for kv in msg.resource_spans[0].scope_spans[0].spans[1].attributes}
    for key in (
        "gen_ai.operation.name",
        "gen_ai.system",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.total_tokens",
        "gen_ai.response.finish_reason",
        "user.id",
        "session.id",
        "trace.metadata.order_id",
    ):
        assert key in attrs, key
