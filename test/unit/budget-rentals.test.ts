import { test } from "node:test";
import assert from "node:assert/strict";
import { waitFor } from "../../src/adapters/wait-for.js";
import { BudgetRentals, type RentalHistory } from "../../src/serve/autoscale/budget-rentals.js";
import type { AutoscaleWorkerRow } from "../../src/serve/history-autoscale.js";

/** The history's table `autoscale_workers`, as several coordinators on one database see it. */
class Table implements RentalHistory {
  readonly rows = new Map<string, AutoscaleWorkerRow>();
  saveAutoscaleWorker(w: AutoscaleWorkerRow): void {
    this.rows.set(w.rental, { ...w });
  }
  autoscaleWorkers(sinceMs: number): Promise<AutoscaleWorkerRow[]> {
    return Promise.resolve(
      [...this.rows.values()]
        .filter((w) => w.endedMs === null || w.endedMs >= sinceMs)
        .map((w) => ({ ...w })),
    );
  }
  closeAutoscaleWorkers(atMs: number, rentals?: readonly string[]): Promise<number> {
    let n = 0;
    for (const w of this.rows.values())
      if (w.endedMs === null && (rentals === undefined || rentals.includes(w.rental))) {
        w.endedMs = atMs;
        n++;
      }
    return Promise.resolve(n);
  }
}

const HOUR = 3_600_000;
const now = Date.UTC(2026, 11, 7, 22, 0, 0);
const row = (rental: string, worker: string | null, startedMs: number): AutoscaleWorkerRow => ({
  rental,
  worker,
  serverType: "cx33",
  startedMs,
  endedMs: null,
  hourly: 1,
});

test("at start, only rentals nobody holds are ended: a live coordinator's worker keeps counting in the budget", async () => {
  const t = new Table();
  t.saveAutoscaleWorker(row("r-live", "hz-live", now - HOUR / 2)); // another coordinator's, record held
  t.saveAutoscaleWorker(row("r-dead", "hz-dead", now - HOUR / 2)); // reaped: no record any more
  t.saveAutoscaleWorker(row("r-old", null, now - HOUR)); // a rental that never named its worker, long ago
  t.saveAutoscaleWorker(row("r-new", null, now - 5_000)); // one being rented right now elsewhere
  const budget = new BudgetRentals(t, () => undefined);
  const ended = await budget.start(now, {
    held: new Set(["hz-live"]),
    mine: new Set(),
    bootTimeoutMs: 10 * 60_000,
  });
  assert.equal(ended, 2);
  assert.equal(t.rows.get("r-live")?.endedMs, null);
  assert.equal(t.rows.get("r-new")?.endedMs, null);
  assert.equal(t.rows.get("r-dead")?.endedMs, now);
  assert.equal(t.rows.get("r-old")?.endedMs, now);
  assert.deepEqual(
    budget
      .billed(now)
      .filter((w) => w.endMs === null)
      .map((w) => w.name)
      .sort(),
    ["hz-live", "r-new"],
  );

  // Without the state directory's records (no `held`), every open rental is ended, as before.
  const alone = new Table();
  alone.saveAutoscaleWorker(row("r-1", "hz-1", now - HOUR / 2));
  assert.equal(
    await new BudgetRentals(alone, () => undefined).start(now, {
      held: undefined,
      mine: new Set(),
      bootTimeoutMs: 1,
    }),
    1,
  );
});

test("a refresh brings in what other coordinators rented since, never reopening this one's ended rentals", async () => {
  const t = new Table();
  const budget = new BudgetRentals(t, () => undefined);
  await budget.start(now, { held: new Set(), mine: new Set(), bootTimeoutMs: 60_000 });
  budget.save(row("r-mine", "hz-mine", now - HOUR / 4));
  // This process ends its rental; the database has not seen the end yet (the write is queued).
  const ended = { ...row("r-mine", "hz-mine", now - HOUR / 4), endedMs: now };
  budget.save(ended);
  t.rows.set("r-mine", row("r-mine", "hz-mine", now - HOUR / 4));
  // Meanwhile another coordinator rented a worker.
  t.saveAutoscaleWorker(row("r-other", "hz-other", now - 60_000));
  assert.deepEqual(
    budget.billed(now).map((w) => w.name),
    ["hz-mine"],
  );
  budget.refresh(now, new Set());
  const names = await waitFor(
    () => {
      const b = budget.billed(now);
      return b.some((w) => w.name === "hz-other") ? b : undefined;
    },
    { timeoutMs: 5_000, intervalMs: 5 },
  );
  assert.ok(names);
  assert.deepEqual(
    names.map((w) => [w.name, w.endMs]),
    [
      ["hz-mine", now],
      ["hz-other", null],
    ],
  );
});

test("a refresh that fails is said once, and planning goes on with the rentals known", async () => {
  const t = new Table();
  const logged: string[] = [];
  const budget = new BudgetRentals(t, (l) => logged.push(l));
  await budget.start(now, { held: new Set(), mine: new Set(), bootTimeoutMs: 60_000 });
  budget.save(row("r-1", "hz-1", now - 60_000));
  t.autoscaleWorkers = () => Promise.reject(new Error("the database is away"));
  for (let i = 0; i < 3; i++) {
    budget.refresh(now, new Set());
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(logged.length, 1);
  assert.match(logged[0] ?? "", /the database is away/);
  assert.deepEqual(
    budget.billed(now).map((w) => w.name),
    ["hz-1"],
  );
});
