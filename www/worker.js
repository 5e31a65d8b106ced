// The model lives here, off the main thread, so the page never freezes.
//
// Messages in (from app.js), one at a time except `stop`:
//   { type: "load", source, options? }     source: { kind: "url", url } | { kind: "random-gpt2", seed? }
//                                                  | { kind: "files", files: File[] }
//                                          options: Generator options, e.g. { backend: "ndarray" } (bench/)
//   { type: "configure", useCache, cache, window }   change strategy / window (starts the sequence afresh)
//   { type: "generate", runId, prompt, run, useCache, cache, window, reset }
//   { type: "reset" }
//   { type: "cacheCost", cache, window, tokens }   times the strategy alone, no weights (bench/)
//   { type: "interleaved", prompt, caches, tokens } strategies taking turns token by token (bench/)
//   { type: "stop" }                         ends the current generation after the token in flight
//   { type: "cancel" }                       cancels the download in progress (the load then fails
//                                            with an error marked `cancelled`)
// Messages out:
//   { type: "ready" }  { type: "progress", loaded, total }
//   { type: "loaded", info: { config, backend, loadMs }, state }
//   { type: "token", runId, event, state }   { type: "done", runId, stopReason, state }
//   { type: "state", state }  { type: "cacheCost", stepMs }  { type: "interleaved", result }
//   { type: "storeError", url, name, message }  a downloaded file could not be kept in the browser
//                                            (name "QuotaExceededError" when its storage is full); the load goes on
//   { type: "error", message, during, fatal, cancelled }
// `state` is the cache panel's figures plus wasmMemoryBytes, the WebAssembly memory's size
// (it only grows, so after a run it is the instance's peak).

const PKG = "./pkg/kvcache_wasm.js";

let Generator = null;
let Bench = null; // the package's measurements of the cache strategies (bench/)
let wasmMemory = null; // the instance's WebAssembly.Memory
let gen = null; // the Generator, once a model is loaded
let stopRequested = false;
let running = false; // generating: only `stop` is accepted meanwhile
let busy = false; // any message in progress (a load awaits its download)
let lastLoad = null; // the last load message that succeeded, to reload after a crash
let download = null; // the AbortController of the download in progress

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
  // A trap leaves the wasm instance in an unknown state: the page then starts a fresh worker.
  const text = String(err?.message ?? err);
  return (
    err instanceof WebAssembly.RuntimeError ||
    err instanceof RangeError ||
    /unreachable|out of memory|memory access out of bounds|Maximum memory|allocation failed|capacity overflow/i.test(text)
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
    wasmMemoryBytes: wasmMemory?.buffer.byteLength ?? null,
  };
}

// Puts the generator in the requested mode. Changing any of it starts the sequence afresh
// (the package resets the cache when useCache, cacheStrategy or, in window mode, window change).
function applySettings(next) {
  if (next.cache === "window") {
    if (gen.window !== next.window) gen.window = next.window;
    if (gen.cacheStrategy !== "window") gen.cacheStrategy = "window";
  } else if (gen.cacheStrategy !== next.cache) {
    gen.cacheStrategy = next.cache;
  }
  if (gen.useCache !== next.useCache) gen.useCache = next.useCache;
}

async function readFiles(files) {
  const byName = (test) => files.find((f) => test(f.name.toLowerCase()));
  const gguf = byName((n) => n.endsWith(".gguf"));
  if (gguf) return { kind: "gguf", bytes: new Uint8Array(await gguf.arrayBuffer()) };
  const config = byName((n) => n === "config.json");
  const weights = byName((n) => n.endsWith(".safetensors"));
  const tokenizer = byName((n) => n === "tokenizer.json");
  if (!config || !weights || !tokenizer) {
    throw new Error(
      `choose one .gguf file, or config.json + model.safetensors + tokenizer.json together (got: ${files
        .map((f) => f.name)
        .join(", ") || "no files"})`,
    );
  }
  return {
    kind: "hf",
    config: await config.text(),
    weights: new Uint8Array(await weights.arrayBuffer()),
    tokenizer: await tokenizer.text(),
  };
}

// Models load with the default cache (concat, maxSeqLen = min(context, 1024));
// the page then sets the strategy it wants, once it knows maxSeqLen.
async function load({ source, options }) {
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
        : Generator.fromHfFiles(files.config, files.weights, files.tokenizer, opts);
  } else {
    throw new Error(`unknown model source ${source.kind}`);
  }
  const loadMs = performance.now() - started;
  lastLoad = { source, options };
  post({ type: "loaded", info: { config: gen.config, backend: gen.backend, loadMs }, state: cacheState() });
}

const STOP_REASONS = { maxTokens: "max tokens", stopToken: "end of text", contextFull: "context full" };

async function generate(msg) {
  const { runId, prompt, run, reset } = msg;
  applySettings(msg);
  if (reset) gen.reset();
  stopRequested = false;
  running = true;
  let count = 0;
  let stopReason = null;
  try {
    let ev = gen.prefill(prompt, run);
    while (ev) {
      count += 1;
      post({ type: "token", runId, event: ev, state: cacheState() });
      await yieldToEventLoop();
      if (stopRequested) {
        stopReason = "stopped";
        break;
      }
      ev = gen.step();
    }
  } finally {
    running = false;
  }
  if (!stopReason) stopReason = STOP_REASONS[gen.finish().stopReason] ?? "end";
  post({ type: "done", runId, stopReason, tokens: count, state: cacheState() });
}

const handlers = {
  load,
  generate,
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
    const what = running ? "generating: press Stop first" : "loading a model: wait for it to finish";
    post({ type: "error", during: msg.type, message: `busy ${what}` });
    return;
  }
  if (msg.type !== "load" && !gen) {
    post({ type: "error", during: msg.type, message: "no model is loaded yet" });
    return;
  }
  busy = true;
  try {
    await handlers[msg.type](msg);
  } catch (err) {
    if (errorMessage(err).startsWith("the engine crashed") && lastLoad && msg.type !== "load") {
      // The package replaced the crashed wasm instance with a fresh one: load the model again.
      gen = null;
      post({ type: "error", during: msg.type, runId: msg.runId, message: `${errorMessage(err)} (reloading the model)`, fatal: false, state: null });
      try {
        await load(lastLoad);
      } catch (reloadErr) {
        post({ type: "error", during: "load", message: errorMessage(reloadErr), fatal: isFatal(reloadErr), state: null });
      }
      return;
    }
    const fatal = isFatal(err);
    if (fatal && gen) gen = null; // unusable: never touch it again
    post({
      type: "error",
      during: msg.type,
      runId: msg.runId,
      message: errorMessage(err),
      fatal,
      cancelled: err?.name === "AbortError",
      state: fatal ? null : cacheState(),
    });
  } finally {
    busy = false;
  }
};

try {
  const mod = await import(PKG);
  const exports = await mod.default();
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
