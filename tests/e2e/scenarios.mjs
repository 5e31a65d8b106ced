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
  focused,
  kv,
  press,
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


/** The memory calculator's exact figure for a model at `tokens`, batch 1, in `dtype`. */
async function calculatorBytes(page, { model, tokens, dtype = "f32" }) {
  await page.select(tid("calc-model"), model);
  await page.fill(tid("calc-tokens"), tokens);
  await page.fill(tid("calc-batch"), 1);
  await page.select(tid("calc-dtype"), dtype);
  return Number(await page.eval(() => document.querySelector("[data-testid=calc-bytes]").dataset.bytes));
}

/** Changes a cache control and waits for the worker to report the new state. */
async function setCache(page, { strategy, window, sinks, dtype }) {
  const changed = (id) => page.eval((sel) => document.querySelector(sel).dispatchEvent(new Event("change")), tid(id));
  if (strategy !== undefined) await page.select(tid("strategy"), strategy);
  if (window !== undefined) await page.fill(tid("window"), window).then(() => changed("window"));
  if (sinks !== undefined) await page.fill(tid("sinks"), sinks).then(() => changed("sinks"));
  if (dtype !== undefined) await page.select(tid("kv-dtype"), dtype);
  await page.waitFor(
    ([d, n]) => {
      const c = window.__kvcache.cache;
      return window.__kvcache.error || (c && (d === undefined || c.kvDtype === d) && (n === undefined || c.sinks === n));
    },
    [dtype, sinks],
    { timeout: 10_000 },
  );
  await waitIdle(page);
}

/** Bytes of `tokens` cached tokens of a model's config, in `dtype` (kv-memory.js's row layout). */
function expectedBytes(config, tokens, dtype) {
  const row = { f32: 4 * config.headDim, f16: 2 * config.headDim, int8: config.headDim + 2 * Math.ceil(config.headDim / 32) }[dtype];
  return 2 * config.numLayers * config.numKvHeads * tokens * row;
}

/** No serious or critical axe-core violation in the page as it is now. */
async function axeCheck(page, where) {
  await page.addScript(AXE);
  const violations = await page.eval(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(" ")) }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(bad, [], `${where}: no serious or critical accessibility violations`);
}

/** Presses Measure quality and waits for every setting to be scored; returns what the chart holds. */
async function measureQuality(page, timeout = 300_000) {
  await page.click(tid("quality-run"));
  // Started (or, with a tiny model, possibly done already: the passage's token count stays).
  await page.waitFor(() => window.__kvcache.quality.running || window.__kvcache.quality.tokens != null || window.__kvcache.error, null, { timeout: 10_000 });
  await waitIdle(page, timeout);
  const s = await kv(page);
  assert.equal(s.error, null, "quality: no error");
  return s.quality;
}

/** Sends one chat message and waits for the reply; returns the turn's figures. */
async function chatTurn(page, message, { recompute = false, maxTokens = 6 } = {}) {
  const before = (await kv(page)).chat.length;
  await page.fill(tid("chat-message"), message);
  await page.fill(tid("chat-max-tokens"), maxTokens);
  await page.check(tid("chat-recompute"), recompute);
  await page.click(tid("chat-send"));
  await page.waitFor((n) => window.__kvcache.chat.length > n || window.__kvcache.error, before, { timeout: 10_000 });
  await waitIdle(page, 300_000);
  const s = await kv(page);
  assert.equal(s.error, null, `chat "${message}": no error`);
  return s.chat.at(-1);
}

/** The page asks for threads; it gets them where it is cross-origin isolated, else one. */
const threads = {
  name: "threads: the multi-threaded build where the page is cross-origin isolated, else one thread",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    const [isolated, cores] = await page.eval(() => [self.crossOriginIsolated, navigator.hardwareConcurrency]);
    assert.equal(isolated, t.isolate, "isolated exactly when the server sends COOP/COEP");
    const info = await page.text(tid("model-info"));
    const note = await prop(page, tid("model-info"), "title");
    if (isolated && cores >= 2) {
      assert.match(info, / · 2 threads$/, "two threads by default");
    } else {
      assert.match(info, / · one thread$/);
      if (!isolated) assert.match(note, /not cross-origin isolated/, "the page says why one thread");
    }
    await setRun(page, { prompt: "Once upon a time", maxTokens: 12 });
    const text = (await run(page, "run-cache")).series.at(-1).text;
    await page.close();

    // ?threads=1 asks for the single-thread build: the same greedy text.
    const one = await t.openLoaded("?model=/fixtures/tiny-llama/&threads=1");
    assert.match(await one.text(tid("model-info")), / · one thread$/);
    await setRun(one, { prompt: "Once upon a time", maxTokens: 12 });
    assert.equal((await run(one, "run-cache")).series.at(-1).text, text, "the same greedy text on one thread");
    await t.done(one);
  },
};

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
    // The engine is warmed up before the model is announced, and the warm-up leaves nothing behind.
    const loaded = await kv(page);
    assert.ok(loaded.model.warmUpTokens > 0, "the engine ran warm-up tokens after the load");
    const n = loaded.model.warmUpTokens;
    assert.match(await page.text("#progress-text"), new RegExp(`warmed up on ${n} token${n === 1 ? "" : "s"}\\b`));
    assert.equal(loaded.cache.position, 0, "the warm-up's tokens are not in the sequence");
    assert.equal(loaded.cache.cacheLen, 0, "nor in the cache");
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
    assert.equal(await page.text("#layer-note"), `Every layer holds the same 8 of the ${s.cache.position} tokens seen: the window's.`);

    // Pre-allocated: the whole buffer is held from the first token.
    await page.select(tid("strategy"), "prealloc");
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache prealloc");
    assert.ok(s.cache.cacheBytes > s.cache.cacheBytesFormula, "prealloc holds more than the formula's bytes");
    await t.done(page, "tiny-llama-strategies");
  },
};

const precisionSinks = {
  name: "tiny Llama fixture: precision and sinks",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    await setRun(page, { prompt: "Once upon a time", maxTokens: 24 });
    let s;

    // Precision: each one holds exactly its formula's bytes, 2 × layers × KV heads × tokens × one row
    // (f32 4 bytes a number, f16 2, int8 1 plus a 2-byte scale per block of 32).
    const config = (await kv(page)).model.config;
    await setCache(page, { strategy: "concat" });
    for (const dtype of ["f16", "int8", "f32"]) {
      await setCache(page, { dtype });
      assert.equal((await kv(page)).cache.position, 0, `choosing ${dtype} starts the sequence afresh`);
      s = await run(page, "run-cache");
      assert.equal(s.series.at(-1).label, `cache concat${dtype === "f32" ? "" : ` ${dtype}`}`);
      assert.equal(s.cache.kvDtype, dtype);
      assert.equal(s.cache.cacheBytes, s.cache.cacheBytesFormula, `${dtype}: the bytes held are the formula's`);
      assert.equal(s.cache.cacheBytes, expectedBytes(config, s.cache.cacheLen, dtype), `${dtype}: bytes of ${s.cache.cacheLen} tokens`);
      assert.match(await page.text("#formula"), new RegExp(`formula \\(${dtype}\\)`));
      // The whole product reads as one: "... × (64 × 1 byte + its scales = 68 bytes) = 5,440 bytes".
      const row = expectedBytes(config, 1, dtype) / (2 * config.numLayers * config.numKvHeads);
      const rowText = dtype === "int8" ? `\\(${config.headDim} × 1 byte \\+ its scales = ${row} bytes\\)` : `${config.headDim} dims × ${row / config.headDim} bytes`;
      assert.match(await page.text("#formula"), new RegExp(`× ${s.cache.cacheLen} tokens × ${rowText} = [\\d,]+ bytes$`));
    }

    // Sinks: the window keeps its newest W entries and the first S tokens.
    await setCache(page, { strategy: "window", window: 8, sinks: 2 });
    assert.equal((await kv(page)).cache.position, 0, "choosing sinks starts the sequence afresh");
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache window(8 + 2 sinks)");
    assert.equal(s.cache.sinks, 2);
    assert.ok(s.cache.position > 10, "the sequence is longer than the window and its sinks");
    assert.equal(s.cache.cacheLen, 10, "8 newest entries and 2 sinks");
    assert.equal(s.cache.cacheBytesFormula, expectedBytes(config, 10, "f32"));
    await page.fill(tid("sinks"), 8);
    await page.eval((sel) => document.querySelector(sel).dispatchEvent(new Event("change")), tid("sinks"));
    await expectError(page, /Could not change the cache: the sinks must be fewer than the window's W \(8\)/);
    await setCache(page, { sinks: 0 });
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).label, "cache window(8)");
    await t.done(page, "tiny-llama-precision-sinks");
  },
};

const tinyGpt2 = {
  name: "tiny GPT-2 fixture: cache on and off; a prompt too long is an error, then it works",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-gpt2/");
    await setRun(page, { prompt: "the cat sat on the mat. ".repeat(20), maxTokens: 8 });
    await page.click(tid("run-cache"));
    await expectError(page, /Could not generate: .*(context|positions|too long|tokens can hold)/);
    await t.shot(page, "error-prompt-too-long");
    // A shorter one, still past the context (the one above is refused on its bytes alone): the
    // advice names what the page offers, not the package's maxSeqLen or reset.
    await setRun(page, { prompt: "the cat sat on the mat. ".repeat(10) });
    await page.click(tid("run-cache"));
    await expectError(page, /Could not generate: .* \(0 so far .* would not fit: the model's context is 32 positions; shorten the prompt\s*dismiss\s*$/s);
    await setRun(page, { prompt: "Hello", maxTokens: 12 });
    await compare(t, page, "tiny-gpt2-compare");

    // A model without a chat template: the chat is off and says why, and the page goes on.
    assert.equal(await prop(page, tid("chat-message"), "disabled"), true);
    assert.match(await page.text(tid("chat-unavailable")), /no chat template/);
    const s = await run(page, "run-cache");
    assert.ok(s.series.at(-1).tokens > 0);
    await t.done(page);
  },
};

const quality = {
  name: "tiny Llama fixture: the quality chart draws one line per cache setting",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    const q = await measureQuality(page);
    assert.equal(q.truncated, true, "the passage is longer than the tiny model's 128 positions");
    assert.ok(q.tokens > 100 && q.tokens <= 128, `scored: the passage's start that fits the context (${q.tokens} tokens)`);
    const labels = ["full cache (f32)", "window 64", "window 64 + 4 sinks", "int8 cache", "f16 cache"];
    assert.deepEqual(q.chart.map((line) => line.label), labels, "one line per setting");
    for (const line of q.chart) {
      assert.equal(line.values.length, q.tokens - 1, `${line.label}: a value per predicted token`);
      assert.ok(line.values.every((v) => Number.isFinite(v) && v > 0), `${line.label}: finite perplexities`);
    }
    const [full, windowed, sinks, int8, f16] = q.results;
    for (const r of q.results) {
      assert.equal(r.nll.length, q.tokens - 1);
      assert.ok(r.nll.every((v) => Number.isFinite(v) && v >= 0), `${r.label}: finite losses`);
      assert.equal(r.cacheBytes, r.cacheBytesFormula, `${r.label}: the bytes held are the formula's`);
      const mean = r.nll.reduce((a, b) => a + b, 0) / r.nll.length;
      assert.ok(Math.abs(r.perplexity - Math.exp(mean)) <= 1e-9 * r.perplexity, `${r.label}: perplexity = exp(mean loss)`);
    }
    // Until token 64 the window has dropped nothing: the same losses as the full cache.
    const close = (a, b) => Math.abs(a - b) <= 1e-4 * Math.max(1, Math.abs(b));
    assert.ok(windowed.nll.slice(0, 63).every((v, i) => close(v, full.nll[i])), "the window agrees with the full cache before it fills");
    assert.ok(windowed.nll.slice(64).some((v, i) => !close(v, full.nll[i + 64])), "and differs once it drops tokens");
    assert.ok(windowed.cacheBytes < full.cacheBytes && sinks.cacheBytes > windowed.cacheBytes, "a window holds less; sinks a little more");
    assert.equal(f16.cacheBytes * 2, full.cacheBytes, "f16 holds half of f32");
    assert.ok(int8.cacheBytes < f16.cacheBytes, "int8 holds less than f16");
    assert.match(await page.text(tid("quality-status")), /5 settings scored/);
    await t.shot(page, "quality-chart");
    await axeCheck(page, "quality chart drawn");
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

    // Local files: the three files of an HF folder. Without tokenizer_config.json the model has
    // no chat template: the chat box, ticked before, is unticked (its first run would fail), and
    // the chat panel says why. With it, the model has the file's template.
    const tinyGpt2 = join(REPO, "tests/fixtures/tiny-gpt2");
    const hfFiles = ["config.json", "model.safetensors", "tokenizer.json"].map((f) => join(tinyGpt2, f));
    await page.check(tid("chat"), true);
    await page.setFiles("#model-files", hfFiles);
    await waitLoaded(page);
    assert.equal((await kv(page)).model.config.architecture, "gpt2");
    assert.equal(await prop(page, tid("chat"), "checked"), false, "no chat template: the box is unticked");
    assert.match(await page.text(tid("chat-unavailable")), /no chat template .*tokenizer_config\.json/);
    const chatMl =
      "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n'}}{% endfor %}";
    const tokenizerConfig = t.tempFile("tokenizer_config.json", JSON.stringify({ chat_template: chatMl }));
    await page.setFiles("#model-files", [...hfFiles, tokenizerConfig]);
    await waitLoaded(page);
    assert.equal(await prop(page, tid("chat-unavailable"), "hidden"), true, "the chat template of tokenizer_config.json");

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
    const check = (where) => axeCheck(page, where);
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
    assert.equal(s.model?.label, "/fixtures/tiny-gpt2/", "the model before the cancelled download is loaded again");
    assert.equal(s.error, null, "cancelling is not an error");
    assert.match(await page.text("#progress-text"), /^download cancelled: \/fixtures\/tiny-gpt2\/ loaded again/);
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
  name: "GPT-2 124M random weights: Stop stops a run within a token, the quality measure within a step",
  timeout: 600_000,
  async run(t) {
    const page = await t.openLoaded("?model=gpt2-random", 300_000);
    await setRun(page, { prompt: "Hello, I am a language model,", maxTokens: 400 });
    await page.click(tid("run-nocache"));
    await page.waitFor(() => (window.__kvcache.series.at(-1)?.tokens ?? 0) >= 3, null, { timeout: 120_000 });
    assert.equal(await prop(page, tid("chat-send"), "disabled"), true, "no chat for a model without a template");
    assert.match(await page.text(tid("chat-unavailable")), /no chat template/);
    // Clear runs is off during a run (the run in progress is one of them), on again after it.
    assert.equal(await prop(page, tid("clear-runs"), "disabled"), true, "Clear runs is off during a run");
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
    assert.equal(await prop(page, tid("clear-runs"), "disabled"), false, "Clear runs is on after the run");
    await page.click(tid("clear-runs"));
    assert.deepEqual((await kv(page)).series, [], "and clears the runs");
    await page.waitFor(() => /No runs yet/.test(document.querySelector("[data-testid=stats]").textContent), null, { timeout: 10_000 });

    // Stop during the quality measure's first setting: it ends within a step of eight predictions.
    await page.click(tid("quality-run"));
    await page.waitFor(() => (window.__kvcache.quality.progress?.scored ?? 0) >= 8, null, { timeout: 120_000 });
    const before = (await kv(page)).quality.progress;
    const stoppedAt = Date.now();
    await page.click(tid("stop"));
    await page.waitFor(() => !window.__kvcache.quality.running, null, { timeout: 60_000 });
    const quality = (await kv(page)).quality;
    const qualityWaited = Date.now() - stoppedAt;
    assert.equal(quality.stopped, true);
    assert.equal(before.index, 0);
    assert.ok(before.total > 100, `the passage is long enough to stop in (${before.total} predictions)`);
    assert.ok(quality.progress.scored <= before.scored + 16, `at most the step in flight and one more (${before.scored} -> ${quality.progress.scored})`);
    assert.ok(quality.results.every((r) => r === null), "the setting in progress is left out");
    assert.ok(qualityWaited < 16 * stepMs + 2000, `Stop took ${qualityWaited} ms with steps of ${stepMs.toFixed(0)} ms`);
    assert.match(await page.text(tid("quality-status")), /Stopped after 0 of 5 settings/);
    assert.equal(await prop(page, tid("quality-run"), "disabled"), false, "the page is usable after Stop");
    await t.done(page, "gpt2-random-stopped");
  },
};

/**
 * A model loading for as long as the test needs (its download never answered): Enter in the URL
 * field, like the disabled Load URL button, loads nothing else; and a "busy" refusal of the worker
 * (reached here by forcing a disabled button on) leaves the page loading, Cancel on offer.
 */
const busyLoading = {
  name: "while a model loads: Enter in the URL field does nothing, and the worker's busy refusal keeps the page loading",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    const stalled = "/stalled/tiny-llama.gguf";
    t.stall(stalled);
    await page.select(tid("model-select"), "custom");
    await page.fill("#model-url", stalled);
    await press(page, "#model-url", "Enter"); // the button is on: Enter loads, as it does
    const loading = async (why) => {
      const s = await kv(page);
      assert.equal(s.status, "loading", `${why}: still loading`);
      assert.equal(s.model, null);
      assert.equal(await page.text("#progress-text"), `loading ${stalled}…`, `${why}: the load in progress is the one shown`);
      assert.equal(await prop(page, tid("cancel-load"), "hidden"), false, `${why}: Cancel is on offer`);
      assert.equal(await prop(page, "#load-url", "disabled"), true, `${why}: Load URL is off`);
    };
    await loading("after Enter");

    // Another URL and Enter again while the first loads: nothing happens.
    await page.fill("#model-url", "/fixtures/tiny-gpt2/");
    await press(page, "#model-url", "Enter");
    await loading("after a second Enter");
    assert.equal((await kv(page)).error, null, "and nothing to complain about");

    // The worker refuses a message while it loads, and says with what it is busy; the page keeps loading.
    await page.eval(() => {
      const reset = document.getElementById("reset");
      reset.disabled = false;
      reset.click();
    });
    await page.waitFor(() => window.__kvcache.error, null, { timeout: 10_000 });
    assert.equal((await kv(page)).error, "Could not reset: busy loading a model: wait for it to finish, or cancel it");
    await loading("after the worker's refusal");

    await page.click(tid("cancel-load"));
    await waitIdle(page, 20_000);
    assert.match(await page.text("#progress-text"), /download cancelled/);
    // Now the button is on, Enter loads the URL in the field.
    await press(page, "#model-url", "Enter");
    await waitLoaded(page);
    assert.equal((await kv(page)).model.config.architecture, "gpt2");
    await t.done(page);
  },
};

/** Keyboard users: focus on Stop during a run, back after; Enter in the URL field during a run. */
const keyboard = {
  name: "keyboard: focus goes to Stop during a run and back after it; Enter in the URL field does nothing during a run",
  async run(t) {
    const page = await t.openLoaded("?model=gpt2-random", 300_000);
    const label = "GPT-2 124M (random weights)";
    await page.select(tid("model-select"), "custom"); // shows the URL field, loads nothing
    await page.fill("#model-url", "/fixtures/tiny-llama.gguf");
    await setRun(page, { prompt: "Hello, I am a language model,", maxTokens: 400 });
    await press(page, tid("run-nocache"), "Enter");
    assert.equal((await kv(page)).status, "running");
    assert.equal(await focused(page), "stop", "focus moves to Stop when the run starts");
    await page.waitFor(() => (window.__kvcache.series.at(-1)?.tokens ?? 0) >= 2, null, { timeout: 120_000 });
    await press(page, tid("stop"), "Enter");
    await waitIdle(page, 60_000);
    assert.equal((await kv(page)).series.at(-1).stopReason, "stopped");
    assert.equal(await focused(page), "run-nocache", "and back to the button that started it when the run ends");

    // Enter in the URL field while a run goes on: the Load URL button is off, so is Enter.
    await press(page, tid("run-nocache"), "Enter");
    assert.equal((await kv(page)).series.length, 2);
    await press(page, "#model-url", "Enter");
    let s = await kv(page);
    assert.equal(s.status, "running", "the run goes on");
    assert.equal(s.model?.label, label, "the model stays");
    assert.equal(s.error, null);
    assert.equal(await prop(page, tid("stop"), "disabled"), false, "Stop is on offer");
    await page.waitFor(() => (window.__kvcache.series.at(-1)?.tokens ?? 0) >= 2, null, { timeout: 120_000 });
    await page.click(tid("stop"));
    await waitIdle(page, 60_000);
    s = await kv(page);
    assert.equal(s.series.at(-1).stopReason, "stopped");
    assert.equal(s.model?.label, label);
    assert.equal(s.error, null);
    await t.done(page);
  },
};

/**
 * Measure quality is busy from the click on: while the passage is fetched (held here by the test
 * server) nothing else can start, and Stop ends the fetch. A double-click measures once.
 */
const qualityBusy = {
  name: "Measure quality: busy from the click on (the passage's fetch included), Stop ends the fetch, a double-click measures once",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    t.stall(new URL("passage.txt", t.base).pathname);
    const doubleClick = () =>
      page.eval(() => {
        const button = document.getElementById("quality-run");
        button.click();
        button.click();
      });
    await doubleClick();
    let s = await kv(page);
    assert.equal(s.status, "running", "busy while the passage is fetched");
    assert.equal(s.quality.running, true);
    for (const id of ["quality-run", "run-compare", "model-select", "reset"]) {
      assert.equal(await prop(page, tid(id), "disabled"), true, `${id} is off meanwhile`);
    }
    assert.equal(await prop(page, tid("stop"), "disabled"), false, "Stop is on offer meanwhile");
    await page.click(tid("stop"));
    await waitIdle(page, 10_000);
    s = await kv(page);
    assert.equal(s.error, null, "stopping is not an error");
    assert.equal(s.quality.running, false);
    assert.equal(s.quality.stopped, true);
    assert.equal(s.quality.tokens, null, "nothing was scored");
    assert.match(await page.text(tid("quality-status")), /Stopped after 0 of 5 settings/);
    assert.equal(await prop(page, tid("quality-run"), "disabled"), false);

    // The passage comes this time: the double-click measures once, to the end.
    await doubleClick();
    assert.equal((await kv(page)).status, "running");
    await waitIdle(page);
    s = await kv(page);
    assert.equal(s.error, null, "no second measurement reached the busy worker");
    assert.equal(s.quality.results.filter(Boolean).length, 5);
    assert.match(await page.text(tid("quality-status")), /5 settings scored/);
    await t.done(page);
  },
};

/** Cache settings the page refused are refused by Measure quality too, before anything is scored. */
const qualityRefused = {
  name: "Measure quality refuses cache settings the page refuses, and puts the user's settings back after a measurement",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    await setCache(page, { strategy: "window", window: 8 });
    await page.waitFor(() => window.__kvcache.cache?.window === 8, null, { timeout: 10_000 });
    await page.fill(tid("sinks"), 8);
    await page.eval((sel) => document.querySelector(sel).dispatchEvent(new Event("change")), tid("sinks"));
    await expectError(page, /Could not change the cache: the sinks must be fewer than the window's W \(8\)/);
    await page.click("#error-close");
    await page.click(tid("quality-run"));
    await expectError(page, /Could not measure the quality: the sinks must be fewer than the window's W \(8\)\./);
    let s = await kv(page);
    assert.equal(s.quality.tokens, null, "nothing was scored");
    assert.ok(s.quality.results.every((r) => r === null));
    const engine = ({ cache, window, sinks, kvDtype }) => ({ cache, window, sinks, kvDtype });
    assert.deepEqual(engine(s.cache), { cache: "window", window: 8, sinks: 0, kvDtype: "f32" }, "the engine keeps its settings");

    // With settings the page accepts, the measurement runs and puts them back.
    await setCache(page, { sinks: 2 });
    const q = await measureQuality(page);
    assert.equal(q.results.filter(Boolean).length, 5);
    s = await kv(page);
    assert.deepEqual(engine(s.cache), { cache: "window", window: 8, sinks: 2, kvDtype: "f32" }, "the user's settings are put back");
    await t.done(page);
  },
};

/**
 * A load that fails (a URL that is not there, a local file that is not a model) or is cancelled
 * has freed the model before it: that one is loaded again, the error stays in view, and the runs
 * made with it stay. Also when it was loaded from local files.
 */
const restorePrevious = {
  name: "a failed or cancelled load loads the model before it again: a 404, a file that is not a model, a cancelled download",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    await setRun(page, { prompt: "Once upon a time", maxTokens: 8 });
    const first = (await run(page, "run-cache")).series[0];
    /** The page after a failed load: `label` loaded again, usable, its `runs` still there. */
    const restored = async (why, { label, architecture, runs, cancelled = false }) => {
      const s = await kv(page);
      assert.equal(s.status, "idle", why);
      assert.equal(s.model?.label, label, `${why}: the model before is loaded again`);
      assert.equal(s.model.config.architecture, architecture);
      assert.equal(s.cache.position, 0, `${why}: its sequence starts afresh`);
      const progress = await page.text("#progress-text");
      assert.ok(progress.startsWith(`${cancelled ? "download cancelled: " : ""}${label} loaded again (`), `${why}: the page says so (${progress})`);
      assert.notEqual(await page.text(tid("model-info")), "", `${why}: the model's description is back`);
      for (const id of ["run-cache", "run-nocache", "run-compare", "reset", "model-select", "load-url"]) {
        assert.equal(await prop(page, `#${id}`, "disabled"), false, `${why}: ${id} is on`);
      }
      assert.equal(await prop(page, tid("cancel-load"), "hidden"), true, `${why}: no Cancel`);
      assert.equal(s.series.length, runs, `${why}: the runs made with it stay`);
      return s;
    };
    const llama = { label: "/fixtures/tiny-llama/", architecture: "llama" };

    // A URL with a typo: the error says what failed, the model before is back and runs.
    await page.select(tid("model-select"), "custom");
    await page.fill("#model-url", "/fixtures/tiny-lama/");
    await page.click("#load-url");
    await expectError(page, /Could not load \/fixtures\/tiny-lama\/: .*404/);
    await restored("after a 404", { ...llama, runs: 1 });
    assert.equal(await prop(page, tid("model-select"), "value"), "custom", "the URL field stays for a correction");
    await t.shot(page, "restored-after-404");
    let s = await run(page, "run-cache");
    assert.equal(s.series.length, 2);
    assert.equal(s.series[1].text, first.text, "the same model: the same greedy text");

    // A local file that is not a model.
    await page.setFiles("#model-files", [t.tempFile("notes.gguf", "these are not the weights you are looking for")]);
    await expectError(page, /Could not load notes\.gguf: .*GGUF/);
    await restored("after a file that is not a model", { ...llama, runs: 2 });

    // A download cancelled (the test server holds it open): not an error, the model before is back.
    const stalled = "/stalled/restore.gguf";
    t.stall(stalled);
    await page.fill("#model-url", stalled);
    await page.click("#load-url");
    await page.waitFor(() => window.__kvcache.status === "loading" && !document.querySelector("[data-testid=cancel-load]").hidden, null, { timeout: 10_000 });
    assert.equal((await kv(page)).model, null, "no model while the other loads");
    await page.click(tid("cancel-load"));
    await waitIdle(page, 20_000);
    s = await restored("after a cancelled download", { ...llama, runs: 2, cancelled: true });
    assert.equal(s.error, null, "cancelling is not an error");
    s = await run(page, "run-cache");
    assert.equal(s.series.at(-1).text, first.text);

    // A model from local files is read again from them; a new model has cleared the runs before it.
    const tinyGpt2 = join(REPO, "tests/fixtures/tiny-gpt2");
    await page.setFiles("#model-files", ["config.json", "model.safetensors", "tokenizer.json"].map((f) => join(tinyGpt2, f)));
    await waitLoaded(page);
    assert.deepEqual((await kv(page)).series, [], "a model that loads clears the runs of the one before");
    await page.fill("#model-url", "/fixtures/no-such-model.gguf");
    await page.click("#load-url");
    await expectError(page, /Could not load \/fixtures\/no-such-model\.gguf: .*404/);
    await restored("from local files", { label: "config.json + model.safetensors + tokenizer.json", architecture: "gpt2", runs: 0 });
    s = await run(page, "run-cache");
    assert.ok(s.series.at(-1).tokens > 0, "it runs");
    await t.done(page, "restored-from-files");
  },
};

/**
 * The engine crashes during a run (on purpose: `test-crash-after-tokens`, a test-only parameter
 * of the page's address, makes the worker call the package's hidden crash hook once, after that
 * many tokens): the page says so, the model is loaded again as after a failed load, the runs stay
 * (the crashed one as far as it got), and the model runs as before.
 */
const engineCrash = {
  name: "an engine crash during a run: the model is loaded again, its runs stay, and it gives the same greedy text",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/&test-crash-after-tokens=12");
    await setRun(page, { prompt: "Once upon a time", maxTokens: 8 });
    const first = (await run(page, "run-cache")).series[0];
    assert.equal(first.tokens, 8, "no crash before the 12th token");
    await page.click(tid("reset"));
    await page.waitFor(() => window.__kvcache.cache?.position === 0, null, { timeout: 10_000 });

    // The second run crashes after its 4th token.
    await page.click(tid("run-cache"));
    await expectError(page, /^\s*Could not generate: the engine crashed: create a new one .*\(reloading the model\)\s*dismiss\s*$/s);
    let s = await kv(page);
    assert.equal(s.model?.label, "/fixtures/tiny-llama/", "the model is loaded again");
    assert.equal(s.cache.position, 0, "its sequence starts afresh");
    assert.match(await page.text("#progress-text"), /^\/fixtures\/tiny-llama\/ loaded again \(/);
    for (const id of ["run-cache", "run-compare", "reset", "model-select", "quality-run"]) {
      assert.equal(await prop(page, `#${id}`, "disabled"), false, `${id} is on`);
    }
    assert.equal(s.series.length, 2, "the runs stay, the crashed one too");
    const crashed = s.series[1];
    assert.equal(crashed.stopReason, "error");
    assert.equal(crashed.tokens, 4, "the crashed run as far as it got");
    assert.ok(first.text.startsWith(crashed.text), "greedy: its text so far is the first run's start");
    await t.shot(page, "engine-crash-restored");

    // The model loaded again runs as before the crash (the engine crashes only once).
    s = await run(page, "run-cache");
    assert.equal(s.series.length, 3);
    assert.equal(s.series[2].tokens, 8);
    assert.equal(s.series[2].text, first.text, "the same greedy text as before the crash");
    // The package's panic hook logs the crash on purpose.
    page.problems = page.problems.filter((p) => !/a panic on purpose/.test(p));
    await t.done(page);
  },
};

/** The speedup pairs runs of the loaded model only: loading a model clears the runs before it. */
const speedupOneModel = {
  name: "loading a model clears the runs of the one before: the speedup compares runs of one model",
  async run(t) {
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/");
    await setRun(page, { prompt: "Hello", maxTokens: 12 });
    let s = await run(page, "run-cache");
    assert.equal(s.series.length, 1);

    await page.select(tid("model-select"), "custom");
    await page.fill("#model-url", "/fixtures/tiny-gpt2/");
    await page.click("#load-url");
    await waitLoaded(page);
    s = await kv(page);
    assert.deepEqual(s.series, [], "no runs of the model before");
    assert.equal(await page.text(tid("output")), "", "nor their text");
    assert.match(await page.text(tid("stats")), /No runs yet/);

    s = await run(page, "run-nocache");
    assert.deepEqual(s.series.map((r) => r.label), ["no cache"]);
    assert.equal(await page.text(tid("speedup")), "—", "no speedup against a run of another model");
    s = await run(page, "run-cache");
    assert.deepEqual(s.series.map((r) => r.label), ["no cache", "cache concat"]);
    assert.match(await page.text(tid("speedup")), /^\d+(\.\d+)?×$/, "the speedup of two runs of this model");
    await t.done(page);
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
    await t.shot(page, "smollm2-calculator");

    // The same in int8: the calculator's blocks of 32 with an f16 scale are the engine's layout.
    await setCache(page, { dtype: "int8" });
    const s8 = await run(page, "run-cache", 600_000);
    assert.equal(s8.cache.kvDtype, "int8");
    assert.equal(s8.cache.cacheLen, 1024);
    const figure8 = await calculatorBytes(page, { model: "smollm2-135m", tokens: 1024, dtype: "int8" });
    assert.equal(figure8, s8.cache.cacheBytes, "the calculator's SmolLM2 135M at 1024 tokens in int8 is what the engine holds");
    await setCache(page, { dtype: "f32" });

    // Chat: the second turn prefills only its own tokens, the first turn's are taken from the cache;
    // recomputed from scratch, the same second turn prefills the whole conversation.
    assert.equal(await prop(page, tid("chat-send"), "disabled"), false, "chat is on for the instruct model");
    const first = await chatTurn(page, "What is the capital of France?");
    const second = await chatTurn(page, "And of Italy?");
    assert.ok(first.prefilled > 0 && first.tokens > 0);
    assert.equal(second.reuse, true);
    assert.ok(second.reused >= first.prefilled, `the first turn is taken from the cache (${second.reused} tokens)`);
    assert.ok(second.prefilled > 0 && second.prefilled < first.prefilled, `only the new turn is prefilled (${second.prefilled} tokens)`);
    await page.click(tid("chat-reset"));
    await waitIdle(page);
    const again = await chatTurn(page, "What is the capital of France?");
    assert.equal(again.text, first.text, "greedy: the same first reply");
    const recomputed = await chatTurn(page, "And of Italy?", { recompute: true });
    assert.equal(recomputed.reuse, false);
    assert.equal(recomputed.reused, 0, "recomputed: nothing taken from the cache");
    assert.equal(recomputed.prefilled, second.prefilled + second.reused, "recomputed: the whole conversation is prefilled");
    assert.equal(recomputed.text, second.text, "greedy: the same reply either way");
    assert.equal((await page.texts(`${tid("chat-turns")} tr`)).length, 4, "a row per turn");

    // Stop ends a reply after its first tokens; the next turn continues after what it has.
    const before = (await kv(page)).chat.length;
    await page.fill(tid("chat-message"), "Tell me a long story about a dragon.");
    await page.fill(tid("chat-max-tokens"), 400);
    await page.check(tid("chat-recompute"), false);
    await page.click(tid("chat-send"));
    await page.waitFor((n) => window.__kvcache.chat[n]?.reply.length > 0 || window.__kvcache.error, before, { timeout: 60_000 });
    assert.equal(await prop(page, tid("stop"), "disabled"), false, "Stop is on during a reply");
    await page.click(tid("stop"));
    await waitIdle(page);
    const stopped = (await kv(page)).chat.at(-1);
    assert.equal(stopped.stopReason, "stopped");
    assert.ok(stopped.tokens >= 1 && stopped.tokens < 400, `stopped early (${stopped.tokens} tokens)`);
    assert.match((await page.texts(`${tid("chat-turns")} tr`)).at(-1), /reply stopped/, "the turn's row says it was stopped");
    const next = await chatTurn(page, "Thanks.");
    assert.equal(next.reused, stopped.reused + stopped.prefilled + stopped.tokens - 1, "the next turn takes the stopped reply from the cache (its last token is prefilled with the turn)");
    await t.done(page, "smollm2-chat");
  },
};

/**
 * A prompt or a chat message past SmolLM2's max sequence on the page (1024 tokens, of its 8192):
 * the error's advice names what the page offers (New conversation or Reset the cache, a shorter
 * message, the sliding window), never the package's maxSeqLen; and the advice works.
 */
const smollm2PastMaxSequence = {
  name: "SmolLM2-135M-Instruct: a prompt or chat message past the max sequence is refused with advice the page can follow",
  timeout: 900_000,
  skip: noSmollm2,
  async run(t) {
    const page = await t.open("");
    await waitLoaded(page, 600_000);
    const long = `the${" the".repeat(1099)}`;
    const noMaxSeqLen = async () => assert.doesNotMatch(await page.text(tid("error")), /maxSeqLen/);

    await setRun(page, { prompt: long, maxTokens: 4, chat: false });
    await page.click(tid("run-cache"));
    await expectError(page, /^\s*Could not generate: .* would not fit: this model's max sequence on the page is 1024 tokens; shorten the prompt, or choose the sliding window cache, which keeps only the last W tokens\s*dismiss\s*$/s);
    await noMaxSeqLen();

    // A chat message: first in a new conversation, then after a turn (New conversation would help).
    await page.fill(tid("chat-message"), long);
    await page.click(tid("chat-send"));
    await expectError(page, /^\s*Could not chat: .*\(0 so far .* max sequence on the page is 1024 tokens; send a shorter message, or choose the sliding window cache, which keeps only the last W tokens\s*dismiss\s*$/s);
    await noMaxSeqLen();
    const turn = await chatTurn(page, "Hello!", { maxTokens: 4 });
    assert.ok(turn.tokens > 0);
    await page.fill(tid("chat-message"), `the${" the".repeat(1000)}`);
    await page.click(tid("chat-send"));
    await expectError(page, /^\s*Could not chat: .*\([1-9]\d* so far .* max sequence on the page is 1024 tokens; press New conversation, send a shorter message, or choose the sliding window cache, which keeps only the last W tokens\s*dismiss\s*$/s);
    await noMaxSeqLen();
    await t.shot(page, "smollm2-past-max-sequence");

    // Following the advice: with the sliding window, the long message goes through.
    await setCache(page, { strategy: "window", window: 512 });
    const windowed = await chatTurn(page, long, { maxTokens: 2 });
    assert.ok(windowed.prefilled > 1024, `the whole message was prefilled (${windowed.prefilled} tokens)`);
    await t.done(page);
  },
};

/**
 * SmolLM2 on the page's threads (where the page is isolated) gives the greedy text it gives on one:
 * every matmul of its forward passes is split over the pool (the tiny fixtures' are too small).
 */
const smollm2Threads = {
  name: "SmolLM2-135M-Instruct: the same greedy text on the page's threads as on one thread",
  timeout: 900_000,
  skip: noSmollm2,
  async run(t) {
    const texts = [];
    for (const query of ["", "?threads=1"]) {
      const page = await t.open(query);
      await waitLoaded(page, 600_000);
      const threaded = !/ · one thread$/.test(await page.text(tid("model-info")));
      const cores = await page.eval(() => navigator.hardwareConcurrency);
      assert.equal(threaded, t.isolate && query === "" && cores >= 2, `threads exactly where the page asks on an isolated page (${query || "default"})`);
      await setRun(page, { prompt: "The capital of France is", maxTokens: 24, chat: false });
      const s = await run(page, "run-cache", 600_000);
      texts.push(s.series.at(-1).text);
      await t.done(page);
    }
    assert.ok(texts[0].length > 0);
    assert.equal(texts[0], texts[1]);
  },
};

/**
 * A worker that never says it is ready (here: its threaded build's script never arrives, as when
 * Firefox freezes a worker starting its pool) is replaced; after three tries of the threaded
 * build, the page runs on one thread and says why.
 */
const silentWorker = {
  name: "a worker that never says it is ready is started again, then on one thread",
  skip: (t) => (t.isolate ? false : "the page is not isolated: it runs one thread from the start"),
  async run(t) {
    const script = "/pkg/threads/kvcache_wasm.js";
    const asked = () => t.requests.filter((p) => p === script).length;
    const before = asked();
    t.stall(script, 3);
    const started = Date.now();
    const page = await t.openLoaded("?model=/fixtures/tiny-llama/", 120_000);
    assert.equal(asked() - before, 3, "the threaded build was tried three times");
    assert.ok(Date.now() - started >= 3 * 10_000, "each try had its 10 s");
    assert.match(await page.text(tid("model-info")), / · one thread$/);
    assert.match(await prop(page, tid("model-info"), "title"), /multi-threaded build did not start \(3 tries of 10 s\)/);
    await setRun(page, { prompt: "Once upon a time", maxTokens: 6 });
    assert.ok((await run(page, "run-cache")).series.at(-1).tokens > 0, "the model runs");
    await t.done(page);
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

export const FAST = [
  threads, tinyLlama, precisionSinks, quality, tinyGpt2, errors, accessibility, storedModels, stop,
  busyLoading, keyboard, qualityBusy, qualityRefused, speedupOneModel, restorePrevious, engineCrash,
];
export const ALL = [...FAST, silentWorker, gpt2Compare, smollm2, smollm2PastMaxSequence, smollm2Threads];
export const SITE = [...FAST.filter((s) => s !== stop), modelsBase];
