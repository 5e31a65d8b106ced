// What a KV cache holds, from a model's published shape (kv-models.js): plain arithmetic, kept apart
// from the engine on purpose, so the page can check one against the other.
//
// Per layer, for each of K and V: batch × kvHeads × tokens kept × one row of headDim values.
// A full-attention layer keeps every token; a sliding-window layer keeps the last `window`.
// Every input is capped (calculator.js) so each product stays an exact integer in a double.

/** Storage precisions: bytes per value, plus per-block scales for the quantized one. */
export const KV_DTYPES = {
  f32: { label: "f32", bytes: 4 },
  f16: { label: "f16 / bf16", bytes: 2 },
  // As llama.cpp's q8_0 cache, and the engine's int8 cache (docs/cache-features.md): blocks of 32
  // values, each one byte, with one f16 scale per block (a shorter last block when 32 does not divide a row).
  int8: { label: "int8 (blocks of 32 + an f16 scale)", bytes: 1, block: 32, scaleBytes: 2 },
};

/** Bytes of one cached row (one token's key, or value, in one head). */
export function rowBytes(headDim, dtype) {
  const d = KV_DTYPES[dtype];
  if (!d) throw new Error(`unknown cache precision ${dtype}`);
  const scales = d.block ? Math.ceil(headDim / d.block) * d.scaleBytes : 0;
  return headDim * d.bytes + scales;
}

/** Each layer's window: null for full attention, else how many tokens it keeps at most. */
export function layerWindows(model) {
  return Array.from({ length: model.layers }, (_, i) =>
    model.window && (i + 1) % model.fullEvery !== 0 ? model.window : null,
  );
}

/**
 * The cache's bytes after `tokens` tokens of each of `batch` sequences.
 * `kvHeads` overrides the model's (e.g. its query heads, for the multi-head equivalent);
 * `windows: false` treats every layer as full attention.
 * Returns the total and one group per kind of layer: { window, layers, tokensKept, bytes }.
 */
export function kvCacheBytes(model, { tokens, batch = 1, dtype = "f32", kvHeads = model.kvHeads, windows = true }) {
  const row = rowBytes(model.headDim, dtype);
  const groups = new Map();
  for (const window of windows ? layerWindows(model) : Array(model.layers).fill(null)) {
    const tokensKept = window == null ? tokens : Math.min(tokens, window);
    const bytes = 2 * batch * kvHeads * tokensKept * row;
    const group = groups.get(window) ?? { window, layers: 0, tokensKept, bytes: 0 };
    group.layers += 1;
    group.bytes += bytes;
    groups.set(window, group);
  }
  const perLayer = [...groups.values()];
  return { bytes: perLayer.reduce((sum, g) => sum + g.bytes, 0), rowBytes: row, groups: perLayer };
}

/**
 * The same cache next to what it would be without each saving the model or the precision makes:
 * multi-head attention instead of grouped-query, no sliding window, and the other precisions.
 */
export function kvComparisons(model, input) {
  const rows = [{ key: "this", bytes: kvCacheBytes(model, input).bytes }];
  if (model.kvHeads !== model.heads) {
    rows.push({ key: "mha", bytes: kvCacheBytes(model, { ...input, kvHeads: model.heads }).bytes });
  }
  if (model.window) rows.push({ key: "no-window", bytes: kvCacheBytes(model, { ...input, windows: false }).bytes });
  for (const dtype of Object.keys(KV_DTYPES)) {
    if (dtype !== input.dtype) rows.push({ key: `dtype-${dtype}`, dtype, bytes: kvCacheBytes(model, { ...input, dtype }).bytes });
  }
  return rows;
}
