#!/usr/bin/env node
// `npm run build:site`: the page as a static site in dist/, for any static host, at any path.
//
//   npm run build:site                                   models fetched from models/ beside the page
//   npm run build:site -- --models https://example.org/kv-models/   ...or from that base URL
//   node scripts/serve.mjs --site /some/path/            serves dist/ at that path, to try it
//
// dist/ holds the page (www/), the worker, the package's JS and wasm (pkg/, built first with
// `npm run build` when missing; both builds: the multi-threaded one runs where the host sends
// the cross-origin isolation headers, COOP/COEP) and the chart library (uPlot), every reference relative, so it
// works from a sub-path. The models are not copied: put them where --models points (the page's
// `?models=URL` overrides it at run time). See docs/static-site.md.

import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("..", import.meta.url));
const OUT = join(REPO, "dist");

const argv = process.argv.slice(2);
const at = argv.indexOf("--models");
let modelsBase = at >= 0 ? argv[at + 1] : "models/";
if (!modelsBase) throw new Error("build-site: --models needs a URL (absolute, or relative to the page)");
if (!modelsBase.endsWith("/")) modelsBase += "/";

const PKG_FILES = ["kvcache_wasm.js", "kvcache_wasm_bg.wasm"];
const UPLOT_FILES = ["uPlot.esm.js", "uPlot.min.css"];
const PKG = join(REPO, "pkg");
const UPLOT = join(REPO, "node_modules/uplot/dist");

if (!PKG_FILES.every((f) => existsSync(join(PKG, f)))) {
  console.log("build-site: pkg/ is missing: npm run build first");
  const built = spawnSync("npm", ["run", "build"], { cwd: REPO, stdio: "inherit" });
  if (built.status !== 0) process.exit(built.status ?? 1);
}
for (const f of UPLOT_FILES) {
  if (!existsSync(join(UPLOT, f))) throw new Error(`build-site: ${join(UPLOT, f)} is missing: run npm ci`);
}

rmSync(OUT, { recursive: true, force: true });
// The page, without www/pkg (a local link some setups make to pkg/).
cpSync(join(REPO, "www"), OUT, { recursive: true, filter: (src) => src !== join(REPO, "www/pkg") });
mkdirSync(join(OUT, "pkg"));
for (const f of PKG_FILES) cpSync(join(PKG, f), join(OUT, "pkg", f));
// The multi-threaded build with wasm-bindgen-rayon's worker script (snippets/), when built.
const THREADS = join(PKG, "threads");
if (existsSync(join(THREADS, "kvcache_wasm.js"))) {
  cpSync(THREADS, join(OUT, "pkg/threads"), { recursive: true, filter: (src) => !/\.d\.ts$/.test(src) });
}
mkdirSync(join(OUT, "vendor/uplot"), { recursive: true });
for (const f of UPLOT_FILES) cpSync(join(UPLOT, f), join(OUT, "vendor/uplot", f));
writeFileSync(
  join(OUT, "site.js"),
  `// Written by npm run build:site: where this copy of the page finds the real models' files.\n` +
    `// \`?models=URL\` in the address overrides it; a relative base resolves against the page.\n` +
    `export const MODELS_BASE = ${JSON.stringify(modelsBase)};\n`,
);

const files = (dir) => readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)]));
const all = files(OUT);
const bytes = all.reduce((sum, f) => sum + statSync(f).size, 0);
console.log(`build-site: dist/ holds ${all.length} files, ${(bytes / 2 ** 20).toFixed(1)} MiB; models from ${modelsBase}`);
