// The demo page end to end in headless Firefox (Debian's firefox-esr, through puppeteer-core over
// WebDriver BiDi): the fast scenarios of scenarios.mjs, on the tiny fixtures and GPT-2 with
// random weights; the real-model ones run in Chromium only. Screenshots: tests/e2e/screenshots/firefox/.

import { pageSuite } from "./harness.mjs";
import { FAST } from "./scenarios.mjs";

pageSuite({ label: "firefox", browser: "firefox", scenarios: FAST });
