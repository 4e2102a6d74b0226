import { test } from "node:test";
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { renderTimelineSvg } from "../../src/core/timeline-svg.js";
import type { CoordinatorEvent } from "../../src/serve/coordinator-types.js";
import { mountDashboard } from "../../src/serve/dashboard/routes.js";
import { openBrowser, waitForText, type BrowserSession } from "../helpers/browser.js";
import { simulateBuild } from "../helpers/build-records.js";
import {
  FixtureSource,
  HOSTILE,
  iso,
  sampleBuilder,
  sampleDerivation,
  sampleDetail,
  sampleSummary,
} from "../helpers/dashboard-fixtures.js";

// The dashboard's pages and its script in a real Chromium, served over real HTTP by hono with
// plain values for the coordinator and a minimal event stream in the api's place (`event: TYPE`,
// `data: JSON`, as src/serve/http's): the script's live updates for each kind of event, and
// escaping as a browser parses it. (The same pages against a real `nixpool serve` on a real
// pool: dashboard-serve.test.ts.)

/** Holds requests until released: a test orders what the server and the browser do. */
class Gate {
  private waiting: Promise<void> = Promise.resolve();
  private release: () => void = () => undefined;
  /** Requests wait from now on… */
  close(): void {
    this.waiting = new Promise((r) => (this.release = r));
  }
  /** …until this. */
  open(): void {
    this.release();
  }
  pass(): Promise<void> {
    return this.waiting;
  }
}

interface Gates {
  /** Held before the event stream subscribes (its events until then are lost, as at page load). */
  events: Gate;
  /** Held before a page is rendered. */
  pages: Gate;
}

async function startServer(
  source: FixtureSource,
): Promise<{ base: string; gates: Gates; close: () => Promise<void> }> {
  const app = new Hono();
  const gates: Gates = { events: new Gate(), pages: new Gate() };
  app.get("/api/events", async (c) => {
    await gates.events.pass();
    return streamSSE(c, async (stream) => {
      const queue: CoordinatorEvent[] = [];
      let wake: (() => void) | undefined;
      const unsubscribe = source.subscribe((e) => {
        queue.push(e);
        wake?.();
      });
      let open = true;
      let sent = 0;
      stream.onAbort(() => {
        open = false;
        wake?.();
      });
      while (open) {
        const e = queue.shift();
        if (e === undefined) {
          await new Promise<void>((r) => (wake = r));
          continue;
        }
        // Named by type as the api's stream does, every second one unnamed: the script takes both.
        const name = ++sent % 2 === 0 ? { event: e.type } : {};
        await stream.writeSSE({ ...name, data: JSON.stringify(e) });
      }
      unsubscribe();
    });
  });
  app.use("/builds/*", async (_c, next) => {
    await gates.pages.pass();
    await next();
  });
  mountDashboard(app, source);
  const { server, port } = await new Promise<{ server: ReturnType<typeof serve>; port: number }>(
    (resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: "127.0.0.1" }, (info: AddressInfo) =>
        resolve({ server: s, port: info.port }),
      );
    },
  );
  return {
    base: `http://127.0.0.1:${port}`,
    gates,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      }),
  };
}

/** Opens a page, waits until its event stream is connected, and marks it so a reload would show. */
async function openLive(b: BrowserSession, url: string): Promise<void> {
  await b.page.goto(url);
  await waitForText(b.page, "#live", "live");
  await b.page.evaluate("window.notReloaded = true");
}

async function assertNotReloaded(b: BrowserSession): Promise<void> {
  assert.equal(await b.page.evaluate("window.notReloaded"), true, "the page was reloaded");
}

test("dashboard pages in Chromium: rendered, escaped, and updated live from the event stream", async (t) => {
  const source = new FixtureSource();
  source.builderViews.push(sampleBuilder({ name: HOSTILE, inUse: 0, current: [] }));
  const server = await startServer(source);
  t.after(() => server.close());
  const b = await openBrowser();
  t.after(() => b.close());

  await t.test("overview: builders, queue and running builds follow builder and build events", async () => {
    await openLive(b, `${server.base}/`);
    assert.equal(await b.page.title(), "Overview · nixpool");
    // The hostile builder name is shown as text; nothing it holds ran (a dialog would be a problem).
    const names = await b.page.locator("#builders td.name").allTextContents();
    assert.deepEqual(names, ["local1", "local2", HOSTILE]);
    assert.equal(await b.page.locator("#builders img").count(), 0);

    source.emit({
      type: "builder",
      builder: sampleBuilder({
        inUse: 2,
        current: [
          { buildId: "b1", drv: "/nix/store/aaaa-step-1.drv", name: "step-1" },
          { buildId: "b1", drv: "/nix/store/bbbb-step-2.drv", name: "step-2" },
        ],
      }),
    });
    await waitForText(b.page, '[data-builder="local1"] [data-field="slots-text"]', "2/2");
    await waitForText(b.page, '[data-builder="local1"] [data-field="current"]', /step-1\s*step-2/);
    await waitForText(b.page, '[data-count="slots-in-use"]', "2");
    source.emit({
      type: "builder",
      builder: sampleBuilder({
        name: "local2",
        inUse: 0,
        current: [],
        health: "down",
        lastError: "ssh: refused",
      }),
    });
    await waitForText(b.page, '[data-builder="local2"] [data-field="health"]', /^down\s*ssh: refused$/);
    await waitForText(b.page, '[data-count="builders-up"]', "2");

    const q2 = sampleSummary({
      id: "q2",
      label: `small ${HOSTILE}`,
      status: "queued",
      submittedAt: iso(1000),
    });
    const { startedAt: _s, ...queued } = q2;
    source.emit({ type: "build", build: queued });
    await waitForText(b.page, '#queued-builds [data-build-id="q2"] [data-field="label"]', `small ${HOSTILE}`);
    await waitForText(b.page, '[data-count="queued"]', "1");
    source.emit({ type: "build", build: { ...q2, status: "running", startedAt: iso(1500) } });
    await waitForText(b.page, '#running-builds [data-build-id="q2"] [data-field="status"]', "running");
    await waitForText(b.page, '[data-count="running"]', "2");
    await waitForText(b.page, "#queued-builds", /Nothing waits\./);
    source.emit({
      type: "build",
      build: {
        ...q2,
        status: "succeeded",
        startedAt: iso(1500),
        finishedAt: iso(4000),
        counts: { total: 4, done: 4, failed: 0, running: 0, queued: 0 },
      },
    });
    await waitForText(b.page, '#recent-builds [data-build-id="q2"] [data-field="duration"]', "2.50s");
    await waitForText(b.page, '#recent-builds [data-build-id="q2"] [data-field="progress-text"]', "4/4");
    assert.equal(
      await b.page.locator('#recent-builds [data-build-id="q2"] a').getAttribute("href"),
      "/builds/q2",
    );
    await assertNotReloaded(b);
  });

  await t.test(
    "build page: derivation rows, log lines and, once finished, the timeline arrive live",
    async () => {
      await openLive(b, `${server.base}/builds/b1`);
      assert.equal(await b.page.locator("#timeline svg").count(), 0);
      await waitForText(
        b.page,
        'section[data-log-drv="/nix/store/aaaa-step-1.drv"] pre',
        "building step-1\nred line",
      );

      source.emit({
        type: "derivation",
        buildId: "b1",
        derivation: sampleDerivation({
          drv: "/nix/store/bbbb-step-2.drv",
          name: "step-2",
          finishedAt: iso(4000),
        }),
      });
      await waitForText(b.page, 'tr[data-drv="/nix/store/bbbb-step-2.drv"] [data-field="status"]', "built");
      await waitForText(b.page, 'tr[data-drv="/nix/store/bbbb-step-2.drv"] [data-field="duration"]', "3.40s");
      // A derivation the page has not seen, with a hostile name, gets a row; its log a pane.
      const drv = "/nix/store/cccc-evil.drv";
      source.emit({
        type: "derivation",
        buildId: "b1",
        derivation: sampleDerivation({ drv, name: HOSTILE, status: "running", builder: "local2" }),
      });
      await waitForText(b.page, `tr[data-drv="${drv}"] .name`, HOSTILE);
      for (const line of ["\x1b[32mcompiling\x1b[0m evil.c", `echo '${HOSTILE}'`]) {
        source.emit({ type: "log", buildId: "b1", drv, line });
      }
      source.emit({ type: "log", buildId: "other", drv, line: "another build's line" });
      await waitForText(b.page, `section[data-log-drv="${drv}"] pre`, `compiling evil.c\necho '${HOSTILE}'`);
      await waitForText(b.page, `section[data-log-drv="${drv}"] h3`, HOSTILE);

      const done = sampleDetail({
        status: "succeeded",
        finishedAt: iso(9000),
        counts: { total: 4, done: 4, failed: 0, running: 0, queued: 0 },
      });
      source.details.set("b1", done);
      const { derivations: _d, outputs: _o, ...summary } = done;
      source.emit({ type: "build", build: summary });
      await waitForText(b.page, "#build-status", "succeeded");
      await waitForText(b.page, '[data-build-count="done"]', "4");
      await waitForText(b.page, "#build-duration", "8.50s");
      // The chart is not there yet when the end arrives: the page asks again until it is.
      await waitForText(b.page, "#timeline", "The timeline is drawn when the build has finished.");
      const { records, wallMs } = simulateBuild(4, [{ name: "local1", slots: 2 }]);
      source.svg.set(
        "b1",
        renderTimelineSvg(records, { title: "b1", wallMs, builders: [{ name: "local1", slots: 2 }] }),
      );
      await waitForText(b.page, "#timeline svg .row-label", "local1 #1");
      assert.equal(
        await b.page.locator("#timeline svg rect.span").count(),
        records.flatMap((r) => r.spans).length,
      );
      await assertNotReloaded(b);
    },
  );

  await t.test(
    "build page: lines sent before its stream opened are not lost, and none shows twice",
    async () => {
      const drv = "/nix/store/aaaa-step-1.drv";
      const key = `b1 ${drv}`;
      const pane = `section[data-log-drv="${drv}"] pre`;
      const addLine = (line: string, o: { sent: boolean }) => {
        source.logs.set(key, `${source.logs.get(key) ?? ""}${line}\n`);
        if (o.sent) source.emit({ type: "log", buildId: "b1", drv, line });
      };
      server.gates.events.close();
      await b.page.goto(`${server.base}/builds/b1`);
      const before = (await b.page.locator(pane).textContent()) ?? "";
      // Sent while the page had no stream yet: only the log has it.
      addLine("lost while connecting", { sent: false });
      // The stream opens; the page's fresh copy is held while one more line is both logged and sent.
      server.gates.pages.close();
      server.gates.events.open();
      await waitForText(b.page, "#live", "syncing…");
      addLine("sent and in the copy", { sent: true });
      server.gates.pages.open();
      await waitForText(b.page, "#live", "live");
      addLine("sent after", { sent: true });
      await waitForText(b.page, pane, `${before}lost while connecting\nsent and in the copy\nsent after`);
    },
  );

  await t.test("history: a build's row updates live; a page that does not exist is a 404 page", async () => {
    await openLive(b, `${server.base}/history`);
    await waitForText(b.page, '#history-builds [data-build-id="b1"] [data-field="status"]', "succeeded");
    source.emit({
      type: "build",
      build: sampleSummary({ id: "n1", status: "queued", submittedAt: iso(20_000) }),
    });
    await waitForText(b.page, '#history-builds tr:first-child [data-field="id"]', "n1");
    await assertNotReloaded(b);
    const res = await b.page.goto(`${server.base}/builds/missing`);
    assert.equal(res?.status(), 404);
    assert.deepEqual(b.failedRequests.splice(0), [`GET ${server.base}/builds/missing: HTTP 404`]);
    assert.deepEqual(b.problems.splice(0), [
      "console: Failed to load resource: the server responded with a status of 404 (Not Found)",
    ]);
  });

  assert.deepEqual(b.problems, []);
  assert.deepEqual(b.failedRequests, []);
});
