// The memory calculator's arithmetic (www/kv-memory.js) on published figures worked out by hand.
//
//   node --test tests/www/

import assert from "node:assert/strict";
import { test } from "node:test";

import { kvCacheBytes, kvComparisons, layerWindows, rowBytes } from "../../www/kv-memory.js";
import { KV_MODELS } from "../../www/kv-models.js";

const model = (id) => KV_MODELS.find((m) => m.id === id);
const GiB = 2 ** 30;

test("Llama 3.1 8B and 70B at their full 128K context in f16: the often-quoted 16 GiB and 40 GiB", () => {
  // 2 × 32 layers × 8 KV heads × 128 × 131072 tokens × 2 bytes
  assert.equal(kvCacheBytes(model("llama3.1-8b"), { tokens: 131072, dtype: "f16" }).bytes, 16 * GiB);
  // 2 × 80 layers × 8 KV heads × 128 × 131072 tokens × 2 bytes
  assert.equal(kvCacheBytes(model("llama3.1-70b"), { tokens: 131072, dtype: "f16" }).bytes, 40 * GiB);
});

test("SmolLM2 135M at 1024 tokens: f32, batch, int8, multi-head", () => {
  const m = model("smollm2-135m");
  // 2 × 30 layers × 3 KV heads × 64 × 1024 tokens × 4 bytes
  assert.equal(kvCacheBytes(m, { tokens: 1024 }).bytes, 47_185_920);
  assert.equal(kvCacheBytes(m, { tokens: 1024, batch: 8 }).bytes, 8 * 47_185_920);
  // int8 rows: 64 bytes + 2 blocks × a 2-byte scale = 68 bytes
  assert.equal(rowBytes(64, "int8"), 68);
  assert.equal(kvCacheBytes(m, { tokens: 1024, dtype: "int8" }).bytes, 2 * 30 * 3 * 1024 * 68);
  const rows = kvComparisons(m, { tokens: 1024, batch: 1, dtype: "f32" });
  assert.deepEqual(rows.map((r) => r.key), ["this", "mha", "dtype-f16", "dtype-int8"]);
  assert.equal(rows[1].bytes, 3 * 47_185_920, "9 KV heads instead of 3");
  assert.equal(rows[2].bytes, 47_185_920 / 2);
});

test("Qwen3 0.6B: head size 128 from config.json, not 1024 ÷ 16", () => {
  // 2 × 28 layers × 8 KV heads × 128 × 40960 tokens × 2 bytes
  assert.equal(kvCacheBytes(model("qwen3-0.6b"), { tokens: 40960, dtype: "f16" }).bytes, 4480 * 2 ** 20);
});

test("Gemma 3: every sixth layer full, the others keep their window", () => {
  const small = model("gemma3-270m");
  const windows = layerWindows(small);
  assert.deepEqual(windows.flatMap((w, i) => (w == null ? [i] : [])), [5, 11, 17]);
  // 15 layers keep 512 tokens, 3 keep 32768: 2 × 1 KV head × 256 × 4 bytes × (15 × 512 + 3 × 32768)
  const r = kvCacheBytes(small, { tokens: 32768 });
  assert.equal(r.bytes, 2 * 256 * 4 * (15 * 512 + 3 * 32768));
  assert.deepEqual(r.groups.map((g) => [g.window, g.layers, g.tokensKept]), [[512, 15, 512], [null, 3, 32768]]);
  // Below the window every layer keeps every token.
  assert.equal(kvCacheBytes(small, { tokens: 100 }).bytes, 2 * 18 * 256 * 4 * 100);
  const big = model("gemma3-27b");
  assert.equal(layerWindows(big).filter((w) => w == null).length, 10, "layers 5, 11, …, 59 of 62");
  const noWindow = kvComparisons(big, { tokens: 131072, batch: 1, dtype: "f16" }).find((x) => x.key === "no-window");
  assert.equal(noWindow.bytes, 2 * 62 * 16 * 128 * 131072 * 2);
});

test("the data: every model has a source and a consistent shape", () => {
  for (const m of KV_MODELS) {
    assert.match(m.source, /^https:\/\/huggingface\.co\/.+\/config\.json$/, m.id);
    assert.ok(m.heads % m.kvHeads === 0, `${m.id}: query heads are a multiple of KV heads`);
    assert.ok(Number.isInteger(m.headDim) && m.headDim > 0, m.id);
    assert.equal(Boolean(m.window), Boolean(m.fullEvery), `${m.id}: a window comes with its pattern`);
  }
});
