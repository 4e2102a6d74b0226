/**
 * A small pool of interchangeable sessions, each lent to one user at a time, opened on demand up
 * to `max`. Transfers take a session for their whole duration, so two transfers never wait on
 * each other's requests. A session that ended while lent (a transfer into it was cut) is dropped,
 * and a fresh one opens in its place.
 */
export class SessionPool<S extends { readonly isClosed: boolean }> {
  private readonly idle: S[] = [];
  private readonly waiters: { resolve: (s: S) => void; reject: (e: unknown) => void }[] = [];
  private opened = 0;
  private closed = false;
  readonly all: S[] = [];

  constructor(
    private readonly open: () => Promise<S>,
    private readonly max: number,
    /** Ends a session that finished opening after the pool was drained. */
    private readonly discard: (s: S) => void,
  ) {}

  /** Runs `use` with a session of its own. */
  async with<T>(use: (s: S) => Promise<T>): Promise<T> {
    const s = await this.acquire();
    try {
      return await use(s);
    } finally {
      this.release(s);
    }
  }

  private async acquire(): Promise<S> {
    if (this.closed) throw new Error("session pool closed");
    for (let s = this.idle.pop(); s !== undefined; s = this.idle.pop()) {
      if (!s.isClosed) return s;
      this.opened--;
      this.forget(s);
    }
    if (this.opened < this.max) return this.openFresh();
    return new Promise<S>((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  private async openFresh(): Promise<S> {
    this.opened++;
    try {
      const fresh = await this.open();
      if (this.closed) {
        this.discard(fresh);
        throw new Error("session pool closed");
      }
      this.all.push(fresh);
      return fresh;
    } catch (e) {
      this.opened--;
      throw e;
    }
  }

  private release(s: S): void {
    const next = this.waiters.shift();
    if (s.isClosed) {
      this.opened--;
      this.forget(s);
      // Once drained (the build is ending), nothing new opens: it would outlive the build.
      if (next && this.closed) next.reject(new Error("session pool closed"));
      else if (next) this.openFresh().then(next.resolve, next.reject);
      return;
    }
    if (next) next.resolve(s);
    else this.idle.push(s);
  }

  /** Drops a session that ended, so a long-lived pool (the cache's) does not keep every one it lost. */
  private forget(s: S): void {
    const i = this.all.indexOf(s);
    if (i >= 0) this.all.splice(i, 1);
  }

  /** Stops lending; returns every session opened that is not known to have ended, for the caller to close. */
  drain(): S[] {
    this.closed = true;
    return this.all;
  }
}
