// A model as large as wasm memory allows: Qwen3-0.6B's shapes in bf16 (a 1.2 GB
// model.safetensors, with random weights made here) take about 2.4 GB as f32 weights, which fit
// in the 3.5 GiB budget because the file itself stays in JS memory, read a tensor at a time.
// A second copy does not fit: it is refused with an Error saying so, and the first keeps
// working; once the first is freed, its memory counts as free and the second loads.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

import init, { Generator } from "../../pkg/kvcache_wasm.js";

const pkg = new URL("../../pkg/", import.meta.url);
const fixtures = new URL("../fixtures/", import.meta.url);
await init({ module_or_path: await readFile(new URL("kvcache_wasm_bg.wasm", pkg)) });

const config = {
  architectures: ["Qwen3ForCausalLM"],
  model_type: "qwen3",
  vocab_size: 151936,
  hidden_size: 1024,
  intermediate_size: 3072,
  num_hidden_layers: 28,
  num_attention_heads: 16,
  num_key_value_heads: 8,
  head_dim: 128,
  hidden_act: "silu",
  max_position_embeddings: 40960,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: true,
  torch_dtype: "bfloat16",
};

/** The tensors of a Qwen3 model with `config`'s shapes, in file order. */
function tensors(c) {
  const [d, hd, ff] = [c.hidden_size, c.head_dim, c.intermediate_size];
  const [q, kv] = [c.num_attention_heads * hd, c.num_key_value_heads * hd];
  const list = [["model.embed_tokens.weight", [c.vocab_size, d]]];
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    list.push(
      [`${p}input_layernorm.weight`, [d]],
      [`${p}post_attention_layernorm.weight`, [d]],
      [`${p}self_attn.q_proj.weight`, [q, d]],
      [`${p}self_attn.k_proj.weight`, [kv, d]],
      [`${p}self_attn.v_proj.weight`, [kv, d]],
      [`${p}self_attn.o_proj.weight`, [d, q]],
      [`${p}self_attn.q_norm.weight`, [hd]],
      [`${p}self_attn.k_norm.weight`, [hd]],
      [`${p}mlp.gate_proj.weight`, [ff, d]],
      [`${p}mlp.up_proj.weight`, [ff, d]],
      [`${p}mlp.down_proj.weight`, [d, ff]],
    );
  }
  list.push(["model.norm.weight", [d]]);
  return list;
}

/** A safetensors file of `config`'s tensors in bf16: norms 1, matrices uniform in ±0.035 (seeded). */
function safetensors(c) {
  const header = {};
  let offset = 0;
  for (const [name, shape] of tensors(c)) {
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: "BF16", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  // Padded with spaces, as the format allows, so the data starts 8-byte aligned.
  let text = JSON.stringify(header);
  text += " ".repeat((8 - (text.length % 8)) % 8);
  const file = new Uint8Array(8 + text.length + offset);
  new DataView(file.buffer).setBigUint64(0, BigInt(text.length), true);
  file.set(new TextEncoder().encode(text), 8);
  const values = new Uint16Array(file.buffer, 8 + text.length); // little-endian, as the file is
  const f32 = new Float32Array(1);
  const bf16 = new Uint16Array(f32.buffer); // [1]: the high half, f32's bf16 rounded down
  let seed = 12345;
  for (const [name, shape] of tensors(c)) {
    const [start, end] = header[name].data_offsets.map((at) => at / 2);
    if (shape.length === 1) {
      values.fill(0x3f80, start, end); // 1.0
      continue;
    }
    for (let i = start; i < end; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      f32[0] = ((seed / 2 ** 32) * 2 - 1) * 0.035;
      values[i] = bf16[1];
    }
  }
  return file;
}

const tokenizer = await readFile(new URL("tiny-qwen3/tokenizer.json", fixtures), "utf8");

test("a 0.6B model in bf16 safetensors loads; a second copy is refused clearly until the first is freed", () => {
  const weights = safetensors(config);
  assert.ok(weights.length > 1.19e9, `${weights.length} bytes`);
  const load = () => Generator.fromHfFiles(JSON.stringify(config), weights, tokenizer, { maxSeqLen: 64 });
  const greedy = { maxTokens: 3, temperature: 0, stopIds: [] };

  const first = load();
  const ids = first.generate("Hello", greedy).ids;
  assert.equal(ids.length, 3);
  assert.throws(load, (e) => {
    assert.ok(e instanceof Error);
    assert.match(e.message, /^out of memory: the model's weights do not fit: .* more than the memory budget allows \(3\.5 GiB, .* of which is in use\)/);
    return true;
  });
  first.reset();
  assert.deepEqual(first.generate("Hello", greedy).ids, ids, "the first model still works");
  first.free();
  const second = load();
  assert.deepEqual(second.generate("Hello", greedy).ids, ids);
  second.free();
});
