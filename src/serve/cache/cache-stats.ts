/** What the cache served since the coordinator started: GET /api/cache/stats and the dashboard. */
export interface CacheStatsView {
  /** Results the cache may serve now (trusted, per STATE/trust/results.jsonl). */
  servable: number;
  narinfoRequests: number;
  /** Narinfos answered (the path is offered). */
  narinfoHits: number;
  /** Narinfos answered 404 (unknown, untrusted, or held nowhere now). */
  narinfoMisses: number;
  /** NARs sent to their end. */
  narsServed: number;
  /** NAR bytes sent (whole and partial). */
  bytesServed: number;
  /** NAR downloads cut (the store's session or the client went away). */
  narsCut: number;
  /** NAR requests for a byte range (Nix resuming a cut download). */
  rangeRequests: number;
  /** The most requested paths: their NAR downloads and bytes. */
  topPaths: { path: string; nars: number; bytes: number }[];
}

/** Paths whose counts are kept (the least requested are dropped beyond this). */
const MAX_TRACKED = 2000;
const TOP = 10;

/** How often, at most, those watching the numbers (the dashboard's event stream) hear of a change. */
const NOTIFY_EVERY_MS = 500;

/** Counters of the cache, in memory (a restart starts them again). */
export class CacheStats {
  narinfoRequests = 0;
  narinfoHits = 0;
  narinfoMisses = 0;
  narsServed = 0;
  bytesServed = 0;
  narsCut = 0;
  rangeRequests = 0;
  private readonly perPath = new Map<string, { nars: number; bytes: number }>();
  private readonly watchers = new Set<() => void>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly notifyEveryMs = NOTIFY_EVERY_MS) {}

  /** Calls `fn` after the numbers changed, at most once per notifyEveryMs; returns the unsubscribe. */
  watch(fn: () => void): () => void {
    this.watchers.add(fn);
    return () => this.watchers.delete(fn);
  }

  /** Something changed: the watchers hear of it at the end of the current interval. */
  private changed(): void {
    if (this.timer || this.watchers.size === 0) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      for (const fn of [...this.watchers]) fn();
    }, this.notifyEveryMs);
    this.timer.unref();
  }

  narinfo(hit: boolean): void {
    this.narinfoRequests++;
    if (hit) this.narinfoHits++;
    else this.narinfoMisses++;
    this.changed();
  }

  /** A NAR sent to its end. */
  narServed(): void {
    this.narsServed++;
    this.changed();
  }

  /** A NAR download cut midway. */
  narCut(): void {
    this.narsCut++;
    this.changed();
  }

  /** A NAR asked for from a byte on (Nix resuming). */
  rangeRequest(): void {
    this.rangeRequests++;
    this.changed();
  }

  /** A NAR download started (counted per path), then its bytes as they go. */
  narStarted(path: string): (bytes: number) => void {
    let p = this.perPath.get(path);
    if (!p) {
      if (this.perPath.size >= MAX_TRACKED) this.dropLeast();
      p = { nars: 0, bytes: 0 };
      this.perPath.set(path, p);
    }
    p.nars++;
    this.changed();
    const entry = p;
    return (bytes) => {
      entry.bytes += bytes;
      this.bytesServed += bytes;
      this.changed();
    };
  }

  private dropLeast(): void {
    let least: [string, number] | undefined;
    for (const [k, v] of this.perPath) if (!least || v.nars < least[1]) least = [k, v.nars];
    if (least) this.perPath.delete(least[0]);
  }

  /** Stops notifying (the service closes). */
  close(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.watchers.clear();
  }

  view(servable: number): CacheStatsView {
    const topPaths = [...this.perPath.entries()]
      .map(([path, v]) => ({ path, ...v }))
      .sort((a, b) => b.nars - a.nars || b.bytes - a.bytes)
      .slice(0, TOP);
    return {
      servable,
      narinfoRequests: this.narinfoRequests,
      narinfoHits: this.narinfoHits,
      narinfoMisses: this.narinfoMisses,
      narsServed: this.narsServed,
      bytesServed: this.bytesServed,
      narsCut: this.narsCut,
      rangeRequests: this.rangeRequests,
      topPaths,
    };
  }
}
