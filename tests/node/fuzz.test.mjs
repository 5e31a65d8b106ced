// A short, seeded mutation pass through the npm package (the long campaign is
// scripts/fuzz-campaign.mjs): mutated GGUF, safetensors, config.json,
// tokenizer.json and options, each handed to the package as a user's would
// be. Every input must give a result or a clear Error, never a crash of the
// engine; a crashing input is written to target/fuzz-crashes/ to become a
// regression fixture (fuzz/regressions/<format>/).
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, readFile, writeFile } from "node:fs/promises";

import init, { Generator } from "../../pkg/kvcache_wasm.js";
import { ENGINE_CRASHED, loadSeeds, makeRunner, mutate, prng } from "./fuzz/formats.mjs";

const INPUTS_PER_FORMAT = Number(process.env.KVCACHE_NODE_FUZZ_INPUTS ?? 150);
const SEED = Number(process.env.KVCACHE_FUZZ_SEED ?? 20261129);

await init({ module_or_path: await readFile(new URL("../../pkg/kvcache_wasm_bg.wasm", import.meta.url)) });
const seeds = await loadSeeds();
const runner = makeRunner(Generator, seeds);

for (const [index, format] of Object.keys(seeds).entries()) {
  test(`${INPUTS_PER_FORMAT} mutated ${format} inputs: no crash`, async () => {
    const random = prng(SEED + index);
    const crashes = [];
    for (let i = 0; i < INPUTS_PER_FORMAT; i++) {
      const parent = seeds[format][Math.floor(random() * seeds[format].length)];
      const input = mutate(random, seeds[format], parent);
      try {
        runner[format](input);
      } catch (e) {
        assert.ok(e instanceof Error, `threw a non-Error: ${e}`);
        if (e.message.startsWith(ENGINE_CRASHED)) {
          const dir = new URL("../../target/fuzz-crashes/", import.meta.url);
          await mkdir(dir, { recursive: true });
          const file = new URL(`node-${format}-${SEED}-${i}.bin`, dir);
          await writeFile(file, input);
          crashes.push(`${e.message} (input: ${file.pathname})`);
        }
      }
    }
    assert.deepEqual(crashes, []);
  });
}

test("every regression input gives a result or a clear Error", async () => {
  const { readdir } = await import("node:fs/promises");
  const root = new URL("../../fuzz/regressions/", import.meta.url);
  for (const format of Object.keys(seeds)) {
    const dir = new URL(`${format}/`, root);
    for (const name of (await readdir(dir).catch(() => [])).filter((n) => !n.startsWith("."))) {
      const input = new Uint8Array(await readFile(new URL(name, dir)));
      try {
        runner[format](input);
      } catch (e) {
        assert.ok(!String(e?.message).startsWith(ENGINE_CRASHED), `${format}/${name}: ${e.message}`);
      }
    }
  }
});
