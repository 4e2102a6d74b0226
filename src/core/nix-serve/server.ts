import { isDerivationPath, isStorePath } from "../store-path.js";
import { encodeBuildResult, type BuildResult } from "./build.js";
import { protocolMinor, SERVE_MAGIC_CLIENT, SERVE_PROTOCOL_VERSION } from "./handshake.js";
import { decodeRequestBody, ServeCommand, type PathInfo, type ServeRequest } from "./messages.js";
import {
  protocolError,
  readU64,
  WireWriter,
  type DecodeContext,
  type Decoder,
  type WireLimits,
} from "./wire.js";

/**
 * The server half of the serve protocol, as `nix-store --serve --write` speaks it
 * (src/nix-store/nix-store.cc, opServe): it reads the client's magic, answers with its own
 * magic and version at once, then reads the client's version; every later field is gated on
 * the client's minor version (Nix 2.8 gates DrvOutputs wrongly; the fix of 2.12 is followed).
 */

/** Oldest client version served: Nix 2.3 announces 0x205. */
export const SERVE_MIN_CLIENT_VERSION = 0x205;

/** Reads the client's magic (the server greets right after it, before the client's version). */
export function* decodeClientMagic(ctx: DecodeContext): Decoder<void> {
  let magic: number;
  try {
    magic = yield* readU64(ctx, "client greeting");
  } catch {
    magic = -1;
  }
  if (magic !== SERVE_MAGIC_CLIENT) {
    throw protocolError(
      `The client did not greet as a \`nix-store --serve\` client (expected magic 0x${SERVE_MAGIC_CLIENT.toString(16)}, got ${magic < 0 ? "a huge number" : `0x${magic.toString(16)}`}).`,
      { what: "client greeting", magic },
    );
  }
}

/** Reads the client's version; refuses a major other than 2 and clients older than Nix 2.3. */
export function* decodeClientVersion(ctx: DecodeContext): Decoder<number> {
  const v = yield* readU64(ctx, "client protocol version");
  if ((v & 0xff00) !== 0x200 || v < SERVE_MIN_CLIENT_VERSION) {
    throw protocolError(
      `The client speaks serve protocol version 0x${v.toString(16)}; the gateway serves 0x${SERVE_MIN_CLIENT_VERSION.toString(16)} (Nix 2.3) to 0x2ff.`,
      { version: v },
    );
  }
  return v;
}

/** The version both sides agree on: the smaller of the client's and ours (0x207). */
export function negotiatedVersion(clientVersion: number): number {
  return Math.min(clientVersion, SERVE_PROTOCOL_VERSION);
}

/** Commands a server of this codec serves; BuildPaths (6) is never sent by the build hook. */
const SERVED = new Set<number>([
  ServeCommand.queryValidPaths,
  ServeCommand.queryPathInfos,
  ServeCommand.dumpStorePath,
  ServeCommand.importPaths,
  ServeCommand.exportPaths,
  ServeCommand.queryClosure,
  ServeCommand.buildDerivation,
  ServeCommand.addToStoreNar,
]);

/**
 * What a server reads of one request, before any of it is checked: a store path is at most 255
 * bytes (readPath), a list at most 100,000 items, and the whole request (every path of a
 * QueryValidPaths, all of a BuildDerivation's env and args) at most 16 MiB, so a hostile client is
 * cut off before the server allocates more. A NAR that follows a request is streamed, not counted.
 */
export const SERVER_REQUEST_LIMITS: WireLimits = {
  maxStringBytes: 16 * 1024 * 1024,
  maxListItems: 100_000,
  maxMessageBytes: 16 * 1024 * 1024,
};

/** Upper bound on one path's NAR a client may announce (AddToStoreNar). */
export const MAX_UPLOAD_NAR_BYTES = 64 * 1024 ** 3;

/**
 * Reads one request as the server does, then checks it: every path a store path, the
 * derivation's outputs and inputs store paths, a NAR hash Nix can parse, a NAR size within
 * bounds. Unknown commands and BuildPaths are refused by name.
 */
export function* decodeServerRequest(ctx: DecodeContext, clientVersion: number): Decoder<ServeRequest> {
  const at = ctx.offset();
  const peek = yield* readU64(ctx, "command");
  if (!SERVED.has(peek)) {
    const name = peek === ServeCommand.buildPaths ? " (BuildPaths)" : "";
    throw protocolError(`The client sent serve command ${peek}${name} at byte ${at}, which is not served.`, {
      cmd: peek,
    });
  }
  const req = yield* decodeRequestBody(ctx, peek, at, clientVersion);
  validateServeRequest(req);
  return req;
}

function requireStorePaths(paths: readonly string[], what: string): void {
  for (const p of paths) {
    if (!isStorePath(p))
      throw protocolError(`The client sent "${clip(p)}" as ${what}, which is not a store path.`, { what });
  }
}

function clip(s: string): string {
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

const NAR_HASH_FORMS = [
  /^[0-9a-f]{64}$/,
  /^sha256:[0-9a-f]{64}$/,
  /^sha256:[0-9abcdfghijklmnpqrsvwxyz]{52}$/,
  /^sha256:[A-Za-z0-9+/]{43}=$/,
  /^sha256-[A-Za-z0-9+/]{43}=$/,
];

/** Whether `s` is a SHA-256 NAR hash in a form Nix parses (base-16 bare, or prefixed). */
export function isNarHash(s: string): boolean {
  return NAR_HASH_FORMS.some((r) => r.test(s));
}

/** Checks a decoded request's contents (pure); throws SERVE_PROTOCOL_ERROR naming the field. */
export function validateServeRequest(req: ServeRequest): void {
  switch (req.cmd) {
    case "queryValidPaths":
    case "queryPathInfos":
    case "exportPaths":
    case "queryClosure":
      requireStorePaths(req.paths, "a path");
      return;
    case "dumpStorePath":
      requireStorePaths([req.path], "the path to dump");
      return;
    case "importPaths":
      return;
    case "buildDerivation": {
      if (!isDerivationPath(req.drvPath))
        throw protocolError(
          `The client sent "${clip(req.drvPath)}" as the derivation, which is not a .drv store path.`,
          {
            what: "drvPath",
          },
        );
      if (req.drv.outputs.size === 0)
        throw protocolError(`The client sent the derivation ${req.drvPath} without outputs.`, {
          what: "outputs",
        });
      for (const [name, o] of req.drv.outputs) {
        if (!/^[A-Za-z0-9+\-._?=]{1,200}$/.test(name))
          throw protocolError(`The client sent an output named "${clip(name)}" in ${req.drvPath}.`, {
            what: "output name",
          });
        requireStorePaths([o.path], `the path of output ${name}`);
      }
      requireStorePaths(req.drv.inputSrcs, `an input of ${req.drvPath}`);
      if (req.drv.platform === "" || req.drv.builder === "")
        throw protocolError(`The client sent the derivation ${req.drvPath} without a platform or builder.`, {
          what: "platform",
        });
      return;
    }
    case "addToStoreNar": {
      const i = req.info;
      requireStorePaths([i.path], "the path to add");
      if (i.deriver !== "") requireStorePaths([i.deriver], `the deriver of ${i.path}`);
      requireStorePaths(i.references, `a reference of ${i.path}`);
      if (!isNarHash(i.narHash))
        throw protocolError(
          `The client sent "${clip(i.narHash)}" as the NAR hash of ${i.path}, which is not a SHA-256 hash.`,
          {
            what: "narHash",
          },
        );
      if (i.narSize === 0 || i.narSize > MAX_UPLOAD_NAR_BYTES)
        throw protocolError(
          `The client announced a ${i.narSize}-byte NAR for ${i.path}; it must be between 1 byte and ${MAX_UPLOAD_NAR_BYTES} bytes.`,
          { what: "narSize", narSize: i.narSize },
        );
      return;
    }
  }
}

/**
 * QueryPathInfos answer for a client of `clientVersion`: narHash, ca and sigs only from minor 4
 * (as opServe does); the list ends with "".
 */
export function encodePathInfosFor(infos: readonly PathInfo[], clientVersion: number): Uint8Array {
  const w = new WireWriter();
  const full = protocolMinor(clientVersion) >= 4;
  for (const i of infos) {
    w.string(i.path).string(i.deriver).strings(i.references).u64(i.downloadSize).u64(i.narSize);
    if (full) w.string(i.narHash).string(i.ca).strings(i.sigs);
  }
  return w.string("").finish();
}

/**
 * BuildDerivation answer for a client of `clientVersion`: times from minor 3, DrvOutputs from
 * minor 6 (a Nix 2.3 client, 0x205, reads none).
 */
export function encodeBuildResultFor(r: BuildResult, clientVersion: number): Uint8Array {
  return encodeBuildResult(r, negotiatedVersion(clientVersion));
}
