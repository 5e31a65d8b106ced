// The bench report's row for the page's Compare (scripts/bench-report.mjs, compareTarget), and the
// peer runs' rounds (scripts/bench-peer.mjs), on made-up results shaped as scripts/bench.mjs writes
// them (`results.compare`, `results.peer`).
//
//   node --test tests/node/bench-report.test.mjs

import assert from "node:assert/strict";
import { test } from "node:test";

import { peerFigures, wllamaSection, wllamaTargets } from "../../scripts/bench-peer.mjs";
import { COMPARE_ID, compareTarget, markdown, readmeBlock, targets } from "../../scripts/bench-report.mjs";

const NAME = "Compare at the page's defaults (SmolLM2, chat template, 128 tokens) under a minute";

/** A run of 128 tokens whose times add up to `seconds`: the first token's time, then equal steps. */
function pageRun(label, useCache, seconds, text = "Once upon a time") {
  const first = 300;
  const step = (seconds * 1000 - first) / 127;
  return { label, useCache, tokens: 128, stopReason: "max tokens", stepMs: [first, ...Array(127).fill(step)], text };
}

function compareRun({ totalSeconds, threads = 2, threadsNote = null, speedup = 20.9, sameText = true }) {
  const off = pageRun("no cache", false, totalSeconds - 8, sameText ? "Once upon a time" : "Once upon a tide");
  return {
    id: COMPARE_ID,
    threads,
    threadsNote,
    totalMs: totalSeconds * 1000,
    runs: [pageRun("cache concat", true, 6), off],
    speedup,
    speedupText: speedup == null ? "—" : `${speedup}×`,
    sameText,
  };
}

function results(compare, { quick = false } = {}) {
  return {
    meta: { date: "2026-12-06T00:00:00.000Z", quick, machine: { cores: 2, cpu: "test CPU", memoryGiB: 4, node: "v20" }, wasm: null, window: 64 },
    runs: [],
    strategies: [],
    peer: null,
    compare,
  };
}

test("under a minute: met, with the seconds, the threads and each run in the report", () => {
  const t = compareTarget(results([compareRun({ totalSeconds: 48.34 })]));
  assert.equal(t.name, NAME);
  assert.equal(t.target, "< 60 s");
  assert.equal(t.met, true);
  assert.equal(t.by, null);
  assert.equal(t.value, 48.34);
  assert.equal(t.summary, "met: 48.3 s from the click on Compare to both runs done, on 2 threads");
  assert.equal(
    t.detail,
    "cache concat: 128 tokens in 6.0 s (stopped by max tokens), no cache: 128 tokens in 40.3 s (stopped by max tokens), by the page's per-token times; the page's speedup 20.9×; both runs wrote the same text",
  );
  // One row among the bench's targets, in results.md's table and the README's block (in seconds, not as a ratio).
  const r = results([compareRun({ totalSeconds: 48.34 })]);
  const checks = targets(r);
  assert.equal(checks.filter((c) => c.name === NAME).length, 1);
  assert.ok(markdown(r, checks).includes(`| ${NAME} | met: 48.3 s from the click on Compare to both runs done, on 2 threads | **met** |`));
  // The README's heading says one thread unless a row says otherwise: this row does.
  assert.ok(readmeBlock(r, checks).includes(`| ${NAME} | 48.3 s (2 threads) | met |`));
  assert.ok(readmeBlock(r, checks).includes("one thread unless a row says otherwise"));
});

test("a minute or more: missed, by how much; one thread says why", () => {
  const t = compareTarget(results([compareRun({ totalSeconds: 122.8, threads: 1, threadsNote: "the page is not cross-origin isolated (no COOP/COEP headers), so one thread" })]));
  assert.equal(t.met, false);
  assert.ok(Math.abs(t.by - 62.8 / 60) < 1e-9);
  assert.equal(
    t.summary,
    "missed by 105%: 122.8 s from the click on Compare to both runs done, on one thread: the page is not cross-origin isolated (no COOP/COEP headers), so one thread",
  );
  // The target is strict: exactly a minute misses it.
  const minute = compareTarget(results([compareRun({ totalSeconds: 60 })]));
  assert.equal(minute.met, false);
  assert.equal(minute.summary.split(":")[0], "missed by 0.0%");
});

test("texts that differ, no speedup shown and threads the page did not name are reported as such", () => {
  const t = compareTarget(results([compareRun({ totalSeconds: 50, threads: null, speedup: null, sameText: false })]));
  assert.equal(t.met, true);
  assert.match(t.summary, /on threads unknown$/);
  assert.match(t.detail, /the page's speedup not shown \("—"\)/);
  assert.match(t.detail, /the two runs' texts differ \(greedy runs should agree\)$/);
});

test("without the run, the row says why and is neither met nor missed", () => {
  const why = (r) => {
    const t = compareTarget(r);
    assert.equal(t.met, null);
    assert.equal(t.value, null);
    assert.equal(t.target, "< 60 s");
    return t.summary;
  };
  assert.equal(why(results([{ id: COMPARE_ID, absent: "no models/SmolLM2-135M-Instruct.Q4_1.gguf" }])), "not measured (no models/SmolLM2-135M-Instruct.Q4_1.gguf)");
  assert.equal(why(results([{ id: COMPARE_ID, absent: "its run failed: the page could not load its model" }])), "not measured (its run failed: the page could not load its model)");
  assert.equal(why(results(null, { quick: true })), "not measured (quick mode leaves the page's Compare out)");
  // --only without it, or results.json from before the run existed (no `compare` at all).
  assert.equal(why(results(null)), "not measured (no `compare-smollm2-page` run in these results)");
  const older = results(null);
  delete older.compare;
  assert.equal(why(older), "not measured (no `compare-smollm2-page` run in these results)");
  assert.ok(readmeBlock(older, targets(older)).includes(`| ${NAME} | not measured | — |`));
});

/** Token arrival times (ms) of 11 tokens at `tps` tokens a second after the first. */
const arrivals = (tps) => Array.from({ length: 11 }, (_, k) => 500 + (k * 1000) / tps);

/** A peer run of one round, decoding at `tps` (page and engine alike). */
function wasmRun(file, round, tps) {
  return { env: "wasm", file, threads: 1, round, decodeStepMs: [900, ...Array(10).fill(1000 / tps)], decodeArrivalMs: arrivals(tps), prefill: { tokens: 391, ms: 2000 / round } };
}
const wllamaRun = (file, round, tps) => ({ file, threads: 1, round, arrivalMs: arrivals(tps), stepMs: [900, ...Array(10).fill(1000 / tps)] });

test("peer runs in rounds: each figure the median over the rounds made, the target read from those", () => {
  const r = results(null);
  r.peer = {
    llamaCpp: [],
    ours: [wasmRun("q8_0", 1, 36), wasmRun("q8_0", 2, 40), wasmRun("q4_1", 1, 45), { env: "wasm", file: "q4_1", threads: 1, round: 2, absent: "its run failed: boom" }],
    wllama: [wllamaRun("q8_0", 2, 10), wllamaRun("q8_0", 1, 12)],
  };
  const f = peerFigures(r);
  assert.equal(f.rounds, 2);
  const row = (file) => f.rows.find((x) => x.file === file);
  assert.ok(Math.abs(row("q8_0").wasm.pageDecode - 38) < 1e-9, "the median of 36 and 40");
  assert.ok(Math.abs(row("q8_0").wasm.decode - 38) < 1e-9);
  assert.ok(Math.abs(row("q8_0").wasm.prefill - (391 / 2 + 391) / 2) < 1e-9, "prefill: the median of each round's tokens/s");
  assert.ok(Math.abs(row("q8_0").wllama[1].pageDecode - 11) < 1e-9);
  // A round whose run failed leaves the other round's figure; no run at all says why.
  assert.equal(row("q4_1").wasm.rounds, 1);
  assert.ok(Math.abs(row("q4_1").wasm.pageDecode - 45) < 1e-9);
  r.peer.ours = r.peer.ours.filter((o) => o.file !== "q4_1" || o.absent);
  assert.equal(peerFigures(r).rows.find((x) => x.file === "q4_1").wasm.absent, "its run failed: boom");
  // The Q8_0 target against wllama compares the medians: 38 / 11.
  const q8 = wllamaTargets(r)[0];
  assert.match(q8.name, /Q8_0 decode in wasm ≥ 3\.5 × wllama on Q8_0/);
  assert.ok(Math.abs(q8.value - 38 / 11) < 1e-9);
  assert.equal(q8.met, false);
  assert.match(wllamaSection(r), /Each figure is the median of 2 rounds/);
  // Results from before the rounds (no `round`) read as one round, and the sections say nothing of rounds.
  r.peer.ours = [wasmRun("q8_0", 1, 36)].map(({ round, ...e }) => e);
  r.peer.wllama = [wllamaRun("q8_0", 1, 12)].map(({ round, ...e }) => e);
  assert.equal(peerFigures(r).rounds, 1);
  assert.ok(Math.abs(wllamaTargets(r)[0].value - 3) < 1e-9);
  assert.doesNotMatch(wllamaSection(r), /rounds/);
});
