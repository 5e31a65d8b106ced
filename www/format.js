// Number formats, and the table row with a colour swatch, shared by the page's panels.

/** A table row of `cells` (strings), the first cell led by a swatch of `color` (the chart line's). */
export function swatchRow(cells, color) {
  const tr = document.createElement("tr");
  for (const [i, text] of cells.entries()) {
    const td = document.createElement("td");
    if (i === 0) {
      const sw = document.createElement("i");
      sw.className = "swatch";
      sw.style.background = color;
      td.append(sw);
    }
    td.append(text);
    tr.append(td);
  }
  return tr;
}

/** Bytes in binary units (B, KiB, MiB, GiB, TiB), three significant digits past 10. */
export function fmtBytes(n) {
  if (n == null || !Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

/** Milliseconds, or seconds past one. */
export function fmtMs(ms) {
  if (ms == null || !Number.isFinite(ms)) return "—";
  if (ms < 10) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${ms.toFixed(1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

/** An integer with thousands separators: 47,185,920. */
export const fmtInt = (n) => n.toLocaleString("en-US");
