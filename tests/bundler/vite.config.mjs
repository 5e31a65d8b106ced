// `vite build` of tests/bundler/ with `kvcache-wasm` resolved to the built
// package in pkg/, as if installed from npm. Fails if the import or the wasm
// asset cannot be resolved.
import { existsSync, readdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

const here = fileURLToPath(new URL(".", import.meta.url));
const pkg = fileURLToPath(new URL("../../pkg", import.meta.url));
const outDir = fileURLToPath(new URL("../../target/bundler-check", import.meta.url));

export default defineConfig({
  root: here,
  logLevel: "warn",
  resolve: { alias: { "kvcache-wasm": pkg } },
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2022",
  },
  plugins: [
    {
      name: "check-wasm-asset",
      closeBundle() {
        const assets = readdirSync(`${outDir}/assets`);
        if (!assets.some((f) => f.endsWith(".wasm"))) {
          throw new Error(`vite build emitted no .wasm asset (got ${assets.join(", ")})`);
        }
        console.log(`bundler check: vite build ok (${assets.join(", ")})`);
      },
    },
  ],
});
