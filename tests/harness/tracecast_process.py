"""The real tracecast binary as a subprocess, for the Python suites (tests/sdk,
tests/gateway_sdk, tests/otlp_ingest): one way to find the binary, start it on 127.0.0.1:0
with a fresh data directory, wait (with a deadline) for the addresses it prints, keep its
stderr for failure messages, and stop it.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[2]
LISTEN_RE = re.compile(r"listening on (http://127\.0\.0\.1:\d+)")
GRPC_RE = re.compile(r"OTLP/gRPC on (127\.0\.0\.1:\d+)")


def binary() -> str:
    """`TRACECAST_BIN`, else the debug build; raises if it cannot be run."""
    path = os.environ.get("TRACECAST_BIN", str(REPO / "target" / "debug" / "tracecast"))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(f"tracecast binary not found or not executable: {path} (set TRACECAST_BIN)")
    return path


@dataclass
class Tracecast:
    proc: subprocess.Popen
    data_dir: str
    base_url: str
    grpc_addr: Optional[str]
    lines: List[str] = field(default_factory=list)
    _reader: Optional[threading.Thread] = None

    def log_tail(self, n: int = 60) -> str:
        return "".join(self.lines[-n:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def _drain(stream, q: "queue.Queue[Optional[str]]", sink: List[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        q.put(line)
    q.put(None)


def start(
    prefix: str,
    args: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
    want_grpc: bool = False,
    deadline_s: float = 30.0,
) -> Tracecast:
    """`tracecast serve --listen 127.0.0.1:0 --data-dir <fresh dir> <args>` with `env` added to
    this process's environment. Waits until it prints its HTTP address (and its OTLP/gRPC
    address when `want_grpc`); raises with the tail of its stderr if it does not in time."""
    data_dir = tempfile.mkdtemp(prefix=prefix)
    proc = subprocess.Popen(
        [binary(), "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir, *args],
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )
    lines: List[str] = []
    q: "queue.Queue[Optional[str]]" = queue.Queue()
    reader = threading.Thread(target=_drain, args=(proc.stderr, q, lines), daemon=True)
    reader.start()
    base = grpc = None
    end = time.monotonic() + deadline_s
    while base is None or (want_grpc and grpc is None):
        remaining = end - time.monotonic()
        if remaining <= 0:
            break
        try:
            line = q.get(timeout=remaining)
        except queue.Empty:
            break
        if line is None:  # stderr closed: the process exited
            break
        if m := LISTEN_RE.search(line):
            base = m.group(1)
        if m := GRPC_RE.search(line):
            grpc = m.group(1)
    t = Tracecast(proc=proc, data_dir=data_dir, base_url=base or "", grpc_addr=grpc, lines=lines, _reader=reader)
    if base is None or (want_grpc and grpc is None):
        t.stop()
        raise RuntimeError(
            f"tracecast did not report its address(es) within {deadline_s:.0f}s "
            f"(exit code {proc.returncode}). stderr:\n{t.log_tail()}"
        )
    return t
