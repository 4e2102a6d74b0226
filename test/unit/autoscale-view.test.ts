import { test } from "node:test";
import assert from "node:assert/strict";
import type { AutoscaleView, CoordinatorApi } from "../../src/serve/coordinator-types.js";
import { renderAutoscaleSection } from "../../src/serve/dashboard/autoscale-section.js";
import { createApiApp } from "../../src/serve/http/app.js";
import { FixtureSource, HOSTILE } from "../helpers/dashboard-fixtures.js";

const view = (over: Partial<AutoscaleView> = {}): AutoscaleView => ({
  provider: "hetzner",
  leader: true,
  settings: {
    minWorkers: 0,
    maxWorkers: 3,
    serverTypes: "auto",
    location: "fsn1",
    derivationsPerWorker: 8,
    scaleUpAfterMs: 30_000,
    minLifetimeMs: 600_000,
    releaseMarginMs: 300_000,
    intervalMs: 15_000,
    suspendIdle: false,
  },
  lastTickAt: "2026-12-07T10:00:00.000Z",
  summary: "12 derivations waiting (12 > 30s), 1 of 3 workers; this hour 0.01 of 0.02 EUR",
  blocked: [
    "not renting cx23 for 12 x86_64-linux derivations: this hour's budget of 0.02 EUR would be exceeded",
  ],
  currency: "EUR",
  spent: { hour: 0.01, day: 0.01, month: 0.01 },
  budget: { hour: 0.02 },
  workers: [
    {
      name: "hz-0123456789",
      serverType: "cx23",
      status: "ready",
      startedAt: "2026-12-07T09:58:00.000Z",
      running: 2,
      paidUntil: "2026-12-07T10:58:00.000Z",
    },
  ],
  decisions: [
    {
      at: "2026-12-07T09:58:00.000Z",
      action: "rent",
      worker: "hz-0123456789",
      serverType: "cx23",
      reason: "rented cx23: …",
    },
  ],
  ...over,
});

class Autoscaling extends FixtureSource implements CoordinatorApi {
  submit(): string {
    throw new Error("not used");
  }
  cancel(): Promise<void> {
    return Promise.resolve();
  }
  gatewayUids(): ReadonlySet<number> {
    return new Set([0]);
  }
  waitFor(): never {
    throw new Error("not used");
  }
  drain(): Promise<void> {
    return Promise.resolve();
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

test("the dashboard's autoscale section: the summary, why nothing is rented, the budget, the workers, the decisions; text escaped", () => {
  const html = renderAutoscaleSection(view()).markup;
  assert.match(html, /id="autoscale-section"/);
  assert.match(html, /0–3 workers/);
  assert.match(
    html,
    /<li class="blocked">not renting cx23 for 12 x86_64-linux derivations: this hour&apos;s budget of 0\.02 EUR would be exceeded<\/li>/,
  );
  assert.match(html, /<span data-budget="hour">hour: 0\.01 of 0\.02 EUR<\/span>/);
  assert.match(
    html,
    /<td class="name">hz-0123456789<\/td><td>cx23<\/td><td>ready<\/td><td>2<\/td><td>10:58:00<\/td>/,
  );
  assert.match(html, /<li data-action="rent"><time>09:58:00<\/time> rented cx23: …<\/li>/);
  assert.doesNotMatch(html, /data-field="autoscale-snapshots"/, "no line before the snapshots are read");
  const withSnapshots = renderAutoscaleSection(
    view({ snapshots: { count: 2, gb: 1.25, monthly: 0.02 } }),
  ).markup;
  assert.match(
    withSnapshots,
    /data-field="autoscale-snapshots">snapshots: 2 \(1\.3 GB, 0\.02 EUR\/month\)<\/p>/,
  );
  const hostile = renderAutoscaleSection(view({ summary: HOSTILE, blocked: [HOSTILE] })).markup;
  assert.ok(!hostile.includes("<script>"), hostile);
  assert.equal(renderAutoscaleSection(undefined).markup, "");
});

test("GET /api/autoscale: the view, or 404 when the coordinator does not autoscale", async () => {
  const c = new Autoscaling();
  const { app } = createApiApp({
    coordinator: c,
    auth: { token: undefined, cookieName: "nixpool-0" },
    log: () => undefined,
  });
  const none = await app.request("/api/autoscale", {}, { transport: "tcp" });
  assert.equal(none.status, 404);
  assert.equal(((await none.json()) as { code: string }).code, "API_NOT_FOUND");
  c.autoscaleView = view();
  const res = await app.request("/api/autoscale", {}, { transport: "tcp" });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), view());
});
