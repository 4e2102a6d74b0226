import { Transform, type TransformCallback } from "node:stream";

export interface NarWindowHooks {
  /** Every byte written, in the window or not (the store is sending: a resume's skip is progress). */
  onRead?: (n: number) => void;
  /**
   * The window's last byte has gone out (the readable side has ended). What is written after is
   * dropped: the caller stops the store (a short range of a long NAR need not read the rest).
   */
  onFull?: () => void;
}

/**
 * Passes on bytes `start`…`end` (inclusive) of what is written to it and drops the rest: a NAR
 * streamed from a store whole, sent from where a resumed download (`Range: bytes=N-`) asks, and
 * ended as soon as the range is (`Range: bytes=0-1023`).
 */
export class NarWindow extends Transform {
  private offset = 0;
  private full = false;
  /** Bytes passed on so far. */
  sent = 0;

  constructor(
    private readonly first: number,
    private readonly last: number,
    private readonly onBytes: (n: number) => void,
    private readonly hooks: NarWindowHooks = {},
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const from = this.offset;
    this.offset += chunk.length;
    this.hooks.onRead?.(chunk.length);
    if (this.full) {
      done();
      return;
    }
    const a = Math.max(this.first - from, 0);
    const b = Math.min(this.last + 1 - from, chunk.length);
    if (b > a) {
      this.sent += b - a;
      this.onBytes(b - a);
      this.push(chunk.subarray(a, b));
    }
    if (this.offset > this.last) {
      this.full = true;
      this.push(null);
      done();
      this.hooks.onFull?.();
      return;
    }
    done();
  }
}
