"""Fixtures for the tracecast SDK integration suite.

A real ``tracecast serve`` process is started once per session on a random port with a
throw-away data directory. Tests drive it through the official OpenRouter Python SDK
(``openrouter==1.3.84``) and, where the SDK has no method, through plain ``httpx``.

Every HTTP exchange (SDK or raw) goes through one recording ``httpx.Client`` so tests can
inspect the exact JSON the server sent and so an autouse fixture can check that no clear
secret ever appears in any response body.

Environment:
    TRACECAST_BIN   path of the tracecast binary (default: <repo>/target/debug/tracecast)
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import httpx
import pytest

from openrouter import OpenRouter
from openrouter.utils import RetryConfig

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_DEADLINE_S = 30.0
sys.path.insert(0, str(REPO_ROOT / "tests" / "harness"))
import tracecast_process  # noqa: E402  (tests/harness: the real binary as a subprocess)

# The SDK falls back to OPENROUTER_API_KEY when a client has no key; make sure an
# ambient key can never turn an "unauthenticated" test into an authenticated one.
os.environ.pop("OPENROUTER_API_KEY", None)


# --------------------------------------------------------------------------------------
# Secrets registry: every clear secret a test sends is registered here, and no response
# body may ever contain one.
# --------------------------------------------------------------------------------------

_SECRETS: set = set()


def new_secret(label: str) -> str:
    """A distinctive clear secret (>= 12 chars) that is registered for leak checks."""
    s = f"{label}-{secrets.token_hex(12)}"
    assert len(s) >= 12
    _SECRETS.add(s)
    return s


def register_secret(s: str) -> str:
    _SECRETS.add(s)
    return s


def mask(s: str) -> str:
    """The server's documented mask format."""
    return s[:4] + "..." + s[-4:] if len(s) >= 12 else "********"


# --------------------------------------------------------------------------------------
# Traffic recorder
# --------------------------------------------------------------------------------------


@dataclass
class Exchange:
    method: str
    url: str
    request_body: bytes
    status: int
    response_text: str

    def json(self) -> Any:
        return json.loads(self.response_text)

    def request_json(self) -> Any:
        return json.loads(self.request_body) if self.request_body else None


@dataclass
class Traffic:
    exchanges: List[Exchange] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _on_response(self, response: httpx.Response) -> None:
        response.read()
        req = response.request
        try:
            body = req.content
        except httpx.RequestNotRead:  # streaming request body; not used by these tests
            body = b""
        with self.lock:
            self.exchanges.append(
                Exchange(req.method, str(req.url), body, response.status_code, response.text)
            )

    def last(self) -> Exchange:
        assert self.exchanges, "no HTTP exchange recorded"
        return self.exchanges[-1]

    def last_json(self) -> Any:
        return self.last().json()

    def mark(self) -> int:
        return len(self.exchanges)

    def since(self, mark: int) -> List[Exchange]:
        return self.exchanges[mark:]


# --------------------------------------------------------------------------------------
# Server process
# --------------------------------------------------------------------------------------


@dataclass
class Server:
    bin: str
    data_dir: str
    base_url: str
    api_base: str
    bootstrap_key: str
    proc: subprocess.Popen
    stderr_lines: List[str]

    def log_tail(self, n: int = 60) -> str:
        return "".join(self.stderr_lines[-n:])


@pytest.fixture(scope="session")
def server() -> Server:
    bootstrap_key = "sk-tc-v1-" + secrets.token_hex(32)
    register_secret(bootstrap_key)
    try:
        tc = tracecast_process.start(
            "tracecast-sdk-",
            env={"TRACECAST_BOOTSTRAP_MANAGEMENT_KEY": bootstrap_key},
            deadline_s=STARTUP_DEADLINE_S,
        )
    except RuntimeError as e:
        pytest.fail(str(e))
    yield Server(
        bin=tracecast_process.binary(),
        data_dir=tc.data_dir,
        base_url=tc.base_url,
        api_base=tc.base_url + "/api/v1",
        bootstrap_key=bootstrap_key,
        proc=tc.proc,
        stderr_lines=tc.lines,
    )
    tc.stop()


# --------------------------------------------------------------------------------------
# HTTP clients
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def traffic() -> Traffic:
    return Traffic()


@pytest.fixture(scope="session")
def http_client(traffic: Traffic) -> httpx.Client:
    c = httpx.Client(
        follow_redirects=True,
        timeout=30.0,
        event_hooks={"response": [traffic._on_response]},
    )
    yield c
    c.close()


@pytest.fixture(scope="session")
def make_client(server: Server, http_client: httpx.Client) -> Callable[[Optional[str]], OpenRouter]:
    """Builds an SDK client for ``api_key`` with retries OFF and traffic recording ON."""

    def _make(api_key: Optional[str]) -> OpenRouter:
        return OpenRouter(
            api_key=api_key,
            server_url=server.api_base,
            client=http_client,
            retry_config=RetryConfig("none", None, False),
            timeout_ms=30_000,
        )

    return _make


@pytest.fixture(scope="session")
def client(server: Server, make_client) -> OpenRouter:
    """SDK client authenticated with tenant A's bootstrap management key."""
    return make_client(server.bootstrap_key)


class Api:
    """Raw JSON calls for endpoints the SDK does not cover (keys, workspaces) and for
    requests the SDK cannot express (no Authorization header, ...)."""

    def __init__(self, server: Server, http: httpx.Client):
        self.server = server
        self.http = http

    def request(
        self,
        method: str,
        path: str,
        key: Optional[str] = None,
        json_body: Any = None,
        params: Optional[Dict[str, Any]] = None,
        use_key: bool = True,
    ) -> httpx.Response:
        headers = {"Accept": "application/json"}
        if use_key:
            headers["Authorization"] = f"Bearer {key or self.server.bootstrap_key}"
        kwargs: Dict[str, Any] = {"headers": headers, "params": params}
        if json_body is not None:
            kwargs["json"] = json_body
        return self.http.request(method, self.server.api_base + path, **kwargs)

    def create_key(self, key: Optional[str] = None, name: str = "app") -> Dict[str, Any]:
        r = self.request("POST", "/keys", key=key, json_body={"name": name})
        assert r.status_code == 201, f"POST /keys -> {r.status_code}: {r.text}"
        body = r.json()
        assert re.fullmatch(r"[0-9a-f]{64}", body["data"]["hash"]), body
        assert body["key"].startswith("sk-tc-v1-"), "unexpected key format"
        # The clear key is legitimately returned once here, so it is not registered as a
        # leak-checked secret.
        return body

    def create_workspace(self, key: Optional[str] = None, name: Optional[str] = None) -> str:
        suffix = secrets.token_hex(4)
        slug = f"ws-{suffix}"
        r = self.request(
            "POST",
            "/workspaces",
            key=key,
            json_body={"name": name or f"Workspace {suffix}", "slug": slug},
        )
        assert r.status_code == 201, f"POST /workspaces -> {r.status_code}: {r.text}"
        ws_id = r.json()["data"]["id"]
        uuid.UUID(ws_id)
        return ws_id


@pytest.fixture(scope="session")
def api(server: Server, http_client: httpx.Client) -> Api:
    return Api(server, http_client)


@pytest.fixture()
def workspace(api: Api) -> str:
    """A fresh, empty workspace of tenant A (isolates per-type limits and list counts)."""
    return api.create_workspace()


@pytest.fixture(scope="session")
def other_tenant_key(server: Server) -> str:
    """Management key of a second tenant, created through the CLI while the server runs."""
    r = subprocess.run(
        [server.bin, "tenants", "create", "--name", "other", "--data-dir", server.data_dir],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"tenants create failed ({r.returncode}): {r.stderr}"
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert len(lines) == 1, f"expected exactly one stdout line (the key), got {len(lines)} lines"
    key = lines[0].strip()
    assert key.startswith("sk-tc-v1-"), "tenants create did not print a tracecast key"
    register_secret(key)
    return key


@pytest.fixture(scope="session")
def other_client(make_client, other_tenant_key: str) -> OpenRouter:
    return make_client(other_tenant_key)


@pytest.fixture(scope="session")
def default_workspace_id(client: OpenRouter) -> str:
    """Tenant A's default workspace id, learnt from a destination created without
    ``workspace_id``."""
    res = client.observability.create(
        name="probe-default-ws",
        type_="webhook",
        config={"url": "https://hooks.example.com/probe"},
    )
    ws = res.data.workspace_id
    client.observability.delete(id=res.data.id)
    uuid.UUID(ws)
    return ws


@pytest.fixture()
def cleanup(client: OpenRouter):
    """Collects destination ids created in the default workspace; deletes them afterwards
    so the per-type limit of the default workspace is never exhausted across tests."""
    ids: List[str] = []
    yield ids
    for i in ids:
        try:
            client.observability.delete(id=i)
        except Exception:
            pass


@pytest.fixture(autouse=True)
def no_secret_leaks(request, traffic: Traffic):
    """After each test: no response body recorded during the test contains a clear secret."""
    start = traffic.mark()
    yield
    leaks = []
    for ex in traffic.since(start):
        for s in list(_SECRETS):
            if s in ex.response_text:
                leaks.append(f"{ex.method} {ex.url} -> {ex.status} contains clear secret {s[:6]}...")
    assert not leaks, "clear secrets leaked in responses:\n" + "\n".join(leaks)
