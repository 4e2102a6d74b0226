import { protocolError, readU64, WireWriter, type DecodeContext, type Decoder } from "./wire.js";

/** Greeting of the serve protocol (src/libstore/serve-protocol.hh). */
export const SERVE_MAGIC_CLIENT = 0x390c9deb;
export const SERVE_MAGIC_SERVER = 0x5452eecb;
/** The version Nix 2.8 speaks; 0x206 is the oldest we accept (it still sends DrvOutputs). */
export const SERVE_PROTOCOL_VERSION = 0x207;
export const SERVE_MIN_VERSION = 0x206;

export const protocolMajor = (v: number) => v & 0xff00;
export const protocolMinor = (v: number) => v & 0x00ff;

/** What the client sends first: its magic and version. */
export function encodeClientHello(version = SERVE_PROTOCOL_VERSION): Uint8Array {
  return new WireWriter().u64(SERVE_MAGIC_CLIENT).u64(version).finish();
}

/** The server's answer: its magic and version. */
export function encodeServerHello(version = SERVE_PROTOCOL_VERSION): Uint8Array {
  return new WireWriter().u64(SERVE_MAGIC_SERVER).u64(version).finish();
}

/** Reads the server's greeting; refuses another magic or a major version other than 2. */
export function* decodeServerHello(ctx: DecodeContext): Decoder<{ version: number }> {
  yield* readMagic(ctx, SERVE_MAGIC_SERVER, "server");
  const version = yield* readU64(ctx, "server protocol version");
  checkVersion(version, "server");
  return { version };
}

/** Reads the client's greeting (for peers we play in tests). */
export function* decodeClientHello(ctx: DecodeContext): Decoder<{ version: number }> {
  yield* readMagic(ctx, SERVE_MAGIC_CLIENT, "client");
  const version = yield* readU64(ctx, "client protocol version");
  checkVersion(version, "client");
  return { version };
}

function* readMagic(ctx: DecodeContext, expected: number, who: string): Decoder<void> {
  let magic: number;
  try {
    magic = yield* readU64(ctx, `${who} greeting`);
  } catch {
    magic = -1;
  }
  if (magic !== expected) {
    throw protocolError(
      `The peer did not greet as a \`nix-store --serve\` ${who} (expected magic 0x${expected.toString(16)}, got ${magic < 0 ? "a huge number" : `0x${magic.toString(16)}`}).`,
      { what: `${who} greeting`, magic },
    );
  }
}

function checkVersion(version: number, who: string): void {
  if (protocolMajor(version) !== 0x200) {
    throw protocolError(
      `The ${who} speaks serve protocol version 0x${version.toString(16)}; nixpool speaks major version 0x200.`,
      { version },
    );
  }
}
