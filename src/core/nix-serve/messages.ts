import {
  readBasicDerivation,
  readBuildOptions,
  writeBasicDerivation,
  writeBuildOptions,
  type BasicDerivation,
  type BuildOptions,
} from "./build.js";
import {
  protocolError,
  readBool,
  readPath,
  readPaths,
  readString,
  readStrings,
  readU64,
  WireWriter,
  type DecodeContext,
  type Decoder,
} from "./wire.js";

/** Command numbers of `nix-store --serve` (src/libstore/serve-protocol.hh). */
export const ServeCommand = {
  queryValidPaths: 1,
  queryPathInfos: 2,
  dumpStorePath: 3,
  importPaths: 4,
  exportPaths: 5,
  buildPaths: 6,
  queryClosure: 7,
  buildDerivation: 8,
  addToStoreNar: 9,
} as const;
export type ServeCommandName = keyof typeof ServeCommand;

/** What the remote store knows about a valid path (QueryPathInfos). */
export interface PathInfo {
  path: string;
  /** "" when unknown. */
  deriver: string;
  references: string[];
  /** 2.8 sends narSize here too. */
  downloadSize: number;
  narSize: number;
  /** "sha256:<base32>". */
  narHash: string;
  /** Content address, "" for input-addressed paths. */
  ca: string;
  sigs: string[];
}

/** The metadata AddToStoreNar sends ahead of exactly narSize bytes of NAR. */
export interface AddToStoreNarInfo {
  path: string;
  deriver: string;
  /** Any form Nix parses: "sha256:<base32>", or base-16 as Nix's own client sends. */
  narHash: string;
  references: string[];
  registrationTime: number;
  narSize: number;
  ultimate: boolean;
  sigs: string[];
  ca: string;
}

/** A request as it travels from client to server (payloads such as NARs follow separately). */
export type ServeRequest =
  | { cmd: "queryValidPaths"; lock: boolean; substitute: boolean; paths: string[] }
  | { cmd: "queryPathInfos"; paths: string[] }
  | { cmd: "dumpStorePath"; path: string }
  | { cmd: "importPaths" }
  | { cmd: "exportPaths"; paths: string[] }
  | { cmd: "queryClosure"; includeOutputs: boolean; paths: string[] }
  | { cmd: "buildDerivation"; drvPath: string; drv: BasicDerivation; options: BuildOptions }
  | { cmd: "addToStoreNar"; info: AddToStoreNarInfo };

/** Encodes a request as a client that announced `clientVersion` (build options depend on it). */
export function encodeRequest(req: ServeRequest, clientVersion: number): Uint8Array {
  const w = new WireWriter().u64(ServeCommand[req.cmd]);
  switch (req.cmd) {
    case "queryValidPaths":
      w.bool(req.lock).bool(req.substitute).strings(req.paths);
      break;
    case "queryPathInfos":
      w.strings(req.paths);
      break;
    case "dumpStorePath":
      w.string(req.path);
      break;
    case "importPaths":
      break;
    case "exportPaths":
      // The first field is obsolete (it once asked for signatures).
      w.u64(0).strings(req.paths);
      break;
    case "queryClosure":
      w.bool(req.includeOutputs).strings(req.paths);
      break;
    case "buildDerivation":
      w.string(req.drvPath);
      writeBasicDerivation(w, req.drv);
      writeBuildOptions(w, req.options, clientVersion);
      break;
    case "addToStoreNar": {
      const i = req.info;
      w.string(i.path).string(i.deriver).string(i.narHash).strings(i.references);
      w.u64(i.registrationTime).u64(i.narSize).bool(i.ultimate).strings(i.sigs).string(i.ca);
      break;
    }
  }
  return w.finish();
}

/** Reads a request as the server does (tests and fake peers). */
export function* decodeRequest(ctx: DecodeContext, clientVersion: number): Decoder<ServeRequest> {
  const at = ctx.offset();
  const cmd = yield* readU64(ctx, "command");
  return yield* decodeRequestBody(ctx, cmd, at, clientVersion);
}

/** Reads the fields of command `cmd` (already read, at byte `at`). */
export function* decodeRequestBody(
  ctx: DecodeContext,
  cmd: number,
  at: number,
  clientVersion: number,
): Decoder<ServeRequest> {
  switch (cmd) {
    case ServeCommand.queryValidPaths: {
      const lock = yield* readBool(ctx, "lock");
      const substitute = yield* readBool(ctx, "substitute");
      return { cmd: "queryValidPaths", lock, substitute, paths: yield* readPaths(ctx, "paths") };
    }
    case ServeCommand.queryPathInfos:
      return { cmd: "queryPathInfos", paths: yield* readPaths(ctx, "paths") };
    case ServeCommand.dumpStorePath:
      return { cmd: "dumpStorePath", path: yield* readPath(ctx, "path") };
    case ServeCommand.importPaths:
      return { cmd: "importPaths" };
    case ServeCommand.exportPaths:
      yield* readU64(ctx, "obsolete ExportPaths flag");
      return { cmd: "exportPaths", paths: yield* readPaths(ctx, "paths") };
    case ServeCommand.queryClosure: {
      const includeOutputs = yield* readBool(ctx, "includeOutputs");
      return { cmd: "queryClosure", includeOutputs, paths: yield* readPaths(ctx, "paths") };
    }
    case ServeCommand.buildDerivation: {
      const drvPath = yield* readPath(ctx, "drvPath");
      const drv = yield* readBasicDerivation(ctx);
      return { cmd: "buildDerivation", drvPath, drv, options: yield* readBuildOptions(ctx, clientVersion) };
    }
    case ServeCommand.addToStoreNar: {
      const path = yield* readPath(ctx, "path");
      const deriver = yield* readPath(ctx, "deriver");
      const narHash = yield* readString(ctx, "narHash", 256);
      const references = yield* readPaths(ctx, "references");
      const registrationTime = yield* readU64(ctx, "registrationTime");
      const narSize = yield* readU64(ctx, "narSize");
      const ultimate = yield* readBool(ctx, "ultimate");
      const sigs = yield* readStrings(ctx, "sigs");
      const ca = yield* readString(ctx, "ca", 4096);
      const info = { path, deriver, narHash, references, registrationTime, narSize, ultimate, sigs, ca };
      return { cmd: "addToStoreNar", info };
    }
    default:
      throw protocolError(`Unknown serve command ${cmd} at byte ${at}.`, { cmd });
  }
}

/** A list of store paths (QueryValidPaths and QueryClosure answers). */
export function encodePathList(paths: readonly string[]): Uint8Array {
  return new WireWriter().strings(paths).finish();
}

export function* decodePathList(ctx: DecodeContext): Decoder<string[]> {
  return yield* readStrings(ctx, "path list");
}

/** QueryPathInfos answer: one record per valid path, then "". */
export function encodePathInfos(infos: readonly PathInfo[]): Uint8Array {
  const w = new WireWriter();
  for (const i of infos) {
    w.string(i.path).string(i.deriver).strings(i.references).u64(i.downloadSize).u64(i.narSize);
    w.string(i.narHash).string(i.ca).strings(i.sigs);
  }
  return w.string("").finish();
}

export function* decodePathInfos(ctx: DecodeContext): Decoder<PathInfo[]> {
  const infos: PathInfo[] = [];
  for (;;) {
    const path = yield* readString(ctx, "PathInfo.path");
    if (path === "") return infos;
    if (infos.length >= ctx.limits.maxListItems) {
      throw protocolError(`The peer sent more than ${ctx.limits.maxListItems} path infos.`, {
        what: "PathInfo",
      });
    }
    const deriver = yield* readString(ctx, `deriver of ${path}`);
    const references = yield* readStrings(ctx, `references of ${path}`);
    const downloadSize = yield* readU64(ctx, `downloadSize of ${path}`);
    const narSize = yield* readU64(ctx, `narSize of ${path}`);
    const narHash = yield* readString(ctx, `narHash of ${path}`);
    const ca = yield* readString(ctx, `ca of ${path}`);
    const sigs = yield* readStrings(ctx, `sigs of ${path}`);
    infos.push({ path, deriver, references, downloadSize, narSize, narHash, ca, sigs });
  }
}

/** The "1" ImportPaths and AddToStoreNar answer with. */
export function encodeAck(): Uint8Array {
  return new WireWriter().u64(1).finish();
}

export function* decodeAck(ctx: DecodeContext, what: string): Decoder<void> {
  const at = ctx.offset();
  const v = yield* readU64(ctx, `${what} acknowledgement`);
  if (v !== 1)
    throw protocolError(`The peer answered ${what} with ${v} instead of 1 (byte ${at}).`, { what, value: v });
}
