import { LOCAL, type Scheduler } from "../core/dispatch/scheduler.js";
import type { DrvNode } from "../core/dispatch/graph.js";
import type { BuilderLink } from "./builder-link.js";
import type { PoolPaths } from "./pool-paths.js";
import type { SessionPool } from "./session-pool.js";
import type { StorePlace } from "./store-place.js";
import type { DispatchSession, TransferPaths } from "./store-session.js";

/** Raised inside an attempt when it must be tried again without blaming its builder. */
export class Requeue extends Error {}

/**
 * Moving store paths for a build: a derivation's inputs to its builder (from another builder or
 * from here) and outputs back here; only what the receiving store lacks is sent, once.
 */
export class StoreTransfers {
  constructor(
    private readonly scheduler: Scheduler,
    private readonly links: ReadonlyMap<string, BuilderLink>,
    private readonly local: SessionPool<DispatchSession>,
    private readonly localPlace: StorePlace,
    private readonly transfer: TransferPaths,
    /**
     * Set for derivations given by value (the gateway's): their inputs may be valid only on
     * builders (what another client sent or had built), and come from there.
     */
    private readonly pool?: PoolPaths,
  ) {}

  /**
   * Brings a derivation's inputs to the builder, sending only what it lacks: outputs that live on
   * another builder stream straight from that builder (through this process, not this store),
   * everything else comes from this machine's store.
   */
  async ensureInputs(node: DrvNode, link: BuilderLink, session: DispatchSession): Promise<void> {
    const fromOthers = new Map<BuilderLink, string[]>();
    for (const dep of node.deps) {
      const st = this.scheduler.state(dep);
      if (st.locations.has(link.name) || st.locations.has(LOCAL)) continue;
      const holder = [...st.locations].map((l) => this.links.get(l)).find((l) => l && !l.lostReason);
      if (!holder)
        throw new Requeue(`the outputs of ${this.scheduler.node(dep).name} are on no reachable builder`);
      fromOthers.set(holder, [...(fromOthers.get(holder) ?? []), dep]);
    }
    for (const [holder, deps] of fromOthers) await this.sendBetweenBuilders(holder, link, session, deps);
    let send = node.inputPaths.filter((p) => !link.place.known.has(p));
    if (send.length && this.pool) send = await this.sendFromPool(send, link, session);
    if (send.length === 0) return;
    const closure = await this.local.with((s) => s.queryClosure(send));
    await link.place.ensure(
      closure,
      (q) => session.queryValidPaths(q),
      (paths) => this.local.with((l) => this.transfer(l, session, paths)),
    );
  }

  /**
   * Sends the inputs that only builders hold, each from a builder that holds it (its closure is
   * there too); returns those valid in this machine's store, for the caller to send from here.
   */
  private async sendFromPool(
    paths: readonly string[],
    link: BuilderLink,
    session: DispatchSession,
  ): Promise<string[]> {
    const unsure = paths.filter((p) => !this.localPlace.known.has(p));
    if (unsure.length === 0) return [...paths];
    const { byHolder, nowhere } = await (this.pool as PoolPaths).groupByHolder(unsure);
    if (nowhere.length) {
      throw new Error(
        `${nowhere.length} input${nowhere.length > 1 ? "s" : ""} (${nowhere[0]}) valid in no reachable store of the pool`,
      );
    }
    for (const [name, held] of byHolder) {
      if (name === LOCAL) continue;
      if (name === link.name) {
        for (const p of held) link.place.known.add(p);
        continue;
      }
      const holder = this.links.get(name) as BuilderLink;
      const from = holder.transfer as DispatchSession;
      try {
        const closure = await from.queryClosure(held);
        await link.place.ensure(
          closure,
          (q) => session.queryValidPaths(q),
          (ps) => this.transfer(from, session, ps),
        );
      } catch (e) {
        if (holder.lostReason && !link.lostReason)
          throw new Requeue(`builder ${holder.name} was lost while sending inputs`);
        throw e;
      }
    }
    return paths.filter((p) => this.localPlace.known.has(p));
  }

  /** Streams derivations' outputs (with what they reference) from one builder to another. */
  async sendBetweenBuilders(
    holder: BuilderLink,
    link: BuilderLink,
    session: DispatchSession,
    deps: readonly string[],
  ): Promise<void> {
    const from = holder.transfer as DispatchSession;
    const outs = deps.flatMap((d) => Object.values(this.scheduler.node(d).outputs));
    try {
      const closure = await from.queryClosure(outs);
      await link.place.ensure(
        closure,
        (q) => session.queryValidPaths(q),
        (paths) => this.transfer(from, session, paths),
      );
    } catch (e) {
      if (holder.lostReason && !link.lostReason)
        throw new Requeue(`builder ${holder.name} was lost while sending inputs`);
      throw e;
    }
    for (const d of deps) this.scheduler.addLocation(d, link.name);
  }

  /** Copies a derivation's outputs (with their closure) from a builder into this machine's store. */
  async fetchToLocal(drv: string, holder: BuilderLink): Promise<void> {
    const outs = Object.values(this.scheduler.node(drv).outputs);
    const from = holder.transfer as DispatchSession;
    try {
      const closure = await from.queryClosure(outs);
      await this.localPlace.ensure(
        closure,
        (q) => this.local.with((s) => s.queryValidPaths(q)),
        (paths) => this.local.with((l) => this.transfer(from, l, paths)),
      );
    } catch (e) {
      if (holder.lostReason) throw new Requeue(`builder ${holder.name} was lost while sending outputs`);
      throw e;
    }
    this.scheduler.addLocation(drv, LOCAL);
  }
}
