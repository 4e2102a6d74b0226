/**
 * A small pool of interchangeable sessions, each lent to one user at a time, opened on demand up
 * to `max`. Transfers take a session for their whole duration, so two transfers never wait on
 * each other's requests.
 */
export class SessionPool<S> {
  private readonly idle: S[] = [];
  private readonly waiters: ((s: S) => void)[] = [];
  private opened = 0;
  private closed = false;
  readonly all: S[] = [];

  constructor(
    private readonly open: () => Promise<S>,
    private readonly max: number,
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
    const s = this.idle.pop();
    if (s !== undefined) return s;
    if (this.opened < this.max) {
      this.opened++;
      try {
        const fresh = await this.open();
        this.all.push(fresh);
        return fresh;
      } catch (e) {
        this.opened--;
        throw e;
      }
    }
    return new Promise<S>((resolve) => this.waiters.push(resolve));
  }

  private release(s: S): void {
    const next = this.waiters.shift();
    if (next) next(s);
    else this.idle.push(s);
  }

  /** Stops lending; returns every session opened, for the caller to close. */
  drain(): S[] {
    this.closed = true;
    return this.all;
  }
}
