//! The TypeScript of the objects that cross the JS boundary: the options the
//! methods take and the results they return. wasm-bindgen appends it to the
//! package's `.d.ts`, after the `Generator` class it generates from
//! [`super::generator`]; the class's signatures name these types.

use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TS_TYPES: &'static str = r#"
/** How to build a generator. Every key is optional; unknown keys throw. */
export interface ModelOptions {
  /** KV cache strategy (default "concat"). "window" needs `window`. */
  cache?: "concat" | "prealloc" | "window";
  /** Sliding-window size, 1..=maxSeqLen; only with cache: "window". */
  window?: number;
  /** Longest sequence, and what "prealloc" allocates (default min(model context, 1024)). */
  maxSeqLen?: number;
  /** Seed of randomGpt2's weights (default 0). */
  seed?: number;
  /** burn backend (default "flex"). */
  backend?: "flex" | "ndarray";
  /** KV cache on (default) or off. */
  useCache?: boolean;
}

/** Options of Generator.load. */
export interface LoadOptions extends ModelOptions {
  /** Called as bytes arrive; `total` is undefined when a server does not send Content-Length. */
  onProgress?: (loaded: number, total: number | undefined) => void;
  /** Keep downloads in the browser Cache API, when there is one (default true). */
  browserCache?: boolean;
}

/** Options of prefill (and generate). Every key is optional; unknown keys throw. */
export interface PrefillOptions {
  /** New tokens at most (default 64). */
  maxTokens?: number;
  /** 0 (default) is greedy; must be finite and >= 0. */
  temperature?: number;
  /** Keep the k most likely tokens; 0 (default) keeps all. */
  topK?: number;
  /** Nucleus sampling, in (0, 1] (default 1). */
  topP?: number;
  /** Sampling seed (default 0). */
  seed?: number;
  /** Token ids that end the run (not emitted); absent or null: the model's EOS ids; []: none. */
  stopIds?: number[] | Uint32Array | null;
  /** Wrap the prompt in the ChatML template (instruct models). */
  chat?: boolean;
  /** System message, with chat: true. */
  systemPrompt?: string;
}

/** Options of encode. */
export interface EncodeOptions {
  /** Add the special tokens a prompt starts with (the model's BOS, where it wants one). Default false. */
  special?: boolean;
}

/** Options of generate. */
export interface GenerateOptions extends PrefillOptions {
  /** Called for every token as it is produced; throwing stops the run. */
  onToken?: (token: TokenEvent) => void;
}

/** One generated token. */
export interface TokenEvent {
  id: number;
  /** The text this token completes (may be "" while a character is split across tokens). */
  text: string;
  /** Wall time of the step that produced it; the first includes the prompt's prefill. */
  ms: number;
  /** Position this token occupies in the sequence. */
  position: number;
  cacheLen: number;
  cacheBytes: number;
}

/** The summary of a run. */
export interface Generation {
  promptIds: number[];
  ids: number[];
  text: string;
  /** One per generated token; stepMs[0] is the prefill (time to first token). */
  stepMs: number[];
  prefillMs: number;
  /** Decode speed: tokens after the first over their time. */
  tokensPerSec: number;
  cacheLen: number;
  /** Entries held by each layer (a model's local layers keep their own window); empty with the cache off. */
  cacheLayerLens: number[];
  cacheBytes: number;
  stopReason: "maxTokens" | "stopToken" | "contextFull" | null;
}

/** Generator.interleaved's measurement: whole decode steps, the strategies taking turns. */
export interface Interleaved {
  /** As given; "window" shows its size, e.g. "window(64)". */
  strategies: string[];
  /** The greedy tokens, from the first strategy's logits, fed to every strategy. */
  ids: number[];
  /** Per strategy, the milliseconds of each decode step (ids.length - 1 of them; the prefill is not timed). */
  stepMs: number[][];
  /** Steps at which another strategy's logits picked a different token than the first's. */
  disagreements: number;
}

/** Model hyper-parameters (the Rust ModelConfig, keys in camelCase). */
export interface ModelConfig {
  architecture: "gpt2" | "llama" | "qwen3" | "gemma3";
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  numKvHeads: number;
  headDim: number;
  intermediateSize: number;
  maxPositionEmbeddings: number;
  normEps: number;
  ropeTheta: number;
  ropeScaling: { type: string; factor: number; [key: string]: number | string } | null;
  qkvBias: boolean;
  tieWordEmbeddings: boolean;
  bosTokenId: number | null;
  eosTokenIds: number[];
  /** Each layer's own sliding window (Gemma 3's local layers), null for a global layer; empty when no layer has one. */
  layerWindows: (number | null)[];
  /** RoPE base of the layers with a window of their own, where it differs from ropeTheta. */
  localRopeTheta: number | null;
  /** Attention scales q·k by 1/√queryPreAttnScalar; null: by 1/√headDim. */
  queryPreAttnScalar: number | null;
}
"#;
