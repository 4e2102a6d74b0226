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

  narinfo(hit: boolean): void {
    this.narinfoRequests++;
    if (hit) this.narinfoHits++;
    else this.narinfoMisses++;
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
    const entry = p;
    return (bytes) => {
      entry.bytes += bytes;
      this.bytesServed += bytes;
    };
  }

  private dropLeast(): void {
    let least: [string, number] | undefined;
    for (const [k, v] of this.perPath) if (!least || v.nars < least[1]) least = [k, v.nars];
    if (least) this.perPath.delete(least[0]);
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
