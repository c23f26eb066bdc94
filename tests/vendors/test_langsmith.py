"""The `langsmith` exporter's golden body, checked with LangSmith's own Python package.

crates/tracecast-exporters/tests/golden/langsmith.pb is what tracecast POSTs to
`{endpoint}/otel/v1/traces` for one representative generation (protobuf, as LangSmith's own
SDKs send; langsmith.json is its rendering for review). Here it is:
- parsed strictly as an OTLP `ExportTraceServiceRequest` (opentelemetry-proto);
- checked for parents: every OTLP parent is a span of the request (LangSmith holds a span
  whose parent it never receives, then drops it), and the user's own parent is either a run
  id in `langsmith.span.parent_id` (a UUID, with `langsmith.trace.id`) or metadata; the
  attribute names are those of "Trace with OpenTelemetry"
  (https://docs.langchain.com/langsmith/trace-with-opentelemetry) and of the SDK's own OTLP
  writer (langsmith 0.14.17, `langsmith/wrappers/_openai_agents_api.py`);
- checked key by key against the attribute names the langsmith SDK's own OTel exporter
  writes (`langsmith._internal.otel._otel_exporter`), with the value shapes it writes
  (run types from `langsmith.schemas.RunTypeEnum`, tags as one ", "-joined string,
  metadata as scalar `langsmith.metadata.<key>` attributes, integer token counts);
- turned into the run those attributes describe and loaded into the SDK's `RunBase` model
  (inputs and outputs must be JSON objects).
"""

import datetime
import json
import pathlib
import uuid

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from langsmith import schemas
from langsmith._internal.otel import _otel_exporter as X

GOLDEN = (
    pathlib.Path(__file__).resolve().parents[2]
    / "crates/tracecast-exporters/tests/golden/langsmith.pb"
)


# The langsmith.* names the SDK's exporter writes, and the run-identity names LangSmith
# documents (and the SDK's OpenAI Agents forwarder writes) to place a span under a run.
TRACE_ID = "langsmith.trace.id"
PARENT_RUN_ID = "langsmith.span.parent_id"
LANGSMITH_KEYS = {X.LANGSMITH_RUN_TYPE, X.LANGSMITH_NAME, X.LANGSMITH_TAGS, TRACE_ID, PARENT_RUN_ID}
# Where LangSmith reads reasoning tokens ("Trace with OpenTelemetry").
REASONING_TOKENS = "gen_ai.usage.details.reasoning_tokens"
RUN_TYPES = {t.value for t in schemas.RunTypeEnum}


def value(any_value):
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind)


@pytest.fixture(scope="module")
def request_():
    req = ExportTraceServiceRequest()
    req.ParseFromString(GOLDEN.read_bytes())
    return req


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


def check_parents(spans):
    """Every OTLP parent is a span of the request; each trace has a root; the user's own parent
    is a run id (UUID) in langsmith.span.parent_id with the trace's UUID, or metadata."""
    ids = {s.span_id for s in spans}
    roots = []
    for span in spans:
        a = attrs(span)
        if span.parent_span_id:
            assert span.parent_span_id in ids, f"{span.name}: OTLP parent LangSmith never receives"
        else:
            roots.append(span)
        if PARENT_RUN_ID in a:
            assert not span.parent_span_id, "a run has one parent"
            assert uuid.UUID(a[PARENT_RUN_ID]).version, a[PARENT_RUN_ID]
            assert uuid.UUID(a[TRACE_ID]), "a run id parent needs its trace"
    assert roots, "no root run"
    return roots


def test_every_parent_is_sent_or_in_langsmiths_run_id_form(spans):
    roots = check_parents(spans)
    # The golden's parent_span_id (00f067aa0ba902b7) is no run id: it is metadata of the root.
    assert [attrs(r).get("langsmith.metadata.parent_span_id") for r in roots] == ["00f067aa0ba902b7"]


def test_the_parent_check_catches_an_orphan(spans):
    orphan = type(spans[0])()
    orphan.CopyFrom(spans[0])
    orphan.parent_span_id = bytes.fromhex("00f067aa0ba902b7")
    with pytest.raises(AssertionError):
        check_parents([orphan])


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
    assert a[REASONING_TOKENS] == 8
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
        # A parent must be a run of the request (check_parents); none means a root run.
        parent = by_id[span.parent_span_id] if span.parent_span_id else None
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
