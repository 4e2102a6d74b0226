import type { Builder } from "../core/builder.js";
import { LOCAL } from "../core/dispatch/scheduler.js";
import type { PathInfo } from "../core/nix-serve/index.js";
import { ServeSession } from "../adapters/nix-serve-session.js";
import type { Fleet } from "../dispatch/fleet.js";
import { LOCAL_SERVE_ARGV } from "../dispatch/serve-sessions.js";
import type { DispatchSession } from "../dispatch/store-session.js";

/** NARs up to this size stream through a builder's transfer session; larger ones get a session of their own. */
export const SMALL_NAR = 4 * 1024 * 1024;

/**
 * The pool's stores as one store, for the gateway (`/api/pool/*`): which paths any of them holds
 * (this machine's, or an up builder's), their path infos and closures from the store that holds
 * them, and NARs streamed from there, never copied into this machine's store first.
 */
export class PoolStore {
  constructor(
    private readonly fleet: Fleet,
    /** A read-only session to a builder beside the dispatcher's (the binary cache's kind). */
    private readonly openReader: ((b: Builder, name: string) => Promise<ServeSession>) | undefined,
  ) {}

  /**
   * The subset of `paths` valid somewhere in the pool. `substitute` (the client's
   * builders-use-substitutes): paths valid nowhere are first substituted into this machine's store
   * from its configured substituters. A path a builder holds needs no copy: it is sent from there
   * when a build or a client needs it.
   */
  async valid(paths: readonly string[], substitute: boolean): Promise<string[]> {
    const where = await this.fleet.paths.locate(paths);
    const missing = paths.filter((p) => !where.has(p));
    if (substitute && missing.length) {
      const got = await this.fleet.local.with((s) => s.queryValidPaths(missing, { substitute: true }));
      for (const p of got) where.set(p, LOCAL);
    }
    return paths.filter((p) => where.has(p));
  }

  /**
   * Makes `paths` (and their closures) valid in this machine's store, copied from the builders
   * that hold them: a path a client uploads must have its references here (Nix refuses it
   * otherwise), and the pool may have answered that a builder holds them. Returns how many paths
   * were copied; throws when one is held nowhere.
   */
  async fetchToLocal(paths: readonly string[]): Promise<number> {
    const { byHolder, nowhere } = await this.fleet.paths.groupByHolder(paths);
    if (nowhere.length) throw new Error(`${nowhere[0]} is in no store of the pool`);
    let copied = 0;
    for (const [holder, held] of byHolder) {
      if (holder === LOCAL) continue;
      const from = this.fleet.links.get(holder)?.transfer;
      if (!from) throw new Error(`builder ${holder} is not connected`);
      const closure = await from.queryClosure(held);
      copied += await this.fleet.localPlace.ensure(
        closure,
        (q) => this.fleet.local.with((s) => s.queryValidPaths(q)),
        (ps) => this.fleet.local.with((l) => this.fleet.transfer(from, l, ps)),
      );
    }
    return copied;
  }

  /** Path infos of the valid ones among `paths`, each from the store holding it. */
  async pathInfos(paths: readonly string[]): Promise<PathInfo[]> {
    const { byHolder } = await this.fleet.paths.groupByHolder(paths);
    const infos = await Promise.all(
      [...byHolder].map(([holder, held]) => this.onHolder(holder, (s) => s.queryPathInfos(held))),
    );
    return infos.flat();
  }

  /** The closure of `paths` (each is valid with its closure in the store holding it); undefined if one is valid nowhere. */
  async closure(paths: readonly string[]): Promise<string[] | undefined> {
    const { byHolder, nowhere } = await this.fleet.paths.groupByHolder(paths);
    if (nowhere.length) return undefined;
    const parts = await Promise.all(
      [...byHolder].map(([holder, held]) => this.onHolder(holder, (s) => s.queryClosure(held))),
    );
    return [...new Set(parts.flat())];
  }

  /**
   * Starts streaming the NAR of `path` from the store that holds it: resolves once that store is
   * found (undefined when none holds it) with a function that writes the NAR into a sink.
   */
  async nar(path: string): Promise<((sink: NodeJS.WritableStream) => Promise<void>) | undefined> {
    const holder = (await this.fleet.paths.locate([path])).get(path);
    if (holder === undefined) return undefined;
    const link = holder === LOCAL ? undefined : this.fleet.links.get(holder);
    if (link?.transfer) {
      const transfer = link.transfer;
      const [info] = await transfer.queryPathInfos([path]);
      if (!this.openReader || (info && info.narSize <= SMALL_NAR))
        return (sink) => transfer.dumpStorePath(path, sink);
      const open = this.openReader;
      return (sink) => withSession(() => open(link.builder, `builder ${link.name} (gateway)`), path, sink);
    }
    return (sink) =>
      withSession(
        () => ServeSession.open({ argv: LOCAL_SERVE_ARGV, name: "this machine's store (gateway)" }),
        path,
        sink,
      );
  }

  private async onHolder<T>(holder: string, fn: (s: DispatchSession) => Promise<T>): Promise<T> {
    if (holder === LOCAL) return this.fleet.local.with(fn);
    const transfer = this.fleet.links.get(holder)?.transfer;
    if (!transfer) throw new Error(`builder ${holder} is not connected`);
    return fn(transfer);
  }
}

/** Dumps one NAR through a session of its own, closed afterwards. */
async function withSession(
  open: () => Promise<ServeSession>,
  path: string,
  sink: NodeJS.WritableStream,
): Promise<void> {
  const s = await open();
  try {
    await s.dumpStorePath(path, sink);
  } finally {
    await s.close();
  }
}
