// The checks behind the bench's targets (bench-report.mjs, bench-peer.mjs): whether a figure meets
// its target and by how much it misses, in words, and the target "ours ÷ a peer ≥ factor".

/** A figure to one decimal (or `d`), "—" without one. */
export const fmt = (v, d = 1) => (v == null ? "—" : v.toFixed(d));

/** Whether `value` meets `target` and, if not, by what fraction of the target it falls short; null without a value. */
export function missedBy(value, target, higherIsBetter = true) {
  if (value == null) return null;
  const met = higherIsBetter ? value >= target : value <= target;
  if (met) return { met: true, by: null };
  const by = higherIsBetter ? (target - value) / target : (value - target) / target;
  return { met: false, by };
}

/** A check in words: "met", "missed by N%" (one decimal under 10%, whole percents above), or "not measured". */
export function verdict(check) {
  if (!check) return "not measured";
  return check.met ? "met" : `missed by ${(check.by * 100).toFixed(check.by < 0.1 ? 1 : 0)}%`;
}

/** How the page-side comparisons with wllama are timed. */
export const ON_PAGE = "timed by token arrival on the page";

/**
 * The target ours ÷ `peer` ≥ `factor`, both in tok/s, shown with `digits` decimals. Without either
 * figure, "not measured", with `why` in brackets when given. `how`: how both were timed, after the
 * figures; `engine`: { ours, theirs } by each engine's own per-token timer, for the detail line.
 */
export function ratioTarget(name, factor, ours, theirs, { peer, why = null, how = null, engine = null, digits = 1 }) {
  const target = `≥ ${factor.toFixed(digits)}×`;
  if (ours == null || theirs == null) return { name, target, value: null, met: null, summary: why ? `not measured (${why})` : "not measured" };
  const value = ours / theirs;
  const check = missedBy(value, factor);
  const timers =
    engine?.ours != null && engine.theirs
      ? `by each engine's own per-token timer: ${fmt(engine.ours)} vs ${fmt(engine.theirs)} tok/s (${(engine.ours / engine.theirs).toFixed(2)}×)`
      : "";
  return {
    name,
    target,
    value,
    met: check.met,
    by: check.by,
    summary: `ours ÷ ${peer} = ${value.toFixed(2)}× (${verdict(check)}): ${fmt(ours)} vs ${fmt(theirs)} tok/s${how ? `, ${how}` : ""}`,
    detail: engine ? timers : undefined, // no detail line at all without `engine`
  };
}
