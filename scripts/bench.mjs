#!/usr/bin/env node
// `npm run bench`: per-token latency with the KV cache on and off, natively and in WebAssembly
// inside headless Chromium, against wllama (llama.cpp compiled to wasm) on the same GGUF.
//
//   npm run bench                       every scenario; writes bench/results.json, results.md, plot.svg, cache-cost.svg
//                                       and the benchmark block of README.md
//   npm run bench -- --quick            16 tokens per run, into bench/out/quick/ (git ignores it): a smoke test
//   npm run bench -- --only 'wasm.*smollm2'   only the runs whose id matches (a regex); README left alone
//   npm run bench -- --browser firefox  the in-browser runs (ours and wllama's) in Firefox instead of Chromium
//   node scripts/bench-report.mjs --readme    redraws results.md, plot.svg and README's block from results.json
//
// Native runs go through the CLI (`target/release/kvcache generate --json`), one process per run.
// Browser runs open bench/index.html, served with the demo page by scripts/serve.mjs, which drives
// the page's own Web Worker (www/worker.js): a fresh worker per run, the model loaded the way the
// page loads it, then prefill() and step() token by token. The peer, wllama, runs in the same
// browser on the same GGUF, single thread, CPU only, greedy, EOS ignored.
//
// Native llama.cpp is the second peer (runs `peer-*`; scripts/llama-peer.py, section in results.md):
// one thread, decode and the prefill of bench/prefill.txt, on SmolLM2's Q4_1 file and its Q8_0
// variant (scripts/make-q8_0.py), each beside the same runs of ours natively and in wasm. wllama
// decodes those files too (runs `peer-*-wllama*`, their own section in results.md): one thread on
// Q8_0 (on Q4_1 that is the main run `wllama-smollm2`), and two threads on each, its pthreads build
// (the page is cross-origin isolated), against ours in wasm on one and, on our multi-threaded build
// (pkg/threads/), on two (runs `peer-*-wasm-2threads`).
//
// The run `compare-smollm2-page` is the demo page itself (www/) as a visitor meets it: opened at its
// defaults (SmolLM2 with the chat template, its default prompt, 128 tokens, the threads it picks on
// this cross-origin isolated server), then "Compare both" clicked and timed until both runs are done.
// Quick mode leaves it out (the page's defaults are what it measures); `--only compare` runs it alone
// (about two minutes on 2 cores).
//
// It builds what is missing first: the CLI (cargo build --release), pkg/ and pkg/threads/ (npm run
// build, about ten minutes), the model (scripts/fetch-model.sh), llama-cpp-python in bench/.venv (bench/requirements-peer.txt
// built with -DGGML_NATIVE=ON and without AMX, 5 to 15 minutes; if that fails the peer is marked absent) and the Q8_0
// file. The whole run takes about fifteen minutes on 2 cores.

import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";

import { pairedFigures, pairedSummary, threadsText, writeReport } from "./bench-report.mjs";
import { BROWSERS, launch } from "./browsers.mjs";
import { startServer } from "./serve.mjs";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const CLI = join(REPO, "target/release/kvcache");
const MODEL_FILE = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA3_FILE = "models/gemma-3-270m-q4_k_m.gguf";
const WLLAMA_DIR = join(REPO, "node_modules/@wllama/wllama");
const Q8_FILE = "models/SmolLM2-135M-Instruct.Q8_0.gguf";
const PEER_PYTHON = join(REPO, "bench/.venv/bin/python");
// llama.cpp built for this CPU, except its AMX matmul (`__AMX_INT8__`, from -march=native on
// Xeons that have AMX), which crashes with a segmentation fault in the 2-core Xeon VM this
// project is measured on; elsewhere undefining the macro changes nothing.
const PEER_CMAKE_ARGS = "-DGGML_NATIVE=ON -DCMAKE_C_FLAGS=-U__AMX_INT8__ -DCMAKE_CXX_FLAGS=-U__AMX_INT8__";
// What bench/.venv's llama-cpp-python was built with: a change rebuilds it.
const PEER_STAMP = join(REPO, "bench/.venv/peer-cmake-args");
const PREFILL_TEXT = readFileSync(join(REPO, "bench/prefill.txt"), "utf8");

// ------------------------------------------------------------------ options

const argv = process.argv.slice(2);
const flag = (name) => argv.includes(name);
const option = (name) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
if (flag("--help") || flag("-h")) {
  console.log(readFileSync(fileURLToPath(import.meta.url), "utf8").split("\n").slice(1, 10).join("\n").replace(/^\/\/ ?/gm, ""));
  process.exit(0);
}
const QUICK = flag("--quick");
const ONLY = option("--only") ? new RegExp(option("--only")) : null;
const BROWSER = option("--browser") ?? "chromium";
if (!BROWSERS[BROWSER]) throw new Error(`--browser takes ${Object.keys(BROWSERS).join(" or ")}, not ${BROWSER}`);
// Relative to the repository, or absolute.
const OUT = resolve(REPO, option("--out") ?? (QUICK ? "bench/out/quick" : "bench"));

// ------------------------------------------------------------------ scenarios

const WINDOW = 64;

const MODELS = [
  {
    id: "gpt2",
    label: "GPT-2 124M (random weights)",
    prompt: "Hello, I am",
    tokens: 200,
    // The page builds GPT-2 from weights seed 1; the CLI is told the same, so both run one model.
    cli: ["--model", "gpt2-124m-random", "--weights-seed", "1"],
    source: { kind: "random-gpt2", seed: 1 },
  },
  {
    id: "smollm2",
    label: "SmolLM2-135M-Instruct (Q4_1 GGUF)",
    prompt: "Once upon a time",
    tokens: 128,
    cli: ["--model", MODEL_FILE],
    source: { kind: "url", url: `/${MODEL_FILE}` },
    gguf: `/${MODEL_FILE}`,
  },
  {
    id: "gemma3",
    label: "Gemma 3 270M (Q4_K_M GGUF)",
    prompt: "Once upon a time",
    tokens: 128,
    cli: ["--model", GEMMA3_FILE],
    source: { kind: "url", url: `/${GEMMA3_FILE}` },
    gguf: `/${GEMMA3_FILE}`,
    // Only what its target needs (decode against wllama's), with the cache on; no strategy runs.
    combos: ["native-flex-prealloc", "wasm-flex-prealloc"],
  },
];

const CACHES = ["off", "concat", "prealloc", "window"];

// Without the cache every token re-runs the whole sequence, so those runs dominate the budget.
// The targets need, per model, one full-length cache-off run in wasm: the faster backend there.
// GPT-2's f32 weights go through burn's GEMM, flex's (SIMD128) the faster in wasm; SmolLM2's
// quantized layers go through the dequantized tiles (src/quant/tiled.rs) on either backend, and
// flex runs the rest of its uncached pass faster. The other cache-off runs stop early; the table
// says so.
const CUT = {
  "native-ndarray-gpt2-off": 64,
  "native-ndarray-smollm2-off": 64,
  "wasm-ndarray-gpt2-off": 48,
  "wasm-ndarray-smollm2-off": 64,
};

function scenarios() {
  const runs = [];
  for (const env of ["native", "wasm"]) {
    for (const model of MODELS) {
      for (const backend of ["flex", "ndarray"]) {
        for (const cache of CACHES) {
          if (model.combos && !model.combos.includes(`${env}-${backend}-${cache}`)) continue;
          const id = `${env}-${backend}-${model.id}-${cache}`;
          let tokens = CUT[id] ?? model.tokens;
          if (QUICK) tokens = Math.min(tokens, 16);
          runs.push({
            id,
            env,
            backend,
            model: model.id,
            modelLabel: model.label,
            prompt: model.prompt,
            cache,
            window: cache === "window" ? WINDOW : null,
            fullTokens: model.tokens,
            maxTokens: tokens,
            cut: tokens < model.tokens && !QUICK,
          });
        }
      }
    }
  }
  for (const model of MODELS.filter((m) => m.gguf)) {
    runs.push({
      id: `wllama-${model.id}`,
      env: "wllama",
      backend: "llama.cpp",
      model: model.id,
      modelLabel: model.label,
      prompt: model.prompt,
      cache: "llama.cpp",
      window: null,
      fullTokens: model.tokens,
      maxTokens: QUICK ? 16 : model.tokens,
      cut: false,
    });
  }
  return ONLY ? runs.filter((r) => ONLY.test(r.id)) : runs;
}

// Native llama.cpp beside ours on SmolLM2's two files: decode of the SmolLM2 scenario and the prefill
// of bench/prefill.txt (about 400 tokens). Ids end in the engine (`peer-smollm2-q4_1-wasm`), so that
// `--only peer` selects them all and the main runs' filters (`wasm.*smollm2`) none.
// wllama decodes the same files in the browser (no prefill): `peer-smollm2-q8_0-wllama` with one
// thread (on Q4_1 the main run `wllama-smollm2` is that run), `peer-smollm2-<file>-wllama-2threads`
// with two. Ours in wasm runs them on one thread and, on the multi-threaded build, on two
// (`peer-smollm2-<file>-wasm-2threads`: decode and prefill, as on one). Their ids end in the engine
// and its threads: `--only peer` still selects every run on these files, `--only wllama` every
// wllama run (main and peer), `--only 2threads` the two-thread ones, ours and wllama's.
const PEER_FILES = { q4_1: MODEL_FILE, q8_0: Q8_FILE };

function peerScenarios() {
  const list = [];
  for (const kind of ["llamacpp", "native", "wasm"]) {
    for (const file of Object.keys(PEER_FILES)) {
      list.push({ id: `peer-smollm2-${file}-${kind}`, kind, file, path: PEER_FILES[file], ...(kind === "wasm" ? { threads: 1 } : {}) });
    }
  }
  for (const file of Object.keys(PEER_FILES)) {
    list.push({ id: `peer-smollm2-${file}-wasm-2threads`, kind: "wasm", threads: 2, file, path: PEER_FILES[file] });
  }
  list.push({ id: "peer-smollm2-q8_0-wllama", kind: "wllama", threads: 1, file: "q8_0", path: Q8_FILE });
  for (const file of Object.keys(PEER_FILES)) {
    list.push({ id: `peer-smollm2-${file}-wllama-2threads`, kind: "wllama", threads: 2, file, path: PEER_FILES[file] });
  }
  return ONLY ? list.filter((p) => ONLY.test(p.id)) : list;
}
const inBrowser = (p) => p.kind === "wasm" || p.kind === "wllama";
const PEER_DECODE = { prompt: "Once upon a time", tokens: QUICK ? 16 : 128 };

// The peer runs are ratios of engines run minutes apart, on a machine whose speed can drift within
// minutes by more than the margins of some targets (docs/benchmarks.md), so they run in rounds:
// each round runs every peer run once, every other round in reverse order, and bench-peer.mjs
// takes each figure's median over the rounds.
const PEER_ROUNDS = QUICK ? 1 : 2;

/** `list` once a round, every other round backwards, each run tagged with its `round` (from 1). */
const inRounds = (list) =>
  Array.from({ length: PEER_ROUNDS }, (_, k) => (k % 2 ? [...list].reverse() : list).map((p) => ({ ...p, round: k + 1 }))).flat();

// The page's Compare at its defaults (runCompare). The page is not told anything: the run fails
// unless its defaults are still these, so that the target's name stays true of what was measured.
// Quick mode leaves it out, since 16 tokens would not be the page's defaults.
const PAGE_DEFAULTS = { model: "smollm2", chat: true, maxTokens: 128 };

function compareScenarios() {
  if (QUICK) return [];
  const list = [{ id: "compare-smollm2-page", path: MODEL_FILE, ...PAGE_DEFAULTS }];
  return ONLY ? list.filter((c) => ONLY.test(c.id)) : list;
}

// The strategies head to head: each one's cost alone (`kvcache cache-cost`, `Bench.cacheCost`:
// cache update + attention, no weights) over COST_TOKENS steps, and on the default backend whole
// decode steps with concat and prealloc taking turns token by token (`kvcache interleave`,
// `Bench.interleaved`), INTERLEAVE_ROUNDS generations of the scenario's length.
const COST_TOKENS = QUICK ? 32 : 512;
const INTERLEAVE_ROUNDS = QUICK ? 1 : 3;

function strategyScenarios() {
  const list = [];
  for (const env of ["native", "wasm"]) {
    for (const model of MODELS.filter((m) => !m.combos)) {
      for (const backend of ["flex", "ndarray"]) {
        list.push({ id: `strategies-${env}-${backend}-${model.id}`, env, backend, model: model.id, interleave: backend === "flex" });
      }
    }
  }
  return ONLY ? list.filter((r) => ONLY.test(r.id)) : list;
}
const STRATEGIES = [{ cache: "concat" }, { cache: "prealloc" }, { cache: "window", window: WINDOW }];

// ------------------------------------------------------------------ helpers

const t0 = performance.now();
const elapsed = () => {
  const s = Math.round((performance.now() - t0) / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, "0")}:${String(s % 60).padStart(2, "0")}`;
};
const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const decodeTpsOf = (stepMs) => (stepMs?.length > 1 ? ((stepMs.length - 1) * 1000) / sum(stepMs.slice(1)) : null);
const say = (line) => console.log(`[bench ${elapsed()}] ${line}`);

function run(cmd, args, { capture = false, env = undefined } = {}) {
  return new Promise((resolve, reject) => {
    const stdio = ["ignore", capture ? "pipe" : "inherit", capture ? "pipe" : "inherit"];
    const child = spawn(cmd, args, { cwd: REPO, stdio, env: env ? { ...process.env, ...env } : process.env });
    let stdout = "";
    let stderr = "";
    child.stdout?.on("data", (d) => (stdout += d));
    child.stderr?.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code === 0) resolve({ stdout, stderr });
      else reject(new Error(`${cmd} ${args.join(" ")} exited with ${code}${stderr ? `:\n${stderr.trim().split("\n").slice(-5).join("\n")}` : ""}`));
    });
  });
}

/** The newest modification time among the engine's sources. */
function newestSource() {
  let newest = 0;
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else newest = Math.max(newest, statSync(path).mtimeMs);
    }
  };
  for (const dir of ["src", "assets"]) if (existsSync(join(REPO, dir))) walk(join(REPO, dir));
  for (const file of ["Cargo.toml", "Cargo.lock"]) if (existsSync(join(REPO, file))) newest = Math.max(newest, statSync(join(REPO, file)).mtimeMs);
  return newest;
}

async function prepare(needNative, needBrowser, needThreads) {
  if (needNative) {
    say("cargo build --release --bin kvcache (a no-op when it is up to date)");
    await run("cargo", ["build", "--release", "--bin", "kvcache"]);
  }
  const missing = [MODEL_FILE, GEMMA3_FILE].filter((f) => !existsSync(join(REPO, f)));
  if (missing.length) {
    say(`${missing.join(", ")} missing: bash scripts/fetch-model.sh`);
    await run("bash", ["scripts/fetch-model.sh"]);
  }
  if (needBrowser) {
    const builds = ["pkg", ...(needThreads ? ["pkg/threads"] : [])];
    const missing = builds.filter((dir) => !existsSync(join(REPO, dir, "kvcache_wasm.js")));
    if (missing.length) {
      say(`${missing.join(" and ")} missing: npm run build (about ten minutes on 2 cores)`);
      await run("npm", ["run", "build"]);
    }
    for (const dir of builds) {
      const stale = newestSource() > statSync(join(REPO, dir, "kvcache_wasm_bg.wasm")).mtimeMs;
      if (stale) say(`warning: ${dir}/ is older than src/ (or Cargo.toml, assets/): the wasm figures are of the old build; npm run build first for current ones`);
    }
    if (!existsSync(join(WLLAMA_DIR, "esm/wasm/wllama.wasm"))) {
      throw new Error("node_modules/@wllama/wllama is missing: run npm ci (or npm install)");
    }
    if (!existsSync(BROWSERS[BROWSER])) throw new Error(`no ${BROWSER} at ${BROWSERS[BROWSER]} (bash scripts/setup.sh installs it)`);
  }
}

/**
 * llama-cpp-python in bench/.venv (built for this CPU) and the Q8_0 file, made when missing; the
 * reason when the peer cannot run (its rows are then marked absent), else null.
 */
async function preparePeer() {
  const built = () => (existsSync(PEER_STAMP) ? readFileSync(PEER_STAMP, "utf8") : null);
  const ready = () =>
    existsSync(PEER_PYTHON) && built() === PEER_CMAKE_ARGS && spawnSync(PEER_PYTHON, ["-c", "import llama_cpp, gguf, numpy"]).status === 0;
  if (!ready()) {
    say(`native llama.cpp peer: pip install -r bench/requirements-peer.txt into bench/.venv, built with ${PEER_CMAKE_ARGS} (5 to 15 minutes)`);
    try {
      if (!existsSync(PEER_PYTHON)) await run("python3", ["-m", "venv", "bench/.venv"]);
      const reinstall = built() === PEER_CMAKE_ARGS ? [] : ["--force-reinstall", "--no-cache-dir"];
      await run(PEER_PYTHON, ["-m", "pip", "install", "--quiet", "--disable-pip-version-check", ...reinstall, "-r", "bench/requirements-peer.txt"], {
        env: { CMAKE_ARGS: PEER_CMAKE_ARGS },
      });
      writeFileSync(PEER_STAMP, PEER_CMAKE_ARGS);
    } catch (err) {
      say(`  could not install it (${err.message.split("\n")[0]}): the peer's rows are marked absent`);
      return "llama-cpp-python could not be installed";
    }
  }
  if (!existsSync(join(REPO, Q8_FILE))) {
    say(`${Q8_FILE} missing: scripts/make-q8_0.py from ${MODEL_FILE}`);
    await run(PEER_PYTHON, ["scripts/make-q8_0.py", MODEL_FILE, Q8_FILE]);
  }
  return null;
}

async function runLlamaPeer(p) {
  const args = ["scripts/llama-peer.py", p.path, "--prompt", PEER_DECODE.prompt, "--tokens", String(PEER_DECODE.tokens), "--prefill-text", PREFILL_TEXT];
  const j = JSON.parse((await run(PEER_PYTHON, args, { capture: true })).stdout);
  return { file: p.file, version: j.llamaCppPython, threads: j.threads, decode: j.decode, prefill: j.prefill };
}

/** Ours on a peer file: decode of PEER_DECODE and the prefill of PREFILL_TEXT, natively or in wasm. */
async function runOursPeer(p, browser) {
  if (p.kind === "native") {
    const generate = async (prompt, tokens) => {
      const args = ["generate", "--model", p.path, "--prompt", prompt, "--max-tokens", String(tokens), "--backend", "flex", "--cache", "prealloc", "--json"];
      return JSON.parse((await run(CLI, args, { capture: true })).stdout);
    };
    const decode = await generate(PEER_DECODE.prompt, PEER_DECODE.tokens);
    await generate(PREFILL_TEXT, 1); // warm-up, as llama-peer.py does
    const prefill = await generate(PREFILL_TEXT, 1);
    return { env: "native", file: p.file, decodeStepMs: decode.step_ms, ids: decode.generated_ids, prefill: { tokens: prefill.prompt_ids.length, ms: prefill.prefill_ms } };
  }
  // benchOurs fails a run whose worker does not run on the threads asked for; checked here again.
  const threads = p.threads ?? 1;
  const ours = async (prompt, maxTokens, warmupTokens) => {
    const out = await browser.page.eval((cfg) => window.benchOurs(cfg), {
      source: { kind: "url", url: `/${p.path}` },
      options: { backend: "flex" },
      prompt,
      maxTokens,
      useCache: true,
      cache: "prealloc",
      every: every(maxTokens),
      warmupTokens,
      threads,
    });
    if (out.threads !== threads) throw new Error(`asked for ${threads} threads, the worker ran on ${out.threads}`);
    return out;
  };
  const decode = await ours(PEER_DECODE.prompt, PEER_DECODE.tokens, WARMUP);
  const prefill = await ours(PREFILL_TEXT, 1, 1);
  return {
    env: "wasm",
    file: p.file,
    threads,
    decodeStepMs: decode.stepMs,
    // The tokens' arrivals on the page: what the comparison with wllama times.
    decodeArrivalMs: decode.arrivalMs,
    ids: decode.ids,
    wasmMemoryBytes: decode.wasmMemoryBytes,
    prefill: { tokens: prefill.cacheLen, ms: prefill.stepMs[0] },
  };
}

// ------------------------------------------------------------------ native

async function runNative(r) {
  const model = MODELS.find((m) => m.id === r.model);
  const args = ["generate", ...model.cli, "--prompt", r.prompt, "--max-tokens", String(r.maxTokens), "--backend", r.backend, "--json"];
  if (r.cache === "off") args.push("--no-cache");
  else args.push("--cache", r.cache);
  if (r.window) args.push("--window", String(r.window));
  const started = performance.now();
  const { stdout } = await run(CLI, args, { capture: true });
  const wallMs = performance.now() - started;
  const j = JSON.parse(stdout);
  return {
    command: `kvcache ${args.map((a) => (/\s/.test(a) ? JSON.stringify(a) : a)).join(" ")}`,
    loadMs: j.load_ms,
    prefillMs: j.prefill_ms,
    ttftMs: j.step_ms[0],
    stepMs: j.step_ms,
    promptIds: j.prompt_ids,
    ids: j.generated_ids,
    text: j.text,
    // The CLI's snake_case ("max_tokens") as the JS API spells it, as the wasm runs record it.
    stopReason: j.stop_reason?.replace(/_(.)/g, (_, c) => c.toUpperCase()) ?? null,
    cacheLen: j.cache_len,
    cacheBytes: j.cache_bytes,
    cacheBytesFormula: j.cache_bytes_formula,
    wasmMemoryBytes: null,
    wallMs,
  };
}

async function costNative(st) {
  const model = MODELS.find((m) => m.id === st.model);
  const cost = [];
  for (const c of STRATEGIES) {
    const args = ["cache-cost", ...model.cli, "--backend", st.backend, "--cache", c.cache, "--tokens", String(COST_TOKENS)];
    if (c.window) args.push("--window", String(c.window));
    const { stdout } = await run(CLI, args, { capture: true });
    cost.push({ ...c, stepMs: JSON.parse(stdout).step_ms });
  }
  const interleaved = [];
  for (let round = 0; st.interleave && round < INTERLEAVE_ROUNDS; round++) {
    const args = ["interleave", ...model.cli, "--backend", st.backend, "--caches", "concat,prealloc", "--prompt", model.prompt, "--tokens", String(QUICK ? 16 : model.tokens)];
    const j = JSON.parse((await run(CLI, args, { capture: true })).stdout);
    interleaved.push({ round, strategies: j.strategies, ids: j.ids, stepMs: j.step_ms, disagreements: j.disagreements });
  }
  return { cost, interleaved };
}

// ------------------------------------------------------------------ browser

async function openBrowser() {
  const { server, url } = await startServer({ port: 0 });
  const browser = await launch(BROWSER);
  const page = await browser.newPage();
  let progressPrefix = "";
  await page.exposeFunction("benchProgress", (text) => say(`  ${progressPrefix}${text}`));
  await page.goto(new URL("bench/index.html", url).href);
  await page.waitFor(() => window.benchReady === true, null, { timeout: 60_000 });
  return {
    page,
    version: browser.version,
    problems: page.problems,
    // The server's address and another tab, for the demo page itself (runCompare).
    url,
    newPage: () => browser.newPage(),
    setPrefix: (p) => (progressPrefix = p),
    async close() {
      await browser.close();
      server.close();
    },
  };
}

// Warm-up tokens generated in the same worker before each timed browser run (see bench/bench.js).
const WARMUP = 24;
const WARMUP_OFF = 6;

const every = (n) => (n >= 100 ? 50 : n >= 48 ? 16 : 0);

async function runWasm(browser, r) {
  const model = MODELS.find((m) => m.id === r.model);
  const started = performance.now();
  const out = await browser.page.eval((cfg) => window.benchOurs(cfg), {
    source: model.source,
    options: { backend: r.backend },
    prompt: r.prompt,
    maxTokens: r.maxTokens,
    useCache: r.cache !== "off",
    cache: r.cache === "off" ? "concat" : r.cache,
    window: r.window ?? undefined,
    every: every(r.maxTokens),
    warmupTokens: r.cache === "off" ? WARMUP_OFF : WARMUP,
  });
  if (out.backend !== r.backend) throw new Error(`asked for the ${r.backend} backend, the worker ran ${out.backend}`);
  return {
    loadMs: out.loadMs,
    prefillMs: out.stepMs[0],
    ttftMs: out.arrivalMs[0],
    stepMs: out.stepMs,
    arrivalMs: out.arrivalMs,
    ids: out.ids,
    text: out.text,
    stopReason: out.stopReason,
    cacheLen: out.cacheLen,
    cacheBytes: out.cacheBytes,
    cacheBytesFormula: out.cacheBytesFormula,
    maxSeqLen: out.maxSeqLen,
    wasmMemoryBytes: out.wasmMemoryBytes,
    wasmMemoryAfterLoadBytes: out.wasmMemoryAfterLoadBytes,
    warmup: out.warmup,
    wallMs: performance.now() - started,
  };
}

async function strategiesWasm(browser, st) {
  const model = MODELS.find((m) => m.id === st.model);
  const out = await browser.page.eval((cfg) => window.benchStrategies(cfg), {
    source: model.source,
    options: { backend: st.backend },
    caches: STRATEGIES,
    costTokens: COST_TOKENS,
    interleave: st.interleave ? { prompt: model.prompt, tokens: QUICK ? 16 : model.tokens, rounds: INTERLEAVE_ROUNDS, warmupTokens: WARMUP } : null,
  });
  if (out.backend !== st.backend) throw new Error(`asked for the ${st.backend} backend, the worker ran ${out.backend}`);
  return { cost: out.cost, interleaved: out.interleaved };
}

/** wllama on the GGUF at `url` with `threads` threads; a run on other than the threads asked for fails. */
async function runWllama(browser, { url, prompt, maxTokens, threads = 1 }) {
  const started = performance.now();
  const out = await browser.page.eval((cfg) => window.benchWllama(cfg), {
    url,
    prompt,
    maxTokens,
    nCtx: 512,
    every: every(maxTokens),
    warmupTokens: WARMUP,
    threads,
  });
  if (threads === 1 && out.multithread) throw new Error(`wllama ran multi-threaded (${out.threads} threads); the comparison needs one`);
  if (threads > 1 && (out.multithread !== true || out.threads !== threads)) {
    const why = out.crossOriginIsolated ? "" : " (the page is not cross-origin isolated: no COOP/COEP headers, so no SharedArrayBuffer)";
    throw new Error(`wllama was asked for ${threads} threads but isMultithread() is ${out.multithread} and getNumThreads() ${out.threads}${why}`);
  }
  // Per-token times as llama.cpp measures them (timings_per_token: predicted_ms is cumulative),
  // the first one being the prompt's processing plus the first token.
  const stepMs = [];
  let prev = null;
  for (const t of out.timings) {
    if (!t) {
      stepMs.length = 0;
      break;
    }
    if (prev === null) stepMs.push(t.prompt_ms + t.predicted_ms);
    else stepMs.push(t.predicted_ms - prev);
    prev = t.predicted_ms;
  }
  return {
    loadMs: out.loadMs,
    prefillMs: out.finalTimings?.prompt_ms ?? null,
    ttftMs: out.arrivalMs[0],
    stepMs: stepMs.length === out.arrivalMs.length ? stepMs : null,
    arrivalMs: out.arrivalMs,
    ids: null,
    text: out.text,
    stopReason: out.arrivalMs.length >= maxTokens ? "maxTokens" : "short",
    finalTimings: out.finalTimings,
    usage: out.usage,
    threads: out.threads ?? 1,
    multithread: out.multithread,
    crossOriginIsolated: out.crossOriginIsolated,
    warmup: out.warmup,
    cacheLen: null,
    cacheBytes: null,
    cacheBytesFormula: null,
    wasmMemoryBytes: null,
    wallMs: performance.now() - started,
  };
}

/** The threads the page says it runs on, from its model line ("· 2 threads", "· one thread"); null if it says neither. */
function pageThreads(modelInfo) {
  const many = / · (\d+) threads$/.exec(modelInfo ?? "");
  if (many) return Number(many[1]);
  return / · one thread$/.test(modelInfo ?? "") ? 1 : null;
}

/**
 * The demo page's Compare at its defaults, in a tab of its own: www/ opened with no query, its
 * default model loaded (the load is not timed), then "Compare both" clicked. Timed in the page's
 * clock, from the click (a listener on the document, ahead of the page's own) to the first poll,
 * every 50 ms, that finds the page idle with both runs ended. Each run's tokens, times and text are
 * the page's own (window.__kvcache.series: the first token's time, then one per later token), and
 * the speedup is the one the page shows. Selectors are the e2e suite's (tests/e2e/harness.mjs).
 */
async function runCompare(browser, c) {
  const page = await browser.newPage();
  try {
    const opened = performance.now();
    await page.goto(new URL("./", browser.url).href);
    await page.raw.bringToFront?.(); // a hidden tab draws no frames, so its stats would not update
    // Loaded, or failed to: as the e2e suite's waitLoaded.
    await page.waitFor(() => window.__kvcache?.status === "idle" && (window.__kvcache.model || window.__kvcache.error), null, { timeout: 300_000 });
    const loadMs = performance.now() - opened;
    const setup = await page.eval(() => {
      const $ = (id) => document.querySelector(`[data-testid="${id}"]`);
      return {
        error: window.__kvcache.error,
        model: $("model-select").value,
        chat: $("chat").checked,
        maxTokens: Number($("max-tokens").value),
        temperature: Number($("temperature").value),
        prompt: $("prompt").value,
        modelInfo: $("model-info").textContent,
        threadsNote: $("model-info").title || null,
        warmUpTokens: window.__kvcache.model?.warmUpTokens ?? null,
        crossOriginIsolated: self.crossOriginIsolated === true,
        hardwareConcurrency: navigator.hardwareConcurrency,
        visibility: document.visibilityState,
        runsBefore: window.__kvcache.series.length,
      };
    });
    if (setup.error) throw new Error(`the page could not load its model: ${setup.error}`);
    const asExpected = setup.model === c.model && setup.chat === c.chat && setup.maxTokens === c.maxTokens;
    if (!asExpected) {
      const onOff = (chat) => (chat ? "on" : "off");
      throw new Error(`the page's defaults are ${setup.model}, chat template ${onOff(setup.chat)}, ${setup.maxTokens} tokens; this run measures ${c.model}, chat template ${onOff(c.chat)}, ${c.maxTokens} tokens`);
    }
    if (setup.visibility !== "visible") throw new Error(`the page's tab is ${setup.visibility}: it would draw no frames`);
    const threads = pageThreads(setup.modelInfo);

    await page.eval(() => {
      window.__benchCompare = { clickedAt: null, doneAt: null };
      const note = (event) => {
        if (!event.target.closest?.('[data-testid="run-compare"]')) return;
        window.__benchCompare.clickedAt = performance.now();
        document.removeEventListener("click", note, true);
      };
      document.addEventListener("click", note, true);
    });
    const clicked = performance.now();
    await page.click('[data-testid="run-compare"]');
    await page.waitFor(
      (before) => {
        const k = window.__kvcache;
        if (k.error) return true;
        const runs = k.series.slice(before);
        const done = k.status === "idle" && runs.length >= 2 && runs.every((r) => r.stopReason != null);
        if (done) window.__benchCompare.doneAt ??= performance.now();
        return done;
      },
      setup.runsBefore,
      { timeout: 900_000, polling: 50 },
    );
    const wallMs = performance.now() - clicked;
    // Two frames, so that the stats and the speedup show the runs' ends (the page draws them in animation frames).
    await page.eval(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const out = await page.eval((before) => ({
      error: window.__kvcache.error,
      runs: window.__kvcache.series.slice(before),
      speedupText: document.querySelector('[data-testid="speedup"]').textContent,
      speedupDetail: document.getElementById("speedup-detail")?.textContent ?? null,
      ...window.__benchCompare,
    }), setup.runsBefore);
    if (out.error) throw new Error(`Compare failed on the page: ${out.error}`);
    if (out.clickedAt == null) throw new Error("the click on Compare did not reach the page");
    const [on, off] = out.runs;
    const run = (r) => ({
      label: r.label,
      useCache: r.useCache,
      tokens: r.tokens,
      stopReason: r.stopReason,
      // The first token's time (the prompt's prefill with it), then each later token's: as stepMs elsewhere.
      stepMs: [r.ttft, ...r.points.map((p) => p[1])],
      text: r.text,
    });
    const speedup = /^(\d+(?:\.\d+)?)×$/.exec(out.speedupText.trim());
    return {
      id: c.id,
      page: { model: setup.model, chat: setup.chat, maxTokens: setup.maxTokens, temperature: setup.temperature, prompt: setup.prompt },
      threads,
      modelInfo: setup.modelInfo,
      threadsNote: setup.threadsNote,
      crossOriginIsolated: setup.crossOriginIsolated,
      hardwareConcurrency: setup.hardwareConcurrency,
      loadMs,
      warmUpTokens: setup.warmUpTokens,
      totalMs: out.doneAt - out.clickedAt,
      wallMs,
      runs: [run(on), run(off)],
      speedup: speedup ? Number(speedup[1]) : null,
      speedupText: out.speedupText,
      speedupDetail: out.speedupDetail,
      sameText: on.text === off.text,
      problems: page.problems.splice(0),
    };
  } finally {
    await page.close();
  }
}

// ------------------------------------------------------------------ main

function machine() {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model ?? "unknown",
    cores: cpu.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
  };
}

async function gitCommit() {
  try {
    const { stdout } = await run("git", ["rev-parse", "--short", "HEAD"], { capture: true });
    const { stdout: dirty } = await run("git", ["status", "--porcelain", "--", "src", "www", "Cargo.toml"], { capture: true });
    return stdout.trim() + (dirty.trim() ? " (with uncommitted changes)" : "");
  } catch {
    return null;
  }
}

/** The .wasm's size, raw and gzipped: `gzip -9` as scripts/build-wasm.sh reports it (zlib level 9 if there is no gzip). */
function wasmSize() {
  const file = join(REPO, "pkg/kvcache_wasm_bg.wasm");
  if (!existsSync(file)) return null;
  const bytes = readFileSync(file);
  const gz = spawnSync("gzip", ["-9", "-c"], { input: bytes, maxBuffer: 64 * 2 ** 20 });
  const cli = gz.status === 0 ? gz.stdout.length : null;
  return {
    file: "pkg/kvcache_wasm_bg.wasm",
    built: statSync(file).mtime.toISOString(),
    bytes: bytes.length,
    gzipBytes: cli ?? gzipSync(bytes, { level: 9 }).length,
    gzipTool: cli ? "gzip -9" : "zlib level 9",
    zlibBytes: gzipSync(bytes, { level: 9 }).length,
  };
}

async function main() {
  const runs = scenarios();
  const strategies = strategyScenarios();
  const peers = peerScenarios();
  const compares = compareScenarios();
  const needNative = [...runs, ...strategies].some((r) => r.env === "native") || peers.some((p) => p.kind === "native");
  const needBrowser = [...runs, ...strategies].some((r) => r.env !== "native") || peers.some(inBrowser) || compares.length > 0;
  say(
    `${runs.length} runs, ${strategies.length} strategy comparisons, ${peers.length} runs on SmolLM2's peer files (${PEER_ROUNDS} round${PEER_ROUNDS === 1 ? "" : "s"}) and ${compares.length} of the page's Compare` +
      `${QUICK ? " (quick: 16 tokens each, the page's Compare left out)" : ""}; results go to ${OUT}`,
  );
  // The page runs on the multi-threaded build where it is cross-origin isolated, as here.
  await prepare(needNative, needBrowser, peers.some((p) => p.kind === "wasm" && p.threads > 1) || compares.length > 0);
  // llama-cpp-python runs llama.cpp's runs, and makes the Q8_0 file when it is missing.
  const needPython = peers.some((p) => p.kind === "llamacpp" || !existsSync(join(REPO, p.path)));
  const peerAbsent = needPython ? await preparePeer() : null;

  const results = {
    meta: {
      date: new Date().toISOString(),
      quick: QUICK,
      commit: await gitCommit(),
      machine: machine(),
      browser: null,
      wllama: existsSync(join(WLLAMA_DIR, "package.json")) ? JSON.parse(readFileSync(join(WLLAMA_DIR, "package.json"), "utf8")).version : null,
      wasm: wasmSize(),
      window: WINDOW,
      wallSeconds: null,
    },
    runs: [],
    strategies: [],
    peer: peers.length ? { llamaCpp: [], ours: [], wllama: [] } : null,
    // The page's Compare (runCompare): null when not run, else its run, or { id, absent: why }.
    compare: compares.length ? [] : null,
  };
  const done = (r, res) => {
    const n = res.stepMs?.length ?? res.arrivalMs.length;
    const mean = res.stepMs && n > 1 ? res.stepMs.slice(1).reduce((a, b) => a + b, 0) / (n - 1) : null;
    say(`  done: ${n} tokens${mean ? `, ${mean.toFixed(1)} ms/token after the first` : ""}, ${(res.wallMs / 1000).toFixed(1)} s`);
    results.runs.push({ ...r, ...res });
  };
  let i = 0;
  const total = runs.length + strategies.length + peers.length * PEER_ROUNDS + compares.length;
  const label = (r) => `[${++i}/${total}] ${r.id} (${r.maxTokens} tokens${r.cut ? `, cut from ${r.fullTokens}` : ""})`;
  const strategyLabel = (st) => `[${++i}/${total}] ${st.id} (cache cost over ${COST_TOKENS} steps${st.interleave ? `; concat and prealloc interleaved, ${INTERLEAVE_ROUNDS} rounds` : ""})`;
  const compared = (st, res) => {
    const ms = (c) => sum(res.cost.find((x) => x.cache === c).stepMs);
    say(`  done: cache alone, ${COST_TOKENS} steps: ${STRATEGIES.map((c) => `${c.cache} ${ms(c.cache).toFixed(0)} ms`).join(", ")}`);
    const paired = pairedFigures(res);
    if (paired) say(`  interleaved whole steps, prealloc ÷ concat: ${pairedSummary(paired)}`);
    results.strategies.push({ ...st, tokens: COST_TOKENS, ...res });
  };

  for (const r of runs.filter((x) => x.env === "native")) {
    say(label(r));
    done(r, await runNative(r));
  }
  for (const st of strategies.filter((x) => x.env === "native")) {
    say(strategyLabel(st));
    compared(st, await costNative(st));
  }
  const peerDone = (p, res) => {
    const tps = res.decode ? decodeTpsOf(res.decode.stepMs) : decodeTpsOf(res.decodeStepMs);
    const on = p.kind === "wasm" ? `${res.threads} thread${res.threads === 1 ? "" : "s"}, ` : "";
    say(`  done: ${on}decode ${tps?.toFixed(1) ?? "—"} tok/s, prefill of ${res.prefill.tokens} tokens ${((res.prefill.tokens * 1000) / res.prefill.ms).toFixed(0)} tok/s`);
  };
  const wllamaDone = (res) => {
    const a = res.arrivalMs;
    const tps = a.length > 1 ? ((a.length - 1) * 1000) / (a[a.length - 1] - a[0]) : null;
    say(`  done: ${res.threads} thread${res.threads === 1 ? "" : "s"}, decode ${tps?.toFixed(1) ?? "—"} tok/s by token arrival on the page`);
  };
  const compareDone = (res) => {
    const each = res.runs.map((r) => `${r.label} ${r.tokens} tokens in ${(sum(r.stepMs) / 1000).toFixed(1)} s`).join(", ");
    say(`  done: ${(res.totalMs / 1000).toFixed(1)} s from the click to both runs done, on ${threadsText(res.threads)} (load ${(res.loadMs / 1000).toFixed(1)} s, not counted); ${each}`);
    say(`  the page's speedup ${res.speedupText}; ${res.sameText ? "the same text in both runs" : "the two runs' texts differ"}`);
    if (res.problems.length) say(`  page console: ${res.problems.join(" | ")}`);
  };
  // A failed peer run is reported and left out (its row reads absent); the rest of the bench goes on.
  const peerFailed = (p, err) => {
    const message = String(err.message ?? err).split("\n")[0];
    say(`  failed: ${message}`);
    const round = p.round;
    if (p.kind === "llamacpp") results.peer.llamaCpp.push({ file: p.file, round, absent: "its run failed" });
    if (p.kind === "wllama") results.peer.wllama.push({ file: p.file, threads: p.threads, round, absent: `its run failed: ${message}` });
    if (p.kind === "wasm") results.peer.ours.push({ env: "wasm", file: p.file, threads: p.threads, round, absent: `its run failed: ${message}` });
  };
  const peerLabel = (p) => `[${++i}/${total}] ${p.id}${PEER_ROUNDS > 1 ? ` (round ${p.round} of ${PEER_ROUNDS})` : ""}`;
  for (const p of inRounds(peers.filter((x) => !inBrowser(x)))) {
    say(peerLabel(p));
    if (peerAbsent && (p.kind === "llamacpp" || p.file === "q8_0")) {
      say(`  absent: ${peerAbsent}`);
      if (p.kind === "llamacpp") results.peer.llamaCpp.push({ file: p.file, round: p.round, absent: peerAbsent });
      continue;
    }
    try {
      const res = p.kind === "llamacpp" ? await runLlamaPeer(p) : await runOursPeer(p);
      peerDone(p, res);
      (p.kind === "llamacpp" ? results.peer.llamaCpp : results.peer.ours).push({ ...res, round: p.round });
    } catch (err) {
      peerFailed(p, err);
    }
  }

  if (needBrowser) {
    say(`starting headless ${BROWSER}`);
    const browser = await openBrowser();
    results.meta.browser = browser.version;
    try {
      // The first load of a GGUF downloads it into the browser's Cache API; every timed run
      // then loads it from there, as a page reload does.
      for (const model of MODELS.filter((m) => m.gguf)) {
        if (![...runs, ...strategies].some((r) => r.env === "wasm" && r.model === model.id)) continue;
        say(`warm-up: ${model.label} into the browser's Cache API, the wasm compiled once`);
        await browser.page.eval((cfg) => window.benchOurs(cfg), { source: model.source, prompt: "Hi", maxTokens: 1, useCache: true });
      }
      for (const r of runs.filter((x) => x.env !== "native")) {
        say(label(r));
        browser.setPrefix(`${r.id}: `);
        const gguf = MODELS.find((m) => m.id === r.model).gguf;
        done(r, r.env === "wasm" ? await runWasm(browser, r) : await runWllama(browser, { url: gguf, prompt: r.prompt, maxTokens: r.maxTokens }));
        if (browser.problems.length) say(`  browser console: ${browser.problems.splice(0).join(" | ")}`);
      }
      for (const st of strategies.filter((x) => x.env === "wasm")) {
        say(strategyLabel(st));
        browser.setPrefix(`${st.id}: `);
        compared(st, await strategiesWasm(browser, st));
        if (browser.problems.length) say(`  browser console: ${browser.problems.splice(0).join(" | ")}`);
      }
      for (const p of inRounds(peers.filter(inBrowser))) {
        say(peerLabel(p));
        if (!existsSync(join(REPO, p.path))) {
          say(`  absent: no ${p.path}`);
          if (p.kind === "wllama") results.peer.wllama.push({ file: p.file, threads: p.threads, round: p.round, absent: `no ${p.path}` });
          if (p.kind === "wasm") results.peer.ours.push({ env: "wasm", file: p.file, threads: p.threads, round: p.round, absent: `no ${p.path}` });
          continue;
        }
        browser.setPrefix(`${p.id}: `);
        try {
          if (p.kind === "wllama") {
            const res = await runWllama(browser, { url: `/${p.path}`, prompt: PEER_DECODE.prompt, maxTokens: PEER_DECODE.tokens, threads: p.threads });
            wllamaDone(res);
            results.peer.wllama.push({ file: p.file, ...res, round: p.round });
          } else {
            const res = await runOursPeer(p, browser);
            peerDone(p, res);
            results.peer.ours.push({ ...res, round: p.round });
          }
        } catch (err) {
          peerFailed(p, err);
        }
        if (browser.problems.length) say(`  browser console: ${browser.problems.splice(0).join(" | ")}`);
      }
      // After every other run, in a tab of its own beside the bench page (idle by then); a failure
      // is reported and the row reads absent, as a peer run's.
      for (const c of compares) {
        say(`[${++i}/${total}] ${c.id} (the demo page at its defaults, Compare both)`);
        if (!existsSync(join(REPO, c.path))) {
          say(`  absent: no ${c.path}`);
          results.compare.push({ id: c.id, absent: `no ${c.path}` });
          continue;
        }
        try {
          const res = await runCompare(browser, c);
          compareDone(res);
          results.compare.push(res);
        } catch (err) {
          const message = String(err.message ?? err).split("\n")[0];
          say(`  failed: ${message}`);
          results.compare.push({ id: c.id, absent: `its run failed: ${message}` });
        }
      }
    } finally {
      await browser.close();
    }
  }

  results.meta.wallSeconds = Math.round((performance.now() - t0) / 1000);
  mkdirSync(OUT, { recursive: true });
  writeFileSync(join(OUT, "results.json"), `${JSON.stringify(results, null, 1)}\n`);
  // The README shows the committed full run; a quick or partial run leaves it alone.
  const readme = !QUICK && !ONLY && OUT === join(REPO, "bench") ? join(REPO, "README.md") : null;
  const { targets, readmeUpdated } = writeReport(results, OUT, { readme });
  say(`wrote ${join(OUT, "results.json")}, results.md, plot.svg${readmeUpdated ? " and README.md's benchmark block" : ""} in ${results.meta.wallSeconds} s`);
  for (const t of targets) say(`  ${t.met === true ? "met   " : t.met === false ? "MISSED" : "n/a   "} ${t.name}: ${t.summary}`);
}

main().catch((err) => {
  console.error(`[bench ${elapsed()}] failed: ${err.stack ?? err}`);
  process.exit(1);
});
