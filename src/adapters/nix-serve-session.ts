import { once } from "node:events";
import { StringDecoder } from "node:string_decoder";
import { NixpoolError } from "../core/errors.js";
import {
  connectionLostError,
  decodeAck,
  decodeBuildResult,
  decodePathInfos,
  decodePathList,
  decodeServerHello,
  DEFAULT_BUILD_OPTIONS,
  describeClose,
  DEFAULT_WIRE_LIMITS,
  encodeClientHello,
  encodeRequest,
  IncrementalDecoder,
  protocolError,
  requestTimeoutError,
  scanExportStream,
  scanNar,
  SERVE_PROTOCOL_VERSION,
  type BasicDerivation,
  type BuildOptions,
  type AddToStoreNarInfo,
  type BuildResult,
  type DecodeContext,
  type Decoder,
  type ExportedPath,
  type NarSummary,
  type PathInfo,
  type ServeCloseIntent,
  type ServeCloseReason,
  type ServeProcessExit,
  type ServeRequest,
  type WireLimits,
} from "../core/nix-serve/index.js";
import { spawnPiped, type PipedProcess } from "./piped-process.js";

export interface ServeSessionOptions {
  /** The command: `["nix-store","--serve","--write"]`, or ssh … `nix-store --serve --write`. */
  argv: readonly string[];
  /** Who the peer is, for messages: "builder b1", "the local store". */
  name?: string;
  env?: Record<string, string | undefined>;
  /** Aborting kills the process; pending and later requests fail with INTERRUPTED. */
  signal?: AbortSignal;
  /** Version announced to the peer: 0x207 (default) or 0x206. */
  version?: number;
  limits?: WireLimits;
  /** Milliseconds to wait for the greeting; default 30 s. */
  handshakeTimeoutMs?: number;
  /** Receives every stderr line of the peer (build logs arrive here) unless a request routes them. */
  onStderrLine?: (line: string) => void;
  /** Called once when the connection ends, with why. */
  onClose?: (reason: ServeCloseReason) => void;
}

/** Bytes to send: a stream, or any (async) iterable of chunks. */
export type ByteSource = NodeJS.ReadableStream | AsyncIterable<Uint8Array> | Iterable<Uint8Array>;

export interface RequestOptions {
  /** Milliseconds for the answer; on expiry the session is killed (its state is unknown). */
  timeoutMs?: number;
  /** Stderr lines while this request runs go here instead of the session's sink. */
  onLog?: (line: string) => void;
  /** Progress of streamed payloads (exports, imports, NARs): called with each chunk's size. */
  onBytes?: (bytes: number) => void;
}

const STDERR_TAIL = 30;
/** Longest stderr line passed on whole; longer ones arrive in pieces of this size. */
const STDERR_LINE_MAX = 64 * 1024;

/**
 * One long-lived `nix-store --serve --write` peer: greeting on open, then one request at a
 * time in call order. A peer that ends, or sends bytes that are not the protocol, fails the
 * pending request at once (SERVE_CONNECTION_LOST, SERVE_PROTOCOL_ERROR) and every later one.
 */
export class ServeSession {
  /** Settles (never rejects) when the connection has ended. */
  readonly closed: Promise<ServeCloseReason>;
  /** The peer's protocol version (0x207 for Nix 2.8). */
  serverVersion = 0;
  readonly name: string;
  readonly clientVersion: number;

  private readonly proc: PipedProcess;
  private readonly limits: WireLimits;
  private reader: ((chunk: Uint8Array) => void) | undefined;
  private failPending: ((e: Error) => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();
  private readonly tail: string[] = [];
  private stderrPartial = "";
  private logSink: ((line: string) => void) | undefined;
  private requestSink: ((line: string) => void) | undefined;
  private reason: ServeCloseReason | undefined;
  private resolveClosed!: (r: ServeCloseReason) => void;
  private intent: ServeCloseIntent | undefined;
  private stdoutEnded = false;
  /** Bytes written to the peer, to know whether a failed request left anything half-sent. */
  private sentBytes = 0;
  /** The request in flight, for messages. */
  private current: string | undefined;

  private constructor(private readonly options: ServeSessionOptions) {
    this.name = options.name ?? "the serve peer";
    this.clientVersion = options.version ?? SERVE_PROTOCOL_VERSION;
    this.limits = options.limits ?? DEFAULT_WIRE_LIMITS;
    this.logSink = options.onStderrLine;
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));
    this.proc = spawnPiped(options.argv, {
      ...(options.env ? { env: options.env } : {}),
    });
    this.proc.stdin.on("error", () => undefined); // EPIPE: the EOF on stdout reports it.
    this.proc.stdout.on("data", (chunk: Buffer) => this.onData(chunk));
    this.proc.stdout.on("end", () => this.onEof());
    this.proc.stdout.on("error", () => this.onEof());
    // A multi-byte character may be split across chunks: decode as a stream.
    const utf8 = new StringDecoder("utf8");
    this.proc.stderr.on("data", (chunk: Buffer) => this.onStderr(utf8.write(chunk)));
    this.proc.stderr.on("end", () => {
      this.onStderr(utf8.end());
      if (this.stderrPartial) this.emitLine(this.stderrPartial);
      this.stderrPartial = "";
    });
    void this.proc.exited.then((exit) => {
      // A grandchild may hold stdout open after the peer died: do not wait for it long.
      if (!this.stdoutEnded) setTimeout(() => this.finishClose(exit), 200).unref();
      else this.finishClose(exit);
    });
    if (options.signal) {
      const onAbort = () => {
        this.intent ??= { kind: "aborted", message: "the operation was interrupted" };
        this.proc.kill("SIGKILL");
      };
      if (options.signal.aborted) onAbort();
      else options.signal.addEventListener("abort", onAbort, { once: true });
      void this.closed.then(() => options.signal?.removeEventListener("abort", onAbort));
    }
  }

  /** Starts the peer and exchanges the greeting. */
  static async open(options: ServeSessionOptions): Promise<ServeSession> {
    const s = new ServeSession(options);
    try {
      const hello = await s.request(
        "the greeting",
        () => s.write(encodeClientHello(s.clientVersion)),
        decodeServerHello,
        { timeoutMs: options.handshakeTimeoutMs ?? 30_000 },
      );
      s.serverVersion = hello.version;
    } catch (e) {
      s.kill();
      await s.closed;
      throw e;
    }
    return s;
  }

  /** The command line of the peer (secrets redacted). */
  get command(): string {
    return this.proc.command;
  }

  /** Whether the connection has ended. */
  get isClosed(): boolean {
    return this.reason !== undefined || this.intent !== undefined;
  }

  /** Routes stderr lines not claimed by a request (undefined: drop them). */
  setLogSink(sink: ((line: string) => void) | undefined): void {
    this.logSink = sink;
    this.requestSink = undefined;
  }

  /** The peer's last stderr lines. */
  stderrTail(): string[] {
    return [...this.tail];
  }

  /** The subset of `paths` valid in the peer's store. */
  queryValidPaths(
    paths: readonly string[],
    options: RequestOptions & { lock?: boolean; substitute?: boolean } = {},
  ): Promise<string[]> {
    const req: ServeRequest = {
      cmd: "queryValidPaths",
      lock: options.lock ?? false,
      substitute: options.substitute ?? false,
      paths: [...paths],
    };
    return this.simple(req, "QueryValidPaths", decodePathList, options);
  }

  /** Path infos of the valid ones among `paths` (invalid paths are left out). */
  queryPathInfos(paths: readonly string[], options: RequestOptions = {}): Promise<PathInfo[]> {
    return this.simple(
      { cmd: "queryPathInfos", paths: [...paths] },
      "QueryPathInfos",
      decodePathInfos,
      options,
    );
  }

  /** The closure of `paths` in the peer's store, with derivation outputs if asked. */
  queryClosure(
    paths: readonly string[],
    includeOutputs: boolean,
    options: RequestOptions = {},
  ): Promise<string[]> {
    const req: ServeRequest = { cmd: "queryClosure", includeOutputs, paths: [...paths] };
    return this.simple(req, "QueryClosure", decodePathList, options);
  }

  /**
   * Sends an export stream (from `nix-store --export`, or another session's ExportPaths) to be
   * imported; resolves with what it held once the peer acknowledges. The stream is checked as
   * it passes: a malformed or truncated one is never completed, and the session is killed.
   */
  importPaths(source: ByteSource, options: RequestOptions = {}): Promise<ExportedPath[]> {
    const scanner = new IncrementalDecoder(
      scanExportStream,
      "export stream sent to ImportPaths",
      this.limits,
    );
    const command = encodeRequest({ cmd: "importPaths" }, this.clientVersion);
    return this.request(
      "ImportPaths",
      () =>
        this.stream(
          source,
          command,
          (bytes) => {
            if (scanner.push(bytes) < bytes.length) {
              throw new NixpoolError(
                "SERVE_REQUEST_FAILED",
                `The export stream sent to ${this.name} has bytes after its end.`,
                {
                  hint: "Pass exactly one export stream (nix-store --export or ExportPaths) to importPaths.",
                },
              );
            }
          },
          options.onBytes,
        ).then(() => void scanner.finish()),
      (ctx) => decodeAck(ctx, "ImportPaths"),
      options,
    ).then(() => scanner.value);
  }

  /**
   * Adds one path from its NAR and metadata (Nix checks narHash and narSize; signatures are not
   * checked). The NAR is checked as it passes and must be exactly `info.narSize` bytes.
   */
  addToStoreNar(info: AddToStoreNarInfo, nar: ByteSource, options: RequestOptions = {}): Promise<NarSummary> {
    const scanner = new IncrementalDecoder(scanNar, `NAR of ${info.path}`, this.limits);
    const command = encodeRequest({ cmd: "addToStoreNar", info }, this.clientVersion);
    const wrongSize = (got: string) =>
      new NixpoolError(
        "SERVE_REQUEST_FAILED",
        `The NAR given for ${info.path} is ${got}, not the ${info.narSize} bytes declared.`,
        {
          hint: "Pass the NAR's exact size as narSize (nix-store --dump PATH | wc -c).",
          details: { path: info.path, narSize: info.narSize },
        },
      );
    let total = 0;
    return this.request(
      `AddToStoreNar of ${info.path}`,
      () =>
        this.stream(
          nar,
          command,
          (bytes) => {
            total += bytes.length;
            if (total > info.narSize) throw wrongSize("longer");
            if (scanner.push(bytes) < bytes.length) throw wrongSize("followed by extra bytes");
          },
          options.onBytes,
        ).then(() => {
          scanner.finish();
          if (total !== info.narSize) throw wrongSize(`${total} bytes`);
        }),
      (ctx) => decodeAck(ctx, "AddToStoreNar"),
      options,
    ).then(() => scanner.value);
  }

  /** Streams the export stream of `paths` (references first) into `sink`; resolves with what it held. */
  exportPaths(
    paths: readonly string[],
    sink: NodeJS.WritableStream,
    options: RequestOptions = {},
  ): Promise<ExportedPath[]> {
    const req: ServeRequest = { cmd: "exportPaths", paths: [...paths] };
    return this.request(
      "ExportPaths",
      () => this.write(encodeRequest(req, this.clientVersion)),
      scanExportStream,
      { ...options, passthrough: sink },
    );
  }

  /** Streams the NAR of one path into `sink`. */
  dumpStorePath(
    path: string,
    sink: NodeJS.WritableStream,
    options: RequestOptions = {},
  ): Promise<NarSummary> {
    const req: ServeRequest = { cmd: "dumpStorePath", path };
    return this.request("DumpStorePath", () => this.write(encodeRequest(req, this.clientVersion)), scanNar, {
      ...options,
      passthrough: sink,
    });
  }

  /**
   * Builds a derivation whose inputs are already in the peer's store. Build failures come back
   * as a BuildResult (PermanentFailure, TimedOut, …); the log arrives on stderr, routed to `onLog`.
   */
  buildDerivation(
    drvPath: string,
    drv: BasicDerivation,
    options: RequestOptions & { build?: Partial<BuildOptions> } = {},
  ): Promise<BuildResult> {
    const req: ServeRequest = {
      cmd: "buildDerivation",
      drvPath,
      drv,
      options: { ...DEFAULT_BUILD_OPTIONS, ...options.build },
    };
    return this.simple(
      req,
      `BuildDerivation of ${drvPath}`,
      (ctx) => decodeBuildResult(ctx, this.serverVersion),
      options,
    );
  }

  /**
   * Ends the session: closes stdin (the peer exits; a running build is aborted), waits up to
   * `graceMs` for the process, then kills it.
   */
  async close(graceMs = 2000): Promise<ServeCloseReason> {
    if (!this.reason) {
      this.intent ??= { kind: "closed", message: "nixpool closed the connection" };
      this.failPending?.(this.lostError(this.current ?? "a request"));
      this.proc.stdin.end();
      const timer = setTimeout(() => this.proc.kill("SIGKILL"), graceMs);
      await this.closed;
      clearTimeout(timer);
    }
    return this.closed;
  }

  /** Kills the peer at once. */
  kill(): void {
    if (this.reason) return;
    this.intent ??= { kind: "killed", message: "nixpool killed the connection" };
    this.proc.kill("SIGKILL");
  }

  private simple<T>(
    req: ServeRequest,
    what: string,
    make: (ctx: DecodeContext) => Decoder<T>,
    options: RequestOptions,
  ): Promise<T> {
    return this.request(what, () => this.write(encodeRequest(req, this.clientVersion)), make, options);
  }

  /** Runs one request in turn: sends it, decodes the answer, optionally passing its bytes on. */
  private request<T>(
    what: string,
    send: () => Promise<void>,
    make: (ctx: DecodeContext) => Decoder<T>,
    options: RequestOptions & { passthrough?: NodeJS.WritableStream },
  ): Promise<T> {
    const run = () =>
      new Promise<T>((resolve, reject) => {
        if (this.isClosed) {
          reject(this.lostError(what));
          return;
        }
        const decoder = new IncrementalDecoder(make, what, this.limits);
        let settled = false;
        let timer: NodeJS.Timeout | undefined;
        const settle = (error: Error | undefined, value?: T) => {
          if (settled) return;
          settled = true;
          this.reader = undefined;
          this.failPending = undefined;
          this.current = undefined;
          // requestSink stays: a build's last log lines travel on stderr, which ssh does not order
          // with the result on stdout; they still belong to that build until the next one starts.
          if (timer) clearTimeout(timer);
          if (error) reject(error);
          else resolve(value as T);
        };
        this.failPending = (e) => settle(e);
        this.current = what;
        if (options.onLog) this.requestSink = options.onLog;
        const sink = options.passthrough;
        this.reader = (chunk) => {
          let used: number;
          try {
            used = decoder.push(chunk);
          } catch (e) {
            this.breakConnection("protocol-error", `it sent bytes that are not the protocol during ${what}`);
            settle(e instanceof Error ? e : new Error(String(e)));
            return;
          }
          // A sink that went away (the importing side failed) no longer gets bytes, but the
          // answer is still read to its end so this session stays usable.
          if (sink && used > 0) options.onBytes?.(used);
          if (sink && used > 0 && !isGone(sink) && !sink.write(chunk.subarray(0, used))) {
            // Backpressure: stop reading the peer until the sink has room (or is gone).
            this.proc.stdout.pause();
            const resume = () => {
              sink.removeListener("drain", resume);
              sink.removeListener("close", resume);
              this.proc.stdout.resume();
            };
            sink.on("drain", resume);
            sink.on("close", resume);
          }
          if (!decoder.done) return;
          if (used < chunk.length) {
            const err = protocolError(
              `${this.name} sent ${chunk.length - used} bytes after its answer to ${what}.`,
              {
                what,
              },
            );
            this.breakConnection("protocol-error", `it sent bytes nobody asked for after ${what}`);
            settle(err);
            return;
          }
          settle(undefined, decoder.value);
        };
        if (options.timeoutMs !== undefined && options.timeoutMs > 0) {
          const ms = options.timeoutMs;
          timer = setTimeout(() => {
            this.breakConnection("timeout", `it did not answer ${what} within ${ms} ms`);
            settle(requestTimeoutError(this.name, what, ms));
          }, ms);
        }
        const sentBefore = this.sentBytes;
        send().catch((e: unknown) => {
          // Part of a request went out: the peer's state is unknown, so the connection goes too.
          if (this.sentBytes !== sentBefore) this.breakConnection("killed", `sending ${what} failed`);
          settle(e instanceof Error ? e : new Error(String(e)));
        });
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => undefined);
    return result;
  }

  /**
   * Sends `command` then the bytes of `source`, each chunk checked by `check` before it goes
   * out. Nothing is sent before the source yields its first chunk, so a source that fails at
   * once leaves the session usable.
   */
  private async stream(
    source: ByteSource,
    command: Uint8Array,
    check: (bytes: Uint8Array) => void,
    onBytes: ((bytes: number) => void) | undefined,
  ): Promise<void> {
    let pending: Uint8Array | undefined = command;
    for await (const chunk of source as AsyncIterable<Uint8Array | string>) {
      const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
      check(bytes);
      if (pending) {
        await this.write(pending);
        pending = undefined;
      }
      await this.write(bytes);
      onBytes?.(bytes.length);
    }
    if (pending) await this.write(pending);
  }

  private async write(bytes: Uint8Array): Promise<void> {
    if (this.isClosed) throw this.lostError(this.current ?? "a request");
    this.sentBytes += bytes.length;
    if (this.proc.stdin.write(bytes)) return;
    try {
      await Promise.race([
        once(this.proc.stdin as unknown as NodeJS.EventEmitter, "drain"),
        this.closed.then(() => Promise.reject(new Error("closed"))),
      ]);
    } catch {
      // EPIPE or the end of the session: report it as the connection loss it is.
      await Promise.race([this.closed, sleep(1000)]);
      throw this.lostError(this.current ?? "a request");
    }
  }

  private onData(chunk: Uint8Array): void {
    if (this.reader) {
      this.reader(chunk);
      return;
    }
    if (this.isClosed) return;
    this.breakConnection("protocol-error", `it sent ${chunk.length} bytes nobody asked for`);
  }

  private onEof(): void {
    this.stdoutEnded = true;
    // Prefer the exit status in the error: wait briefly for the process to be reaped.
    void Promise.race([this.proc.exited, sleep(500)]).then((exit) => {
      this.finishClose(exit ?? { exitCode: undefined, signal: undefined, failedToStart: undefined });
    });
  }

  private onStderr(text: string): void {
    const parts = text.split("\n");
    const last = parts.pop() ?? "";
    if (parts.length > 0) {
      parts[0] = this.stderrPartial + (parts[0] ?? "");
      this.stderrPartial = "";
      for (const line of parts) this.emitLine(line);
    }
    this.stderrPartial += last;
    // A line without end (a broken or hostile peer) is cut: memory and time stay bounded.
    while (this.stderrPartial.length > STDERR_LINE_MAX) {
      this.emitLine(this.stderrPartial.slice(0, STDERR_LINE_MAX));
      this.stderrPartial = this.stderrPartial.slice(STDERR_LINE_MAX);
    }
  }

  private emitLine(raw: string): void {
    // ssh prints its own messages with CRLF.
    const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    this.tail.push(line);
    if (this.tail.length > STDERR_TAIL) this.tail.shift();
    const sink = this.requestSink ?? this.logSink;
    sink?.(line);
  }

  private breakConnection(kind: "protocol-error" | "timeout" | "killed", message: string): void {
    this.intent ??= { kind, message };
    this.proc.kill("SIGKILL");
  }

  private finishClose(exit: ServeProcessExit): void {
    if (this.reason) return;
    const stderrTail = [...this.tail, ...(this.stderrPartial ? [this.stderrPartial] : [])];
    this.reason = describeClose(this.options.argv[0] ?? "the command", this.intent, exit, stderrTail);
    this.failPending?.(this.lostError(this.current ?? "a request"));
    this.resolveClosed(this.reason);
    this.options.onClose?.(this.reason);
  }

  private lostError(what: string): NixpoolError {
    return connectionLostError(this.name, what, this.reason, this.intent, this.proc.command);
  }
}

function isGone(sink: NodeJS.WritableStream): boolean {
  const w = sink as NodeJS.WritableStream & { destroyed?: boolean; writableEnded?: boolean };
  return w.destroyed === true || w.writableEnded === true;
}

function sleep(ms: number): Promise<undefined> {
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms).unref());
}

export type { ServeCloseReason } from "../core/nix-serve/index.js";
// transferPaths lives in its own file; re-exported here, where it first landed.
export { transferPaths } from "./nix-serve-transfer.js";
