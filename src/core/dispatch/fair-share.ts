/** A build with ready work, as fair share sees it. */
export interface FairShareCandidate {
  /** Who submitted it: slots are shared between clients first, then between one client's builds. */
  client: string;
  /** Its derivations running now. */
  running: number;
  /** Submission order (smaller: earlier). */
  seq: number;
  /** Critical-path priority of its best ready derivation. */
  topPriority: number;
}

/**
 * The build whose ready work takes the next free slot: the client with the fewest derivations
 * running, then that client's build with the fewest running, then the longer critical path, then
 * the earlier build. A small build submitted after a big one so gets slots as soon as any frees,
 * instead of waiting for the big one to finish; one build alone is plain critical-path order.
 */
export function pickFairly<C extends FairShareCandidate>(
  candidates: readonly C[],
  /** Derivations running per client over all its builds (default: over the candidates). */
  byClient: ReadonlyMap<string, number> = runningByClient(candidates),
): C | undefined {
  let best: C | undefined;
  for (const c of candidates) {
    if (!best || comesFirst(c, best, byClient)) best = c;
  }
  return best;
}

function comesFirst<C extends FairShareCandidate>(
  a: C,
  b: C,
  byClient: ReadonlyMap<string, number>,
): boolean {
  const ca = byClient.get(a.client) ?? 0;
  const cb = byClient.get(b.client) ?? 0;
  if (ca !== cb) return ca < cb;
  if (a.running !== b.running) return a.running < b.running;
  if (a.topPriority !== b.topPriority) return a.topPriority > b.topPriority;
  return a.seq < b.seq;
}

/** Derivations running per client, summed over its builds. */
export function runningByClient(
  builds: readonly Pick<FairShareCandidate, "client" | "running">[],
): Map<string, number> {
  const by = new Map<string, number>();
  for (const b of builds) by.set(b.client, (by.get(b.client) ?? 0) + b.running);
  return by;
}
