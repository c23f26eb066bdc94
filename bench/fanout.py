#!/usr/bin/env python3
"""tracecast fan-out benchmark (B1, B2, B3).

Starts tracecast (release build, embedded mode, fresh data dir) and three countsink receivers on
loopback, creates two webhook destinations and one otel-collector destination, drives loadgen
(~2.4 KB generations, NDJSON batches) at it, and reports per destination: accepted/s,
delivered/s during the load, p50/p99 ingest-to-delivered latency, peak RSS of tracecast, and
(B2) the drain rate after recovery. A baseline run drives the same clients at a no-op
countsink in the same invocation.

    bench/fanout.py                      # B0 baseline, B1, B2 with defaults (60 s each)
    bench/fanout.py --duration 30 --only B1
    bench/fanout.py --duration 20 --only B1 --cluster 2   # distributed mode, 2 nodes
    bench/fanout.py --duration 20 --only B1 --no-build \
        --baseline-bin /work/wt/bin/tracecast-1f1175e --rounds 3  # A/B, interleaved rounds

With --baseline-bin, each scenario runs `--rounds` times with each binary, alternating (ABBA
order: base, current, current, base, ...), so that the load of a shared box falls on both
alike; a summary line per scenario gives the medians and the ratio current / baseline.
    bench/fanout.py --only B3            # sink 3 down 600 s at 5,000/s, then back
    bench/fanout.py --only B3 --outage 60 --rate 2000     # a shorter outage

B3 (a long outage, default settings): the same three destinations; the third answers 503 for
--outage seconds while the clients send --rate records/s (500-record batches, paced once a
second); then it answers again while the load goes on, until it has caught up with everything
accepted before its recovery. Reported: what the outage budget kept and dropped (0 is the
target), the drain rate against the ingest rate (target >= 3x), and whether the healthy
destinations kept up during the outage (delivered counts and latency).

With --cluster N, tracecast runs as N nodes on a fresh PostgreSQL database (TRACECAST_BENCH_PG,
default postgres://postgres@127.0.0.1:5432) and a fresh prefix on NATS JetStream
(TRACECAST_BENCH_NATS, default nats://127.0.0.1:4222); the clients are split evenly over the
nodes (the same total concurrency), and CPU and RSS are summed over the nodes. The NATS
server's CPU is reported separately.

Needs ../shared/tools (loadgen, countsink); builds them and tracecast if missing.
Prints one JSON object per scenario on stdout; progress on stderr.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.normpath(os.path.join(ROOT, "..", "shared", "tools"))
LOADGEN = "/tmp/loadgen-target/release/loadgen"
COUNTSINK = "/tmp/countsink-target/release/countsink"
TRACECAST = os.path.join(ROOT, "target", "release", "tracecast")
KEY = "sk-tc-v1-bench-management-key-000000000000"
SINK_PORTS = [9101, 9102, 9103]
TC_PORT = 9000
# One OTLP span per generation; loadgen's send time travels as trace.metadata.sent_us.
PATTERN = '"spanId"'
LATENCY_KEY = '"trace.metadata.sent_us","value":{"intValue":"'


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def build():
    for tool, binary in (("loadgen", LOADGEN), ("countsink", COUNTSINK)):
        if not os.path.exists(binary):
            log(f"building {tool}")
            subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=os.path.join(TOOLS, tool), check=True)
    log("building tracecast (release)")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "tracecast-server"], cwd=ROOT, check=True)


def http(method, url, body=None, key=KEY, timeout=10):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read() or b"null")


def wait_http(url, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except Exception:
            time.sleep(0.05)
    raise SystemExit(f"{url} never answered")


def proc_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def cpu_s(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


class Sinks:
    def __init__(self, fail=None, fail_secs=0):
        self.procs = []
        for i, port in enumerate(SINK_PORTS):
            cmd = [COUNTSINK, "--port", str(port), "--pattern", PATTERN, "--latency-key", LATENCY_KEY]
            if fail is not None and i == fail and fail_secs:
                cmd += ["--fail-secs", str(fail_secs)]
            self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in SINK_PORTS:
            wait_http(f"http://127.0.0.1:{port}/stats")

    def stats(self, i):
        with urllib.request.urlopen(f"http://127.0.0.1:{SINK_PORTS[i]}/stats", timeout=5) as r:
            return json.loads(r.read())

    def fail(self, i, secs):
        urllib.request.urlopen(f"http://127.0.0.1:{SINK_PORTS[i]}/fail?secs={secs}", timeout=5).read()

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()


class Tracecast:
    """tracecast in embedded mode (cluster=0), or as `cluster` nodes on PostgreSQL + NATS."""

    def __init__(self, cluster=0, extra_env=None, binary=None, compression=None):
        binary = binary or TRACECAST
        self.dir = tempfile.mkdtemp(prefix="tracecast-bench-")
        env = dict(os.environ, TRACECAST_BOOTSTRAP_MANAGEMENT_KEY=KEY, TRACECAST_LOG="warn")
        self.db = None
        if cluster:
            tag = f"{os.getpid()}_{int(time.time())}"
            pg = os.environ.get("TRACECAST_BENCH_PG", "postgres://postgres@127.0.0.1:5432")
            self.pg, self.db = pg, f"tcbench_{tag}"
            subprocess.run(["psql", f"{pg}/postgres", "-qc", f"CREATE DATABASE {self.db}"], check=True)
            keys = subprocess.run([binary, "encryption", "generate-key"], capture_output=True, text=True, check=True).stdout.strip()
            env.update(TRACECAST_DATABASE_URL=f"{pg}/{self.db}",
                       TRACECAST_QUEUE_URL=os.environ.get("TRACECAST_BENCH_NATS", "nats://127.0.0.1:4222"),
                       TRACECAST_QUEUE_PREFIX=f"bench{tag}", TRACECAST_ENCRYPTION_KEYS=keys)
        env.update(extra_env or {})
        self.ports = [TC_PORT + i for i in range(max(cluster, 1))]
        self.procs, self.logs = [], []
        for i, port in enumerate(self.ports):
            log_f = open(os.path.join(self.dir, f"tracecast-{i}.log"), "wb")
            cmd = [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(self.dir, f"data-{i}")]
            if cluster:
                cmd += ["--node-id", f"bench-{i}"]
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log_f, stderr=log_f))
            self.logs.append(log_f)
            wait_http(f"http://127.0.0.1:{port}/health")
        self.proc = self.procs[0]
        base = f"http://127.0.0.1:{TC_PORT}/api/v1/observability/destinations"
        self.destinations = []
        for i, (ty, cfg) in enumerate([
            ("webhook", {"url": f"http://127.0.0.1:{SINK_PORTS[0]}/hook"}),
            ("webhook", {"url": f"http://127.0.0.1:{SINK_PORTS[1]}/hook"}),
            ("otel-collector", {"endpoint": f"http://127.0.0.1:{SINK_PORTS[2]}/v1/traces"}),
        ]):
            if compression:
                cfg["compression"] = compression
            d = http("POST", base, {"type": ty, "name": f"bench-{i}", "config": cfg})
            self.destinations.append(d["data"]["id"])

    def status(self, i):
        return http("GET", f"http://127.0.0.1:{TC_PORT}/api/v1/observability/destinations/{self.destinations[i]}/status")["data"]

    def pids(self):
        return [p.pid for p in self.procs]

    def stop(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in self.logs:
            f.close()
        if self.db:
            subprocess.run(["psql", f"{self.pg}/postgres", "-qc", f"DROP DATABASE IF EXISTS {self.db}"])
        shutil.rmtree(self.dir, ignore_errors=True)


def loadgen(url, duration, concurrency, batch, auth=f"Bearer {KEY}"):
    out = subprocess.run(
        [LOADGEN, "--url", url, "--concurrency", str(concurrency), "--batch", str(batch),
         "--duration", str(duration), "--auth", auth, "--progress", "0"],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def paced_load(url, rate, batch, stop, out, auth=f"Bearer {KEY}"):
    """Sends `rate` records/s in `batch`-record requests until `stop` is set: each second one
    loadgen run of rate/batch requests (2 clients), started on a fixed schedule (a run that
    overruns its second delays the next one; the actual rate is reported)."""
    per_run = max(1, round(rate / batch))
    next_at = time.time()
    while not stop.is_set():
        r = subprocess.run(
            [LOADGEN, "--url", url, "--concurrency", "2", "--batch", str(batch), "--batches", str(per_run),
             "--auth", auth, "--progress", "0"], capture_output=True, text=True, check=True)
        res = json.loads(r.stdout.strip().splitlines()[-1])
        out["accepted"] += res.get("records_ok", 0)
        for k, v in res.get("status", {}).items():
            out["status"][k] = out["status"].get(k, 0) + v
        next_at += per_run * batch / rate
        stop.wait(max(0.0, next_at - time.time()))


def outage(args, binary=None):
    """B3: sink 3 down for args.outage seconds at args.rate records/s, then back."""
    fail = 2
    sinks = Sinks(fail=fail, fail_secs=int(args.outage + 3600))
    tc = Tracecast(cluster=args.cluster, binary=binary, compression=args.compression)
    url = f"http://127.0.0.1:{tc.ports[0]}/api/v1/generations?workspace_id=default"
    try:
        rss, stop_rss = [], threading.Event()
        t_rss = threading.Thread(target=sample_rss, args=(tc.proc.pid, stop_rss, rss))
        t_rss.start()
        load = {"accepted": 0, "status": {}}
        stop_load = threading.Event()
        t_load = threading.Thread(target=paced_load, args=(url, args.rate, args.batch, stop_load, load))
        cpu0 = total(cpu_s, tc.pids())
        t0 = time.time()
        t_load.start()
        samples = []
        worst = {"bytes": 0, "budget_used": 0.0, "secs_until_drop_min": None}
        while time.time() - t0 < args.outage:
            time.sleep(min(10, max(0.0, args.outage - (time.time() - t0))))
            st = tc.status(fail)
            q = st["queue"]
            samples.append({"t_s": round(time.time() - t0), "accepted": load["accepted"], "depth": q["depth"],
                            "bytes": q["bytes"], "budget_bytes": q.get("budget_bytes"),
                            "budget_used": q.get("budget_used"), "secs_until_drop": q.get("secs_until_drop"),
                            "dropped": st["counts"]["dropped"]})
            worst["bytes"] = max(worst["bytes"], q["bytes"])
            worst["budget_used"] = max(worst["budget_used"], q.get("budget_used") or 0.0)
            sud = q.get("secs_until_drop")
            if sud is not None and (worst["secs_until_drop_min"] is None or sud < worst["secs_until_drop_min"]):
                worst["secs_until_drop_min"] = round(sud)
            log(f"  t={samples[-1]['t_s']}s accepted={load['accepted']} backlog={q['depth']} "
                f"({q['bytes'] / 1e9:.2f} GB of {((q.get('budget_bytes') or 0) / 1e9):.1f} GB) dropped={st['counts']['dropped']}")
        outage_s = time.time() - t0
        accepted_at_recovery = load["accepted"]
        cpu_outage = (total(cpu_s, tc.pids()) - cpu0) / outage_s
        rss_outage = round(total(lambda p: proc_kb(p, "VmHWM"), tc.pids()) / 1024, 1)
        healthy = [sinks.stats(i) for i in range(3) if i != fail]
        status_at_recovery = tc.status(fail)
        # Recovery, with the load going on: time until the failing sink has everything accepted
        # up to the recovery (less what the budget dropped).
        sinks.fail(fail, 0)
        r0 = time.time()
        dropped = status_at_recovery["counts"]["dropped"]
        target = accepted_at_recovery - dropped
        first_at = done_at = None
        start_events = sinks.stats(fail)["events"]
        drained = 0
        drain_timeout = max(args.drain_timeout, args.outage)
        while time.time() - r0 < drain_timeout:
            got = sinks.stats(fail)["events"]
            drained = got - start_events
            if first_at is None and got > start_events:
                first_at = time.time()
            if got >= target:
                done_at = time.time()
                break
            time.sleep(0.1)
        ingest_during_drain = load["accepted"] - accepted_at_recovery
        stop_load.set()
        t_load.join()
        end = done_at or time.time()
        draining = end - (first_at or r0)
        elapsed = time.time() - t0
        # Everything accepted reaches the healthy sinks, and the rest reaches the recovered one.
        deadline = time.time() + drain_timeout
        while time.time() < deadline and any(sinks.stats(i)["events"] < load["accepted"] - (dropped if i == fail else 0) for i in range(3)):
            time.sleep(0.2)
        stop_rss.set()
        t_rss.join()
        final = tc.status(fail)
        ingest_rate = accepted_at_recovery / outage_s
        return {
            "scenario": f"B3 (sink 3 down {args.outage:.0f} s at {args.rate}/s)" + (f" cluster x{args.cluster}" if args.cluster else ""),
            "outage_s": round(outage_s, 1),
            "accepted_during_outage": accepted_at_recovery,
            "ingest_per_s": round(ingest_rate),
            "ingest_status": load["status"],
            "tracecast_cpu_cores_during_outage": round(cpu_outage, 2),
            "tracecast_peak_rss_mib_outage": rss_outage,
            "tracecast_peak_rss_mib": round(total(lambda p: proc_kb(p, "VmHWM"), tc.pids()) / 1024, 1),
            "failing_backlog_at_recovery": {"records": status_at_recovery["queue"]["depth"],
                                            "bytes": status_at_recovery["queue"]["bytes"],
                                            "budget_bytes": status_at_recovery["queue"].get("budget_bytes"),
                                            "budget_used": status_at_recovery["queue"].get("budget_used"),
                                            "secs_until_drop": status_at_recovery["queue"].get("secs_until_drop")},
            "worst_during_outage": worst,
            "dropped": final["counts"]["dropped"],
            "healthy_during_outage": [{"sink": i + 1, "delivered": h["events"], "latency_ms": h.get("latency_ms")}
                                      for i, h in zip([i for i in range(3) if i != fail], healthy)],
            "recovery": {
                "backlog": target - (start_events),
                "complete": done_at is not None,
                "first_delivery_after_s": round(first_at - r0, 1) if first_at else None,
                "seconds": round(end - r0, 1),
                "drain_per_s": round(drained / draining) if draining > 0 else None,
                "drain_over_ingest": round(drained / draining / ingest_rate, 2) if draining > 0 and ingest_rate else None,
                "ingest_per_s_during_drain": round(ingest_during_drain / (end - r0)) if end > r0 else None,
            },
            "delivered_total": [sinks.stats(i)["events"] for i in range(3)],
            "accepted_total": load["accepted"],
            "elapsed_s": round(elapsed, 1),
            "samples": samples,
        }
    finally:
        tc.stop()
        sinks.stop()


def sample_rss(pid, stop, out):
    while not stop.is_set():
        rss = proc_kb(pid, "VmRSS")
        if rss:
            out.append(rss)
        time.sleep(0.2)


def total(f, pids):
    return sum(f(p) or 0 for p in pids)


def nats_pid():
    out = subprocess.run(["pgrep", "-x", "nats-server"], capture_output=True, text=True).stdout.split()
    return int(out[0]) if out else None


def load_all(tc, args):
    """Runs loadgen against every node at once, the total concurrency split evenly."""
    n = len(tc.ports)
    results = [None] * n

    def one(i):
        conc = max(1, args.concurrency // n + (1 if i < args.concurrency % n else 0))
        results[i] = loadgen(f"http://127.0.0.1:{tc.ports[i]}/api/v1/generations?workspace_id=default",
                             args.duration, conc, args.batch)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if n == 1:
        return results[0]
    merged = {"per_node": results,
              "records_ok": sum(r.get("records_ok", 0) for r in results),
              "status": {}, "latency_ms": {"p99": max(r["latency_ms"]["p99"] for r in results),
                                           "p50": max(r["latency_ms"]["p50"] for r in results)}}
    for r in results:
        for k, v in r.get("status", {}).items():
            merged["status"][k] = merged["status"].get(k, 0) + v
    return merged


def scenario(name, args, fail=None, binary=None):
    sinks = Sinks(fail=fail, fail_secs=int(args.duration + 3600) if fail is not None else 0)
    tc = Tracecast(cluster=args.cluster, binary=binary, compression=args.compression)
    npid = nats_pid() if args.cluster else None
    try:
        rss = []
        stop = threading.Event()
        t = threading.Thread(target=sample_rss, args=(tc.proc.pid, stop, rss))
        t.start()
        cpu0 = total(cpu_s, tc.pids())
        node_cpu0 = [cpu_s(p) or 0 for p in tc.pids()]
        ncpu0 = cpu_s(npid) if npid else None
        before = [sinks.stats(i)["events"] for i in range(3)]
        t0 = time.time()
        lg = load_all(tc, args)
        load_s = time.time() - t0
        during = [sinks.stats(i)["events"] - before[i] for i in range(3)]
        cpu_load = (total(cpu_s, tc.pids()) - cpu0) / load_s
        node_cpu = [round(((cpu_s(p) or 0) - c0) / load_s, 2) for p, c0 in zip(tc.pids(), node_cpu0)]
        nats_cpu = (cpu_s(npid) - ncpu0) / load_s if npid else None
        accepted = lg.get("records_ok", lg.get("accepted", 0))
        healthy = [i for i in range(3) if i != fail]
        deadline = time.time() + args.drain_timeout
        while time.time() < deadline and any(sinks.stats(i)["events"] - before[i] < accepted for i in healthy):
            time.sleep(0.2)
        drained_at = time.time() - t0
        result = {
            "scenario": name + (f" cluster x{args.cluster}" if args.cluster else ""),
            "binary": binary or TRACECAST,
            "load_average": [round(x, 2) for x in os.getloadavg()],
            "duration_s": round(load_s, 1),
            "loadgen": lg,
            "accepted_per_s": round(accepted / load_s),
            "tracecast_cpu_cores_during_load": round(cpu_load, 2),
            "tracecast_cpu_us_per_record": round(cpu_load * load_s / accepted * 1e6, 1) if accepted else None,
            "tracecast_peak_rss_mib": round(total(lambda p: proc_kb(p, "VmHWM"), tc.pids()) / 1024, 1),
"tracecast_cpu_cores_per_node": node_cpu,
            "nats_server_cpu_cores_during_load": round(nats_cpu, 2) if nats_cpu is not None else None,
            "healthy_drained_after_s": round(drained_at, 1),
            "destinations": [],
        }
        for i in range(3):
            st = sinks.stats(i)
            result["destinations"].append({
                "sink": i + 1,
                "failing": i == fail,
                "delivered_per_s_during_load": round(during[i] / load_s),
                "delivered_total": st["events"] - before[i],
                "bytes_received": st["bytes"],
                "latency_ms": st.get("latency_ms"),
            })
        if fail is not None:
            # Peak RSS while one destination is down (before recovery starts).
            result["tracecast_peak_rss_mib_outage"] = round(total(lambda p: proc_kb(p, "VmHWM"), tc.pids()) / 1024, 1)
            # Recovery: end the outage and time the backlog drain. Records the backlog cap
            # dropped (counted in the destination's status) will never arrive, so the drain is
            # complete when everything accepted and not dropped has been delivered.
            sinks.fail(fail, 0)
            r0 = time.time()
            start_events = sinks.stats(fail)["events"]
            first_at = done_at = None
            dropped = 0
            while time.time() - r0 < args.drain_timeout:
                got_total = sinks.stats(fail)["events"] - before[fail]
                if first_at is None and got_total > start_events - before[fail]:
                    first_at = time.time()
                dropped = tc.status(fail)["counts"]["dropped"]
                if got_total >= accepted - dropped:
                    done_at = time.time()
                    break
                time.sleep(0.05)
            got = sinks.stats(fail)["events"] - start_events
            end = done_at or time.time()
            draining = end - (first_at or r0)
            result["recovery"] = {
                "backlog_after_cap": accepted - dropped - (start_events - before[fail]),
                "dropped_by_cap": dropped,
                "drained": got,
                "complete": done_at is not None,
                "first_delivery_after_s": round(first_at - r0, 1) if first_at else None,
                "seconds_total": round(end - r0, 1),
                "drain_per_s": round(got / draining) if draining > 0 else None,
            }
            result["tracecast_peak_rss_mib"] = round(total(lambda p: proc_kb(p, "VmHWM"), tc.pids()) / 1024, 1)
        stop.set()
        t.join()
        if args.cluster:
            result["owners"] = [tc.status(i).get("owner") for i in range(3)]
        result["failing_status"] = tc.status(fail) if fail is not None else None
        return result
    finally:
        tc.stop()
        sinks.stop()


def baseline(args):
    sinks = Sinks()
    try:
        lg = loadgen(f"http://127.0.0.1:{SINK_PORTS[0]}/noop", args.duration, args.concurrency, args.batch)
        return {"scenario": "B0 no-op endpoint", "loadgen": lg}
    finally:
        sinks.stop()


def summary(name, results):
    """Medians per binary over the interleaved rounds, and current / baseline."""
    import statistics

    def med(label, f):
        vals = [f(r) for r in results if r["label"] == label and f(r) is not None]
        return round(statistics.median(vals), 1) if vals else None

    def p99(r):
        lat = [d["latency_ms"]["p99"] for d in r["destinations"] if not d["failing"] and d.get("latency_ms")]
        return max(lat) if lat else None

    def delivered(r):
        return min(d["delivered_per_s_during_load"] for d in r["destinations"] if not d["failing"])

    out = {"summary": name, "rounds": sum(1 for r in results if r["label"] == "current")}
    for label in ("baseline", "current"):
        out[label] = {
            "accepted_per_s": [r["accepted_per_s"] for r in results if r["label"] == label],
            "median_accepted_per_s": med(label, lambda r: r["accepted_per_s"]),
            "median_delivered_per_s_slowest": med(label, delivered),
            "median_p99_latency_ms": med(label, p99),
            "median_peak_rss_mib": med(label, lambda r: r["tracecast_peak_rss_mib"]),
            "median_cpu_us_per_record": med(label, lambda r: r["tracecast_cpu_us_per_record"]),
        }
    b, c = out["baseline"]["median_accepted_per_s"], out["current"]["median_accepted_per_s"]
    out["ratio_accepted"] = round(c / b, 3) if b and c else None
    b, c = out["baseline"]["median_delivered_per_s_slowest"], out["current"]["median_delivered_per_s_slowest"]
    out["ratio_delivered"] = round(c / b, 3) if b and c else None
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=float, default=60)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--drain-timeout", type=float, default=240)
    ap.add_argument("--only", choices=["B0", "B1", "B2", "B3"])
    ap.add_argument("--compression", choices=["gzip", "none"],
                    help="set every destination's `compression` (default: each type's own: gzip for otel-collector, none for webhook)")
    ap.add_argument("--outage", type=float, default=600, help="B3: seconds sink 3 is down")
    ap.add_argument("--rate", type=int, default=5000, help="B3: records/s sent during the outage and the drain")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--cluster", type=int, default=0, metavar="N",
                    help="run tracecast as N nodes on PostgreSQL + NATS JetStream (0: embedded)")
    ap.add_argument("--bin", default=TRACECAST, help="the tracecast binary to measure (default: the release build)")
    ap.add_argument("--baseline-bin", metavar="PATH",
                    help="an older tracecast binary to run interleaved with --bin, round by round")
    ap.add_argument("--rounds", type=int, default=None,
                    help="runs per binary and scenario (default 1, or 3 with --baseline-bin)")
    args = ap.parse_args()
    if not args.no_build:
        build()
    rounds = args.rounds or (3 if args.baseline_bin else 1)
    # ABBA order: the two binaries take turns being first, so slow drift of the box's load
    # (other processes, page cache, thermal) falls on both alike.
    order = []
    for r in range(rounds):
        pair = [("current", args.bin)]
        if args.baseline_bin:
            pair = [("baseline", args.baseline_bin), ("current", args.bin)]
            if r % 2:
                pair.reverse()
        order += pair
    scenarios = {"B1": lambda b: scenario("B1", args, binary=b),
                 "B2": lambda b: scenario("B2 (sink 3 answers 503)", args, fail=2, binary=b),
                 "B3": lambda b: outage(args, binary=b)}
    if not args.only or args.only == "B0":
        log("== B0")
        print(json.dumps(baseline(args)), flush=True)
    for name, run in scenarios.items():
        # B3 takes 10 minutes and more: only when asked for.
        if (args.only and name != args.only) or (not args.only and name == "B3"):
            continue
        results = []
        for i, (label, binary) in enumerate(order):
            log(f"== {name} {label} ({i + 1}/{len(order)}): {binary}")
            result = run(binary)
            result["label"] = label
            results.append(result)
            print(json.dumps(result), flush=True)
        if args.baseline_bin or rounds > 1:
            print(json.dumps(summary(name, results)), flush=True)


if __name__ == "__main__":
    main()
