import {
  IncrementalDecoder,
  protocolError,
  type DecodeContext,
  type Decoder,
  type WireLimits,
} from "../../core/nix-serve/index.js";

/** Bytes buffered ahead of the decoder before the input is paused. */
const HIGH_WATER = 1024 * 1024;

/**
 * The client's side of a gateway session as a pull reader: decode one message, or pass on a
 * payload (exactly N bytes, or up to the end a scanner finds) chunk by chunk. Input is paused
 * while enough is buffered, so a fast client cannot make the gateway hold more than about 1 MiB.
 * A client that stalls in the middle of a message for longer than `stallMs` is a protocol error.
 */
export class ByteReader {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private ended = false;
  private failure: Error | undefined;
  private wake: (() => void) | undefined;
  /** Bytes consumed so far (for messages and measurements). */
  consumed = 0;
  /** Settles when the client's side has ended (end of input or an error): the client went away. */
  readonly gone: Promise<void>;

  constructor(
    private readonly input: NodeJS.ReadableStream,
    private readonly limits: WireLimits,
    private readonly stallMs: number,
  ) {
    input.on("data", (c: Buffer | string) => {
      const b = typeof c === "string" ? Buffer.from(c) : c;
      this.chunks.push(b);
      this.buffered += b.length;
      if (this.buffered > HIGH_WATER) input.pause();
      this.notify();
    });
    let gone!: () => void;
    this.gone = new Promise<void>((resolve) => (gone = resolve));
    input.on("end", () => {
      this.ended = true;
      this.notify();
      gone();
    });
    input.on("error", (e: Error) => {
      this.failure = e;
      this.notify();
      gone();
    });
  }

  /** Bytes received and not consumed yet (requests a client sent ahead). */
  get pending(): number {
    return this.buffered;
  }

  private notify(): void {
    const w = this.wake;
    this.wake = undefined;
    w?.();
  }

  /** Waits for more input; false at the end of input. Throws when `timeoutMs` passes first. */
  private async more(timeoutMs: number, what: string): Promise<boolean> {
    if (this.failure) throw this.failure;
    if (this.chunks.length) return true;
    if (this.ended) return false;
    this.input.resume();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await new Promise<boolean>((resolve) => {
      this.wake = () => resolve(false);
      if (timeoutMs > 0) timer = setTimeout(() => resolve(true), timeoutMs);
    });
    if (timer) clearTimeout(timer);
    if (timedOut) {
      this.wake = undefined;
      throw protocolError(`The client sent nothing for ${Math.round(timeoutMs / 1000)} s during ${what}.`, {
        what,
      });
    }
    this.throwIfFailed();
    return this.chunks.length > 0 || !this.ended;
  }

  private throwIfFailed(): void {
    if (this.failure) throw this.failure;
  }

  private shift(n: number): void {
    const c = this.chunks[0]!;
    if (n >= c.length) this.chunks.shift();
    else this.chunks[0] = c.subarray(n);
    this.buffered -= n;
    this.consumed += n;
    if (this.buffered <= HIGH_WATER / 2) this.input.resume();
  }

  /** True at a clean end of input (no byte of a next message); waits up to `idleMs` for one. */
  async atEnd(idleMs: number): Promise<boolean> {
    for (;;) {
      if (this.chunks.length) return false;
      if (!(await this.more(idleMs, "the wait for the next request"))) return true;
    }
  }

  /** Decodes one message; a truncated or malformed one is SERVE_PROTOCOL_ERROR. */
  async decode<T>(make: (ctx: DecodeContext) => Decoder<T>, what: string): Promise<T> {
    const d = new IncrementalDecoder(make, what, this.limits);
    for (;;) {
      while (this.chunks.length && !d.done) this.shift(d.push(this.chunks[0]!));
      if (d.done) return d.value;
      if (!(await this.more(this.stallMs, what))) d.finish();
    }
  }

  /** Exactly `n` bytes, chunk by chunk (a NAR of a declared size). */
  async *take(n: number, what: string): AsyncGenerator<Uint8Array> {
    let left = n;
    while (left > 0) {
      if (!this.chunks.length && !(await this.more(this.stallMs, what))) {
        throw protocolError(`The client's ${what} ended ${left} bytes short of the ${n} it announced.`, {
          what,
        });
      }
      const c = this.chunks[0];
      if (!c) continue;
      const part = c.subarray(0, Math.min(left, c.length));
      this.shift(part.length);
      left -= part.length;
      yield part;
    }
  }

  /** The bytes `scanner` accepts, up to the end it finds (an export stream of unknown length). */
  async *takeScanned<T>(scanner: IncrementalDecoder<T>): AsyncGenerator<Uint8Array> {
    while (!scanner.done) {
      if (!this.chunks.length && !(await this.more(this.stallMs, scanner.what))) scanner.finish();
      const c = this.chunks[0];
      if (!c) continue;
      const used = scanner.push(c);
      const part = c.subarray(0, used);
      this.shift(used);
      if (part.length) yield part;
    }
  }
}
