import {
  DEFAULT_WIRE_LIMITS,
  protocolError,
  type DecodeContext,
  type Decoder,
  type WireLimits,
  type WireRequest,
} from "./wire.js";

/**
 * Runs one decoder over bytes arriving in chunks of any size. `push` returns how many bytes of
 * the chunk the decoder consumed: once it is done, the rest belongs to whatever comes next.
 */
export class IncrementalDecoder<T> {
  private readonly gen: Decoder<T>;
  private request: WireRequest | undefined;
  private partial: Uint8Array[] = [];
  private partialSize = 0;
  private consumed = 0;
  private state: { done: false } | { done: true; value: T } = { done: false };
  private failure: Error | undefined;

  constructor(
    make: (ctx: DecodeContext) => Decoder<T>,
    readonly what: string,
    limits: WireLimits = DEFAULT_WIRE_LIMITS,
  ) {
    this.gen = make({ limits, offset: () => this.consumed });
    this.advance(undefined);
  }

  get done(): boolean {
    return this.state.done;
  }

  /** Bytes consumed so far. */
  get offset(): number {
    return this.consumed;
  }

  /** The decoded value; throws unless done. */
  get value(): T {
    if (!this.state.done) throw new Error(`${this.what} is not decoded yet`);
    return this.state.value;
  }

  /** Feeds bytes; returns how many of them were consumed (all of them unless the value completed). */
  push(chunk: Uint8Array): number {
    if (this.failure !== undefined) throw this.failure;
    let at = 0;
    while (!this.state.done && at < chunk.length) {
      const req = this.request;
      if (!req) break;
      if (req.kind === "skip") {
        const take = Math.min(req.n, chunk.length - at);
        at += take;
        this.consumed += take;
        if (take === req.n) this.advance(undefined);
        else this.request = { kind: "skip", n: req.n - take };
        continue;
      }
      const want = req.n - this.partialSize;
      const take = Math.min(want, chunk.length - at);
      if (this.partialSize === 0 && take === req.n) {
        // The whole value is inside this chunk: hand out a view, no copy.
        const view = chunk.subarray(at, at + take);
        at += take;
        this.consumed += take;
        this.advance(view);
        continue;
      }
      this.partial.push(chunk.slice(at, at + take));
      this.partialSize += take;
      at += take;
      this.consumed += take;
      if (this.partialSize === req.n) {
        const joined = concatBytes(this.partial, this.partialSize);
        this.partial = [];
        this.partialSize = 0;
        this.advance(joined);
      }
    }
    return at;
  }

  /** Declares the end of input: throws a truncation error unless the value is complete. */
  finish(): T {
    if (this.failure !== undefined) throw this.failure;
    if (!this.state.done) {
      throw protocolError(
        `The peer's ${this.what} ended after ${this.consumed} bytes, before it was complete.`,
        {
          what: this.what,
          offset: this.consumed,
        },
      );
    }
    return this.state.value;
  }

  private advance(input: Uint8Array | undefined): void {
    try {
      // Zero-length reads and skips complete at once: loop until the decoder needs real bytes.
      let r = this.gen.next(input);
      while (!r.done && r.value.n === 0)
        r = this.gen.next(r.value.kind === "read" ? new Uint8Array(0) : undefined);
      if (r.done) {
        this.state = { done: true, value: r.value };
        this.request = undefined;
      } else {
        this.request = r.value;
      }
    } catch (e) {
      this.failure = e instanceof Error ? e : new Error(String(e));
      this.request = undefined;
      throw this.failure;
    }
  }
}

/** Decodes a complete byte string: truncated input or trailing bytes are protocol errors. */
export function decodeAll<T>(
  bytes: Uint8Array,
  make: (ctx: DecodeContext) => Decoder<T>,
  what: string,
  limits: WireLimits = DEFAULT_WIRE_LIMITS,
): T {
  const d = new IncrementalDecoder(make, what, limits);
  const used = d.push(bytes);
  const value = d.finish();
  if (used !== bytes.length) {
    throw protocolError(`The peer sent ${bytes.length - used} unexpected bytes after its ${what}.`, { what });
  }
  return value;
}

export function concatBytes(
  parts: readonly Uint8Array[],
  size = parts.reduce((n, p) => n + p.length, 0),
): Uint8Array {
  if (parts.length === 1 && parts[0]!.length === size) return parts[0]!;
  const out = new Uint8Array(size);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}
