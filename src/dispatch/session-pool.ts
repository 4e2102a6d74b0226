/**
 * A small pool of interchangeable sessions, each lent to one user at a time, opened on demand up
 * to `max`. Transfers take a session for their whole duration, so two transfers never wait on
 * each other's requests. A session that ended while lent (a transfer into it was cut) is dropped,
 * and a fresh one opens in its place.
 */
export class SessionPool<S extends { readonly isClosed: boolean }> {
  private readonly idle: S[] = [];
  private readonly waiters: {
    turn: (() => void) | undefined;
    resolve: (s: S) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private opened = 0;
  private closed = false;
  readonly all: S[] = [];

  constructor(
    private readonly open: () => Promise<S>,
    private readonly max: number,
    /** Ends a session that finished opening after the pool was drained. */
    private readonly discard: (s: S) => void,
  ) {}

  /**
   * Runs `use` with a session of its own. `turn` is called when this user's turn comes: a session
   * is idle, or one may be opened for it (so the time after it is the store's, not the queue's).
   */
  async with<T>(use: (s: S) => Promise<T>, turn?: () => void): Promise<T> {
    const s = await this.acquire(turn);
    try {
      return await use(s);
    } finally {
      this.release(s);
    }
  }

  private async acquire(turn: (() => void) | undefined): Promise<S> {
    if (this.closed) throw new Error("session pool closed");
    for (let s = this.idle.pop(); s !== undefined; s = this.idle.pop()) {
      if (!s.isClosed) {
        turn?.();
        return s;
      }
      this.opened--;
      this.forget(s);
    }
    if (this.opened < this.max) {
      turn?.();
      return this.openFresh();
    }
    return new Promise<S>((resolve, reject) => this.waiters.push({ turn, resolve, reject }));
  }

  /** Whether a user would get a session now without waiting for another to finish. */
  get hasRoom(): boolean {
    return !this.closed && (this.opened < this.max || this.idle.some((s) => !s.isClosed));
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
      else if (next) {
        next.turn?.();
        this.openFresh().then(next.resolve, next.reject);
      }
      return;
    }
    if (next) {
      next.turn?.();
      next.resolve(s);
    } else this.idle.push(s);
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
