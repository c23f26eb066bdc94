#!/usr/bin/env python3
"""Capturing-gateway benchmark: tracecast's gateway vs LiteLLM proxy (litellm[proxy]==1.108.5),
both in front of the same fake upstream (fakellm) and both shipping one trace per call to a
countsink. Uses /work/shared/tools/proxy_bench.py (chatload -> proxy -> fakellm, traces ->
countsink) and prints one JSON line per scenario.

  bench/gateway.py [--only T-c1,L-c1] [--duration 20] [--litellm /path/to/litellm]

Scenarios: P0-c1 / P0-c32 (client straight to fakellm: the floor), T-* (tracecast), L-* (LiteLLM);
-c1 and -c32 are concurrency 1 and 32, -s1 is streaming at concurrency 1 (time to first byte).
Added latency = the proxy's p50/p99 minus P0's at the same concurrency.

tracecast: release build, embedded mode, `[gateway]` with fakellm as the default upstream, one
webhook destination (the countsink, counting OTLP spans). LiteLLM: the same upstream as
`openai/fake-gpt`, master key, its `otel` callback to the countsink (one `litellm_request` span
per call).
"""

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = "/work/shared/tools"
PROXY_BENCH = os.path.join(TOOLS, "proxy_bench.py")
TRACECAST = os.path.join(REPO, "target", "release", "tracecast")
SINK = "http://127.0.0.1:9102/v1/traces"
TC_PORT = 4100
LL_PORT = 4000


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def http(method, url, key, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    req.add_header("Authorization", f"Bearer {key}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def prepare_tracecast(work):
    """A data dir with a webhook destination to the countsink and a workspace key."""
    data = os.path.join(work, "tc-data")
    config = os.path.join(work, "tracecast.toml")
    with open(config, "w") as f:
        f.write(
            'log = "warn"\n'
            "[gateway]\n"
            "[[gateway.upstreams]]\n"
            'name = "fakellm"\n'
            'base_url = "http://127.0.0.1:9300/v1"\n'
            'api_key = "sk-fake-upstream"\n'
            "default = true\n"
        )
    mgmt = "sk-tc-v1-" + secrets.token_hex(32)
    env = dict(os.environ, TRACECAST_BOOTSTRAP_MANAGEMENT_KEY=mgmt)
    p = subprocess.Popen(
        [TRACECAST, "serve", "--config", config, "--data-dir", data, "--listen", f"127.0.0.1:{TC_PORT}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{TC_PORT}"
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/health", timeout=1)
                break
            except Exception:
                time.sleep(0.1)
        http("POST", base + "/api/v1/observability/destinations", mgmt,
             {"type": "webhook", "name": "sink", "config": {"url": SINK}})
        key = http("POST", base + "/api/v1/keys", mgmt, {"name": "bench"})["key"]
    finally:
        p.terminate()
        p.wait(timeout=30)
    return config, data, key


def prepare_litellm(work):
    config = os.path.join(work, "litellm.yaml")
    with open(config, "w") as f:
        f.write(
            "model_list:\n"
            "  - model_name: fake-gpt\n"
            "    litellm_params:\n"
            "      model: openai/fake-gpt\n"
            "      api_base: http://127.0.0.1:9300/v1\n"
            "      api_key: sk-fake-upstream\n"
            "litellm_settings:\n"
            "  callbacks: [\"otel\"]\n"
            "general_settings:\n"
            "  master_key: sk-bench-master\n"
        )
    return config


def run(name, args):
    cmd = [sys.executable, PROXY_BENCH, "--name", name] + args
    log("==>", " ".join(cmd))
    out = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else json.dumps({"name": name, "failed": out.returncode})
    print(line, flush=True)
    return json.loads(line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="")
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--litellm", default=shutil.which("litellm") or "/tmp/litellm-venv/bin/litellm")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    work = tempfile.mkdtemp(prefix="gateway-bench-")
    dur = ["--duration", str(a.duration)]
    tc_config, tc_data, tc_key = prepare_tracecast(work)
    tc = [
        "--url", f"http://127.0.0.1:{TC_PORT}/api/v1/chat/completions", "--auth", f"Bearer {tc_key}",
        "--sut-cmd", f"exec {TRACECAST} serve --config {tc_config} --data-dir {tc_data} --listen 127.0.0.1:{TC_PORT}",
        "--sut-ready-url", f"http://127.0.0.1:{TC_PORT}/health", "--sink-pattern", '"spanId"',
    ]
    ll_config = prepare_litellm(work)
    ll = [
        "--url", f"http://127.0.0.1:{LL_PORT}/v1/chat/completions", "--auth", "Bearer sk-bench-master",
        "--sut-cmd", f"exec {a.litellm} --config {ll_config} --host 127.0.0.1 --port {LL_PORT} --num_workers 1",
        "--sut-env", "OTEL_EXPORTER=otlp_http", "--sut-env", f"OTEL_ENDPOINT={SINK}",
        "--sut-ready-url", f"http://127.0.0.1:{LL_PORT}/health/liveliness", "--sink-pattern", "litellm_request",
    ]
    scenarios = [
        ("P0-c1", ["--no-sink", "--concurrency", "1"]),
        ("P0-c32", ["--no-sink", "--concurrency", "32"]),
        ("P0-s1", ["--no-sink", "--concurrency", "1", "--stream"]),
        ("T-c1", tc + ["--concurrency", "1"]),
        ("T-c32", tc + ["--concurrency", "32"]),
        ("T-s1", tc + ["--concurrency", "1", "--stream"]),
        ("L-c1", ll + ["--concurrency", "1"]),
        ("L-c32", ll + ["--concurrency", "32"]),
        ("L-s1", ll + ["--concurrency", "1", "--stream"]),
    ]
    for name, args in scenarios:
        if only and name not in only:
            continue
        run(name, args + dur)


if __name__ == "__main__":
    main()
