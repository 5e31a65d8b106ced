#!/usr/bin/env node
// Completes the npm package that wasm-pack wrote to pkg/ (run by
// scripts/build-wasm.sh): the package README (npm/README.md), the licenses,
// `exports` (wasm-pack writes only `main`/`types`), and a `files` list that
// ships everything the import needs.
import { copyFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
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

copyFileSync(join(root, "npm", "README.md"), join(pkg, "README.md"));
const licenses = ["LICENSE-MIT", "LICENSE-APACHE"];
for (const file of licenses) copyFileSync(join(root, file), join(pkg, file));

manifest.module = js;
manifest.exports = {
  ".": { types: `./${dts}`, default: `./${js}` },
  [`./${wasm}`]: `./${wasm}`,
  "./package.json": "./package.json",
};
const wanted = [js, dts, wasm, `${wasm}.d.ts`, "README.md", ...licenses];
manifest.files = [...new Set([...(manifest.files ?? []), ...wanted])].filter((f) => existsSync(join(pkg, f)));
manifest.keywords = ["llm", "kv-cache", "webassembly", "wasm", "gpt2", "llama", "burn", "inference"];
manifest.sideEffects = false;

writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + "\n");
console.log(`finish-pkg: ${manifest.name}@${manifest.version} in ${pkg} (${manifest.files.join(", ")})`);
