#!/usr/bin/env node
// The long fuzzing campaign through the npm package (pkg/, `npm run build`):
// N mutated inputs per format (default 100,000; `--inputs N`, `--formats gguf,options`,
// `--seed S`), each handed to the package as a user's file or options would be
// (tests/node/fuzz/formats.mjs), in one Node process. It counts the crashes of
// the engine (errors starting "the engine crashed", which the package survives
// by replacing the instance) and the calls over 5 s, writes every crashing or
// slow input to target/fuzz-crashes/, and prints a summary (recorded in
// docs/robustness.md). Exits non-zero if anything crashed or was slow.
//
//   nice -n 10 node scripts/fuzz-campaign.mjs --inputs 100000
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import init, { Generator } from "../pkg/kvcache_wasm.js";
import { ENGINE_CRASHED, loadSeeds, makeRunner, mutate, prng } from "../tests/node/fuzz/formats.mjs";

const { values } = parseArgs({
  options: {
    inputs: { type: "string", default: "100000" },
    formats: { type: "string", default: "" },
    seed: { type: "string", default: "1" },
  },
});
const inputs = Number(values.inputs);
const seed = Number(values.seed);
const SLOW_MS = 5000;

await init({ module_or_path: await readFile(new URL("../pkg/kvcache_wasm_bg.wasm", import.meta.url)) });
const seeds = await loadSeeds();
const runner = makeRunner(Generator, seeds);
const formats = values.formats ? values.formats.split(",") : Object.keys(seeds);
const out = new URL("../target/fuzz-crashes/", import.meta.url);
await mkdir(out, { recursive: true });

const started = Date.now();
const summary = [];
let failed = false;
for (const [index, format] of formats.entries()) {
  const random = prng(seed * 1000 + index);
  const counts = { inputs: 0, accepted: 0, errors: 0, crashes: 0, slow: 0, slowestMs: 0 };
  const formatStarted = Date.now();
  for (let i = 0; i < inputs; i++) {
    const parent = seeds[format][Math.floor(random() * seeds[format].length)];
    const input = mutate(random, seeds[format], parent);
    const t0 = performance.now();
    let crash = null;
    try {
      runner[format](input);
      counts.accepted++;
    } catch (e) {
      counts.errors++;
      if (String(e?.message).startsWith(ENGINE_CRASHED)) crash = e.message;
    }
    const ms = performance.now() - t0;
    counts.inputs++;
    counts.slowestMs = Math.max(counts.slowestMs, ms);
    if (crash || ms > SLOW_MS) {
      const kind = crash ? "crash" : "slow";
      counts[crash ? "crashes" : "slow"]++;
      const file = new URL(`campaign-${kind}-${format}-${seed}-${i}.bin`, out);
      await writeFile(file, input);
      console.log(`${format} #${i}: ${crash ?? `${ms.toFixed(0)} ms`} (${file.pathname})`);
    }
    if ((i + 1) % 10000 === 0) {
      console.log(`${format}: ${i + 1} inputs, ${((Date.now() - formatStarted) / 1000).toFixed(0)} s`);
    }
  }
  counts.seconds = Math.round((Date.now() - formatStarted) / 1000);
  counts.slowestMs = Math.round(counts.slowestMs);
  failed ||= counts.crashes > 0 || counts.slow > 0;
  summary.push({ format, ...counts });
}
console.log(`\nfuzz campaign, seed ${seed}, ${inputs} inputs per format, ${Math.round((Date.now() - started) / 1000)} s:`);
console.table(summary);
process.exit(failed ? 1 : 0);
