// Imports the built package (pkg/, `npm run build`) exactly as a user would,
// and generates from the tiny fixtures in Node.
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

const tinyGpt2 = async (options) =>
  Generator.fromHfFiles(
    await text("tiny-gpt2/config.json"),
    await bytes("tiny-gpt2/model.safetensors"),
    await text("tiny-gpt2/tokenizer.json"),
    options,
  );

test("the package.json exports the module, its types and the wasm", async () => {
  const manifest = JSON.parse(await readFile(new URL("package.json", pkg), "utf8"));
  assert.equal(manifest.name, "kvcache-wasm");
  assert.equal(manifest.type, "module");
  assert.equal(manifest.exports["."].default, "./kvcache_wasm.js");
  assert.equal(manifest.exports["."].types, "./kvcache_wasm.d.ts");
  for (const file of ["kvcache_wasm.js", "kvcache_wasm.d.ts", "kvcache_wasm_bg.wasm", "README.md", "LICENSE-MIT"]) {
    assert.ok(manifest.files.includes(file), `${file} is in files`);
    await readFile(new URL(file, pkg));
  }
  const dts = await readFile(new URL("kvcache_wasm.d.ts", pkg), "utf8");
  for (const name of ["class Generator", "static fromHfFiles(", "static load(", "interface GenerateOptions", "interface Generation"]) {
    assert.ok(dts.includes(name), `the .d.ts declares ${name}`);
  }
});

test("tiny-gpt2 from HF files gives the reference greedy ids", async () => {
  const expected = JSON.parse(await text("tiny-gpt2/expected.json"));
  const g = await tinyGpt2({ cache: "prealloc" });
  const tokens = [];
  const r = g.generate(expected.prompt, { maxTokens: expected.greedy_ids.length, stopIds: [], onToken: (t) => tokens.push(t) });
  assert.deepEqual(r.ids, expected.greedy_ids);
  assert.deepEqual(r.promptIds, expected.prompt_ids);
  assert.deepEqual(tokens.map((t) => t.id), expected.greedy_ids);
  assert.equal(r.stopReason, "maxTokens");
  assert.equal(typeof r.tokensPerSec, "number");
  assert.deepEqual(Array.from(g.encode(expected.prompt)), expected.prompt_ids);
  assert.ok(g.encode(expected.prompt) instanceof Uint32Array);
  assert.equal(g.decode(expected.prompt_ids), expected.prompt);
  assert.equal(g.config.architecture, "gpt2");

  g.reset();
  assert.throws(() => {
    g.cacheStrategy = "window";
  }, /the `window` cache strategy needs a window size: set `window` first/);
  assert.equal(g.cacheStrategy, "prealloc", "the failed setter changed nothing");
  g.window = 8;
  g.cacheStrategy = "window";
  assert.equal(g.cacheStrategy, "window");
});

test("errors are Errors with a message, and the generator still works after one", async () => {
  const expected = JSON.parse(await text("tiny-gpt2/expected.json"));
  const g = await tinyGpt2();
  assert.throws(() => g.generate("hi", { temperature: NaN }), { name: "Error", message: /generate option `temperature` must be a finite number, got number NaN/ });
  assert.throws(() => g.generate("hi", { topP: 0 }), /topP must be in \(0, 1\]/);
  assert.throws(() => g.generate("hi", { maxTokns: 3 }), /unknown generate option `maxTokns`/);
  assert.throws(() => Generator.fromHfFiles("{}", new Uint8Array(3), "{}"), Error);
  const r = g.generate(expected.prompt, { maxTokens: 16, stopIds: [] });
  assert.deepEqual(r.ids, expected.greedy_ids);
  g.free();
});

test("the tiny GGUF gives the reference greedy ids", async () => {
  const expected = JSON.parse(await text("tiny-llama.gguf.expected.json"));
  const g = Generator.fromGguf(await bytes("tiny-llama.gguf"));
  const r = g.generate(expected.prompt, { maxTokens: expected.greedy_ids.length, stopIds: [] });
  assert.deepEqual(r.ids, expected.greedy_ids);
});

test("load() streams a folder over HTTP with progress", async () => {
  const server = createServer(async (req, res) => {
    try {
      const body = await readFile(new URL(req.url.slice(1), fixtures));
      res.writeHead(200, { "content-length": body.length });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  try {
    const base = `http://127.0.0.1:${server.address().port}`;
    const progress = [];
    const g = await Generator.load(`${base}/tiny-llama/`, { onProgress: (loaded, total) => progress.push([loaded, total]) });
    const expected = JSON.parse(await text("tiny-llama/expected.json"));
    const r = g.generate(expected.prompt, { maxTokens: 16, stopIds: [] });
    assert.deepEqual(r.ids, expected.greedy_ids);
    const [loaded, total] = progress.at(-1);
    assert.equal(loaded, total);
    await assert.rejects(Generator.load(`${base}/nothing-here/`), /^Error: download failed: fetching http:\/\/127\.0\.0\.1:\d+\/nothing-here\/config\.json: HTTP 404/);
    // A file on disk is not a URL fetch() takes in Node: the error says what does take it.
    for (const path of ["tests/fixtures/tiny-llama.gguf", "file:///tmp/model.gguf"]) {
      await assert.rejects(Generator.load(path), /^Error: download failed: fetching .*\(load\(\) downloads a URL; for a file on disk, read its bytes and use Generator\.fromGguf or Generator\.fromHfFiles\)$/);
    }
  } finally {
    server.close();
  }
});
