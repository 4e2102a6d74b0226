import { builderBackoffMs } from "./backoff.js";
import type { BuilderState, SchedulerBuilder } from "./scheduler.js";

/**
 * The pool's slots, shared by every build the dispatcher runs at once: which builders are up,
 * how many slots each has open and how many of them run something, and the backoff of those that
 * are down. One board per dispatcher; each build's Scheduler takes and frees slots on it, so no
 * builder ever runs more than its slots, whatever the number of builds.
 */
export class BuilderBoard {
  readonly builders = new Map<string, BuilderState>();

  constructor(
    builders: readonly SchedulerBuilder[],
    private readonly backoffBaseMs = 60_000,
  ) {
    for (const b of builders) this.add(b);
  }

  /** A builder joins the board (down until its sessions are open). */
  add(b: SchedulerBuilder): void {
    if (this.builders.has(b.name)) throw new Error(`builder ${b.name} is on the board already`);
    this.builders.set(b.name, {
      info: b,
      slots: 0,
      running: 0,
      up: false,
      failuresInARow: 0,
      downUntilMs: 0,
      downReason: null,
    });
  }

  /** Takes an idle builder off the board; false (and nothing changes) while it runs something. */
  remove(name: string): boolean {
    const b = this.builders.get(name);
    if (!b) return true;
    if (b.running > 0) return false;
    this.builders.delete(name);
    return true;
  }

  get(name: string): BuilderState {
    const b = this.builders.get(name);
    if (!b) throw new Error(`unknown builder ${name}`);
    return b;
  }

  /** A builder's sessions are open: `slots` of them can build. */
  up(name: string, slots: number): void {
    const b = this.get(name);
    b.up = true;
    b.slots = Math.min(slots, b.info.maxJobs);
    b.downReason = null;
  }

  /**
   * A builder is gone: no work until its backoff ends. Returns false when it was down already
   * (several sessions report one loss).
   */
  down(name: string, reason: string, nowMs: number): boolean {
    const b = this.get(name);
    if (!b.up && b.downReason !== null) return false;
    this.backOff(b, reason, nowMs);
    return true;
  }

  /** A probe of a down builder failed: it waits longer (the backoff grows with each failure in a row). */
  probeFailed(name: string, reason: string, nowMs: number): void {
    this.backOff(this.get(name), reason, nowMs);
  }

  private backOff(b: BuilderState, reason: string, nowMs: number): void {
    b.up = false;
    b.slots = 0;
    b.failuresInARow++;
    b.downUntilMs = nowMs + builderBackoffMs(b.failuresInARow, this.backoffBaseMs);
    b.downReason = reason;
  }

  /** Builders whose backoff has ended: worth probing again. */
  reconnectable(nowMs: number): string[] {
    return [...this.builders.values()]
      .filter((b) => !b.up && b.downReason !== null && b.downUntilMs <= nowMs)
      .map((b) => b.info.name);
  }

  /** Open slots that run nothing, over every builder that is up. */
  freeSlots(): number {
    let n = 0;
    for (const b of this.builders.values()) if (b.up) n += Math.max(0, b.slots - b.running);
    return n;
  }
}
