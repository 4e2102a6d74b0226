/** A binary heap: `pop` returns the item that `before` puts first. */
export class ReadyQueue<T> {
  private readonly items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  get size(): number {
    return this.items.length;
  }

  /** The item `pop` would return, left in place. */
  peek(): T | undefined {
    return this.items[0];
  }

  push(item: T): void {
    const xs = this.items;
    xs.push(item);
    let i = xs.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(xs[i] as T, xs[parent] as T)) break;
      [xs[i], xs[parent]] = [xs[parent] as T, xs[i] as T];
      i = parent;
    }
  }

  pop(): T | undefined {
    const xs = this.items;
    const top = xs[0];
    const last = xs.pop();
    if (xs.length === 0 || last === undefined) return top;
    xs[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let best = i;
      if (l < xs.length && this.before(xs[l] as T, xs[best] as T)) best = l;
      if (r < xs.length && this.before(xs[r] as T, xs[best] as T)) best = r;
      if (best === i) break;
      [xs[i], xs[best]] = [xs[best] as T, xs[i] as T];
      i = best;
    }
    return top;
  }
}
