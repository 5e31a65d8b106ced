// Two builds of the npm package compared on SmolLM2 decode in one headless-Chromium session,
// taking turns run by run, so that whatever the machine does meanwhile falls on both alike.
//
//   node scripts/ab-packages.mjs --old <commit | dir> [--new <dir>] [--runs 3] [--tokens 128]
//                                [--caches prealloc,concat,window,off] [--window 64] [--out FILE]
//                                [--model models/SmolLM2-135M-Instruct.Q8_0.gguf]
//                                [--prompt-file bench/prefill.txt] [--threads 1]
//
// Each side is a checkout served as the benchmark serves one (scripts/serve.mjs: its own www/,
// bench/ and pkg/, with models/ and node_modules/ taken from this repo): its page, its worker and
// its package, so an old package runs with the worker it was written for. A commit is checked out
// into a temporary git worktree and its pkg/ built there (scripts/build-wasm.sh, sharing this
// repo's target/ and target/wasm-threads/ so only the crate itself recompiles); --new defaults
// to this repo, whose pkg/ is built when missing. The two sides have different origins (ports),
// so each keeps its own copy of the model in the browser's Cache API.
//
// A run is bench/bench.js's `benchOurs`: a fresh worker, the model loaded, 24 warm-up tokens, then
// greedy decoding of "Once upon a time" for --tokens tokens. Every round runs each cache strategy
// once on each side, back to back, the side that goes first alternating from round to round;
// `off` is the cache-off path, each step a forward pass over the whole sequence.
// Reported: decode tokens/s by the engine's own step timer (the tokens after the first over their
// time), the mean over the runs of each side, and new ÷ old with the range of the rounds' ratios.
// With --prompt-file the prompt is that file's text and the figure is its prefill instead: the
// prompt's tokens over the first step's time (--tokens defaults to 2 then). With --threads N (2 or
// more) both sides run their multi-threaded build (pkg/threads/, the page being cross-origin
// isolated) on a pool of N; a run on fewer threads is an error.

import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import { launch } from "./browsers.mjs";
import { startServer } from "./serve.mjs";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));
const MODEL_FILE = option("model", "models/SmolLM2-135M-Instruct.Q4_1.gguf");
const PROMPT_FILE = option("prompt-file");
const PROMPT = PROMPT_FILE ? readFileSync(resolve(PROMPT_FILE), "utf8") : "Once upon a time";
const WARMUP = 24;
const THREADS = Number(option("threads", 1));

function option(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

const say = (line) => console.log(line);
const git = (...args) => execFileSync("git", ["-C", REPO, ...args], { encoding: "utf8" }).trim();

/**
 * Builds `dir`'s pkg/ with this repo's tools and target/. The crate's wasm lands at the same path
 * in target/ whichever checkout built it, and cargo finds each checkout's own record of it up to
 * date; touching src/lib.rs makes it compile this checkout's sources.
 */
function buildPackage(dir) {
  say(`building ${join(dir, "pkg")} (scripts/build-wasm.sh)`);
  const now = new Date();
  utimesSync(join(dir, "src", "lib.rs"), now, now);
  execFileSync("bash", ["scripts/build-wasm.sh"], {
    cwd: dir,
    stdio: "inherit",
    // On one thread the A/B page loads the single-thread build alone.
    env: {
      ...process.env,
      CARGO_TARGET_DIR: join(REPO, "target"),
      KVCACHE_THREADS_TARGET_DIR: join(REPO, "target", "wasm-threads"),
      KVCACHE_THREADS: THREADS > 1 ? "1" : "0",
    },
  });
}

/** Whether `dir` has the package's build(s) the runs load. */
const built = (dir) =>
  existsSync(join(dir, "pkg", "kvcache_wasm_bg.wasm")) && (THREADS < 2 || existsSync(join(dir, "pkg", "threads", "kvcache_wasm_bg.wasm")));

/**
 * A directory to serve for `spec`: a directory as it is, or a commit checked out and built; with
 * the label the report shows and a short name for the result file.
 */
function checkout(spec) {
  if (existsSync(spec)) {
    const dir = resolve(spec);
    if (!built(dir)) buildPackage(dir);
    if (dir !== REPO) return { dir, label: dir, name: basename(dir) };
    const head = git("rev-parse", "--short", "HEAD");
    return { dir, label: `${head} (this checkout)`, name: head };
  }
  const commit = git("rev-parse", "--short", `${spec}^{commit}`);
  const dir = join(tmpdir(), `kvcache-ab-${commit}`);
  if (!existsSync(dir)) git("worktree", "add", "--detach", dir, commit);
  for (const shared of ["models", "node_modules"]) {
    if (!existsSync(join(dir, shared))) symlinkSync(join(REPO, shared), join(dir, shared));
  }
  if (!built(dir)) buildPackage(dir);
  return { dir, label: commit, name: commit };
}

/** Decode tokens/s of one run, by the engine's per-step timer. */
function decodeTps(stepMs) {
  const decode = stepMs.slice(1);
  return (decode.length * 1000) / decode.reduce((a, b) => a + b, 0);
}

/** Prefill tokens/s of one run: the prompt's tokens (the first token's position) over the first step. */
const prefillTps = (out) => (out.positions[0] * 1000) / out.stepMs[0];

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main() {
  const oldSpec = option("old");
  if (!oldSpec) throw new Error("give --old <commit | dir> (e.g. --old c9ee1aa~1)");
  const runs = Number(option("runs", 3));
  const tokens = Number(option("tokens", PROMPT_FILE ? 2 : 128));
  const window = Number(option("window", 64));
  const caches = option("caches", "prealloc,concat,window").split(",");
  if (!existsSync(join(REPO, MODEL_FILE))) throw new Error(`${MODEL_FILE} is missing: bash scripts/fetch-model.sh`);

  const sides = { old: checkout(oldSpec), new: checkout(option("new", REPO)) };
  const browser = await launch("chromium");
  const servers = [];
  try {
    for (const side of Object.values(sides)) {
      const { server, url } = await startServer({ port: 0, repo: side.dir, pkgDir: join(side.dir, "pkg") });
      servers.push(server);
      side.page = await browser.newPage();
      await side.page.goto(new URL("bench/index.html", url).href);
      await side.page.waitFor(() => window.benchReady === true, null, { timeout: 60_000 });
    }
    const measured = PROMPT_FILE ? `prefill of ${PROMPT_FILE}` : `${tokens} tokens`;
    say(`old ${sides.old.label} vs new ${sides.new.label}, ${browser.version}, ${runs} rounds, ${measured}, ${THREADS} thread(s)`);

    const results = [];
    for (let round = 0; round < runs; round++) {
      const order = round % 2 ? ["new", "old"] : ["old", "new"];
      for (const cache of caches) {
        for (const name of order) {
          const out = await sides[name].page.eval((cfg) => window.benchOurs(cfg), {
            source: { kind: "url", url: `/${MODEL_FILE}` },
            options: { backend: "flex" },
            prompt: PROMPT,
            maxTokens: tokens,
            useCache: cache !== "off",
            cache: cache === "off" ? "concat" : cache,
            window: cache === "window" ? window : undefined,
            every: 0,
            warmupTokens: WARMUP,
            threads: THREADS,
          });
          const tps = PROMPT_FILE ? prefillTps(out) : decodeTps(out.stepMs);
          results.push({ round, cache, side: name, tps, ids: out.ids, stepMs: out.stepMs });
          say(`  round ${round + 1} ${cache.padEnd(8)} ${name}: ${tps.toFixed(1)} tok/s`);
        }
      }
    }
    for (const side of Object.values(sides)) {
      if (side.page.problems.length) say(`page problems (${side.label}): ${side.page.problems.join("; ")}`);
    }

    const rows = caches.map((cache) => {
      const of = (side) => results.filter((r) => r.cache === cache && r.side === side);
      const [o, n] = [of("old"), of("new")];
      const ratios = n.map((r, i) => r.tps / o[i].tps);
      const sameIds = n.every((r, i) => r.ids.join() === o[i].ids.join());
      return { cache, old: mean(o.map((r) => r.tps)), new: mean(n.map((r) => r.tps)), ratios, sameIds };
    });
    const lines = [
      `| cache | old ${sides.old.label} tok/s | new ${sides.new.label} tok/s | new ÷ old | rounds | same tokens |`,
      "|---|---|---|---|---|---|",
      ...rows.map(
        (r) =>
          `| ${r.cache === "window" ? `window ${window}` : r.cache} | ${r.old.toFixed(1)} | ${r.new.toFixed(1)} | ${(r.new / r.old).toFixed(3)}× | ${r.ratios.map((x) => x.toFixed(3)).join(", ")} | ${r.sameIds ? "yes" : "no"} |`,
      ),
    ];
    say("");
    say(lines.join("\n"));
    const file = option("out", join(REPO, "bench", "out", `ab-${sides.old.name}-${new Date().toISOString().slice(0, 19).replace(/[-:T]/g, "")}.json`));
    mkdirSync(dirname(file), { recursive: true });
    const meta = { date: new Date().toISOString(), browser: browser.version, old: sides.old.label, new: sides.new.label, tokens, window, runs, threads: THREADS };
    writeFileSync(file, `${JSON.stringify({ meta, rows, results }, null, 1)}\n`);
    say(`\nwritten: ${file}`);
  } finally {
    await browser.close();
    for (const server of servers) server.close();
  }
}

main().catch((err) => {
  console.error(`ab-packages: ${err.message}`);
  process.exit(1);
});
