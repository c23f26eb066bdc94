"""Fixtures of the OTLP ingest suite: a real ``tracecast serve`` on a random port, a workspace
key, a fake OpenAI upstream and a webhook destination whose receiver (a Python HTTP server)
collects the OTLP/JSON tracecast delivers.

Environment:
    TRACECAST_BIN   path of the tracecast binary (default: <repo>/target/debug/tracecast)
"""

from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List

import httpx
import pytest

import upstream

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "harness"))
import tracecast_process  # noqa: E402  (tests/harness: the real binary as a subprocess)


@dataclass
class Server:
    base_url: str
    grpc_endpoint: str
    management_key: str
    workspace_key: str


@dataclass
class Webhook:
    """Collects every OTLP/JSON body delivered to it."""

    url: str = ""
    bodies: List[Dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def spans(self) -> List[Dict[str, Any]]:
        with self.lock:
            bodies = list(self.bodies)
        return [
            span
            for body in bodies
            for rs in body.get("resourceSpans", [])
            for ss in rs.get("scopeSpans", [])
            for span in ss.get("spans", [])
        ]

    def wait_for(self, what: str, cond: Callable[[Dict[str, Any]], bool], secs: float = 30.0):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            found = [s for s in self.spans() if cond(s)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; spans so far: {self.spans()!r:.3000}")


def attrs(span: Dict[str, Any]) -> Dict[str, Any]:
    """A span's OTLP/JSON attributes as a dict of plain values."""
    out = {}
    for kv in span.get("attributes", []):
        v = kv.get("value", {})
        if "stringValue" in v:
            out[kv["key"]] = v["stringValue"]
        elif "intValue" in v:
            out[kv["key"]] = int(v["intValue"])
        elif "doubleValue" in v:
            out[kv["key"]] = float(v["doubleValue"])
        elif "boolValue" in v:
            out[kv["key"]] = v["boolValue"]
        elif "arrayValue" in v:
            out[kv["key"]] = [
                next(iter(x.values())) for x in v["arrayValue"].get("values", [])
            ]
    return out


@pytest.fixture(scope="session")
def webhook() -> Webhook:
    hook = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            n = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(n)
            with hook.lock:
                hook.bodies.append(json.loads(body))
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    hook.url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    yield hook
    srv.shutdown()


@pytest.fixture(scope="session")
def fake_upstream() -> str:
    srv, url = upstream.start()
    yield url
    srv.shutdown()


@pytest.fixture(scope="session")
def server(webhook: Webhook) -> Server:
    mgmt = "sk-tc-v1-" + secrets.token_hex(32)
    try:
        tc = tracecast_process.start(
            "tracecast-otlp-ingest-",
            env={"TRACECAST_BOOTSTRAP_MANAGEMENT_KEY": mgmt, "TRACECAST_OTLP_GRPC_LISTEN": "127.0.0.1:0"},
            want_grpc=True,
        )
    except RuntimeError as e:
        pytest.fail(str(e))
    base, grpc = tc.base_url, f"http://{tc.grpc_addr}"
    auth = {"authorization": f"Bearer {mgmt}"}
    r = httpx.post(f"{base}/api/v1/keys", json={"name": "otlp-app"}, headers=auth)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    r = httpx.post(
        f"{base}/api/v1/observability/destinations",
        json={"type": "webhook", "name": "otlp-check", "config": {"url": webhook.url}},
        headers=auth,
    )
    assert r.status_code == 201, r.text
    yield Server(base_url=base, grpc_endpoint=grpc, management_key=mgmt, workspace_key=key)
    tc.stop()
