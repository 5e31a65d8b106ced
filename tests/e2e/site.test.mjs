// The static build (npm run build:site -> dist/) served from a sub-path, /kv/demo/, in headless
// Chromium: the fast scenarios of scenarios.mjs, plus the models' base URL given by ?models=
// (there a stand-in: /elsewhere/SmolLM2-135M-Instruct.Q4_1.gguf serves the tiny GGUF fixture).
// Served without the cross-origin isolation headers, as many static hosts serve it: the page
// runs the single-thread build.
// Screenshots: tests/e2e/screenshots/site/.

import { spawnSync } from "node:child_process";
import { join } from "node:path";

import { REPO, pageSuite } from "./harness.mjs";
import { SITE } from "./scenarios.mjs";

const PATH = "/kv/demo/";

pageSuite({
  label: "site",
  browser: "chromium",
  scenarios: SITE,
  path: PATH,
  isolate: false,
  routes: [
    [PATH, "dist"],
    ["/fixtures/", "tests/fixtures"],
    ["/elsewhere/SmolLM2-135M-Instruct.Q4_1.gguf", "tests/fixtures/tiny-llama.gguf"],
  ],
  prepare() {
    const built = spawnSync(process.execPath, [join(REPO, "scripts/build-site.mjs")], { cwd: REPO, encoding: "utf8" });
    if (built.status !== 0) throw new Error(`npm run build:site failed:\n${built.stdout}${built.stderr}`);
  },
});
