import { billedHours } from "../cost.js";
import type { AutoscaleBudget } from "./config.js";

// What the autoscaler's workers cost in the current hour, day and month (UTC), per started hour.

const HOUR = 3_600_000;

/** One worker's billing, as recorded: from its creation until its deletion (null: still running). */
export interface BilledWorker {
  name: string;
  startMs: number;
  endMs: number | null;
  /** EUR per started hour, gross (server and primary IPv4). */
  hourly: number;
}

export type BudgetWindow = "hour" | "day" | "month";
export const BUDGET_WINDOWS: readonly BudgetWindow[] = ["hour", "day", "month"];

/** Where the calendar hour, day and month (UTC) that hold `nowMs` begin. */
export function windowStart(window: BudgetWindow, nowMs: number): number {
  const d = new Date(nowMs);
  if (window === "hour") return Math.floor(nowMs / HOUR) * HOUR;
  if (window === "day") return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate());
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/**
 * What the workers cost in a window: every billed hour (Hetzner bills each started hour from the
 * server's creation) that began in the window counts its full price. The monthly price cap is not
 * applied (it only lowers a bill, so the budget stays on the safe side).
 */
export function spentIn(workers: readonly BilledWorker[], window: BudgetWindow, nowMs: number): number {
  const from = windowStart(window, nowMs);
  let sum = 0;
  for (const w of workers) {
    if (w.startMs > nowMs) continue;
    const hours = billedHours(w.startMs, Math.min(w.endMs ?? nowMs, nowMs));
    for (let k = 0; k < hours; k++) {
      const at = w.startMs + k * HOUR;
      if (at >= from && at <= nowMs) sum += w.hourly;
    }
  }
  return round2(sum);
}

/** Spent so far in each window. */
export function spending(workers: readonly BilledWorker[], nowMs: number): Record<BudgetWindow, number> {
  return {
    hour: spentIn(workers, "hour", nowMs),
    day: spentIn(workers, "day", nowMs),
    month: spentIn(workers, "month", nowMs),
  };
}

/** The first cap that `extra` more (per window) would break, or undefined when every cap holds. */
export function brokenCap(
  spent: Record<BudgetWindow, number>,
  extra: Record<BudgetWindow, number>,
  budget: AutoscaleBudget,
): BudgetWindow | undefined {
  return BUDGET_WINDOWS.find((w) => budget[w] !== undefined && spent[w] + extra[w] > budget[w] + 1e-9);
}

/**
 * What renting a worker now commits to per window: it is not deleted before minLifetime, so its
 * first `hours` are paid whatever happens. Only the first begins in the current calendar hour; the
 * day and the month count them all (on the safe side when they reach into the next day).
 */
export function rentalCost(hourly: number, hours: number): Record<BudgetWindow, number> {
  return { hour: hourly, day: round2(hourly * hours), month: round2(hourly * hours) };
}

/**
 * The hours running workers are committed to (the started hours before `minLifetimeMs` is
 * reached) that have not begun yet: paid later whatever happens, so a new rental counts them.
 * The calendar hour counts those beginning in it; the day and the month all of them.
 */
export function committedAhead(
  workers: readonly BilledWorker[],
  nowMs: number,
  minLifetimeMs: number,
): Record<BudgetWindow, number> {
  const out = { hour: 0, day: 0, month: 0 };
  const hourEnd = windowStart("hour", nowMs) + HOUR;
  for (const w of workers) {
    if (w.endMs !== null || w.startMs > nowMs) continue;
    const hours = Math.max(1, Math.ceil(minLifetimeMs / HOUR));
    for (let k = 0; k < hours; k++) {
      const at = w.startMs + k * HOUR;
      if (at <= nowMs) continue;
      if (at < hourEnd) out.hour += w.hourly;
      out.day += w.hourly;
      out.month += w.hourly;
    }
  }
  return { hour: round2(out.hour), day: round2(out.day), month: round2(out.month) };
}

const WINDOW_WORDS: Record<BudgetWindow, string> = { hour: "this hour", day: "today", month: "this month" };

/** "today 0.42 of 5.00 EUR" for every configured cap ("no budget" when none is). */
export function describeBudget(spent: Record<BudgetWindow, number>, budget: AutoscaleBudget): string {
  const parts = BUDGET_WINDOWS.filter((w) => budget[w] !== undefined).map(
    (w) => `${WINDOW_WORDS[w]} ${spent[w].toFixed(2)} of ${(budget[w] as number).toFixed(2)} EUR`,
  );
  return parts.length ? parts.join(", ") : `today ${spent.day.toFixed(2)} EUR (no budget)`;
}

/** "today" / "this hour" / "this month". */
export function windowWords(w: BudgetWindow): string {
  return WINDOW_WORDS[w];
}

function round2(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}
