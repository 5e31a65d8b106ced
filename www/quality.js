// The quality chart: a fixed public-domain passage (passage.txt) scored by the model once per
// cache setting (the engine's score(), teacher-forced: the loss of each real next token), one
// line per setting, next to the bytes each cache held. It shows what a window drops, what a few
// attention sinks give back, and what a smaller precision costs.

import uPlot from "./vendor/uplot/uPlot.esm.js";

import { fmtBytes, fmtMs, swatchRow } from "./format.js";

/** The settings the passage is scored with: one line each (window and sinks in tokens). */
export const QUALITY_SETTINGS = [
  { key: "full", label: "full cache (f32)", cache: "concat", kvDtype: "f32", color: "#2563eb" },
  { key: "window", label: "window 64", cache: "window", window: 64, sinks: 0, kvDtype: "f32", color: "#dc2626" },
  { key: "sinks", label: "window 64 + 4 sinks", cache: "window", window: 64, sinks: 4, kvDtype: "f32", color: "#059669" },
  { key: "int8", label: "int8 cache", cache: "concat", kvDtype: "int8", color: "#7c3aed" },
  { key: "f16", label: "f16 cache", cache: "concat", kvDtype: "f16", color: "#d97706" },
];

/** Tokens in the sliding perplexity: exp(mean loss of the last SPAN predicted tokens). */
export const SPAN = 16;

const $ = (id) => document.getElementById(id);

const state = {
  text: null, // the passage, once fetched
  tokens: null, // its length in the loaded model's tokens (cut to the context if longer)
  truncated: false,
  results: [], // per setting: { nll, perplexity, cacheBytes, cacheBytesFormula, ms }, or undefined
  progress: null, // the setting in progress: { index, scored, total } predictions
  running: false,
  stopped: false,
};

let chart = null;
let ctx = null; // { send, cacheSettings, checkCacheSettings, setActivity, endActivity, isIdle, showError, clearError }
let fetching = null; // the AbortController of the passage's fetch in progress, for Stop

/** The passage's per-token loss, or its perplexity over the last SPAN tokens. */
export function sliding(nll, span = SPAN) {
  const out = new Array(nll.length);
  let sum = 0;
  for (let i = 0; i < nll.length; i += 1) {
    sum += nll[i];
    if (i >= span) sum -= nll[i - span];
    out[i] = Math.exp(sum / Math.min(i + 1, span));
  }
  return out;
}

function perToken() {
  return $("quality-view").value === "nll";
}

function chartData() {
  const lengths = state.results.filter(Boolean).map((r) => r.nll.length);
  const n = lengths.length ? Math.max(...lengths) : 0;
  // x: the position of the predicted token (token 0 is context only).
  const xs = Array.from({ length: n }, (_, i) => i + 1);
  const ys = QUALITY_SETTINGS.map((_, i) => {
    const r = state.results[i];
    if (!r) return xs.map(() => null);
    return perToken() ? r.nll : sliding(r.nll);
  });
  return [xs, ...ys];
}

function chartSize() {
  return { width: Math.max(280, $("quality-chart").clientWidth), height: 280 };
}

function renderChart() {
  const box = $("quality-chart");
  const drawn = state.results.some(Boolean);
  box.classList.toggle("empty", !drawn);
  chart?.destroy();
  chart = null;
  if (!drawn) return;
  const drawnAt = QUALITY_SETTINGS.map((_, i) => i).filter((i) => state.results[i]);
  const series = drawnAt.map((i) => ({ setting: QUALITY_SETTINGS[i] }));
  const data = chartData();
  const shown = [data[0], ...drawnAt.map((i) => data[i + 1])];
  chart = new uPlot(
    {
      ...chartSize(),
      scales: { x: { time: false }, y: perToken() ? {} : { distr: 3 } },
      legend: { show: true },
      axes: [
        { label: "token of the passage", stroke: "#475569", grid: { stroke: "#e2e8f0" } },
        {
          label: perToken() ? "loss of the token (nats)" : `perplexity over the last ${SPAN} tokens`,
          stroke: "#475569",
          grid: { stroke: "#e2e8f0" },
          size: 56,
        },
      ],
      series: [
        { label: "token", value: (u, v) => (v == null ? "—" : String(v)) },
        ...series.map(({ setting }) => ({
          label: setting.label,
          stroke: setting.color,
          width: 1.5,
          points: { show: false },
          value: (u, v) => (v == null ? "—" : v.toFixed(2)),
        })),
      ],
    },
    shown,
    box,
  );
}

function renderTable() {
  const body = $("quality-rows");
  const full = state.results[0];
  body.replaceChildren(
    ...QUALITY_SETTINGS.map((s, i) => {
      const r = state.results[i];
      const pending = state.running && !r ? "…" : "—";
      const cells = [
        s.label,
        r ? r.perplexity.toFixed(2) : pending,
        r ? fmtBytes(r.cacheBytes) : pending,
        r && full ? `${(r.cacheBytes / full.cacheBytes).toFixed(3)}×` : "—",
        r ? fmtMs(r.ms) : pending,
      ];
      return swatchRow(cells, s.color);
    }),
  );
  const done = state.results.filter(Boolean).length;
  let status = "";
  if (state.running) status = `Scoring the passage: ${done} of ${QUALITY_SETTINGS.length} settings done…`;
  else if (state.stopped) status = `Stopped after ${done} of ${QUALITY_SETTINGS.length} settings.`;
  else if (done) status = `${QUALITY_SETTINGS.length} settings scored.`;
  if (state.tokens != null) {
    status += ` The passage is ${state.tokens} tokens of this model${state.truncated ? " (its start: the whole passage is longer than the model's context)" : ""}.`;
  }
  $("quality-status").textContent = status.trim();
  renderProgress();
}

/** The progress bar: settings done, and the part of the one in progress. */
function renderProgress() {
  const done = state.results.filter(Boolean).length;
  const p = state.progress;
  const bar = $("quality-progress");
  bar.max = QUALITY_SETTINGS.length;
  bar.value = done + (state.running && p && !state.results[p.index] ? p.scored / p.total : 0);
}

function render() {
  renderTable();
  renderChart();
}

/** Starts the measurement (the worker must be idle with a model loaded). */
async function measure() {
  if (!ctx.isIdle()) return;
  ctx.clearError();
  // The user's cache settings are put back afterwards: settings the page refuses are refused here,
  // as Generate refuses them, rather than by the engine once every setting has been scored.
  const restore = ctx.cacheSettings();
  const problem = ctx.checkCacheSettings(restore);
  if (problem) {
    ctx.showError(`Could not measure the quality: ${problem}.`);
    return;
  }
  state.results = [];
  state.progress = null;
  state.tokens = null;
  state.truncated = false;
  state.stopped = false;
  state.running = true;
  // Busy from the click on, the passage's fetch included, so that nothing else (a second click,
  // Compare, another model) reaches the worker meanwhile; Stop ends the fetch too.
  ctx.setActivity("quality");
  render();
  try {
    state.text ??= await fetchPassage();
  } catch (err) {
    state.running = false;
    state.stopped = err.name === "AbortError";
    if (!state.stopped) ctx.showError(`Could not read the passage: ${err.message}.`);
    render();
    ctx.endActivity();
    return;
  }
  const settings = QUALITY_SETTINGS.map(({ cache, window, sinks, kvDtype }) => ({ cache, window, sinks, kvDtype }));
  ctx.send({ type: "quality", text: state.text, settings, restore: { useCache: true, ...restore } });
}

async function fetchPassage() {
  fetching = new AbortController();
  try {
    const response = await fetch(new URL("./passage.txt", import.meta.url), { signal: fetching.signal });
    if (!response.ok) throw new Error(`HTTP ${response.status} for passage.txt`);
    return await response.text();
  } finally {
    fetching = null;
  }
}

/** Stop was pressed: ends the passage's fetch, if the measurement is still waiting for it. */
export function stopQuality() {
  fetching?.abort();
}

/** Handles the worker's quality messages; true if the message was one. */
export function onQualityMessage(msg) {
  switch (msg.type) {
    case "qualityStart":
      state.tokens = msg.tokens;
      state.truncated = msg.truncated;
      renderTable();
      return true;
    case "qualityProgress":
      state.progress = { index: msg.index, scored: msg.scored, total: msg.total };
      renderProgress();
      return true;
    case "qualityResult":
      state.results[msg.index] = msg.result;
      render();
      return true;
    case "qualityDone":
      state.running = false;
      state.stopped = msg.stopped;
      render();
      return true;
    default:
      return false;
  }
}

/** The measurement failed (the worker's error message follows through the page's error box). */
export function qualityFailed() {
  if (!state.running) return;
  state.running = false;
  state.stopped = true;
  render();
}

/** Enables the button when a model is loaded and the worker is idle. */
export function setQualityEnabled(enabled) {
  $("quality-run").disabled = !enabled;
}

/** What the chart draws, for the end-to-end test: each line's label and values. */
export function qualitySnapshot() {
  return {
    running: state.running,
    stopped: state.stopped,
    progress: state.progress && { ...state.progress },
    tokens: state.tokens,
    truncated: state.truncated,
    results: QUALITY_SETTINGS.map((s, i) => {
      const r = state.results[i];
      return r ? { key: s.key, label: s.label, perplexity: r.perplexity, cacheBytes: r.cacheBytes, cacheBytesFormula: r.cacheBytesFormula, nll: [...r.nll] } : null;
    }),
    chart: chart ? chart.series.slice(1).map((s, i) => ({ label: s.label, values: [...chart.data[i + 1]] })) : [],
  };
}

export function mountQuality(context) {
  ctx = context;
  $("quality-run").addEventListener("click", measure);
  $("quality-view").addEventListener("change", renderChart);
  new ResizeObserver(() => chart?.setSize(chartSize())).observe($("quality-chart"));
  render();
}
