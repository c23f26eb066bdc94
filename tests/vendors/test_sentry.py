"""The Sentry golden payload against Sentry's and OpenTelemetry's own published definitions.

- The body parses, strictly (no unknown field), as an `ExportTraceServiceRequest` of the
  `opentelemetry-proto` package: what Sentry's OTLP endpoint (Relay) decodes.
- Every span attribute that Sentry's semantic conventions registry (`sentry-conventions`)
  knows has the registry's type and is not a deprecated alias; the AI-monitoring attributes
  Sentry keys on are present; the content attributes have the registry's message shape.
"""

import base64
import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from sentry_conventions.attributes import ATTRIBUTE_METADATA, AttributeType

GOLDEN = (
    Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/sentry.json"
)


def hex_ids_to_base64(node):
    """OTLP/JSON writes ids in hex; the protobuf JSON mapping wants base64."""
    if isinstance(node, dict):
        return {
            k: (
                base64.b64encode(bytes.fromhex(v)).decode()
                if k in ("traceId", "spanId", "parentSpanId") and isinstance(v, str)
                else hex_ids_to_base64(v)
            )
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [hex_ids_to_base64(x) for x in node]
    return node


@pytest.fixture(scope="module")
def body():
    return json.loads(GOLDEN.read_text())


@pytest.fixture(scope="module")
def request_msg(body):
    msg = ExportTraceServiceRequest()
    json_format.ParseDict(hex_ids_to_base64(body), msg, ignore_unknown_fields=False)
    return msg


def spans(msg):
    return [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attrs(span):
    out = {}
    for kv in span.attributes:
        assert kv.key not in out, f"{kv.key} repeated"
        kind = kv.value.WhichOneof("value")
        if kind == "array_value":
            out[kv.key] = ("array", [getattr(v, v.WhichOneof("value")) for v in kv.value.array_value.values])
        else:
            out[kv.key] = (kind, getattr(kv.value, kind))
    return out


REGISTRY_KIND = {
    AttributeType.STRING: "string_value",
    AttributeType.BOOLEAN: "bool_value",
    AttributeType.INTEGER: "int_value",
    AttributeType.DOUBLE: "double_value",
    AttributeType.STRING_ARRAY: "array",
    AttributeType.BOOLEAN_ARRAY: "array",
    AttributeType.INTEGER_ARRAY: "array",
    AttributeType.DOUBLE_ARRAY: "array",
}


def test_parses_as_an_otlp_export_request(request_msg):
    sp = spans(request_msg)
    assert len(sp) == 2
    assert len(sp[0].trace_id) == 16 and len(sp[0].span_id) == 8
    assert sp[1].parent_span_id == sp[0].span_id
    assert sp[1].kind == 3  # CLIENT


def test_known_attributes_have_the_registry_type_and_are_current(request_msg):
    checked = 0
    for span in spans(request_msg):
        for key, (kind, _value) in attrs(span).items():
            meta = ATTRIBUTE_METADATA.get(key)
            if meta is None:
                continue  # custom attribute (openrouter.*, trace.metadata.*, ...)
            checked += 1
            assert meta.deprecation is None, (
                f"{key} is deprecated in Sentry's registry"
                f" (use {meta.deprecation.replacement})"
            )
            if meta.type is AttributeType.ANY:
                continue
            assert kind == REGISTRY_KIND[meta.type], (
                f"{key}: sent as {kind}, the registry says {meta.type.value}"
            )
    assert checked >= 25, checked


def test_ai_monitoring_attributes(request_msg):
    gen = attrs(spans(request_msg)[1])
    for key in [
        "sentry.op",
        "sentry.description",
        "gen_ai.operation.name",
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.usage.total_tokens",
        "gen_ai.cost.total_tokens",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.tool.definitions",
        "user.id",
        "session.id",
        "gen_ai.conversation.id",
        "sentry.environment",
        "sentry.release",
    ]:
        assert key in gen, key
        assert key in ATTRIBUTE_METADATA, f"{key} is not in Sentry's registry"
    assert gen["sentry.op"][1] == "gen_ai." + gen["gen_ai.operation.name"][1]


def test_content_has_the_registry_message_shape(request_msg):
    gen = attrs(spans(request_msg)[1])
    roles = {"user", "assistant", "tool", "system"}
    inp = json.loads(gen["gen_ai.input.messages"][1])
    assert isinstance(inp, list) and inp
    for m in inp:
        assert m["role"] in roles
        assert isinstance(m["parts"], list)
        for p in m["parts"]:
            assert p["type"] in {"text", "tool_call", "tool_call_response", "blob", "uri", "reasoning"}
            if p["type"] == "text":
                assert isinstance(p["content"], str)
    out = json.loads(gen["gen_ai.output.messages"][1])
    assert [m["role"] for m in out] == ["assistant"]
    kinds = [p["type"] for p in out[0]["parts"]]
    assert "text" in kinds and "tool_call" in kinds
    call = next(p for p in out[0]["parts"] if p["type"] == "tool_call")
    assert call["name"] and "arguments" in call
    assert isinstance(json.loads(gen["gen_ai.tool.definitions"][1]), list)
    assert json.loads(gen["gen_ai.response.finish_reasons"][1]) == ["tool_calls"]


def test_every_parent_is_sent_or_in_the_users_own_trace(request_msg):
    """No orphan: a parent the platform never receives hides the trace (otlp_parents.py)."""
    from otlp_parents import check_parents, orphan_of

    assert check_parents(request_msg), "the generation's top-most span is a root"
    with pytest.raises(AssertionError):
        check_parents(orphan_of(request_msg))
