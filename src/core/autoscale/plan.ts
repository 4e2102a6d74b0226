import { billedHours, chooseServerType, type PriceTable, type TypeOffer } from "../cost.js";
import { formatMs } from "../duration.js";
import { architectureFor, WORKER_FEATURES, type AutoscaleConfig } from "./config.js";
import {
  brokenCap,
  committedAhead,
  describeBudget,
  rentalCost,
  spending,
  windowWords,
  type BilledWorker,
  type BudgetWindow,
} from "./spending.js";

// The autoscaler's decisions, pure: queue + workers + prices + clock → a plan of actions, each
// with the reason shown in the history, the dashboard and GET /api/autoscale (docs/autoscale.md).

const HOUR = 3_600_000;

/** A derivation ready to build that no slot has taken yet. */
export interface WaitingDerivation {
  drv: string;
  system: string;
  features: readonly string[];
  /** When the autoscaler first saw it waiting. */
  sinceMs: number;
}

/** A worker the autoscaler rented. */
export interface ScaledWorker {
  name: string;
  type: string;
  system: string;
  /**
   * Booting: rented, not building yet; ready: a builder of the pool; deleting: out of the pool,
   * its deletion under way or failed (retried): still billed, so counted towards maxWorkers.
   */
  status: "booting" | "ready" | "deleting";
  /** Billing start (the server's creation; the rental's start while that is unknown). */
  startMs: number;
  /** Derivations building on it now. */
  running: number;
}

export interface AutoscaleInput {
  nowMs: number;
  config: AutoscaleConfig;
  waiting: readonly WaitingDerivation[];
  workers: readonly ScaledWorker[];
  /** The API's server types and /pricing; undefined when they could not be read (nothing is rented). */
  catalog: { offers: readonly TypeOffer[]; prices: PriceTable } | { error: string };
  /** Every worker the autoscaler rented this month (deleted ones included), for the budget. */
  billed: readonly BilledWorker[];
  /**
   * With fromSnapshot "latest": the newest available snapshot of this pool per architecture, which
   * a rental wakes from (on a type whose disk holds it); undefined when they could not be read
   * (the provider then looks for one itself).
   */
  snapshots?: readonly WakeSnapshot[];
}

/** A snapshot a rental may wake from. */
export interface WakeSnapshot {
  id: number;
  architecture: "x86" | "arm";
  /** GB: a server type's disk must be at least this. */
  diskSize: number;
}

/** Why nothing was rented for some waiting work (one cause per kind, for de-duplication). */
export type BlockCause = "budget" | "max-workers" | "no-type" | "unbuildable" | "prices-unknown";

export type AutoscaleAction =
  | {
      kind: "rent";
      type: string;
      system: string;
      hourly: number;
      /** The snapshot it wakes from (none: the plain image; only when input.snapshots was given). */
      snapshot?: number;
      reason: string;
    }
  | { kind: "delete"; worker: string; reason: string }
  /** A release with `suspendIdle`: the worker's store goes into a snapshot, then it is deleted. */
  | { kind: "suspend"; worker: string; reason: string }
  | { kind: "blocked"; system: string; cause: BlockCause; window?: BudgetWindow; reason: string };

export interface AutoscalePlan {
  actions: AutoscaleAction[];
  /** Spent so far (gross EUR) in the current hour, day and month (before this plan's rentals). */
  spent: Record<BudgetWindow, number>;
  /** One line: the queue, the workers, the budget. */
  summary: string;
}

/** Derivations needing the same system and features: one kind of worker serves them. */
interface Kind {
  system: string;
  features: string[];
  count: number;
}

function kindsOf(waiting: readonly WaitingDerivation[]): Kind[] {
  const kinds = new Map<string, Kind>();
  for (const w of waiting) {
    const features = [...new Set(w.features)].sort();
    const key = `${w.system} ${features.join(",")}`;
    const k = kinds.get(key) ?? { system: w.system, features, count: 0 };
    k.count++;
    kinds.set(key, k);
  }
  return [...kinds.values()].sort((a, b) => b.count - a.count || a.system.localeCompare(b.system));
}

/** The cheapest type the settings allow for an architecture, with its gross hourly price (server + IPv4). */
export function pickType(
  config: AutoscaleConfig,
  offers: readonly TypeOffer[],
  prices: PriceTable,
  architecture: "x86" | "arm",
  /** GB of disk the type must have (to wake a snapshot). */
  minDisk?: number,
): { name: string; hourly: number } | undefined {
  const allowed =
    config.serverTypes === "auto" ? offers : offers.filter((o) => config.serverTypes.includes(o.name));
  const base =
    config.serverTypes === "auto"
      ? { minCores: config.minCores, minMemory: config.minMemory, architecture }
      : { minCores: 1, minMemory: 0, architecture };
  const req = minDisk !== undefined ? { ...base, minDisk } : base;
  const choice = chooseServerType(allowed, config.location, req, prices);
  if (!choice) return undefined;
  const ipv4 = prices.primaryIpv4[config.location]?.hourly.gross ?? 0;
  return { name: choice.type.name, hourly: round(choice.hourly.gross + ipv4) };
}

const canServe = (w: Pick<ScaledWorker, "system">, d: Pick<WaitingDerivation, "system" | "features">) =>
  (d.system === w.system || d.system === "builtin") && d.features.every((f) => WORKER_FEATURES.includes(f));

/** Computes what to rent and what to delete now. */
export function planAutoscale(input: AutoscaleInput): AutoscalePlan {
  const { nowMs, config } = input;
  const spent = spending(input.billed, nowMs);
  const actions: AutoscaleAction[] = [];
  const due = input.waiting.filter((w) => nowMs - w.sinceMs >= config.scaleUpAfterMs);
  // Every worker the API bills counts towards maxWorkers; those being deleted serve no minWorkers.
  let workers = input.workers.length;
  let serving = input.workers.filter((w) => w.status !== "deleting").length;
  const hoursCommitted = Math.max(1, Math.ceil(config.minLifetimeMs / HOUR));
  // Spent, plus the hours running rentals are committed to by minLifetime and have not begun yet.
  const committed = addCost(spent, committedAhead(input.billed, nowMs, config.minLifetimeMs));
  let extra: Record<BudgetWindow, number> = ZERO;

  const rent = (system: string, why: string, label: string): boolean => {
    const architecture = architectureFor(system);
    if (!architecture) {
      actions.push({
        kind: "blocked",
        system,
        cause: "unbuildable",
        reason: `not renting for ${label}: no Hetzner server type builds ${system}; builds wait for the existing builders`,
      });
      return false;
    }
    if (workers >= config.maxWorkers) {
      actions.push({
        kind: "blocked",
        system,
        cause: "max-workers",
        reason: `not renting for ${label}: maxWorkers ${config.maxWorkers} reached; builds wait for the existing builders`,
      });
      return false;
    }
    if ("error" in input.catalog) {
      actions.push({
        kind: "blocked",
        system,
        cause: "prices-unknown",
        reason: `not renting for ${label}: the API's server types or /pricing could not be read (${input.catalog.error}); builds wait for the existing builders`,
      });
      return false;
    }
    const { offers, prices } = input.catalog;
    const plain = pickType(config, offers, prices, architecture);
    if (!plain) {
      actions.push({
        kind: "blocked",
        system,
        cause: "no-type",
        reason: `not renting for ${label}: no ${config.serverTypes === "auto" ? `available ${architecture} type with ${config.minCores}+ cores and ${config.minMemory}+ GB` : `type of ${config.serverTypes.join(", ")} for ${architecture}`} in ${config.location} has a price; builds wait for the existing builders`,
      });
      return false;
    }
    // A rental commits its first ceil(minLifetime / 1 h) hours: the day and month count them all,
    // the calendar hour only the first (the others begin in later hours).
    const capFor = (hourly: number) =>
      brokenCap(addCost(committed, extra), rentalCost(hourly, hoursCommitted), config.budget);
    // Wake from the pool's newest snapshot: on the cheapest type whose disk holds it, if the
    // settings and the budget allow that type; else a fresh worker, and the reason says why.
    let type = plain;
    let snapshot: number | undefined;
    let wakeNote = "";
    const snap =
      config.fromSnapshot === "latest"
        ? input.snapshots?.find((x) => x.architecture === architecture)
        : undefined;
    if (snap) {
      const fits = pickType(config, offers, prices, architecture, snap.diskSize);
      const needs = `snapshot ${snap.id} needs a ${snap.diskSize} GB disk`;
      if (!fits) wakeNote = `; fresh, not woken: ${needs}, which no allowed type in ${config.location} has`;
      else if (fits.name !== plain.name && capFor(fits.hourly)) {
        wakeNote = `; fresh, not woken: ${needs} (${fits.name}), over ${windowWords(capFor(fits.hourly) as BudgetWindow)}'s budget`;
      } else {
        snapshot = snap.id;
        wakeNote =
          fits.name === plain.name
            ? `; woken from snapshot ${snap.id}`
            : `; woken from snapshot ${snap.id} (${needs}: ${fits.name}, not ${plain.name})`;
        type = fits;
      }
    }
    const cost = rentalCost(type.hourly, hoursCommitted);
    const withIt = addCost(addCost(spent, extra), cost);
    const cap = capFor(type.hourly);
    if (cap) {
      const hoursWords =
        hoursCommitted === 1
          ? "its first hour"
          : `its first ${hoursCommitted} hours (minLifetime ${formatMs(config.minLifetimeMs)})`;
      const before = committed[cap] > spent[cap] + 1e-9 ? "spent or committed" : "spent";
      actions.push({
        kind: "blocked",
        system,
        cause: "budget",
        window: cap,
        reason: `not renting ${type.name} for ${label}: ${windowWords(cap)}'s budget of ${(config.budget[cap] as number).toFixed(2)} EUR would be exceeded (${(committed[cap] + extra[cap]).toFixed(2)} ${before} + ${cost[cap].toFixed(4)} for ${hoursWords}); builds wait for the existing builders`,
      });
      return false;
    }
    actions.push({
      kind: "rent",
      type: type.name,
      system,
      hourly: type.hourly,
      ...(snapshot !== undefined ? { snapshot } : {}),
      reason: `rented ${type.name}: ${why}; ${describeBudget(withIt, config.budget)}${wakeNote}`,
    });
    workers++;
    serving++;
    extra = addCost(extra, cost);
    return true;
  };

  for (const k of kindsOf(due)) {
    const label = `${k.count} ${k.system}${k.features.length ? ` (${k.features.join(", ")})` : ""} derivation${k.count === 1 ? "" : "s"}`;
    const unsupported = k.features.filter((f) => !WORKER_FEATURES.includes(f));
    if (unsupported.length) {
      actions.push({
        kind: "blocked",
        system: k.system,
        cause: "unbuildable",
        reason: `not renting for ${label}: workers do not offer ${unsupported.join(", ")}; builds wait for the existing builders`,
      });
      continue;
    }
    // Workers still booting, and idle ones, will take work soon: count them as already on their way.
    const coming = input.workers.filter(
      (w) => w.status !== "deleting" && (w.status === "booting" || w.running === 0) && canServe(w, k),
    ).length;
    const wanted = Math.ceil(k.count / config.derivationsPerWorker) - coming;
    const why = `${label} waited > ${formatMs(config.scaleUpAfterMs)}`;
    for (let i = 0; i < wanted; i++) if (!rent(k.system, why, label)) break;
  }
  // Workers kept for minWorkers: the system of those there are, else of the first listed type.
  const firstListed =
    config.serverTypes !== "auto" && !("error" in input.catalog)
      ? input.catalog.offers.find((o) => o.name === config.serverTypes[0])
      : undefined;
  const minSystem =
    input.workers.find((w) => w.status !== "deleting")?.system ??
    (firstListed?.architecture === "arm" ? "aarch64-linux" : "x86_64-linux");
  while (serving < config.minWorkers) {
    if (
      !rent(
        minSystem,
        `minWorkers is ${config.minWorkers}, ${serving} running`,
        `minWorkers ${config.minWorkers}`,
      )
    )
      break;
  }

  // Idle ready workers: deleted (or suspended, with suspendIdle) once their paid hour is nearly
  // over (never sooner than minLifetime).
  let kept = input.workers.filter((w) => w.status !== "deleting").length;
  const idle = input.workers
    .filter((w) => w.status === "ready" && w.running === 0)
    .sort((a, b) => paidLeft(a, nowMs) - paidLeft(b, nowMs));
  for (const w of idle) {
    if (kept <= config.minWorkers) break;
    if (input.waiting.some((d) => canServe(w, d))) continue;
    const lived = nowMs - w.startMs;
    if (lived < config.minLifetimeMs) continue;
    // Deleted at the last tick that still leaves releaseMargin of the paid hour: when the next
    // tick (intervalMs on) would leave less. A window as long as the interval holds a tick
    // whatever the margin and wherever the worker started on the tick grid, so none is missed.
    const left = paidLeft(w, nowMs);
    if (left - config.intervalMs > config.releaseMarginMs) continue;
    const hours = billedHours(w.startMs, nowMs);
    const why = `idle, ${minutes(left)} left of its paid hour ${hours}; lived ${minutes(lived)}`;
    actions.push(
      config.suspendIdle
        ? {
            kind: "suspend",
            worker: w.name,
            reason: `suspending ${w.name} (${w.type}) into a snapshot, then deleting it: ${why}`,
          }
        : { kind: "delete", worker: w.name, reason: `deleted ${w.name} (${w.type}): ${why}` },
    );
    kept--;
  }

  const booting = input.workers.filter((w) => w.status === "booting").length;
  const deleting = input.workers.filter((w) => w.status === "deleting").length;
  const states = [
    ...(booting ? [`${booting} booting`] : []),
    ...(deleting ? [`${deleting} being deleted`] : []),
  ];
  const summary =
    `${input.waiting.length} derivation${input.waiting.length === 1 ? "" : "s"} waiting (${due.length} > ${formatMs(config.scaleUpAfterMs)}), ` +
    `${input.workers.length} of ${config.maxWorkers} workers${states.length ? ` (${states.join(", ")})` : ""}; ${describeBudget(spent, config.budget)}`;
  return { actions, spent, summary };
}

/** Time left in the worker's current paid hour. */
export function paidLeft(w: Pick<ScaledWorker, "startMs">, nowMs: number): number {
  return w.startMs + billedHours(w.startMs, nowMs) * HOUR - nowMs;
}

const ZERO: Record<BudgetWindow, number> = { hour: 0, day: 0, month: 0 };

function addCost(
  a: Record<BudgetWindow, number>,
  b: Record<BudgetWindow, number>,
): Record<BudgetWindow, number> {
  return { hour: a.hour + b.hour, day: a.day + b.day, month: a.month + b.month };
}

function minutes(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  const m = Math.round(ms / 60_000);
  return m < 60 ? `${m} min` : `${Math.floor(m / 60)} h ${m % 60} min`;
}

function round(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
