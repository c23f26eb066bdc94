"""The official openai Node SDK (openai 7.60.0) and OpenRouter's @openrouter/sdk (1.3.19) through
the gateway: `node/gateway_calls.mjs` makes the calls and reports what the SDKs returned; this
test checks that and the generations the webhook destination received.

Needs Node.js 20+ and `npm ci --prefix tests/gateway_sdk/node` (scripts/test.sh runs it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import EMBEDDINGS, Fake, Gateway, wait_until

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def results(gateway: Gateway, fake: Fake) -> dict:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node (Node.js 20+) is not installed")
    if not (NODE_DIR / "node_modules" / "openai").is_dir():
        pytest.fail(f"run: npm ci --prefix {NODE_DIR}")
    fake.endless_cancelled.clear()
    env = dict(os.environ, GATEWAY_URL=gateway.base_url, GATEWAY_KEY=gateway.key)
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENROUTER_API_KEY", None)
    p = subprocess.run(
        [node, str(NODE_DIR / "gateway_calls.mjs")], env=env, capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for name, r in out.items():
        assert "unexpected" not in r, f"{name}: {r['unexpected']}"
    return out


def test_openai_node_whole_answer(results: dict, fake: Fake, gateway: Gateway) -> None:
    r = results["openai_whole"]
    assert r["content"] == "Paris is the capital."
    assert r["prompt_tokens"] == 21
    assert r["request_id"] == "req_fake_ok"
    span = fake.span(r["gen_id"])
    assert span["user.id"] == "node-user"
    assert span["openrouter.api_key_hash"] == gateway.key_hash
    assert span["gen_ai.usage.input_tokens"] == 21


def test_openai_node_stream(results: dict, fake: Fake) -> None:
    r = results["openai_stream"]
    assert r["text"] == "Hello"
    assert r["empty_choices"] == 0, "the injected usage chunk reached the client"
    span = fake.span(r["gen_id"])
    assert span["openrouter.streamed"] is True
    assert span["gen_ai.usage.total_tokens"] == 14


def test_openai_node_streamed_tools(results: dict, fake: Fake) -> None:
    r = results["openai_tools"]
    assert r["name"] == "get_weather"
    assert json.loads(r["arguments"]) == {"city": "Paris"}
    assert r["finish_reason"] == "tool_calls"
    span = fake.span_where("the node tool call's span", lambda s: "Weather in Lyon (node)?" in s.get("gen_ai.prompt", ""))
    assert json.loads(span["gen_ai.completion"])["tool_calls"][0]["function"]["name"] == "get_weather"


def test_openai_node_errors(results: dict, fake: Fake) -> None:
    r = results["openai_error"]
    assert r["raised"] and r["is_rate_limit_error"], r
    assert r["status"] == 429 and r["code"] == "rate_limit_exceeded" and r["remaining"] == "0"
    assert fake.span(r["gen_id"])["_status"].get("code") == 2
    r = results["openai_own_error"]
    assert r["raised"] and r["is_authentication_error"] and r["status"] == 401, r
    assert r["code"] == "invalid_api_key"


def test_openai_node_abort_cancels_the_upstream(results: dict, fake: Fake) -> None:
    r = results["openai_abort"]
    assert r["first"] == "t0 "
    wait_until("the upstream to see the call cancelled", fake.endless_cancelled.is_set)
    assert fake.span(r["gen_id"])["openrouter.cancelled"] is True


def test_openai_node_embeddings(results: dict, fake: Fake) -> None:
    r = results["openai_embeddings"]
    assert r["embedding"] == EMBEDDINGS["data"][0]["embedding"]
    assert fake.span(r["gen_id"])["openrouter.api_type"] == "embeddings"


def test_openrouter_sdk(results: dict, fake: Fake) -> None:
    assert results["openrouter_whole"]["content"] == "Paris is the capital."
    span = fake.span_where("the OpenRouter SDK call's span", lambda s: "Capital of France (openrouter sdk)?" in s.get("gen_ai.prompt", ""))
    assert span["gen_ai.usage.input_tokens"] == 21
    assert results["openrouter_stream"]["text"] == "Hello"
    r = results["openrouter_error"]
    assert r["raised"] and r["status"] == 429, r
