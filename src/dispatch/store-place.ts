/**
 * What nixpool knows of one store (this machine's, or a builder's): the paths known valid there,
 * and the transfers under way into it, so that no path is sent twice to the same store.
 */
export class StorePlace {
  readonly known = new Set<string>();
  private readonly inflight = new Map<string, Promise<void>>();
  /** Paths sent into this store during the build. */
  sent = 0;
  /** Bytes of the export streams (the NARs and their metadata) sent into this store. */
  sentBytes = 0;

  constructor(readonly name: string) {}

  /**
   * Makes `paths` (a closure, references first) valid here: asks the store about the ones not
   * known, waits for those already on their way (their references must land first), and sends the
   * rest in one transfer (`send` returns the bytes it moved). Returns how many paths this call sent.
   */
  async ensure(
    paths: readonly string[],
    query: (paths: string[]) => Promise<string[]>,
    send: (paths: string[]) => Promise<number>,
  ): Promise<number> {
    let rest = paths.filter((p) => !this.known.has(p) && !this.inflight.has(p));
    if (rest.length) {
      for (const p of await query(rest)) this.known.add(p);
    }
    const waiting = new Set<Promise<void>>();
    for (const p of paths) {
      const w = this.inflight.get(p);
      if (w) waiting.add(w);
    }
    await Promise.all(waiting);
    rest = rest.filter((p) => !this.known.has(p));
    // Another caller may have started sending some of these while we waited.
    const again = new Set<Promise<void>>();
    for (const p of rest) {
      const w = this.inflight.get(p);
      if (w) again.add(w);
    }
    if (again.size) {
      await Promise.all(again);
      rest = rest.filter((p) => !this.known.has(p));
    }
    if (rest.length === 0) return 0;
    const job = send(rest).then((bytes) => {
      for (const p of rest) this.known.add(p);
      this.sent += rest.length;
      this.sentBytes += bytes;
    });
    for (const p of rest) this.inflight.set(p, job);
    try {
      await job;
    } finally {
      for (const p of rest) if (this.inflight.get(p) === job) this.inflight.delete(p);
    }
    return rest.length;
  }

  /** Forgets everything (the builder is gone; what it held cannot be counted on). */
  forget(): void {
    this.known.clear();
  }
}
