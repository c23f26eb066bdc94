"""Arize AX: the golden request (tests/golden/arize.json, the decoded protobuf body as OTLP/JSON)
is a valid OTLP ExportTraceServiceRequest for the official `opentelemetry-proto` package, and its
attributes are OpenInference's, checked against the `openinference-semantic-conventions` package's
own constants and enumerations."""

import base64
import json
import re
from pathlib import Path

from google.protobuf import json_format
from openinference.semconv import resource as oi_resource
from openinference.semconv import trace as oi
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

GOLDEN = Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden/arize.json"
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
    raw = json.loads(GOLDEN.read_text())
    msg = ExportTraceServiceRequest()
    json_format.ParseDict(hex_ids_to_base64(raw), msg)  # strict: unknown fields fail
    return msg


def constants(cls):
    return {v for k, v in vars(cls).items() if k.isupper() and isinstance(v, str)}


def value(kv):
    return getattr(kv.value, kv.value.WhichOneof("value"))


SPAN_KEYS = constants(oi.SpanAttributes)
MESSAGE = "|".join(re.escape(k) for k in constants(oi.MessageAttributes))
CONTENT = "|".join(re.escape(k) for k in constants(oi.MessageContentAttributes) | {"message_content.image.image.url"})
TOOL_CALL = "|".join(re.escape(k) for k in constants(oi.ToolCallAttributes))
TOOL = "|".join(re.escape(k) for k in constants(oi.ToolAttributes))
INDEXED = re.compile(
    rf"^llm\.(input|output)_messages\.\d+\.(?:{MESSAGE})$"
    rf"|^llm\.(input|output)_messages\.\d+\.message\.contents\.\d+\.(?:{CONTENT})$"
    rf"|^llm\.(input|output)_messages\.\d+\.message\.tool_calls\.\d+\.(?:{TOOL_CALL})$"
    rf"|^llm\.tools\.\d+\.(?:{TOOL})$"
)
# Not OpenInference, sent on purpose (see crates/tracecast-exporters/src/arize.rs).
EXTRA = ("gen_ai.", "openrouter.", "metadata.", "user.", "session.", "tracecast.")


def test_golden_is_a_valid_otlp_request():
    msg = load()
    assert len(msg.resource_spans) == 1
    spans = msg.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["Extraction", "Extract Order Details"]
    assert spans[1].parent_span_id == spans[0].span_id
    assert len(spans[0].trace_id) == 16 and len(spans[1].span_id) == 8


def test_resource_names_the_project():
    res = {kv.key: value(kv) for kv in load().resource_spans[0].resource.attributes}
    assert oi_resource.ResourceAttributes.PROJECT_NAME in res
    assert res[oi_resource.ResourceAttributes.PROJECT_NAME] == res["model_id"] == "order-agent"


def test_every_attribute_is_openinference_or_a_documented_extra():
    for span in load().resource_spans[0].scope_spans[0].spans:
        for kv in span.attributes:
            k = kv.key
            assert k in SPAN_KEYS or INDEXED.match(k) or k.startswith(EXTRA), k


def test_enumerated_values_and_json_strings():
    spans = load().resource_spans[0].scope_spans[0].spans
    kinds = {m.value for m in oi.OpenInferenceSpanKindValues}
    mimes = {m.value for m in oi.OpenInferenceMimeTypeValues}
    for span in spans:
        attrs = {kv.key: value(kv) for kv in span.attributes}
        assert attrs[oi.SpanAttributes.OPENINFERENCE_SPAN_KIND] in kinds
    llm = {kv.key: value(kv) for kv in spans[1].attributes}
    S = oi.SpanAttributes
    assert llm[S.OPENINFERENCE_SPAN_KIND] == oi.OpenInferenceSpanKindValues.LLM.value
    assert llm[S.LLM_PROVIDER] in {m.value for m in oi.OpenInferenceLLMProviderValues}
    assert llm[S.LLM_SYSTEM] in {m.value for m in oi.OpenInferenceLLMSystemValues}
    assert llm[S.INPUT_MIME_TYPE] in mimes and llm[S.OUTPUT_MIME_TYPE] in mimes
    for key in (S.LLM_INVOCATION_PARAMETERS, S.METADATA, S.INPUT_VALUE, "llm.tools.0.tool.json_schema"):
        json.loads(llm[key])
    for key in (S.LLM_TOKEN_COUNT_PROMPT, S.LLM_TOKEN_COUNT_COMPLETION, S.LLM_TOKEN_COUNT_TOTAL):
        assert isinstance(llm[key], int)
    assert isinstance(llm[S.LLM_COST_TOTAL], float)
    assert llm["llm.input_messages.0.message.role"] == "system"
    assert llm["llm.output_messages.0.message.role"] == "assistant"
    assert S.USER_ID in llm and S.SESSION_ID in llm


def test_every_parent_is_sent_or_in_the_users_own_trace():
    """No orphan: a parent the platform never receives hides the trace (otlp_parents.py)."""
    import pytest
    from otlp_parents import check_parents, orphan_of

    msg = load()
    assert check_parents(msg), "the generation's top-most span is a root"
    with pytest.raises(AssertionError):
        check_parents(orphan_of(msg))
