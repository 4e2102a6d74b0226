import { protocolMinor } from "./handshake.js";
import {
  protocolError,
  readBool,
  readCount,
  readPath,
  readPaths,
  readString,
  readStrings,
  readU64,
  WireWriter,
  type DecodeContext,
  type Decoder,
} from "./wire.js";

/** One output of a derivation: input-addressed outputs have hashAlgo and hash "". */
export interface DerivationOutput {
  path: string;
  /** "" for input-addressed; "sha256" or "r:sha256" for fixed-output. */
  hashAlgo: string;
  /** Base-16 hash of a fixed output, else "". */
  hash: string;
}

/**
 * A derivation as BuildDerivation carries it (src/libstore/derivations.cc): no input
 * derivations, whose output paths are part of inputSrcs instead.
 */
export interface BasicDerivation {
  outputs: Map<string, DerivationOutput>;
  inputSrcs: string[];
  platform: string;
  builder: string;
  args: string[];
  env: Map<string, string>;
}

/** Build settings sent with BuildDerivation, in wire order; keepFailed only from version 0x207. */
export interface BuildOptions {
  /** Seconds without output before the build is killed; 0 = no limit. */
  maxSilentTime: number;
  /** Seconds the build may take; 0 = no limit. */
  buildTimeout: number;
  /** Bytes of log before the build is killed; 0 = no limit. */
  maxLogSize: number;
  /** Extra rounds to check determinism. */
  buildRepeat: number;
  enforceDeterminism: boolean;
  keepFailed: boolean;
}

export const DEFAULT_BUILD_OPTIONS: BuildOptions = {
  maxSilentTime: 0,
  buildTimeout: 0,
  maxLogSize: 0,
  buildRepeat: 0,
  enforceDeterminism: false,
  keepFailed: false,
};

/** BuildResult::Status of Nix 2.8 (src/libstore/build-result.hh), in wire order. */
export const BUILD_STATUS_NAMES = [
  "Built",
  "Substituted",
  "AlreadyValid",
  "PermanentFailure",
  "InputRejected",
  "OutputRejected",
  "TransientFailure",
  "CachedFailure",
  "TimedOut",
  "MiscFailure",
  "DependencyFailed",
  "LogLimitExceeded",
  "NotDeterministic",
  "ResolvesToAlreadyValid",
  "NoSubstituters",
] as const;
export type BuildStatusName = (typeof BUILD_STATUS_NAMES)[number];

/** An output a build produced, as 2.8 reports it (a realisation). */
export interface BuiltOutput {
  /** "sha256:<hash of the derivation modulo>!<output name>". */
  id: string;
  outputName: string;
  /** As Nix prints it: the store path's base name ("<hash>-<name>"), without /nix/store. */
  outPath: string;
  signatures: string[];
}

/** What BuildDerivation answers. Times are Unix seconds. */
export interface BuildResult {
  status: number;
  statusName: BuildStatusName | "Unknown";
  errorMsg: string;
  timesBuilt: number;
  isNonDeterministic: boolean;
  startTime: number;
  stopTime: number;
  builtOutputs: BuiltOutput[];
}

/** Whether the derivation's outputs are now valid on the builder. */
export function isBuildSuccess(r: Pick<BuildResult, "statusName">): boolean {
  return ["Built", "Substituted", "AlreadyValid", "ResolvesToAlreadyValid"].includes(r.statusName);
}

/** The name of a status number ("Unknown" for numbers newer than 2.8). */
export function buildStatusName(status: number): BuildStatusName | "Unknown" {
  return BUILD_STATUS_NAMES[status] ?? "Unknown";
}

/** Writes a BasicDerivation; outputs and env in sorted order as Nix does. */
export function writeBasicDerivation(w: WireWriter, drv: BasicDerivation): void {
  const outNames = [...drv.outputs.keys()].sort();
  w.u64(outNames.length);
  for (const name of outNames) {
    const o = drv.outputs.get(name)!;
    w.string(name).string(o.path).string(o.hashAlgo).string(o.hash);
  }
  w.strings([...drv.inputSrcs].sort())
    .string(drv.platform)
    .string(drv.builder)
    .strings(drv.args);
  const keys = [...drv.env.keys()].sort();
  w.u64(keys.length);
  for (const k of keys) w.string(k).string(drv.env.get(k)!);
}

export function* readBasicDerivation(ctx: DecodeContext): Decoder<BasicDerivation> {
  const outputs = new Map<string, DerivationOutput>();
  const nOut = yield* readCount(ctx, "derivation outputs");
  for (let i = 0; i < nOut; i++) {
    const name = yield* readString(ctx, "output name");
    const path = yield* readPath(ctx, `path of output ${name}`);
    const hashAlgo = yield* readString(ctx, `hash algorithm of output ${name}`);
    const hash = yield* readString(ctx, `hash of output ${name}`);
    outputs.set(name, { path, hashAlgo, hash });
  }
  const inputSrcs = yield* readPaths(ctx, "inputSrcs");
  const platform = yield* readString(ctx, "platform");
  const builder = yield* readString(ctx, "builder");
  const args = yield* readStrings(ctx, "args");
  const env = new Map<string, string>();
  const nEnv = yield* readCount(ctx, "env");
  for (let i = 0; i < nEnv; i++) {
    const k = yield* readString(ctx, "env name");
    env.set(k, yield* readString(ctx, `env ${k}`));
  }
  return { outputs, inputSrcs, platform, builder, args, env };
}

/** Writes build options as a client of `clientVersion` does. */
export function writeBuildOptions(w: WireWriter, o: BuildOptions, clientVersion: number): void {
  const minor = protocolMinor(clientVersion);
  w.u64(o.maxSilentTime).u64(o.buildTimeout);
  if (minor >= 2) w.u64(o.maxLogSize);
  if (minor >= 3) w.u64(o.buildRepeat).bool(o.enforceDeterminism);
  if (minor >= 7) w.bool(o.keepFailed);
}

export function* readBuildOptions(ctx: DecodeContext, clientVersion: number): Decoder<BuildOptions> {
  const minor = protocolMinor(clientVersion);
  const o = { ...DEFAULT_BUILD_OPTIONS };
  o.maxSilentTime = yield* readU64(ctx, "maxSilentTime");
  o.buildTimeout = yield* readU64(ctx, "buildTimeout");
  if (minor >= 2) o.maxLogSize = yield* readU64(ctx, "maxLogSize");
  if (minor >= 3) {
    o.buildRepeat = yield* readU64(ctx, "buildRepeat");
    o.enforceDeterminism = yield* readBool(ctx, "enforceDeterminism");
  }
  if (minor >= 7) o.keepFailed = yield* readBool(ctx, "keepFailed");
  return o;
}

/**
 * Writes a BuildResult as a server of `serverVersion` does. Nix 2.8 sends DrvOutputs to every
 * client (its version check is always true); a server of minor < 6 would not.
 */
export function encodeBuildResult(r: BuildResult, serverVersion: number): Uint8Array {
  const w = new WireWriter().u64(r.status).string(r.errorMsg);
  const minor = protocolMinor(serverVersion);
  if (minor >= 3) w.u64(r.timesBuilt).bool(r.isNonDeterministic).u64(r.startTime).u64(r.stopTime);
  if (minor >= 6) {
    const outs = [...r.builtOutputs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    w.u64(outs.length);
    for (const o of outs) {
      w.string(o.id).string(
        JSON.stringify({ dependentRealisations: {}, id: o.id, outPath: o.outPath, signatures: o.signatures }),
      );
    }
  }
  return w.finish();
}

/** Reads a BuildResult from a server of `serverVersion` (as Nix's own client does). */
export function* decodeBuildResult(ctx: DecodeContext, serverVersion: number): Decoder<BuildResult> {
  const status = yield* readU64(ctx, "BuildResult.status");
  const errorMsg = yield* readString(ctx, "BuildResult.errorMsg");
  const r: BuildResult = {
    status,
    statusName: buildStatusName(status),
    errorMsg,
    timesBuilt: 0,
    isNonDeterministic: false,
    startTime: 0,
    stopTime: 0,
    builtOutputs: [],
  };
  const minor = protocolMinor(serverVersion);
  if (minor >= 3) {
    r.timesBuilt = yield* readU64(ctx, "BuildResult.timesBuilt");
    r.isNonDeterministic = yield* readBool(ctx, "BuildResult.isNonDeterministic");
    r.startTime = yield* readU64(ctx, "BuildResult.startTime");
    r.stopTime = yield* readU64(ctx, "BuildResult.stopTime");
  }
  if (minor >= 6) {
    const n = yield* readCount(ctx, "BuildResult.builtOutputs");
    for (let i = 0; i < n; i++) {
      const id = yield* readString(ctx, "DrvOutput id");
      const json = yield* readString(ctx, `realisation of ${id}`);
      r.builtOutputs.push(parseRealisation(id, json));
    }
  }
  return r;
}

function parseRealisation(id: string, json: string): BuiltOutput {
  const bang = id.lastIndexOf("!");
  if (bang <= 0) throw protocolError(`The peer sent a build output id "${id}" without "!<output>".`, { id });
  let v: unknown;
  try {
    v = JSON.parse(json);
  } catch {
    throw protocolError(`The peer sent a realisation of ${id} that is not JSON.`, { id });
  }
  const o = v as Record<string, unknown> | null;
  const outPath = o?.["outPath"];
  const sigs = o?.["signatures"];
  if (typeof o !== "object" || o === null || typeof outPath !== "string" || o["id"] !== id) {
    throw protocolError(`The peer sent a realisation of ${id} without a matching id and outPath.`, { id });
  }
  return {
    id,
    outputName: id.slice(bang + 1),
    outPath,
    signatures: Array.isArray(sigs) ? sigs.filter((s): s is string => typeof s === "string") : [],
  };
}
