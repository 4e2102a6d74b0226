import type { AutoscaleHistory } from "./autoscale/autoscaler.js";
import { autoscaleWorkerRow, decisionRow } from "./history-rows.js";
import type { HistoryStore } from "./history-store.js";

// The autoscaler's part of the coordinator's history (docs/autoscale.md): its decisions, with their
// reasons, and its rentals for the budget; on the history's engine and write queue.

/** One autoscaler decision as recorded (src/serve/autoscale/autoscaler.ts). */
export interface AutoscaleDecisionRow {
  at: string;
  action: string;
  worker: string | null;
  serverType: string | null;
  reason: string;
}

/** One rental of the autoscaler, for its budget: billed from startedMs until endedMs (null: running). */
export interface AutoscaleWorkerRow {
  rental: string;
  worker: string | null;
  serverType: string;
  startedMs: number;
  endedMs: number | null;
  /** EUR per started hour, gross. */
  hourly: number;
}

export class AutoscaleRecords implements AutoscaleHistory {
  constructor(private readonly h: HistoryStore) {}

  recordAutoscaleDecision(d: AutoscaleDecisionRow): void {
    const row = {
      at: d.at,
      action: d.action,
      worker: d.worker,
      server_type: d.serverType,
      reason: d.reason,
      ord: this.h.nextOrd(),
    };
    this.h.write("an autoscale decision", (db) => db.insertInto("autoscale_decisions").values(row).execute());
  }

  /** The autoscaler's decisions, newest first. */
  async autoscaleDecisions(limit = 50): Promise<AutoscaleDecisionRow[]> {
    const rows = await this.h.read("autoscale_decisions", (db) =>
      db
        .selectFrom("autoscale_decisions")
        .select(["at", "action", "worker", "server_type", "reason"])
        .orderBy("ord", "desc")
        .limit(Math.max(0, Math.min(limit, 10_000)))
        .execute(),
    );
    return rows.map((r, i) => {
      const d = this.h.valid(decisionRow, r, `autoscale_decisions #${i}`);
      return { at: d.at, action: d.action, worker: d.worker, serverType: d.server_type, reason: d.reason };
    });
  }

  saveAutoscaleWorker(w: AutoscaleWorkerRow): void {
    const row = {
      rental: w.rental,
      worker: w.worker,
      server_type: w.serverType,
      started_ms: Math.round(w.startedMs),
      ended_ms: w.endedMs === null ? null : Math.round(w.endedMs),
      hourly: w.hourly,
    };
    this.h.write(`the rental ${w.rental}`, (db) =>
      db
        .insertInto("autoscale_workers")
        .values(row)
        .onConflict((oc) =>
          oc.column("rental").doUpdateSet((eb) => ({
            worker: eb.ref("excluded.worker"),
            server_type: eb.ref("excluded.server_type"),
            started_ms: eb.ref("excluded.started_ms"),
            ended_ms: eb.ref("excluded.ended_ms"),
            hourly: eb.ref("excluded.hourly"),
          })),
        )
        .execute(),
    );
  }

  /** Rentals running, or ended at or after `sinceMs` (the budget's month). */
  async autoscaleWorkers(sinceMs: number): Promise<AutoscaleWorkerRow[]> {
    const since = Math.round(sinceMs);
    const rows = await this.h.read("autoscale_workers", (db) =>
      db
        .selectFrom("autoscale_workers")
        .selectAll()
        .where((eb) => eb.or([eb("ended_ms", "is", null), eb("ended_ms", ">=", since)]))
        .orderBy("started_ms")
        .execute(),
    );
    return rows.map((r, i) => {
      const w = this.h.valid(
        autoscaleWorkerRow,
        { ...r, started_ms: Number(r.started_ms), ended_ms: r.ended_ms === null ? null : Number(r.ended_ms) },
        `autoscale_workers #${i}`,
      );
      return {
        rental: w.rental,
        worker: w.worker,
        serverType: w.server_type,
        startedMs: w.started_ms,
        endedMs: w.ended_ms,
        hourly: w.hourly,
      };
    });
  }

  /**
   * Ends the rentals a stopped coordinator left open (worker gc deletes their servers), at `atMs`:
   * every open one, or only those named in `rentals`.
   */
  async closeAutoscaleWorkers(atMs: number, rentals?: readonly string[]): Promise<number> {
    if (rentals?.length === 0) return 0;
    const r = await this.h.read("autoscale_workers", (db) => {
      const open = db
        .updateTable("autoscale_workers")
        .set({ ended_ms: Math.round(atMs) })
        .where("ended_ms", "is", null);
      return (rentals ? open.where("rental", "in", [...rentals]) : open).executeTakeFirst();
    });
    return Number(r.numUpdatedRows);
  }
}
