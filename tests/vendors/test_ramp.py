"""The Ramp golden payload against OpenTelemetry's own published definitions.

Ramp publishes no schema for its OpenRouter endpoint; its engineering write-up says it walks
`resourceSpans -> scopeSpans -> spans[]` of an OTLP/JSON export and reads the GenAI attributes
below. So: the body parses strictly as an `ExportTraceServiceRequest` (`opentelemetry-proto`),
the standard keys are the ones the `opentelemetry-semantic-conventions` package defines, and
every key Ramp reads is there with the value type Ramp reads.
"""

import base64
import json
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.semconv._incubating.attributes import (
    gen_ai_attributes as gen_ai,
    session_attributes,
    user_attributes,
)

GOLDEN = (
    Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/ramp.json"
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
def request_msg():
    msg = ExportTraceServiceRequest()
    body = json.loads(GOLDEN.read_text())
    json_format.ParseDict(hex_ids_to_base64(body), msg, ignore_unknown_fields=False)
    return msg


def spans(msg):
    return [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attrs(span):
    out = {}
    for kv in span.attributes:
        assert kv.key not in out, f"{kv.key} repeated"
        kind = kv.value.WhichOneof("value")
        out[kv.key] = (kind, getattr(kv.value, kind))
    return out


def test_parses_as_an_otlp_export_request(request_msg):
    sp = spans(request_msg)
    assert len(sp) == 2
    assert sp[1].parent_span_id == sp[0].span_id
    assert sp[1].end_time_unix_nano > sp[1].start_time_unix_nano


def test_semantic_convention_keys_and_types(request_msg):
    gen = attrs(spans(request_msg)[1])
    expected = {
        gen_ai.GEN_AI_OPERATION_NAME: "string_value",
        gen_ai.GEN_AI_PROVIDER_NAME: "string_value",
        gen_ai.GEN_AI_REQUEST_MODEL: "string_value",
        gen_ai.GEN_AI_RESPONSE_MODEL: "string_value",
        gen_ai.GEN_AI_RESPONSE_ID: "string_value",
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: "int_value",
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: "int_value",
        gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS: "int_value",
        gen_ai.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS: "int_value",
        gen_ai.GEN_AI_CONVERSATION_ID: "string_value",
        gen_ai.GEN_AI_REQUEST_TEMPERATURE: "double_value",
        gen_ai.GEN_AI_REQUEST_MAX_TOKENS: "int_value",
        user_attributes.USER_ID: "string_value",
        session_attributes.SESSION_ID: "string_value",
    }
    for key, kind in expected.items():
        assert key in gen, key
        assert gen[key][0] == kind, f"{key}: {gen[key][0]}"
    assert gen[gen_ai.GEN_AI_OPERATION_NAME][1] == gen_ai.GenAiOperationNameValues.CHAT.value
    assert gen[gen_ai.GEN_AI_PROVIDER_NAME][1] == gen_ai.GenAiProviderNameValues.OPENAI.value


def test_what_ramp_reads(request_msg):
    gen = attrs(spans(request_msg)[1])
    # The keys Ramp's processing extracts (builders.ramp.com write-up), with the value kinds
    # of the OTLP AnyValue it handles.
    reads = {
        "gen_ai.request.model": "string_value",
        "gen_ai.usage.input_tokens": "int_value",
        "gen_ai.usage.output_tokens": "int_value",
        "gen_ai.usage.input_tokens.cached": "int_value",
        "gen_ai.usage.output_tokens.reasoning": "int_value",
        "gen_ai.usage.total_cost": "double_value",
        "user.id": "string_value",
    }
    for key, kind in reads.items():
        assert gen[key][0] == kind, key
    assert gen["gen_ai.usage.total_cost"][1] == pytest.approx(0.00123)
    # With the cost-allocation group the split adds up to the total.
    total = gen["gen_ai.usage.input_cost"][1] + gen["gen_ai.usage.output_cost"][1]
    assert total == pytest.approx(gen["gen_ai.usage.total_cost"][1])
    # Custom metadata for attribution.
    assert gen["trace.metadata.department"] == ("string_value", "finance")
    assert gen["trace.metadata.cost_center"] == ("string_value", "CC-1234")


def test_every_parent_is_sent_or_in_the_users_own_trace(request_msg):
    """No orphan: a parent the platform never receives hides the trace (otlp_parents.py)."""
    from otlp_parents import check_parents, orphan_of

    assert check_parents(request_msg), "the generation's top-most span is a root"
    with pytest.raises(AssertionError):
        check_parents(orphan_of(request_msg))
