// Native llama.cpp as the bench's peer: figures, target checks and the results.md section.
//
// scripts/bench.mjs writes `results.peer`: `llamaCpp` (scripts/llama-peer.py per GGUF: decode step
// times and the ~400-token prefill) and `ours` (the same decode and prefill, by our CLI and in wasm,
// cache prealloc, flex backend).

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const decodeTps = (stepMs) => (stepMs?.length > 1 ? ((stepMs.length - 1) * 1000) / sum(stepMs.slice(1)) : null);
const prefillTps = (p) => (p?.ms ? (p.tokens * 1000) / p.ms : null);
const fmt = (v, d = 1) => (v == null ? "—" : v.toFixed(d));

/** The peer's and our figures, by GGUF (`q4_1`, `q8_0`) and env. */
export function peerFigures(results) {
  const peer = results.peer;
  if (!peer) return null;
  const llama = (file) => peer.llamaCpp?.find((p) => p.file === file) ?? null;
  const ours = (env, file) => {
    const o = peer.ours?.find((p) => p.env === env && p.file === file);
    return { decode: decodeTps(o?.decodeStepMs), prefill: prefillTps(o?.prefill), prefillTokens: o?.prefill?.tokens ?? null };
  };
  const row = (file) => {
    const l = llama(file);
    return {
      file,
      absent: l?.absent ?? (l ? null : "not run"),
      llama: l && !l.absent ? { decode: decodeTps(l.decode.stepMs), prefill: prefillTps(l.prefill), prefillTokens: l.prefill?.tokens } : null,
      wasm: ours("wasm", file),
      native: ours("native", file),
    };
  };
  return { rows: ["q4_1", "q8_0"].map(row) };
}

function ratioTarget(name, factor, ours, theirs, what) {
  const target = `≥ ${factor.toFixed(2)}×`;
  if (ours == null || theirs == null) return { name, target, value: null, met: null, summary: "not measured (native llama.cpp absent or the run left out)" };
  const value = ours / theirs;
  const met = value >= factor;
  const by = met ? null : (factor - value) / factor;
  return {
    name,
    target,
    value,
    met,
    by,
    summary: `ours ÷ llama.cpp = ${value.toFixed(2)}× (${met ? "met" : `missed by ${(by * 100).toFixed(0)}%`}): ${fmt(ours)} vs ${fmt(theirs)} ${what}`,
  };
}

/** Issue 15's targets against native llama.cpp (one thread, same machine, same run). */
export function peerTargets(results) {
  const f = peerFigures(results);
  const q41 = f?.rows.find((r) => r.file === "q4_1");
  return [
    ratioTarget("SmolLM2 Q4_1 decode in wasm ≥ 0.75 × native llama.cpp (one thread)", 0.75, q41?.wasm.decode, q41?.llama?.decode, "tok/s"),
    ratioTarget(
      `SmolLM2 Q4_1 prefill of ${q41?.llama?.prefillTokens ?? "~400"} tokens in wasm ≥ 0.5 × native llama.cpp`,
      0.5,
      q41?.wasm.prefill,
      q41?.llama?.prefill,
      "tok/s",
    ),
    ratioTarget("SmolLM2 Q4_1 decode, native CLI ≥ 0.75 × native llama.cpp (one thread)", 0.75, q41?.native.decode, q41?.llama?.decode, "tok/s"),
  ];
}

/** results.md's section: the peer's absolute figures beside ours, and the ratios. */
export function peerSection(results) {
  const f = peerFigures(results);
  if (!f) return null;
  const out = ["## Against native llama.cpp (SmolLM2-135M-Instruct)", ""];
  out.push(
    "llama-cpp-python 0.3.36 built with `-DGGML_NATIVE=ON`, ggml's AMX matmul left out (`n_threads = n_threads_batch = 1`), timed around its own `eval` calls with a numpy argmax (scripts/llama-peer.py); " +
      'decode: "Once upon a time" then 128 greedy tokens; prefill: bench/prefill.txt in one call, after a warm-up call. ' +
      "Q8_0 is derived from the Q4_1 file by scripts/make-q8_0.py (gguf-py). Ours: the same decode (flex, prealloc) and the same text's prefill with one token generated, after a warm-up run, by the CLI and in the page's worker.",
  );
  out.push("");
  out.push("| GGUF | llama.cpp decode tok/s | wasm decode tok/s | ÷ | native decode tok/s | ÷ | llama.cpp prefill tok/s | wasm prefill tok/s | ÷ | native prefill tok/s | ÷ |");
  out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  const ratio = (a, b) => (a != null && b != null ? `${(a / b).toFixed(2)}×` : "—");
  for (const r of f.rows) {
    const l = r.llama;
    out.push(
      `| ${r.file.toUpperCase()} | ${l ? fmt(l.decode) : `absent (${r.absent})`} | ${fmt(r.wasm.decode)} | ${ratio(r.wasm.decode, l?.decode)} | ${fmt(r.native.decode)} | ${ratio(r.native.decode, l?.decode)} | ${l ? fmt(l.prefill) : "absent"} | ${fmt(r.wasm.prefill)} | ${ratio(r.wasm.prefill, l?.prefill)} | ${fmt(r.native.prefill)} | ${ratio(r.native.prefill, l?.prefill)} |`,
    );
  }
  return out.join("\n");
}
