// The package used wrongly, as an adversarial user would (issue 16): every
// mistake is a clear Error, and the generator (and the module) keep working.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

import init, { Bench, Generator } from "../../pkg/kvcache_wasm.js";

const pkg = new URL("../../pkg/", import.meta.url);
const fixtures = new URL("../fixtures/", import.meta.url);
const text = (path) => readFile(new URL(path, fixtures), "utf8");
const bytes = async (path) => new Uint8Array(await readFile(new URL(path, fixtures)));

await init({ module_or_path: await readFile(new URL("kvcache_wasm_bg.wasm", pkg)) });

const expected = JSON.parse(await text("tiny-gpt2/expected.json"));
const files = [await text("tiny-gpt2/config.json"), await bytes("tiny-gpt2/model.safetensors"), await text("tiny-gpt2/tokenizer.json")];
const tinyGpt2 = (options) => Generator.fromHfFiles(...files, options);
const greedy = { maxTokens: expected.greedy_ids.length, stopIds: [] };

/** The generator still gives the reference ids from a fresh sequence. */
function assertWorks(g, what) {
  g.reset();
  assert.deepEqual(g.generate(expected.prompt, greedy).ids, expected.greedy_ids, `works after ${what}`);
}

test("wrong argument types are clear Errors, not traps or silent coercions", () => {
  const g = tinyGpt2();
  const cases = [
    [() => g.generate(5), /generate: the prompt must be a string, got number 5/],
    [() => g.prefill({}), /prefill: the prompt must be a string, got an object/],
    [() => g.encode(5), /encode: the text must be a string, got number 5/],
    [() => g.decode("12"), /decode: ids must be an array of token ids \(or a Uint32Array\), got string "12"/],
    [() => g.decode([2 ** 32]), /decode: ids\[0\] must be from 0 to 4294967295, got 4294967296/],
    [() => g.decode([1, NaN]), /decode: ids\[1\] must be a whole number, got number NaN/],
    [() => g.decode([1, 2, "a"]), /decode: ids\[2\] must be a whole number, got string "a"/],
    [() => g.decode([-1]), /decode: ids\[0\] must be from 0 to 4294967295, got -1/],
    [() => g.decode([1.5]), /decode: ids\[0\] must be a whole number, got number 1.5/],
    [() => { g.cacheStrategy = 5; }, /cacheStrategy must be a string, got number 5/],
    [() => { g.cacheStrategy = "ring"; }, /unknown cache strategy `ring`/],
    [() => { g.window = -1; }, /window must be between 1 and maxSeqLen \(\d+\), got -1/],
    [() => { g.window = 0; }, /window must be between 1 and maxSeqLen \(\d+\), got 0/],
    [() => { g.window = "8"; }, /window must be a whole number, got string "8"/],
    [() => { g.window = 2.5; }, /window must be a whole number, got number 2.5/],
    [() => { g.useCache = "no"; }, /useCache must be true or false, got string "no"/],
    [() => { g.kvDtype = "q4"; }, /unknown kvDtype `q4` \(expected f32, f16 or int8\)/],
    [() => { g.kvDtype = 8; }, /kvDtype must be a string, got number 8/],
    [() => { g.sinks = 2; }, /sinks only apply with the window strategy \(cache is "concat"\)/],
    [() => { g.sinks = 1.5; }, /sinks must be a whole number, got number 1.5/],
    [() => { g.useCache = 0; }, /useCache must be true or false, got number 0/],
    [() => g.generate("hi", { stopIds: "2" }), /generate option `stopIds`: invalid type: string "2", expected a sequence/],
    [() => g.generate("hi", { stopIds: [1, "2"] }), /generate option `stopIds\[1\]`: invalid type: string "2", expected u32/],
    [() => g.generate("hi", { maxTokens: -1 }), /generate option `maxTokens`: invalid value: integer `-1`, expected usize/],
    [() => g.generate("hi", { maxTokens: 1.5 }), /generate option `maxTokens`: invalid type: floating point `1.5`, expected usize/],
    [() => g.generate("hi", { maxTokens: "3" }), /generate option `maxTokens`: invalid type: string "3", expected usize/],
    [() => g.generate("hi", { temperature: NaN }), /generate option `temperature` must be a finite number, got number NaN/],
    [() => g.generate("hi", { temperature: Infinity }), /generate option `temperature` must be a finite number, got number Infinity/],
    [() => g.generate("hi", { chat: "yes" }), /generate option `chat`: invalid type: string "yes", expected a boolean/],
    [() => g.generate("hi", { onToken: 5 }), /option `onToken` must be a function, got number 5/],
    [() => g.generate("hi", 5), /generate options must be an object, got number 5/],
    [() => g.generate("hi", [1]), /generate options must be an object, got an array/],
    [() => g.generate("hi", { seed: () => 1 }), /generate option `seed` must be a plain value .*got a function/],
    [() => g.scoreStart(5), /scoreStart: the text must be a string, got number 5/],
    [() => g.scoreStep(4), /no scoring in progress: call scoreStart first/],
    [() => g.scoreStep("4"), /scoreStep: count must be a whole number, got string "4"/],
    [() => g.scoreStep(-1), /scoreStep: count must be from 1 to 4294967295, got -1/],
    [() => g.scoreFinish(), /no scoring in progress: call scoreStart first/],
    [() => Bench.cacheCost(g, NaN), /cacheCost: tokens must be a whole number, got number NaN/],
    [() => Bench.cacheCost(g, 0), /cacheCost: tokens must be from 1 to 4294967295, got 0/],
    [() => Bench.cacheCost(g, "4"), /cacheCost: tokens must be a whole number, got string "4"/],
    [() => Bench.interleaved(g, "hi", ["concat"], -1), /interleaved: tokens must be from 1 to 4294967295, got -1/],
    [() => Bench.interleaved(g, "hi", "concat", 2), /interleaved: caches must be an array of strategy names/],
    [() => Bench.interleaved(g, "hi", [5], 2), /interleaved: caches\[0\] must be a string, got number 5/],
    [() => Bench.interleaved(g, 7, ["concat"], 2), /interleaved: the prompt must be a string, got number 7/],
    [() => Generator.fromGguf("not bytes"), /fromGguf: the .gguf file's bytes must be a Uint8Array \(or an ArrayBuffer\), got string "not bytes"/],
    [() => Generator.fromGguf(5), /fromGguf: the .gguf file's bytes must be a Uint8Array/],
    [() => Generator.fromHfFiles(5, files[1], files[2]), /fromHfFiles: configJson \(the text of config.json\) must be a string, got number 5/],
    [() => Generator.fromHfFiles(files[0], [1, 2], files[2]), /fromHfFiles: weights \(model.safetensors\) must be a Uint8Array/],
    [() => Generator.fromHfFiles(files[0], files[1], null), /fromHfFiles: tokenizerJson \(the text of tokenizer.json\) must be a string, got null/],
    [() => Generator.randomGpt2({ maxSeqLen: -5 }), /model option `maxSeqLen`: invalid value: integer `-5`, expected usize/],
    [() => Generator.randomGpt2({ useCache: "no" }), /model option `useCache`: invalid type: string "no", expected a boolean/],
    [() => Generator.randomGpt2({ cache: 5 }), /model option `cache`: invalid type: integer `5`, expected a string/],
    [() => Generator.randomGpt2({ kvDtype: "bf16" }), /unknown kvDtype `bf16`/],
    [() => Generator.randomGpt2({ cache: "window", window: 4, sinks: 4 }), /sinks must be smaller than the window \(4\), got 4/],
  ];
  for (const [call, message] of cases) {
    assert.throws(call, (e) => e instanceof Error && !(e instanceof WebAssembly.RuntimeError) && message.test(e.message), String(call));
  }
  assert.equal(g.cacheStrategy, "concat", "the failed setters changed nothing");
  assert.equal(g.useCache, true);
  assert.equal(g.window, undefined);
  assert.equal(g.kvDtype, "f32");
  assert.equal(g.sinks, 0);
  assertWorks(g, "every wrong call");
});

test("an ArrayBuffer is taken for bytes, as a Uint8Array is", async () => {
  const gguf = await bytes("tiny-llama.gguf");
  const g = Generator.fromGguf(gguf.buffer.slice(gguf.byteOffset, gguf.byteOffset + gguf.byteLength));
  const exp = JSON.parse(await text("tiny-llama.gguf.expected.json"));
  assert.deepEqual(g.generate(exp.prompt, { maxTokens: exp.greedy_ids.length, stopIds: [] }).ids, exp.greedy_ids);
  assert.deepEqual(g.decode(new Uint32Array(exp.greedy_ids)), g.decode(exp.greedy_ids));
});

test("a throwing onToken stops the run, keeps the tokens produced, and the next run continues after them", () => {
  const g = tinyGpt2();
  const boom = new Error("stop here");
  const seen = [];
  assert.throws(
    () =>
      g.generate(expected.prompt, {
        ...greedy,
        onToken: (t) => {
          seen.push(t.id);
          if (seen.length === 3) throw boom;
        },
      }),
    (e) => e === boom,
  );
  assert.deepEqual(seen, expected.greedy_ids.slice(0, 3));
  // The prompt and the three tokens are in the sequence; the third is not yet run through the model.
  assert.equal(g.position, expected.prompt_ids.length + 2);
  const next = g.generate(" more", { maxTokens: 2, stopIds: [] });
  assert.equal(next.ids.length, 2);
  assert.equal(g.position, expected.prompt_ids.length + 3 + next.promptIds.length + 1, "the next run continued the sequence");
  // Reset forgets them: the reference run again.
  assertWorks(g, "a throwing onToken");
});

test("calls on the generator from its own onToken are refused clearly; other generators may be used", () => {
  const g = tinyGpt2();
  const other = tinyGpt2();
  const messages = [];
  g.generate(expected.prompt, {
    maxTokens: 2,
    stopIds: [],
    onToken: (t) => {
      for (const call of [() => g.position, () => g.generate("x"), () => g.reset(), () => g.free(), () => { g.useCache = false; }]) {
        try {
          call();
          messages.push("no error");
        } catch (e) {
          messages.push(e.message);
        }
      }
      assert.ok(other.encode("hi").length > 0, "another generator works meanwhile");
      assert.equal(typeof t.id, "number");
    },
  });
  assert.equal(messages.length, 10);
  for (const m of messages) {
    assert.match(m, /^Generator\.\S+: this Generator is busy in generate\(\) \(a call from its onToken or onProgress callback\)/);
  }
  assertWorks(g, "re-entrant calls");
});

test("a freed object, or one made with new, is a clear Error; free() again is a no-op", () => {
  const g = tinyGpt2();
  g.generate(expected.prompt, { maxTokens: 2, stopIds: [] });
  const snapshot = g.snapshot();
  const kept = snapshot.toBytes();
  snapshot.free();
  assert.throws(() => snapshot.toBytes(), /^Error: CacheSnapshot\.toBytes: this CacheSnapshot has been freed/);
  assert.throws(() => g.restore(snapshot), /CacheSnapshot\.toBytes: this CacheSnapshot has been freed/);
  g.restore(kept);
  g.free();
  for (const [call, says] of [
    [() => g.generate("x"), /^Error: Generator\.generate: this Generator has been freed \(by free\(\) or at the end of a `using` block\)/],
    [() => g.position, /^Error: Generator\.position: this Generator has been freed/],
    [() => { g.useCache = false; }, /^Error: Generator\.useCache: this Generator has been freed/],
    [() => new Generator().reset(), /^Error: Generator\.reset: .* or was made with `new` instead of one of Generator's static methods/],
  ]) {
    assert.throws(call, (e) => says.test(String(e)));
  }
  g.free();
  g[Symbol.dispose]();
  assertWorks(tinyGpt2(), "freed objects");
});

test("prompts far past the context are refused before being tokenized in full", () => {
  const g = tinyGpt2();
  const huge = "a".repeat(40 * 1024 * 1024);
  assert.throws(() => g.generate(huge), /context full: the prompt is 41943040 bytes, more than \d+ tokens can hold/);
  assertWorks(g, "a 40 MB prompt");
});

test("temperature and topP are checked as the numbers given; messages write them as JS does", () => {
  const g = tinyGpt2();
  for (const [options, message] of [
    [{ temperature: -1e308 }, /temperature must be a finite number >= 0 \(0 = greedy\), got -1e\+308$/],
    [{ temperature: -1e-300 }, /temperature must be a finite number >= 0 \(0 = greedy\), got -1e-300$/],
    [{ topP: 1.0000000001 }, /topP must be in \(0, 1\], got 1\.0000000001$/],
  ]) {
    assert.throws(() => g.generate(expected.prompt, options), (e) => message.test(e.message), JSON.stringify(options));
  }
  assert.throws(() => g.decode([1e-300]), /decode: ids\[0\] must be a whole number, got number 1e-300$/);
  assert.equal(g.position, 0);
  // In range, beyond an f32: topP 1e-300 keeps the likeliest token alone; temperature 1e308 is the largest f32.
  const n = expected.greedy_ids.length;
  const sampled = (temperature, topP) => {
    g.reset();
    return g.generate(expected.prompt, { maxTokens: n, temperature, topP, seed: 5, stopIds: [] }).ids;
  };
  assert.deepEqual(sampled(1.5, 1e-300), expected.greedy_ids);
  assert.deepEqual(sampled(1e308, 1), sampled(3.4028234663852886e38, 1));
});

test("a Set of stop ids works; other objects are named, and options must be plain objects", () => {
  const g = tinyGpt2();
  const stop = expected.greedy_ids[3];
  const first = expected.greedy_ids.indexOf(stop);
  const out = g.generate(expected.prompt, { maxTokens: 16, stopIds: new Set([stop, 299]) });
  assert.deepEqual(out.ids, expected.greedy_ids.slice(0, first));
  assert.equal(out.stopReason, "stopToken");
  g.reset();
  for (const [call, message] of [
    [() => g.generate("hi", { stopIds: new Map([[1, 2]]) }), /generate option `stopIds` must be a plain value \(a number, string, boolean, array or object\), got a Map$/],
    [() => g.generate("hi", { stopIds: new DataView(new ArrayBuffer(8)) }), /got a DataView$/],
    [() => g.generate("hi", { seed: new Date(0) }), /generate option `seed` must be a plain value .*got a Date$/],
    [() => g.generate("hi", { seed: 2n }), /got bigint 2n$/],
    [() => g.generate("hi", new Map([["maxTokens", 3]])), /generate options must be a plain object, got a Map$/],
    [() => g.decode(new Set([1, 2])), /decode: ids must be an array of token ids \(or a Uint32Array\), got a Set$/],
    [() => g.decode(new ArrayBuffer(4)), /got an ArrayBuffer$/],
  ]) {
    assert.throws(call, (e) => e instanceof Error && message.test(e.message), String(call));
  }
  assert.equal(g.position, 0);
  assertWorks(g, "objects of the wrong kind");
});

test("an empty prompt continues the sequence; it is refused where no token waits", () => {
  const g = tinyGpt2();
  const n = expected.greedy_ids.length;
  assert.throws(() => g.generate(""), /the prompt is empty: give at least one token of text$/);
  const head = g.generate(expected.prompt, { maxTokens: 3, stopIds: [] });
  const rest = g.generate("", { maxTokens: n - 3, stopIds: [] });
  assert.deepEqual(rest.promptIds, []);
  assert.deepEqual([...head.ids, ...rest.ids], expected.greedy_ids);
  g.reset();
  g.generate(expected.prompt, { maxTokens: 16, stopIds: [expected.greedy_ids[3]] });
  const position = g.position;
  assert.throws(() => g.generate(""), /the sequence has no sampled token to continue from \(its last run ended on a stop id\)/);
  assert.equal(g.position, position);
  assertWorks(g, "empty prompts");
});
