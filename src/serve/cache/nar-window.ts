import { Transform, type TransformCallback } from "node:stream";

/**
 * Passes on bytes `start`…`end` (inclusive) of what is written to it and drops the rest: a NAR
 * streamed from a store whole, sent from where a resumed download (`Range: bytes=N-`) asks.
 */
export class NarWindow extends Transform {
  private offset = 0;
  /** Bytes passed on so far. */
  sent = 0;

  constructor(
    private readonly first: number,
    private readonly last: number,
    private readonly onBytes: (n: number) => void,
  ) {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const from = this.offset;
    this.offset += chunk.length;
    const a = Math.max(this.first - from, 0);
    const b = Math.min(this.last + 1 - from, chunk.length);
    if (b > a) {
      this.sent += b - a;
      this.onBytes(b - a);
      this.push(chunk.subarray(a, b));
    }
    done();
  }
}
