// Uses every public method, property and option of the package, so that a
// missing or wrong type fails `tsc` (tests/node/types.test.mjs). Never run:
// the Node tests exercise the same calls at run time.
import init, {
  initSync,
  Bench,
  CacheSnapshot,
  Generator,
  type ChatOptions,
  type EncodeOptions,
  type GenerateOptions,
  type Generation,
  type LoadOptions,
  type ModelConfig,
  type ModelOptions,
  type PrefillOptions,
  type Score,
  type StopReason,
  type TokenEvent,
  type Interleaved,
} from "kvcache-wasm";

export async function everything(wasm: ArrayBuffer, url: string): Promise<void> {
  await init({ module_or_path: wasm });
  await init({ module_or_path: new URL("https://example.test/kvcache_wasm_bg.wasm") });
  initSync({ module: wasm });

  const model: ModelOptions = {
    cache: "window",
    window: 64,
    sinks: 4,
    kvDtype: "int8",
    maxSeqLen: 512,
    seed: 1,
    backend: "ndarray",
    useCache: true,
  };
  const load: LoadOptions = {
    ...model,
    onProgress: (loaded: number, total: number | undefined) => console.log(loaded, total ?? "?"),
    browserCache: false,
  };
  const fromUrl: Generator = await Generator.load(url, load);
  const gguf: Generator = Generator.fromGguf(new Uint8Array(0), { cache: "prealloc" });
  const hf: Generator = Generator.fromHfFiles("{}", new Uint8Array(0), "{}", { backend: "flex" });
  const g: Generator = Generator.randomGpt2({ seed: 3 });
  Generator.randomGpt2();
  Generator.fromGguf(new Uint8Array(0));

  const prefillOptions: PrefillOptions = {
    maxTokens: 8,
    temperature: 0.7,
    topK: 40,
    topP: 0.9,
    seed: 5,
    stopIds: [50256],
    chat: true,
    systemPrompt: "Be brief.",
  };
  const generateOptions: GenerateOptions = {
    ...prefillOptions,
    stopIds: new Uint32Array([2]),
    onToken: (t: TokenEvent) => {
      const fields: [number, string, number, number, number, number] = [
        t.id, t.text, t.ms, t.position, t.cacheLen, t.cacheBytes,
      ];
      console.log(fields);
    },
  };
  const r: Generation = g.generate("Once upon a time", generateOptions);
  g.generate("and then");
  const stop: StopReason | null = r.stopReason;
  const summary: [number[], number[], string, number[], number, number, number, number] = [
    r.promptIds, r.ids, r.text, r.stepMs, r.prefillMs, r.tokensPerSec, r.cacheLen, r.cacheBytes,
  ];
  console.log(stop, summary);

  let token: TokenEvent | null = g.prefill("Hello", prefillOptions);
  g.prefill("Hello");
  while (token !== null) token = g.step();
  const finished: Generation = g.finish();
  console.log(finished.text);

  const score: Score = g.score("It was the best of times");
  const scored: [Uint32Array, Float64Array, number] = [score.ids, score.nll, score.perplexity];
  const snapshot: CacheSnapshot = g.snapshot();
  const saved: [Uint8Array, number, Uint32Array] = [snapshot.toBytes(), snapshot.position, snapshot.tokens];
  g.restore(snapshot);
  g.restore(saved[0]);
  const chatOptions: ChatOptions = { maxTokens: 8, systemPrompt: "Be brief.", reuse: false, onToken: (t) => t.prefilled };
  const reply: Generation = g.chat("Hi", chatOptions);
  g.chat("And?");
  const counts: [number, number] = [reply.prefilled, reply.reused];
  console.log(scored, saved, counts);
  // @ts-expect-error: a chat turn is always in the template
  g.chat("x", { chat: true });

  const costs: Float64Array = Bench.cacheCost(g, 16);
  const turns: Interleaved = Bench.interleaved(g, "Hello", ["concat", "prealloc"], 4);
  const turnFields: [string[], number[], number[][], number] = [
    turns.strategies, turns.ids, turns.stepMs, turns.disagreements,
  ];
  console.log(costs, turnFields);

  g.reset();
  g.useCache = false;
  const useCache: boolean = g.useCache;
  g.cacheStrategy = "concat";
  const strategy: string = g.cacheStrategy;
  g.window = 32;
  const window: number | undefined = g.window;
  g.kvDtype = "f16";
  const kvDtype: string = g.kvDtype;
  g.sinks = 0;
  const sinks: number = g.sinks;
  console.log(kvDtype, sinks, r.kvDtype);
  const figures: [number, number, number, number, number] = [
    g.position, g.cacheLen, g.cacheBytes, g.cacheBytesFormula, g.maxSeqLen,
  ];
  const backend: string = g.backend;
  console.log(useCache, strategy, window, figures, backend);

  const config: ModelConfig = g.config;
  const shape: [string, number, number, number, number, number, number, number, number] = [
    config.architecture, config.vocabSize, config.hiddenSize, config.numLayers, config.numHeads,
    config.numKvHeads, config.headDim, config.intermediateSize, config.maxPositionEmbeddings,
  ];
  const more: [number, number, boolean, boolean, number | null, number[]] = [
    config.normEps, config.ropeTheta, config.qkvBias, config.tieWordEmbeddings,
    config.bosTokenId, config.eosTokenIds,
  ];
  const gemma: [(number | null)[], number | null, number | null] = [
    config.layerWindows, config.localRopeTheta, config.queryPreAttnScalar,
  ];
  console.log(gemma);
  const scaling = config.ropeScaling;
  if (scaling !== null && scaling.type === "llama3") {
    console.log(scaling.factor, scaling.lowFreqFactor, scaling.highFreqFactor, scaling.originalMaxPositionEmbeddings);
  } else if (scaling !== null) {
    console.log(scaling.factor);
  }
  console.log(shape, more);

  const ids: Uint32Array = g.encode("Hello");
  const prompt: Uint32Array = g.encode("Hello", { special: true } satisfies EncodeOptions);
  console.log(prompt);
  const text: string = g.decode(ids) + g.decode([1, 2, 3]);
  console.log(text);

  // Mistakes the types catch (each line must be an error, or tsc reports the directive unused).
  // @ts-expect-error: an unknown option
  g.generate("x", { maxTokns: 3 });
  // @ts-expect-error: not a strategy
  Generator.randomGpt2({ cache: "ring" });
  // @ts-expect-error: not a backend
  Generator.randomGpt2({ backend: "gpu" });
  // @ts-expect-error: stop ids are numbers
  g.generate("x", { stopIds: ["2"] });
  // @ts-expect-error: onToken belongs to generate, not prefill
  g.prefill("x", { onToken: () => {} });
  // @ts-expect-error: the prompt is a string
  g.generate(5);
  // @ts-expect-error: special is a boolean
  g.encode("x", { special: "yes" });
  // @ts-expect-error: the count is a number
  Bench.cacheCost(g, "16");

  g[Symbol.dispose]();
  for (const other of [fromUrl, gguf, hf]) other.free();
}
