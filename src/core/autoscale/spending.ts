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

/** The first cap that `extra` more would break, or undefined when every cap holds. */
export function brokenCap(
  spent: Record<BudgetWindow, number>,
  extra: number,
  budget: AutoscaleBudget,
): BudgetWindow | undefined {
  return BUDGET_WINDOWS.find((w) => budget[w] !== undefined && spent[w] + extra > budget[w] + 1e-9);
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
