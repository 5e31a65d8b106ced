#!/usr/bin/env node
// A tiny static server for the demo page, with no dependencies beyond Node.
//
//   node scripts/serve.mjs            # http://localhost:8080 (PORT overrides)
//
// It maps URL prefixes to folders of this repository:
//   /pkg/          -> pkg/                     the package build (npm run build)
//   /models/       -> models/                  the real model (scripts/fetch-model.sh)
//   /fixtures/     -> tests/fixtures/          tiny test models (?model=/fixtures/tiny-gpt2/)
//   /vendor/uplot/ -> node_modules/uplot/dist/ the chart library (npm install)
//   /vendor/wllama/ -> node_modules/@wllama/wllama/esm/  llama.cpp in wasm, the benchmark's peer
//   /bench/        -> bench/                   the benchmark page (npm run bench drives it)
//   /              -> www/                     the page itself
// It answers GET and HEAD with Content-Length (the page's progress bar needs
// the total) and the right MIME types, including application/wasm. It also
// sends the cross-origin isolation headers (COOP/COEP), which let the page
// load the multi-threaded build (pkg/threads/: SharedArrayBuffer) and give the
// worker's performance.now() microsecond resolution for the per-token timings.
// `ISOLATE=0` leaves them out, as many static hosts do: the page then runs the
// single-thread build.
//
// `node scripts/serve.mjs --site /some/path/` serves the static build (dist/, made by
// `npm run build:site`) at that path instead, with models/ at /some/path/models/.
//
// Tests import { startServer } and listen on a free port (port 0).

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const REPO = resolve(fileURLToPath(new URL("..", import.meta.url)));

export const ROUTES = [
  ["/pkg/", "pkg"],
  ["/models/", "models"],
  ["/fixtures/", "tests/fixtures"],
  ["/vendor/uplot/", "node_modules/uplot/dist"],
  ["/vendor/wllama/", "node_modules/@wllama/wllama/esm"],
  ["/bench/", "bench"],
  ["/", "www"],
];

const MIME = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".json": "application/json; charset=utf-8",
  ".wasm": "application/wasm",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".txt": "text/plain; charset=utf-8",
  ".md": "text/plain; charset=utf-8",
  ".ts": "text/plain; charset=utf-8",
  ".gguf": "application/octet-stream",
  ".safetensors": "application/octet-stream",
};

/** The file a URL path maps to, or null when it is outside every mapped folder. */
export function resolvePath(urlPath, repo = REPO, pkgDir = null, routes = ROUTES) {
  let path;
  try {
    path = decodeURIComponent(urlPath);
  } catch {
    return null;
  }
  if (path.includes("\0")) return null;
  for (const [prefix, folder] of routes) {
    if (!prefix.endsWith("/")) {
      if (path === prefix) return resolve(repo, folder); // a route to one file
      continue;
    }
    if (!path.startsWith(prefix)) continue;
    let rest = path.slice(prefix.length);
    if (rest === "" || rest.endsWith("/")) rest += "index.html";
    const root = prefix === "/pkg/" && pkgDir ? resolve(pkgDir) : resolve(repo, folder);
    const file = normalize(join(root, rest));
    if (file !== root && !file.startsWith(root + sep)) return null;
    return file;
  }
  return null;
}

function send(res, status, text, head = false) {
  res.writeHead(status, {
    "Content-Type": "text/plain; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(head ? undefined : text);
}

/** The cross-origin isolation headers: what SharedArrayBuffer, so the threaded build, needs. */
const ISOLATION = {
  "Cross-Origin-Opener-Policy": "same-origin",
  "Cross-Origin-Embedder-Policy": "require-corp",
};

async function handle(req, res, { repo, pkgDir, routes, isolate }, log) {
  const head = req.method === "HEAD";
  if (req.method !== "GET" && !head) {
    res.setHeader("Allow", "GET, HEAD");
    return send(res, 405, "method not allowed\n");
  }
  const url = new URL(req.url, "http://localhost");
  const file = resolvePath(url.pathname, repo, pkgDir, routes);
  let info = null;
  if (file) {
    try {
      info = await stat(file);
    } catch {
      info = null;
    }
  }
  if (!info || !info.isFile()) {
    log(`404 ${req.method} ${url.pathname}`);
    let hint = "";
    if (url.pathname.startsWith("/pkg/")) hint = " (build the package first: npm run build)";
    if (url.pathname.startsWith("/models/")) hint = " (fetch it first: bash scripts/fetch-model.sh)";
    if (url.pathname.startsWith("/vendor/")) hint = " (install the JS dependencies first: npm install)";
    return send(res, 404, `not found: ${url.pathname}${hint}\n`, head);
  }
  res.writeHead(200, {
    "Content-Type": MIME[extname(file).toLowerCase()] ?? "application/octet-stream",
    "Content-Length": info.size,
    "Last-Modified": info.mtime.toUTCString(),
    // Always revalidate, so an edited page or a rebuilt pkg/ is picked up on reload.
    // (The model itself is kept by the page in the browser's Cache API.)
    "Cache-Control": "no-cache",
    ...(isolate ? ISOLATION : {}),
    "Cross-Origin-Resource-Policy": "same-origin",
  });
  if (head) return res.end();
  createReadStream(file)
    .on("error", () => res.destroy())
    .pipe(res);
}

/** Routes that serve the static build (npm run build:site) at `base`, with models/ beside it. */
export function siteRoutes(base = "/") {
  return [
    [`${base}models/`, "models"],
    [base, "dist"],
  ];
}

/**
 * Starts the server; resolves to { server, port, url } once it listens.
 * `pkgDir` serves another build of the package at /pkg/ (default: the repo's pkg/); `routes`
 * replaces the URL map; `intercept(req, res)` may answer a request first (and return true);
 * `isolate: false` leaves out the cross-origin isolation headers.
 */
export function startServer({
  port = 8080,
  host = "127.0.0.1",
  repo = REPO,
  pkgDir = process.env.KVCACHE_PKG_DIR,
  routes = ROUTES,
  intercept = () => false,
  quiet = true,
  isolate = process.env.ISOLATE !== "0",
} = {}) {
  const log = quiet ? () => {} : (line) => console.log(line);
  const server = createServer((req, res) => {
    if (intercept(req, res)) return;
    handle(req, res, { repo, pkgDir, routes, isolate }, log).catch((err) => {
      log(`500 ${req.url}: ${err.message}`);
      if (!res.headersSent) send(res, 500, "internal error\n");
      else res.destroy();
    });
  });
  return new Promise((resolveStart, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      const actual = server.address().port;
      resolveStart({ server, port: actual, url: `http://${host === "0.0.0.0" ? "localhost" : host}:${actual}/` });
    });
  });
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  // `serve.mjs --site [/base/]` serves dist/ (npm run build:site) instead, at that path.
  // An optional folder argument (`serve.mjs www`) is accepted for the npm script; www/ is always the page.
  const port = Number(process.env.PORT ?? 8080);
  const host = process.env.HOST ?? "127.0.0.1";
  const site = process.argv.indexOf("--site");
  const base = site >= 0 ? (process.argv[site + 1] ?? "/").replace(/\/?$/, "/") : null;
  const routes = base ? siteRoutes(base) : ROUTES;
  const { url } = await startServer({ port, host, routes, quiet: false }).catch((err) => {
    console.error(`serve: cannot listen on ${host}:${port}: ${err.message}`);
    process.exit(1);
  });
  const page = new URL(base ? base.slice(1) : "", url.replace("127.0.0.1", "localhost")).href;
  console.log(`kvcache-wasm demo${base ? " (static build in dist/)" : ""}: ${page}  (Ctrl-C stops)`);
}
