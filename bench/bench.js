// The in-browser half of `npm run bench` (scripts/bench.mjs drives it through playwright-core).
//
//   window.benchOurs(cfg)    our model in the page's Web Worker (/worker.js), exactly as the demo runs it,
//                            one thread or, on its multi-threaded build, several
//   window.benchStrategies(cfg)  the cache strategies head to head in one such worker
//   window.benchWllama(cfg)  wllama (npm @wllama/wllama: llama.cpp compiled to wasm) on the same GGUF,
//                            one thread or, the page being cross-origin isolated, several
//
// Both return plain objects with the per-token timings. Every token also gets its arrival time on
// this (main) thread, measured the same way for both engines, so their tokens/s compare like with like.

import { Wllama } from "/vendor/wllama/index.js";

const log = (line) => {
  document.getElementById("log").textContent += `${line}\n`;
};
const progress = (text) => {
  if (typeof window.benchProgress === "function") window.benchProgress(text);
};

/** Messages from a worker, awaited one type at a time; an `error` message rejects. */
function inbox(worker) {
  const queue = [];
  let waiter = null;
  worker.onmessage = ({ data }) => {
    queue.push({ data, at: performance.now() });
    if (waiter) waiter();
  };
  worker.onerror = (event) => {
    queue.push({ data: { type: "error", message: event.message || "worker failed", fatal: true }, at: performance.now() });
    if (waiter) waiter();
  };
  return async function next() {
    while (!queue.length) await new Promise((resolve) => (waiter = resolve));
    waiter = null;
    const item = queue.shift();
    if (item.data.type === "error") throw new Error(`worker (${item.data.during ?? "?"}): ${item.data.message}`);
    return item;
  };
}

async function expect(next, type) {
  for (;;) {
    const item = await next();
    if (item.data.type === type) return item;
  }
}

/**
 * A fresh worker (the demo page's) with the model loaded, on `cfg.threads` threads (default 1):
 * `worker.js?threads=N` runs the multi-threaded build with a pool of N where it can, and falls back
 * to one thread where it cannot. A fallback fails here, so that a one-thread run never passes for
 * a threaded one.
 */
async function startWorker(cfg) {
  const asked = cfg.threads ?? 1;
  const worker = new Worker(`/worker.js?threads=${asked}`, { type: "module" });
  try {
    const next = inbox(worker);
    await expect(next, "ready");
    const loadStart = performance.now();
    worker.postMessage({ type: "load", source: cfg.source, options: cfg.options ?? {} });
    const loaded = await expect(next, "loaded");
    const threads = loaded.data.info.threads ?? 1;
    if (threads !== asked) {
      const why = loaded.data.info.threadsNote ? ` (${loaded.data.info.threadsNote})` : "";
      throw new Error(`asked the worker for ${asked} threads, it runs on ${threads}${why}`);
    }
    return { worker, next, loaded, threads, loadWallMs: loaded.at - loadStart };
  } catch (err) {
    worker.terminate();
    throw err;
  }
}

/**
 * One generation in `w`'s worker, from an empty sequence: the per-token figures as they arrive.
 * run: { prompt, maxTokens, useCache, cache, window, every? }
 */
async function generation(w, run) {
  const started = performance.now();
  w.worker.postMessage({
    type: "generate",
    runId: 1,
    prompt: run.prompt,
    run: { maxTokens: run.maxTokens, temperature: 0, topK: 0, topP: 1, seed: 0, stopIds: [], chat: false },
    useCache: run.useCache,
    cache: run.cache ?? "concat",
    window: run.window ?? undefined,
    reset: true,
  });
  const out = { stepMs: [], arrivalMs: [], ids: [], positions: [], text: "", done: null };
  while (!out.done) {
    const item = await w.next();
    if (item.data.type === "token") {
      const ev = item.data.event;
      out.stepMs.push(ev.ms);
      out.arrivalMs.push(item.at - started);
      out.ids.push(ev.id);
      out.positions.push(ev.position);
      out.text += ev.text;
      if (run.every && out.stepMs.length % run.every === 0) {
        progress(`${out.stepMs.length}/${run.maxTokens} tokens, last ${ev.ms.toFixed(1)} ms`);
      }
    } else if (item.data.type === "done") {
      out.done = item.data;
    }
  }
  return out;
}

/**
 * One run of our model through the demo page's worker, in a fresh worker (so the wasm memory
 * measured after the run is this run's peak), on `threads` threads (default 1; see startWorker).
 * cfg: { source, options, prompt, maxTokens, useCache, cache, window, every, warmupTokens, threads }
 */
window.benchOurs = async function benchOurs(cfg) {
  const w = await startWorker(cfg);
  try {
    const memoryAfterLoad = w.loaded.data.state?.wasmMemoryBytes ?? null;
    // Warm-up: the same run, a few tokens, in the same worker. Chromium compiles wasm in two tiers
    // (a quick baseline first, optimized code once a function is hot), so the first tokens of a
    // fresh instance are several times slower; this keeps that out of the per-token figures.
    let warmup = null;
    if (cfg.warmupTokens) {
      const warm = await generation(w, { ...cfg, maxTokens: cfg.warmupTokens, every: 0 });
      warmup = { stepMs: warm.stepMs, ttftMs: warm.arrivalMs[0] ?? null };
    }
    const run = await generation(w, cfg);
    const done = run.done;
    return {
      backend: w.loaded.data.info.backend,
      threads: w.threads,
      loadMs: w.loaded.data.info.loadMs ?? w.loadWallMs,
      loadWallMs: w.loadWallMs,
      stepMs: run.stepMs,
      arrivalMs: run.arrivalMs,
      ids: run.ids,
      positions: run.positions,
      text: run.text,
      stopReason: done.stopReason,
      cacheLen: done.state?.cacheLen ?? null,
      cacheBytes: done.state?.cacheBytes ?? null,
      cacheBytesFormula: done.state?.cacheBytesFormula ?? null,
      maxSeqLen: done.state?.maxSeqLen ?? null,
      wasmMemoryBytes: done.state?.wasmMemoryBytes ?? null,
      wasmMemoryAfterLoadBytes: memoryAfterLoad,
      warmup,
    };
  } finally {
    w.worker.terminate();
  }
};

/**
 * The cache strategies head to head, in one worker with the model loaded once:
 * - `Bench.cacheCost` for each strategy: cache update + attention alone, `costTokens` steps;
 * - with `interleave`, `Bench.interleaved`: greedy decoding with concat and prealloc taking
 *   turns token by token, every whole step timed, `rounds` times, so that drift in the machine's
 *   speed falls on both alike.
 * cfg: { source, options, caches: [{ cache, window }], costTokens,
 *        interleave: { prompt, tokens, rounds, warmupTokens } | null, threads }
 */
window.benchStrategies = async function benchStrategies(cfg) {
  const w = await startWorker(cfg);
  try {
    const cost = [];
    for (const c of cfg.caches) {
      const measure = async (tokens) => {
        w.worker.postMessage({ type: "cacheCost", cache: c.cache, window: c.window ?? undefined, tokens });
        return (await expect(w.next, "cacheCost")).data.stepMs;
      };
      await measure(32); // warm-up: see benchOurs
      cost.push({ ...c, stepMs: await measure(cfg.costTokens) });
      progress(`cache cost of ${c.cache}: ${cfg.costTokens} steps`);
    }
    const interleaved = [];
    if (cfg.interleave) {
      const { prompt, tokens, rounds, warmupTokens } = cfg.interleave;
      const measure = async (n) => {
        w.worker.postMessage({ type: "interleaved", prompt, caches: ["concat", "prealloc"], tokens: n });
        return (await expect(w.next, "interleaved")).data.result;
      };
      await measure(warmupTokens);
      for (let round = 0; round < rounds; round++) {
        interleaved.push({ round, ...(await measure(tokens)) });
        progress(`concat and prealloc interleaved, round ${round + 1}/${rounds}`);
      }
    }
    return { backend: w.loaded.data.info.backend, cost, interleaved };
  } finally {
    w.worker.terminate();
  }
};

/**
 * wllama on a GGUF: CPU only (no WebGPU), greedy, EOS ignored, streamed; `threads` threads
 * (default 1). Its one wasm starts pthreads only when asked for more than one thread and the page
 * is cross-origin isolated (scripts/serve.mjs sends COOP/COEP); what it chose is returned
 * (`multithread`, `threads`) for the caller to check.
 * cfg: { url, prompt, maxTokens, nCtx, every, warmupTokens, threads }
 */
window.benchWllama = async function benchWllama(cfg) {
  const quiet = { debug() {}, log() {}, warn: console.warn.bind(console), error: console.error.bind(console) };
  const wllama = new Wllama({ default: "/vendor/wllama/wasm/wllama.wasm" }, { suppressNativeLog: true, logger: quiet });
  try {
    const loadStart = performance.now();
    const blob = await (await fetch(cfg.url)).blob();
    await wllama.loadModel([blob], { n_threads: cfg.threads ?? 1, n_gpu_layers: 0, n_ctx: cfg.nCtx ?? 512, seed: 0 });
    const loadMs = performance.now() - loadStart;
    const threads = wllama.getNumThreads?.() ?? null;
    const multithread = wllama.isMultithread?.() ?? null;

    const params = {
      prompt: cfg.prompt,
      temperature: 0,
      top_k: 1,
      top_p: 1,
      ignore_eos: true,
      cache_prompt: false,
      timings_per_token: true,
      stream: true,
    };
    // Warm-up, as for ours: a few tokens first, so the timed run runs optimized wasm code.
    let warmup = null;
    if (cfg.warmupTokens) {
      const warmStart = performance.now();
      let firstAt = null;
      await wllama.createCompletion({
        ...params,
        max_tokens: cfg.warmupTokens,
        onData: () => {
          firstAt ??= performance.now() - warmStart;
        },
      });
      warmup = { ttftMs: firstAt };
    }

    const arrivalMs = [];
    const texts = [];
    const timings = [];
    let last = null;
    const started = performance.now();
    await wllama.createCompletion({
      ...params,
      max_tokens: cfg.maxTokens,
      onData: (chunk) => {
        const at = performance.now() - started;
        const piece = chunk.choices?.[0]?.text ?? "";
        last = chunk;
        // The closing chunk carries no new token (finish_reason and usage only).
        if (piece === "" && chunk.choices?.[0]?.finish_reason) return;
        arrivalMs.push(at);
        texts.push(piece);
        timings.push(chunk.timings ?? null);
        if (cfg.every && arrivalMs.length % cfg.every === 0) progress(`${arrivalMs.length}/${cfg.maxTokens} tokens`);
      },
    });
    return {
      loadMs,
      threads,
      multithread,
      crossOriginIsolated: self.crossOriginIsolated === true,
      arrivalMs,
      texts,
      text: texts.join(""),
      timings,
      finalTimings: last?.timings ?? null,
      usage: last?.usage ?? null,
      warmup,
    };
  } finally {
    await wllama.exit().catch(() => {});
  }
};

window.benchReady = true;
log("ready");
