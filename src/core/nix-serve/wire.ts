import { NixpoolError } from "../errors.js";
import { STORE_PATH_MAX_BYTES } from "../store-path.js";

/**
 * The byte framing of Nix's serve protocol (and of NARs and export streams): every integer
 * and boolean is a u64 little-endian; a string is a u64 length, the bytes, then zero padding
 * to a multiple of 8; a list is a u64 count followed by its items.
 */

/** Bounds on what a peer may make us allocate; lengths above them are refused before reading. */
export interface WireLimits {
  /** Longest string accepted, in bytes (env values and error messages can be large). */
  maxStringBytes: number;
  /** Most items accepted in one list (paths, env pairs, outputs). */
  maxListItems: number;
  /**
   * Most bytes one message may take, counted from its first byte (a server's cap on a request:
   * all of a QueryValidPaths' paths, all of a BuildDerivation's env and args). Checked before each
   * string is read, so a peer is cut off before the gateway allocates it. None when absent.
   */
  maxMessageBytes?: number;
}

export const DEFAULT_WIRE_LIMITS: WireLimits = {
  maxStringBytes: 64 * 1024 * 1024,
  maxListItems: 1_000_000,
};

/** A decoder asks its driver for exactly `n` bytes ("read") or to let `n` bytes go by ("skip"). */
export type WireRequest = { kind: "read"; n: number } | { kind: "skip"; n: number };

/**
 * A decoder is a generator: it yields what it needs and receives the bytes it asked for
 * (`undefined` after a skip), so one decoder runs over a byte stream arriving in any chunks.
 */
export type Decoder<T> = Generator<WireRequest, T, Uint8Array | undefined>;

/** What is being decoded, for error messages ("BuildResult.errorMsg"). */
export interface DecodeContext {
  limits: WireLimits;
  /** Bytes consumed so far by the driver; set by the driver, read for error messages. */
  offset: () => number;
}

/** The protocol error every malformed byte sequence ends in. */
export function protocolError(message: string, details: Record<string, unknown> = {}): NixpoolError {
  return new NixpoolError("SERVE_PROTOCOL_ERROR", message, {
    hint: "The peer is not a Nix 2.x `nix-store --serve` or the stream was damaged; check the builder with `nixpool doctor NAME`.",
    details,
  });
}

const textDecoder = new TextDecoder("utf-8", { fatal: false });
const textEncoder = new TextEncoder();

/** Reads `n` bytes. */
export function* readBytes(n: number): Decoder<Uint8Array> {
  if (n === 0) return new Uint8Array(0);
  const got = yield { kind: "read", n };
  if (!got || got.length !== n)
    throw new Error(`decoder driver returned ${got?.length ?? "no"} bytes, wanted ${n}`);
  return got;
}

/** Skips `n` bytes without keeping them (NAR file contents). */
export function* skipBytes(n: number): Decoder<void> {
  if (n > 0) yield { kind: "skip", n };
}

/** Reads a u64; refuses values JavaScript cannot hold exactly. */
export function* readU64(ctx: DecodeContext, what: string): Decoder<number> {
  // Yields directly (not through readBytes): integers are most of the protocol's traffic.
  const b = yield { kind: "read", n: 8 };
  if (!b || b.length !== 8) throw new Error(`decoder driver returned ${b?.length ?? "no"} bytes, wanted 8`);
  const lo = (b[0]! | (b[1]! << 8) | (b[2]! << 16)) + b[3]! * 0x1000000;
  const hi = (b[4]! | (b[5]! << 8) | (b[6]! << 16)) + b[7]! * 0x1000000;
  if (hi > 0x1fffff) {
    throw protocolError(`The peer sent an integer too large for ${what} at byte ${ctx.offset() - 8}.`, {
      what,
    });
  }
  return hi * 0x100000000 + lo;
}

/** Reads a boolean (u64 0 or 1; Nix treats any non-zero value as true, and so do we). */
export function* readBool(ctx: DecodeContext, what: string): Decoder<boolean> {
  return (yield* readU64(ctx, what)) !== 0;
}

/** Reads the zero padding after `len` bytes of string or file contents. */
export function* readPadding(ctx: DecodeContext, len: number, what: string): Decoder<void> {
  const pad = (8 - (len % 8)) % 8;
  if (pad === 0) return;
  const b = yield* readBytes(pad);
  if (b.some((x) => x !== 0)) {
    throw protocolError(`The peer sent non-zero padding after ${what} at byte ${ctx.offset() - pad}.`, {
      what,
    });
  }
}

/** Reads a length-prefixed, zero-padded byte string. */
export function* readByteString(
  ctx: DecodeContext,
  what: string,
  max = ctx.limits.maxStringBytes,
): Decoder<Uint8Array> {
  const len = yield* readU64(ctx, what);
  if (len > max) {
    throw protocolError(
      `The peer sent a ${len}-byte string for ${what} at byte ${ctx.offset() - 8}; the limit is ${max} bytes.`,
      { what, length: len, limit: max },
    );
  }
  const cap = ctx.limits.maxMessageBytes;
  if (cap !== undefined && ctx.offset() + len > cap) {
    throw protocolError(
      `The peer's message grew over ${cap} bytes with a ${len}-byte string for ${what} at byte ${ctx.offset() - 8}; the limit for one message is ${cap} bytes.`,
      { what, length: len, limit: cap },
    );
  }
  const pad = (8 - (len % 8)) % 8;
  // The bytes and their padding in one read.
  const b = yield* readBytes(len + pad);
  for (let i = len; i < len + pad; i++) {
    if (b[i] !== 0) {
      throw protocolError(`The peer sent non-zero padding after ${what} at byte ${ctx.offset() - pad}.`, {
        what,
      });
    }
  }
  return b.subarray(0, len);
}

/** Reads a string (UTF-8; Nix strings are bytes, store paths and names are ASCII). */
export function* readString(ctx: DecodeContext, what: string, max?: number): Decoder<string> {
  return textDecoder.decode(yield* readByteString(ctx, what, max));
}

/** Reads a u64 count, checked against the list limit. */
export function* readCount(ctx: DecodeContext, what: string): Decoder<number> {
  const n = yield* readU64(ctx, what);
  if (n > ctx.limits.maxListItems) {
    throw protocolError(
      `The peer sent a list of ${n} items for ${what} at byte ${ctx.offset() - 8}; the limit is ${ctx.limits.maxListItems}.`,
      { what, count: n, limit: ctx.limits.maxListItems },
    );
  }
  return n;
}

/** Reads a list (or set) of strings. */
export function* readStrings(ctx: DecodeContext, what: string): Decoder<string[]> {
  const n = yield* readCount(ctx, what);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(yield* readString(ctx, `${what}[${i}]`));
  return out;
}

/**
 * Reads a string that must be a store path (or ""): longer than any store path is refused before
 * its bytes are read. Whether it is a store path is checked by the caller.
 */
export function* readPath(ctx: DecodeContext, what: string): Decoder<string> {
  return yield* readString(ctx, what, Math.min(STORE_PATH_MAX_BYTES, ctx.limits.maxStringBytes));
}

/** Reads a list of store paths (each at most a store path long). */
export function* readPaths(ctx: DecodeContext, what: string): Decoder<string[]> {
  const n = yield* readCount(ctx, what);
  const out: string[] = [];
  for (let i = 0; i < n; i++) out.push(yield* readPath(ctx, `${what}[${i}]`));
  return out;
}

/** Builds a message from u64s and strings; `finish()` returns the bytes. */
export class WireWriter {
  private chunks: Uint8Array[] = [];
  private size = 0;

  u64(n: number | bigint): this {
    const v = BigInt(n);
    if (v < 0n || v > 0xffffffffffffffffn) throw new RangeError(`u64 out of range: ${v}`);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, v, true);
    return this.raw(b);
  }

  bool(v: boolean): this {
    return this.u64(v ? 1 : 0);
  }

  bytes(data: Uint8Array): this {
    this.u64(data.length);
    this.raw(data);
    const pad = (8 - (data.length % 8)) % 8;
    if (pad) this.raw(new Uint8Array(pad));
    return this;
  }

  string(s: string): this {
    return this.bytes(textEncoder.encode(s));
  }

  strings(list: Iterable<string>): this {
    const items = [...list];
    this.u64(items.length);
    for (const s of items) this.string(s);
    return this;
  }

  /** Appends bytes as they are (a NAR, an export stream). */
  raw(data: Uint8Array): this {
    this.chunks.push(data);
    this.size += data.length;
    return this;
  }

  finish(): Uint8Array {
    const out = new Uint8Array(this.size);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    return out;
  }
}
