"""New Relic: the golden request (tests/golden/newrelic.json, the decoded protobuf body as
OTLP/JSON) is a valid OTLP ExportTraceServiceRequest for the official `opentelemetry-proto`
package, serialises to binary protobuf under New Relic's 1 MB limit, and keeps New Relic's
attribute limits (names <= 255 characters, values <= 4095, arrays <= 64 entries, no maps)."""

import base64
import json
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

GOLDEN = Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden/newrelic.json"
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


def load():
    msg = ExportTraceServiceRequest()
    json_format.ParseDict(hex_ids_to_base64(json.loads(GOLDEN.read_text())), msg)
    return msg


def check_limits(attributes):
    for kv in attributes:
        assert len(kv.key) <= 255, kv.key
        kind = kv.value.WhichOneof("value")
        assert kind in {"string_value", "int_value", "double_value", "bool_value", "array_value"}, kv.key
        if kind == "string_value":
            assert len(kv.value.string_value) <= 4095, kv.key
        if kind == "array_value":
            values = kv.value.array_value.values
            assert len(values) <= 64, kv.key
            assert len({v.WhichOneof("value") for v in values}) <= 1, f"{kv.key} is not homogeneous"


def test_golden_is_valid_and_within_new_relic_limits():
    msg = load()
    assert len(msg.SerializeToString()) < 1_000_000
    rs = msg.resource_spans[0]
    check_limits(rs.resource.attributes)
    spans = rs.scope_spans[0].spans
    assert [s.name for s in spans] == ["Extraction", "Extract Order Details"]
    assert spans[1].parent_span_id == spans[0].span_id
    for span in spans:
        check_limits(span.attributes)
    keys = {kv.key for kv in spans[1].attributes}
    assert {"gen_ai.request.model", "user.id", "session.id", "trace.metadata.order_id"} <= keys


def test_every_parent_is_sent_or_in_the_users_own_trace():
    """No orphan: a parent the platform never receives hides the trace (otlp_parents.py)."""
    import pytest
    from otlp_parents import check_parents, orphan_of

    msg = load()
    assert check_parents(msg), "the generation's top-most span is a root"
    with pytest.raises(AssertionError):
        check_parents(orphan_of(msg))
