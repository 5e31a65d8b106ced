// The model lives here, off the main thread, so the page never freezes.
//
// Messages in (from app.js), one at a time except `stop`:
//   { type: "load", source, options? }     source: { kind: "url", url } | { kind: "random-gpt2", seed? }
//                                                  | { kind: "files", files: File[] }
//                                          options: Generator options, e.g. { backend: "ndarray" } (bench/)
//   { type: "configure", useCache, cache, window, sinks, kvDtype }   change the cache's settings
//                                            (any change starts the sequence afresh)
//   { type: "generate", runId, prompt, run, useCache, cache, window, sinks, kvDtype, reset }
//   { type: "quality", text, settings, restore }  scores `text` (scoreStart() and scoreStep(),
//                                            teacher-forced) once per entry of `settings` (cache
//                                            settings, as for configure), then puts the `restore`
//                                            settings back; Stop ends it within SCORE_STEP tokens
//   { type: "chat", turnId, message, reuse, fresh, run }  one chat turn (chatPrefill() and
//                                            step(), the conversation kept in the generator;
//                                            `fresh` resets it first); reuse false recomputes the
//                                            whole conversation; Stop ends the reply
//   { type: "chatReset" }                    forgets the conversation (and the sequence)
//   { type: "reset" }
//   { type: "cacheCost", cache, window, tokens }   times the strategy alone, no weights (bench/)
//   { type: "interleaved", prompt, caches, tokens } strategies taking turns token by token (bench/)
//   { type: "stop" }                         ends the current generation or reply after the token
//                                            in flight
//   { type: "cancel" }                       cancels the download in progress (the load then fails
//                                            with an error marked `cancelled`)
// Messages out:
//   { type: "ready" }  { type: "progress", loaded, total }
//   { type: "loaded", info: { config, backend, threads, loadMs, warmUpTokens }, state, restored }
//                                            restored: true when this is the model loaded before,
//                                            loaded again after a failed load or an engine crash
//   { type: "token", runId, event, state }   { type: "done", runId, stopReason, state }
//   { type: "state", state }  { type: "cacheCost", stepMs }  { type: "interleaved", result }
//   { type: "qualityStart", tokens, truncated }  the passage's tokens (cut to the context if longer)
//   { type: "qualityProgress", index, scored, total }  predictions made so far for setting `index`
//   { type: "qualityResult", index, result: { nll: number[], perplexity, cacheBytes, cacheBytesFormula, ms } }
//   { type: "qualityDone", stopped, state }
//   { type: "chatToken", turnId, event }     { type: "chatDone", turnId, result, state }
//                                            result: { text, prefilled, reused, ttftMs, tokens, stopReason }
//   { type: "storeError", url, name, message }  a downloaded file could not be kept in the browser
//                                            (name "QuotaExceededError" when its storage is full); the load goes on
//   { type: "error", message, during, fatal, cancelled, busy, restoring, restoreFailed }
//                                            busy: refused because another message is still in
//                                            progress (the message says which); that one goes on
//                                            and ends with its own message.
//                                            restoring: the worker now loads the model it had before
//                                            again (after a load that failed or was cancelled, or an
//                                            engine crash): "loaded" with restored: true follows, or
//                                            an error during "load" with restoreFailed: true (then
//                                            no model is loaded)
// `state` is the cache panel's figures plus wasmMemoryBytes, the WebAssembly memory's size
// (it only grows, so after a run it is the instance's peak).

// The package's two builds: one thread, and the multi-threaded one (pkg/threads/), which needs a
// cross-origin isolated page (COOP/COEP headers) for its shared memory. The page asks for a number
// of threads in the worker's address (`worker.js?threads=N`); below two, or where the page is not
// isolated, the single-thread build runs.
const PKG = "./pkg/kvcache_wasm.js";
const PKG_THREADS = "./pkg/threads/kvcache_wasm.js";
const askedThreads = Number(new URL(self.location.href).searchParams.get("threads") ?? 1);
let threads = 1; // the threads the engine runs on (the pool's size)
let threadsNote = ""; // why one thread, where more were asked for
// How the package's every crash error begins (npm/engine-guard.js, src/wasm/crash.rs).
const ENGINE_CRASHED = "the engine crashed: create a new one";

let Generator = null;
let Bench = null; // the package's measurements of the cache strategies (bench/)
let wasmMemory = null; // the instance's WebAssembly.Memory
let gen = null; // the Generator, once a model is loaded
let stopRequested = false;
// The type of the message in progress ("load" awaits its download), or null: only `stop` and
// `cancel` are accepted meanwhile.
let busy = null;
// The last load message that succeeded (the model loaded now, or the one before a load in
// progress): loaded again after a load fails or is cancelled, and after an engine crash.
let lastLoad = null;
let download = null; // the AbortController of the download in progress
// For the end-to-end test of an engine crash only: with `test-crash-after-tokens=N` in the page's
// address (which app.js passes on to this worker's), the engine crashes once, as a bug would,
// right after the Nth token a run or a chat reply streams (docs/web-page.md, "A load that fails").
let crashAfterTokens = Number(new URL(self.location.href).searchParams.get("test-crash-after-tokens")) || null;

const post = (msg) => self.postMessage(msg);

// Give the event loop a turn, so a `stop` message posted meanwhile is handled. A message to
// ourselves rather than setTimeout(0): browsers clamp timers nested 5 deep to 4 ms, which would
// add 4 ms to every token (about 15% of a cached step).
const turn = new MessageChannel();
const yieldToEventLoop = () =>
  new Promise((resolve) => {
    turn.port1.onmessage = () => resolve();
    turn.port2.postMessage(null);
  });

function isFatal(err) {
  // The package turns every crash of the engine (a Rust panic, or a trap such as running out of
  // wasm memory) into an Error starting with ENGINE_CRASHED; a trap outside its calls (while the
  // module is instantiated) arrives as it is. Anything else is a clean refusal (a bad input, a size
  // past the memory budget): the generator goes on. A crash makes the page start a fresh worker.
  return (
    err instanceof WebAssembly.RuntimeError ||
    err instanceof RangeError ||
    errorMessage(err).startsWith(ENGINE_CRASHED)
  );
}

function errorMessage(err) {
  if (err instanceof Error) return err.message || String(err);
  if (typeof err === "string") return err;
  try {
    return JSON.stringify(err);
  } catch {
    return String(err);
  }
}

function cacheState() {
  if (!gen) return null;
  try {
    return readState();
  } catch {
    return null;
  }
}

function readState() {
  return {
    position: gen.position,
    cacheLen: gen.cacheLen,
    cacheLayerLens: Array.from(gen.cacheLayerLens),
    cacheBytes: gen.cacheBytes,
    cacheBytesFormula: gen.cacheBytesFormula,
    maxSeqLen: gen.maxSeqLen,
    useCache: gen.useCache,
    cache: gen.cacheStrategy,
    window: gen.window ?? null,
    sinks: gen.sinks,
    kvDtype: gen.kvDtype,
    wasmMemoryBytes: wasmMemory?.buffer.byteLength ?? null,
  };
}

// Puts the generator in the requested mode. Changing any of it starts the sequence afresh
// (the package resets the cache when useCache, cacheStrategy, kvDtype or, in window mode, window
// or sinks change). Sinks are only valid below the window and with the window strategy, so they
// go to 0 before the window or the strategy change, and to their new value last.
function applySettings(next) {
  const sinks = next.cache === "window" ? (next.sinks ?? 0) : 0;
  if (gen.sinks !== 0 && gen.sinks !== sinks) gen.sinks = 0;
  if (next.cache === "window") {
    if (gen.window !== next.window) gen.window = next.window;
    if (gen.cacheStrategy !== "window") gen.cacheStrategy = "window";
  } else if (gen.cacheStrategy !== next.cache) {
    gen.cacheStrategy = next.cache;
  }
  if (gen.sinks !== sinks) gen.sinks = sinks;
  const kvDtype = next.kvDtype ?? "f32";
  if (gen.kvDtype !== kvDtype) gen.kvDtype = kvDtype;
  if (gen.useCache !== next.useCache) gen.useCache = next.useCache;
}

// The longest start of `text` that fits in `limit` tokens, cut at a word: the quality passage
// on a model with a short context (the tiny test models).
function fitText(text, limit) {
  const tokens = (t) => gen.encode(t, { special: true }).length; // as score() reads it: BOS included
  if (tokens(text) <= limit) return { text, truncated: false };
  let lo = 0;
  let hi = text.length;
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (tokens(text.slice(0, mid)) <= limit) lo = mid;
    else hi = mid;
  }
  const cut = text.lastIndexOf(" ", lo);
  return { text: text.slice(0, cut > 0 ? cut : lo), truncated: true };
}

// The passage's predictions made between two turns of the event loop (so between two looks at
// Stop): a fraction of a second even on a slow machine.
const SCORE_STEP = 8;

// The passage scored once per cache setting: the same text, so the lines differ only by what
// each cache keeps and how precisely.
async function quality({ text, settings, restore }) {
  stopRequested = false;
  let stopped = false;
  try {
    const fitted = fitText(text, gen.maxSeqLen);
    post({ type: "qualityStart", tokens: gen.encode(fitted.text, { special: true }).length, truncated: fitted.truncated });
    for (const [index, setting] of settings.entries()) {
      applySettings({ ...setting, useCache: true });
      const started = performance.now();
      const total = gen.scoreStart(fitted.text);
      for (let left = total; left > 0; ) {
        await yieldToEventLoop();
        if (stopRequested) break;
        left = gen.scoreStep(SCORE_STEP);
        post({ type: "qualityProgress", index, scored: total - left, total });
      }
      if (stopRequested) {
        stopped = true;
        break;
      }
      const scored = gen.scoreFinish();
      const ms = performance.now() - started;
      post({
        type: "qualityResult",
        index,
        result: {
          nll: Array.from(scored.nll),
          perplexity: scored.perplexity,
          cacheBytes: gen.cacheBytes,
          cacheBytesFormula: gen.cacheBytesFormula,
          ms,
        },
      });
    }
  } finally {
    applySettings(restore);
  }
  post({ type: "qualityDone", stopped, state: cacheState() });
}

// One chat turn: the reply streams out token by token (as a run's, so Stop can end it); the next
// turn continues after the tokens it has.
async function chat({ turnId, message, reuse, fresh, run }) {
  if (fresh) gen.reset();
  let ttftMs = null;
  let tokens = 0;
  const stopped = await stepThrough(
    () => gen.chatPrefill(message, { ...run, reuse }),
    (event) => {
      if (ttftMs == null) ttftMs = event.ms;
      tokens += 1;
      post({ type: "chatToken", turnId, event });
    },
  );
  const generation = gen.finish();
  const result = {
    text: generation.text,
    prefilled: generation.prefilled,
    reused: generation.reused,
    ttftMs,
    tokens,
    stopReason: stopped ? "stopped" : (STOP_REASONS[generation.stopReason] ?? "end"),
  };
  post({ type: "chatDone", turnId, result, state: cacheState() });
}

async function readFiles(files) {
  const byName = (test) => files.find((f) => test(f.name.toLowerCase()));
  const gguf = byName((n) => n.endsWith(".gguf"));
  if (gguf) return { kind: "gguf", bytes: new Uint8Array(await gguf.arrayBuffer()) };
  const config = byName((n) => n === "config.json");
  const weights = byName((n) => n.endsWith(".safetensors"));
  const tokenizer = byName((n) => n === "tokenizer.json");
  const tokenizerConfig = byName((n) => n === "tokenizer_config.json"); // the chat template, if any
  if (!config || !weights || !tokenizer) {
    throw new Error(
      `choose one .gguf file, or config.json + model.safetensors + tokenizer.json together (and tokenizer_config.json for the chat template) (got: ${files
        .map((f) => f.name)
        .join(", ") || "no files"})`,
    );
  }
  return {
    kind: "hf",
    config: await config.text(),
    weights: new Uint8Array(await weights.arrayBuffer()),
    tokenizer: await tokenizer.text(),
    tokenizerConfig: tokenizerConfig ? await tokenizerConfig.text() : null,
  };
}

// Models load with the default cache (concat, maxSeqLen = min(context, 1024));
// the page then sets the strategy it wants, once it knows maxSeqLen.
// One model at a time: the one loaded is freed first, so a load that fails leaves none (the
// handler then loads `lastLoad` again: restore()).
async function load({ source, options }, { restored = false } = {}) {
  if (gen) {
    gen.free();
    gen = null;
  }
  const opts = { ...options };
  const started = performance.now();
  if (source.kind === "random-gpt2") {
    gen = Generator.randomGpt2({ ...opts, seed: source.seed ?? 1 });
  } else if (source.kind === "url") {
    let last = 0;
    download = new AbortController();
    try {
      gen = await Generator.load(source.url, {
        ...opts,
        signal: download.signal,
        onProgress: (loaded, total) => {
          const now = performance.now();
          if (now - last > 50 || (total && loaded >= total)) {
            last = now;
            post({ type: "progress", loaded, total });
          }
        },
        onStoreError: (url, err) => post({ type: "storeError", url, name: err.name, message: errorMessage(err) }),
      });
    } finally {
      download = null;
    }
  } else if (source.kind === "files") {
    const files = await readFiles(source.files);
    gen =
      files.kind === "gguf"
        ? Generator.fromGguf(files.bytes, opts)
        : Generator.fromHfFiles(files.config, files.weights, files.tokenizer, { ...opts, tokenizerConfig: files.tokenizerConfig });
  } else {
    throw new Error(`unknown model source ${source.kind}`);
  }
  const loadMs = performance.now() - started;
  const warmUpTokens = warmUp();
  lastLoad = { source, options };
  post({
    type: "loaded",
    info: {
      config: gen.config,
      hasChatTemplate: gen.hasChatTemplate,
      backend: gen.backend,
      threads,
      threadsNote,
      loadMs,
      warmUpTokens,
    },
    state: cacheState(),
    restored,
  });
}

// Loads the model of `lastLoad` again, after `failed` (a load that failed or was cancelled, or
// a run that crashed the engine) left the worker with none: quick, since a downloaded model comes
// from the browser's Cache API, random GPT-2 is built again from its seed and local files are
// still readable. The error posted first says so (`restoring`); then "loaded" (`restored`), or,
// should this fail too, an error with `restoreFailed`, and no model. Not tried after a fatal
// error (the page replaces the worker).
async function restore(failed, err) {
  const previous = lastLoad;
  postError(failed, err, { fatal: false, restoring: true });
  busy = "load";
  try {
    await load(previous, { restored: true });
  } catch (restoreErr) {
    const fatal = isFatal(restoreErr);
    dropModel({ free: !fatal });
    lastLoad = null;
    postError({ type: "load" }, restoreErr, { fatal, restoreFailed: true });
  }
}

// Tells the page that `failed` (a message whose handling threw `err`) failed; `flags` (fatal,
// restoring, restoreFailed) say what follows. The cache's state goes with it while a model is left.
function postError(failed, err, flags) {
  post({
    type: "error",
    during: failed.type,
    runId: failed.runId,
    message: errorMessage(err),
    cancelled: err?.name === "AbortError",
    state: cacheState(),
    ...flags,
  });
}

// Forgets the model, freeing it first unless the instance that holds it crashed or is unusable.
function dropModel({ free }) {
  if (gen && free) gen.free();
  gen = null;
}

// Greedy tokens for about WARM_UP.ms, then a reset, before the model is announced as loaded: the
// browser compiles the hot wasm functions to optimised code (in the background) during the first
// tokens, so without this the first run timed (the cached one in Compare) would pay for it and the
// second would not. Returns the number of tokens it ran.
const WARM_UP = { prompt: "Once upon a time, there was", ms: 300, maxTokens: 16 };

function warmUp() {
  const started = performance.now();
  let tokens = 0;
  try {
    let ev = gen.prefill(WARM_UP.prompt, { maxTokens: WARM_UP.maxTokens, temperature: 0 });
    while (ev) {
      tokens += 1;
      if (performance.now() - started >= WARM_UP.ms) break;
      ev = gen.step();
    }
    gen.finish();
  } catch (err) {
    // A model whose context is shorter than the prompt just goes without; a trap is the load's error.
    if (isFatal(err)) throw err;
  }
  gen.reset();
  return tokens;
}

const STOP_REASONS = { maxTokens: "max tokens", stopToken: "end of text", contextFull: "context full" };

async function generate(msg) {
  const { runId, prompt, run, reset } = msg;
  applySettings(msg);
  if (reset) gen.reset();
  let count = 0;
  const stopped = await stepThrough(
    () => gen.prefill(prompt, run),
    (event) => {
      count += 1;
      post({ type: "token", runId, event, state: cacheState() });
    },
  );
  const stopReason = stopped ? "stopped" : (STOP_REASONS[gen.finish().stopReason] ?? "end");
  post({ type: "done", runId, stopReason, tokens: count, state: cacheState() });
}

// Runs a run to its end: `start()` begins it (prefill or chatPrefill: its first token, or null),
// then one step() per token, `onToken(event)` for each, the worker yielding between tokens so
// that a `stop` message can end it. Returns whether Stop ended it.
async function stepThrough(start, onToken) {
  stopRequested = false;
  let event = start();
  while (event) {
    onToken(event);
    crashIfTestAsks();
    await yieldToEventLoop();
    if (stopRequested) return true;
    event = gen.step();
  }
  return false;
}

// The package's hidden test hook, called once when the test's address asks for it (above): it
// panics inside the engine, and throws the package's crash error, as a crash during step() would.
function crashIfTestAsks() {
  if (crashAfterTokens == null || --crashAfterTokens > 0) return;
  crashAfterTokens = null;
  Generator._crashForTests("panic");
}

// What the worker is busy with, as its refusal of another message says it (the page's own
// controls should not let one through: a refusal means the page lost track of the work).
const BUSY_WITH = {
  load: "loading a model: wait for it to finish, or cancel it",
  generate: "generating: press Stop first",
  quality: "measuring the quality: press Stop first",
  chat: "writing a chat reply: press Stop first",
};

const handlers = {
  load,
  generate,
  quality,
  chat,
  chatReset() {
    gen.reset();
    post({ type: "state", state: cacheState() });
  },
  configure(msg) {
    applySettings(msg);
    post({ type: "state", state: cacheState() });
  },
  reset() {
    gen.reset();
    post({ type: "state", state: cacheState() });
  },
  cacheCost(msg) {
    applySettings({ ...msg, useCache: true });
    post({ type: "cacheCost", stepMs: Array.from(Bench.cacheCost(gen, msg.tokens)) });
  },
  interleaved(msg) {
    post({ type: "interleaved", result: Bench.interleaved(gen, msg.prompt, msg.caches, msg.tokens) });
  },
};

self.onmessage = async ({ data: msg }) => {
  if (msg.type === "stop") {
    stopRequested = true;
    return;
  }
  if (msg.type === "cancel") {
    download?.abort();
    return;
  }
  if (busy) {
    post({ type: "error", during: msg.type, busy: true, message: `busy ${BUSY_WITH[busy] ?? `with ${busy}`}` });
    return;
  }
  if (msg.type !== "load" && !gen) {
    post({ type: "error", during: msg.type, message: "no model is loaded yet" });
    return;
  }
  busy = msg.type;
  try {
    await handlers[msg.type](msg);
  } catch (err) {
    if (errorMessage(err).startsWith(ENGINE_CRASHED) && lastLoad && msg.type !== "load") {
      // The package replaced the crashed wasm instance with a fresh one: load the model again.
      dropModel({ free: false });
      await restore(msg, new Error(`${errorMessage(err)} (reloading the model)`));
      return;
    }
    const fatal = isFatal(err);
    // Unusable: never touch it again. Or built by a load that failed after (it was not announced).
    if (fatal || msg.type === "load") dropModel({ free: !fatal });
    if (msg.type === "load" && !fatal && lastLoad) {
      // A load that failed (a 404, not a model, cancelled) freed the model before it: put that back.
      await restore(msg, err);
      return;
    }
    postError(msg, err, { fatal });
  } finally {
    busy = null;
  }
};

/**
 * The threaded build with its pool started, as `{ mod, exports }`, or null (with `threadsNote`
 * saying why) to use the single-thread one.
 */
async function startThreaded() {
  if (!(askedThreads >= 2)) return null;
  if (!self.crossOriginIsolated) {
    threadsNote = "the page is not cross-origin isolated (no COOP/COEP headers), so one thread";
    return null;
  }
  try {
    const mod = await import(PKG_THREADS);
    const exports = await mod.default();
    // A pool that never starts keeps this worker from saying it is ready: the page then starts
    // another one (app.js, startWorker).
    await mod.initThreadPool(askedThreads);
    threads = askedThreads;
    return { mod, exports };
  } catch (err) {
    threadsNote = `the multi-threaded build did not start (${errorMessage(err)}), so one thread`;
    console.warn(`kvcache worker: ${threadsNote}`);
    return null;
  }
}

try {
  let started = await startThreaded();
  if (!started) {
    const mod = await import(PKG);
    started = { mod, exports: await mod.default() };
  }
  const { mod, exports } = started;
  wasmMemory = exports?.memory ?? null;
  Generator = mod.Generator;
  Bench = mod.Bench;
  post({ type: "ready" });
} catch (err) {
  post({
    type: "error",
    during: "init",
    fatal: true,
    message: `could not start the WebAssembly package from /pkg/ (${errorMessage(err)}). Build it first: npm run build`,
  });
}
