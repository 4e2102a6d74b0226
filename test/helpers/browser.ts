import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { resolve } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { waitFor } from "../../src/adapters/wait-for.js";
import { makeTempDir } from "./cli.js";

/** Debian's chromium (scripts/install-deps.sh): playwright-core drives it; no browser is downloaded. */
export const CHROMIUM = "/usr/bin/chromium";

/**
 * Without the background-networking flags Chromium keeps trying to reach Google's services, and
 * a machine without that network refuses the connections (errors in the log, slow start-up).
 */
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

/** Where the docs' screenshots live (docs/dashboard.md shows them). */
export const SCREENSHOT_DIR = resolve(import.meta.dirname, "../../docs/img");

export interface BrowserSession {
  context: BrowserContext;
  page: Page;
  /** Console errors, uncaught page errors and CSP violations, as text. */
  problems: string[];
  /** Requests that failed or answered 4xx/5xx, as "METHOD URL: why". */
  failedRequests: string[];
  /**
   * Saves a screenshot of the page as docs/img/NAME.png when NIXPOOL_SCREENSHOTS=1 (the
   * documented way to regenerate them); otherwise takes it in memory only, so it still must work.
   */
  screenshot: (name: string) => Promise<void>;
  /** Closes the browser and removes its profile; safe to call twice. */
  close: () => Promise<void>;
}

/**
 * Starts a headless Chromium with a fresh profile and one page that records everything that
 * goes wrong: console errors, page errors and failed requests. An event stream cut when its page
 * navigates away or closes is not a failure (EventSource requests end that way).
 */
export async function openBrowser(): Promise<BrowserSession> {
  const profile = await makeTempDir("nixpool-chromium-");
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile.dir, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 1000 },
      timeout: 60_000,
    });
  } catch (e) {
    await profile.cleanup();
    throw e;
  }
  const page = context.pages()[0] ?? (await context.newPage());
  const problems: string[] = [];
  const failedRequests: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console: ${m.text()}`);
  });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("dialog", (d) => {
    problems.push(`dialog: ${d.message()}`);
    void d.dismiss();
  });
  page.on("requestfailed", (r) => {
    const why = r.failure()?.errorText ?? "failed";
    if (r.resourceType() === "eventsource" && why === "net::ERR_ABORTED") return;
    failedRequests.push(`${r.method()} ${r.url()}: ${why}`);
  });
  page.on("response", (r) => {
    if (r.status() >= 400) failedRequests.push(`${r.request().method()} ${r.url()}: HTTP ${r.status()}`);
  });
  let closed = false;
  return {
    context,
    page,
    problems,
    failedRequests,
    screenshot: async (name) => {
      if (process.env["NIXPOOL_SCREENSHOTS"] === "1") {
        await mkdir(SCREENSHOT_DIR, { recursive: true });
        await page.screenshot({ path: resolve(SCREENSHOT_DIR, `${name}.png`), fullPage: true });
      } else {
        await page.screenshot({ fullPage: true });
      }
    },
    close: async () => {
      if (closed) return;
      closed = true;
      await context.close();
      await profile.cleanup();
    },
  };
}

/**
 * Waits (through waitFor, the one polling loop) until the first element matching `selector` has
 * text matching `expected`; fails naming what it saw last. Only the browser's own live updates
 * can make it match: the page is never reloaded.
 */
export async function waitForText(
  page: Page,
  selector: string,
  expected: string | RegExp,
  timeoutMs = 15_000,
): Promise<string> {
  let last: string | null = null;
  const found = await waitFor(
    async () => {
      const el = await page.$(selector);
      last = el === null ? null : await el.textContent();
      if (last === null) return false;
      return (typeof expected === "string" ? last.trim() === expected : expected.test(last)) ? last : false;
    },
    { timeoutMs },
  );
  assert.ok(
    found !== false,
    `${selector}: expected ${String(expected)} within ${timeoutMs} ms, last saw ${last === null ? "no such element" : JSON.stringify(last)}`,
  );
  return found;
}
