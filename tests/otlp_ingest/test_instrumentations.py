"""Real instrumentation, real exporter: the ``openai`` SDK, instrumented by each OpenTelemetry
instrumentation, calls a fake upstream; the spans go to tracecast's ``POST /v1/traces`` with
the standard OTLP exporters (OTLP/HTTP protobuf, and OTLP/gRPC on the receiver's own port); a webhook destination must receive each call as a
generation with the right model, messages, tokens and ids.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import upstream
from conftest import attrs

HERE = Path(__file__).resolve().parent

# What each instrumentation reports of the fake upstream's usage.
CASES = {
    "openai-v2": {"cached": None, "reasoning": None},
    "openinference": {"cached": upstream.CACHED_TOKENS, "reasoning": upstream.REASONING_TOKENS},
    "openllmetry": {"cached": upstream.CACHED_TOKENS, "reasoning": upstream.REASONING_TOKENS},
}


def run_app(instrumentation: str, exporter: str, server, fake_upstream: str, tag: str) -> dict:
    r = subprocess.run(
        [
            sys.executable,
            str(HERE / "app.py"),
            "--instrumentation", instrumentation,
            "--exporter", exporter,
            "--endpoint", server.grpc_endpoint if exporter == "grpc" else server.base_url,
            "--key", server.workspace_key,
            "--upstream", fake_upstream,
            "--tag", tag,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    # The exporter logs a warning for a failed export; a clean run has none.
    assert "Failed to export" not in r.stderr, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("exporter", ["http-proto", "grpc"])
@pytest.mark.parametrize("instrumentation", sorted(CASES))
def test_instrumented_call_arrives_as_a_generation(
    instrumentation, exporter, server, webhook, fake_upstream
):
    tag = f"{instrumentation}-{exporter}"
    ids = run_app(instrumentation, exporter, server, fake_upstream, tag)

    def is_ours(span):
        a = attrs(span)
        return a.get("openrouter.observation.type") == "generation" and f"PROMPT-{tag}" in a.get(
            "gen_ai.prompt", ""
        )

    [span] = webhook.wait_for(f"the {instrumentation} call", is_ours)
    a = attrs(span)
    # The app's own trace, as the instrumentation's span (same id), under the app's span.
    assert span["traceId"] == ids["trace_id"]
    assert span["spanId"] == ids["span_id"]
    assert span["parentSpanId"] == ids["parent_span_id"]
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.response.model"] == upstream.RESPONSE_MODEL
    assert a["gen_ai.usage.input_tokens"] == upstream.PROMPT_TOKENS
    assert a["gen_ai.usage.output_tokens"] == upstream.COMPLETION_TOKENS
    expect = CASES[instrumentation]
    assert a.get("gen_ai.usage.cache_read.input_tokens") == expect["cached"]
    assert a.get("gen_ai.usage.reasoning.output_tokens") == expect["reasoning"]
    assert a["gen_ai.request.temperature"] == 0.3
    assert a["gen_ai.response.finish_reason"] == "stop"
    prompt = json.loads(a["gen_ai.prompt"])
    assert prompt["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"PROMPT-{tag}"},
    ]
    completion = json.loads(a["gen_ai.completion"])
    assert completion["completion"] == upstream.REPLY
    assert a["gen_ai.response.id"].startswith("otlp-" + ids["trace_id"] + "-")
    # The wrapping app span is not an LLM call: it was skipped, not delivered.
    assert not any(s["spanId"] == ids["parent_span_id"] for s in webhook.spans())
