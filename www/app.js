// The page: controls, streaming text, the ms/token chart, stats and the KV cache panel.
// The model itself runs in worker.js; this file only sends it messages and draws what comes back.

import uPlot from "./vendor/uplot/uPlot.esm.js";

import { mountCalculator } from "./calculator.js";
import { chatFailed, chatSequenceChanged, chatSnapshot, mountChat, onChatMessage, setChatEnabled, setChatModel } from "./chat.js";
import { fmtBytes, fmtInt, fmtMs, swatchRow } from "./format.js";
import { rowBytes } from "./kv-memory.js";
import { mountQuality, onQualityMessage, qualityFailed, qualitySnapshot, setQualityEnabled, stopQuality } from "./quality.js";
import { MODELS_BASE } from "./site.js";
import { canStore, forgetModel, storageEstimate, storedModels } from "./stored-models.js";

const $ = (id) => document.getElementById(id);

const SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3_FILE = "gemma-3-270m-q4_k_m.gguf";
const CACHE_COLORS = ["#2563eb", "#059669", "#7c3aed", "#0891b2", "#4f46e5", "#65a30d"];
const NOCACHE_COLORS = ["#dc2626", "#ea580c", "#db2777", "#b45309"];

const app = {
  worker: null,
  ready: false,
  outbox: [], // messages waiting for the worker to be ready
  readyTimer: null, // replaces a worker that does not say it is ready (startWorker)
  threads: 1, // the threads the worker was started with (startWorker)
  threadsNote: "", // why one thread, where the page chose it
  status: "starting", // starting | idle | loading | running
  activity: null, // while running: "generate" | "quality" | "chat"
  model: null, // { label, config, chat, download, choice } once loaded
  // { label, chatModel, started, download, previous, chatChecked }; while the worker loads the
  // model before a failed load again, also { restoring: true, failure, cancelled } (startRestore)
  loading: null,
  cache: null, // the generator's last reported state
  runs: [], // every run drawn on the chart
  current: null, // the run in progress
  queue: [], // runs still to start (Compare)
  stopping: false,
  focusBack: null, // the control that started the run in progress, to focus again when it ends
  nextRunId: 1,
  lastError: null,
  notice: null, // the storage note's text, if shown
  broken: null, // why the worker cannot start, if it cannot
};

// ---------------------------------------------------------------- formatting

const mean = (xs) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : null);

// ---------------------------------------------------------------- the worker

// A worker that has not said it is ready after READY_MS is replaced by a new one, with the
// messages waiting for it: Firefox (ESR 153) now and then freezes a worker for good while it
// creates the threaded build's pool workers (docs/performance.md, step 6: its own timers stop
// too, so only the page can notice). Each build gets TRIES starts: after the threaded build's,
// the page settles for one thread; after the single-thread build's, it gives up.
const READY_MS = 10_000;
const TRIES = 3;

function startWorker({ threads = threadCount(), tries = 1, outbox = [], threadsNote = "" } = {}) {
  if (app.worker) app.worker.terminate();
  clearTimeout(app.readyTimer);
  app.ready = false;
  app.outbox = outbox;
  app.threads = threads;
  app.threadsNote = threadsNote;
  const url = new URL("./worker.js", import.meta.url);
  url.searchParams.set("threads", String(threads));
  // Test only: an engine crash on purpose, for the end-to-end test of the reload (worker.js).
  const crashTest = new URLSearchParams(location.search).get("test-crash-after-tokens");
  if (crashTest) url.searchParams.set("test-crash-after-tokens", crashTest);
  app.worker = new Worker(url, { type: "module" });
  app.worker.onmessage = ({ data }) => {
    clearTimeout(app.readyTimer); // its first message ends its start ("ready", or an error)
    onWorkerMessage(data);
  };
  app.worker.onerror = (event) => {
    event.preventDefault?.();
    clearTimeout(app.readyTimer);
    showError(`The model worker failed: ${event.message || "see the browser console"}.`);
    app.model = null;
    app.current = null;
    app.queue = [];
    setStatus("idle");
  };
  app.readyTimer = setTimeout(() => onWorkerSilent(threads, tries), READY_MS);
}

/** The worker started `tries` times with `threads` has not said it is ready: start another. */
function onWorkerSilent(threads, tries) {
  const seconds = READY_MS / 1000;
  if (tries < TRIES) {
    startWorker({ threads, tries: tries + 1, outbox: app.outbox });
  } else if (threads > 1) {
    const threadsNote = `the multi-threaded build did not start (${tries} tries of ${seconds} s), so one thread`;
    startWorker({ threads: 1, outbox: app.outbox, threadsNote });
  } else {
    app.worker.terminate();
    app.broken = `Could not start: the model worker did not answer within ${seconds} s, ${tries} times.`;
    showError(app.broken);
    setStatus("idle");
  }
}

/**
 * The threads the model runs on: `?threads=N` in the address, else two where the machine has
 * them (one forward pass keeps two busy; more threads sleep between matmuls, and waking them
 * cost more than it saved when measured: docs/performance.md, step 6). The worker runs one
 * where the page is not cross-origin isolated.
 */
function threadCount() {
  const asked = Number(new URLSearchParams(location.search).get("threads"));
  if (Number.isInteger(asked) && asked >= 1) return Math.min(asked, 64);
  return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 2));
}

function send(msg) {
  if (app.ready) app.worker.postMessage(msg);
  else app.outbox.push(msg);
}

function onWorkerMessage(msg) {
  switch (msg.type) {
    case "ready":
      app.ready = true;
      for (const queued of app.outbox.splice(0)) app.worker.postMessage(queued);
      if (app.status === "starting") setStatus("idle");
      break;
    case "progress":
      showProgress(msg.loaded, msg.total);
      break;
    case "loaded":
      onLoaded(msg);
      break;
    case "token":
      onToken(msg);
      break;
    case "done":
      onDone(msg);
      break;
    case "state":
      app.cache = msg.state;
      renderCache();
      break;
    case "error":
      onWorkerError(msg);
      break;
    case "qualityDone":
    case "chatDone":
      app.cache = msg.state;
      (msg.type === "chatDone" ? onChatMessage : onQualityMessage)(msg);
      renderCache();
      setStatus("idle");
      break;
    case "storeError":
      onStoreError(msg);
      break;
    default:
      if (!onQualityMessage(msg)) onChatMessage(msg);
  }
}

function onWorkerError(msg) {
  if (msg.during === "load" && msg.cancelled && !msg.restoring) {
    // A download cancelled: the model before it is loaded again (`restoring`), if there was one,
    // and if that is a download cancelled too (restoreFailed), no model is left.
    onLoadCancelled();
    return;
  }
  const where = {
    init: "Could not start",
    load: `Could not load ${app.loading?.label ?? "the model"}${msg.restoreFailed ? " again" : ""}`,
    generate: "Could not generate",
    configure: "Could not change the cache",
    reset: "Could not reset",
    quality: "Could not measure the quality",
    chat: "Could not chat",
    chatReset: "Could not reset the conversation",
  }[msg.during] ?? "Error";
  let text = `${where}: ${pageAdvice(msg.message, msg.during)}`;
  if (msg.fatal && msg.during !== "init") {
    text +=
      " — the WebAssembly instance had to be restarted; load a model again (if memory ran out: a smaller model, or the same with an int8 cache or a sliding window, which hold less).";
  }
  // The model before could not be loaded again either: both failures stay in view.
  if (msg.restoreFailed && app.loading?.failure) text = `${app.loading.failure.replace(/\.?$/, ".")} ${text}`;
  if (!(msg.restoring && msg.cancelled)) showError(text); // a cancelled download is no error
  if (msg.busy) {
    // Refused because the worker is still busy with earlier work (the page's disabled controls
    // should have kept this message back): that work goes on and will end with its own message,
    // so the page keeps its state (running, loading, the model) and its Stop or Cancel.
    return;
  }
  if (msg.during === "load" && !msg.restoring) {
    showNotice(null);
    app.loading = null;
    app.model = null;
    $("progress").value = 0;
    $("progress-text").textContent = "no model loaded";
    $("model-info").textContent = "";
  }
  if (msg.during === "generate" && app.current) {
    const failed = app.current;
    failed.stopReason = "error";
    if (failed.tokens === 0) {
      // Nothing to draw: forget the run and its output block.
      app.runs = app.runs.filter((r) => r !== failed);
      failed.el.closest(".run-block")?.remove();
    } else renderText(failed);
    app.current = null;
    app.queue = [];
    render();
  }
  if (msg.during === "quality") qualityFailed();
  if (msg.during === "chat") chatFailed();
  if (msg.state !== undefined && msg.state !== null) app.cache = msg.state;
  if (msg.restoring) {
    startRestore(msg);
    return;
  }
  if (msg.fatal) {
    app.model = null;
    app.cache = null;
    app.loading = null;
    if (msg.during === "init") {
      app.broken = text;
      setStatus("idle");
      return;
    }
    // The build that was running: after a fallback to one thread, not the threaded one again.
    startWorker({ threads: app.threads, threadsNote: app.threadsNote });
  }
  renderCache();
  setStatus(app.ready || !msg.fatal ? "idle" : "starting");
}

// The engine's advice when a sequence would not fit names the package's options (maxSeqLen, which
// the page does not let the user change; "reset"): the page names its own controls instead.
const WOULD_NOT_FIT =
  /(\d+ tokens \((\d+) so far \+ \d+ new\) would not fit): (?:maxSeqLen is (\d+); reset, raise maxSeqLen, or use the window strategy|(the model's context is \d+ positions); reset, or send fewer tokens)/;

function pageAdvice(message, during) {
  return message
    .replace(WOULD_NOT_FIT, (_, fit, soFar, maxSeq, context) => {
      const chat = during === "chat";
      const advice = [];
      if (Number(soFar) > 0) advice.push(chat ? "press New conversation" : "press Reset the cache");
      advice.push(chat ? "send a shorter message" : "shorten the prompt");
      if (maxSeq) advice.push("choose the sliding window cache, which keeps only the last W tokens");
      const limit = maxSeq ? `this model's max sequence on the page is ${maxSeq} tokens` : context;
      const last = advice.pop();
      return `${fit}: ${limit}; ${advice.length ? `${advice.join(", ")}, or ${last}` : last}`;
    })
    .replace("lower maxSeqLen or the window size", "choose the sliding window cache with a smaller W, or an int8 cache");
}

/**
 * The worker lost its model (a load that failed or was cancelled freed the one before; or the
 * engine crashed) and loads the one it had before again: the page shows it loading, then
 * "loaded" (restored) makes it the page's model again, runs and all (onLoaded).
 */
function startRestore(msg) {
  const previous = app.loading?.previous ?? app.model; // the failed load's previous model, or the one that crashed
  app.loading = {
    label: previous?.label ?? "the model loaded before",
    chatModel: previous?.chat,
    started: performance.now(),
    download: previous?.download ?? false,
    previous,
    chatChecked: app.loading?.chatChecked,
    restoring: true,
    failure: msg.cancelled ? null : app.lastError,
    cancelled: Boolean(msg.cancelled),
  };
  app.model = null;
  app.cache = null;
  showNotice(null);
  $("progress").max = 1;
  $("progress").removeAttribute("value"); // indeterminate, unless the download reports progress
  $("progress-text").textContent = `${msg.cancelled ? "download cancelled: " : ""}loading ${app.loading.label} again…`;
  $("model-info").textContent = "";
  renderCache();
  setStatus("loading");
}

// ---------------------------------------------------------------- status and errors

function setStatus(status, activity = null) {
  const before = app.status;
  const focused = document.activeElement;
  app.status = status;
  app.activity = status === "running" ? activity ?? app.activity : null;
  document.body.dataset.status = status;
  const loaded = Boolean(app.model);
  const idle = status === "idle";
  for (const id of ["run-cache", "run-nocache", "run-compare", "reset"]) $(id).disabled = !(idle && loaded);
  $("clear-runs").disabled = status === "running"; // the run in progress is one of them
  $("stop").disabled = status !== "running";
  $("cancel-load").hidden = !(status === "loading" && app.loading?.download && !app.loading.cancelling);
  const settable = idle || status === "starting";
  for (const id of ["model-select", "load-url", "model-files", "strategy", "kv-dtype"]) $(id).disabled = !settable;
  for (const id of ["window", "sinks"]) $(id).disabled = $("strategy").value !== "window" || !settable;
  setQualityEnabled(idle && loaded);
  setChatEnabled(idle && loaded);
  if (status === "running" && before !== "running") focusStop(focused);
  else if (before === "running" && status !== "running") focusBackAfterRun();
}

// Keyboard users keep their place: the control that starts a run (a Generate button, Measure
// quality, the chat's message) is disabled during it, which would drop focus to the page's body.
// Focus goes to Stop instead, and back to that control when the run ends, if it is still on Stop
// (or was dropped to the body meanwhile): not if the user has moved it elsewhere.
function focusStop(from) {
  app.focusBack = null;
  if (from && from !== document.body && !from.disabled) return; // focus is still somewhere usable
  if (from && from !== document.body) app.focusBack = from;
  $("stop").focus();
}

function focusBackAfterRun() {
  const back = app.focusBack;
  app.focusBack = null;
  const active = document.activeElement;
  if (back && !back.disabled && (!active || active === document.body || active === $("stop"))) back.focus();
}

/** Marks the worker busy with a run of some kind (the quality measure, a chat turn). */
function setActivity(activity) {
  if (activity === "quality") chatSequenceChanged(); // score() starts the sequence afresh
  setStatus("running", activity);
}

function showError(text) {
  app.lastError = text;
  $("error-text").textContent = text;
  $("error").hidden = false;
}

function clearError() {
  app.lastError = null;
  $("error").hidden = true;
  $("error-text").textContent = "";
}

// ---------------------------------------------------------------- loading a model

const query = new URLSearchParams(location.search);
const queryModel = query.get("model");

/** The URL of one of the real models' files: under ?models= if given, else the site's base. */
function modelFileUrl(file) {
  let base = query.get("models") || MODELS_BASE;
  if (!base.endsWith("/")) base += "/";
  return new URL(file, new URL(base, location.href)).href;
}

function modelSource(choice) {
  const abs = (url) => new URL(url, location.href).href;
  switch (choice) {
    case "smollm2":
      return { source: { kind: "url", url: modelFileUrl(SMOLLM2_FILE) }, label: "SmolLM2-135M-Instruct", chat: true, chatModel: true };
    case "gemma3":
      return { source: { kind: "url", url: modelFileUrl(GEMMA3_FILE) }, label: "Gemma 3 270M", chat: false, chatModel: false };
    case "gpt2-random":
      return { source: { kind: "random-gpt2" }, label: "GPT-2 124M (random weights)", chat: false, chatModel: false };
    case "query":
      return { source: { kind: "url", url: abs(queryModel) }, label: queryModel, chat: false };
    default:
      return null;
  }
}

function cacheSettings() {
  const cache = $("strategy").value;
  return {
    cache,
    window: Math.max(1, Math.floor(Number($("window").value) || 1)),
    sinks: cache === "window" ? Math.max(0, Math.floor(Number($("sinks").value) || 0)) : 0,
    kvDtype: $("kv-dtype").value,
  };
}

/** What is wrong with the cache settings, or null. */
function checkCacheSettings({ cache, window, sinks }) {
  const limit = maxSeqLen();
  if (cache !== "window") return null;
  if (limit && window > limit) return `the window W must be between 1 and the model's max sequence (${limit})`;
  if (sinks >= window) return `the sinks must be fewer than the window's W (${window})`;
  return null;
}

// `chat`: whether the prompt goes through the chat template by default; `chatModel`: whether the
// model has one (false: the chat panel explains why it is off; undefined: a model of the user's,
// for which the engine says once it has loaded).
function loadModel({ source, label, chat, chatModel }) {
  if (app.broken) {
    showError(app.broken);
    return;
  }
  clearError();
  // A new model starts a new chart (onLoaded clears the runs once it has loaded): its times are
  // not comparable with another model's. Should this load fail, the model before is loaded again
  // (startRestore) and keeps its runs.
  app.loading = {
    label,
    chatModel,
    started: performance.now(),
    download: source.kind === "url",
    previous: app.model,
    chatChecked: $("chat").checked,
  };
  app.model = null;
  app.cache = null;
  showNotice(null);
  if (chat !== undefined) $("chat").checked = chat;
  $("progress").max = 1;
  if (source.kind === "url") $("progress").value = 0;
  else $("progress").removeAttribute("value"); // nothing to download: indeterminate
  $("progress-text").textContent =
    source.kind === "random-gpt2" ? `building ${label} from seeded random weights…` : `loading ${label}…`;
  $("model-info").textContent = "";
  renderCache();
  setStatus("loading");
  send({ type: "load", source });
}

function showProgress(loaded, total) {
  const bar = $("progress");
  if (total) {
    bar.max = total;
    bar.value = Math.min(loaded, total);
    $("progress-text").textContent = `${fmtBytes(loaded)} / ${fmtBytes(total)}`;
  } else {
    bar.removeAttribute("value"); // indeterminate
    $("progress-text").textContent = `${fmtBytes(loaded)}`;
  }
}

function describeConfig(config) {
  const { architecture: arch, numLayers: layers, numHeads: heads, numKvHeads: kvHeads } = config;
  const { hiddenSize: hidden, vocabSize: vocab } = config;
  const parts = [];
  const names = { gpt2: "GPT-2", llama: "Llama", qwen3: "Qwen3", gemma3: "Gemma 3" };
  if (arch) parts.push(names[arch] ?? String(arch));
  if (layers != null) parts.push(`${layers} layers`);
  if (heads != null) parts.push(`${heads} heads${kvHeads != null && kvHeads !== heads ? ` (${kvHeads} KV)` : ""}`);
  if (hidden != null) parts.push(`width ${hidden}`);
  if (vocab != null) parts.push(`vocabulary ${vocab}`);
  const ctx = maxSeqLen();
  if (ctx) parts.push(`max sequence ${ctx}`);
  return parts.join(" · ");
}

function onLoaded(msg) {
  const seconds = ((performance.now() - (app.loading?.started ?? performance.now())) / 1000).toFixed(1);
  const loading = app.loading ?? {};
  const restored = Boolean(msg.restored);
  app.model = {
    label: loading.label ?? "model",
    chat: loading.chatModel ?? msg.info.hasChatTemplate,
    config: msg.info.config ?? {},
    warmUpTokens: msg.info.warmUpTokens ?? 0,
    download: loading.download ?? false,
    choice: restored ? loading.previous?.choice : $("model-select").value,
  };
  app.loading = null;
  if (restored) {
    // The model before a failed load, back: the prompt's chat setting and the picker as they were
    // with it (the picker stays on "Your own model…", whose URL field may need correcting).
    if (loading.chatChecked !== undefined) $("chat").checked = loading.chatChecked;
    const choice = app.model.choice;
    if (choice && $("model-select").value !== "custom" && [...$("model-select").options].some((o) => o.value === choice)) {
      $("model-select").value = choice;
      $("custom-model").hidden = choice !== "custom";
    }
  } else {
    // A new model, a new chart: its times are not comparable with another model's (and the
    // speedup would pair a cached run of one with an uncached run of the other).
    clearRuns();
    // A model of the user's without a chat template takes plain text: the box, ticked for the
    // model before, would make its first run fail.
    if (!app.model.chat) $("chat").checked = false;
  }
  app.cache = msg.state;
  const bar = $("progress");
  bar.max = 1;
  bar.value = 1;
  const n = app.model.warmUpTokens;
  const warm = n ? `, engine warmed up on ${n} token${n === 1 ? "" : "s"}` : "";
  $("progress-text").textContent = restored
    ? `${loading.cancelled ? "download cancelled: " : ""}${app.model.label} loaded again (${seconds} s${warm})`
    : `${app.model.label} ready (${seconds} s${warm})`;
  const threads = msg.info.threads > 1 ? ` · ${msg.info.threads} threads` : " · one thread";
  $("model-info").textContent = describeConfig(app.model.config) + (msg.info.backend ? ` · burn ${msg.info.backend} backend` : "") + threads;
  $("model-info").title = msg.info.threadsNote || app.threadsNote;
  $("model-terms").hidden = app.model.config.architecture !== "gemma3";
  const limit = maxSeqLen();
  if (limit) {
    $("window").max = limit;
    if (Number($("window").value) > limit) $("window").value = Math.max(1, Math.floor(limit / 2));
  }
  setChatModel(app.model);
  renderCache();
  setStatus("idle");
  renderStored();
  const settings = cacheSettings();
  if (settings.cache !== "concat" || settings.kvDtype !== "f32") send({ type: "configure", useCache: true, ...settings });
}

function maxSeqLen() {
  return app.cache?.maxSeqLen ?? null;
}

// ---------------------------------------------------------------- runs

function runLabel(useCache, { cache, window, sinks, kvDtype }) {
  if (!useCache) return "no cache";
  const strategy = cache === "window" ? `window(${window}${sinks ? ` + ${sinks} sinks` : ""})` : cache;
  return `cache ${strategy}${kvDtype && kvDtype !== "f32" ? ` ${kvDtype}` : ""}`;
}

function runOptions() {
  const num = (id) => Number($(id).value);
  return {
    maxTokens: Math.floor(num("max-tokens")),
    temperature: num("temperature"),
    topK: Math.floor(num("top-k")),
    topP: num("top-p"),
    seed: Math.floor(num("seed")),
    chat: $("chat").checked,
  };
}

function checkInputs(run) {
  if (!$("prompt").value.trim()) return "the prompt is empty: type something for the model to continue";
  if (!Number.isInteger(run.maxTokens) || run.maxTokens < 1) return "max new tokens must be a whole number of at least 1";
  if (!(run.temperature >= 0)) return "temperature must be 0 (greedy) or more";
  if (!(run.topP > 0 && run.topP <= 1)) return "top-p must be in (0, 1]";
  if (!(run.topK >= 0)) return "top-k must be 0 (off) or more";
  if (!(run.seed >= 0)) return "the seed must be 0 or more";
  return checkCacheSettings(cacheSettings());
}

function startRuns(specs) {
  clearError();
  const problem = checkInputs(runOptions());
  if (problem) {
    showError(`Could not generate: ${problem}.`);
    return;
  }
  $("output").replaceChildren();
  app.queue = specs;
  app.stopping = false;
  chatSequenceChanged();
  setStatus("running", "generate");
  nextRun();
}

function nextRun() {
  const spec = app.queue.shift();
  if (!spec || app.stopping) {
    app.queue = [];
    app.current = null;
    render();
    setStatus("idle");
    return;
  }
  const settings = cacheSettings();
  const base = runLabel(spec.useCache, settings);
  const same = app.runs.filter((r) => r.baseLabel === base).length;
  const pool = spec.useCache ? CACHE_COLORS : NOCACHE_COLORS;
  const used = app.runs.filter((r) => r.useCache === spec.useCache).length;
  const prompt = $("prompt").value;
  const run = {
    id: app.nextRunId++,
    baseLabel: base,
    label: same ? `${base} #${same + 1}` : base,
    useCache: spec.useCache,
    color: pool[used % pool.length],
    prompt,
    points: [], // [position, ms] of every token after the first
    ttft: null,
    tokens: 0,
    text: "",
    stopReason: null,
  };
  app.runs.push(run);
  app.current = run;
  run.el = addOutputBlock(run);
  scheduleRender(true);
  send({ type: "generate", runId: run.id, prompt, run: runOptions(), useCache: spec.useCache, ...settings, reset: spec.reset });
}

function addOutputBlock(run) {
  const block = document.createElement("div");
  block.className = "run-block";
  const head = document.createElement("div");
  head.className = "run-label";
  head.style.color = run.color;
  head.textContent = run.label;
  const body = document.createElement("div");
  body.className = "run-text";
  const prompt = document.createElement("span");
  prompt.className = "prompt-echo";
  prompt.textContent = run.prompt;
  const gen = document.createElement("span");
  gen.className = "gen";
  body.append(prompt, gen);
  block.append(head, body);
  $("output").append(block);
  return gen;
}

function onToken({ runId, event, state }) {
  const run = app.runs.find((r) => r.id === runId);
  if (!run) return;
  run.tokens += 1;
  if (run.ttft == null) run.ttft = event.ms;
  else run.points.push([event.position, event.ms]);
  run.text += event.text;
  app.cache = state;
  scheduleRender();
}

/** Shows the run's text so far, following it unless the reader scrolled up. */
function renderText(run) {
  if (run.el.textContent.length === run.text.length) return;
  const out = $("output");
  const atBottom = out.scrollHeight - out.scrollTop - out.clientHeight < 24;
  run.el.textContent = run.text;
  if (atBottom) out.scrollTop = out.scrollHeight;
}

function onDone({ runId, stopReason, state }) {
  const run = app.runs.find((r) => r.id === runId);
  if (run) {
    run.stopReason = stopReason;
    renderText(run);
  }
  app.cache = state;
  renderCache();
  scheduleRender();
  nextRun();
}

/** Forgets every run: the chart's lines, the table's rows, the speedup and the text below. */
function clearRuns() {
  app.runs = [];
  $("output").replaceChildren();
  scheduleRender(true);
}

// ---------------------------------------------------------------- chart and stats

let chart = null;
let chartRuns = -1;
let renderTimer = null;
let renderedAt = -Infinity;

// While a run streams, the page paints at most this often. Painting every token (its text, the
// chart, the table) takes CPU time from the model's threads where the machine has no core to
// spare, so the chart would show the page's own cost: docs/performance.md, "The page's paint".
const PAINT_MS = 200;

function scheduleRender(rebuild = false) {
  if (rebuild) chartRuns = -1;
  if (renderTimer !== null) return;
  const wait = app.current ? Math.max(0, renderedAt + PAINT_MS - performance.now()) : 0;
  renderTimer = setTimeout(() => requestAnimationFrame(render), wait);
}

/** Paints now what scheduleRender would paint later (when the page goes idle, it shows the end). */
function render() {
  clearTimeout(renderTimer);
  renderTimer = null;
  renderedAt = performance.now();
  if (app.current) renderText(app.current);
  renderChart();
  renderStats();
  renderCache();
}

function chartData() {
  const xs = [...new Set(app.runs.flatMap((r) => r.points.map((p) => p[0])))].sort((a, b) => a - b);
  const ys = app.runs.map((r) => {
    const byX = new Map(r.points);
    return xs.map((x) => (byX.has(x) ? byX.get(x) : null));
  });
  return [xs, ...ys];
}

function chartSize() {
  const box = $("chart");
  return { width: Math.max(280, box.clientWidth), height: 300 };
}

function renderChart() {
  const box = $("chart");
  const data = chartData();
  box.classList.toggle("empty", !app.runs.length);
  if (chart && chartRuns === app.runs.length) {
    chart.setData(data);
    return;
  }
  chart?.destroy();
  chartRuns = app.runs.length;
  const opts = {
    ...chartSize(),
    scales: { x: { time: false }, y: $("log-scale").checked ? { distr: 3 } : {} },
    cursor: { drag: { x: true, y: false } },
    legend: { show: true },
    axes: [
      {
        label: "token position in the sequence",
        stroke: "#475569",
        grid: { stroke: "#e2e8f0" },
        incrs: [1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000],
      },
      {
        label: "ms per token",
        stroke: "#475569",
        grid: { stroke: "#e2e8f0" },
        size: 60,
        values: (u, ticks) =>
          ticks.map((t) => (t == null ? "" : t === 0 || t >= 10 ? t.toFixed(0) : String(+t.toPrecision(2)))),
      },
    ],
    series: [
      { label: "position", value: (u, v) => (v == null ? "—" : String(v)) },
      ...app.runs.map((r) => ({
        label: r.label,
        stroke: r.color,
        width: 2,
        spanGaps: true,
        points: { show: true, size: 4, fill: r.color },
        value: (u, v) => (v == null ? "—" : fmtMs(v)),
      })),
    ],
  };
  chart = new uPlot(opts, data, box);
}

function runStats(run) {
  const decode = run.points.map((p) => p[1]);
  const m = mean(decode);
  return { meanDecode: m, tokensPerSec: m ? 1000 / m : null };
}

// Cache on over cache off: mean decode ms of the latest run without the cache over the latest
// run with it, on the positions both reached (so a longer run is not compared with a shorter one).
function speedup() {
  const off = [...app.runs].reverse().find((r) => !r.useCache && r.points.length > 0);
  if (!off) return null;
  const offByX = new Map(off.points);
  for (const on of [...app.runs].reverse()) {
    if (!on.useCache) continue;
    const shared = on.points.filter(([x]) => offByX.has(x));
    if (!shared.length) continue;
    const onMs = mean(shared.map((p) => p[1]));
    const offMs = mean(shared.map(([x]) => offByX.get(x)));
    if (!onMs || !offMs) continue;
    return { factor: offMs / onMs, on, off, onMs, offMs, from: shared[0][0], to: shared.at(-1)[0] };
  }
  return null;
}

function renderStats() {
  const body = $("stats-body");
  if (!app.runs.length) {
    body.innerHTML = `<tr class="empty"><td colspan="6" class="muted">No runs yet: press <em>Compare both</em>.</td></tr>`;
  } else {
    body.replaceChildren(
      ...app.runs.map((run) => {
        const s = runStats(run);
        const cells = [
          run.label,
          String(run.tokens),
          fmtMs(run.ttft),
          s.meanDecode == null ? "—" : `${fmtMs(s.meanDecode)}/token`,
          s.tokensPerSec == null ? "—" : s.tokensPerSec.toFixed(1),
          run.stopReason ?? (run === app.current ? "running…" : "—"),
        ];
        return swatchRow(cells, run.color);
      }),
    );
  }
  const sp = speedup();
  if (sp) {
    $("speedup").textContent = `${sp.factor.toFixed(1)}×`;
    $("speedup-detail").textContent =
      `mean decode ${fmtMs(sp.offMs)}/token without the cache, ${fmtMs(sp.onMs)}/token with it ` +
      `(“${sp.off.label}” and “${sp.on.label}” at positions ${sp.from}–${sp.to})`;
  } else {
    $("speedup").textContent = "—";
    $("speedup-detail").textContent = "run with and without the cache from the same start (Compare both) to see it";
  }
}

// ---------------------------------------------------------------- the KV cache panel

function bytesPerToken() {
  const c = app.cache;
  if (c?.cacheLen > 0 && c.cacheBytesFormula > 0) return c.cacheBytesFormula / c.cacheLen;
  const f = kvShape();
  return f ? 2 * f.layers * f.kvHeads * rowBytes(f.headDim, c?.kvDtype ?? "f32") : null;
}

/** One cached row (a token's key, or value, in one head) as the formula writes it. */
function rowText(headDim, dtype) {
  if (dtype === "int8") return `(${headDim} × 1 byte + its scales = ${rowBytes(headDim, dtype)} bytes)`;
  return `${headDim} dims × ${rowBytes(headDim, dtype) / headDim} bytes`;
}

function kvShape() {
  const config = app.model?.config;
  if (!config) return null;
  const { numLayers: layers, numKvHeads: kvHeads, headDim } = config;
  if (!layers || !kvHeads || !headDim) return null;
  return { layers, kvHeads, headDim };
}

function renderCache() {
  const c = app.cache;
  const len = c?.cacheLen ?? 0;
  const held = c?.cacheBytes ?? 0;
  const formula = c?.cacheBytesFormula ?? 0;
  $("cache-len").textContent = String(len);
  $("position").textContent = String(c?.position ?? 0);
  $("cache-bytes").textContent = `${fmtBytes(held)} held · ${fmtBytes(formula)} by the formula`;

  const perToken = bytesPerToken();
  const limit = maxSeqLen();
  const capacity = perToken && limit ? perToken * limit : Math.max(held, formula);
  const pct = (n) => (capacity > 0 ? `${Math.min(100, (100 * n) / capacity)}%` : "0%");
  $("bar-alloc").style.width = pct(held);
  $("bar-used").style.width = pct(formula);
  $("bar-capacity").textContent = perToken && limit ? `full bar: ${limit} tokens = ${fmtBytes(capacity)}` : "";

  const shape = kvShape();
  const dtype = c?.kvDtype ?? "f32";
  $("formula").textContent = shape
    ? `formula (${dtype}): 2 (K, V) × ${shape.layers} layers × ${shape.kvHeads} KV head${shape.kvHeads === 1 ? "" : "s"} × ${len} tokens × ${rowText(shape.headDim, dtype)} = ${fmtInt(formula)} bytes`
    : "";

  renderLayers(c);

  let note = "";
  if (!app.model) note = "";
  else if (c && c.useCache === false) note = "The last run did not use the cache: nothing is stored.";
  else if ((c?.position ?? 0) > 0) note = "The next run continues this sequence; Reset starts afresh.";
  else note = "Empty: the next run starts from scratch.";
  $("cache-note").textContent = note;
}

// One small bar per layer: the entries each holds. A model with local layers
// (Gemma 3) keeps only its window in them; the note says what that saves
// against a cache holding every token in every layer.
function renderLayers(c) {
  const lens = c?.cacheLayerLens ?? [];
  const windows = app.model?.config?.layerWindows ?? [];
  const hybrid = windows.some((w) => w != null);
  $("layers").hidden = !(hybrid || lens.length > 1) || !app.model;
  const bars = $("layer-bars");
  const longest = Math.max(1, ...lens);
  bars.replaceChildren(
    ...lens.map((len, i) => {
      const bar = document.createElement("span");
      bar.className = windows[i] != null ? "layer local" : "layer";
      bar.style.height = `${(100 * len) / longest}%`;
      bar.title = `layer ${i}: ${len} entries${windows[i] != null ? ` (its own window: ${windows[i]})` : ""}`;
      return bar;
    }),
  );
  const shape = kvShape();
  let note = "";
  if (hybrid && shape && lens.length) {
    const local = windows.filter((w) => w != null).length;
    const perEntry = 2 * shape.kvHeads * rowBytes(shape.headDim, c?.kvDtype ?? "f32");
    const uniform = lens.length * Math.max(...lens, 0) * perEntry;
    const saved = uniform - (c?.cacheBytesFormula ?? 0);
    note =
      `${local} of ${lens.length} layers attend over a window of their own (${Math.min(...windows.filter((w) => w != null))} positions) ` +
      `and keep only that; the others follow the strategy. Against every layer holding every token: ${fmtBytes(Math.max(0, saved))} saved.`;
  } else if (lens.length) {
    const seen = c?.position ?? 0;
    note = lens[0] < seen ? `Every layer holds the same ${lens[0]} of the ${seen} tokens seen: the window's.` : "Every layer holds every token.";
  }
  $("layer-note").textContent = note;
}

// ---------------------------------------------------------------- models kept in the browser

function showNotice(text) {
  app.notice = text;
  $("storage-note").textContent = text ?? "";
  $("storage-note").hidden = !text;
}

function onLoadCancelled() {
  app.loading = null;
  app.model = null;
  app.cache = null;
  $("progress").value = 0;
  $("progress-text").textContent = "download cancelled: no model loaded";
  $("model-info").textContent = "";
  renderCache();
  setStatus("idle");
  renderStored();
}

/** A downloaded file could not be kept: say why, and that the model runs all the same. */
function onStoreError({ url, name, message }) {
  const file = decodeURIComponent(new URL(url).pathname.split("/").filter(Boolean).at(-1) ?? url);
  const full = name === "QuotaExceededError" || /quota|storage.*full/i.test(message);
  const why = full ? ": this site's storage in the browser is full" : ` (${message})`;
  showNotice(
    `${file} could not be kept in this browser${why}. The model is loaded and runs; it will be downloaded again next time.` +
      (full ? " Delete models kept here to make room." : ""),
  );
}

async function renderStored() {
  const list = $("stored-list");
  if (!canStore()) {
    list.replaceChildren(Object.assign(document.createElement("li"), { className: "empty", textContent: "This browser gives the page no storage here (it needs https or localhost)." }));
    return;
  }
  let models;
  try {
    models = await storedModels();
  } catch (err) {
    models = [];
    $("stored-usage").textContent = `Could not read the browser's storage: ${err.message}`;
  }
  if (!models.length) {
    list.replaceChildren(Object.assign(document.createElement("li"), { className: "empty", textContent: "Nothing yet: a downloaded model is kept here, so the next visit loads it without the network." }));
  } else {
    list.replaceChildren(
      ...models.map((m) => {
        const li = document.createElement("li");
        li.dataset.url = m.url;
        li.dataset.bytes = String(m.bytes);
        li.title = m.url;
        const name = Object.assign(document.createElement("span"), { className: "name", textContent: m.name });
        const size = Object.assign(document.createElement("span"), { className: "size", textContent: fmtBytes(m.bytes) });
        const del = Object.assign(document.createElement("button"), { type: "button", className: "link", textContent: "delete" });
        del.setAttribute("aria-label", `Delete ${m.name} from this browser`);
        li.append(name, size, del);
        return li;
      }),
    );
  }
  const estimate = await storageEstimate();
  if (estimate) $("stored-usage").textContent = `This site uses ${fmtBytes(estimate.usage)} of the ${fmtBytes(estimate.quota)} the browser allows it.`;
}

async function onStoredClick(event) {
  const li = event.target.closest("button") && event.target.closest("li[data-url]");
  if (!li) return;
  const model = (await storedModels()).find((m) => m.url === li.dataset.url);
  if (model) await forgetModel(model);
  await renderStored();
}

// ---------------------------------------------------------------- wiring

function onModelSelect() {
  const choice = $("model-select").value;
  $("custom-model").hidden = choice !== "custom";
  const picked = modelSource(choice);
  if (picked) loadModel(picked);
}

function onModelFiles() {
  const files = [...$("model-files").files];
  if (!files.length) return;
  const names = files.map((f) => f.name).join(" + ");
  loadModel({ source: { kind: "files", files }, label: names });
  $("model-files").value = "";
}

function onLoadUrl() {
  // Enter in the URL field comes here too: the button's check holds for both (disabled while a
  // run or another load is in progress).
  if ($("load-url").disabled) return;
  const url = $("model-url").value.trim();
  if (!url) {
    showError("Could not load: type the URL of a .gguf file or of a model folder first.");
    return;
  }
  let abs;
  try {
    abs = new URL(url, location.href).href;
  } catch {
    showError(`Could not load: “${url}” is not a URL.`);
    return;
  }
  loadModel({ source: { kind: "url", url: abs }, label: url });
}

function onStrategy() {
  setStatus(app.status); // enables or disables the window and sinks inputs
  const settings = cacheSettings();
  const problem = checkCacheSettings(settings);
  if (problem) {
    showError(`Could not change the cache: ${problem}.`);
    return;
  }
  clearError();
  if (app.model && app.status === "idle") {
    chatSequenceChanged();
    send({ type: "configure", useCache: true, ...settings });
  }
}

function updateSamplingSummary() {
  const r = runOptions();
  const parts = [];
  if (r.temperature > 0) {
    parts.push(`temperature ${r.temperature}`);
    if (r.topK > 0) parts.push(`top-k ${r.topK}`);
    if (r.topP < 1) parts.push(`top-p ${r.topP}`);
    parts.push(`seed ${r.seed}`);
  }
  $("sampling-summary").textContent = parts.length ? parts.join(", ") : "greedy";
}

function wire() {
  $("model-select").addEventListener("change", onModelSelect);
  $("load-url").addEventListener("click", onLoadUrl);
  $("model-url").addEventListener("keydown", (e) => e.key === "Enter" && onLoadUrl());
  $("model-files").addEventListener("change", onModelFiles);
  $("run-cache").addEventListener("click", () => startRuns([{ useCache: true, reset: false }]));
  $("run-nocache").addEventListener("click", () => startRuns([{ useCache: false, reset: false }]));
  $("run-compare").addEventListener("click", () =>
    startRuns([
      { useCache: true, reset: true },
      { useCache: false, reset: true },
    ]),
  );
  $("stop").addEventListener("click", () => {
    app.stopping = true;
    app.queue = [];
    stopQuality(); // the quality measure may still be fetching its passage
    if (app.worker) app.worker.postMessage({ type: "stop" });
  });
  $("reset").addEventListener("click", () => {
    clearError();
    chatSequenceChanged();
    send({ type: "reset" });
  });
  for (const id of ["strategy", "window", "sinks", "kv-dtype"]) $(id).addEventListener("change", onStrategy);
  $("clear-runs").addEventListener("click", clearRuns); // disabled during a run (setStatus)
  $("error-close").addEventListener("click", clearError);
  $("cancel-load").addEventListener("click", () => {
    // Once: a second cancel could reach the worker after it has started to load the model before
    // again, and cancel that instead (startRestore offers Cancel afresh if that one downloads).
    if (app.loading) app.loading.cancelling = true;
    setStatus(app.status);
    app.worker?.postMessage({ type: "cancel" });
  });
  $("stored-list").addEventListener("click", onStoredClick);
  $("log-scale").addEventListener("change", () => scheduleRender(true));
  for (const id of ["temperature", "top-k", "top-p", "seed"]) $(id).addEventListener("input", updateSamplingSummary);
  new ResizeObserver(() => chart?.setSize(chartSize())).observe($("chart"));
}

// For the end-to-end test and the curious: the chart's data and the page's state.
window.__kvcache = {
  get series() {
    return app.runs.map((r) => ({ label: r.label, useCache: r.useCache, points: r.points.map((p) => [...p]), ttft: r.ttft, tokens: r.tokens, text: r.text, stopReason: r.stopReason }));
  },
  get status() {
    return app.status;
  },
  get model() {
    return app.model && { label: app.model.label, config: app.model.config, warmUpTokens: app.model.warmUpTokens };
  },
  get cache() {
    return app.cache && { ...app.cache };
  },
  get error() {
    return app.lastError;
  },
  get notice() {
    return app.notice;
  },
  get quality() {
    return qualitySnapshot();
  },
  get chat() {
    return chatSnapshot();
  },
};

wire();
mountCalculator();
const panelContext = {
  send,
  cacheSettings,
  checkCacheSettings,
  runOptions,
  setActivity,
  endActivity: () => setStatus("idle"), // an activity that ended before it reached the worker
  showError,
  clearError,
  isIdle: () => app.status === "idle" && Boolean(app.model),
  paintMs: PAINT_MS,
};
mountQuality(panelContext);
mountChat(panelContext);
renderStored();
startWorker();
setStatus("starting");
renderStats();
renderChart();
renderCache();

if (queryModel) {
  const known = ["smollm2", "gemma3", "gpt2-random"].includes(queryModel);
  if (!known) {
    const opt = document.createElement("option");
    opt.value = "query";
    opt.textContent = `From the address bar: ${queryModel}`;
    $("model-select").append(opt);
  }
  $("model-select").value = known ? queryModel : "query";
}
onModelSelect();
