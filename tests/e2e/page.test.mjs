// End-to-end test of the demo page (www/) in headless Chromium.
//
//   npm run test:e2e          (needs pkg/ built: npm run build)
//
// The test serves the page itself on a free localhost port (scripts/serve.mjs),
// drives Debian's /usr/bin/chromium through playwright-core, and saves
// screenshots in tests/e2e/screenshots/. Models: the tiny fixtures in
// tests/fixtures/ (served at /fixtures/), GPT-2 124M with random weights, and,
// when models/ holds it, the real SmolLM2-135M-Instruct.

import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS } from "../../scripts/chromium.mjs";
import { startServer } from "../../scripts/serve.mjs";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const SHOTS = join(REPO, "tests/e2e/screenshots");
const PKG_DIR = process.env.KVCACHE_PKG_DIR ?? join(REPO, "pkg");
const SMOLLM2 = join(REPO, "models/SmolLM2-135M-Instruct.Q4_1.gguf");

let server;
let base;
let context;
let profile;

before(async () => {
  assert.ok(
    existsSync(join(PKG_DIR, "kvcache_wasm.js")),
    `the wasm package is not built in ${PKG_DIR}: run npm run build first`,
  );
  assert.ok(existsSync(CHROMIUM), `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM)`);
  mkdirSync(SHOTS, { recursive: true });
  ({ server, url: base } = await startServer({ port: 0, pkgDir: PKG_DIR }));
  profile = mkdtempSync(join(tmpdir(), "kvcache-e2e-"));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1360, height: 1000 },
    args: CHROMIUM_ARGS,
  });
});

after(async () => {
  await context?.close();
  server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// ------------------------------------------------------------------ helpers

/** Opens the page; every uncaught error in it fails the test that opened it. */
async function open(query = "") {
  const page = await context.newPage();
  page.problems = [];
  page.on("pageerror", (err) => page.problems.push(`page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) {
      page.problems.push(`console error: ${msg.text()}`);
    }
  });
  await page.goto(new URL(query, base).href);
  return page;
}

const byId = (page, id) => page.getByTestId(id);
const kv = (page) => page.evaluate(() => JSON.parse(JSON.stringify({
  status: window.__kvcache.status,
  model: window.__kvcache.model,
  cache: window.__kvcache.cache,
  error: window.__kvcache.error,
  series: window.__kvcache.series,
})));

async function waitIdle(page, timeout = 120_000) {
  await page.waitForFunction(() => window.__kvcache?.status === "idle", null, { timeout, polling: 50 });
}

/** Waits for the model to load; fails with the page's error message if it does not. */
async function waitLoaded(page, timeout = 180_000) {
  await page.waitForFunction(
    () => window.__kvcache?.status === "idle" && (window.__kvcache.model || window.__kvcache.error),
    null,
    { timeout, polling: 100 },
  );
  const s = await kv(page);
  assert.equal(s.error, null, `loading failed: ${s.error}`);
  assert.ok(s.model, "a model is loaded");
}

async function setRun(page, { prompt, maxTokens, chat = false }) {
  if (prompt !== undefined) await byId(page, "prompt").fill(prompt);
  if (maxTokens !== undefined) await byId(page, "max-tokens").fill(String(maxTokens));
  await byId(page, "chat").setChecked(chat);
}

async function run(page, button, timeout = 120_000) {
  const before = (await kv(page)).series.length;
  await byId(page, button).click();
  await page.waitForFunction((n) => window.__kvcache.series.length > n || window.__kvcache.error, before, {
    timeout: 10_000,
  });
  await waitIdle(page, timeout);
  const s = await kv(page);
  assert.equal(s.error, null, `${button}: no error`);
  return s;
}

async function cacheLen(page) {
  return Number(await byId(page, "cache-len").textContent());
}

async function shot(page, name) {
  await page.waitForTimeout(100); // let the chart's next frame draw
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

function noProblems(page) {
  assert.deepEqual(page.problems, [], "no uncaught errors in the page");
}

/** Cache on and off, one after the other: both lines, text, a speedup figure. */
async function compare(page, name) {
  const s = await run(page, "run-compare", 600_000);
  const [on, off] = s.series.slice(-2);
  assert.equal(s.error, null, `no error: ${s.error}`);
  assert.match(on.label, /^cache /);
  assert.equal(off.label, "no cache");
  for (const r of [on, off]) {
    assert.ok(r.tokens >= 2, `${r.label}: at least two tokens (got ${r.tokens})`);
    assert.ok(r.points.length >= 1, `${r.label}: points on the chart`);
    assert.ok(r.points.every(([x, ms]) => Number.isInteger(x) && ms >= 0), `${r.label}: points are [position, ms]`);
  }
  assert.equal(on.tokens, off.tokens, "greedy: the same number of tokens with and without the cache");
  const texts = await page.locator("[data-testid=output] .gen").allTextContents();
  assert.equal(texts.length, 2, "one output block per run");
  for (const t of texts) assert.ok(t.length > 0, "the generated text appears");
  assert.equal(texts[0], texts[1], "greedy: the same text with and without the cache");
  assert.match(await byId(page, "speedup").textContent(), /^\d+(\.\d+)?×$/);
  assert.match(await byId(page, "stats").textContent(), /time to first token/);
  const legend = await page.locator("[data-testid=chart] .u-legend").textContent();
  assert.ok(legend.includes(on.label) && legend.includes("no cache"), "the chart's legend names both runs");
  await shot(page, name);
  return { on, off };
}

// ------------------------------------------------------------------ tests

describe("the demo page", { concurrency: false }, () => {
  test("tiny Llama fixture: cache on and off, strategies, reset", { timeout: 300_000 }, async () => {
    const page = await open("?model=/fixtures/tiny-llama/");
    await waitLoaded(page);
    for (const id of [
      "model-select", "prompt", "max-tokens", "run-cache", "run-nocache", "run-compare", "stop", "reset",
      "strategy", "window", "output", "chart", "stats", "speedup", "cache-len", "cache-bytes", "progress", "error",
    ]) {
      assert.equal(await byId(page, id).count(), 1, `data-testid=${id} exists once`);
    }
    assert.equal(await byId(page, "max-tokens").inputValue(), "128", "max new tokens defaults to 128");
    await setRun(page, { prompt: "Once upon a time", maxTokens: 24 });
    await compare(page, "tiny-llama-compare");

    // With the cache on, the cache holds the sequence; Reset empties it.
    let s = await run(page, "run-cache");
    assert.ok((await cacheLen(page)) > 0, "the cache holds tokens after a cached run");
    assert.equal(await cacheLen(page), s.cache.cacheLen);
    assert.match(await byId(page, "cache-bytes").textContent(), /held .* by the formula/);
    await byId(page, "reset").click();
    await page.waitForFunction(() => document.querySelector("[data-testid=cache-len]").textContent === "0");
    assert.equal((await kv(page)).cache.position, 0, "reset puts the position back to 0");

    // Sliding window: the cache never holds more than W entries.
    await byId(page, "strategy").selectOption("window");
    await byId(page, "window").fill("8");
    await byId(page, "window").dispatchEvent("change");
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache window(8)");
    assert.ok(s.cache.position > 8, "the sequence is longer than the window");
    assert.equal(await cacheLen(page), 8, "the window keeps the last 8 entries");

    // Pre-allocated: the whole buffer is held from the first token.
    await byId(page, "strategy").selectOption("prealloc");
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache prealloc");
    assert.ok(s.cache.cacheBytes > s.cache.cacheBytesFormula, "prealloc holds more than the formula's bytes");
    await shot(page, "tiny-llama-strategies");
    noProblems(page);
    await page.close();
  });

  test("tiny GPT-2 fixture: cache on and off; a prompt too long is an error, then it works", { timeout: 300_000 }, async () => {
    const page = await open("?model=/fixtures/tiny-gpt2/");
    await waitLoaded(page);
    await setRun(page, { prompt: "the cat sat on the mat. ".repeat(20), maxTokens: 8 });
    await byId(page, "run-cache").click();
    await expectError(page, /Could not generate: .*(context|positions|too long)/);
    await shot(page, "error-prompt-too-long");
    await setRun(page, { prompt: "Hello", maxTokens: 12 });
    await compare(page, "tiny-gpt2-compare");
    noProblems(page);
    await page.close();
  });

  test("GPT-2 124M random weights: cache on and off; Stop stops within a token", { timeout: 900_000 }, async () => {
    const page = await open("?model=gpt2-random");
    await waitLoaded(page, 300_000);
    await setRun(page, { prompt: "Hello, I am a language model,", maxTokens: 16 });
    const { on, off } = await compare(page, "gpt2-random-compare");
    const last = (r) => r.points.at(-1)[1];
    assert.ok(last(off) > last(on), "the last token is slower without the cache");
    await page.locator("#log-scale").check();
    await shot(page, "gpt2-random-compare-log");

    await setRun(page, { maxTokens: 400 });
    await byId(page, "run-nocache").click();
    await page.waitForFunction(() => (window.__kvcache.series.at(-1)?.tokens ?? 0) >= 3, null, { timeout: 120_000 });
    const stepMs = Math.max(...(await kv(page)).series.at(-1).points.map((p) => p[1]));
    const clicked = Date.now();
    await byId(page, "stop").click();
    await waitIdle(page, 60_000);
    const waited = Date.now() - clicked;
    const stopped = (await kv(page)).series.at(-1);
    assert.equal(stopped.stopReason, "stopped");
    assert.ok(stopped.tokens < 400, "fewer tokens than asked for");
    assert.ok(waited < 3 * stepMs + 2000, `Stop took ${waited} ms with steps of ${stepMs.toFixed(0)} ms`);
    assert.equal(await byId(page, "stop").isDisabled(), true);
    assert.equal(await byId(page, "run-cache").isEnabled(), true, "the page is usable after Stop");
    await shot(page, "gpt2-random-stopped");
    noProblems(page);
    await page.close();
  });

  test("errors are readable and the page stays usable", { timeout: 300_000 }, async () => {
    const page = await open("?model=/fixtures/no-such-model.gguf");
    await expectError(page, /no-such-model|404|not found/i);
    assert.equal((await kv(page)).model, null);
    await shot(page, "error-404");

    // A file that is not a model, by URL and as a local file.
    await byId(page, "model-select").selectOption("custom");
    await page.locator("#model-url").fill("/fixtures/tiny-tokenizer.json");
    await page.locator("#load-url").click();
    await expectError(page, /Could not load \/fixtures\/tiny-tokenizer.json: .*404/);
    await page.locator("#model-files").setInputFiles({
      name: "notes.gguf",
      mimeType: "application/octet-stream",
      buffer: Buffer.from("these are not the weights you are looking for"),
    });
    await expectError(page, /Could not load notes\.gguf: .*GGUF/);
    await shot(page, "error-not-a-model");

    // Local files: the three files of an HF folder.
    const tinyGpt2 = join(REPO, "tests/fixtures/tiny-gpt2");
    await page.locator("#model-files").setInputFiles(
      ["config.json", "model.safetensors", "tokenizer.json"].map((f) => join(tinyGpt2, f)),
    );
    await waitLoaded(page);
    assert.equal((await kv(page)).model.config.architecture, "gpt2");

    // The page still works: load the tiny GGUF fixture by URL and generate.
    await page.locator("#model-url").fill("/fixtures/tiny-llama.gguf");
    await page.locator("#load-url").click();
    await waitLoaded(page);
    await setRun(page, { prompt: "Once upon a time", maxTokens: 10 });
    const s = await run(page, "run-cache");
    assert.equal(s.error, null);
    assert.ok(s.series.at(-1).tokens > 0);
    assert.ok((await page.locator("[data-testid=output] .gen").textContent()).length > 0);
    assert.equal(await byId(page, "error").isHidden(), true, "the error is cleared by the next action");
    noProblems(page);
    await page.close();
  });

  test("SmolLM2-135M-Instruct (real weights): loads with progress, both lines draw", {
    timeout: 900_000,
    skip: existsSync(SMOLLM2) ? false : "models/ has no SmolLM2 (bash scripts/fetch-model.sh)",
  }, async () => {
    const page = await open("");
    assert.equal(await byId(page, "model-select").inputValue(), "smollm2", "SmolLM2 is the default");
    await page.waitForFunction(() => document.querySelector("[data-testid=progress]").value > 0, null, { timeout: 60_000 });
    await waitLoaded(page, 600_000);
    assert.equal(await byId(page, "chat").isChecked(), true, "chat template on for the instruct model");
    await setRun(page, { prompt: "What is the capital of France?", maxTokens: 16, chat: true });
    await compare(page, "smollm2-compare");
    noProblems(page);
    await page.close();
  });
});

async function expectError(page, pattern) {
  await page.waitForFunction(
    () => !document.querySelector("[data-testid=error]").hidden && window.__kvcache.status === "idle",
    null,
    { timeout: 60_000, polling: 50 },
  );
  const text = await byId(page, "error").textContent();
  assert.match(text, pattern);
  assert.ok(text.trim().length > 10, `a readable message: ${text}`);
}
