// The end-to-end suite's plumbing: a server, one headless browser per suite, and helpers that
// drive the page through the common page interface of scripts/browsers.mjs, so one set of
// scenarios (scenarios.mjs) runs in Chromium and in Firefox, and from the static build.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, normalize, sep } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { BROWSERS, launch } from "../../scripts/browsers.mjs";
import { ROUTES, startServer } from "../../scripts/serve.mjs";

export const REPO = fileURLToPath(new URL("../..", import.meta.url));
export const PKG_DIR = process.env.KVCACHE_PKG_DIR ?? join(REPO, "pkg");
export const SMOLLM2 = join(REPO, "models/SmolLM2-135M-Instruct.Q4_1.gguf");
const FIXTURES = join(REPO, "tests/fixtures");

/**
 * `/slow/NAME` serves tests/fixtures/NAME at 1 KiB per 50 ms (the tiny GGUF in about 5 s),
 * so a download can be cancelled halfway. Every request's path is kept in `requests`. A path
 * in `stalls` (path -> how many more times) is never answered, as a request that hangs.
 */
function testRoutes(requests, stalls, stalled) {
  return (req, res) => {
    const { pathname } = new URL(req.url, "http://localhost");
    requests.push(pathname);
    if (stalls.get(pathname) > 0) {
      stalls.set(pathname, stalls.get(pathname) - 1);
      stalled.push(res);
      return true;
    }
    if (!pathname.startsWith("/slow/")) return false;
    const file = normalize(join(FIXTURES, decodeURIComponent(pathname.slice("/slow/".length))));
    if (!file.startsWith(FIXTURES + sep) || !existsSync(file)) {
      res.writeHead(404).end();
      return true;
    }
    const data = readFileSync(file);
    res.writeHead(200, {
      "Content-Type": "application/octet-stream",
      "Content-Length": data.length,
      "Cache-Control": "no-cache",
      "Cross-Origin-Resource-Policy": "same-origin",
    });
    let sent = 0;
    const timer = setInterval(() => {
      const chunk = data.subarray(sent, sent + 1024);
      sent += chunk.length;
      res.write(chunk);
      if (sent >= data.length) {
        clearInterval(timer);
        res.end();
      }
    }, 50);
    res.on("close", () => clearInterval(timer));
    return true;
  };
}

/**
 * Declares one suite: `scenarios` run in order in one `browser` ("chromium" or "firefox"), the
 * page served by scripts/serve.mjs with `routes` and opened at `path` (a sub-path for dist/),
 * cross-origin isolated unless `isolate` is false (then the page runs the single-thread build).
 * `prepare` runs first (e.g. building dist/). Screenshots go to tests/e2e/screenshots/<label>/.
 */
export function pageSuite({ label, browser, scenarios, routes = ROUTES, path = "/", isolate = true, prepare = () => {} }) {
  describe(`the demo page: ${label}`, { concurrency: false }, () => {
    const requests = [];
    const stalls = new Map();
    const stalled = [];
    const shots = join(REPO, "tests/e2e/screenshots", label);
    let server;
    let running;
    let temp;
    const t = {
      browserName: browser,
      isolate,
      requests,
      base: null,
      /** The next `times` requests for `path` are never answered. */
      stall(path, times = 1) {
        stalls.set(path, times);
      },
      /** Opens the page (`query` resolved against the page's address); its errors fail the test. */
      async open(query = "") {
        const page = await running.newPage();
        await page.goto(new URL(query, t.base).href);
        return page;
      },
      /** Opens the page and waits for the model its address names to load. */
      async openLoaded(query, timeout) {
        const page = await t.open(query);
        await waitLoaded(page, timeout);
        return page;
      },
      async shot(page, name) {
        await new Promise((r) => setTimeout(r, 100)); // let the chart's next frame draw
        await page.screenshot(join(shots, `${name}.png`));
      },
      /** Ends a scenario: a last screenshot (if named), no uncaught errors, the page closed. */
      async done(page, shot = null) {
        if (shot) await t.shot(page, shot);
        noProblems(page);
        await page.close();
      },
      /** A file with these contents, for a file input. */
      tempFile(name, contents) {
        const file = join(temp, name);
        writeFileSync(file, contents);
        return file;
      },
      /** Chromium's DevTools protocol for this page, where the browser has it (else null). */
      cdp: (page) => (browser === "chromium" ? running.raw.newCDPSession(page.raw) : null),
    };

    before(async () => {
      assert.ok(existsSync(join(PKG_DIR, "kvcache_wasm.js")), `the wasm package is not built in ${PKG_DIR}: run npm run build first`);
      assert.ok(existsSync(BROWSERS[browser]), `no ${browser} at ${BROWSERS[browser]} (bash scripts/setup.sh installs it)`);
      await prepare();
      mkdirSync(shots, { recursive: true });
      temp = mkdtempSync(join(tmpdir(), "kvcache-e2e-files-"));
      const started = await startServer({ port: 0, pkgDir: PKG_DIR, routes, isolate, intercept: testRoutes(requests, stalls, stalled) });
      server = started.server;
      t.base = new URL(path, started.url).href;
      running = await launch(browser);
    });

    after(async () => {
      for (const res of stalled) res.destroy();
      await running?.close();
      server?.close();
      if (temp) rmSync(temp, { recursive: true, force: true });
    });

    for (const s of scenarios) {
      const skip = s.skip?.(t) ?? false;
      test(s.name, { timeout: s.timeout ?? 300_000, skip }, () => s.run(t));
    }
  });
}

// ------------------------------------------------------------------ page helpers

/** The CSS selector of a `data-testid`. */
export const tid = (id) => `[data-testid="${id}"]`;

/** The page's state as window.__kvcache reports it. */
export const kv = (page) =>
  page.eval(() => JSON.parse(JSON.stringify({
    status: window.__kvcache.status,
    model: window.__kvcache.model,
    cache: window.__kvcache.cache,
    error: window.__kvcache.error,
    notice: window.__kvcache.notice,
    series: window.__kvcache.series,
    quality: window.__kvcache.quality,
    chat: window.__kvcache.chat,
  })));

/** A DOM property of the element a selector finds (value, checked, disabled, hidden...). */
export const prop = (page, selector, name) => page.eval(([s, n]) => document.querySelector(s)?.[n], [selector, name]);

export async function waitIdle(page, timeout = 120_000) {
  await page.waitFor(() => window.__kvcache?.status === "idle", null, { timeout, polling: 50 });
}

/** Waits for the model to load; fails with the page's error message if it does not. */
export async function waitLoaded(page, timeout = 180_000) {
  try {
    await page.waitFor(() => window.__kvcache?.status === "idle" && (window.__kvcache.model || window.__kvcache.error), null, { timeout });
  } catch (err) {
    // Where it stopped: the page's status and progress line.
    const where = await page
      .eval(() => `status ${window.__kvcache?.status}, progress "${document.getElementById("progress-text")?.textContent}"`)
      .catch(() => "the page does not answer");
    throw new Error(`${err.message} waiting for the model to load (${where})`, { cause: err });
  }
  const s = await kv(page);
  assert.equal(s.error, null, `loading failed: ${s.error}`);
  assert.ok(s.model, "a model is loaded");
}

export async function setRun(page, { prompt, maxTokens, chat = false }) {
  if (prompt !== undefined) await page.fill(tid("prompt"), prompt);
  if (maxTokens !== undefined) await page.fill(tid("max-tokens"), maxTokens);
  await page.check(tid("chat"), chat);
}

/** Presses a run button and waits for the runs to end; returns the page's state. */
export async function run(page, button, timeout = 120_000) {
  const before = (await kv(page)).series.length;
  await page.click(tid(button));
  await page.waitFor((n) => window.__kvcache.series.length > n || window.__kvcache.error, before, { timeout: 10_000 });
  await waitIdle(page, timeout);
  const s = await kv(page);
  assert.equal(s.error, null, `${button}: no error`);
  return s;
}

/**
 * Focuses an element and presses a key there, as a keyboard user does (playwright's and
 * puppeteer's pages both have focus() and keyboard.press()).
 */
export async function press(page, selector, key) {
  await page.raw.focus(selector);
  await page.raw.keyboard.press(key);
}

/** The id of the element that has the focus ("BODY" when none has). */
export const focused = (page) => page.eval(() => document.activeElement?.id || document.activeElement?.tagName);

export async function cacheLen(page) {
  return Number(await page.text(tid("cache-len")));
}

export function noProblems(page) {
  assert.deepEqual(page.problems, [], "no uncaught errors in the page");
}

export async function expectError(page, pattern) {
  await page.waitFor(() => !document.querySelector("[data-testid=error]").hidden && window.__kvcache.status === "idle", null, {
    timeout: 60_000,
    polling: 50,
  });
  const text = await page.text(tid("error"));
  assert.match(text, pattern);
  assert.ok(text.trim().length > 10, `a readable message: ${text}`);
}

/** Cache on and off, one after the other: both lines, text, a speedup figure. */
export async function compare(t, page, name) {
  const s = await run(page, "run-compare", 600_000);
  const [on, off] = s.series.slice(-2);
  assert.match(on.label, /^cache /);
  assert.equal(off.label, "no cache");
  for (const r of [on, off]) {
    assert.ok(r.tokens >= 2, `${r.label}: at least two tokens (got ${r.tokens})`);
    assert.ok(r.points.length >= 1, `${r.label}: points on the chart`);
    assert.ok(r.points.every(([x, ms]) => Number.isInteger(x) && ms >= 0), `${r.label}: points are [position, ms]`);
  }
  assert.equal(on.tokens, off.tokens, "greedy: the same number of tokens with and without the cache");
  const texts = await page.texts(`${tid("output")} .gen`);
  assert.equal(texts.length, 2, "one output block per run");
  for (const text of texts) assert.ok(text.length > 0, "the generated text appears");
  assert.equal(texts[0], texts[1], "greedy: the same text with and without the cache");
  assert.match(await page.text(tid("speedup")), /^\d+(\.\d+)?×$/);
  assert.match(await page.text(tid("stats")), /time to first token/);
  const legend = await page.text(`${tid("chart")} .u-legend`);
  assert.ok(legend.includes(on.label) && legend.includes("no cache"), "the chart's legend names both runs");
  await t.shot(page, name);
  return { on, off };
}
