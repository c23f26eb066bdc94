"""Fixtures of the gateway SDK suite: the official ``openai`` Python SDK (``openai==2.54.0``)
calls a real ``tracecast serve`` process, which forwards to a fake OpenAI-compatible upstream
and delivers each captured generation to a webhook destination. Both the upstream and the
webhook receiver run in this process on 127.0.0.1:0.

The fake upstream follows the OpenAI API reference ("Create chat completion", "The chat
completion chunk object", "Error codes", rate-limit headers).

Environment:
    TRACECAST_BIN   path of the tracecast binary (default: <repo>/target/debug/tracecast)
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Dict, List, Optional

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT / "tests" / "harness"))
import tracecast_process  # noqa: E402  (tests/harness: the real binary as a subprocess)
UPSTREAM_KEY = "sk-upstream-" + secrets.token_hex(12)

os.environ.pop("OPENAI_API_KEY", None)
os.environ.pop("OPENAI_BASE_URL", None)


def wait_until(what: str, cond, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


COMPLETION = {
    "id": "chatcmpl-fake-1",
    "object": "chat.completion",
    "created": 1765000000,
    "model": "gpt-fake-2025-01-01",
    "system_fingerprint": "fp_fake",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "Paris is the capital.", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ],
    "usage": {
        "prompt_tokens": 21,
        "completion_tokens": 6,
        "total_tokens": 27,
        "prompt_tokens_details": {"cached_tokens": 8},
        "completion_tokens_details": {"reasoning_tokens": 2},
    },
}

EMBEDDINGS = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": [0.125, -0.5, 0.25]}],
    "model": "text-embedding-fake",
    "usage": {"prompt_tokens": 2, "total_tokens": 2},
}

MODELS = {
    "object": "list",
    "data": [
        {"id": "gpt-fake", "object": "model", "created": 1700000000, "owned_by": "fake"},
        {"id": "text-embedding-fake", "object": "model", "created": 1700000001, "owned_by": "fake"},
    ],
}

RATE_LIMITED = {
    "error": {
        "message": "Rate limit reached for requests",
        "type": "requests",
        "param": None,
        "code": "rate_limit_exceeded",
    }
}


def chunk(delta: Dict[str, Any], finish: Optional[str] = None, with_usage: bool = False) -> bytes:
    c: Dict[str, Any] = {
        "id": "chatcmpl-fake-2",
        "object": "chat.completion.chunk",
        "created": 1765000000,
        "model": "gpt-fake-2025-01-01",
        "system_fingerprint": "fp_fake",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if with_usage:
        c["usage"] = None
    return b"data: " + json.dumps(c).encode() + b"\n\n"


def usage_chunk() -> bytes:
    c = {
        "id": "chatcmpl-fake-2",
        "object": "chat.completion.chunk",
        "created": 1765000000,
        "model": "gpt-fake-2025-01-01",
        "system_fingerprint": "fp_fake",
        "choices": [],
        "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14},
    }
    return b"data: " + json.dumps(c).encode() + b"\n\n"


@dataclass
class Fake:
    """The fake upstream and the webhook receiver, and what they saw."""

    url: str = ""
    requests: List[Dict[str, Any]] = field(default_factory=list)
    spans: List[Dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    held_finished: threading.Event = field(default_factory=threading.Event)
    endless_cancelled: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def span(self, generation_id: str, timeout: float = 15.0) -> Dict[str, Any]:
        """The attributes of the generation span of ``generation_id``, once delivered."""
        return self.span_where(f"the span of {generation_id}", lambda s: s.get("gen_ai.response.id") == generation_id, timeout)

    def span_where(self, what: str, pred, timeout: float = 15.0) -> Dict[str, Any]:
        """The attributes of the first delivered span ``pred`` accepts, once there is one."""
        found: List[Dict[str, Any]] = []

        def has() -> bool:
            with self.lock:
                for s in self.spans:
                    if pred(s):
                        found.append(s)
                        return True
            return False

        wait_until(what, has, timeout)
        return found[0]


def _attr_value(v: Dict[str, Any]) -> Any:
    if "stringValue" in v:
        return v["stringValue"]
    if "intValue" in v:
        return int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    return v


def _handler(fake: Fake):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _json(self, status: int, body: Any, headers: Optional[Dict[str, str]] = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _sse(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("x-request-id", "req_fake_stream")
            self.end_headers()

        def _send(self, data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/v1/models":
                self._json(200, MODELS)
            else:
                self._json(404, {"error": {"message": "no such path", "type": "invalid_request_error", "param": None, "code": None}})

        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(n) or b"null")
            if self.path == "/hook":
                with fake.lock:
                    for rs in body.get("resourceSpans", []):
                        for ss in rs.get("scopeSpans", []):
                            for sp in ss.get("spans", []):
                                attrs = {a["key"]: _attr_value(a["value"]) for a in sp.get("attributes", [])}
                                attrs["_status"] = sp.get("status", {})
                                fake.spans.append(attrs)
                self._json(200, {})
                return
            with fake.lock:
                fake.requests.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
            if self.path == "/v1/embeddings":
                self._json(200, EMBEDDINGS)
                return
            model = body.get("model")
            stream = body.get("stream") is True
            usage = (body.get("stream_options") or {}).get("include_usage") is True
            if model == "rate-limited":
                self._json(
                    429,
                    RATE_LIMITED,
                    {
                        "x-request-id": "req_fake_429",
                        "retry-after": "7",
                        "x-ratelimit-limit-requests": "60",
                        "x-ratelimit-remaining-requests": "0",
                    },
                )
            elif model == "ok" and not stream:
                self._json(200, COMPLETION, {"x-request-id": "req_fake_ok", "x-ratelimit-remaining-tokens": "149984"})
            elif model == "ok":
                self._sse()
                self._send(chunk({"role": "assistant", "content": ""}, with_usage=usage))
                self._send(chunk({"content": "Hel"}, with_usage=usage))
                if body.get("x_hold"):
                    fake.release.wait(15)
                self._send(chunk({"content": "lo"}, with_usage=usage))
                self._send(chunk({}, "stop", with_usage=usage))
                if usage:
                    self._send(usage_chunk())
                self._send(b"data: [DONE]\n\n")
                if body.get("x_hold"):
                    fake.held_finished.set()
            elif model == "tools" and stream:
                self._sse()
                self._send(chunk({"role": "assistant", "content": None}, with_usage=usage))
                first = {"index": 0, "id": "call_abc", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
                self._send(chunk({"tool_calls": [first]}, with_usage=usage))
                for part in ['{"city":', '"Paris"}']:
                    self._send(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}, with_usage=usage))
                self._send(chunk({}, "tool_calls", with_usage=usage))
                if usage:
                    self._send(usage_chunk())
                self._send(b"data: [DONE]\n\n")
            elif model == "endless" and stream:
                self._sse()
                try:
                    for i in range(3000):
                        self._send(chunk({"content": f"t{i} "}, with_usage=usage))
                        time.sleep(0.01)
                except (BrokenPipeError, ConnectionResetError):
                    fake.endless_cancelled.set()
            else:
                self._json(404, {"error": {"message": f"The model `{model}` does not exist", "type": "invalid_request_error", "param": None, "code": "model_not_found"}})

    return Handler


@pytest.fixture(scope="session")
def fake() -> Fake:
    f = Fake()
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _handler(f))
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    f.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield f
    srv.shutdown()


@dataclass
class Gateway:
    base_url: str
    key: str
    key_hash: str
    mgmt_key: str


@pytest.fixture(scope="session")
def gateway(fake: Fake) -> Gateway:
    config_dir = tempfile.mkdtemp(prefix="tracecast-gateway-sdk-config-")
    config = Path(config_dir) / "tracecast.toml"
    config.write_text(
        "[delivery]\nlinger_ms = 20\n\n"
        "[[gateway.upstreams]]\n"
        'name = "fake"\n'
        f'base_url = "{fake.url}/v1"\n'
        f'api_key = "{UPSTREAM_KEY}"\n'
        'models = ["fake/*"]\n'
        'provider_name = "FakeAI"\n'
    )
    mgmt = "sk-tc-v1-" + secrets.token_hex(32)
    try:
        tc = tracecast_process.start(
            "tracecast-gateway-sdk-",
            args=["--config", str(config)],
            env={"TRACECAST_BOOTSTRAP_MANAGEMENT_KEY": mgmt},
        )
    except RuntimeError as e:
        shutil.rmtree(config_dir, ignore_errors=True)
        pytest.fail(str(e))
    base = tc.base_url
    api = base + "/api/v1"
    auth = {"Authorization": f"Bearer {mgmt}"}
    r = httpx.post(
        api + "/observability/destinations",
        headers=auth,
        json={
            "type": "webhook",
            "name": "hook",
            "config": {"url": fake.url + "/hook"},
            "broadcast_generation_identity": True,
            "broadcast_generation_request_context": True,
        },
    )
    assert r.status_code == 201, r.text
    r = httpx.post(api + "/keys", headers=auth, json={"name": "sdk-app"})
    assert r.status_code == 201, r.text
    gw = Gateway(base_url=api, key=r.json()["key"], key_hash=r.json()["data"]["hash"], mgmt_key=mgmt)
    yield gw
    tc.stop()
    shutil.rmtree(config_dir, ignore_errors=True)
