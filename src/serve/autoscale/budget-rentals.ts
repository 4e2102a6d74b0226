import { windowStart, type BilledWorker } from "../../core/autoscale/spending.js";
import type { AutoscaleWorkerRow } from "../history-autoscale.js";

/** What the budget's rentals are read from and written to (the coordinator's history). */
export interface RentalHistory {
  /** Queued in order (the history's write queue); not awaited. */
  saveAutoscaleWorker(w: AutoscaleWorkerRow): void;
  autoscaleWorkers(sinceMs: number): Promise<AutoscaleWorkerRow[]>;
  /** Ends open rentals at `atMs`: all, or those named. */
  closeAutoscaleWorkers(atMs: number, rentals?: readonly string[]): Promise<number>;
}

/**
 * The rentals the autoscaler's budget counts (table `autoscale_workers`): read from the history at
 * start, kept here as this autoscaler writes them, and read again in the background when asked
 * (other coordinators' rentals on the same database), so a tick never waits for the database.
 */
export class BudgetRentals {
  private readonly rows = new Map<string, AutoscaleWorkerRow>();
  private refreshing = false;
  private refreshFailed = false;

  constructor(
    private readonly history: RentalHistory,
    private readonly log: (line: string) => void,
  ) {}

  /**
   * Ends the open rentals nobody holds any more: those whose worker has no record in the state
   * directory once reaped (a crashed coordinator's; gc deleted them). A worker another live
   * coordinator rented keeps its record, so its rental stays open and counted. A rental that never
   * got its worker's name is ended once older than `bootTimeoutMs`. Without `held`, all open ones
   * (except `mine`) are ended. Then reads every row of this month.
   */
  async start(
    now: number,
    o: { held: Set<string> | undefined; mine: ReadonlySet<string>; bootTimeoutMs: number },
  ): Promise<number> {
    const open = (await this.history.autoscaleWorkers(windowStart("month", now))).filter(
      (w) => w.endedMs === null && !o.mine.has(w.rental),
    );
    const left = open.filter((w) =>
      o.held === undefined
        ? true
        : w.worker !== null
          ? !o.held.has(w.worker)
          : now - w.startedMs > o.bootTimeoutMs,
    );
    const ended = await this.history.closeAutoscaleWorkers(
      now,
      left.map((w) => w.rental),
    );
    for (const w of await this.history.autoscaleWorkers(windowStart("month", now)))
      this.rows.set(w.rental, w);
    return ended;
  }

  /** Reads the rows again in the background; `mine` (this process's rentals) are newer in memory. */
  refresh(now: number, mine: ReadonlySet<string>): void {
    if (this.refreshing) return;
    this.refreshing = true;
    void this.history
      .autoscaleWorkers(windowStart("month", now))
      .then(
        (rows) => {
          this.refreshFailed = false;
          for (const w of rows) {
            const known = this.rows.get(w.rental);
            if (mine.has(w.rental) || (known?.endedMs != null && w.endedMs === null)) continue;
            this.rows.set(w.rental, w);
          }
        },
        (e: unknown) => {
          if (!this.refreshFailed)
            this.log(
              `autoscale: reading the budget's rentals failed (planning with those known): ${e instanceof Error ? e.message : String(e)}`,
            );
          this.refreshFailed = true;
        },
      )
      .finally(() => (this.refreshing = false));
  }

  /** A rental of this autoscaler, as it starts or ends. */
  save(w: AutoscaleWorkerRow): void {
    this.rows.set(w.rental, w);
    this.history.saveAutoscaleWorker(w);
  }

  /** What the plan counts: this month's rentals, oldest first. */
  billed(now: number): BilledWorker[] {
    const since = windowStart("month", now);
    return [...this.rows.values()]
      .filter((w) => w.endedMs === null || w.endedMs >= since)
      .sort((a, b) => a.startedMs - b.startedMs)
      .map((w) => ({ name: w.worker ?? w.rental, startMs: w.startedMs, endMs: w.endedMs, hourly: w.hourly }));
  }
}
