"""Grafana Cloud: the golden body (tests/golden/grafana.pb, the binary protobuf body sent byte
for byte) parses as an ExportTraceServiceRequest with the official `opentelemetry-proto` package,
carries what grafana.mdx documents for TraceQL queries, and has nothing that Grafana Tempo's
distributor would cut silently (`processAttributes` in grafana/tempo
`modules/distributor/distributor.go`: keys and string values over `max_attribute_bytes`, 2048
bytes by default, are truncated)."""

from pathlib import Path

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

GOLDEN = Path(__file__).resolve().parents[2] / "crates/tracecast-exporters/tests/golden/grafana.pb"
TEMPO_MAX_ATTRIBUTE_BYTES = 2048


def value(kv):
    return getattr(kv.value, kv.value.WhichOneof("value"))


def load():
    body = GOLDEN.read_bytes()
    msg = ExportTraceServiceRequest()
    # ParseFromString returns the number of bytes read: the whole body is one message.
    assert msg.ParseFromString(body) == len(body)
    assert msg.resource_spans, "the body holds spans"
    return msg


def test_golden_is_a_valid_otlp_protobuf_request():
    msg = load()
    spans = msg.resource_spans[0].scope_spans[0].spans
    assert [s.name for s in spans] == ["Extraction", "Extract Order Details"]
    assert spans[1].parent_span_id == spans[0].span_id
    assert len(spans[1].trace_id) == 16 and len(spans[1].span_id) == 8
    assert spans[1].kind == 3  # SPAN_KIND_CLIENT
    assert spans[1].start_time_unix_nano < spans[1].end_time_unix_nano


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


def test_nothing_is_left_for_tempo_to_truncate():
    msg = load()

    def check(attributes, where):
        for kv in attributes:
            assert len(kv.key.encode()) <= TEMPO_MAX_ATTRIBUTE_BYTES, (where, kv.key)
            if kv.value.WhichOneof("value") == "string_value":
                assert len(kv.value.string_value.encode()) <= TEMPO_MAX_ATTRIBUTE_BYTES, (where, kv.key)

    for rs in msg.resource_spans:
        check(rs.resource.attributes, "resource")
        for ss in rs.scope_spans:
            check(ss.scope.attributes, "scope")
            for span in ss.spans:
                check(span.attributes, span.name)
                for event in span.events:
                    check(event.attributes, "event")
                for link in span.links:
                    check(link.attributes, "link")


def test_every_parent_is_sent_or_in_the_users_own_trace():
    """No orphan: a parent the platform never receives hides the trace (otlp_parents.py)."""
    import pytest
    from otlp_parents import check_parents, orphan_of

    msg = load()
    assert check_parents(msg), "the generation's top-most span is a root"
    with pytest.raises(AssertionError):
        check_parents(orphan_of(msg))
