// What a crash of the engine does (issue 16): the call that crashed and every
// later call on the generators of the crashed instance throw "the engine
// crashed: create a new one"; generators created afterwards work, on a fresh
// instance; and crashes do not accumulate.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";

import init, { Generator } from "../../pkg/kvcache_wasm.js";

const pkg = new URL("../../pkg/", import.meta.url);
const fixtures = new URL("../fixtures/", import.meta.url);
const text = (path) => readFile(new URL(path, fixtures), "utf8");
const bytes = async (path) => new Uint8Array(await readFile(new URL(path, fixtures)));

await init({ module_or_path: await readFile(new URL("kvcache_wasm_bg.wasm", pkg)) });

const expected = JSON.parse(await text("tiny-llama.gguf.expected.json"));
const gguf = await bytes("tiny-llama.gguf");
const greedy = { maxTokens: expected.greedy_ids.length, stopIds: [] };
const CRASHED = /the engine crashed: create a new one/;

test("a panic: that call and the crashed instance's generators throw a clear Error; new ones work", () => {
  const before = Generator.fromGguf(gguf);
  assert.deepEqual(before.generate(expected.prompt, greedy).ids, expected.greedy_ids);
  assert.throws(() => Generator._crashForTests("panic"), (e) => CRASHED.test(e.message) && /a panic on purpose/.test(e.message));
  for (const call of [() => before.generate(expected.prompt, greedy), () => before.position, () => before.encode("x"), () => { before.useCache = false; }]) {
    assert.throws(call, (e) => CRASHED.test(e.message) && /belonged to the engine that crashed/.test(e.message));
  }
  before.free(); // a no-op for an object of the crashed instance
  const after = Generator.fromGguf(gguf);
  assert.deepEqual(after.generate(expected.prompt, greedy).ids, expected.greedy_ids);
});

test("a trap that is not a panic (an abort, as out of memory is) is handled the same way", () => {
  const before = Generator.fromGguf(gguf);
  assert.throws(() => Generator._crashForTests("abort"), (e) => CRASHED.test(e.message) && e.cause instanceof WebAssembly.RuntimeError);
  assert.throws(() => before.step(), CRASHED);
  const after = Generator.fromGguf(gguf);
  assert.deepEqual(after.generate(expected.prompt, greedy).ids, expected.greedy_ids);
});

test("crashes do not accumulate: 60 in a row, and the engine still works", () => {
  // Each panic is also logged with its stack on console.error: 60 of them are kept out of the log.
  const log = console.error;
  console.error = () => {};
  try {
    for (let i = 0; i < 60; i++) {
      assert.throws(() => Generator._crashForTests(i % 2 ? "abort" : "panic"), CRASHED);
    }
  } finally {
    console.error = log;
  }
  const g = Generator.fromGguf(gguf);
  assert.deepEqual(g.generate(expected.prompt, greedy).ids, expected.greedy_ids);
});

test("an error thrown by the caller's callback is rethrown as it is, even a RangeError, and no engine crashes", async () => {
  const g = Generator.fromGguf(gguf);
  const other = Generator.fromGguf(gguf);
  // A RangeError is also what a stack overflow inside wasm throws; this one is the caller's.
  const mine = new RangeError("toFixed() digits argument must be between 0 and 100");
  assert.throws(() => g.generate(expected.prompt, { ...greedy, onToken: () => { throw mine; } }), (e) => e === mine);
  g.reset();
  assert.deepEqual(g.generate(expected.prompt, greedy).ids, expected.greedy_ids);
  assert.deepEqual(other.generate(expected.prompt, greedy).ids, expected.greedy_ids);

  const server = createServer(async (req, res) => {
    const body = await readFile(new URL(req.url.slice(1), fixtures));
    res.writeHead(200, { "content-length": body.length });
    res.end(body);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const url = `http://127.0.0.1:${server.address().port}/tiny-llama.gguf`;
    const progress = new RangeError("Invalid array length");
    await assert.rejects(Generator.load(url, { onProgress: () => { throw progress; } }), (e) => e === progress);
    assert.deepEqual(g.generate(expected.prompt, { ...greedy, maxTokens: 1 }).ids.length, 1);
    const loaded = await Generator.load(url);
    assert.deepEqual(loaded.generate(expected.prompt, greedy).ids, expected.greedy_ids);
  } finally {
    server.close();
  }
});
