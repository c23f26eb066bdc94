// The real tracecast binary and a real webhook receiver on loopback, for the browser tests
// (the Node counterpart of tests/harness/tracecast_process.py).

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, accessSync, constants } from "node:fs";
import { createServer } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** `TRACECAST_BIN`, else the debug build. */
export function binary() {
  const path = process.env.TRACECAST_BIN || join(REPO, "target", "debug", "tracecast");
  accessSync(path, constants.X_OK);
  return path;
}

/** The management key the test server is started with. */
export const MANAGEMENT_KEY = "sk-tc-v1-dashboard-browser-tests-0123456789abcdef";

/**
 * `tracecast serve --listen 127.0.0.1:0 --data-dir <fresh dir>`; resolves once it prints its
 * address (deadline 30 s). `stop()` ends it and removes the data dir.
 */
export async function startTracecast(env = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "tracecast-dashboard-"));
  const proc = spawn(binary(), ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
    env: { ...process.env, TRACECAST_BOOTSTRAP_MANAGEMENT_KEY: MANAGEMENT_KEY, TRACECAST_LOG: "warn", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  const lines = [];
  const exited = new Promise((res) => proc.on("exit", res));
  const base = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`tracecast did not start in 30 s:\n${lines.join("")}`)), 30_000);
    proc.stderr.setEncoding("utf8");
    proc.stderr.on("data", (chunk) => {
      lines.push(chunk);
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(lines.join(""));
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      rej(new Error(`tracecast exited (${code}):\n${lines.join("")}`));
    });
  });
  return {
    base,
    log: () => lines.join(""),
    async stop() {
      proc.kill("SIGTERM");
      const killer = setTimeout(() => proc.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(killer);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * An HTTP receiver on 127.0.0.1:0 that answers with `status` (settable) and counts the OTLP
 * spans it accepted. `X-Test-Connection` requests (connection tests) are answered but not
 * counted.
 */
export async function startReceiver() {
  const state = { status: 200, spans: 0, requests: 0, tests: 0 };
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      state.requests += 1;
      if (req.headers["x-test-connection"]) {
        state.tests += 1;
        res.writeHead(200, { "content-type": "application/json" }).end("{}");
        return;
      }
      if (state.status >= 200 && state.status < 300) {
        try {
          const body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
          for (const rs of body.resourceSpans || []) {
            for (const ss of rs.scopeSpans || []) {
              state.spans += (ss.spans || []).length;
            }
          }
        } catch {
          // Not JSON: not counted.
        }
      }
      const body = state.status >= 400 ? '{"error":"the receiver is broken on purpose"}' : "{}";
      res.writeHead(state.status, { "content-type": "application/json" }).end(body);
    });
  });
  await new Promise((res) => server.listen(0, "127.0.0.1", res));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/traces`,
    state,
    close: () => new Promise((res) => server.close(res)),
  };
}

/** A JSON call to the management API with the management key. */
export async function api(base, method, path, body, key = MANAGEMENT_KEY) {
  const res = await fetch(`${base}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Ingests generations (`models`: one per model) with a workspace key. */
export async function ingest(base, key, models, prefix) {
  const now = new Date().toISOString();
  const records = models.map((model, i) => ({
    id: `${prefix}-${i}`,
    model,
    provider_name: { openai: "OpenAI", anthropic: "Anthropic", google: "Google" }[model.split("/")[0]],
    created_at: now,
    user: `user-${i % 3}`,
    session_id: `${prefix}-session-${i}`,
    total_cost: 0.0001 * (i + 1),
    request: { messages: [{ role: "user", content: "Hello" }] },
    response: { choices: [{ message: { role: "assistant", content: "Hi" } }], usage: { prompt_tokens: 5, completion_tokens: 2 } },
  }));
  const res = await fetch(`${base}/api/v1/generations`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify(records),
  });
  if (res.status !== 202) {
    throw new Error(`ingest answered ${res.status}: ${await res.text()}`);
  }
}

/** Polls `check` until it returns a truthy value or `ms` pass; returns the value. */
export async function until(what, check, ms = 20_000, every = 200) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    last = await check();
    if (last) {
      return last;
    }
    if (Date.now() > end) {
      throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
    }
    await new Promise((r) => setTimeout(r, every));
  }
}
