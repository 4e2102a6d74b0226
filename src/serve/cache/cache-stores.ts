import type { Writable } from "node:stream";
import type { ServeSession } from "../../adapters/nix-serve-session.js";
import type { Trust } from "../../core/builder.js";
import type { PathInfo } from "../../core/nix-serve/messages.js";
import { SessionPool } from "../../dispatch/session-pool.js";
import type { RecordedBuildsSource } from "./recorded-builds.js";

/** Where the cache reads paths: what the coordinator lends it (Coordinator.cacheSources()). */
export interface CacheSources {
  /** The pool's builders, their trust in the inventory, and whether they may answer (up, or still connecting). */
  builders(): { name: string; trust: Trust; up: boolean }[];
  /** A `nix-store --serve` session to this machine's store. */
  openLocal(): Promise<ServeSession>;
  /** A read-only session to a builder's store (over the coordinator's ssh connection to it). */
  openBuilder(name: string): Promise<ServeSession>;
  /** The coordinator's history of who built what (none: only STATE/trust/results.jsonl counts). */
  recorded?: RecordedBuildsSource;
}

/** The holder name of this machine's store (builder names are DNS-like, so never this). */
export const LOCAL_HOLDER = "(this machine)";

/**
 * Sessions per store: NARs stream one per session (at most NAR_SESSIONS at once), and one more
 * answers path queries (batched into one request), so that clients that stop reading NARs never
 * hold up another client's narinfo.
 */
export const NAR_SESSIONS = 3;
const QUERY_SESSIONS = 1;

interface PendingInfo {
  path: string;
  resolve: (i: PathInfo | undefined) => void;
  reject: (e: unknown) => void;
}

/**
 * The cache's sessions to each store that may hold a path, kept warm and lent one request at a
 * time: this machine's store and each builder's. Path queries that arrive together (Nix asks for
 * many narinfos at once) go out as one QueryPathInfos per store.
 */
export class CacheStores {
  private readonly pools = new Map<string, SessionPool<ServeSession>>();
  private readonly queryPools = new Map<string, SessionPool<ServeSession>>();
  private readonly pending = new Map<string, PendingInfo[]>();
  private closed = false;

  constructor(readonly sources: CacheSources) {}

  private pool(holder: string, kind: "nar" | "query"): SessionPool<ServeSession> {
    const pools = kind === "nar" ? this.pools : this.queryPools;
    let p = pools.get(holder);
    if (!p) {
      const open =
        holder === LOCAL_HOLDER ? () => this.sources.openLocal() : () => this.sources.openBuilder(holder);
      p = new SessionPool(open, kind === "nar" ? NAR_SESSIONS : QUERY_SESSIONS, (s) => s.kill());
      pools.set(holder, p);
    }
    return p;
  }

  /** What `holder`'s store knows of `path`; undefined when it does not hold it. */
  pathInfo(holder: string, path: string): Promise<PathInfo | undefined> {
    if (this.closed) return Promise.reject(new Error("the cache is closed"));
    return new Promise((resolve, reject) => {
      const queue = this.pending.get(holder);
      if (queue) {
        queue.push({ path, resolve, reject });
        return;
      }
      this.pending.set(holder, [{ path, resolve, reject }]);
      // Everything asked before the next turn of the event loop goes in one request.
      setImmediate(() => void this.flush(holder));
    });
  }

  private async flush(holder: string): Promise<void> {
    const batch = this.pending.get(holder) ?? [];
    this.pending.delete(holder);
    const paths = [...new Set(batch.map((b) => b.path))];
    try {
      const infos = await this.pool(holder, "query").with((s) =>
        s.queryPathInfos(paths, { timeoutMs: 30_000 }),
      );
      const byPath = new Map(infos.map((i) => [i.path, i]));
      for (const b of batch) b.resolve(byPath.get(b.path));
    } catch (e) {
      for (const b of batch) b.reject(e);
    }
  }

  /**
   * Streams `path`'s NAR from `holder` into `sink` (with backpressure). A store whose sessions are
   * all busy queues the request; `turn` is called when it stops waiting for other downloads (a
   * session is free or opens for it). Aborting ends the session at once (the client went away: the
   * rest of the NAR is not read); a request aborted while it waited never starts ("aborted").
   */
  async dumpNar(
    holder: string,
    path: string,
    sink: Writable,
    signal: AbortSignal,
    turn?: () => void,
  ): Promise<"sent" | "aborted"> {
    if (this.closed) throw new Error("the cache is closed");
    return this.pool(holder, "nar").with(async (s) => {
      // The client left while this request waited for a session: the session goes back unused.
      if (signal.aborted) return "aborted";
      const kill = () => s.kill();
      signal.addEventListener("abort", kill, { once: true });
      try {
        await s.dumpStorePath(path, sink);
        return "sent";
      } finally {
        signal.removeEventListener("abort", kill);
      }
    }, turn);
  }

  /** Whether `holder` has a NAR session free now (or room to open one): a NAR would start without waiting. */
  hasFreeNarSession(holder: string): boolean {
    return this.pool(holder, "nar").hasRoom;
  }

  /** Closes every session. */
  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.pools.values(), ...this.queryPools.values()].flatMap((p) => p.drain());
    await Promise.allSettled(all.map((s) => s.close()));
  }
}
