import { pickFairly, runningByClient } from "../core/dispatch/fair-share.js";
import type { Assignment } from "../core/dispatch/scheduler.js";
import { Durations } from "./durations.js";
import type { Fleet, FleetEvent } from "./fleet.js";
import type { BuilderLink } from "./builder-link.js";
import { SharedClaims, type SharedWork } from "./shared-claims.js";

/** What the dispatcher needs of one build it runs (a BuildRun). */
export interface DispatchedBuild {
  readonly client: string;
  readonly seq: number;
  /** Its derivations running now. */
  readonly running: number;
  readonly topPriority: number;
  /** Ready work that a free slot could take now (planned, not stopping, something ready). */
  wantsSlots(): boolean;
  /** Its scheduler's next assignment, skipping derivations `skip` names. */
  assignOne(skip: (drv: string) => boolean): Assignment | undefined;
  startAttempt(a: Assignment): void;
  /** Another build built `drv` on `builder`. */
  builtElsewhere(drv: string, builder: string): void;
  /** Needed derivations not settled yet (waiting or ready), with their output paths. */
  unsettled(): { drv: string; outputs: string[] }[];
  builderLost(builder: string, reason: string): void;
  wake(): void;
}

/**
 * The dispatcher: one fleet of builder connections, and every build running on it at once. Free
 * slots go to builds by fair share (core/dispatch/fair-share.ts), then by critical path; a
 * derivation two builds need is built once, by the first to start it, and the other counts it as
 * found built. A CLI build is this with one build; `nixpool serve` keeps it alive.
 */
export class Dispatcher {
  private readonly builds = new Set<DispatchedBuild>();
  /** Derivations being built now, by the build building them. */
  private readonly inFlight = new Map<string, DispatchedBuild>();
  private seq = 0;
  private durationsLoad: Promise<Durations> | undefined;
  private readonly unsubscribe: () => void;
  /** Several coordinators share the pool: each attempt claims its derivation and slot first. */
  shared: SharedClaims | undefined;

  constructor(
    readonly fleet: Fleet,
    private readonly durationsFile: string,
  ) {
    this.unsubscribe = fleet.subscribe((e) => this.onFleet(e));
    fleet.beforeSlots = (link) => this.learnHeldBy(link);
  }

  /**
   * A builder that joins while builds wait (a rented worker, one woken from a snapshot, one that
   * came back) may hold outputs they need: one query, before its slots take work, so nothing it
   * holds is built again.
   */
  private async learnHeldBy(link: BuilderLink): Promise<void> {
    const wanted = [...this.builds].map((b) => ({ b, drvs: b.unsettled() }));
    const paths = [...new Set(wanted.flatMap((w) => w.drvs.flatMap((d) => d.outputs)))];
    if (paths.length === 0 || !link.transfer) return;
    const valid = new Set(await link.transfer.queryValidPaths(paths));
    for (const p of valid) link.place.known.add(p);
    for (const { b, drvs } of wanted) {
      for (const d of drvs) if (d.outputs.every((p) => valid.has(p))) b.builtElsewhere(d.drv, link.name);
    }
  }

  /** Shares the pool with other coordinators through `work` (the coordinator's database). */
  share(work: SharedWork): void {
    this.shared = new SharedClaims(work, {
      builtBy: (drv, builder) => {
        // Its outputs are on that builder: copies to other builders are taken from there.
        const known = this.fleet.links.get(builder)?.place.known;
        for (const b of this.builds) {
          for (const d of b.unsettled()) if (d.drv === drv) for (const p of d.outputs) known?.add(p);
          b.builtElsewhere(drv, builder);
        }
      },
      builderUp: (name) => this.fleet.board.builders.get(name)?.up === true,
      wake: () => this.wakeAll(),
    });
  }

  /** The next submission number (fair share's last tie-break). */
  nextSeq(): number {
    return ++this.seq;
  }

  /** Learned build times, read once and shared by every build. */
  durations(): Promise<Durations> {
    this.durationsLoad ??= Durations.load(this.durationsFile);
    return this.durationsLoad;
  }

  attach(b: DispatchedBuild): void {
    this.builds.add(b);
  }

  detach(b: DispatchedBuild): void {
    this.builds.delete(b);
    for (const [drv, owner] of this.inFlight) if (owner === b) this.inFlight.delete(drv);
    this.wakeAll();
  }

  /** Hands out every free slot: one derivation at a time, to the build fair share picks. */
  assign(): void {
    const candidates = [...this.builds].filter((b) => b.wantsSlots());
    if (candidates.length === 0) return;
    const byClient = runningByClient([...this.builds]);
    while (this.fleet.board.freeSlots() > 0 && candidates.length > 0) {
      const next = pickFairly(candidates, byClient) as DispatchedBuild;
      const a = next.assignOne((drv) => {
        if (this.shared?.elsewhere.has(drv)) return true;
        const owner = this.inFlight.get(drv);
        return owner !== undefined && owner !== next;
      });
      if (!a) {
        candidates.splice(candidates.indexOf(next), 1);
        continue;
      }
      byClient.set(next.client, (byClient.get(next.client) ?? 0) + 1);
      this.inFlight.set(a.drv, next);
      next.startAttempt(a);
      if (!next.wantsSlots()) candidates.splice(candidates.indexOf(next), 1);
    }
  }

  /** An attempt of `by` ended; built: every other build needing `drv` has it. */
  attemptEnded(by: DispatchedBuild, drv: string, builtOn?: string): void {
    if (this.inFlight.get(drv) === by) this.inFlight.delete(drv);
    if (builtOn !== undefined) for (const b of this.builds) if (b !== by) b.builtElsewhere(drv, builtOn);
    this.wakeAll();
  }

  wakeAll(): void {
    for (const b of this.builds) b.wake();
  }

  private onFleet(e: FleetEvent): void {
    if (e.kind === "down" || e.kind === "removed")
      for (const b of this.builds) b.builderLost(e.builder, e.reason);
    this.wakeAll();
  }

  /** Stops listening to the fleet (the fleet is shut down by its owner). */
  close(): void {
    this.shared?.close();
    this.unsubscribe();
  }
}
