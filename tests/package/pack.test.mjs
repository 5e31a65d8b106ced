// The npm package as `npm publish` would ship it: `npm pack --dry-run` in pkg/ (npm run build
// makes it) must list exactly the files a consumer needs, and the manifest must say how to load
// them. Prints the tarball's size.
//
//   node --test tests/package/

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../..", import.meta.url));
const PKG = process.env.KVCACHE_PKG_DIR ?? join(REPO, "pkg");
const manifest = JSON.parse(readFileSync(join(PKG, "package.json"), "utf8"));

const CONSUMER_FILES = [
  "CHANGELOG.md",
  "LICENSE-APACHE",
  "LICENSE-MIT",
  "README.md",
  "kvcache_wasm.d.ts",
  "kvcache_wasm.js",
  "kvcache_wasm_bg.wasm",
  "kvcache_wasm_bg.wasm.d.ts",
  "package.json",
  // The multi-threaded build (`kvcache-wasm/threads`) and wasm-bindgen-rayon's worker script.
  "threads/kvcache_wasm.d.ts",
  "threads/kvcache_wasm.js",
  "threads/kvcache_wasm_bg.wasm",
  "threads/kvcache_wasm_bg.wasm.d.ts",
  "threads/snippets/wasm-bindgen-rayon-HASH/src/workerHelpers.no-bundler.js",
];

test("npm pack ships exactly the files a consumer needs", () => {
  const [pack] = JSON.parse(execFileSync("npm", ["pack", "--dry-run", "--json", "--ignore-scripts"], { cwd: PKG, encoding: "utf8" }));
  const files = pack.files.map((f) => f.path.replace(/wasm-bindgen-rayon-[0-9a-f]+\//, "wasm-bindgen-rayon-HASH/"));
  assert.deepEqual(files.sort(), CONSUMER_FILES);
  const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
  console.log(`npm pack: ${pack.filename}, ${pack.files.length} files, ${kib(pack.size)} packed, ${kib(pack.unpackedSize)} unpacked`);
  assert.ok(pack.size < pack.unpackedSize / 2, "the tarball is compressed");
});

test("package.json: name, semver, exports, types, sideEffects, engines, no placeholder address", () => {
  assert.equal(manifest.name, "kvcache-wasm");
  assert.match(manifest.version, /^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/, "a semver version");
  assert.equal(manifest.type, "module");
  assert.equal(manifest.types, "kvcache_wasm.d.ts");
  assert.deepEqual(manifest.exports["."], { types: "./kvcache_wasm.d.ts", default: "./kvcache_wasm.js" });
  assert.deepEqual(manifest.exports["./threads"], { types: "./threads/kvcache_wasm.d.ts", default: "./threads/kvcache_wasm.js" });
  for (const target of Object.values(manifest.exports).flatMap((e) => (typeof e === "string" ? [e] : Object.values(e)))) {
    assert.ok(existsSync(join(PKG, target)), `exports points at a file that exists: ${target}`);
  }
  assert.equal(manifest.sideEffects, false);
  assert.match(manifest.engines?.node ?? "", /^>=\d+/, "engines.node states the oldest Node it runs on");
  const addresses = JSON.stringify([manifest.repository, manifest.homepage, manifest.bugs].filter(Boolean));
  assert.doesNotMatch(addresses, /example\.(invalid|com|org)|localhost/, "no placeholder URL");
  assert.equal(manifest.license, "MIT OR Apache-2.0");
});

test("CHANGELOG.md has an entry for the package's version", () => {
  const changelog = readFileSync(join(PKG, "CHANGELOG.md"), "utf8");
  assert.match(changelog, new RegExp(`^## \\[${manifest.version.replaceAll(".", "\\.")}\\]`, "m"));
});
