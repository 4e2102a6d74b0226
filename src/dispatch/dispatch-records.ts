import type { DerivationRecord, StatusSnapshot } from "../core/build-record.js";
import type { Scheduler } from "../core/dispatch/scheduler.js";
import type { BuilderLink } from "./builder-link.js";

/** The build's record of every derivation it needed, kept in line with the scheduler's state. */
export class RecordBook {
  readonly records = new Map<string, DerivationRecord>();

  /** The record of a derivation, created (queued) the first time it is asked for. */
  get(drv: string, scheduler: Scheduler, nowMs: number): DerivationRecord {
    let r = this.records.get(drv);
    if (!r) {
      r = {
        drv,
        name: scheduler.node(drv).name,
        status: "queued",
        builder: null,
        slot: null,
        attempts: 0,
        retries: [],
        readyMs: null,
        startedMs: null,
        finishedMs: null,
        spans: [],
        error: null,
      };
      this.records.set(drv, r);
      syncRecord(r, scheduler, nowMs);
    }
    return r;
  }

  /** Syncs the given derivations' records (every record when none are given). */
  sync(scheduler: Scheduler, nowMs: number, drvs?: Iterable<string>): void {
    if (drvs === undefined) {
      for (const r of this.records.values()) syncRecord(r, scheduler, nowMs);
      return;
    }
    for (const d of drvs) {
      const r = this.records.get(d);
      if (r) syncRecord(r, scheduler, nowMs);
    }
  }

  /** The live status: counts, and per builder its state and what runs on which slot. */
  snapshot(nowMs: number, links: readonly BuilderLink[], scheduler: Scheduler): StatusSnapshot {
    const counts = { built: 0, cached: 0, running: 0, queued: 0, failed: 0, skipped: 0 };
    const runningOn = new Map<string, { slot: number; name: string }[]>();
    for (const r of this.records.values()) {
      counts[r.status]++;
      if (r.status === "running" && r.builder) {
        runningOn.set(r.builder, [...(runningOn.get(r.builder) ?? []), { slot: r.slot ?? 0, name: r.name }]);
      }
    }
    return {
      elapsedMs: nowMs,
      total: this.records.size,
      done: counts.built + counts.cached,
      running: counts.running,
      queued: counts.queued,
      failed: counts.failed,
      builders: links.map((l) => ({
        name: l.name,
        slots: l.builder.maxJobs,
        state: l.lostReason ? "down" : scheduler.builders.get(l.name)?.up ? "up" : "connecting",
        running: runningOn.get(l.name) ?? [],
      })),
    };
  }
}

function syncRecord(r: DerivationRecord, scheduler: Scheduler, nowMs: number): void {
  const s = scheduler.state(r.drv);
  r.attempts = s.attempts;
  r.readyMs ??= s.readyMs;
  r.error = s.error;
  const was = r.status;
  switch (s.status) {
    case "done":
      r.status = s.outcome === "built" ? "built" : "cached";
      break;
    case "failed":
    case "skipped":
      r.status = s.status;
      break;
    case "running":
      r.status = "running";
      break;
    default:
      r.status = "queued";
  }
  if (r.status !== was && (r.status === "built" || r.status === "failed")) r.finishedMs = nowMs;
}
