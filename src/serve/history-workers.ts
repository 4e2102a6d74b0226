import type { WorkerView } from "./coordinator-types.js";
import { workerRow } from "./history-rows.js";
import type { HistoryStore } from "./history-store.js";

/** The rented workers' costs in the coordinator's history (docs/hetzner.md): the last known cost of each. */
export class WorkerCosts {
  constructor(private readonly h: HistoryStore) {}

  saveWorkerCost(w: WorkerView, at: string): void {
    const row = {
      name: w.name,
      server_type: w.serverType,
      started_at: w.startedAt,
      cost: w.costSoFar,
      currency: w.currency,
      updated_at: at,
    };
    this.h.write(`the cost of worker ${w.name}`, (db) =>
      db
        .insertInto("worker_costs")
        .values(row)
        .onConflict((oc) =>
          oc.column("name").doUpdateSet((eb) => ({
            server_type: eb.ref("excluded.server_type"),
            started_at: eb.ref("excluded.started_at"),
            cost: eb.ref("excluded.cost"),
            currency: eb.ref("excluded.currency"),
            updated_at: eb.ref("excluded.updated_at"),
          })),
        )
        .execute(),
    );
  }

  /** Every rented worker ever seen, with its last known cost. */
  async workerCosts(): Promise<WorkerView[]> {
    const rows = await this.h.read("worker_costs", (db) =>
      db.selectFrom("worker_costs").selectAll().orderBy("started_at").execute(),
    );
    return rows.map((r, i) => {
      const w = this.h.valid(workerRow, r, `worker_costs #${i}`);
      return {
        name: w.name,
        serverType: w.server_type,
        startedAt: w.started_at,
        costSoFar: w.cost,
        currency: w.currency,
      };
    });
  }
}
