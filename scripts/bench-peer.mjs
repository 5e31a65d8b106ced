// Native llama.cpp and wllama as the bench's peers on SmolLM2's two files: figures, target checks
// and the results.md sections.
//
// scripts/bench.mjs writes `results.peer`: `llamaCpp` (scripts/llama-peer.py per GGUF: decode step
// times and the ~400-token prefill), `ours` (the same decode and prefill, by our CLI and in wasm,
// cache prealloc, flex backend; in wasm on `threads` threads, 1 where the field is absent, 2 on the
// multi-threaded build) and `wllama` (the same decode in the browser, per GGUF and thread
// count: the tokens' arrival times on the page and llama.cpp's own per-token times). wllama with one
// thread on the Q4_1 file is the main run `wllama-smollm2` in `results.runs`. Each peer run is made
// once a round (`round`, from 1; bench.mjs's PEER_ROUNDS), and each figure here is its median over
// the rounds whose run was made.

import { fmt, ON_PAGE, ratioTarget, verdict } from "./bench-targets.mjs";

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const decodeTps = (stepMs) => (stepMs?.length > 1 ? ((stepMs.length - 1) * 1000) / sum(stepMs.slice(1)) : null);
const prefillTps = (p) => (p?.ms ? (p.tokens * 1000) / p.ms : null);
// Decode by the tokens' arrival times on the page's main thread, as bench-report.mjs's page tok/s.
const pageTps = (arrivalMs) => (arrivalMs?.length > 1 ? ((arrivalMs.length - 1) * 1000) / (arrivalMs[arrivalMs.length - 1] - arrivalMs[0]) : null);

const threadsOf = (p) => p.threads ?? 1;

/** The median of the numbers among `xs` (null when there are none). */
function median(xs) {
  const v = xs.filter((x) => x != null && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

/**
 * One peer run's rounds (`entries`, each a run or `{ absent }`): `{ absent: why }` when none was
 * made, else `{ absent: null, rounds, figure(of) }`, `figure` the median of `of(run)` over them.
 */
function rounds(entries) {
  const made = entries.filter((e) => !e.absent);
  if (!made.length) return { absent: entries[0]?.absent ?? "not run", rounds: 0, figure: () => null };
  return { absent: null, rounds: made.length, figure: (of) => median(made.map(of)) };
}

/**
 * The peers' and our figures, by GGUF (`q4_1`, `q8_0`) and env, ours in wasm and wllama's by
 * thread count; `oursTwoThreads`: whether ours ran (or was meant to run) on two threads.
 */
export function peerFigures(results) {
  const peer = results.peer;
  if (!peer) return null;
  const llama = (file) => rounds(peer.llamaCpp?.filter((p) => p.file === file) ?? []);
  const ours = (env, file, threads = 1) => {
    const o = rounds(peer.ours?.filter((p) => p.env === env && p.file === file && threadsOf(p) === threads) ?? []);
    return {
      absent: o.absent,
      rounds: o.rounds,
      decode: o.figure((r) => decodeTps(r.decodeStepMs)),
      pageDecode: o.figure((r) => pageTps(r.decodeArrivalMs)),
      prefill: o.figure((r) => prefillTps(r.prefill)),
      prefillTokens: o.figure((r) => r.prefill?.tokens),
    };
  };
  // { pageDecode, decode } (page and llama.cpp's own timer), or { absent: why }.
  const wllama = (file, threads) => {
    const w = rounds(
      threads === 1 && file === "q4_1"
        ? (results.runs?.filter((r) => r.id === "wllama-smollm2") ?? [])
        : (peer.wllama?.filter((p) => p.file === file && p.threads === threads) ?? []),
    );
    if (w.absent) return { absent: w.absent };
    return { rounds: w.rounds, pageDecode: w.figure((r) => pageTps(r.arrivalMs)), decode: w.figure((r) => decodeTps(r.stepMs)) };
  };
  const row = (file) => {
    const l = llama(file);
    return {
      file,
      absent: l.absent,
      llama: l.absent
        ? null
        : { rounds: l.rounds, decode: l.figure((r) => decodeTps(r.decode.stepMs)), prefill: l.figure((r) => prefillTps(r.prefill)), prefillTokens: l.figure((r) => r.prefill?.tokens) },
      wasm: ours("wasm", file),
      wasm2: ours("wasm", file, 2),
      native: ours("native", file),
      wllama: { 1: wllama(file, 1), 2: wllama(file, 2) },
    };
  };
  const made = [...(peer.llamaCpp ?? []), ...(peer.ours ?? []), ...(peer.wllama ?? [])];
  return {
    rows: ["q4_1", "q8_0"].map(row),
    oursTwoThreads: peer.ours?.some((p) => p.env === "wasm" && threadsOf(p) === 2) ?? false,
    rounds: Math.max(1, ...made.map((p) => p.round ?? 1)),
  };
}

/** What the sections say of the rounds, when there were several. */
const roundsText = (f) =>
  f.rounds > 1 ? ` Each figure is the median of ${f.rounds} rounds (each round makes every peer run once, every other round in reverse order).` : "";

// ------------------------------------------------------------------ against native llama.cpp

/** Issue 15's targets against native llama.cpp (one thread, same machine, same run). */
export function peerTargets(results) {
  const f = peerFigures(results);
  const q41 = f?.rows.find((r) => r.file === "q4_1");
  const against = { peer: "llama.cpp", why: "native llama.cpp absent or the run left out", digits: 2 };
  return [
    ratioTarget("SmolLM2 Q4_1 decode in wasm ≥ 0.75 × native llama.cpp (one thread)", 0.75, q41?.wasm.decode, q41?.llama?.decode, against),
    ratioTarget(
      `SmolLM2 Q4_1 prefill of ${q41?.llama?.prefillTokens ?? "~400"} tokens in wasm ≥ 0.5 × native llama.cpp`,
      0.5,
      q41?.wasm.prefill,
      q41?.llama?.prefill,
      against,
    ),
    ratioTarget("SmolLM2 Q4_1 decode, native CLI ≥ 0.75 × native llama.cpp (one thread)", 0.75, q41?.native.decode, q41?.llama?.decode, against),
  ];
}

/**
 * Ours in wasm (the peer runs', on `oursThreads` threads) ÷ wllama with `threads` on one file, both
 * timed by the tokens' arrival on the page as the main runs' comparison with wllama is; without a
 * ratio, why not.
 */
function againstWllama(row, threads, oursThreads = 1) {
  const w = row?.wllama[threads];
  const o = oursThreads === 2 ? row?.wasm2 : row?.wasm;
  const ours = o?.pageDecode;
  if (ours == null || w?.pageDecode == null) {
    const why = [];
    const id = `peer-smollm2-${row?.file ?? "?"}-wasm${oursThreads === 2 ? "-2threads" : ""}`;
    if (ours == null) why.push(o?.absent && o.absent !== "not run" ? `\`${id}\` absent: ${o.absent}` : `no \`${id}\` run with arrival times`);
    if (w?.pageDecode == null) why.push(`wllama's run absent: ${w?.absent ?? "not run"}`);
    return { ratio: null, why: why.join("; ") };
  }
  return { ratio: ours / w.pageDecode, ours, theirs: w.pageDecode, oursEngine: o.decode, theirsEngine: w.decode };
}

const pair = (c) => `${fmt(c.ours)} vs ${fmt(c.theirs)} tok/s`;

/** Issue 15's targets against wllama on SmolLM2's two files; "not measured" when a run is missing. */
export function wllamaTargets(results) {
  const f = peerFigures(results);
  const row = (file) => f?.rows.find((r) => r.file === file) ?? null;
  const list = [];
  {
    const c = againstWllama(row("q8_0"), 1);
    list.push(
      ratioTarget("SmolLM2 Q8_0 decode in wasm ≥ 3.5 × wllama on Q8_0 (single thread)", 3.5, c.ours, c.theirs, {
        peer: "wllama",
        why: c.why,
        how: ON_PAGE,
        engine: { ours: c.oursEngine, theirs: c.theirsEngine },
      }),
    );
  }
  {
    // Met when ours is ahead on both files; missed as soon as one is behind, even with the other unmeasured.
    // Ours on two threads against wllama's two (like for like) when our two-thread runs were made,
    // else ours on one thread.
    const two = f?.oursTwoThreads === true;
    const name = two
      ? "SmolLM2 decode in wasm with 2 threads ahead of wllama with 2 threads (COOP/COEP), Q4_1 and Q8_0"
      : "SmolLM2 decode in wasm (one thread) ahead of wllama with 2 threads (COOP/COEP), Q4_1 and Q8_0";
    const target = "> 1× on both files";
    const files = ["q4_1", "q8_0"].map((file) => ({ file, c: againstWllama(row(file), 2, two ? 2 : 1) }));
    const measured = files.filter(({ c }) => c.ratio != null);
    const worst = measured.length ? Math.min(...measured.map(({ c }) => c.ratio)) : null;
    const met = worst != null && worst <= 1 ? false : measured.length === files.length ? true : null;
    const by = met === false ? 1 - worst : null;
    const part = ({ file, c }) => `${file.toUpperCase()} ${c.ratio == null ? `not measured (${c.why})` : `${c.ratio.toFixed(2)}× (${pair(c)})`}`;
    const engine = measured.filter(({ c }) => c.theirsEngine).map(({ file, c }) => `${file.toUpperCase()} ${fmt(c.oursEngine)} vs ${fmt(c.theirsEngine)} tok/s`);
    list.push({
      name,
      target,
      value: worst,
      met,
      by,
      summary: measured.length
        ? `${met == null ? "not measured on both files" : verdict({ met, by })}: ours${two ? " with 2 threads" : ""} ÷ wllama with 2 threads, ${files.map(part).join("; ")}, ${ON_PAGE}`
        : `not measured (${files.map(({ file, c }) => `${file.toUpperCase()}: ${c.why}`).join("; ")})`,
      detail: engine.length ? `by each engine's own per-token timer: ${engine.join(", ")}` : "",
    });
  }
  return list;
}

/**
 * results.md's section against wllama: ours in wasm on one thread, wllama on one and on two; ours on
 * two as well where those runs were made (the columns appear only then).
 */
export function wllamaSection(results) {
  const f = peerFigures(results);
  if (!f?.rows.some((r) => r.wllama[1].pageDecode != null || r.wllama[2].pageDecode != null)) return null;
  const two = f.oursTwoThreads;
  const out = ["## Against wllama, one and two threads (SmolLM2-135M-Instruct)", ""];
  out.push(
    `wllama${results.meta.wllama ? ` ${results.meta.wllama}` : ""} in the same headless browser on the same two files, CPU only: "Once upon a time", then 128 greedy tokens (EOS ignored) after a warm-up of 24. ` +
      "One thread (`n_threads: 1`; on Q4_1 the main run `wllama-smollm2`) and two (`n_threads: 2`: its one wasm starts pthreads because the page is cross-origin isolated by the server's COOP/COEP headers; the run fails unless `isMultithread()` is true and `getNumThreads()` is 2). " +
      "Ours: the wasm decode runs of the section above (flex, prealloc, one thread). Decode tok/s by the tokens' arrival on the page's main thread, timed the same way for both engines; in brackets, each engine's own per-token timer." +
      (two
        ? " Ours on two threads: the same runs on our multi-threaded build (`peer-smollm2-<file>-wasm-2threads`: `worker.js?threads=2`, a rayon pool of 2 on shared memory; the run fails unless the worker reports 2 threads). Each \"ours ÷\" compares the same number of threads."
        : "") +
      roundsText(f) +
      (f.rounds > 1 ? " wllama with one thread on Q4_1 is the main run, made once." : ""),
  );
  out.push("");
  if (two) {
    out.push("| GGUF | ours in wasm, 1 thread | wllama, 1 thread | ours ÷ | ours in wasm, 2 threads | wllama, 2 threads | ours ÷ | wllama 2 threads ÷ 1 | ours 2 threads ÷ 1 |");
    out.push("|---|---|---|---|---|---|---|---|---|");
  } else {
    out.push("| GGUF | ours in wasm, 1 thread | wllama, 1 thread | ours ÷ | wllama, 2 threads | ours ÷ | wllama 2 threads ÷ 1 |");
    out.push("|---|---|---|---|---|---|---|");
  }
  const cell = (w) => (w.absent ? `absent (${w.absent})` : `${fmt(w.pageDecode)} (${fmt(w.decode)})`);
  const ratio = (a, b) => (a != null && b != null ? `${(a / b).toFixed(2)}×` : "—");
  for (const r of f.rows) {
    const [w1, w2] = [r.wllama[1], r.wllama[2]];
    const ours1 = `${fmt(r.wasm.pageDecode)} (${fmt(r.wasm.decode)})`;
    if (two) {
      const ours2 = r.wasm2.absent ? `absent (${r.wasm2.absent})` : `${fmt(r.wasm2.pageDecode)} (${fmt(r.wasm2.decode)})`;
      out.push(
        `| ${r.file.toUpperCase()} | ${ours1} | ${cell(w1)} | ${ratio(r.wasm.pageDecode, w1.pageDecode)} | ${ours2} | ${cell(w2)} | ${ratio(r.wasm2.pageDecode, w2.pageDecode)} | ${ratio(w2.pageDecode, w1.pageDecode)} | ${ratio(r.wasm2.pageDecode, r.wasm.pageDecode)} |`,
      );
    } else {
      out.push(`| ${r.file.toUpperCase()} | ${ours1} | ${cell(w1)} | ${ratio(r.wasm.pageDecode, w1.pageDecode)} | ${cell(w2)} | ${ratio(r.wasm.pageDecode, w2.pageDecode)} | ${ratio(w2.pageDecode, w1.pageDecode)} |`);
    }
  }
  return out.join("\n");
}

/**
 * results.md's section: the peer's absolute figures beside ours, and the ratios; ours in wasm on two
 * threads beside ours on one where those runs were made (no ratio: llama.cpp runs on one thread).
 */
export function peerSection(results) {
  const f = peerFigures(results);
  if (!f) return null;
  const two = f.oursTwoThreads;
  const out = ["## Against native llama.cpp (SmolLM2-135M-Instruct)", ""];
  out.push(
    "llama-cpp-python 0.3.36 built with `-DGGML_NATIVE=ON`, ggml's AMX matmul left out (`n_threads = n_threads_batch = 1`), timed around its own `eval` calls with a numpy argmax (scripts/llama-peer.py); " +
      'decode: "Once upon a time" then 128 greedy tokens; prefill: bench/prefill.txt in one call, after a warm-up call. ' +
      "Q8_0 is derived from the Q4_1 file by scripts/make-q8_0.py (gguf-py). Ours: the same decode (flex, prealloc) and the same text's prefill with one token generated, after a warm-up run, by the CLI and in the page's worker." +
      (two ? " *wasm, 2 threads*: the same wasm runs on our multi-threaded build with a pool of two threads (no ratio: llama.cpp runs on one here)." : "") +
      roundsText(f),
  );
  out.push("");
  const ratio = (a, b) => (a != null && b != null ? `${(a / b).toFixed(2)}×` : "—");
  const twoCell = (r, figure) => (r.wasm2.absent ? (figure === "decode" ? `absent (${r.wasm2.absent})` : "absent") : fmt(r.wasm2[figure]));
  if (two) {
    out.push(
      "| GGUF | llama.cpp decode tok/s | wasm decode tok/s | ÷ | wasm, 2 threads, decode tok/s | native decode tok/s | ÷ | llama.cpp prefill tok/s | wasm prefill tok/s | ÷ | wasm, 2 threads, prefill tok/s | native prefill tok/s | ÷ |",
    );
    out.push("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
  } else {
    out.push("| GGUF | llama.cpp decode tok/s | wasm decode tok/s | ÷ | native decode tok/s | ÷ | llama.cpp prefill tok/s | wasm prefill tok/s | ÷ | native prefill tok/s | ÷ |");
    out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  }
  for (const r of f.rows) {
    const l = r.llama;
    const wasmDecode = `${fmt(r.wasm.decode)} | ${ratio(r.wasm.decode, l?.decode)} |${two ? ` ${twoCell(r, "decode")} |` : ""}`;
    const wasmPrefill = `${fmt(r.wasm.prefill)} | ${ratio(r.wasm.prefill, l?.prefill)} |${two ? ` ${twoCell(r, "prefill")} |` : ""}`;
    out.push(
      `| ${r.file.toUpperCase()} | ${l ? fmt(l.decode) : `absent (${r.absent})`} | ${wasmDecode} ${fmt(r.native.decode)} | ${ratio(r.native.decode, l?.decode)} | ${l ? fmt(l.prefill) : "absent"} | ${wasmPrefill} ${fmt(r.native.prefill)} | ${ratio(r.native.prefill, l?.prefill)} |`,
    );
  }
  return out.join("\n");
}
