import { LOCAL } from "../core/dispatch/scheduler.js";
import type { BuilderLink } from "./builder-link.js";
import type { SessionPool } from "./session-pool.js";
import type { StorePlace } from "./store-place.js";
import type { DispatchSession } from "./store-session.js";

/**
 * The pool's stores seen as one: where a store path is valid, this machine's store first, else a
 * builder that is up (what it was seen to hold or to build, else asked in one request per builder).
 * The gateway answers QueryValidPaths from it, and a derivation given by value takes its inputs
 * from wherever they are.
 */
export class PoolPaths {
  constructor(
    private readonly links: ReadonlyMap<string, BuilderLink>,
    private readonly local: SessionPool<DispatchSession>,
    private readonly localPlace: StorePlace,
  ) {}

  /** Builders whose connection is up (their transfer session answers queries). */
  upLinks(): BuilderLink[] {
    return [...this.links.values()].filter((l) => !l.lostReason && l.transfer && !l.transfer.isClosed);
  }

  /**
   * Where each of `paths` is valid: LOCAL (this machine's store), else the name of a builder that
   * is up. Paths valid nowhere are left out; a builder that fails to answer counts as holding nothing.
   */
  async locate(paths: readonly string[]): Promise<Map<string, string>> {
    const where = new Map<string, string>();
    if (paths.length === 0) return where;
    for (const p of await this.local.with((s) => s.queryValidPaths(paths))) {
      where.set(p, LOCAL);
      this.localPlace.known.add(p);
    }
    const links = this.upLinks();
    let rest = paths.filter((p) => !where.has(p));
    for (const p of rest) {
      const holder = links.find((l) => l.place.known.has(p));
      if (holder) where.set(p, holder.name);
    }
    rest = rest.filter((p) => !where.has(p));
    if (rest.length === 0 || links.length === 0) return where;
    const answers = await Promise.all(
      links.map(async (l) => {
        try {
          return { l, valid: await (l.transfer as DispatchSession).queryValidPaths(rest) };
        } catch {
          return { l, valid: [] };
        }
      }),
    );
    for (const { l, valid } of answers) {
      for (const p of valid) {
        l.place.known.add(p);
        if (!where.has(p)) where.set(p, l.name);
      }
    }
    return where;
  }

  /** `paths` grouped by the store that holds them (LOCAL or a builder's name), and those valid nowhere. */
  async groupByHolder(
    paths: readonly string[],
  ): Promise<{ byHolder: Map<string, string[]>; nowhere: string[] }> {
    const where = await this.locate(paths);
    const byHolder = new Map<string, string[]>();
    const nowhere: string[] = [];
    for (const p of paths) {
      const h = where.get(p);
      if (h === undefined) nowhere.push(p);
      else byHolder.set(h, [...(byHolder.get(h) ?? []), p]);
    }
    return { byHolder, nowhere };
  }
}
