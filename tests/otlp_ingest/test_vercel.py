"""The Vercel AI SDK (npm ``ai`` 5 with ``experimental_telemetry``, ``@ai-sdk/openai``) calls the
fake upstream; its spans go to ``/v1/traces`` with ``@opentelemetry/exporter-trace-otlp-proto``.
Only the provider-call span (``ai.generateText.doGenerate``) may become a generation, with the
right model, messages, tokens, ids, user and session.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import upstream
from conftest import attrs

APP = Path(__file__).resolve().parent / "vercel"


@pytest.fixture(scope="module")
def node_app() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the Vercel AI SDK test")
    if not (APP / "node_modules" / "ai").is_dir():
        r = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=APP, capture_output=True, text=True, timeout=600,
        )
        assert r.returncode == 0, r.stderr[-4000:]
    return APP / "app.mjs"


def test_vercel_ai_sdk_call_arrives_as_one_generation(node_app, server, webhook, fake_upstream):
    tag = "vercel-ai-sdk"
    r = subprocess.run(
        ["node", str(node_app), server.base_url, server.workspace_key, fake_upstream, tag],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    ids = json.loads(r.stdout.strip().splitlines()[-1])

    def is_ours(span):
        a = attrs(span)
        return a.get("openrouter.observation.type") == "generation" and f"PROMPT-{tag}" in a.get(
            "gen_ai.prompt", ""
        )

    [span] = webhook.wait_for("the Vercel AI SDK call", is_ours)
    a = attrs(span)
    assert span["traceId"] == ids["trace_id"]
    assert span["parentSpanId"] == ids["parent_span_id"], "under the SDK's ai.generateText span"
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.usage.input_tokens"] == upstream.PROMPT_TOKENS
    assert a["gen_ai.usage.output_tokens"] == upstream.COMPLETION_TOKENS
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.response.finish_reason"] == "stop"
    assert a["user.id"] == "vercel-user"
    assert a["session.id"] == "vercel-session"
    assert a["openrouter.trace.name"] == "vercel-check", "ai.telemetry.functionId"
    prompt = json.loads(a["gen_ai.prompt"])
    assert prompt["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"PROMPT-{tag}"},
    ]
    assert json.loads(a["gen_ai.completion"])["completion"] == upstream.REPLY
    # The wrapping ai.generateText span is not a second generation.
    ours = [s for s in webhook.spans() if s["traceId"] == ids["trace_id"]]
    assert len([s for s in ours if attrs(s).get("openrouter.observation.type") == "generation"]) == 1
