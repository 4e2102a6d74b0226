import { stat } from "node:fs/promises";
import { indexServableResults, storeHashOf, type ServableIndex } from "../core/binary-cache/servable.js";
import { LOCAL } from "../core/dispatch/scheduler.js";
import type { BuilderLink } from "./builder-link.js";
import { readResultRecords } from "./result-records.js";
import type { SessionPool } from "./session-pool.js";
import type { StorePlace } from "./store-place.js";
import type { DispatchSession } from "./store-session.js";

/**
 * The pool's stores seen as one: where a store path is valid, this machine's store first, else a
 * trusted builder that is up (what it was seen to hold or to build, else asked in one request per
 * builder), else an untrusted builder whose copy the trust policy accepts: a result a trusted
 * builder built to the same NAR hash (the binary cache's rule, core/binary-cache/servable.ts, from
 * STATE/trust/results.jsonl). The gateway answers QueryValidPaths from it, and a derivation given
 * by value takes its inputs from wherever they are.
 */
export class PoolPaths {
  private servable: { stamp: string; index: ServableIndex } | undefined;

  constructor(
    private readonly links: ReadonlyMap<string, BuilderLink>,
    private readonly local: SessionPool<DispatchSession>,
    private readonly localPlace: StorePlace,
    /** STATE/trust/results.jsonl; without it, an untrusted builder holds nothing for the pool. */
    private readonly resultsFile?: string,
  ) {}

  /** Builders whose connection is up (their transfer session answers queries). */
  upLinks(): BuilderLink[] {
    return [...this.links.values()].filter((l) => !l.lostReason && l.transfer && !l.transfer.isClosed);
  }

  /**
   * Where each of `paths` is valid: LOCAL (this machine's store), else the name of a builder that
   * is up and holds it as the trust policy accepts (see the class). Paths valid nowhere are left
   * out; a builder that fails to answer counts as holding nothing.
   */
  async locate(paths: readonly string[]): Promise<Map<string, string>> {
    const where = new Map<string, string>();
    if (paths.length === 0) return where;
    for (const p of await this.local.with((s) => s.queryValidPaths(paths))) {
      where.set(p, LOCAL);
      this.localPlace.known.add(p);
    }
    // Trusted builders first: an untrusted one is asked only for what no trusted store holds.
    const links = this.upLinks().sort((a, b) => trustRank(a) - trustRank(b));
    let rest = paths.filter((p) => !where.has(p));
    // What each builder holds (known or answered), in one list per builder (paths may be 100,000).
    const seen = new Map<BuilderLink, string[]>();
    const hold = (l: BuilderLink, p: string) => {
      const list = seen.get(l);
      if (list) list.push(p);
      else seen.set(l, [p]);
    };
    const knownHeld = new Set<string>();
    for (const p of rest) {
      const holder = links.find((l) => l.builder.trust === "trusted" && l.place.known.has(p));
      if (!holder) continue;
      hold(holder, p);
      knownHeld.add(p);
    }
    rest = rest.filter((p) => !knownHeld.has(p));
    const answers =
      rest.length === 0
        ? []
        : await Promise.all(
            links.map(async (l) => {
              try {
                return { l, valid: await (l.transfer as DispatchSession).queryValidPaths(rest) };
              } catch {
                return { l, valid: [] as string[] };
              }
            }),
          );
    for (const { l, valid } of answers) {
      for (const p of valid) {
        l.place.known.add(p);
        hold(l, p);
      }
    }
    for (const l of links) {
      const held = (seen.get(l) ?? []).filter((p) => !where.has(p));
      if (held.length === 0) continue;
      const accepted = l.builder.trust === "trusted" ? held : await this.acceptedOn(l, held);
      for (const p of accepted) where.set(p, l.name);
    }
    return where;
  }

  /**
   * Of `held`, what an untrusted builder holds as the trust policy would accept it: results a
   * trusted builder built (core/binary-cache/servable.ts decides, as for the binary cache) whose
   * copy there has a NAR hash a trusted builder reported. Anything else (sources it was sent,
   * results only untrusted builders built, a tampered copy) is not the pool's.
   */
  private async acceptedOn(link: BuilderLink, held: readonly string[]): Promise<string[]> {
    const index = await this.servableIndex();
    const candidates = held.filter((p) => index.byHash.get(storeHashOf(p))?.path === p);
    if (candidates.length === 0) return [];
    let infos;
    try {
      infos = await (link.transfer as DispatchSession).queryPathInfos(candidates);
    } catch {
      return [];
    }
    return infos
      .filter((i) => index.byHash.get(storeHashOf(i.path))?.narHashes.includes(i.narHash) === true)
      .map((i) => i.path);
  }

  /** The trusted results, read again when the results file changed. */
  private async servableIndex(): Promise<ServableIndex> {
    if (this.resultsFile === undefined) return { byHash: new Map(), untrustedOnly: new Set() };
    const st = await stat(this.resultsFile).catch(() => undefined);
    const trustNow = new Map([...this.links.values()].map((l) => [l.name, l.builder.trust]));
    const stamp = `${st ? `${st.size}:${st.mtimeMs}` : "none"}|${[...trustNow].join(",")}`;
    if (this.servable?.stamp !== stamp) {
      const records = await readResultRecords(this.resultsFile);
      this.servable = { stamp, index: indexServableResults(records, (b) => trustNow.get(b)) };
    }
    return this.servable.index;
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

function trustRank(l: BuilderLink): number {
  return l.builder.trust === "trusted" ? 0 : 1;
}
