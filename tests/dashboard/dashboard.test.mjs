// The dashboard in a real browser: headless Chromium (Debian's `chromium`, or CHROMIUM)
// driven by playwright-core, against the real tracecast binary and a real webhook receiver on
// loopback. The seven flows of issue 16 run in order, each on what the previous one left;
// axe-core checks every page (no serious or critical violation), and no page may break its
// content security policy. With DASHBOARD_SCREENSHOTS=<dir>, a screenshot of every page is
// written there (docs/screenshots/ holds the committed ones).
//
//   npm ci --prefix tests/dashboard && node --test tests/dashboard/

import assert from "node:assert/strict";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { chromium } from "playwright-core";

import { MANAGEMENT_KEY, api, ingest, startReceiver, startTracecast, until } from "./harness.mjs";

const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const SHOTS = process.env.DASHBOARD_SCREENSHOTS || "";
if (SHOTS) {
  mkdirSync(SHOTS, { recursive: true });
}

let tc;
let receiver;
let browser;
let context;
let page;
let appKey;
let destinationId;
const cspViolations = [];

/** axe-core on the current page: no serious or critical violation. */
async function axe(name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help}: ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`);
  assert.deepEqual(bad, [], `axe-core on the ${name} page`);
}

async function shot(name, p = page) {
  if (SHOTS) {
    await p.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
  }
}

async function text(selector) {
  return (await page.locator(selector).first().textContent()).trim();
}

function watch(p) {
  p.on("console", (msg) => {
    if (msg.type() === "error" && /Content Security Policy/i.test(msg.text())) {
      cspViolations.push(`${p.url()}: ${msg.text().slice(0, 120)}`);
    }
  });
  p.on("pageerror", (e) => cspViolations.push(`page error: ${e.message}`));
}

describe("the dashboard in a browser", () => {
  before(async () => {
    receiver = await startReceiver();
    tc = await startTracecast();
    const created = await api(tc.base, "POST", "/keys", { name: "app" });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    appKey = created.body.key;
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args: ["--no-sandbox"],
    });
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    page = await context.newPage();
    watch(page);
  });

  after(async () => {
    await browser?.close();
    await tc?.stop();
    await receiver?.close();
  });

  it("1. signs in with the management key", async () => {
    await page.goto(`${tc.base}/`);
    assert.match(page.url(), /\/signin$/);
    await axe("sign-in");
    await shot("signin");
    await page.fill("#key", "sk-tc-v1-not-a-key-of-this-server-000000000000");
    await page.click("button:has-text('Sign in')");
    await page.waitForSelector("#signin-error");
    assert.match(await text("#signin-error"), /Invalid API key/);
    await page.fill("#key", MANAGEMENT_KEY);
    await page.click("button:has-text('Sign in')");
    await page.waitForURL(/\/destinations$/);
    assert.equal(await text("h1"), "Destinations");
    await axe("empty destinations");
  });

  it("2. creates a webhook destination, tests it and saves it", async () => {
    await page.click("a:has-text('Add destination')");
    await page.waitForURL(/\/destinations\/new$/);
    await axe("destination type");
    await shot("destination-types");
    await page.click("a.type-card:has-text('Webhook')");
    await page.waitForURL(/\/destinations\/new\/webhook$/);
    await axe("new webhook");
    // A validation error comes back from the API's validation and sits next to its field.
    await page.fill("#f-name", "Support webhook");
    await page.fill("#f-cfg-url", "not a url");
    await page.click("#save");
    await page.waitForSelector("#f-cfg-url-error");
    assert.match(await text("#f-cfg-url-error"), /^config\.url must be an absolute http\(s\) URL/);
    assert.equal(await page.getAttribute("#f-cfg-url", "aria-invalid"), "true");
    await axe("new webhook with an error");
    // Test Connection shows the exporter's answer; the receiver saw the test request.
    await page.fill("#f-cfg-url", receiver.url);
    await page.click("#test-connection");
    await page.waitForSelector("#test-result.ok");
    assert.match(await text("#test-result"), /Connection OK/);
    assert.ok(receiver.state.tests >= 1, "the receiver got the connection test");
    await shot("destination-new-webhook");
    await page.click("#save");
    await page.waitForURL(/\/destinations\/[0-9a-f-]{36}\?created$/);
    destinationId = /destinations\/([0-9a-f-]{36})/.exec(page.url())[1];
    assert.match(await text(".notice"), /Destination created/);
    // Nothing received yet: the page says how to send a first generation, to this server.
    assert.match(await text("#first-curl"), new RegExp(`^curl ${tc.base}/api/v1/generations`));
    const stored = await api(tc.base, "GET", `/observability/destinations/${destinationId}`);
    assert.equal(stored.status, 200);
    assert.equal(stored.body.data.config.url, receiver.url);
    assert.equal(stored.body.data.name, "Support webhook");
    await axe("destination");
  });

  it("3. ingests generations and sees the delivered count rise", async () => {
    await page.goto(`${tc.base}/destinations`);
    const row = `tr[data-destination="${destinationId}"]`;
    assert.equal(await text(`${row} .delivered-1h`), "0");
    await ingest(tc.base, appKey, ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/o3", "anthropic/claude-sonnet-4", "google/gemini-2.5-pro"], "first");
    await until("5 spans at the receiver", () => receiver.state.spans >= 5);
    // The table refreshes itself (htmx, every 5 s): no reload.
    await page.waitForFunction(
      (sel) => document.querySelector(sel)?.textContent.trim() === "5",
      `${row} .delivered-1h`,
      { timeout: 20_000 },
    );
    assert.equal(await text(`${row} .failed-1h`), "0");
    await axe("destinations");
    await shot("destinations");
    const narrow = await context.newPage();
    watch(narrow);
    await narrow.setViewportSize({ width: 390, height: 844 });
    await narrow.goto(`${tc.base}/destinations`);
    const saved = page;
    page = narrow;
    await axe("destinations on a narrow screen");
    await shot("destinations-narrow");
    page = saved;
    await narrow.close();
  });

  it("4. edits the filter rules and sees the preview change", async () => {
    await page.goto(`${tc.base}/destinations/${destinationId}/edit`);
    await page.waitForFunction(() => document.querySelector("#preview-total")?.textContent === "5", null, {
      timeout: 20_000,
    });
    assert.equal(await text("#preview-passing"), "5");
    await page.click("#add-group");
    await page.waitForSelector("#g0-r0-field");
    await page.selectOption("#g0-r0-field", "model");
    await page.selectOption("#g0-r0-op", "starts_with");
    await page.fill("#g0-r0-value", "openai/");
    await page.locator("#g0-r0-value").press("End");
    await page.waitForFunction(() => document.querySelector("#preview-passing")?.textContent === "3", null, {
      timeout: 20_000,
    });
    await axe("edit with filter rules");
    await shot("destination-edit-filters");
    // An invalid regex: the preview says why, and saving puts the API's message by the rule.
    await page.selectOption("#g0-r0-op", "regex");
    await page.fill("#g0-r0-value", "(");
    await page.locator("#g0-r0-value").press("End");
    await page.waitForFunction(() => /not a valid regex/.test(document.querySelector("#preview")?.textContent || ""), null, {
      timeout: 20_000,
    });
    await page.click("#save");
    await page.waitForSelector("#g0-r0-error");
    assert.match(await text("#g0-r0-error"), /^filter_rules\.groups\[0\]\.rules\[0\]\.value is not a valid regex/);
    await page.selectOption("#g0-r0-op", "starts_with");
    await page.fill("#g0-r0-value", "openai/");
    await page.click("#save");
    await page.waitForURL(/\?saved$/);
    const stored = await api(tc.base, "GET", `/observability/destinations/${destinationId}`);
    assert.deepEqual(stored.body.data.filter_rules, {
      enabled: true,
      groups: [{ logic: "and", rules: [{ field: "model", operator: "starts_with", value: "openai/" }] }],
    });
  });

  it("5. breaks the receiver, sees the error and the dead letters, and replays them", async () => {
    receiver.state.status = 400;
    await ingest(tc.base, appKey, ["openai/gpt-4o", "openai/gpt-4o-mini", "anthropic/claude-sonnet-4"], "broken");
    await page.goto(`${tc.base}/destinations/${destinationId}`);
    await until("2 dead letters on the page", async () => {
      await page.reload();
      return (await text("#dead-letter-count")) === "2";
    });
    assert.match(await text("#last-error"), /400/);
    assert.equal(await page.locator("#first-curl").count(), 0, "generations arrived: no first steps");
    assert.match(await text("#recent-errors"), /400/);
    assert.equal(await page.locator("#dead-letter-table tbody tr").count(), 2);
    await axe("destination with dead letters");
    await shot("destination-detail");
    receiver.state.status = 200;
    const before = receiver.state.spans;
    await page.click("#replay-all");
    await page.waitForURL(/\?replayed=2$/);
    assert.match(await text("#replayed"), /2 dead letter\(s\) queued/);
    await until("the replayed spans at the receiver", () => receiver.state.spans >= before + 2);
    await until("no dead letters left", async () => {
      await page.reload();
      return (await text("#dead-letter-count")) === "0";
    });
  });

  it("6. creates a key and revokes it", async () => {
    await page.goto(`${tc.base}/keys`);
    await axe("keys");
    await page.fill("#key-name", "ci-temporary");
    await page.click("#create-key");
    await page.waitForSelector("#new-key");
    const key = await page.inputValue("#new-key");
    assert.match(key, /^sk-tc-v1-[0-9a-f]{64}$/);
    await axe("keys with a new key");
    await shot("keys");
    assert.equal((await api(tc.base, "GET", "/key", undefined, key)).status, 200);
    const row = 'tr[data-key="ci-temporary"]';
    await page.click(`${row} button:has-text('Disable')`);
    await page.waitForSelector(`${row} .badge.disabled`);
    assert.equal((await api(tc.base, "GET", "/key", undefined, key)).status, 401, "a disabled key is refused");
    await page.click(`${row} summary`);
    await page.click(`${row} button:has-text('for good')`);
    await page.waitForFunction((sel) => !document.querySelector(sel), row);
    assert.equal((await api(tc.base, "GET", "/key", undefined, key)).status, 401);
  });

  it("switches a workspace's Broadcast off and on, and shows warehouse setup SQL", async () => {
    await page.goto(`${tc.base}/workspaces`);
    await axe("workspaces");
    await shot("workspaces");
    await page.click("#broadcast-default");
    await page.waitForSelector('#broadcast-default[aria-checked="false"]');
    let ws = await api(tc.base, "GET", "/workspaces/default");
    assert.equal(ws.body.data.is_observability_broadcast_enabled, false);
    await page.click("#broadcast-default");
    await page.waitForSelector('#broadcast-default[aria-checked="true"]');
    ws = await api(tc.base, "GET", "/workspaces/default");
    assert.equal(ws.body.data.is_observability_broadcast_enabled, true);

    await page.goto(`${tc.base}/destinations/new/clickhouse`);
    await page.waitForSelector("#setup-sql-text");
    assert.match(await text("#setup-sql-text"), /^CREATE TABLE IF NOT EXISTS/);
    await page.fill("#f-cfg-database", "analytics");
    await page.locator("#f-cfg-database").dispatchEvent("change");
    await page.waitForFunction(() => /`analytics`\.`OPENROUTER_TRACES`/.test(document.querySelector("#setup-sql-text")?.textContent || ""));
    await axe("new ClickHouse destination");
    await shot("destination-new-clickhouse");

    const missing = await page.goto(`${tc.base}/destinations/00000000-0000-7000-8000-000000000000`);
    assert.equal(missing.status(), 404);
    await axe("not found");
  });

  it("7. signs out", async () => {
    const cookie = (await context.cookies()).find((c) => c.name === "tracecast_session");
    assert.ok(cookie, "signed in with a session cookie");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    await page.goto(`${tc.base}/destinations`);
    await page.click("button:has-text('Sign out')");
    await page.waitForURL(/\/signin\?signed-out$/);
    assert.match(await text(".notice"), /signed out/);
    await page.goto(`${tc.base}/destinations`);
    assert.match(page.url(), /\/signin$/);
    // The old cookie is dead on the server too, not just forgotten by the browser.
    const res = await fetch(`${tc.base}/destinations`, {
      headers: { cookie: `tracecast_session=${cookie.value}` },
      redirect: "manual",
    });
    assert.equal(res.status, 303);
    assert.equal(res.headers.get("location"), "/signin");
    assert.deepEqual(cspViolations, [], "no page broke its content security policy");
  });
});
