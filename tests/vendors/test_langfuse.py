"""The `langfuse` exporter's golden body, checked with Langfuse's own Python package.

crates/tracecast-exporters/tests/golden/langfuse.json is what tracecast POSTs to
`{baseUrl}/api/public/otel/v1/traces` for one representative generation with every metadata
group on, and langfuse_default.json the same generation with a destination's default settings.
Each is:
- parsed strictly as an OTLP `ExportTraceServiceRequest` (opentelemetry-proto, which the
  langfuse package depends on);
- loaded into the langfuse package's generated models of that endpoint (`OtelResourceSpan`);
- checked key by key against the SDK's `LangfuseOtelSpanAttributes`, and value by value
  against the SDK's types (observation types, levels, `ObservationV2` usage/cost details,
  `MapValue` model parameters) and validators (environment, propagated ids and tags);
- checked for parents (`otlp_parents.py`): every parent observation is sent or in the user's own
  OTLP trace (Langfuse SDKs from v3 are OpenTelemetry-based: observation ids are span ids), so
  the trace has its root; the golden's parent (no span of its derived trace) is observation
  metadata of the root;
- checked for `service.version`, which Langfuse reads as every observation's version
  (`packages/shared/src/server/otel/OtelIngestionProcessor.ts`): not sent.
"""

import base64
import copy
import datetime
import json
import pathlib
import re
import typing

import pydantic
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from langfuse._client import propagation
from langfuse._client.attributes import LangfuseOtelSpanAttributes as A
from langfuse._client.constants import ObservationTypeLiteral
from langfuse.api import MapValue, ObservationLevel, ObservationV2, OtelResourceSpan
from langfuse.api.core.pydantic_utilities import parse_obj_as
from otlp_parents import check_parents, orphan_of

GOLDEN_DIR = (
    pathlib.Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden"
)
GOLDENS = ["langfuse.json", "langfuse_default.json"]

# Every attribute name the SDK defines.
LANGFUSE_KEYS = {
    v for k, v in vars(A).items() if k.isupper() and isinstance(v, str)
}
METADATA_PREFIXES = (A.TRACE_METADATA + ".", A.OBSERVATION_METADATA + ".")


@pytest.fixture(scope="module", params=GOLDENS)
def body(request):
    return json.loads((GOLDEN_DIR / request.param).read_text())


def plain(value):
    """An OTLP AnyValue as a Python value."""
    (kind, v), = value.items()
    if kind == "arrayValue":
        return [plain(x) for x in v.get("values", [])]
    if kind == "intValue":
        return int(v)
    return v


def attrs(element):
    out = {}
    for kv in element.get("attributes", []):
        assert kv["key"] not in out, f"attribute {kv['key']} repeated"
        out[kv["key"]] = plain(kv["value"])
    return out


def spans(body):
    return [
        sp
        for rs in body["resourceSpans"]
        for ss in rs["scopeSpans"]
        for sp in ss["spans"]
    ]


def strict_request(body):
    # OTLP/JSON writes ids in hex where the protobuf JSON mapping expects base64.
    converted = copy.deepcopy(body)
    for sp in spans(converted):
        for key in ("traceId", "spanId", "parentSpanId"):
            if key in sp:
                sp[key] = base64.b64encode(bytes.fromhex(sp[key])).decode()
    return json_format.Parse(
        json.dumps(converted), ExportTraceServiceRequest(), ignore_unknown_fields=False
    )


def test_is_a_strict_otlp_export_request(body):
    msg = strict_request(body)
    parsed = [s for rs in msg.resource_spans for ss in rs.scope_spans for s in ss.spans]
    assert len(parsed) == 2
    assert all(len(s.trace_id) == 16 and len(s.span_id) == 8 for s in parsed)


def test_every_parent_is_sent_or_the_users_own(body):
    msg = strict_request(body)
    roots = check_parents(msg)
    assert [r.name for r in roots] == ["Extraction"]
    (root,) = [sp for sp in spans(body) if "parentSpanId" not in sp]
    assert attrs(root)[A.OBSERVATION_METADATA + ".parent_span_id"] == "00f067aa0ba902b7"
    with pytest.raises(AssertionError):
        check_parents(orphan_of(msg))


def test_no_service_version_becomes_the_trace_version(body):
    for rs in body["resourceSpans"]:
        assert "service.version" not in attrs(rs["resource"])
    for sp in spans(body):
        assert A.VERSION not in attrs(sp)


def test_loads_into_langfuse_otel_models(body):
    for rs in body["resourceSpans"]:
        # How the SDK's API client reads these models (wire aliases such as `scopeSpans`).
        model = parse_obj_as(OtelResourceSpan, rs)
        assert model.resource.attributes
        assert len(model.scope_spans) == 1
        for ss in model.scope_spans:
            assert ss.scope.name == "openrouter"
            for sp in ss.spans:
                for kv in sp.attributes:
                    v = kv.value
                    set_fields = [
                        f for f in ("string_value", "int_value", "double_value", "bool_value")
                        if getattr(v, f) is not None
                    ]
                    # One typed value, or an OTLP arrayValue (kept as an extra field).
                    assert len(set_fields) == 1 or set(v.model_extra or {}) == {"arrayValue"}, kv
                assert re.fullmatch(r"[0-9a-f]{32}", sp.trace_id)
                assert re.fullmatch(r"[0-9a-f]{16}", sp.span_id)
                assert sp.kind in (1, 3)
                assert int(sp.end_time_unix_nano) >= int(sp.start_time_unix_nano)


def test_every_langfuse_key_is_one_the_sdk_defines(body):
    elements = [rs["resource"] for rs in body["resourceSpans"]] + spans(body)
    seen = set()
    for el in elements:
        for key in attrs(el):
            if key.startswith("langfuse."):
                seen.add(key)
                assert key in LANGFUSE_KEYS or key.startswith(METADATA_PREFIXES), key
    # The golden generation exercises every mapping of OpenRouter's table.
    for key in (
        A.TRACE_NAME, A.TRACE_TAGS, A.OBSERVATION_TYPE, A.OBSERVATION_LEVEL,
        A.OBSERVATION_INPUT, A.OBSERVATION_OUTPUT, A.OBSERVATION_MODEL,
        A.OBSERVATION_MODEL_PARAMETERS, A.OBSERVATION_USAGE_DETAILS,
        A.OBSERVATION_COST_DETAILS, A.OBSERVATION_COMPLETION_START_TIME,
        A.ENVIRONMENT, A.RELEASE,
    ):
        assert key in seen, key


def test_values_have_the_sdk_types(body):
    (intermediate, generation) = spans(body)
    res = attrs(body["resourceSpans"][0]["resource"])
    sa, ga = attrs(intermediate), attrs(generation)

    types = set()
    for group in typing.get_args(ObservationTypeLiteral):
        types.update(typing.get_args(group))
    assert sa[A.OBSERVATION_TYPE] == "span" and "span" in types
    assert ga[A.OBSERVATION_TYPE] == "generation" and "generation" in types
    assert ObservationLevel(ga[A.OBSERVATION_LEVEL]) == ObservationLevel.DEFAULT

    field = ObservationV2.model_fields
    usage = pydantic.TypeAdapter(field["usage_details"].annotation).validate_python(
        json.loads(ga[A.OBSERVATION_USAGE_DETAILS]), strict=True
    )
    assert all(v >= 0 for v in usage.values())
    assert usage["input"] + usage["input_cached_tokens"] + usage["input_cache_write_tokens"] + usage["input_audio_tokens"] == 120
    cost = pydantic.TypeAdapter(field["cost_details"].annotation).validate_python(
        json.loads(ga[A.OBSERVATION_COST_DETAILS])
    )
    assert cost == {"total": 0.00123}
    pydantic.TypeAdapter(typing.Dict[str, MapValue]).validate_python(
        json.loads(ga[A.OBSERVATION_MODEL_PARAMETERS]), strict=True
    )
    start = datetime.datetime.fromisoformat(ga[A.OBSERVATION_COMPLETION_START_TIME])
    assert start.tzinfo is not None
    json.loads(ga[A.OBSERVATION_INPUT])["messages"]
    json.loads(ga[A.OBSERVATION_OUTPUT])["completion"]

    # Environment: resource and observation, in the form Langfuse accepts.
    for a in (res, sa, ga):
        assert propagation._validate_environment_value(value=a[A.ENVIRONMENT]) == "production"
        assert a[A.RELEASE] == "2.1.0"
    # Trace-level values pass the SDK's checks for propagated attributes.
    for key, sdk_key in (("user_id", A.TRACE_USER_ID), ("session_id", A.TRACE_SESSION_ID)):
        assert propagation._validate_propagated_value(value=ga[sdk_key], key=key) == ga[sdk_key]
    assert propagation._validate_propagated_value(value=ga[A.TRACE_TAGS], key="tags") == [
        "checkout",
        "beta",
    ]
    assert sa[A.TRACE_NAME] == "Order Processing Pipeline"
    assert ga[A.TRACE_METADATA + ".order_id"] == "ORD-12345"


def test_the_sdk_itself_emits_the_generation_keys_we_use(body):
    """The SDK's own generation attributes use the same names for the same fields."""
    from langfuse._client.attributes import create_generation_attributes

    sdk = create_generation_attributes(
        completion_start_time=datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc),
        level="DEFAULT",
        model="m",
        model_parameters={"temperature": 0.2},
        input={"messages": []},
        output={"completion": ""},
        usage_details={"input": 1},
        cost_details={"total": 0.1},
    )
    ga = attrs(spans(body)[1])
    for key in sdk:
        assert key in ga, key
