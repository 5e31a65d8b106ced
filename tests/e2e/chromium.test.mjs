// The demo page (www/) end to end in headless Chromium: every scenario of scenarios.mjs.
//
//   npm run test:e2e          (needs pkg/ built: npm run build; runs firefox.test.mjs and site.test.mjs too)
//
// The suite serves the page itself on a free localhost port (scripts/serve.mjs), drives Debian's
// /usr/bin/chromium through playwright-core (scripts/browsers.mjs), and saves screenshots in
// tests/e2e/screenshots/chromium/.

import { pageSuite } from "./harness.mjs";
import { ALL } from "./scenarios.mjs";

pageSuite({ label: "chromium", browser: "chromium", scenarios: ALL });
