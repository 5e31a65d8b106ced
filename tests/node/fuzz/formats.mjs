// Fuzzing through the npm package: the formats a user hands to it, their
// seeds (the fixtures), a seeded mutator (the same kinds of edits as the
// native pass in tests/fuzz.rs), and `runOne`, which feeds one input to the
// package the way a user's file or options would arrive. Used by the short
// pass in `npm test` (tests/node/fuzz.test.mjs) and the long campaign
// (scripts/fuzz-campaign.mjs).
import { readFile } from "node:fs/promises";

const fixtures = new URL("../../fixtures/", import.meta.url);
const bytes = async (path) => new Uint8Array(await readFile(new URL(path, fixtures)));

/** Every error caused by a crash of the engine starts with this. */
export const ENGINE_CRASHED = "the engine crashed";

/** The seed inputs of every format, read from the fixtures. */
export async function loadSeeds() {
  const utf8 = (b) => new TextEncoder().encode(b);
  return {
    gguf: [await bytes("tiny-llama.gguf")],
    safetensors: [await bytes("tiny-llama/model.safetensors"), await bytes("tiny-gpt2/model.safetensors")],
    config_json: [
      await bytes("tiny-llama/config.json"),
      await bytes("tiny-gpt2/config.json"),
      await bytes("llama-3.2-1b-config.json"),
    ],
    tokenizer_json: [await bytes("tiny-llama/tokenizer.json"), await bytes("tiny-tokenizer.json")],
    options: [
      utf8('{"cache":"window","window":8,"maxSeqLen":32,"useCache":false,"backend":"ndarray"}'),
      utf8('{"maxTokens":3,"temperature":0.7,"topK":3,"topP":0.9,"seed":4,"stopIds":[1,2]}'),
    ],
  };
}

/** A small seeded PRNG (mulberry32): the same seed gives the same inputs. */
export function prng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const INTERESTING = [0n, 1n, 2n, 0x7fn, 0xffn, 0x7fffn, 0xffffn, 1n << 24n, 0x7fffffffn, 0xfffffff0n, 0xffffffffn, (1n << 64n) - 1n];
const JSONISH = new TextEncoder().encode('{}[]":,0-1e9.nul\\');

/** One mutation of `input`: one to four edits (bit flips, interesting integers, truncation, chunks). */
export function mutate(random, seeds, input) {
  const int = (n) => Math.floor(random() * n);
  let out = Array.from(input);
  for (let edits = 1 + int(4); edits > 0; edits--) {
    if (out.length === 0) {
      out.push(int(256));
      continue;
    }
    const at = int(out.length);
    switch (int(8)) {
      case 0:
        out[at] ^= 1 << int(8);
        break;
      case 1:
        out[at] = int(256);
        break;
      case 2: {
        let value = INTERESTING[int(INTERESTING.length)];
        const width = random() < 0.5 ? 4 : 8;
        for (let i = 0; i < width && at + i < out.length; i++, value >>= 8n) out[at + i] = Number(value & 0xffn);
        break;
      }
      case 3:
        out = out.slice(0, at);
        break;
      case 4:
        out.splice(at, 1 + int(64));
        break;
      case 5:
        out.splice(at, 0, ...out.slice(at, at + 1 + int(64)));
        break;
      case 6: {
        const other = seeds[int(seeds.length)];
        const from = int(other.length);
        out.splice(at, 0, ...other.subarray(from, from + 1 + int(256)));
        break;
      }
      default:
        out[at] = JSONISH[int(JSONISH.length)];
    }
  }
  return Uint8Array.from(out);
}

/**
 * Feeds `input` as `format` to the package. Returns normally (a model that loads also runs two
 * tokens) or throws what the package threw: an Error saying what is wrong is the expected outcome;
 * one starting with ENGINE_CRASHED is a bug.
 */
export function makeRunner(Generator, seeds) {
  const text = (b) => new TextDecoder().decode(b);
  const [config, weights, tokenizer] = [text(seeds.config_json[0]), seeds.safetensors[0], text(seeds.tokenizer_json[0])];
  const use = (g, run = { maxTokens: 2 }) => {
    try {
      g.generate("Hello, world", run);
      g.decode(g.encode("Hello"));
    } finally {
      g.free();
    }
  };
  return {
    gguf: (input) => use(Generator.fromGguf(input)),
    safetensors: (input) => use(Generator.fromHfFiles(config, input, tokenizer)),
    config_json: (input) => use(Generator.fromHfFiles(text(input), weights, tokenizer)),
    tokenizer_json: (input) => use(Generator.fromHfFiles(config, weights, text(input))),
    options: (input) => {
      let options;
      try {
        options = JSON.parse(text(input));
      } catch {
        return;
      }
      let g;
      try {
        g = Generator.fromHfFiles(config, weights, tokenizer, options);
      } catch (e) {
        // Run options are not model options: try them on a default generator.
        if (String(e?.message).startsWith(ENGINE_CRASHED)) throw e;
        g = Generator.fromHfFiles(config, weights, tokenizer);
      }
      use(g, options);
    },
  };
}
