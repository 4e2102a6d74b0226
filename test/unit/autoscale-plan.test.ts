import { test } from "node:test";
import assert from "node:assert/strict";
import { AUTOSCALE_DEFAULTS, type AutoscaleConfig } from "../../src/core/autoscale/config.js";
import {
  paidLeft,
  planAutoscale,
  type AutoscaleInput,
  type ScaledWorker,
  type WaitingDerivation,
} from "../../src/core/autoscale/plan.js";
import { spending, spentIn, windowStart } from "../../src/core/autoscale/spending.js";
import { billedHours, type PriceTable, type TypeOffer } from "../../src/core/cost.js";

// Every decision from plain values and an injected clock (docs/autoscale.md).

const MIN = 60_000;
const HOUR = 3_600_000;
/** 2026-12-07 10:00:00 UTC: the clock every test starts from. */
const T0 = Date.UTC(2026, 11, 7, 10, 0, 0);

const config = (over: Partial<AutoscaleConfig> = {}): AutoscaleConfig => ({
  ...AUTOSCALE_DEFAULTS,
  maxWorkers: 3,
  derivationsPerWorker: 10,
  budget: {},
  ...over,
});

const offer = (name: string, cores: number, memory: number, architecture = "x86"): TypeOffer => ({
  name,
  cores,
  memory,
  architecture,
  deprecated: false,
  locations: [{ name: "fsn1", available: true }],
});
const OFFERS = [offer("cx23", 2, 4), offer("cx33", 4, 8), offer("cax11", 2, 4, "arm"), offer("cx53", 16, 32)];
const rate = (gross: number) => ({
  hourly: { net: gross, gross },
  monthly: { net: gross * 700, gross: gross * 700 },
});
const PRICES: PriceTable = {
  source: "api",
  date: "2026-12-07",
  currency: "EUR",
  vatPercent: 19,
  serverTypes: {
    cx23: { fsn1: rate(0.01) },
    cx33: { fsn1: rate(0.02) },
    cax11: { fsn1: rate(0.009) },
    cx53: { fsn1: rate(0.1) },
  },
  primaryIpv4: { fsn1: rate(0.001) },
};

const waiting = (n: number, sinceMs: number, system = "x86_64-linux", features: string[] = []) =>
  Array.from({ length: n }, (_, i): WaitingDerivation => ({
    drv: `/nix/store/${system}-${i}.drv`,
    system,
    features,
    sinceMs,
  }));

const worker = (name: string, over: Partial<ScaledWorker> = {}): ScaledWorker => ({
  name,
  type: "cx23",
  system: "x86_64-linux",
  status: "ready",
  startMs: T0,
  running: 0,
  ...over,
});

const input = (over: Partial<AutoscaleInput> = {}): AutoscaleInput => ({
  nowMs: T0 + 40_000,
  config: config(),
  waiting: [],
  workers: [],
  catalog: { offers: OFFERS, prices: PRICES },
  billed: [],
  ...over,
});

const kinds = (p: ReturnType<typeof planAutoscale>) => p.actions.map((a) => a.kind);

test("60 derivations waiting longer than scaleUpAfter: one worker per derivationsPerWorker, up to maxWorkers, the cheapest fitting type", () => {
  const p = planAutoscale(input({ waiting: waiting(60, T0) }));
  assert.deepEqual(kinds(p), ["rent", "rent", "rent", "blocked"]);
  const rent = p.actions[0];
  assert.equal(rent?.kind === "rent" && rent.type, "cx23");
  assert.equal(rent?.kind === "rent" && rent.hourly, 0.011, "server and IPv4, gross");
  assert.equal(
    rent?.reason,
    "rented cx23: 60 x86_64-linux derivations waited > 30s; today 0.01 EUR (no budget)",
  );
  const blocked = p.actions[3];
  assert.equal(blocked?.kind === "blocked" && blocked.cause, "max-workers");
  assert.match(blocked?.reason ?? "", /maxWorkers 3 reached; builds wait for the existing builders/);
});

test("work that waited less than scaleUpAfter rents nothing; waiting work below derivationsPerWorker rents one", () => {
  assert.deepEqual(planAutoscale(input({ waiting: waiting(60, T0 + 20_000) })).actions, []);
  assert.deepEqual(kinds(planAutoscale(input({ waiting: waiting(3, T0) }))), ["rent"]);
});

test("booting workers count as on their way; ready busy workers do not", () => {
  const booting = [worker("hz-a", { status: "booting" })];
  assert.deepEqual(kinds(planAutoscale(input({ waiting: waiting(15, T0), workers: booting }))), ["rent"]);
  assert.deepEqual(kinds(planAutoscale(input({ waiting: waiting(10, T0), workers: booting }))), []);
  const busy = [worker("hz-a", { running: 2 })];
  assert.deepEqual(kinds(planAutoscale(input({ waiting: waiting(10, T0), workers: busy }))), ["rent"]);
});

test("aarch64 work rents a cax type; a system or feature no worker offers is said, not rented", () => {
  const p = planAutoscale(input({ waiting: waiting(2, T0, "aarch64-linux") }));
  assert.equal(p.actions[0]?.kind === "rent" && p.actions[0].type, "cax11");
  assert.equal(p.actions[0]?.kind === "rent" && p.actions[0].system, "aarch64-linux");
  const mac = planAutoscale(input({ waiting: waiting(2, T0, "x86_64-darwin") }));
  assert.equal(mac.actions[0]?.kind === "blocked" && mac.actions[0].cause, "unbuildable");
  assert.match(mac.actions[0]?.reason ?? "", /no Hetzner server type builds x86_64-darwin/);
  const kvm = planAutoscale(input({ waiting: waiting(2, T0, "x86_64-linux", ["kvm"]) }));
  assert.match(kvm.actions[0]?.reason ?? "", /workers do not offer kvm/);
  // big-parallel is offered by every worker.
  assert.deepEqual(
    kinds(planAutoscale(input({ waiting: waiting(2, T0, "x86_64-linux", ["big-parallel"]) }))),
    ["rent"],
  );
});

test("a list of server types: the cheapest listed type of the architecture; auto honours minCores and minMemory", () => {
  const listed = planAutoscale(
    input({ config: config({ serverTypes: ["cx53", "cx33"] }), waiting: waiting(1, T0) }),
  );
  assert.equal(listed.actions[0]?.kind === "rent" && listed.actions[0].type, "cx33");
  const big = planAutoscale(input({ config: config({ minCores: 8 }), waiting: waiting(1, T0) }));
  assert.equal(big.actions[0]?.kind === "rent" && big.actions[0].type, "cx53");
  const none = planAutoscale(
    input({ config: config({ serverTypes: ["cx53"] }), waiting: waiting(1, T0, "aarch64-linux") }),
  );
  assert.equal(none.actions[0]?.kind === "blocked" && none.actions[0].cause, "no-type");
});

test("prices that could not be read rent nothing, and the plan says why", () => {
  const p = planAutoscale(input({ waiting: waiting(5, T0), catalog: { error: "GET /pricing → 503" } }));
  assert.equal(p.actions[0]?.kind === "blocked" && p.actions[0].cause, "prices-unknown");
  assert.match(p.actions[0]?.reason ?? "", /GET \/pricing → 503/);
});

test("budget: a rental that would break a cap is refused with the cap in the reason; earlier rentals of the same plan count", () => {
  // 0.40 already spent today by a worker deleted earlier; the day's cap is 0.42.
  const billed = [{ name: "hz-old", startMs: T0 - 3 * HOUR, endMs: T0 - 3 * HOUR + 30 * MIN, hourly: 0.4 }];
  const p = planAutoscale(
    input({ config: config({ budget: { day: 0.42 } }), waiting: waiting(30, T0), billed }),
  );
  assert.deepEqual(kinds(p), ["rent", "blocked"]);
  assert.equal(
    p.actions[0]?.reason,
    "rented cx23: 30 x86_64-linux derivations waited > 30s; today 0.41 of 0.42 EUR",
  );
  const b = p.actions[1];
  assert.equal(b?.kind === "blocked" && b.cause, "budget");
  assert.equal(b?.kind === "blocked" && b.window, "day");
  assert.equal(
    b?.reason,
    "not renting cx23 for 30 x86_64-linux derivations: today's budget of 0.42 EUR would be exceeded (0.41 spent + 0.0110 for its first hour); builds wait for the existing builders",
  );
  // The same worker yesterday does not count today; it does count this month.
  const yesterday = [{ ...billed[0]!, startMs: T0 - 24 * HOUR, endMs: T0 - 23 * HOUR }];
  assert.deepEqual(
    kinds(
      planAutoscale(
        input({ config: config({ budget: { day: 0.42 } }), waiting: waiting(30, T0), billed: yesterday }),
      ),
    ),
    ["rent", "rent", "rent"],
  );
  const month = planAutoscale(
    input({ config: config({ budget: { month: 0.41 } }), waiting: waiting(30, T0), billed: yesterday }),
  );
  assert.equal(month.actions[0]?.kind === "blocked" && month.actions[0].window, "month");
});

test("spending: each started hour counts its full price in the window where it began", () => {
  const now = T0 + 2 * HOUR + 10 * MIN; // 12:10
  // Created 10:30: its hours began 10:30, 11:30 (and 12:30 is still ahead).
  const w = [{ name: "a", startMs: T0 + 30 * MIN, endMs: null, hourly: 0.5 }];
  assert.equal(spentIn(w, "hour", now), 0);
  assert.equal(spentIn(w, "day", now), 1);
  assert.equal(spentIn(w, "day", T0 + 2 * HOUR + 31 * MIN), 1.5);
  assert.equal(spentIn(w, "hour", T0 + 2 * HOUR + 31 * MIN), 0.5);
  // Deleted after 61 minutes: two started hours.
  const gone = [{ name: "b", startMs: T0, endMs: T0 + 61 * MIN, hourly: 1 }];
  assert.deepEqual(spending(gone, now), { hour: 0, day: 2, month: 2 });
  assert.equal(windowStart("month", now), Date.UTC(2026, 11, 1));
  assert.equal(windowStart("day", now), Date.UTC(2026, 11, 7));
});

test("an idle worker is deleted only when its paid hour is nearly over, never sooner than minLifetime, never while it builds", () => {
  const w = worker("hz-a");
  const at = (ms: number, over: Partial<ScaledWorker> = {}) =>
    planAutoscale(input({ nowMs: T0 + ms, workers: [{ ...w, ...over }] }));
  assert.deepEqual(at(20 * MIN).actions, [], "40 min of its paid hour left");
  const d = at(56 * MIN).actions;
  assert.deepEqual(kinds({ ...at(56 * MIN), actions: d }), ["delete"]);
  assert.equal(d[0]?.reason, "deleted hz-a (cx23): idle, 4 min left of its paid hour 1; lived 56 min");
  assert.deepEqual(at(56 * MIN, { running: 1 }).actions, [], "it builds");
  assert.deepEqual(at(56 * MIN, { status: "booting" }).actions, [], "it boots");
  // minLifetime 70 min: not at the first hour's end, at the second's.
  const long = (ms: number) =>
    planAutoscale(input({ nowMs: T0 + ms, config: config({ minLifetimeMs: 70 * MIN }), workers: [w] }));
  assert.deepEqual(long(56 * MIN).actions, []);
  assert.deepEqual(long(80 * MIN).actions, []);
  assert.match(long(116 * MIN).actions[0]?.reason ?? "", /4 min left of its paid hour 2; lived 1 h 56 min/);
  assert.equal(paidLeft(w, T0 + 61 * MIN), 59 * MIN);
});

test("suspendIdle: the same release rule suspends instead of deleting, with its reason; a busy worker is kept", () => {
  const w = worker("hz-a");
  const at = (ms: number, over: Partial<ScaledWorker> = {}) =>
    planAutoscale(
      input({ nowMs: T0 + ms, config: config({ suspendIdle: true }), workers: [{ ...w, ...over }] }),
    );
  assert.deepEqual(at(20 * MIN).actions, [], "40 min of its paid hour left");
  assert.deepEqual(at(56 * MIN).actions, [
    {
      kind: "suspend",
      worker: "hz-a",
      reason:
        "suspending hz-a (cx23) into a snapshot, then deleting it: idle, 4 min left of its paid hour 1; lived 56 min",
    },
  ]);
  assert.deepEqual(at(56 * MIN, { running: 1 }).actions, [], "it builds");
  assert.deepEqual(at(56 * MIN, { status: "booting" }).actions, [], "it boots");
  const kept = planAutoscale(
    input({
      nowMs: T0 + 56 * MIN,
      config: config({ suspendIdle: true, minWorkers: 1 }),
      workers: [w],
    }),
  );
  assert.deepEqual(kept.actions, [], "minWorkers keeps it");
});

test("a worker whose work vanished is kept while work it can take waits, then deleted by the same rule", () => {
  const w = worker("hz-a");
  const fresh = waiting(1, T0 + 55 * MIN);
  assert.deepEqual(planAutoscale(input({ nowMs: T0 + 56 * MIN, workers: [w], waiting: fresh })).actions, []);
  const arm = waiting(1, T0 + 55 * MIN, "aarch64-linux");
  // aarch64 work: a cax worker is rented for it, and the idle x86 one goes.
  assert.deepEqual(kinds(planAutoscale(input({ nowMs: T0 + 56 * MIN, workers: [w], waiting: arm }))), [
    "rent",
    "delete",
  ]);
});

test("minWorkers: rented when short, and kept (the longest-paid ones go first)", () => {
  assert.deepEqual(kinds(planAutoscale(input({ config: config({ minWorkers: 2 }) }))), ["rent", "rent"]);
  const arm = planAutoscale(input({ config: config({ minWorkers: 1, serverTypes: ["cax11"] }) })).actions[0];
  assert.equal(arm?.kind === "rent" && arm.type, "cax11", "the first listed type's architecture");
  assert.match(
    planAutoscale(input({ config: config({ minWorkers: 1 }) })).actions[0]?.reason ?? "",
    /minWorkers is 1, 0 running/,
  );
  const a = worker("hz-a", { startMs: T0 });
  const b = worker("hz-b", { startMs: T0 + 2 * MIN });
  const p = planAutoscale(
    input({ nowMs: T0 + 57 * MIN, config: config({ minWorkers: 1 }), workers: [a, b] }),
  );
  assert.deepEqual(
    p.actions.map((x) => x.kind === "delete" && x.worker),
    ["hz-a"],
  );
});

test("the summary names the queue, the workers and the budget", () => {
  const p = planAutoscale(
    input({
      config: config({ budget: { hour: 1, day: 5 } }),
      waiting: [...waiting(2, T0), ...waiting(1, T0 + 30_000, "aarch64-linux")],
      workers: [worker("hz-a", { status: "booting" })],
    }),
  );
  assert.equal(
    p.summary,
    "3 derivations waiting (2 > 30s), 1 of 3 workers (1 booting); this hour 0.00 of 1.00 EUR, today 0.00 of 5.00 EUR",
  );
});

/**
 * Ticks every config.intervalMs from `firstTickMs` for `hours`, with one idle worker started at
 * `startMs`; returns when it was deleted (undefined: never).
 */
function deletedAt(
  c: AutoscaleConfig,
  startMs: number,
  firstTickMs: number,
  hours: number,
): number | undefined {
  const w = worker("hz-a", { startMs });
  for (let now = firstTickMs; now < firstTickMs + hours * HOUR; now += c.intervalMs) {
    if (now < startMs) continue;
    const p = planAutoscale(input({ nowMs: now, config: c, workers: [w] }));
    if (p.actions.some((a) => a.kind === "delete")) return now;
  }
  return undefined;
}

test("an idle worker is deleted before its next billed hour whatever the interval, the margin and its place on the tick grid", () => {
  for (const intervalMs of [200, 15_000, 10 * MIN, 17 * MIN, 45 * MIN]) {
    for (const releaseMarginMs of [0, 30_000, 5 * MIN]) {
      for (const offset of [0, 1234, 3 * MIN, 7 * MIN + 1]) {
        for (const minLifetimeMs of [10 * MIN, 55 * MIN, 70 * MIN]) {
          const c = config({ intervalMs, releaseMarginMs, minLifetimeMs });
          const start = T0 + offset;
          const at = deletedAt(c, start, T0, 4);
          const what = `interval ${intervalMs}, margin ${releaseMarginMs}, offset ${offset}, minLifetime ${minLifetimeMs}`;
          assert.ok(at !== undefined, `never deleted in 4 h: ${what}`);
          assert.ok(at - start >= minLifetimeMs, `sooner than minLifetime: ${what}`);
          const left = paidLeft({ startMs: start }, at);
          // At the latest in the billed hour after the one minLifetime ends in.
          const lifetimeHour = Math.ceil(minLifetimeMs / HOUR);
          assert.ok(billedHours(start, at) <= lifetimeHour + 1, `billed too long: ${what}`);
          // Unless minLifetime ends inside the hour's last margin + interval: at the first tick
          // of that stretch, with more than the margin left.
          const rest = minLifetimeMs % HOUR;
          if (
            releaseMarginMs + intervalMs < HOUR &&
            (rest === 0 || rest <= HOUR - releaseMarginMs - intervalMs)
          ) {
            assert.ok(left > releaseMarginMs, `deleted too late in its hour: ${what}`);
            assert.ok(left <= releaseMarginMs + intervalMs, `deleted too early: ${what}`);
          }
        }
      }
    }
  }
  // The reviewer's case: interval 10 min, margin 5 min, started 3 min off the grid: deleted in its first hour.
  const c = config({ intervalMs: 10 * MIN, releaseMarginMs: 5 * MIN });
  assert.equal(
    deletedAt(c, T0 + 3 * MIN, T0, 3),
    T0 + 50 * MIN,
    "10 min of its hour left, the next tick would leave 0",
  );
  assert.equal(deletedAt(config({ releaseMarginMs: 0 }), T0, T0, 3), T0 + 60 * MIN - 15_000);
});

test("budget: a rental commits ceil(minLifetime / 1 h) hours (today and this month), running workers' committed hours count", () => {
  // minLifetime 2h30m: 3 hours of 0.011 = 0.033 committed; today's cap 0.04 takes one such rental.
  const c = config({ minLifetimeMs: 150 * MIN, budget: { day: 0.04 } });
  const p = planAutoscale(input({ config: c, waiting: waiting(30, T0) }));
  assert.deepEqual(kinds(p), ["rent", "blocked"]);
  assert.match(p.actions[0]?.reason ?? "", /today 0\.03 of 0\.04 EUR$/);
  assert.equal(
    p.actions[1]?.reason,
    "not renting cx23 for 30 x86_64-linux derivations: today's budget of 0.04 EUR would be exceeded (0.03 spent + 0.0330 for its first 3 hours (minLifetime 150m)); builds wait for the existing builders",
  );
  // The hour's cap counts only the first hour (the others begin in later hours).
  const hourCap = config({ minLifetimeMs: 150 * MIN, budget: { hour: 0.02 } });
  assert.deepEqual(kinds(planAutoscale(input({ config: hourCap, waiting: waiting(10, T0) }))), ["rent"]);
  // A worker rented 20 min ago has spent 1 hour and is committed to 2 more: a second one does not fit.
  const billed = [{ name: "hz-a", startMs: T0 + 20_000 - 20 * MIN, endMs: null, hourly: 0.011 }];
  const later = planAutoscale(
    input({ config: c, waiting: waiting(10, T0), billed, workers: [worker("hz-a", { running: 2 })] }),
  );
  assert.equal(later.actions[0]?.kind === "blocked" && later.actions[0].cause, "budget");
  assert.match(later.actions[0]?.reason ?? "", /\(0\.03 spent or committed \+ 0\.0330 for its first 3 hours/);
  // With a minLifetime under an hour, one hour as before.
  const short = planAutoscale(input({ config: config({ budget: { day: 0.02 } }), waiting: waiting(30, T0) }));
  assert.deepEqual(kinds(short), ["rent", "blocked"]);
});

test("a worker being deleted (its deletion failed, retried) counts towards maxWorkers and the budget, serves no minWorkers, is not deleted twice", () => {
  const gone = worker("hz-a", { status: "deleting" });
  const p = planAutoscale(
    input({
      nowMs: T0 + 56 * MIN,
      waiting: waiting(5, T0),
      workers: [gone],
      config: config({ maxWorkers: 1 }),
    }),
  );
  assert.deepEqual(kinds(p), ["blocked"]);
  assert.equal(p.actions[0]?.kind === "blocked" && p.actions[0].cause, "max-workers");
  assert.match(p.summary, /1 of 1 workers \(1 being deleted\)/);
  // Not on its way for waiting work, and no second deletion.
  assert.deepEqual(
    kinds(planAutoscale(input({ nowMs: T0 + 56 * MIN, waiting: waiting(5, T0), workers: [gone] }))),
    ["rent"],
  );
  const min = planAutoscale(
    input({ nowMs: T0 + 56 * MIN, workers: [gone], config: config({ minWorkers: 1 }) }),
  );
  assert.deepEqual(kinds(min), ["rent"]);
  assert.match(min.actions[0]?.reason ?? "", /minWorkers is 1, 0 running/);
});

test("snapshots: a rental wakes from the newest on the cheapest type whose disk holds it, if allowed and affordable; else fresh, and the reason says why", () => {
  const disks: Record<string, number> = { cx23: 40, cx33: 80, cax11: 40, cx53: 240 };
  const offers = OFFERS.map((o) => ({ ...o, disk: disks[o.name] ?? 0 }));
  const catalog = { offers, prices: PRICES };
  const big = { id: 7, architecture: "x86" as const, diskSize: 80 };
  const small = { id: 5, architecture: "x86" as const, diskSize: 40 };
  const rent = (over: Partial<AutoscaleInput>) =>
    planAutoscale(input({ catalog, waiting: waiting(1, T0), ...over })).actions[0];

  // It fits the cheapest type: woken on it.
  const same = rent({ snapshots: [small] });
  assert.equal(same?.kind === "rent" && same.type, "cx23");
  assert.equal(same?.kind === "rent" && same.snapshot, 5);
  assert.match(same?.reason ?? "", /; woken from snapshot 5$/);
  // An 80 GB snapshot: cx33 rather than cx23 (auto, no budget in the way).
  const bigger = rent({ snapshots: [big] });
  assert.equal(bigger?.kind === "rent" && bigger.type, "cx33");
  assert.equal(bigger?.kind === "rent" && bigger.snapshot, 7);
  assert.match(
    bigger?.reason ?? "",
    /; woken from snapshot 7 \(snapshot 7 needs a 80 GB disk: cx33, not cx23\)$/,
  );
  // The settings allow only cx23: fresh, and said.
  const listed = rent({ snapshots: [big], config: config({ serverTypes: ["cx23"] }) });
  assert.equal(listed?.kind === "rent" && listed.type, "cx23");
  assert.equal(listed?.kind === "rent" && listed.snapshot, undefined);
  assert.match(
    listed?.reason ?? "",
    /; fresh, not woken: snapshot 7 needs a 80 GB disk, which no allowed type in fsn1 has$/,
  );
  // cx33's first hour breaks this hour's cap but cx23's does not: fresh cx23, and said.
  const capped = rent({ snapshots: [big], config: config({ budget: { hour: 0.015 } }) });
  assert.equal(capped?.kind === "rent" && capped.type, "cx23");
  assert.equal(capped?.kind === "rent" && capped.snapshot, undefined);
  assert.match(
    capped?.reason ?? "",
    /; fresh, not woken: snapshot 7 needs a 80 GB disk \(cx33\), over this hour's budget$/,
  );
  // fromSnapshot "none", or a snapshot of the other architecture: fresh, nothing said.
  const none = rent({ snapshots: [big], config: config({ fromSnapshot: "none" }) });
  assert.equal(none?.kind === "rent" && none.snapshot, undefined);
  assert.doesNotMatch(none?.reason ?? "", /snapshot/);
  const arm = rent({ snapshots: [{ ...big, architecture: "arm" }] });
  assert.equal(arm?.kind === "rent" && arm.type, "cx23");
  assert.doesNotMatch(arm?.reason ?? "", /snapshot/);
});
