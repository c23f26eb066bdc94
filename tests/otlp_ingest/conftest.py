"""Fixtures of the OTLP ingest suite: a real ``tracecast serve`` on a random port, a workspace
key, a fake OpenAI upstream and a webhook destination whose receiver (a Python HTTP server)
collects the OTLP/JSON tracecast delivers.

Environment:
    TRACECAST_BIN   path of the tracecast binary (default: <repo>/target/debug/tracecast)
"""

from __future__ import annotations

import json
import os
import queue
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest

import upstream

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO_ROOT / "target" / "debug" / "tracecast"
LISTEN_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
GRPC_RE = re.compile(r"OTLP/gRPC on (127\.0\.0\.1:\d+)")


@dataclass
class Server:
    base_url: str
    grpc_endpoint: str
    management_key: str
    workspace_key: str


def _drain(stream, q: "queue.Queue[Optional[str]]") -> None:
    for line in stream:
        q.put(line)
    q.put(None)


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
    binary = os.environ.get("TRACECAST_BIN", str(DEFAULT_BIN))
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        pytest.fail(f"tracecast binary not found or not executable: {binary} (set TRACECAST_BIN)")
    data_dir = tempfile.mkdtemp(prefix="tracecast-otlp-ingest-")
    mgmt = "sk-tc-v1-" + secrets.token_hex(32)
    env = dict(
        os.environ,
        TRACECAST_BOOTSTRAP_MANAGEMENT_KEY=mgmt,
        TRACECAST_OTLP_GRPC_LISTEN="127.0.0.1:0",
    )
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    q: "queue.Queue[Optional[str]]" = queue.Queue()
    threading.Thread(target=_drain, args=(proc.stderr, q), daemon=True).start()
    base = grpc = None
    deadline = time.monotonic() + 30
    while (base is None or grpc is None) and time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        m = LISTEN_RE.search(line)
        if m:
            base = m.group(1)
        m = GRPC_RE.search(line)
        if m:
            grpc = f"http://{m.group(1)}"
    if base is None or grpc is None:
        proc.kill()
        proc.wait(timeout=10)
        shutil.rmtree(data_dir, ignore_errors=True)
        pytest.fail("tracecast did not start")
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
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    shutil.rmtree(data_dir, ignore_errors=True)
