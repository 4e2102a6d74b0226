import { randomBytes } from "node:crypto";
import type { Builder } from "../../core/builder.js";
import type { BuildNeeds } from "../../core/dispatch/capability.js";
import { architectureFor, WORKER_FEATURES, type AutoscaleConfig } from "../../core/autoscale/config.js";
import {
  paidLeft,
  pickType,
  planAutoscale,
  type AutoscaleAction,
  type AutoscaleInput,
  type AutoscalePlan,
  type ScaledWorker,
  type WakeSnapshot,
} from "../../core/autoscale/plan.js";
import type { PriceTable, TypeOffer } from "../../core/cost.js";
import type { AutoscaleProvider } from "../../providers/hetzner/autoscale-provider.js";
import { RentalLeftBehind } from "../../core/autoscale/rental-left-behind.js";
import type { AutoscaleDecisionView, AutoscaleView } from "../coordinator-types.js";
import { isoAt } from "../coordinator-views.js";
import type { AutoscaleDecisionRow, AutoscaleWorkerRow } from "../history-autoscale.js";
import { BudgetRentals, type RentalHistory } from "./budget-rentals.js";
import { acquireAutoscaleLeadership, type AutoscaleLeadership } from "./leadership.js";

/** What the autoscaler sees of the coordinator and does to its pool. */
export interface AutoscalePool {
  /** Derivations ready to build that no slot has taken, over every running build. */
  waiting(): { drv: string; system: string; features: readonly string[] }[];
  /** How busy a builder is: 0 when idle (nothing building, no running build that used it). */
  running(builder: string): number;
  /** A rented worker answers: it joins the pool. */
  join(b: Builder): Promise<void>;
  /** Takes an idle worker out of the pool; false (nothing changes) while it builds. */
  leave(builder: string, reason: string): boolean;
  /**
   * Several coordinators: the workers others rented join this pool, and those deleted leave it
   * (`own`: this autoscaler's rentals, left alone). Called every tick, leader or not.
   */
  sync?(own: ReadonlySet<string>): Promise<void>;
}

/** Where the autoscaler records its decisions and rentals (the coordinator's history). */
export interface AutoscaleHistory extends RentalHistory {
  /** Queued in order (the history's write queue); not awaited. */
  recordAutoscaleDecision(d: AutoscaleDecisionRow): void;
  autoscaleDecisions(limit?: number): Promise<AutoscaleDecisionRow[]>;
}

/** How many recent decisions the autoscaler keeps in memory for its view. */
const RECENT_DECISIONS = 50;

export interface AutoscalerOptions {
  config: AutoscaleConfig;
  provider: AutoscaleProvider;
  pool: AutoscalePool;
  history: AutoscaleHistory;
  /** The clock of every decision (tests inject one). */
  clock: () => number;
  log: (line: string) => void;
  leadership?: AutoscaleLeadership;
  /** How long the server types and prices are kept before they are read again (default 5 min). */
  catalogTtlMs?: number;
}

interface Rental {
  rental: string;
  name: string;
  type: string;
  system: string;
  status: "booting" | "ready" | "suspending" | "deleting";
  startMs: number;
  hourly: number;
  builder?: Builder;
  /** The snapshot it wakes from: the plan's choice, or "latest" (the provider's) when unknown. */
  wake?: number | "latest";
  /** A deletion is under way (never two at once). */
  releasing?: boolean;
  /** Deletions that failed so far: retried at later ticks until the API says it is gone. */
  releaseFailures?: number;
  /** The next retry's earliest time (backing off from intervalMs to a minute). */
  retryAtMs?: number;
}

const CATALOG_TTL_MS = 5 * 60_000;

/**
 * The autoscaler at run time: every `intervalMs` it reads the coordinator's queue and its own
 * workers, asks the pure plan (core/autoscale/plan.ts) what to do, records every decision with
 * its reason in the history, and carries the plan out through the provider: rentals run in the
 * background and join the pool once the worker answers; idle workers leave the pool, then are
 * deleted. Only the leader rents (leadership.ts); it plans from the whole pool's waiting work
 * (`pool.waiting`). A coordinator that does not lead still deletes its own idle rentals by the same
 * rule (minWorkers is the leader's to keep), and on taking the lead it reaps what a dead leader left.
 */
export class Autoscaler {
  private readonly rentals = new Map<string, Rental>();
  private readonly since = new Map<string, number>();
  private readonly inFlight = new Set<Promise<void>>();
  private readonly abort = new AbortController();
  private readonly leadership: AutoscaleLeadership;
  private catalog: { at: number; value: AutoscaleInput["catalog"] } | undefined;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<AutoscalePlan | undefined> | undefined;
  private lastPlan: AutoscalePlan | undefined;
  private lastTickMs: number | undefined;
  private leader = false;
  /** Ticks so far (the first lead is taken right after start()'s reap). */
  private ticks = 0;
  private blockedBefore = new Set<string>();
  private closed = false;
  /** The rentals the budget counts (budget-rentals.ts). */
  private readonly budget: BudgetRentals;
  /** This pool's snapshots and their storage cost (read with the catalogue). */
  private snapshotStore: AutoscaleView["snapshots"];
  /** The newest snapshot per architecture a rental may wake from (read with the catalogue). */
  private wakeSnapshots: WakeSnapshot[] | undefined;
  private recent: AutoscaleDecisionRow[] = [];

  constructor(private readonly o: AutoscalerOptions) {
    this.leadership = o.leadership ?? acquireAutoscaleLeadership();
    this.budget = new BudgetRentals(o.history, o.log);
  }

  /**
   * Reaps what a crashed coordinator left (its rentals are ended in the budget at this time), then
   * ticks every intervalMs. Fails when the provider cannot be reached at all (no token).
   */
  async start(): Promise<void> {
    const startMs = this.o.clock();
    await this.o.provider.reap();
    const ended = await this.endLeftRentals(startMs);
    this.recent = await this.o.history.autoscaleDecisions(RECENT_DECISIONS);
    if (ended > 0)
      this.o.log(`autoscale: ${ended} rental(s) of an earlier run ended; worker gc deletes what is left`);
    this.timer = setInterval(() => void this.tick(), this.o.config.intervalMs);
    this.timer.unref();
    void this.tick();
  }

  /** Ends, in the budget, the open rentals nobody holds any more (budget-rentals.ts). */
  private async endLeftRentals(now: number): Promise<number> {
    return this.budget.start(now, {
      held: await this.o.provider.held?.(),
      mine: new Set(this.rentals.keys()),
      bootTimeoutMs: this.o.config.bootTimeoutMs,
    });
  }

  /**
   * Whether waiting work of these needs could get a worker (a build then waits rather than fails):
   * a system and features workers offer, and (once the catalogue is known) an allowed type for it.
   */
  mayServe(needs: BuildNeeds): boolean {
    if (this.closed) return false;
    const system = needs.system === "builtin" ? "x86_64-linux" : needs.system;
    const architecture = architectureFor(system);
    if (!architecture || !needs.features.every((f) => WORKER_FEATURES.includes(f))) return false;
    const known = this.catalog?.value;
    return (
      !known ||
      "error" in known ||
      pickType(this.o.config, known.offers, known.prices, architecture) !== undefined
    );
  }

  /** One look at the queue: plan, record, act. Ticks never overlap (a slow one is waited for). */
  tick(): Promise<AutoscalePlan | undefined> {
    this.ticking ??= this.runTick().finally(() => {
      this.ticking = undefined;
      this.retryReleases();
    });
    return this.ticking;
  }

  /** After every tick, leading or not: retries the deletions of its own workers that failed, when due. */
  private retryReleases(): void {
    if (this.closed) return;
    const now = this.o.clock();
    for (const r of this.rentals.values())
      if (r.releaseFailures && !r.releasing && now >= (r.retryAtMs ?? 0)) this.track(this.release(r));
  }

  private async runTick(): Promise<AutoscalePlan | undefined> {
    if (this.closed) return undefined;
    const led = this.leader;
    this.leader = await this.leadership.acquire().catch(() => false);
    if (this.closed) return undefined;
    if (this.leader && !led && this.ticks > 0) {
      // The lead changed hands: a leader that died (kill -9) left its workers renewed by nobody.
      this.o.log("autoscale: this coordinator leads now; reaping what a stopped leader left");
      await this.o.provider
        .reap()
        .then(() => this.endLeftRentals(this.o.clock()))
        .catch((e: unknown) =>
          this.o.log(`autoscale: reaping failed: ${e instanceof Error ? e.message : String(e)}`),
        );
    }
    this.ticks++;
    const own = new Set([...this.rentals.values()].map((r) => r.name));
    await this.o.pool
      .sync?.(own)
      .catch((e: unknown) =>
        this.o.log(
          `autoscale: reading the other coordinators' workers failed: ${e instanceof Error ? e.message : String(e)}`,
        ),
      );
    if (this.closed) return undefined;
    if (!this.leader) return this.followerTick();
    const now = this.o.clock();
    // Rentals of other coordinators sharing the database count in the budget too.
    this.budget.refresh(now, new Set(this.rentals.keys()));
    const waiting = this.o.pool.waiting();
    const seen = new Set<string>();
    for (const w of waiting) {
      seen.add(w.drv);
      if (!this.since.has(w.drv)) this.since.set(w.drv, now);
    }
    for (const drv of this.since.keys()) if (!seen.has(drv)) this.since.delete(drv);
    const catalog = await this.readCatalog(now);
    if (this.closed) return undefined;
    const plan = planAutoscale({
      nowMs: now,
      config: this.o.config,
      waiting: waiting.map((w) => ({ ...w, sinceMs: this.since.get(w.drv) ?? now })),
      workers: this.scaledWorkers(),
      catalog,
      billed: this.budget.billed(now),
      ...(this.wakeSnapshots ? { snapshots: this.wakeSnapshots } : {}),
    });
    this.lastPlan = plan;
    this.lastTickMs = now;
    const blockedNow = new Set<string>();
    for (const a of plan.actions) this.act(a, now, blockedNow);
    this.blockedBefore = blockedNow;
    return plan;
  }

  /**
   * Not the leader: rents nothing, says nothing of budgets, but deletes its own idle rentals (from
   * when it led) by the leader's rule, the whole pool's waiting work keeping those that could take
   * it; minWorkers is the leader's to keep.
   */
  private followerTick(): undefined {
    if (this.rentals.size === 0) return undefined;
    const now = this.o.clock();
    const plan = planAutoscale({
      nowMs: now,
      config: { ...this.o.config, minWorkers: 0 },
      waiting: this.o.pool.waiting().map((w) => ({ ...w, sinceMs: now })),
      workers: this.scaledWorkers(),
      catalog: { error: "not the leader" },
      billed: this.budget.billed(now),
    });
    for (const a of plan.actions) if (a.kind === "delete") this.act(a, now, new Set());
    return undefined;
  }

  private async readCatalog(now: number): Promise<AutoscaleInput["catalog"]> {
    const fresh =
      this.catalog &&
      !("error" in this.catalog.value) &&
      now - this.catalog.at < (this.o.catalogTtlMs ?? CATALOG_TTL_MS);
    if (fresh && this.catalog) return this.catalog.value;
    let value: AutoscaleInput["catalog"];
    try {
      const c: { offers: TypeOffer[]; prices: PriceTable } = await this.o.provider.catalog();
      value = c;
      const held = await this.o.provider.snapshots?.();
      if (held) {
        const perGb = c.prices.imagePerGbMonth?.gross ?? 0;
        const { count, gb } = held;
        this.snapshotStore = { count, gb, monthly: Math.round(gb * perGb * 100) / 100 };
        this.wakeSnapshots = held.newest;
      }
    } catch (e) {
      value = { error: e instanceof Error ? e.message : String(e) };
    }
    this.catalog = { at: now, value };
    return value;
  }

  private scaledWorkers(): ScaledWorker[] {
    // Those being deleted or suspended too: billed, and counted against maxWorkers, until the API
    // says they are gone; they take no work.
    return [...this.rentals.values()].map((r): ScaledWorker => ({
      name: r.name,
      type: r.type,
      system: r.system,
      status: r.status === "suspending" ? "deleting" : r.status,
      startMs: r.startMs,
      running: r.status === "ready" ? this.o.pool.running(r.name) : 0,
    }));
  }

  private record(now: number, action: AutoscaleDecisionView["action"], reason: string, r?: Rental): void {
    const d: AutoscaleDecisionRow = {
      at: isoAt(now),
      action,
      worker: r?.name ?? null,
      serverType: r?.type ?? null,
      reason,
    };
    this.recent = [d, ...this.recent].slice(0, RECENT_DECISIONS);
    this.o.history.recordAutoscaleDecision(d);
    this.o.log(`autoscale: ${reason}`);
  }

  private saveRental(r: Rental, endMs: number | null): void {
    const w: AutoscaleWorkerRow = {
      rental: r.rental,
      worker: r.name === r.rental ? null : r.name,
      serverType: r.type,
      startedMs: r.startMs,
      endedMs: endMs,
      hourly: r.hourly,
    };
    this.budget.save(w);
  }

  private act(a: AutoscaleAction, now: number, blockedNow: Set<string>): void {
    if (a.kind === "blocked") {
      // Said once while the cause lasts, not on every tick.
      const key = `${a.system} ${a.cause} ${a.window ?? ""}`;
      blockedNow.add(key);
      if (!this.blockedBefore.has(key)) this.record(now, "blocked", a.reason);
      return;
    }
    if (a.kind === "rent") {
      const id = `rental-${randomBytes(4).toString("hex")}`;
      const r: Rental = {
        rental: id,
        name: id,
        type: a.type,
        system: a.system,
        status: "booting",
        startMs: now,
        hourly: a.hourly,
      };
      // The plan chose the snapshot when it knew them; else the provider looks for the latest.
      const wake = this.wakeSnapshots
        ? a.snapshot
        : this.o.config.fromSnapshot === "latest"
          ? "latest"
          : undefined;
      if (wake !== undefined) r.wake = wake;
      this.rentals.set(id, r);
      this.saveRental(r, null);
      this.record(now, "rent", a.reason, r);
      this.track(this.rent(r));
      return;
    }
    const r = [...this.rentals.values()].find((x) => x.name === a.worker && x.status === "ready");
    const suspend = a.kind === "suspend" && this.o.provider.suspend !== undefined;
    // It took work since the plan was made: kept, the next tick decides again.
    const why = suspend ? "suspended by the autoscaler" : "deleted by the autoscaler";
    if (!r || !this.o.pool.leave(r.name, why)) return;
    r.status = suspend ? "suspending" : "deleting";
    this.record(now, suspend ? "suspend" : "delete", a.reason, r);
    this.track(suspend ? this.suspend(r) : this.release(r));
  }

  /**
   * Suspends a worker out of the pool (it takes no work): snapshot, then deletion. Billed until
   * the server is deleted. The coordinator closing or dying mid-way leaves the suspend to
   * `nixpool worker gc` (the next start runs it), which resumes it at its step; a failure while
   * it runs deletes the worker instead (a snapshot left unfinished is orphaned: gc deletes it).
   */
  private async suspend(r: Rental): Promise<void> {
    const provider = this.o.provider;
    if (!provider.suspend) return this.release(r);
    const t0 = this.o.clock();
    const done = () => {
      this.rentals.delete(r.rental);
      this.saveRental(r, this.o.clock());
    };
    try {
      const s = await provider.suspend(r.name, this.abort.signal);
      const now = this.o.clock();
      this.record(
        now,
        "suspended",
        `${r.name} (${r.type}) suspended into snapshot ${s.imageId} (${s.imageSizeGb ?? "?"} GB) after ${Math.round((now - t0) / 1000)} s; server deleted${s.deletedSnapshots ? `; ${s.deletedSnapshots} older snapshot(s) past keepSnapshots deleted` : ""}`,
        r,
      );
      done();
      // A new snapshot: the next tick reads the snapshots again, so the next rental wakes from it.
      this.catalog = undefined;
    } catch (e) {
      const why = e instanceof Error ? e.message : String(e);
      if (this.closed) {
        // Stopped by close(): the suspend stays recorded; gc resumes it once this process is gone.
        this.record(
          this.o.clock(),
          "failed",
          `suspending ${r.name} stopped: ${why}; nixpool worker gc (or the next start) finishes it`,
          r,
        );
        done();
      } else {
        // This process still holds it (gc would not touch it): deleted now rather than billed on.
        // A deletion that fails too keeps it counted and retried, as any failed deletion.
        this.record(this.o.clock(), "failed", `suspending ${r.name} failed: ${why}; deleting it instead`, r);
        r.status = "deleting";
        await this.release(r);
      }
    }
  }

  private track(p: Promise<void>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  private async rent(r: Rental): Promise<void> {
    try {
      const got = await this.o.provider.rent({
        type: r.type,
        system: r.system,
        signal: this.abort.signal,
        ...(r.wake !== undefined ? { fromSnapshot: r.wake } : {}),
        onLeased: (name) => {
          r.name = name;
          this.saveRental(r, null);
        },
      });
      r.name = got.name;
      r.builder = got.builder;
      // Ready from here on: close() deletes it even if the coordinator closes before it joins.
      r.status = "ready";
      if (this.closed) return;
      try {
        await this.o.pool.join(got.builder);
      } catch (e) {
        r.status = "deleting";
        this.record(
          this.o.clock(),
          "failed",
          `${r.name} could not join the pool (${e instanceof Error ? e.message : String(e)}); deleting it`,
          r,
        );
        await this.release(r);
        return;
      }
      const now = this.o.clock();
      this.record(
        now,
        "ready",
        `${r.name} (${r.type}) answers after ${Math.round((now - r.startMs) / 1000)} s; it joined the pool`,
        r,
      );
    } catch (e) {
      const now = this.o.clock();
      // Read the catalogue and snapshots again at the next tick (the snapshot may be gone).
      this.catalog = undefined;
      if (e instanceof RentalLeftBehind) {
        // Its server is still there: counted and its deletion retried, as any failed deletion
        // (also by close(), which looks for those once the rentals in flight have settled).
        Object.assign(r, { name: e.worker, status: "deleting", releaseFailures: 1, retryAtMs: now });
        this.saveRental(r, null);
        const why = `${e.message}; it still counts towards maxWorkers and the budget, and is retried at later ticks${this.closed ? " (the coordinator closes: nixpool worker gc deletes it)" : ""}`;
        this.record(now, "failed", `renting ${r.type} failed: ${why}`, r);
        return;
      }
      this.rentals.delete(r.rental);
      this.saveRental(r, now);
      this.record(
        now,
        "failed",
        `renting ${r.type} failed: ${e instanceof Error ? e.message : String(e)} (deleted; nixpool worker gc reaps anything left)`,
        r,
      );
    }
  }

  /**
   * Deletes a worker. A failed deletion keeps it in the rentals (counted towards maxWorkers and
   * the budget, its lease renewed by the provider) and later ticks retry it (backing off to once a
   * minute) until the API says the server is gone.
   */
  private async release(r: Rental): Promise<void> {
    if (r.releasing) return;
    r.releasing = true;
    try {
      await this.o.provider.release(r.name);
    } catch (e) {
      const n = (r.releaseFailures = (r.releaseFailures ?? 0) + 1);
      r.retryAtMs = this.o.clock() + Math.min(60_000, this.o.config.intervalMs * 2 ** (n - 1));
      const why = e instanceof Error ? e.message : String(e);
      if (n === 1)
        this.record(
          this.o.clock(),
          "failed",
          `deleting ${r.name} failed: ${why}; it still counts towards maxWorkers and the budget, and is retried at later ticks${this.closed ? " (the coordinator closes: nixpool worker gc deletes it)" : ""}`,
          r,
        );
      else this.o.log(`autoscale: deleting ${r.name} failed again (attempt ${n}): ${why}`);
      return;
    } finally {
      r.releasing = false;
    }
    this.rentals.delete(r.rental);
    this.saveRental(r, this.o.clock());
    if (r.releaseFailures)
      this.record(
        this.o.clock(),
        "delete",
        `deleted ${r.name} (${r.type}) at attempt ${r.releaseFailures + 1}`,
        r,
      );
  }

  /** The state shown by GET /api/autoscale and the dashboard. */
  view(): AutoscaleView {
    const c = this.o.config;
    const now = this.o.clock();
    // Not the leader: its last plan (from when it led) says nothing of now.
    const plan = this.leader || this.ticks === 0 ? this.lastPlan : undefined;
    return {
      provider: "hetzner",
      leader: this.leader,
      settings: {
        minWorkers: c.minWorkers,
        maxWorkers: c.maxWorkers,
        serverTypes: c.serverTypes,
        location: c.location,
        derivationsPerWorker: c.derivationsPerWorker,
        scaleUpAfterMs: c.scaleUpAfterMs,
        minLifetimeMs: c.minLifetimeMs,
        releaseMarginMs: c.releaseMarginMs,
        intervalMs: c.intervalMs,
        suspendIdle: c.suspendIdle,
      },
      ...(this.lastTickMs !== undefined ? { lastTickAt: isoAt(this.lastTickMs) } : {}),
      summary:
        plan?.summary ??
        (this.ticks > 0
          ? "another coordinator leads the autoscaler: it rents for every coordinator's queue; this one deletes only its own idle workers"
          : "not looked at the queue yet"),
      blocked: (plan?.actions ?? []).flatMap((a) => (a.kind === "blocked" ? [a.reason] : [])),
      currency: "EUR",
      spent: plan?.spent ?? { hour: 0, day: 0, month: 0 },
      budget: { ...c.budget },
      workers: [...this.rentals.values()].map((r) => ({
        name: r.name,
        serverType: r.type,
        status: r.status,
        startedAt: isoAt(r.startMs),
        running: r.status === "ready" ? this.o.pool.running(r.name) : 0,
        paidUntil: isoAt(now + paidLeft(r, now)),
      })),
      ...(this.snapshotStore ? { snapshots: { ...this.snapshotStore } } : {}),
      decisions: this.recent.map((d) => ({
        at: d.at,
        action: d.action as AutoscaleDecisionView["action"],
        ...(d.worker !== null ? { worker: d.worker } : {}),
        ...(d.serverType !== null ? { serverType: d.serverType } : {}),
        reason: d.reason,
      })),
    };
  }

  /**
   * Stops ticking, aborts rentals under way and deletes every worker it rented (the builds were
   * stopped first): nothing is left running, and the budget rows are ended.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    await this.ticking;
    this.abort.abort();
    await Promise.allSettled([...this.inFlight]);
    const left = [...this.rentals.values()].filter((r) => r.status === "ready" || r.releaseFailures);
    for (const r of left) {
      if (r.status !== "ready") continue;
      this.o.pool.leave(r.name, "the coordinator closes");
      r.status = "deleting";
      this.record(this.o.clock(), "delete", `deleted ${r.name} (${r.type}): the coordinator closes`, r);
    }
    await Promise.allSettled(left.map((r) => this.release(r)));
    await this.o.provider.close();
    await this.leadership.release();
  }
}
