"""The parent rule the OTLP platform validators share (braintrust, weave, langfuse, arize,
grafana, newrelic, ramp, sentry).

A platform that stores spans makes a span whose parent it never receives an orphan: Weave's
call list and Braintrust's and Langfuse's trace lists show traces by their root, so the
generation disappears from the default view. Every parent in a payload must therefore be
either a span of the same request, or a foreign parent in the one form that can name a span
the user sent the platform: a span of the user's own OpenTelemetry trace, i.e. the span's
trace id is the trace id the user gave (the resource's `openrouter.trace.id`, 32 hex).
No id may be all zero (OTLP's invalid id).
"""


def check_parents(request):
    """Asserts the rule above for an `ExportTraceServiceRequest`; returns the root spans."""
    spans = [
        (rs, span)
        for rs in request.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    sent = {span.span_id for _, span in spans}
    roots = []
    for rs, span in spans:
        assert any(span.trace_id) and any(span.span_id), f"{span.name}: all-zero id"
        if not span.parent_span_id:
            roots.append(span)
            continue
        assert any(span.parent_span_id), f"{span.name}: all-zero parent"
        if span.parent_span_id in sent:
            continue
        given = {
            kv.key: kv.value.string_value for kv in rs.resource.attributes
        }.get("openrouter.trace.id")
        assert given == span.trace_id.hex(), (
            f"{span.name}: parent {span.parent_span_id.hex()} is never sent and is not in "
            f"the user's own trace (trace key {given!r}): an orphan"
        )
    assert roots or any(s.parent_span_id not in sent for _, s in spans), "no root"
    return roots


def orphan_of(request):
    """A copy of `request` whose first root span gets a parent no one sends (for the tests
    that prove the check fails)."""
    bad = type(request)()
    bad.CopyFrom(request)
    for rs in bad.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if not span.parent_span_id:
                    span.parent_span_id = bytes.fromhex("00f067aa0ba902b7")
                    return bad
    raise AssertionError("no root span to orphan")
