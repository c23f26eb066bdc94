#!/usr/bin/env python3
"""OTLP ingest benchmark: OTLP/HTTP protobuf against JSON ingest, same server, same run.

Starts tracecast (fresh data dir) and three span-counting receivers on loopback (two webhook
destinations and one otel-collector), then drives, one after the other against the same
server: (1) `POST /api/v1/generations` with NDJSON batches, (2) `POST /v1/traces` with OTLP
protobuf batches of the same calls (GenAI semantic-convention spans with the same messages,
usage and ids). For each phase: accepted/s (the client's rate of durably acknowledged records)
delivered/s (records delivered to each destination, from the phase's start to its last
delivery) and the server's CPU time per record over the phase (ingest and delivery; read from
/proc, so Linux only). The two phases alternate `--rounds` times (a shared box drifts). Prints one JSON
object per phase on stdout, then the means and the OTLP/JSON ratios.

    bench/otlp_ingest.py                       # release build (built if missing), 3 x 2 phases of 15 s
    bench/otlp_ingest.py --bin target/debug/tracecast --duration 10

Profiling (instruction counts, which other processes' load does not change): a fixed amount of
work per phase, one phase per run, the server under callgrind:

    bench/otlp_ingest.py --rounds 1 --only otlp --requests 10 --concurrency 1 \
        --wrap "valgrind --tool=callgrind --callgrind-out-file=/tmp/otlp.cg"

Needs the Python packages `opentelemetry-proto` (the OTLP message definitions).
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import http.client
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-tc-v1-bench-management-key-000000000000"
SYSTEM = "You are a helpful assistant that answers support questions in two short sentences."
QUESTION = "My export button does nothing when I click it on the reports page. " * 6
HISTORY = "Earlier answer about the reports page and its export settings. " * 6
REPLY = "Please reload the page and try again; if it persists, clear the cache. " * 4


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Sink:
    """Counts OTLP/JSON spans (`"spanId"`) delivered to it."""

    def __init__(self):
        self.count = 0
        self.last = 0.0
        self.lock = threading.Lock()
        sink = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n)
                with sink.lock:
                    sink.count += body.count(b'"spanId"')
                    sink.last = time.monotonic()
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.srv.server_address[1]}/v1/traces"
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()


def cpu_seconds(pid):
    """User + system CPU time of a process so far (Linux /proc), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return float("nan")


def api(base, method, path, body, key=KEY):
    req = urllib.request.Request(
        base + path, method=method, data=json.dumps(body).encode(),
        headers={"authorization": f"Bearer {key}", "content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def json_record(gid):
    return json.dumps({
        "id": gid, "model": "openai/gpt-4o-mini", "created_at": "2026-12-07T12:00:00.000Z",
        "latency": 850.0, "provider_name": "openai", "finish_reason": "stop",
        "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160},
        "request": {"messages": [
            {"role": "system", "content": SYSTEM}, {"role": "user", "content": HISTORY},
            {"role": "user", "content": QUESTION}], "temperature": 0.3},
        "response": {"choices": [{"index": 0, "finish_reason": "stop",
                                  "message": {"role": "assistant", "content": REPLY}}]},
    })


def kv(k, v):
    if isinstance(v, str):
        return KeyValue(key=k, value=AnyValue(string_value=v))
    if isinstance(v, float):
        return KeyValue(key=k, value=AnyValue(double_value=v))
    return KeyValue(key=k, value=AnyValue(int_value=v))


def otlp_span():
    def msg(role, text):
        return {"role": role, "parts": [{"type": "text", "content": text}]}
    return Span(
        name="chat gpt-4o-mini", kind=3,
        start_time_unix_nano=1_796_644_800_000_000_000, end_time_unix_nano=1_796_644_800_850_000_000,
        attributes=[
            kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", "openai"),
            kv("gen_ai.request.model", "openai/gpt-4o-mini"), kv("gen_ai.request.temperature", 0.3),
            kv("gen_ai.usage.input_tokens", 120), kv("gen_ai.usage.output_tokens", 40),
            kv("gen_ai.response.finish_reasons", "stop"),
            kv("gen_ai.system_instructions", json.dumps([{"type": "text", "content": SYSTEM}])),
            kv("gen_ai.input.messages", json.dumps([msg("user", HISTORY), msg("user", QUESTION)])),
            kv("gen_ai.output.messages", json.dumps([dict(msg("assistant", REPLY), finish_reason="stop")])),
        ],
    )


def drive(base, key, phase, round_no, duration, concurrency, batch, requests=None):
    """Sends batches from `concurrency` keep-alive clients for `duration` s (or `requests`
    batches each); returns the records accepted and the time taken."""
    host, port = base.removeprefix("http://").split(":")
    accepted = [0] * concurrency
    errors = []
    stop_at = time.monotonic() + duration
    template = otlp_span()

    def client(i):
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        n = 0
        while (n < requests) if requests else (time.monotonic() < stop_at):
            n += 1
            if phase == "json":
                body = "\n".join(json_record(f"b{round_no}-{i}-{n}-{j}") for j in range(batch)).encode()
                path, ctype = "/api/v1/generations", "application/x-ndjson"
            else:
                spans = []
                for j in range(batch):
                    s = Span()
                    s.CopyFrom(template)
                    s.trace_id = (i + 1).to_bytes(4, "big") + n.to_bytes(8, "big") + round_no.to_bytes(4, "big")
                    s.span_id = (j + 1).to_bytes(8, "big")
                    spans.append(s)
                req = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
                body = req.SerializeToString()
                path, ctype = "/v1/traces", "application/x-protobuf"
            conn.request("POST", path, body=body, headers={"authorization": f"Bearer {key}", "content-type": ctype})
            r = conn.getresponse()
            data = r.read()
            if r.status not in (200, 202):
                errors.append((r.status, data[:200]))
                return
            accepted[i] += batch

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit(f"{phase}: {errors[0]}")
    return sum(accepted), time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "tracecast"))
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--batch", type=int, default=200)
    ap.add_argument("--drain-timeout", type=float, default=300)
    ap.add_argument("--rounds", type=int, default=3,
                    help="alternate JSON and OTLP phases this many times (a shared box drifts)")
    ap.add_argument("--requests", type=int,
                    help="send this many batches per client and phase instead of --duration")
    ap.add_argument("--only", choices=["json", "otlp"], help="run only this phase")
    ap.add_argument("--wrap", default="",
                    help="a command the server runs under, e.g. valgrind --tool=callgrind ...")
    args = ap.parse_args()
    if not os.path.exists(args.bin):
        log("building tracecast (release)")
        subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "tracecast-server"], cwd=ROOT, check=True)

    sinks = [Sink(), Sink(), Sink()]
    data = tempfile.mkdtemp(prefix="tracecast-otlp-bench-")
    env = dict(os.environ, TRACECAST_BOOTSTRAP_MANAGEMENT_KEY=KEY, TRACECAST_LOG="warn")
    proc = subprocess.Popen([*args.wrap.split(), args.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", data],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = None
    for line in proc.stderr:
        m = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if m:
            base = m.group(1)
            break
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    try:
        for i, s in enumerate(sinks[:2]):
            api(base, "POST", "/api/v1/observability/destinations",
                {"type": "webhook", "name": f"hook-{i}", "config": {"url": s.url}})
        api(base, "POST", "/api/v1/observability/destinations",
            {"type": "otel-collector", "name": "collector", "config": {"endpoint": sinks[2].url}})
        key = api(base, "POST", "/api/v1/keys", {"name": "bench"})["key"]
        results = {"json": [], "otlp": []}
        delivered_before = 0
        phases = [args.only] if args.only else ["json", "otlp"]
        for round_no, phase in enumerate(phases * args.rounds):
            t0 = time.monotonic()
            cpu0 = cpu_seconds(proc.pid)
            n, elapsed = drive(base, key, phase, round_no, args.duration, args.concurrency, args.batch,
                               args.requests)
            target = delivered_before + n
            deadline = time.monotonic() + args.drain_timeout
            while min(s.count for s in sinks) < target and time.monotonic() < deadline:
                time.sleep(0.1)
            delivered = [s.count - delivered_before for s in sinks]
            cpu = cpu_seconds(proc.pid) - cpu0
            per_dest = [round(d / max(1e-9, s.last - t0)) for d, s in zip(delivered, sinks)]
            r = {
                "phase": phase, "records": n, "accepted_per_s": round(n / elapsed),
                "delivered_per_s": per_dest, "all_delivered": all(d >= n for d in delivered),
                # The server's CPU time (ingest, log, delivery to the three) per record: what the
                # rates cost, less sensitive to other load on the machine than the rates.
                "server_cpu_us_per_record": round(cpu * 1e6 / max(1, n), 1),
            }
            results[phase].append(r)
            print(json.dumps(r), flush=True)
            delivered_before = target

        def mean(phase, f):
            return sum(f(r) for r in results[phase]) / len(results[phase])

        if args.only:
            return
        acc = {p: mean(p, lambda r: r["accepted_per_s"]) for p in results}
        dlv = {p: mean(p, lambda r: min(r["delivered_per_s"])) for p in results}
        cpu = {p: mean(p, lambda r: r["server_cpu_us_per_record"]) for p in results}
        print(json.dumps({
            "json_server_cpu_us_per_record": round(cpu["json"], 1),
            "otlp_server_cpu_us_per_record": round(cpu["otlp"], 1),
            "json_accepted_per_s": round(acc["json"]), "otlp_accepted_per_s": round(acc["otlp"]),
            "otlp_over_json_accepted": round(acc["otlp"] / acc["json"], 2),
            "otlp_over_json_delivered": round(dlv["otlp"] / dlv["json"], 2),
        }), flush=True)
    finally:
        proc.terminate()
        proc.wait(120)


if __name__ == "__main__":
    main()
