// Memory soak: many generate + reset cycles, create + free cycles and failing
// calls, through the package in Node. wasm memory only grows, so after a
// warm-up its size must stay within a small bound: anything leaked per cycle
// would add up past it.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

import init, { Generator } from "../../pkg/kvcache_wasm.js";

const fixtures = new URL("../fixtures/", import.meta.url);
const text = (path) => readFile(new URL(path, fixtures), "utf8");
const bytes = async (path) => new Uint8Array(await readFile(new URL(path, fixtures)));

const wasm = await init({ module_or_path: await readFile(new URL("../../pkg/kvcache_wasm_bg.wasm", import.meta.url)) });
const memory = () => wasm.memory.buffer.byteLength;
const MiB = 1 << 20;

const files = [await text("tiny-gpt2/config.json"), await bytes("tiny-gpt2/model.safetensors"), await text("tiny-gpt2/tokenizer.json")];
const gguf = await bytes("tiny-llama.gguf");

/** Runs `cycle` `warmup` times, then `cycles` times, and returns the memory growth over the latter. */
function growth(cycle, warmup, cycles) {
  for (let i = 0; i < warmup; i++) cycle(i);
  const before = memory();
  for (let i = 0; i < cycles; i++) cycle(i);
  return memory() - before;
}

test("200 generate + reset cycles, every strategy: memory stays flat", () => {
  for (const cache of ["concat", "prealloc", "window"]) {
    const g = Generator.fromHfFiles(...files, cache === "window" ? { cache, window: 4 } : { cache });
    const grew = growth(
      () => {
        g.generate("Hello, I am", { maxTokens: 12, stopIds: [] });
        g.reset();
      },
      20,
      200,
    );
    assert.ok(grew <= 1 * MiB, `${cache}: memory grew by ${grew} bytes over 200 cycles`);
    g.free();
  }
});

test("100 create + free cycles: memory stays flat", () => {
  const grew = growth(
    (i) => {
      const g = i % 2 ? Generator.fromGguf(gguf) : Generator.fromHfFiles(...files);
      g.generate("Hello", { maxTokens: 2 });
      g.free();
    },
    10,
    100,
  );
  assert.ok(grew <= 2 * MiB, `memory grew by ${grew} bytes over 100 create + free cycles`);
});

test("500 failing calls: memory stays flat and the generator works", () => {
  const g = Generator.fromHfFiles(...files);
  const bad = [
    () => g.generate(5),
    () => g.generate("x", { stopIds: "2" }),
    () => g.generate("x", { temperature: NaN }),
    () => g.decode([2 ** 32]),
    () => Generator.fromGguf(gguf.subarray(0, 1000)),
    () => Generator.fromHfFiles("{", files[1], files[2]),
    () => g.generate("x", { onToken: () => { throw new Error("stop"); } }),
  ];
  const grew = growth(
    (i) => {
      assert.throws(bad[i % bad.length]);
      g.reset();
    },
    50,
    500,
  );
  assert.ok(grew <= 1 * MiB, `memory grew by ${grew} bytes over 500 failing calls`);
  assert.equal(g.generate("Hello, I am", { maxTokens: 3, stopIds: [] }).ids.length, 3);
});
