import {
  decodeClientMagic,
  decodeClientVersion,
  decodeServerRequest,
  DEFAULT_WIRE_LIMITS,
  encodeAck,
  encodeBuildResultFor,
  encodePathInfosFor,
  encodePathList,
  encodeServerHello,
  IncrementalDecoder,
  scanExportStream,
  SERVE_PROTOCOL_VERSION,
  type AddToStoreNarInfo,
  type ExportedPath,
  type NarSummary,
  type PathInfo,
  type ServeRequest,
  type WireLimits,
} from "../../core/nix-serve/index.js";
import { NixpoolError, isNixpoolError } from "../../core/errors.js";
import { ByteReader } from "./byte-reader.js";
import type { GatewayBuilds } from "./gateway-build.js";

/** The coordinator machine's store as the gateway uses it (a ServeSession on `nix-store --serve --write`). */
export interface GatewayStore {
  queryValidPaths(paths: readonly string[], options?: { lock?: boolean }): Promise<string[]>;
  queryPathInfos(paths: readonly string[]): Promise<PathInfo[]>;
  queryClosure(paths: readonly string[], includeOutputs: boolean): Promise<string[]>;
  addToStoreNar(info: AddToStoreNarInfo, nar: AsyncIterable<Uint8Array>): Promise<NarSummary>;
  importPaths(source: AsyncIterable<Uint8Array>): Promise<ExportedPath[]>;
  dumpStorePath(path: string, sink: NodeJS.WritableStream): Promise<NarSummary>;
  exportPaths(paths: readonly string[], sink: NodeJS.WritableStream): Promise<ExportedPath[]>;
}

export interface GatewaySessionOptions {
  /** The client's bytes (sshd's stdin). */
  input: NodeJS.ReadableStream;
  /** Answers to the client (sshd's stdout): the protocol only. */
  output: NodeJS.WritableStream;
  /** One line to the client's stderr: Nix shows it as the build's log. */
  log: (line: string) => void;
  store: GatewayStore;
  builds: GatewayBuilds;
  limits?: WireLimits;
  /** A client silent in the middle of a message, or not reading our answer, this long is cut off (default 60 s). */
  stallMs?: number;
  /** A client silent between requests this long is cut off (default 30 min). */
  idleMs?: number;
}

/** What one session did, for the gateway's own log and for measurements. */
export interface GatewaySessionResult {
  clientVersion: number;
  requests: Record<string, number>;
  uploadedPaths: number;
  uploadedBytes: number;
  downloadedBytes: number;
  builds: number;
  /** Why the session ended early; undefined when the client closed it. */
  error: NixpoolError | undefined;
}

/**
 * Serves one client of the serve protocol, as `nix-store --serve --write` would: the greeting,
 * then one request at a time until the client closes its end. Uploads go into the coordinator
 * machine's store (Nix there checks each NAR's hash and size; the gateway checks the framing, the
 * paths and the NAR structure as they pass), builds go to the coordinator's queue, outputs are
 * streamed from the store. Malformed bytes, a stalled client or a failed request end this session
 * only, with the reason on the client's stderr.
 */
export async function runGatewaySession(o: GatewaySessionOptions): Promise<GatewaySessionResult> {
  const limits = o.limits ?? DEFAULT_WIRE_LIMITS;
  const stallMs = o.stallMs ?? 60_000;
  const reader = new ByteReader(o.input, limits, stallMs);
  const result: GatewaySessionResult = {
    clientVersion: 0,
    requests: {},
    uploadedPaths: 0,
    uploadedBytes: 0,
    downloadedBytes: 0,
    builds: 0,
    error: undefined,
  };
  const watchdog = new OutputWatchdog(o.output, stallMs);
  try {
    await reader.decode(decodeClientMagic, "the client's greeting");
    await watchdog.write(encodeServerHello(SERVE_PROTOCOL_VERSION));
    const version = await reader.decode(decodeClientVersion, "the client's version");
    result.clientVersion = version;
    while (!(await reader.atEnd(o.idleMs ?? 30 * 60_000))) {
      const req = await reader.decode((ctx) => decodeServerRequest(ctx, version), "a request");
      result.requests[req.cmd] = (result.requests[req.cmd] ?? 0) + 1;
      await Promise.race([serve(req, version), watchdog.stalled]);
    }
  } catch (e) {
    result.error = isNixpoolError(e)
      ? e
      : new NixpoolError(
          "GATEWAY_SESSION_FAILED",
          `The gateway session failed: ${e instanceof Error ? e.message : String(e)}`,
        );
    o.log(`nixpool gateway: ${result.error.message}`);
  } finally {
    watchdog.stop();
  }
  return result;

  async function serve(req: ServeRequest, version: number): Promise<void> {
    switch (req.cmd) {
      case "queryValidPaths":
        // Substitution on the coordinator's machine is not offered: the pool's stores are what it has.
        await watchdog.write(encodePathList(await o.store.queryValidPaths(req.paths, { lock: req.lock })));
        return;
      case "queryPathInfos":
        await watchdog.write(encodePathInfosFor(await o.store.queryPathInfos(req.paths), version));
        return;
      case "queryClosure":
        await watchdog.write(encodePathList(await o.store.queryClosure(req.paths, req.includeOutputs)));
        return;
      case "dumpStorePath": {
        await requireValid([req.path]);
        const nar = await o.store.dumpStorePath(req.path, o.output);
        result.downloadedBytes += nar.size;
        return;
      }
      case "exportPaths": {
        await requireValid(req.paths);
        const paths = await o.store.exportPaths(req.paths, o.output);
        result.downloadedBytes += paths.reduce((n, p) => n + p.nar.size, 0);
        return;
      }
      case "addToStoreNar": {
        const nar = await o.store.addToStoreNar(
          req.info,
          reader.take(req.info.narSize, `NAR of ${req.info.path}`),
        );
        result.uploadedPaths++;
        result.uploadedBytes += nar.size;
        await watchdog.write(encodeAck());
        return;
      }
      case "importPaths": {
        const scanner = new IncrementalDecoder(scanExportStream, "export stream of ImportPaths", limits);
        const paths = await o.store.importPaths(reader.takeScanned(scanner));
        result.uploadedPaths += paths.length;
        result.uploadedBytes += paths.reduce((n, p) => n + p.nar.size, 0);
        await watchdog.write(encodeAck());
        return;
      }
      case "buildDerivation": {
        // The inputs must be here: the dispatcher sends them to the builder from this store.
        const missing = await missingOf(req.drv.inputSrcs);
        if (missing.length) {
          throw new NixpoolError(
            "GATEWAY_INPUTS_MISSING",
            `The client asked to build ${req.drvPath} without sending ${missing.length} of its inputs (${missing[0]}${missing.length > 1 ? ", …" : ""}).`,
            {
              hint: "Nix's build hook sends missing inputs first; another client must send them with AddToStoreNar.",
            },
          );
        }
        result.builds++;
        const r = await o.builds.build(req.drvPath, req.drv, req.options, o.log);
        await watchdog.write(encodeBuildResultFor(r, version));
        return;
      }
    }
  }

  async function missingOf(paths: readonly string[]): Promise<string[]> {
    if (paths.length === 0) return [];
    const valid = new Set(await o.store.queryValidPaths(paths));
    return paths.filter((p) => !valid.has(p));
  }

  async function requireValid(paths: readonly string[]): Promise<void> {
    const missing = await missingOf(paths);
    if (missing.length) {
      // nix-store --serve ends the connection here too: there is no way to answer "not found".
      throw new NixpoolError(
        "GATEWAY_PATH_INVALID",
        `The client asked for ${missing[0]}, which the pool does not hold.`,
        {
          hint: "Ask QueryValidPaths or QueryPathInfos first, as Nix's build hook does.",
        },
      );
    }
  }
}

/**
 * Writes answers with backpressure, and notices a client that stops reading: when the output has
 * been waiting for room longer than `stallMs` (also while a NAR streams through it), `stalled`
 * rejects and the session ends.
 */
class OutputWatchdog {
  readonly stalled: Promise<never>;
  private fail!: (e: Error) => void;
  private since: number | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly output: NodeJS.WritableStream,
    stallMs: number,
  ) {
    this.stalled = new Promise<never>((_, reject) => (this.fail = reject));
    this.stalled.catch(() => undefined);
    const w = output as NodeJS.WritableStream & { writableNeedDrain?: boolean };
    this.timer = setInterval(
      () => {
        if (!w.writableNeedDrain) {
          this.since = undefined;
          return;
        }
        this.since ??= Date.now();
        if (Date.now() - this.since >= stallMs) {
          this.fail(
            new NixpoolError(
              "GATEWAY_CLIENT_STALLED",
              `The client stopped reading for ${Math.round(stallMs / 1000)} s.`,
              {
                hint: "The session was ended; the client's Nix reports the lost connection.",
              },
            ),
          );
        }
      },
      Math.max(10, Math.min(1000, stallMs / 4)),
    );
    this.timer.unref();
  }

  async write(bytes: Uint8Array): Promise<void> {
    if (this.output.write(bytes)) return;
    await Promise.race([new Promise((r) => this.output.once("drain", r)), this.stalled]);
  }

  stop(): void {
    clearInterval(this.timer);
  }
}
