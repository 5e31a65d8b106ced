#!/usr/bin/env node
// Completes the npm package that scripts/bindgen.sh wrote to pkg/ (run by
// scripts/build-wasm.sh): the engine guard and the type docs in the glue of each
// build (pkg/ and the multi-threaded pkg/threads/), the package README
// (npm/README.md), the changelog (CHANGELOG.md), the licenses, and the manifest:
// the crate's name, version, description and license (Cargo.toml), `exports`
// (`kvcache-wasm/threads` is the multi-threaded build), `engines`, and a `files`
// list that ships everything the import needs (tests/package/ checks what
// `npm pack` would publish).
import { execFileSync } from "node:child_process";
import { copyFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const pkg = join(root, process.argv[2] ?? "pkg");
const metadata = execFileSync("cargo", ["metadata", "--no-deps", "--format-version", "1", "--manifest-path", join(root, "Cargo.toml")], {
  encoding: "utf8",
});
const crate = JSON.parse(metadata).packages[0];

// wasm-bindgen names its files after the crate's library: kvcache_wasm.js, .d.ts and _bg.wasm.
const stem = crate.name.replace(/-/g, "_");
const js = `${stem}.js`;
const dts = `${stem}.d.ts`;
const wasm = `${stem}_bg.wasm`;
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
    const needed = {
      "function __wbg_reset_state": "wasm-bindgen emits it when src/wasm/crash.rs calls schedule_reinit",
      "let __wbg_instance_id": "wasm-bindgen emits it when src/wasm/crash.rs calls schedule_reinit",
      "function handleError(": "wasm-bindgen emits it for the JS functions wasm calls that may throw",
    };
    for (const [name, why] of Object.entries(needed)) {
      if (!glue.includes(name)) throw new Error(`finish-pkg: the glue has no \`${name}\` (${why})`);
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
// wasm and wasm-bindgen-rayon's worker script, all under threads/ (the manifest and docs are pkg/'s).
const threads = join(pkg, "threads");
const threadFiles = [];
if (existsSync(join(threads, js))) {
  finishGlue(threads);
  const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]));
  const files = walk(threads);
  // wasm-bindgen-rayon's worker script starts each thread's instance with the glue's old
  // positional arguments, which print "using deprecated parameters for the initialization
  // function" once a thread: it passes the one object the glue asks for instead.
  const oldStart = "await pkg.default(data.module, data.memory);";
  const newStart = "await pkg.default({ module_or_path: data.module, memory: data.memory });";
  const helpers = files.filter((f) => /workerHelpers[^/]*\.js$/.test(f));
  if (!helpers.length) throw new Error("finish-pkg: threads/ has no wasm-bindgen-rayon worker script");
  for (const file of helpers) {
    const text = readFileSync(file, "utf8");
    if (text.includes(oldStart)) writeFileSync(file, text.replace(oldStart, newStart));
    else if (!text.includes(newStart)) throw new Error(`finish-pkg: ${file} no longer starts a thread with \`${oldStart}\`: look at how it does now`);
  }
  threadFiles.push(...files.map((f) => relative(pkg, f)).sort());
}

copyFileSync(join(root, "npm", "README.md"), join(pkg, "README.md"));
copyFileSync(join(root, "CHANGELOG.md"), join(pkg, "CHANGELOG.md"));
const licenses = ["LICENSE-MIT", "LICENSE-APACHE"];
for (const file of licenses) copyFileSync(join(root, file), join(pkg, file));

const exports = {
  ".": { types: `./${dts}`, default: `./${js}` },
  [`./${wasm}`]: `./${wasm}`,
  "./package.json": "./package.json",
};
if (threadFiles.length) {
  exports["./threads"] = { types: `./threads/${dts}`, default: `./threads/${js}` };
  exports[`./threads/${wasm}`] = `./threads/${wasm}`;
}
const manifest = {
  name: crate.name,
  type: "module",
  description: crate.description,
  version: crate.version,
  license: crate.license,
  files: [wasm, js, dts, `${wasm}.d.ts`, "README.md", "CHANGELOG.md", ...licenses, ...threadFiles].filter((f) => existsSync(join(pkg, f))),
  main: js,
  types: dts,
  sideEffects: false,
  module: js,
  exports,
  keywords: ["llm", "kv-cache", "webassembly", "wasm", "gpt2", "llama", "burn", "inference"],
  engines: { node: ">=20" },
};

writeFileSync(join(pkg, "package.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`finish-pkg: ${manifest.name}@${manifest.version} in ${pkg} (${manifest.files.join(", ")})`);
