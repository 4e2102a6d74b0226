import type { Builder } from "../builder.js";
import { BuilderBoard } from "./builder-board.js";
import { canBuild } from "./capability.js";
import { compareNatural } from "../natural-order.js";
import { remainingPaths, type BuildGraph, type DrvNode } from "./graph.js";
import { ReadyQueue } from "./ready-queue.js";
import { ANY_BUILDER, type PlacementRule } from "./placement.js";

/** Where outputs can be: this machine's store, or a builder's (by name). */
export const LOCAL = "local";

export type SchedulerBuilder = Pick<
  Builder,
  "name" | "maxJobs" | "speedFactor" | "systems" | "supportedFeatures" | "mandatoryFeatures"
> &
  Partial<Pick<Builder, "trust">>;

export interface SchedulerOptions {
  /** Tries per derivation across builders (default 3). */
  maxAttempts?: number;
  /** Base of the builder backoff (default 60 s; see builderBackoffMs). */
  backoffBaseMs?: number;
  /** Go on with every derivation that does not depend on a failed one. */
  keepGoing?: boolean;
  /** Estimated build time of a derivation, for the critical path. */
  estimateMs?: (node: DrvNode) => number;
  /** Which builders may build what, and how many builds settle a derivation (trust policy, --verify). */
  placement?: PlacementRule;
  /** This build's builders (by name) on a shared board; every builder when absent. */
  only?: ReadonlySet<string>;
  /**
   * Derivations built again although their outputs exist (nixpool verify), each with the builders
   * that may not build it; a builder that holds its outputs may not either (no independent build).
   */
  rebuild?: ReadonlyMap<string, ReadonlySet<string>>;
}

/** Not needed (outside what the roots need), or where it stands. */
export type NodeStatus = "idle" | "waiting" | "ready" | "running" | "done" | "failed" | "skipped";

export interface NodeState {
  status: NodeStatus;
  /** Built here by this build, or found already built ("cached"). */
  outcome: "built" | "cached" | null;
  attempts: number;
  /** Builders an attempt failed on (lost connection, transient failure), in order. */
  failedOn: string[];
  /** Builders whose builds of it succeeded, in order (a placement rule may ask for several). */
  builtOn: string[];
  /** Where all of its outputs are valid: LOCAL and/or builder names. */
  locations: Set<string>;
  priority: number;
  readyMs: number | null;
  runningOn: string | null;
  error: string | null;
}

export interface BuilderState {
  info: SchedulerBuilder;
  /** Slots usable now (sessions open); at most maxJobs. */
  slots: number;
  running: number;
  up: boolean;
  failuresInARow: number;
  downUntilMs: number;
  downReason: string | null;
}

export interface Assignment {
  drv: string;
  builder: string;
}

export interface AssignOptions {
  /** At most this many assignments (default: as many as there are free slots). */
  max?: number;
  /** Left ready for now (another build of the same dispatcher is building it). */
  skip?: (drv: string) => boolean;
}

/** The outcome of an attempt, as the runtime saw it. */
export type AttemptEnd =
  | { kind: "built" }
  | { kind: "failed"; transient: boolean; message: string }
  | { kind: "lost"; message: string };

/**
 * The dispatcher's scheduling state, pure: every decision (what is needed, what is ready, which
 * builder gets which derivation, what a failure or a lost builder changes) is a method call on
 * plain data, driven by events from the runtime, with the clock passed in.
 */
export class Scheduler {
  readonly nodes = new Map<string, NodeState>();
  /** The board's builders: shared with every other build on the same board. */
  readonly builders: Map<string, BuilderState>;
  readonly board: BuilderBoard;
  private readonly queue: ReadyQueue<string>;
  private readonly maxAttempts: number;
  private readonly keepGoing: boolean;
  private readonly placement: PlacementRule;
  private readonly only: ReadonlySet<string> | undefined;
  private readonly rebuild: ReadonlyMap<string, ReadonlySet<string>>;
  /** This build's derivations running now. */
  running = 0;
  /** Set after a failure without --keep-going: nothing new starts. */
  stopping = false;

  constructor(
    readonly graph: BuildGraph,
    /** The pool: a board of its own (one build), or one shared by the builds of a long-lived dispatcher. */
    pool: readonly SchedulerBuilder[] | BuilderBoard,
    options: SchedulerOptions = {},
  ) {
    this.board = pool instanceof BuilderBoard ? pool : new BuilderBoard(pool, options.backoffBaseMs);
    this.builders = this.board.builders;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.keepGoing = options.keepGoing ?? false;
    this.placement = options.placement ?? ANY_BUILDER;
    this.only = options.only;
    this.rebuild = options.rebuild ?? new Map();
    const paths = remainingPaths(graph, options.estimateMs ?? (() => 1000));
    for (const drv of graph.order) {
      this.nodes.set(drv, {
        status: "idle",
        outcome: null,
        attempts: 0,
        failedOn: [],
        builtOn: [],
        locations: new Set(),
        priority: paths.get(drv) ?? 0,
        readyMs: null,
        runningOn: null,
        error: null,
      });
    }
    this.queue = new ReadyQueue<string>((a, b) => {
      const pa = this.state(a).priority;
      const pb = this.state(b).priority;
      if (pa !== pb) return pa > pb;
      return compareNatural(this.node(a).name, this.node(b).name) < 0;
    });
  }

  node(drv: string): DrvNode {
    const n = this.graph.nodes.get(drv);
    if (!n) throw new Error(`unknown derivation ${drv}`);
    return n;
  }

  state(drv: string): NodeState {
    const s = this.nodes.get(drv);
    if (!s) throw new Error(`unknown derivation ${drv}`);
    return s;
  }

  /** Records that every output of `drv` is valid at `location`. */
  addLocation(drv: string, location: string): void {
    // A copy the placement rule does not count (an untrusted builder's, unless its results are accepted
    // and the derivation is not trusted-only).
    const b = this.builders.get(location);
    if (b && !this.placement.counts(this.node(drv), b.info)) return;
    this.state(drv).locations.add(location);
  }

  /**
   * Decides what must be built: walking down from the roots, a derivation whose outputs are
   * valid somewhere (here or on a builder) is done; the rest is needed, and needed derivations
   * whose inputs are all done are ready.
   */
  plan(nowMs: number): void {
    for (const r of this.graph.roots) this.need(r, nowMs);
  }

  private need(drv: string, nowMs: number): void {
    const stack = [drv];
    const touched: string[] = [];
    while (stack.length) {
      const d = stack.pop() as string;
      const s = this.state(d);
      if (s.status !== "idle" && s.status !== "done") continue;
      if (s.locations.size > 0 && !(s.status === "idle" && this.rebuild.has(d))) {
        if (s.status === "idle") {
          s.status = "done";
          s.outcome = "cached";
        }
        continue;
      }
      s.status = "waiting";
      s.outcome = null;
      // Built again from scratch (its outputs were lost): earlier builds no longer count.
      s.builtOn = [];
      touched.push(d);
      for (const dep of this.node(d).deps) stack.push(dep);
    }
    for (const d of touched) this.promoteIfReady(d, nowMs);
  }

  private promoteIfReady(drv: string, nowMs: number): void {
    const s = this.state(drv);
    if (s.status !== "waiting") return;
    if (!this.node(drv).deps.every((dep) => this.state(dep).status === "done")) return;
    s.status = "ready";
    s.readyMs = nowMs;
    this.queue.push(drv);
  }

  /** Needed derivations no builder of the pool could ever build (system or features). */
  incapable(): string[] {
    const all = [...this.builders.values()]
      .map((b) => b.info)
      .filter((b) => !this.only || this.only.has(b.name));
    return [...this.nodes.entries()]
      .filter(([, s]) => s.status !== "idle" && s.status !== "done")
      .map(([drv]) => drv)
      .filter((drv) => !all.some((b) => canBuild(b, this.node(drv))));
  }

  /** A builder's sessions are open: `slots` of them can build. */
  builderUp(name: string, slots: number): void {
    this.board.up(name, slots);
  }

  private builder(name: string): BuilderState {
    const b = this.builders.get(name);
    if (!b) throw new Error(`unknown builder ${name}`);
    return b;
  }

  /**
   * Pairs ready derivations, longest remaining path first, with free slots of capable builders;
   * prefers a builder that was not already tried, then one holding more of the inputs, then the
   * least loaded for its speed.
   */
  assign(options: AssignOptions = {}): Assignment[] {
    if (this.stopping) return [];
    const out: Assignment[] = [];
    const deferred: string[] = [];
    const max = options.max ?? Infinity;
    while (this.queue.size > 0 && out.length < max && this.board.freeSlots() > 0) {
      const drv = this.queue.pop() as string;
      const s = this.state(drv);
      if (s.status !== "ready") continue;
      const b = options.skip?.(drv) ? undefined : this.pickBuilder(drv);
      if (!b) {
        deferred.push(drv);
        continue;
      }
      s.status = "running";
      s.attempts++;
      s.runningOn = b.info.name;
      b.running++;
      this.running++;
      out.push({ drv, builder: b.info.name });
    }
    for (const d of deferred) this.queue.push(d);
    return out;
  }

  /** Whether some derivation is ready (whether a builder is free for it or not). */
  hasReady(): boolean {
    return this.queue.size > 0;
  }

  /** The critical-path priority of the best ready derivation (for ties between builds). */
  topPriority(): number {
    const top = this.queue.peek();
    return top === undefined ? 0 : this.state(top).priority;
  }

  private pickBuilder(drv: string): BuilderState | undefined {
    const node = this.node(drv);
    const s = this.state(drv);
    const free = [...this.builders.values()].filter(
      (b) => b.up && b.running < b.slots && this.mayTake(b, drv),
    );
    const fresh = free.filter((b) => !s.failedOn.includes(b.info.name));
    const candidates = fresh.length ? fresh : free;
    const held = (b: BuilderState) =>
      node.deps.filter((d) => this.state(d).locations.has(b.info.name)).length;
    const load = (b: BuilderState) => b.running / Math.max(1, b.info.speedFactor);
    let best: BuilderState | undefined;
    for (const b of candidates) {
      if (!best) best = b;
      else if (held(b) !== held(best)) best = held(b) > held(best) ? b : best;
      else if (load(b) !== load(best)) best = load(b) < load(best) ? b : best;
    }
    return best;
  }

  /**
   * An attempt ended. Built: the outputs are on the builder and dependents may become ready.
   * A transient failure or a lost connection is tried again elsewhere (at most maxAttempts
   * tries); a permanent failure fails the derivation and skips what depends on it.
   */
  finish(drv: string, end: AttemptEnd, nowMs: number): void {
    const s = this.state(drv);
    const where = s.runningOn;
    if (s.status !== "running" || where === null) return;
    const b = this.builder(where);
    b.running = Math.max(0, b.running - 1);
    this.running = Math.max(0, this.running - 1);
    s.runningOn = null;
    if (end.kind === "built") {
      b.failuresInARow = 0;
      s.builtOn.push(where);
      if (!this.placement.settled(this.node(drv), this.builtOn(drv))) {
        // One more build, on another builder, before anything may use it.
        s.locations.add(where);
        s.status = "ready";
        s.readyMs = nowMs;
        this.queue.push(drv);
        return;
      }
      s.status = "done";
      s.outcome = "built";
      s.locations.add(where);
      for (const l of s.locations) {
        const holder = this.builders.get(l);
        if (holder && !this.placement.counts(this.node(drv), holder.info)) s.locations.delete(l);
      }
      for (const up of this.node(drv).dependents) this.promoteIfReady(up, nowMs);
      return;
    }
    s.failedOn.push(where);
    const retry = end.kind === "lost" || end.transient;
    if (retry && s.attempts < this.maxAttempts) {
      this.requeue(drv, nowMs);
      return;
    }
    s.status = "failed";
    s.error =
      retry && s.attempts >= this.maxAttempts
        ? `${end.message} (gave up after ${s.attempts} tries)`
        : end.message;
    this.skipDependents(drv);
    if (!this.keepGoing) this.stopping = true;
  }

  /**
   * An assignment taken back before it started (another coordinator builds it, or holds the
   * builder's slots): ready again, and no attempt counted.
   */
  putBack(drv: string): void {
    const s = this.state(drv);
    if (s.status !== "running" || s.runningOn === null) return;
    const b = this.builder(s.runningOn);
    b.running = Math.max(0, b.running - 1);
    this.running = Math.max(0, this.running - 1);
    s.runningOn = null;
    s.attempts = Math.max(0, s.attempts - 1);
    s.status = "ready";
    this.queue.push(drv);
  }

  /** Back to the queue; inputs whose outputs were lost meanwhile are needed again first. */
  private requeue(drv: string, nowMs: number): void {
    const s = this.state(drv);
    s.status = "waiting";
    for (const dep of this.node(drv).deps) {
      const d = this.state(dep);
      if (d.status === "done" && d.locations.size === 0) {
        d.status = "idle";
        this.need(dep, nowMs);
      }
    }
    this.promoteIfReady(drv, nowMs);
  }

  private skipDependents(drv: string): void {
    const stack = [...this.node(drv).dependents];
    while (stack.length) {
      const d = stack.pop() as string;
      const s = this.state(d);
      if (s.status !== "waiting" && s.status !== "ready") continue;
      s.status = "skipped";
      s.error = `depends on ${this.node(drv).name}, which failed`;
      stack.push(...this.node(d).dependents);
    }
  }

  /**
   * A builder is gone (connection lost, silent, refused): it gets no work until its backoff
   * ends; what ran there is tried elsewhere (the runtime reports each through `finish` with
   * kind "lost"); outputs only it held are lost, so whatever still needs them is built again.
   */
  builderDown(name: string, reason: string, nowMs: number): void {
    if (this.board.down(name, reason, nowMs)) this.lostOutputsOn(name, nowMs);
  }

  /**
   * What this build loses with a builder the board has marked down: outputs only it held are
   * needed again (a shared board is told once; each build on it learns through this).
   */
  lostOutputsOn(name: string, nowMs: number): void {
    for (const [drv, s] of this.nodes) {
      if (!s.locations.delete(name) || s.locations.size > 0 || s.status !== "done") continue;
      if (this.stillNeeded(drv)) {
        s.status = "idle";
        this.need(drv, nowMs);
        this.rewaitDependents(drv);
      }
    }
  }

  /** Whether a done derivation's outputs are still wanted: a root, or an input of unfinished work. */
  private stillNeeded(drv: string): boolean {
    if (this.graph.roots.includes(drv)) return true;
    return this.node(drv).dependents.some((d) => {
      const st = this.state(d).status;
      return st === "waiting" || st === "ready";
    });
  }

  private rewaitDependents(drv: string): void {
    for (const d of this.node(drv).dependents) {
      const s = this.state(d);
      if (s.status === "ready") s.status = "waiting";
    }
  }

  /** Builders whose backoff has ended and that are worth reconnecting to (the fleet probes them). */
  reconnectable(nowMs: number): string[] {
    return this.board.reconnectable(nowMs);
  }

  /**
   * Another build on the same board built `drv` (its outputs are at `location`): here it counts
   * as found built, and what waited for it may become ready. Unknown or already settled: nothing.
   */
  builtElsewhere(drv: string, location: string, nowMs: number): void {
    const s = this.nodes.get(drv);
    // Unknown here, or being checked by a build of its own (nixpool verify).
    if (!s || this.rebuild.has(drv)) return;
    // Built under the other build's rules: it counts here only if one build there settles it here
    // (no --verify here, a builder this build may use and whose copies count).
    const b = this.builders.get(location)?.info;
    const node = this.node(drv);
    if (
      b &&
      !(
        this.placement.allows(node, b, []) &&
        this.placement.settled(node, [b]) &&
        this.placement.counts(node, b)
      )
    )
      return;
    s.locations.add(location);
    if (s.status !== "waiting" && s.status !== "ready") return;
    s.status = "done";
    s.outcome = "cached";
    for (const up of this.node(drv).dependents) this.promoteIfReady(up, nowMs);
  }

  /** Needed derivations not finished: waiting, ready or running. */
  unfinished(): string[] {
    return [...this.nodes.entries()]
      .filter(([, s]) => s.status === "waiting" || s.status === "ready" || s.status === "running")
      .map(([d]) => d);
  }

  /** Ready derivations that no builder now up could take (for the "every builder is down" error). */
  stuck(): string[] {
    return [...this.nodes.entries()]
      .filter(([, s]) => s.status === "ready")
      .map(([d]) => d)
      .filter((d) => ![...this.builders.values()].some((b) => b.up && b.slots > 0 && this.mayTake(b, d)));
  }

  /** Nix's capability rule and the placement rule: may this builder take the next build of `drv`. */
  private mayTake(b: BuilderState, drv: string): boolean {
    const node = this.node(drv);
    if (this.only && !this.only.has(b.info.name)) return false;
    const barred = this.rebuild.get(drv);
    if (barred && (barred.has(b.info.name) || this.state(drv).locations.has(b.info.name))) return false;
    return canBuild(b.info, node) && this.placement.allows(node, b.info, this.builtOn(drv));
  }

  /** The builders whose builds of `drv` succeeded, as placement rules see them. */
  builtOn(drv: string): SchedulerBuilder[] {
    // A builder taken off the board (a deleted cloud worker) no longer vouches for anything.
    return this.state(drv).builtOn.flatMap((n) => {
      const b = this.builders.get(n);
      return b ? [b.info] : [];
    });
  }
}
