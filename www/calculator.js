// The memory calculator: a famous model's published shape (kv-models.js), a context length, a batch
// and a precision in; the KV cache's bytes out (kv-memory.js), next to what grouped-query
// attention, a sliding window and a smaller precision each save.

import { fmtBytes, fmtInt } from "./format.js";
import { KV_DTYPES, kvCacheBytes, kvComparisons } from "./kv-memory.js";
import { KV_MODELS } from "./kv-models.js";

const MAX_BATCH = 1024;
const $ = (id) => document.getElementById(id);

function fillSelects() {
  const models = $("calc-model");
  const families = new Map();
  for (const m of KV_MODELS) {
    if (!families.has(m.family)) {
      const group = document.createElement("optgroup");
      group.label = m.family;
      families.set(m.family, group);
      models.append(group);
    }
    families.get(m.family).append(new Option(m.name, m.id));
  }
  for (const [key, d] of Object.entries(KV_DTYPES)) $("calc-dtype").append(new Option(d.label, key));
}

/** The form's values, or a sentence saying what is wrong with them. */
function readInput() {
  const model = KV_MODELS.find((m) => m.id === $("calc-model").value);
  const tokens = Number($("calc-tokens").value);
  const batch = Number($("calc-batch").value);
  const dtype = $("calc-dtype").value;
  if (!Number.isInteger(tokens) || tokens < 1 || tokens > model.context) {
    return { model, problem: `tokens must be a whole number from 1 to ${fmtInt(model.context)}, ${model.name}'s context` };
  }
  if (!Number.isInteger(batch) || batch < 1 || batch > MAX_BATCH) {
    return { model, problem: `the batch must be a whole number from 1 to ${MAX_BATCH}` };
  }
  return { model, input: { tokens, batch, dtype } };
}

function describeShape(m) {
  const grouped = m.kvHeads === m.heads
    ? `${m.heads} heads, each with its own keys and values (multi-head attention)`
    : `${m.heads} query heads sharing ${m.kvHeads} KV head${m.kvHeads > 1 ? "s" : ""} (grouped-query attention, ${m.heads / m.kvHeads} per KV head)`;
  const width = m.hidden / m.heads;
  const head = width === m.headDim
    ? `head size ${m.headDim} (= ${m.hidden} ÷ ${m.heads})`
    : `head size ${m.headDim} (its own head_dim: not ${m.hidden} ÷ ${m.heads} = ${+width.toFixed(2)})`;
  const window = m.window
    ? ` · every ${m.fullEvery}th layer sees the whole sequence, the others a sliding window of ${m.window}`
    : "";
  return `${m.layers} layers · ${grouped} · ${head} · context ${fmtInt(m.context)}${window}`;
}

function formula(model, input, result) {
  const d = KV_DTYPES[input.dtype];
  const row = d.block
    ? `(${model.headDim} × 1 byte + ${Math.ceil(model.headDim / d.block)} scales × ${d.scaleBytes} bytes)`
    : `${model.headDim} values × ${d.bytes} bytes`;
  const seqs = `${input.batch} sequence${input.batch > 1 ? "s" : ""}`;
  const parts = result.groups.map((g) => {
    const kind = g.window == null ? "full-attention layers" : `layers with a window of ${g.window}`;
    const layers = result.groups.length > 1 ? `${g.layers} ${kind}` : `${g.layers} layers`;
    return `2 × ${layers} × ${model.kvHeads} KV head${model.kvHeads === 1 ? "" : "s"} × ${fmtInt(g.tokensKept)} tokens × ${seqs} × ${row}`;
  });
  return `${parts.join("  +  ")} = ${fmtInt(result.bytes)} bytes`;
}

function comparisonLabel(row, model, input) {
  switch (row.key) {
    case "this":
      return `${model.name}, ${KV_DTYPES[input.dtype].label}${model.window ? ", with its sliding window" : ""}`;
    case "mha":
      return `with multi-head attention (${model.heads} KV heads instead of ${model.kvHeads})`;
    case "no-window":
      return "without the sliding window (every layer keeps every token)";
    default:
      return `in ${KV_DTYPES[row.dtype].label}`;
  }
}

function render() {
  const { model, input, problem } = readInput();
  $("calc-tokens").max = String(model.context);
  $("calc-shape").textContent = describeShape(model);
  const source = $("calc-source");
  source.replaceChildren(
    "Source: ",
    Object.assign(document.createElement("a"), { href: model.source, textContent: `${model.name}'s config.json` }),
    ` (${model.fields}).`,
  );
  const out = $("calc-bytes");
  if (problem) {
    out.textContent = "—";
    delete out.dataset.bytes;
    $("calc-exact").textContent = "";
    $("calc-formula").textContent = `Check the input: ${problem}.`;
    $("calc-rows").replaceChildren();
    return;
  }
  const result = kvCacheBytes(model, input);
  out.textContent = fmtBytes(result.bytes);
  out.dataset.bytes = String(result.bytes);
  $("calc-exact").textContent = `${fmtInt(result.bytes)} bytes`;
  $("calc-formula").textContent = formula(model, input, result);
  const rows = kvComparisons(model, input);
  const largest = Math.max(...rows.map((r) => r.bytes));
  $("calc-rows").replaceChildren(
    ...rows.map((row) => {
      const tr = document.createElement("tr");
      if (row.key === "this") tr.className = "this";
      const ratio = row.bytes / result.bytes;
      const bar = document.createElement("div");
      bar.className = "calc-bar";
      bar.style.width = `${(100 * row.bytes) / largest}%`;
      const cells = [
        comparisonLabel(row, model, input),
        fmtBytes(row.bytes),
        row.key === "this" ? "" : `${ratio >= 1 ? ratio.toFixed(2) : ratio.toFixed(3)}×`,
      ];
      for (const text of cells) {
        const td = document.createElement("td");
        td.textContent = text;
        tr.append(td);
      }
      const barCell = document.createElement("td");
      barCell.className = "calc-bar-cell";
      barCell.setAttribute("aria-hidden", "true");
      barCell.append(bar);
      tr.append(barCell);
      return tr;
    }),
  );
}

/** Fills the calculator's form and keeps its answer current. */
export function mountCalculator() {
  fillSelects();
  $("calc-model").value = "smollm2-135m";
  for (const id of ["calc-model", "calc-tokens", "calc-batch", "calc-dtype"]) $(id).addEventListener("input", render);
  render();
}
