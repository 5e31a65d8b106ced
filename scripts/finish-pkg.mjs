#!/usr/bin/env node
// Completes the npm package that wasm-pack wrote to pkg/ (run by
// scripts/build-wasm.sh): the engine guard and the type docs in the glue of each
// build (pkg/ and the multi-threaded pkg/threads/), the package README
// (npm/README.md), the changelog (CHANGELOG.md), the licenses, `exports`
// (wasm-pack writes only `main`/`types`; `kvcache-wasm/threads` is the
// multi-threaded build), `engines`, and a `files` list that ships everything the
// import needs (tests/package/ checks what `npm pack` would publish).
import { copyFileSync, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, process.argv[2] ?? "pkg");
const manifestPath = join(pkg, "package.json");
const manifest = JSON.parse(readFileSync(manifestPath, "utf8"));

const js = manifest.main; // kvcache_wasm.js
const dts = manifest.types; // kvcache_wasm.d.ts
const wasm = js.replace(/\.js$/, "_bg.wasm");
for (const file of [js, dts, wasm]) {
  if (!existsSync(join(pkg, file))) throw new Error(`finish-pkg: ${file} is missing from ${pkg}`);
}

/** The engine guard and the type docs in the glue of the build in `dir`. */
function finishGlue(dir) {
  // The engine guard (npm/engine-guard.js) goes at the end of the glue, whose module state it
  // uses: what a crash does, and clear errors for re-entrant calls.
  const glue = readFileSync(join(dir, js), "utf8");
  const guardMark = "---- engine guard";
  if (!glue.includes(guardMark)) {
    for (const name of ["function __wbg_reset_state", "let __wbg_instance_id"]) {
      if (!glue.includes(name)) {
        throw new Error(`finish-pkg: the glue has no \`${name}\` (wasm-bindgen emits it when src/wasm/crash.rs calls schedule_reinit)`);
      }
    }
    const classes = [...glue.matchAll(/^export class (\w+)/gm)].map((m) => m[1]);
    if (!classes.includes("Generator")) throw new Error("finish-pkg: the glue exports no Generator class");
    const guard = readFileSync(join(root, "npm", "engine-guard.js"), "utf8");
    const calls = classes.map((name) => `__kvcache_guard(${name});`).join("\n");
    writeFileSync(join(dir, js), `${glue}${guard}\n${calls}\n`);
  }

  // The types: `[Symbol.dispose]` declared so that it compiles without the esnext lib, and doc
  // comments for the declarations wasm-bindgen writes without one. Each step is skipped once done.
  let types = readFileSync(join(dir, dts), "utf8");
  const docs = [
    ["export type InitInput =", "What `init` loads the wasm module from: a URL or request, a response, the bytes, or a compiled module."],
    ["export interface InitOutput {", "The wasm module's raw exports, which the classes above wrap (internal: use the classes)."],
    ["export type SyncInitInput =", "What `initSync` instantiates the wasm module from: its bytes or a compiled module."],
    ["private constructor();", "Not constructible with `new`: use the static methods that build one."],
    ["free(): void;", "Releases the object's wasm memory now (garbage collection does it otherwise); do not use it afterwards."],
    ["[Symbol.dispose](): void;", "The same as `free()`, so that `using` releases the object at the end of its block."],
  ];
  for (const [line, doc] of docs) {
    if (types.includes(doc)) continue;
    const escaped = line.replace(/[()[\].{}]/g, "\\$&");
    types = types.replace(new RegExp(`^([ \\t]*)${escaped}`, "gm"), `$1/** ${doc} */\n$1${line}`);
  }
  const rawExport = "/** Raw export (internal). */";
  if (!types.includes(rawExport)) {
    types = types.replace(/^(export interface InitOutput \{\n)([\s\S]*?)^\}/m, (_, head, body) =>
      head + body.replace(/^(\s+)(readonly )/gm, `$1${rawExport}\n$1$2`) + "}",
    );
  }
  // wasm-bindgen declares its private reset function; it is not exported.
  types = types.replace(/^declare function __wbg_reset_state\(\): void;\n/m, "");
  if (!types.includes("interface SymbolConstructor")) {
    types += `
  declare global {
    /** The \`Symbol\` constructor, with the well-known symbol that \`[Symbol.dispose]\` above uses. */
    interface SymbolConstructor {
      /** The well-known symbol of \`using\` declarations (ES2026); declared here so that the types compile with lib ES2022. */
      readonly dispose: unique symbol;
    }
  }
  `;
  }
  writeFileSync(join(dir, dts), types);
}

finishGlue(pkg);
// The multi-threaded build (scripts/build-wasm-threads.sh), when built: only its glue, types,
// wasm and wasm-bindgen-rayon's worker script ship; its own manifest and docs are pkg/'s.
const threads = join(pkg, "threads");
const threadFiles = [];
if (existsSync(join(threads, js))) {
  finishGlue(threads);
  for (const f of ["package.json", "README.md", "LICENSE-MIT", "LICENSE-APACHE", "CHANGELOG.md", ".gitignore"]) rmSync(join(threads, f), { force: true });
  const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  threadFiles.push(...walk(threads).map((f) => relative(pkg, f)).sort());
}

copyFileSync(join(root, "npm", "README.md"), join(pkg, "README.md"));
copyFileSync(join(root, "CHANGELOG.md"), join(pkg, "CHANGELOG.md"));
const licenses = ["LICENSE-MIT", "LICENSE-APACHE"];
for (const file of licenses) copyFileSync(join(root, file), join(pkg, file));

manifest.module = js;
manifest.exports = {
  ".": { types: `./${dts}`, default: `./${js}` },
  [`./${wasm}`]: `./${wasm}`,
  "./package.json": "./package.json",
};
if (threadFiles.length) {
  manifest.exports["./threads"] = { types: `./threads/${dts}`, default: `./threads/${js}` };
  manifest.exports[`./threads/${wasm}`] = `./threads/${wasm}`;
}
const wanted = [js, dts, wasm, `${wasm}.d.ts`, "README.md", "CHANGELOG.md", ...licenses, ...threadFiles];
manifest.files = [...new Set([...(manifest.files ?? []).filter((f) => !f.startsWith("threads/")), ...wanted])].filter((f) => existsSync(join(pkg, f)));
manifest.keywords = ["llm", "kv-cache", "webassembly", "wasm", "gpt2", "llama", "burn", "inference"];
manifest.sideEffects = false;
manifest.engines = { node: ">=20" };

writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
console.log(`finish-pkg: ${manifest.name}@${manifest.version} in ${pkg} (${manifest.files.join(", ")})`);
