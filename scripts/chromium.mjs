// Headless Debian Chromium as this machine can run it, shared by the page's
// e2e test and the benchmark. Playwright cannot download its own browser here,
// so we point playwright-core at /usr/bin/chromium; the flags keep Chromium
// from reaching for the network (refused here) and let it run as root.

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
