import {
  decodeClientMagic,
  decodeClientVersion,
  decodeServerRequest,
  encodeAck,
  encodeBuildResultFor,
  encodePathInfosFor,
  encodePathList,
  encodeServerHello,
  IncrementalDecoder,
  scanExportStream,
  scanNar,
  SERVE_PROTOCOL_VERSION,
  SERVER_REQUEST_LIMITS,
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

/**
 * The pool's other stores, through the coordinator (`/api/pool/*`): what a builder holds counts as
 * the gateway's, and its NARs stream from there.
 */
export interface GatewayPool {
  /** The subset of `paths` any store of the pool holds; `substitute`: try the coordinator's substituters for the rest. */
  validPaths(paths: readonly string[], substitute: boolean): Promise<string[]>;
  /** Copies `paths` (with their closures) from the builders holding them into the coordinator machine's store. */
  fetchToLocal(paths: readonly string[]): Promise<void>;
  pathInfos(paths: readonly string[]): Promise<PathInfo[]>;
  closure(paths: readonly string[]): Promise<string[]>;
  /** The NAR of `path`, from the store of the pool that holds it. */
  nar(path: string): Promise<AsyncIterable<Uint8Array>>;
}

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
  /**
   * The store and the pool, started while the greeting is exchanged: Nix's main loop waits for
   * every hook's connection, so the greeting goes out before anything slow.
   */
  store: Promise<GatewayStore>;
  builds: Promise<GatewayBuilds>;
  /** The rest of the pool (builders' stores); without it the gateway answers for this machine's store only. */
  pool?: Promise<GatewayPool>;
  /** What one request may make the gateway read (default SERVER_REQUEST_LIMITS: 16 MiB, 100,000 items). */
  limits?: WireLimits;
  /** A client silent in the middle of a message, or not reading our answer, this long is cut off (default 60 s). */
  stallMs?: number;
  /** A client silent between requests this long is cut off (default 30 min). */
  idleMs?: number;
  /** Our greeting was written already, before the client's (the lean entry sends it at once). */
  greeted?: boolean;
}

/** What one session did, for the gateway's own log and for measurements. */
export interface GatewaySessionResult {
  clientVersion: number;
  requests: Record<string, number>;
  /** Milliseconds spent serving each kind of request (from its first byte read to its answer written). */
  requestMs: Record<string, number>;
  /** Milliseconds from the start to the client's greeting being read. */
  greetingMs: number;
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
  const limits = o.limits ?? SERVER_REQUEST_LIMITS;
  // Streams (a NAR, an export stream) are not one message: no total, the same per-item bounds.
  const streamLimits: WireLimits = {
    maxStringBytes: limits.maxStringBytes,
    maxListItems: limits.maxListItems,
  };
  const stallMs = o.stallMs ?? 60_000;
  const reader = new ByteReader(o.input, limits, stallMs);
  const result: GatewaySessionResult = {
    clientVersion: 0,
    requests: {},
    requestMs: {},
    greetingMs: 0,
    uploadedPaths: 0,
    uploadedBytes: 0,
    downloadedBytes: 0,
    builds: 0,
    error: undefined,
  };
  const watchdog = new OutputWatchdog(o.output, stallMs);
  // A failure to start either surfaces at the first request that needs it.
  void o.store.catch(() => undefined);
  void o.builds.catch(() => undefined);
  void o.pool?.catch(() => undefined);
  try {
    const t0 = Date.now();
    await reader.decode(decodeClientMagic, "the client's greeting");
    if (!o.greeted) await watchdog.write(encodeServerHello(SERVE_PROTOCOL_VERSION));
    const version = await reader.decode(decodeClientVersion, "the client's version");
    result.clientVersion = version;
    result.greetingMs = Date.now() - t0;
    while (!(await reader.atEnd(o.idleMs ?? 30 * 60_000))) {
      const req = await reader.decode((ctx) => decodeServerRequest(ctx, version), "a request");
      const started = Date.now();
      result.requests[req.cmd] = (result.requests[req.cmd] ?? 0) + 1;
      await Promise.race([serve(req, version), watchdog.stalled]);
      result.requestMs[req.cmd] = (result.requestMs[req.cmd] ?? 0) + Date.now() - started;
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
      case "queryValidPaths": {
        const local = await (await o.store).queryValidPaths(req.paths, { lock: req.lock });
        const have = new Set(local);
        const rest = req.paths.filter((p) => !have.has(p));
        // What a builder holds (another client's upload or build) needs no upload; with the
        // client's builders-use-substitutes, the coordinator's substituters are tried too. A pool
        // that does not answer leaves the answer to this store (the client uploads more).
        const pooled = rest.length && o.pool ? await poolValid(rest, req.substitute) : [];
        for (const p of pooled) have.add(p);
        await watchdog.write(encodePathList(req.paths.filter((p) => have.has(p))));
        return;
      }
      case "queryPathInfos": {
        const local = await (await o.store).queryPathInfos(req.paths);
        const found = new Set(local.map((i) => i.path));
        const rest = req.paths.filter((p) => !found.has(p));
        const pooled = rest.length && o.pool ? await (await o.pool).pathInfos(rest) : [];
        await watchdog.write(encodePathInfosFor([...local, ...pooled], version));
        return;
      }
      case "queryClosure": {
        const missing = await missingLocally(req.paths);
        const closure =
          missing.length && o.pool
            ? await (await o.pool).closure(req.paths)
            : await (await o.store).queryClosure(req.paths, req.includeOutputs);
        await watchdog.write(encodePathList(closure));
        return;
      }
      case "dumpStorePath": {
        if ((await missingLocally([req.path])).length === 0) {
          const nar = await (await o.store).dumpStorePath(req.path, o.output);
          result.downloadedBytes += nar.size;
          return;
        }
        await requireValid([req.path]);
        // Streamed from the builder that holds it, checked as it passes: a NAR cut short ends the session.
        const scanner = new IncrementalDecoder(scanNar, `NAR of ${req.path}`, streamLimits);
        for await (const chunk of await (await (o.pool as Promise<GatewayPool>)).nar(req.path)) {
          if (scanner.push(chunk) < chunk.length) throw poolNarBroken(req.path, "has bytes after its end");
          await watchdog.write(chunk);
        }
        if (!scanner.done) throw poolNarBroken(req.path, "ended short");
        result.downloadedBytes += scanner.value.size;
        return;
      }
      case "exportPaths": {
        // Served from this machine's store only (Nix's build hook never sends it; old nix-copy-closure does).
        const missing = await missingLocally(req.paths);
        if (missing.length) throw pathInvalid(missing[0] as string);
        const paths = await (await o.store).exportPaths(req.paths, o.output);
        result.downloadedBytes += paths.reduce((n, p) => n + p.nar.size, 0);
        return;
      }
      case "addToStoreNar": {
        // Its references must be valid in this store (Nix refuses the path otherwise); those the
        // pool answered for from a builder (the client did not send them) are copied here first.
        const refs = req.info.references.filter((r) => r !== req.info.path);
        const absent = await missingLocally(refs);
        if (absent.length && o.pool) await (await o.pool).fetchToLocal(absent);
        const nar = await (
          await o.store
        ).addToStoreNar(req.info, reader.take(req.info.narSize, `NAR of ${req.info.path}`));
        result.uploadedPaths++;
        result.uploadedBytes += nar.size;
        await watchdog.write(encodeAck());
        return;
      }
      case "importPaths": {
        const scanner = new IncrementalDecoder(
          scanExportStream,
          "export stream of ImportPaths",
          streamLimits,
        );
        const paths = await (await o.store).importPaths(reader.takeScanned(scanner));
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
        // Nix's client sends nothing while it waits for the result: the end of its input means it
        // went away (an interrupted nix build), and its build in the pool is cancelled, not left
        // to hold a slot for nobody. A client that sent its next requests ahead and then closed
        // its side still waits for the answers.
        const abort = new AbortController();
        const building = (await o.builds).build(req.drvPath, req.drv, req.options, o.log, abort.signal);
        const gone = reader.gone.then(() =>
          reader.pending > 0 ? new Promise<never>(() => undefined) : undefined,
        );
        const r = await Promise.race([building, gone]);
        if (r === undefined) {
          abort.abort();
          await building.catch(() => undefined);
          throw new NixpoolError(
            "GATEWAY_SESSION_FAILED",
            `The client closed the connection during the build of ${req.drvPath}; its build in the pool was cancelled.`,
            { hint: "See it with: curl …/api/builds?client=NAME (or open the dashboard)." },
          );
        }
        await watchdog.write(encodeBuildResultFor(r, version));
        return;
      }
    }
  }

  async function missingLocally(paths: readonly string[]): Promise<string[]> {
    if (paths.length === 0) return [];
    const valid = new Set(await (await o.store).queryValidPaths(paths));
    return paths.filter((p) => !valid.has(p));
  }

  async function poolValid(paths: readonly string[], substitute: boolean): Promise<string[]> {
    try {
      return await (await (o.pool as Promise<GatewayPool>)).validPaths(paths, substitute);
    } catch {
      return [];
    }
  }

  /** The paths neither this machine's store nor any builder's holds. */
  async function missingOf(paths: readonly string[]): Promise<string[]> {
    const missing = await missingLocally(paths);
    if (missing.length === 0 || !o.pool) return missing;
    const pooled = new Set(await (await o.pool).validPaths(missing, false));
    return missing.filter((p) => !pooled.has(p));
  }

  async function requireValid(paths: readonly string[]): Promise<void> {
    const missing = await missingOf(paths);
    if (missing.length) throw pathInvalid(missing[0] as string);
  }
}

/** nix-store --serve ends the connection here too: there is no way to answer "not found". */
function pathInvalid(path: string): NixpoolError {
  return new NixpoolError(
    "GATEWAY_PATH_INVALID",
    `The client asked for ${path}, which the pool does not hold.`,
    {
      hint: "Ask QueryValidPaths or QueryPathInfos first, as Nix's build hook does.",
    },
  );
}

function poolNarBroken(path: string, why: string): NixpoolError {
  return new NixpoolError(
    "GATEWAY_SESSION_FAILED",
    `The NAR of ${path} from the pool ${why}; the session was ended (the client saw part of it).`,
    {
      hint: "See the coordinator's log (journalctl -u nixpool-serve): the builder holding it may have been lost.",
    },
  );
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
