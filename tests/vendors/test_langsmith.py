"""The `langsmith` exporter's golden body, checked with LangSmith's own Python package.

crates/tracecast-exporters/tests/golden/langsmith.json is what tracecast POSTs to
`{endpoint}/otel/v1/traces` for one representative generation. Here it is:
- parsed strictly as an OTLP `ExportTraceServiceRequest` (opentelemetry-proto);
- checked key by key against the attribute names the langsmith SDK's own OTel exporter
  writes (`langsmith._internal.otel._otel_exporter`), with the value shapes it writes
  (run types from `langsmith.schemas.RunTypeEnum`, tags as one ", "-joined string,
  metadata as scalar `langsmith.metadata.<key>` attributes, integer token counts);
- turned into the run those attributes describe and loaded into the SDK's `RunBase` model
  (inputs and outputs must be JSON objects).
"""

import base64
import datetime
import json
import pathlib
import re
import uuid

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from langsmith import schemas
from langsmith._internal.otel import _otel_exporter as X

GOLDEN = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/langsmith.json"
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

# The langsmith.* names the SDK's exporter writes.
LANGSMITH_KEYS = {X.LANGSMITH_RUN_TYPE, X.LANGSMITH_NAME, X.LANGSMITH_TAGS}
RUN_TYPES = {t.value for t in schemas.RunTypeEnum}


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
    out = []
    for rs in request_.resource_spans:
        for ss in rs.scope_spans:
            out.extend(ss.spans)
    return out


def attrs(span):
    keys = [kv.key for kv in span.attributes]
    assert len(keys) == len(set(keys)), f"repeated attributes on {span.name}"
    return {kv.key: value(kv.value) for kv in span.attributes}


def test_is_otlp_with_two_runs(spans):
    assert len(spans) == 2
    assert {attrs(s)[X.LANGSMITH_RUN_TYPE] for s in spans} == {"chain", "llm"}


def test_langsmith_attributes_are_the_sdks(spans):
    for span in spans:
        a = attrs(span)
        for key, v in a.items():
            if not key.startswith("langsmith."):
                continue
            if key.startswith(X.LANGSMITH_METADATA + "."):
                # The SDK writes metadata as scalar attributes (otel_safe_attribute_value).
                assert isinstance(v, (str, bool, int, float)), (key, v)
                continue
            assert key in LANGSMITH_KEYS, f"{key} is not an attribute the langsmith SDK writes"
        assert a[X.LANGSMITH_RUN_TYPE] in RUN_TYPES
        assert a[X.LANGSMITH_NAME] == span.name
        # Tags: one string, joined with ", " as the SDK joins a list.
        tags = a[X.LANGSMITH_TAGS]
        assert isinstance(tags, str)
        assert tags == ", ".join(t.strip() for t in tags.split(","))


def test_llm_run_has_the_genai_attributes_the_sdk_uses(spans):
    llm = next(s for s in spans if attrs(s)[X.LANGSMITH_RUN_TYPE] == "llm")
    a = attrs(llm)
    assert a[X.GEN_AI_SYSTEM] == a["langsmith.metadata.ls_provider"] == "openai"
    assert a[X.GEN_AI_REQUEST_MODEL] == "openai/gpt-4o"
    assert a["langsmith.metadata.ls_model_name"] == "gpt-4o"
    assert a[X.GEN_AI_RESPONSE_MODEL] == "openai/gpt-4o-2024-08-06"
    for key in (X.GEN_AI_USAGE_INPUT_TOKENS, X.GEN_AI_USAGE_OUTPUT_TOKENS, X.GEN_AI_USAGE_TOTAL_TOKENS,
                X.GEN_AI_REQUEST_MAX_TOKENS):
        assert isinstance(a[key], int), key
    assert a[X.GEN_AI_USAGE_INPUT_TOKENS] + a[X.GEN_AI_USAGE_OUTPUT_TOKENS] == a[X.GEN_AI_USAGE_TOTAL_TOKENS]
    for key in (X.GEN_AI_REQUEST_TEMPERATURE, X.GEN_AI_REQUEST_TOP_P):
        assert isinstance(a[key], float), key
    assert a[X.GEN_AI_RESPONSE_FINISH_REASONS] == ["tool_calls"]
    assert a[X.GEN_AI_RESPONSE_ID] == "gen-1767225600-AbCdEfGhIjKlMnOpQrSt"
    tools = json.loads(a[X.GEN_AI_TOOL_DEFINITIONS])
    assert tools[0]["function"]["name"] == "lookup_sku"
    assert a["langsmith.metadata.user_id"] == "user_12345"
    assert a["langsmith.metadata.session_id"] == "session_abc"


def test_the_described_runs_load_into_the_sdks_run_model(spans):
    by_id = {s.span_id: s for s in spans}
    for span in spans:
        a = attrs(span)
        metadata = {
            k[len(X.LANGSMITH_METADATA) + 1:]: v
            for k, v in a.items()
            if k.startswith(X.LANGSMITH_METADATA + ".")
        }
        inputs = json.loads(a[X.GENAI_PROMPT]) if X.GENAI_PROMPT in a else {}
        outputs = json.loads(a[X.GENAI_COMPLETION]) if X.GENAI_COMPLETION in a else None
        parent = by_id.get(span.parent_span_id)
        run = schemas.RunBase(
            id=uuid.UUID(bytes=span.span_id * 2),
            trace_id=uuid.UUID(bytes=span.trace_id),
            parent_run_id=uuid.UUID(bytes=parent.span_id * 2) if parent else None,
            name=a[X.LANGSMITH_NAME],
            run_type=a[X.LANGSMITH_RUN_TYPE],
            start_time=datetime.datetime.fromtimestamp(span.start_time_unix_nano / 1e9, datetime.timezone.utc),
            end_time=datetime.datetime.fromtimestamp(span.end_time_unix_nano / 1e9, datetime.timezone.utc),
            inputs=inputs,
            outputs=outputs,
            extra={"metadata": metadata},
            tags=[t.strip() for t in a[X.LANGSMITH_TAGS].split(",")],
        )
        assert run.end_time >= run.start_time
        if run.run_type == "llm":
            assert run.inputs["messages"][1]["content"] == "Process this order: 2 widgets"
            assert run.outputs["completion"] == "Looking up the SKU."
            assert run.parent_run_id is not None
        else:
            assert run.extra["metadata"]["trace_name"] == "Order Processing Pipeline"
