// What a user does on the demo page, written once for every browser (harness.mjs runs them).
//
// FAST scenarios use the tiny fixtures (tests/fixtures/, served at /fixtures/) and GPT-2 with
// random weights: they run in Chromium, in Firefox and from the static build. The others need the
// real SmolLM2 (models/) or run the slow cache-off GPT-2 comparison, and run in Chromium only.

import assert from "node:assert/strict";
import { existsSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";

import {
  REPO,
  SMOLLM2,
  cacheLen,
  compare,
  expectError,
  kv,
  prop,
  run,
  setRun,
  tid,
  waitIdle,
  waitLoaded,
} from "./harness.mjs";

const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
const TINY_GGUF_BYTES = statSync(join(REPO, "tests/fixtures/tiny-llama.gguf")).size;
const noSmollm2 = () => (existsSync(SMOLLM2) ? false : "models/ has no SmolLM2 (bash scripts/fetch-model.sh)");

/** The memory calculator's exact figure for a model at `tokens`, batch 1, f32. */
async function calculatorBytes(page, { model, tokens }) {
  await page.select(tid("calc-model"), model);
  await page.fill(tid("calc-tokens"), tokens);
  await page.fill(tid("calc-batch"), 1);
  await page.select(tid("calc-dtype"), "f32");
  return Number(await page.eval(() => document.querySelector("[data-testid=calc-bytes]").dataset.bytes));
}

const tinyLlama = {
  name: "tiny Llama fixture: cache on and off, strategies, reset",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    const ids = [
      "model-select", "prompt", "max-tokens", "run-cache", "run-nocache", "run-compare", "stop", "reset",
      "strategy", "window", "output", "chart", "stats", "speedup", "cache-len", "cache-bytes", "progress", "error",
    ];
    const counts = await page.eval((list) => list.map((id) => document.querySelectorAll(`[data-testid="${id}"]`).length), ids);
    assert.deepEqual(counts, ids.map(() => 1), "each data-testid exists once");
    assert.equal(await prop(page, tid("max-tokens"), "value"), "128", "max new tokens defaults to 128");
    await setRun(page, { prompt: "Once upon a time", maxTokens: 24 });
    await compare(t, page, "tiny-llama-compare");

    // With the cache on, the cache holds the sequence; Reset empties it.
    let s = await run(page, "run-cache");
    assert.ok((await cacheLen(page)) > 0, "the cache holds tokens after a cached run");
    assert.equal(await cacheLen(page), s.cache.cacheLen);
    assert.match(await page.text(tid("cache-bytes")), /held .* by the formula/);
    await page.click(tid("reset"));
    await page.waitFor(() => document.querySelector("[data-testid=cache-len]").textContent === "0");
    assert.equal((await kv(page)).cache.position, 0, "reset puts the position back to 0");

    // Sliding window: the cache never holds more than W entries.
    await page.select(tid("strategy"), "window");
    await page.fill(tid("window"), 8);
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache window(8)");
    assert.ok(s.cache.position > 8, "the sequence is longer than the window");
    assert.equal(await cacheLen(page), 8, "the window keeps the last 8 entries");

    // Pre-allocated: the whole buffer is held from the first token.
    await page.select(tid("strategy"), "prealloc");
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache prealloc");
    assert.ok(s.cache.cacheBytes > s.cache.cacheBytesFormula, "prealloc holds more than the formula's bytes");
    await t.done(page, "tiny-llama-strategies");
  },
};

const tinyGpt2 = {
  name: "tiny GPT-2 fixture: cache on and off; a prompt too long is an error, then it works",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-gpt2/");
    await setRun(page, { prompt: "the cat sat on the mat. ".repeat(20), maxTokens: 8 });
    await page.click(tid("run-cache"));
    await expectError(page, /Could not generate: .*(context|positions|too long)/);
    await t.shot(page, "error-prompt-too-long");
    await setRun(page, { prompt: "Hello", maxTokens: 12 });
    await compare(t, page, "tiny-gpt2-compare");
    await t.done(page);
  },
};

const errors = {
  name: "errors are readable and the page stays usable",
  async run(t) {
    const page = await t.open("?model=/fixtures/no-such-model.gguf");
    await expectError(page, /no-such-model|404|not found/i);
    assert.equal((await kv(page)).model, null);
    await t.shot(page, "error-404");

    // A file that is not a model, by URL and as a local file.
    await page.select(tid("model-select"), "custom");
    await page.fill("#model-url", "/fixtures/tiny-tokenizer.json");
    await page.click("#load-url");
    await expectError(page, /Could not load \/fixtures\/tiny-tokenizer.json: .*404/);
    await page.setFiles("#model-files", [t.tempFile("notes.gguf", "these are not the weights you are looking for")]);
    await expectError(page, /Could not load notes\.gguf: .*GGUF/);
    await t.shot(page, "error-not-a-model");

    // Local files: the three files of an HF folder.
    const tinyGpt2 = join(REPO, "tests/fixtures/tiny-gpt2");
    await page.setFiles("#model-files", ["config.json", "model.safetensors", "tokenizer.json"].map((f) => join(tinyGpt2, f)));
    await waitLoaded(page);
    assert.equal((await kv(page)).model.config.architecture, "gpt2");

    // The page still works: load the tiny GGUF fixture by URL and generate.
    await page.fill("#model-url", "/fixtures/tiny-llama.gguf");
    await page.click("#load-url");
    await waitLoaded(page);
    await setRun(page, { prompt: "Once upon a time", maxTokens: 10 });
    const s = await run(page, "run-cache");
    assert.equal(s.error, null);
    assert.ok(s.series.at(-1).tokens > 0);
    assert.ok((await page.text(`${tid("output")} .gen`)).length > 0);
    assert.equal(await prop(page, tid("error"), "hidden"), true, "the error is cleared by the next action");
    await t.done(page);
  },
};

const accessibility = {
  name: "accessibility (axe-core, after a Compare run) and a 375 px wide screen",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-gpt2/");
    await setRun(page, { prompt: "Hello", maxTokens: 12 });
    await compare(t, page, "a11y-compare");
    await page.addScript(AXE);
    const check = async (where) => {
      const violations = await page.eval(async () => {
        const result = await window.axe.run(document, { resultTypes: ["violations"] });
        return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
      });
      const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
      assert.deepEqual(bad, [], `${where}: no serious or critical accessibility violations`);
    };
    await check("1360 px wide");

    await page.setViewport({ width: 375, height: 800 });
    await page.waitFor(() => window.innerWidth === 375, null, { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 300)); // the chart follows its box on the next frame
    const widths = await page.eval(() => ({
      scroll: document.documentElement.scrollWidth,
      client: document.documentElement.clientWidth,
      body: document.body.scrollWidth,
      widest: [...document.querySelectorAll("body *")]
        .map((e) => [e.getBoundingClientRect().right, e.id || e.className || e.tagName])
        .filter(([right]) => right > document.documentElement.clientWidth + 0.5)
        .slice(0, 5),
    }));
    assert.ok(widths.scroll <= widths.client, `no horizontal overflow at 375 px: scrollWidth ${widths.scroll} > ${widths.client} (${JSON.stringify(widths.widest)})`);
    await t.shot(page, "narrow-375");
    await check("375 px wide");
    await t.done(page);
  },
};

const storedModels = {
  name: "models kept in the browser: listed with sizes, deleted, a download cancelled, a full quota",
  timeout: 300_000,
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama.gguf");
    const listed = () =>
      page.eval(() => [...document.querySelectorAll("[data-testid=stored-list] li")].map((li) => ({
        url: li.dataset.url,
        bytes: Number(li.dataset.bytes),
        text: li.textContent,
      })));
    const waitListed = (test, arg) => page.waitFor(test, arg, { timeout: 10_000 });
    const hasModel = (url) => [...document.querySelectorAll("[data-testid=stored-list] li")].some((li) => li.dataset.url.endsWith(url));
    await waitListed(hasModel, "/fixtures/tiny-llama.gguf");
    let models = await listed();
    const gguf = models.find((m) => m.url.endsWith("/fixtures/tiny-llama.gguf"));
    assert.equal(gguf.bytes, TINY_GGUF_BYTES, "the listed size is the file's");
    assert.match(gguf.text, /tiny-llama\.gguf.*99\.2 KiB/);

    // An HF folder is one entry: its three files together.
    await page.select(tid("model-select"), "custom");
    await page.fill("#model-url", "/fixtures/tiny-gpt2/");
    await page.click("#load-url");
    await waitLoaded(page);
    await waitListed(hasModel, "/fixtures/tiny-gpt2/");
    models = await listed();
    const folder = models.find((m) => m.url.endsWith("/fixtures/tiny-gpt2/"));
    const folderBytes = ["config.json", "model.safetensors", "tokenizer.json"]
      .map((f) => statSync(join(REPO, "tests/fixtures/tiny-gpt2", f)).size)
      .reduce((a, b) => a + b);
    assert.equal(folder.bytes, folderBytes);
    await t.shot(page, "stored-models");

    // Delete: gone from the list and from the browser's storage.
    await page.click(`${tid("stored-list")} li[data-url$="/fixtures/tiny-llama.gguf"] button`);
    await waitListed((url) => ![...document.querySelectorAll("[data-testid=stored-list] li")].some((li) => li.dataset.url.endsWith(url)), "/fixtures/tiny-llama.gguf");
    const kept = await page.eval(async () => (await (await caches.open("kvcache-wasm-models-v1")).keys()).map((r) => r.url));
    assert.ok(!kept.some((u) => u.endsWith("/fixtures/tiny-llama.gguf")), `deleted from the Cache API (left: ${kept})`);
    assert.equal(kept.filter((u) => u.includes("/fixtures/tiny-gpt2/")).length, 3, "the folder's three files stay");

    // Cancel a download halfway (the test server sends /slow/ files slowly).
    await page.fill("#model-url", "/slow/tiny-llama.gguf");
    await page.click("#load-url");
    await page.waitFor(() => document.querySelector("[data-testid=progress]").value > 0, null, { timeout: 20_000 });
    assert.equal(await prop(page, tid("cancel-load"), "hidden"), false, "Cancel shows while downloading");
    await page.click(tid("cancel-load"));
    await waitIdle(page, 20_000);
    let s = await kv(page);
    assert.equal(s.model, null, "no model after a cancelled download");
    assert.equal(s.error, null, "cancelling is not an error");
    assert.match(await page.text("#progress-text"), /cancelled/i);
    assert.equal(await prop(page, tid("cancel-load"), "hidden"), true);
    assert.ok(!(await listed()).some((m) => m.url.endsWith("/slow/tiny-llama.gguf")), "a cancelled download is not kept");
    // ...and the page works afterwards.
    await page.fill("#model-url", "/fixtures/tiny-llama.gguf");
    await page.click("#load-url");
    await waitLoaded(page);

    // A full quota (Chromium lets a test set it): a clear message, the model loads, runs, and is not kept.
    const cdp = await t.cdp(page);
    if (cdp) {
      await page.click(`${tid("stored-list")} li[data-url$="/fixtures/tiny-llama.gguf"] button`);
      await waitListed((url) => ![...document.querySelectorAll("[data-testid=stored-list] li")].some((li) => li.dataset.url.endsWith(url)), "/fixtures/tiny-llama.gguf");
      const origin = new URL(t.base).origin;
      await cdp.send("Storage.overrideQuotaForOrigin", { origin, quotaSize: 50_000 });
      await page.fill("#model-url", "/fixtures/tiny-llama.gguf");
      await page.click("#load-url");
      await waitLoaded(page);
      await page.waitFor(() => !document.querySelector("[data-testid=storage-note]").hidden, null, { timeout: 10_000 });
      assert.match(await page.text(tid("storage-note")), /could not be kept.*storage.*full.*downloaded again/is);
      await setRun(page, { prompt: "Once upon a time", maxTokens: 6 });
      s = await run(page, "run-cache");
      assert.ok(s.series.at(-1).tokens > 0, "the run goes on without the browser cache");
      assert.ok(!(await listed()).some((m) => m.url.endsWith("/fixtures/tiny-llama.gguf")), "nothing kept when the quota is full");
      await t.shot(page, "quota-full");
      await cdp.send("Storage.overrideQuotaForOrigin", { origin });
    }
    await t.done(page);
  },
};

const stop = {
  name: "GPT-2 124M random weights: Stop stops within a token",
  timeout: 600_000,
  async run(t) {
    const page = await t.openLoaded("?model=gpt2-random", 300_000);
    await setRun(page, { prompt: "Hello, I am a language model,", maxTokens: 400 });
    await page.click(tid("run-nocache"));
    await page.waitFor(() => (window.__kvcache.series.at(-1)?.tokens ?? 0) >= 3, null, { timeout: 120_000 });
    const stepMs = Math.max(...(await kv(page)).series.at(-1).points.map((p) => p[1]));
    const clicked = Date.now();
    await page.click(tid("stop"));
    await waitIdle(page, 60_000);
    const waited = Date.now() - clicked;
    const stopped = (await kv(page)).series.at(-1);
    assert.equal(stopped.stopReason, "stopped");
    assert.ok(stopped.tokens < 400, "fewer tokens than asked for");
    assert.ok(waited < 3 * stepMs + 2000, `Stop took ${waited} ms with steps of ${stepMs.toFixed(0)} ms`);
    assert.equal(await prop(page, tid("stop"), "disabled"), true);
    assert.equal(await prop(page, tid("run-cache"), "disabled"), false, "the page is usable after Stop");
    await t.done(page, "gpt2-random-stopped");
  },
};

const gpt2Compare = {
  name: "GPT-2 124M random weights: cache on and off",
  timeout: 900_000,
  async run(t) {
    const page = await t.openLoaded("?model=gpt2-random", 300_000);
    await setRun(page, { prompt: "Hello, I am a language model,", maxTokens: 16 });
    const { on, off } = await compare(t, page, "gpt2-random-compare");
    const last = (r) => r.points.at(-1)[1];
    assert.ok(last(off) > last(on), "the last token is slower without the cache");
    await page.check("#log-scale", true);
    await t.shot(page, "gpt2-random-compare-log");

    // The memory calculator's GPT-2 124M (multi-head attention, f32) holds what the engine holds.
    const s = await run(page, "run-cache");
    assert.equal(s.cache.cache, "concat");
    const figure = await calculatorBytes(page, { model: "gpt2-124m", tokens: s.cache.cacheLen });
    assert.equal(figure, s.cache.cacheBytes, `the calculator's GPT-2 124M at ${s.cache.cacheLen} tokens is what the engine holds`);
    await t.done(page);
  },
};

const smollm2 = {
  name: "SmolLM2-135M-Instruct (real weights): loads with progress, both lines draw; the calculator matches cacheBytes at 1024 tokens",
  timeout: 900_000,
  skip: noSmollm2,
  async run(t) {
    const page = await t.open("");
    assert.equal(await prop(page, tid("model-select"), "value"), "smollm2", "SmolLM2 is the default");
    await page.waitFor(() => document.querySelector("[data-testid=progress]").value > 0, null, { timeout: 60_000 });
    await waitLoaded(page, 600_000);
    assert.equal(await prop(page, tid("chat"), "checked"), true, "chat template on for the instruct model");
    await setRun(page, { prompt: "What is the capital of France?", maxTokens: 16, chat: true });
    await compare(t, page, "smollm2-compare");

    // Fill the cache (concat, f32) to 1024 tokens, the page's maxSeqLen for SmolLM2: a prompt of
    // about 990 tokens, then generation until the context is full.
    await setRun(page, { prompt: `the${" the".repeat(989)}`, maxTokens: 200, chat: false });
    const s = await run(page, "run-cache", 600_000);
    assert.equal(s.cache.cache, "concat");
    assert.equal(s.series.at(-1).stopReason, "context full");
    assert.equal(s.cache.cacheLen, 1024);
    const figure = await calculatorBytes(page, { model: "smollm2-135m", tokens: 1024 });
    assert.equal(figure, s.cache.cacheBytes, "the calculator's SmolLM2 135M at 1024 tokens is what the engine holds");
    await t.done(page, "smollm2-calculator");
  },
};

/** Loading a real model goes to the site's models base, or to `?models=` (here a stand-in file). */
const modelsBase = {
  name: "the real models come from ?models= when given",
  async run(t) {
    const page = await t.openLoaded("?models=/elsewhere/");
    assert.ok(t.requests.includes("/elsewhere/SmolLM2-135M-Instruct.Q4_1.gguf"), "SmolLM2 was requested from ?models=");
    await t.done(page);
  },
};

export const FAST = [tinyLlama, tinyGpt2, errors, accessibility, storedModels, stop];
export const ALL = [...FAST, gpt2Compare, smollm2];
export const SITE = [...FAST.filter((s) => s !== stop), modelsBase];
