// The headless browsers this machine can run, behind one small page interface, for the page's
// end-to-end tests (tests/e2e/) and the benchmark (scripts/bench.mjs).
//
//   Chromium: Debian's /usr/bin/chromium through playwright-core (Playwright cannot download its
//             own browsers here). The flags keep Chromium from reaching for the network (refused
//             here) and let it run as root.
//   Firefox:  Debian's /usr/bin/firefox-esr through puppeteer-core over WebDriver BiDi
//             (Playwright's patched Firefox builds are not obtainable here).
//
// CHROMIUM and FIREFOX in the environment point at other binaries.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
export const FIREFOX = process.env.FIREFOX ?? "/usr/bin/firefox-esr";
export const BROWSERS = { chromium: CHROMIUM, firefox: FIREFOX };

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

// Firefox's own calls home, on top of what puppeteer already turns off for automation.
const FIREFOX_PREFS = {
  "app.update.enabled": false,
  "browser.safebrowsing.downloads.remote.enabled": false,
  "network.captive-portal-service.enabled": false,
  "network.connectivity-service.enabled": false,
  "extensions.getAddons.cache.enabled": false,
};

/**
 * Starts a headless browser with a fresh profile. Resolves to
 * { name, version, raw, newPage(), close() }; `raw` is playwright's BrowserContext or
 * puppeteer's Browser, for what the common interface does not cover.
 */
export async function launch(name, { viewport = { width: 1360, height: 1000 } } = {}) {
  const profile = mkdtempSync(join(tmpdir(), `kvcache-${name}-`));
  const cleanup = () => rmSync(profile, { recursive: true, force: true });
  try {
    const browser = name === "firefox" ? await launchFirefox(profile, viewport) : await launchChromium(profile, viewport);
    return {
      ...browser,
      name,
      async close() {
        await browser.closeBrowser();
        cleanup();
      },
    };
  } catch (err) {
    cleanup();
    throw err;
  }
}

async function launchChromium(profile, viewport) {
  const { chromium } = await import("playwright-core");
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    args: CHROMIUM_ARGS,
  });
  return {
    raw: context,
    version: `Chromium ${context.browser()?.version() ?? ""}`.trim(),
    newPage: async () => new PlaywrightPage(await context.newPage()),
    closeBrowser: () => context.close(),
  };
}

async function launchFirefox(profile, viewport) {
  const { default: puppeteer } = await import("puppeteer-core");
  const browser = await puppeteer.launch({
    browser: "firefox",
    executablePath: FIREFOX,
    headless: true,
    userDataDir: profile,
    defaultViewport: viewport,
    extraPrefsFirefox: FIREFOX_PREFS,
    protocolTimeout: 3_600_000, // a benchmark's evaluate() can take minutes
  });
  const version = await browser.version(); // "firefox/153.8.0esr"
  return {
    raw: browser,
    version: `Firefox ${version.replace(/^firefox\//i, "")}`,
    newPage: async () => new PuppeteerPage(await browser.newPage()),
    closeBrowser: () => browser.close(),
  };
}

/**
 * What both drivers offer, on CSS selectors. `problems` collects uncaught errors and console
 * errors of the page (a 404's "Failed to load resource" excepted: the error tests cause them),
 * and warnings that something is deprecated.
 */
class Page {
  constructor(raw) {
    this.raw = raw;
    this.problems = [];
    raw.on("pageerror", (err) => this.problems.push(`page error: ${err.message}`));
    raw.on("console", (msg) => {
      if (msg.type() === "error" && !/Failed to load resource/.test(msg.text())) {
        this.problems.push(`console error: ${msg.text()}`);
      }
      if (/^warn/.test(msg.type()) && /deprecated/i.test(msg.text())) {
        this.problems.push(`console warning: ${msg.text()}`);
      }
    });
  }

  goto(url) {
    return this.raw.goto(url);
  }

  /** Runs `fn(arg)` in the page and returns its (serializable) result. */
  eval(fn, arg) {
    return this.raw.evaluate(fn, arg);
  }

  click(selector) {
    return this.raw.click(selector);
  }

  /** Ticks or unticks a checkbox with a click, if it is not already so. */
  async check(selector, on = true) {
    if ((await this.eval((s) => document.querySelector(s).checked, selector)) !== on) await this.click(selector);
  }

  text(selector) {
    return this.eval((s) => document.querySelector(s)?.textContent ?? null, selector);
  }

  texts(selector) {
    return this.eval((s) => [...document.querySelectorAll(s)].map((e) => e.textContent), selector);
  }

  /** Injects a script file (e.g. axe-core) into the page. */
  addScript(path) {
    return this.raw.addScriptTag({ path });
  }

  exposeFunction(name, fn) {
    return this.raw.exposeFunction(name, fn);
  }

  screenshot(path) {
    return this.raw.screenshot({ path, fullPage: true });
  }

  close() {
    return this.raw.close();
  }
}

class PlaywrightPage extends Page {
  waitFor(fn, arg, { timeout = 30_000, polling = 100 } = {}) {
    return this.raw.waitForFunction(fn, arg, { timeout, polling });
  }

  fill(selector, value) {
    return this.raw.fill(selector, String(value));
  }

  select(selector, value) {
    return this.raw.selectOption(selector, value);
  }

  setFiles(selector, paths) {
    return this.raw.setInputFiles(selector, paths);
  }

  setViewport(size) {
    return this.raw.setViewportSize(size);
  }
}

class PuppeteerPage extends Page {
  waitFor(fn, arg, { timeout = 30_000, polling = 100 } = {}) {
    return this.raw.waitForFunction(fn, { timeout, polling }, arg);
  }

  fill(selector, value) {
    return this.raw.locator(selector).fill(String(value));
  }

  select(selector, value) {
    return this.raw.select(selector, value);
  }

  async setFiles(selector, paths) {
    const input = await this.raw.$(selector);
    await input.uploadFile(...paths);
  }

  setViewport(size) {
    return this.raw.setViewport(size);
  }
}
