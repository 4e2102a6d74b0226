import { readRecords, recordCost } from "../providers/hetzner/records.js";
import type { WorkerView } from "./coordinator-types.js";
import { isoAt } from "./coordinator-views.js";
import type { HistoryStore } from "./history-store.js";
import { WorkerCosts } from "./history-workers.js";

/**
 * The cloud workers rented now (STATE's worker records) with their cost so far, read again every
 * `everyMs`; each reading is also recorded in the history.
 */
export class RentedWorkers {
  private rented: WorkerView[] = [];
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  private readonly costs: WorkerCosts;

  constructor(
    private readonly stateDir: string,
    private readonly history: HistoryStore,
    private readonly clock: () => number,
  ) {
    this.costs = new WorkerCosts(history);
  }

  async start(everyMs: number): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), everyMs);
    this.timer.unref();
  }

  list(): WorkerView[] {
    return this.rented.map((w) => ({ ...w }));
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  private async refresh(): Promise<void> {
    try {
      const at = this.clock();
      const records = await readRecords(this.stateDir);
      this.rented = records.map((r) => {
        const cost = recordCost(r, at);
        return {
          name: r.lease.name,
          serverType: r.type,
          startedAt: r.serverCreatedAt ?? r.lease.createdAt,
          costSoFar: cost.total.gross,
          currency: cost.currency,
        };
      });
      if (!this.stopped) for (const w of this.rented) this.costs.saveWorkerCost(w, isoAt(at));
    } catch {
      // A damaged worker record is `nixpool worker list`'s to report; the list keeps its last value.
    }
  }
}
