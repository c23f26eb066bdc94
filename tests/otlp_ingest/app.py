"""An application instrumented with one OpenTelemetry instrumentation for the ``openai`` SDK:
one chat completion against ``--upstream``, spans exported with a standard OTLP exporter to
``--endpoint`` with a bearer key. Run as its own process (instrumentations patch ``openai``
globally).

    python app.py --instrumentation openai-v2|openinference|openllmetry \
        --exporter http-proto|grpc|console --endpoint URL --key KEY --upstream URL --tag TAG
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def instrument(name: str) -> None:
    if name == "openai-v2":
        # Content capture, span-attribute form (the current GenAI conventions).
        os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
        os.environ.setdefault("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif name == "openinference":
        from openinference.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    elif name == "openllmetry":
        os.environ.setdefault("TRACELOOP_TRACE_CONTENT", "true")
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
    else:
        raise SystemExit(f"unknown instrumentation {name}")


def exporter(kind: str, endpoint: str, key: str):
    headers = {"authorization": f"Bearer {key}"}
    if kind == "http-proto":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces", headers=headers)
    if kind == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, headers=headers, insecure=True)
    if kind == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter(out=sys.stderr)
    raise SystemExit(f"unknown exporter {kind}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--instrumentation", required=True)
    p.add_argument("--exporter", default="http-proto")
    p.add_argument("--endpoint", default="")
    p.add_argument("--key", default="")
    p.add_argument("--upstream", required=True)
    p.add_argument("--tag", required=True)
    args = p.parse_args()

    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    class Ended(SpanProcessor):
        """Keeps every ended span, to name the instrumentation's span in the output."""

        spans: list = []

        def on_end(self, span) -> None:
            self.spans.append(span)

    provider = TracerProvider(resource=Resource.create({"service.name": "otlp-ingest-app"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter(args.exporter, args.endpoint, args.key)))
    provider.add_span_processor(Ended())
    trace.set_tracer_provider(provider)
    instrument(args.instrumentation)

    import openai

    client = openai.OpenAI(base_url=args.upstream, api_key="sk-fake-upstream")
    tracer = trace.get_tracer("otlp-ingest-app")
    with tracer.start_as_current_span("handle-request") as parent:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"PROMPT-{args.tag}"},
            ],
            temperature=0.3,
            max_tokens=50,
        )
        ctx = parent.get_span_context()
    provider.shutdown()
    # The instrumentation's span of the call: the one child of the app's span.
    [call] = [s for s in Ended.spans if s.parent is not None and s.parent.span_id == ctx.span_id]
    print(json.dumps({
        "trace_id": f"{ctx.trace_id:032x}",
        "span_id": f"{call.context.span_id:016x}",
        "parent_span_id": f"{ctx.span_id:016x}",
    }))


if __name__ == "__main__":
    main()
