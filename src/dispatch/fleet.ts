import type { Builder } from "../core/builder.js";
import type { BuildNeeds } from "../core/dispatch/capability.js";
import { BuilderBoard } from "../core/dispatch/builder-board.js";
import { LOCAL } from "../core/dispatch/scheduler.js";
import { BuilderLink } from "./builder-link.js";
import { PoolPaths } from "./pool-paths.js";
import { SessionPool } from "./session-pool.js";
import { StorePlace } from "./store-place.js";
import type { DispatchSession, OpenSession, TransferPaths } from "./store-session.js";

export interface FleetSessions {
  openBuilder: OpenSession;
  openLocal: () => Promise<DispatchSession>;
  transfer: TransferPaths;
}

export interface FleetOptions {
  /** Base of the builder backoff (default 60 s; see core/dispatch/backoff.ts). */
  backoffBaseMs?: number;
  /** Probe lost builders again once their backoff ends, and take them back (default true). */
  reconnect?: boolean;
  /**
   * STATE/trust/results.jsonl: which results trusted builders built, so that `paths` counts an
   * untrusted builder's copy only when the trust policy accepts it (without it: never).
   */
  resultsFile?: string;
}

/** What happens to the fleet's builders. */
export type FleetEvent =
  | { kind: "up"; builder: string; slots: number }
  | { kind: "down"; builder: string; reason: string }
  | { kind: "probe"; builder: string }
  /** Taken out of the pool for good (an autoscaled worker, idle, about to be deleted). */
  | { kind: "removed"; builder: string; reason: string };

/**
 * nixpool's connections to the pool, outliving any one build: a BuilderLink per builder (a
 * transfer session and one session per slot), this machine's store sessions, and the board of
 * slots every build shares. A lost builder is probed again when its backoff ends (growing with
 * each failure in a row) and, once it answers, takes work again.
 */
export class Fleet {
  readonly board: BuilderBoard;
  readonly links = new Map<string, BuilderLink>();
  readonly local: SessionPool<DispatchSession>;
  readonly localPlace = new StorePlace(LOCAL);
  /** Where a path is valid in the pool (this store, or a builder's). */
  readonly paths: PoolPaths;
  /** Resolves once every builder's first connection has settled (its transfer session is up, or not). */
  connected: Promise<void> = Promise.resolve();
  connectMs = 0;
  private readonly t0 = Date.now();
  private readonly listeners = new Set<(e: FleetEvent) => void>();
  private readonly probing = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private ended = false;
  private readonly pool: Builder[];
  /**
   * Whether builders for these needs may still join (the coordinator's autoscaler can rent one):
   * a build then waits for them rather than failing with NO_CAPABLE_BUILDER or ALL_BUILDERS_DOWN.
   */
  mayGrow: ((needs: BuildNeeds) => boolean) | undefined;
  /**
   * Asked once a builder's link is connected and before its slots take work (the dispatcher: which
   * waiting outputs the builder already holds — a worker woken from a snapshot holds many).
   */
  beforeSlots: ((link: BuilderLink) => Promise<void>) | undefined;

  constructor(
    builders: readonly Builder[],
    private readonly sessions: FleetSessions,
    private readonly options: FleetOptions = {},
  ) {
    this.pool = [...builders];
    this.board = new BuilderBoard(builders, options.backoffBaseMs);
    this.local = new SessionPool(
      () => sessions.openLocal(),
      4,
      (s) => s.kill(),
    );
    this.paths = new PoolPaths(this.links, this.local, this.localPlace, options.resultsFile);
  }

  /** The builders of the pool now (builders join and leave while a coordinator runs). */
  get builders(): readonly Builder[] {
    return this.pool;
  }

  /** A builder joins the running fleet (a rented worker that answers): connected at once. */
  addBuilder(b: Builder): void {
    if (this.ended) return;
    this.pool.push(b);
    this.board.add(b);
    void this.connectLink(b);
  }

  /**
   * Takes an idle builder out of the pool for good: no new work, its sessions closed. False (and
   * nothing changes) while it builds something. Builds lose the outputs only it held.
   */
  removeBuilder(name: string, reason: string): boolean {
    if (!this.board.remove(name)) return false;
    const i = this.pool.findIndex((b) => b.name === name);
    if (i >= 0) this.pool.splice(i, 1);
    const link = this.links.get(name);
    this.links.delete(name);
    this.probing.delete(name);
    if (link) void link.close().catch(() => link.kill());
    this.emit({ kind: "removed", builder: name, reason });
    return true;
  }

  /** ms since the fleet started: the board's clock. */
  now(): number {
    return Date.now() - this.t0;
  }

  get transfer(): TransferPaths {
    return this.sessions.transfer;
  }

  subscribe(fn: (e: FleetEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: FleetEvent): void {
    for (const fn of this.listeners) fn(e);
  }

  /** Connects to every builder at once (and opens one session to this store). */
  start(): void {
    void this.local.with(() => Promise.resolve()).catch(() => undefined);
    const t = this.now();
    this.connected = Promise.all(this.builders.map((b) => this.connectLink(b))).then(() => {
      this.connectMs = this.now() - t;
    });
  }

  private async connectLink(b: Builder): Promise<void> {
    const link = new BuilderLink(b, this.sessions.openBuilder, (l, why) => this.lost(l, why));
    this.links.set(b.name, link);
    try {
      await link.connect();
      if (this.beforeSlots && !link.lostReason) await this.beforeSlots(link).catch(() => undefined);
      // The slot sessions ride on the transfer session's ssh connection (see serve-sessions.ts).
      link.openSlotSessions((n) => {
        if (link.lostReason || this.links.get(b.name) !== link || this.ended) return;
        this.board.up(b.name, n);
        this.emit({ kind: "up", builder: b.name, slots: n });
      });
    } catch (e) {
      // Lost, not only killed: a link without a reason would count as still opening its slots.
      if (!link.lostReason) link.fail(e instanceof Error ? e.message : String(e));
    }
  }

  private lost(link: BuilderLink, reason: string): void {
    if (this.ended || this.links.get(link.name) !== link) return;
    if (this.probing.has(link.name)) this.board.probeFailed(link.name, reason, this.now());
    else if (!this.board.down(link.name, reason, this.now())) return;
    this.emit({ kind: "down", builder: link.name, reason });
    this.scheduleProbe();
  }

  /** Builders still connecting (first connection, slots opening, or a probe): more slots may come. */
  opening(): number {
    let n = this.probing.size;
    for (const l of this.links.values()) {
      if (!l.lostReason && l.openSlots < l.builder.maxJobs && !this.probing.has(l.name)) n++;
    }
    return n;
  }

  /** A builder being probed again after its backoff. */
  isProbing(name: string): boolean {
    return this.probing.has(name);
  }

  /** Lost, and no probe under way (a probe's fresh link is not lost while it connects). */
  private waitsForProbe(name: string): boolean {
    return !this.probing.has(name) && this.links.get(name)?.lostReason !== undefined;
  }

  private dueForProbe(nowMs: number): string[] {
    return this.board.reconnectable(nowMs).filter((name) => this.waitsForProbe(name));
  }

  private scheduleProbe(): void {
    if (this.options.reconnect === false || this.ended) return;
    clearTimeout(this.timer);
    const due = [...this.board.builders.values()]
      .filter((b) => this.waitsForProbe(b.info.name))
      .map((b) => b.downUntilMs);
    if (due.length === 0) return;
    this.timer = setTimeout(() => this.probeDue(), Math.max(0, Math.min(...due) - this.now()));
    this.timer.unref();
  }

  private probeDue(): void {
    if (this.ended) return;
    for (const name of this.dueForProbe(this.now())) {
      const b = this.builders.find((x) => x.name === name);
      if (!b) continue;
      this.probing.add(name);
      this.emit({ kind: "probe", builder: name });
      void this.connectLink(b).finally(() => {
        this.probing.delete(name);
        this.scheduleProbe();
      });
    }
    this.scheduleProbe();
  }

  /** Ends every session at once (Ctrl-C): remote builds stop with their sessions. */
  kill(): void {
    for (const l of this.links.values()) l.kill();
  }

  /** Closes every session: cleanly, or at once (`hard`: after a failure or Ctrl-C). */
  async shutdown(hard: boolean): Promise<void> {
    this.ended = true;
    clearTimeout(this.timer);
    await Promise.allSettled(
      [...this.links.values()].map((l) => (hard ? Promise.resolve(l.kill()) : l.close())),
    );
    await Promise.allSettled(this.local.drain().map((s) => (hard ? Promise.resolve(s.kill()) : s.close())));
  }
}
