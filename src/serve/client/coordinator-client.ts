import { request as httpRequest, type IncomingMessage, type RequestOptions } from "node:http";
import { request as httpsRequest } from "node:https";
import { z } from "zod";
import { ERROR_CODES, ExitCode, NixpoolError, type ErrorCode } from "../../core/errors.js";
import { SseParser } from "../../core/sse-parse.js";
import type { SubmitRequest } from "../coordinator-types.js";
import { describeTarget, type CoordinatorTarget } from "./coordinator-target.js";
import {
  ApiErrorBodySchema,
  BuildDetailSchema,
  StreamEventSchema,
  type ClientBuildDetail,
  type StreamEvent,
} from "./coordinator-responses.js";

const UNREACHABLE = new Set([
  "ENOENT",
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EACCES",
  "EAI_AGAIN",
]);
const MAX_ERROR_BODY = 64 * 1024;
const StorePaths = z.array(z.string().regex(/^\/nix\/store\/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]+$/));
const ValidPathsSchema = z.object({ valid: StorePaths });
const ClosureSchema = z.object({ closure: StorePaths });
const ImportedSchema = z.object({ imported: StorePaths });
const StorePathOrEmpty = z.union([z.literal(""), StorePaths.element]);
const PathInfosSchema = z.object({
  infos: z.array(
    z.object({
      path: StorePaths.element,
      deriver: StorePathOrEmpty,
      references: StorePaths,
      downloadSize: z.number().int().nonnegative(),
      narSize: z.number().int().nonnegative(),
      narHash: z.string().max(200),
      ca: z.string().max(500),
      sigs: z.array(z.string().max(1000)).max(100),
    }),
  ),
});

/** A client of one coordinator's API (docs/api.md), over its Unix socket or http(s). */
export class CoordinatorClient {
  readonly name: string;

  constructor(readonly target: CoordinatorTarget) {
    this.name = describeTarget(target);
  }

  private unreachable(why: string, cause?: unknown): NixpoolError {
    return new NixpoolError(
      "COORDINATOR_UNREACHABLE",
      `The coordinator at ${this.name} does not answer (${why}).`,
      {
        hint:
          this.target.kind === "socket"
            ? "Is nixpool serve running on this state directory? Start it with: nixpool serve (or build here: --no-coordinator)"
            : "Check the URL and that nixpool serve --listen runs there (or build here: --no-coordinator)",
        details: { reason: why },
        ...(cause !== undefined ? { cause } : {}),
      },
    );
  }

  private send(
    method: string,
    path: string,
    o: {
      body?: unknown;
      accept?: string;
      signal?: AbortSignal;
      /** A streamed body (sent chunked) and its type, instead of JSON. */
      stream?: { source: NodeJS.ReadableStream; contentType: string };
    } = {},
  ): Promise<IncomingMessage> {
    const t = this.target;
    const body = o.body === undefined ? undefined : JSON.stringify(o.body);
    const headers: Record<string, string> = {
      Accept: o.accept ?? "application/json",
      ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
      ...(o.stream ? { "Content-Type": o.stream.contentType } : {}),
      ...(t.kind === "http" && t.token !== undefined ? { Authorization: `Bearer ${t.token}` } : {}),
    };
    const base = t.kind === "http" ? t.url.pathname.replace(/\/$/, "") : "";
    const options: RequestOptions =
      t.kind === "socket"
        ? { socketPath: t.path, path, method, headers: { ...headers, Host: "localhost" } }
        : {
            protocol: t.url.protocol,
            hostname: t.url.hostname.replace(/^\[|\]$/g, ""),
            port: t.url.port,
            path: `${base}${path}`,
            method,
            headers,
          };
    return new Promise((resolve, reject) => {
      const req = (t.kind === "http" && t.url.protocol === "https:" ? httpsRequest : httpRequest)(
        { ...options, ...(o.signal ? { signal: o.signal } : {}) },
        resolve,
      );
      req.setTimeout(30_000, () =>
        req.destroy(Object.assign(new Error("no answer in 30 s"), { code: "ETIMEDOUT" })),
      );
      req.once("error", (e: NodeJS.ErrnoException) => {
        if (o.signal?.aborted) reject(interrupted());
        else reject(this.unreachable(e.code && UNREACHABLE.has(e.code) ? e.code : e.message, e));
      });
      if (o.stream) {
        o.stream.source.once("error", (e: Error) => req.destroy(e));
        o.stream.source.pipe(req);
      } else req.end(body);
    });
  }

  /** Reads a refusal: 401/403 name the URL and how to authenticate; known codes stay themselves. */
  private async refusal(res: IncomingMessage, what: string): Promise<NixpoolError> {
    const text = await readBody(res, MAX_ERROR_BODY).catch(() => "");
    let parsed: z.infer<typeof ApiErrorBodySchema> | undefined;
    try {
      const r = ApiErrorBodySchema.safeParse(JSON.parse(text));
      parsed = r.success ? r.data : undefined;
    } catch {
      parsed = undefined;
    }
    const status = res.statusCode ?? 0;
    const message = parsed?.message ?? `HTTP ${status}`;
    if (status === 401 || (status === 403 && parsed?.code !== "API_FORBIDDEN")) {
      return new NixpoolError(
        "COORDINATOR_UNAUTHORIZED",
        `The coordinator at ${this.name} refused ${what}: ${message}`,
        {
          hint:
            this.target.kind === "http"
              ? "Set NIXPOOL_COORDINATOR_TOKEN to what `nixpool serve token` prints on the coordinator's machine (or use its state directory)."
              : "Ask the coordinator's operator for access to its socket.",
        },
      );
    }
    const known = parsed && (ERROR_CODES as readonly string[]).includes(parsed.code);
    return new NixpoolError(
      known ? (parsed?.code as ErrorCode) : "COORDINATOR_REQUEST_FAILED",
      `The coordinator at ${this.name} refused ${what}: ${message}`,
      {
        hint: parsed?.hint ?? "See the coordinator's log (journalctl -u nixpool-serve) and docs/api.md.",
        details: { status, ...(parsed ? { code: parsed.code } : {}) },
      },
    );
  }

  private async json<T extends z.ZodType>(
    method: string,
    path: string,
    schema: T,
    what: string,
    send: Parameters<CoordinatorClient["send"]>[2] = {},
  ): Promise<z.infer<T>> {
    const res = await this.send(method, path, send);
    if ((res.statusCode ?? 0) >= 400) throw await this.refusal(res, what);
    const text = await readBody(res, 64 * 1024 * 1024);
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      throw this.badResponse(`${what}: not JSON`);
    }
    const r = schema.safeParse(value);
    if (!r.success)
      throw this.badResponse(
        `${what}: ${r.error.issues[0]?.path.join(".") ?? ""} ${r.error.issues[0]?.message ?? ""}`,
      );
    return r.data;
  }

  private badResponse(what: string): NixpoolError {
    return new NixpoolError("COORDINATOR_BAD_RESPONSE", `The coordinator at ${this.name} answered ${what}.`, {
      hint: "Is that a nixpool serve of the same version? Check with: nixpool --version on both ends.",
    });
  }

  /** GET /api/builds/:id */
  build(id: string): Promise<ClientBuildDetail> {
    return this.json("GET", `/api/builds/${encodeURIComponent(id)}`, BuildDetailSchema, `build ${id}`);
  }

  /** POST /api/store/valid: the subset of `paths` the coordinator's store holds. */
  async validPaths(paths: readonly string[]): Promise<string[]> {
    if (paths.length === 0) return [];
    const r = await this.json("POST", "/api/store/valid", ValidPathsSchema, "the store query", {
      body: { paths },
    });
    return r.valid;
  }

  /** POST /api/store/closure: the closure of `paths` in the coordinator's store. */
  async closure(paths: readonly string[]): Promise<string[]> {
    const r = await this.json("POST", "/api/store/closure", ClosureSchema, "the closure query", {
      body: { paths },
    });
    return r.closure;
  }

  /** POST /api/store/import: sends an export stream into the coordinator's store; the paths it held. */
  async importPaths(source: NodeJS.ReadableStream, signal?: AbortSignal): Promise<string[]> {
    const r = await this.json("POST", "/api/store/import", ImportedSchema, "the upload", {
      stream: { source, contentType: "application/x-nix-export" },
      ...(signal ? { signal } : {}),
    });
    return r.imported;
  }

  /** POST /api/store/export: the export stream of exactly `paths` (references first). */
  async exportPaths(paths: readonly string[], signal?: AbortSignal): Promise<IncomingMessage> {
    const res = await this.send("POST", "/api/store/export", {
      body: { paths },
      ...(signal ? { signal } : {}),
    });
    if ((res.statusCode ?? 0) >= 400) throw await this.refusal(res, "the download");
    return res;
  }

  /** POST /api/pool/valid: the subset of `paths` any store of the pool holds (the gateway's QueryValidPaths). */
  async poolValid(paths: readonly string[], substitute: boolean): Promise<string[]> {
    if (paths.length === 0) return [];
    const r = await this.json("POST", "/api/pool/valid", ValidPathsSchema, "the pool query", {
      body: { paths, substitute },
    });
    return r.valid;
  }

  /** POST /api/pool/fetch: copies `paths` (with their closures) from the builders holding them into the coordinator's store. */
  async poolFetch(paths: readonly string[]): Promise<void> {
    if (paths.length === 0) return;
    await this.json("POST", "/api/pool/fetch", z.object({ copied: z.number() }), "the copy from the pool", {
      body: { paths },
    });
  }

  /** POST /api/pool/path-infos: path infos of the valid ones among `paths`, from the stores holding them. */
  async poolPathInfos(paths: readonly string[]): Promise<z.infer<typeof PathInfosSchema>["infos"]> {
    if (paths.length === 0) return [];
    const r = await this.json("POST", "/api/pool/path-infos", PathInfosSchema, "the path info query", {
      body: { paths },
    });
    return r.infos;
  }

  /** POST /api/pool/closure: the closure of `paths` across the pool's stores. */
  async poolClosure(paths: readonly string[]): Promise<string[]> {
    const r = await this.json("POST", "/api/pool/closure", ClosureSchema, "the pool closure query", {
      body: { paths },
    });
    return r.closure;
  }

  /** POST /api/pool/nar: the NAR of `path`, streamed from the store of the pool that holds it. */
  async poolNar(path: string): Promise<IncomingMessage> {
    const res = await this.send("POST", "/api/pool/nar", { body: { path } });
    if ((res.statusCode ?? 0) >= 400) throw await this.refusal(res, `the NAR of ${path}`);
    return res;
  }

  /** DELETE /api/builds/:id: cancels a build of this client's. */
  async cancel(id: string): Promise<void> {
    const res = await this.send("DELETE", `/api/builds/${encodeURIComponent(id)}`);
    if ((res.statusCode ?? 0) >= 400) throw await this.refusal(res, `to cancel build ${id}`);
    res.resume();
  }

  /**
   * POST /api/builds as a stream: `onEvent` sees each of the build's events (the first names its
   * id); resolves with the build once it finished. Aborting `signal` only stops reading.
   */
  async submit(
    req: SubmitRequest,
    onEvent: (e: StreamEvent) => void,
    signal?: AbortSignal,
  ): Promise<ClientBuildDetail | undefined> {
    const res = await this.send("POST", "/api/builds", {
      body: req,
      accept: "text/event-stream",
      ...(signal ? { signal } : {}),
    });
    if ((res.statusCode ?? 0) >= 400) throw await this.refusal(res, "the build");
    return this.readBuildStream(res, undefined, onEvent, signal);
  }

  /**
   * GET /api/events?build=ID: opens the stream of a build this client already follows (on
   * another coordinator, or this one again); refused (404) when this coordinator does not know it.
   */
  async openBuildEvents(id: string, signal?: AbortSignal): Promise<IncomingMessage> {
    const res = await this.send("GET", `/api/events?build=${encodeURIComponent(id)}`, {
      accept: "text/event-stream",
      ...(signal ? { signal } : {}),
    });
    if ((res.statusCode ?? 0) >= 400) throw await this.refusal(res, `the events of build ${id}`);
    return res;
  }

  /**
   * Reads a build's event stream (a submission's, or one openBuildEvents opened) until its `end`:
   * `onEvent` sees `submitted`, `dispatch` and `end` (the rest is skipped). A stream that breaks or
   * closes before the end is COORDINATOR_UNREACHABLE; aborting `signal` is INTERRUPTED.
   */
  async readBuildStream(
    res: IncomingMessage,
    followed: string | undefined,
    onEvent: (e: StreamEvent) => void,
    signal?: AbortSignal,
  ): Promise<ClientBuildDetail | undefined> {
    if (!/^text\/event-stream\b/.test(res.headers["content-type"] ?? "")) {
      res.resume();
      throw this.badResponse("the build with no event stream");
    }
    const parser = new SseParser();
    res.setEncoding("utf8");
    let id = followed;
    try {
      for await (const chunk of res as AsyncIterable<string>) {
        for (const m of parser.push(chunk)) {
          let data: unknown;
          try {
            data = JSON.parse(m.data);
          } catch {
            throw this.badResponse(`an event that is not JSON (${m.event})`);
          }
          const type = (data as { type?: unknown } | null)?.type;
          if (type !== "submitted" && type !== "dispatch" && type !== "end") continue;
          const r = StreamEventSchema.safeParse(data);
          if (!r.success) throw this.badResponse(`a malformed ${String(type)} event`);
          if (r.data.type === "submitted") id = r.data.id;
          onEvent(r.data);
          if (r.data.type === "end") return r.data.build;
        }
      }
    } catch (e) {
      if (signal?.aborted) throw interrupted();
      if (e instanceof NixpoolError) throw e;
      throw this.unreachable(`the stream of build ${id ?? "(not yet named)"} broke`, e);
    }
    if (signal?.aborted) throw interrupted();
    throw this.unreachable(
      `it closed the stream of build ${id ?? "(not yet named)"} before the build finished`,
    );
  }
}

/** A build the user interrupted (Ctrl-C): exit 130. */
export function interrupted(): NixpoolError {
  return new NixpoolError("INTERRUPTED", "The build was interrupted.", { exitCode: ExitCode.interrupted });
}

async function readBody(res: IncomingMessage, max: number): Promise<string> {
  let size = 0;
  const parts: Buffer[] = [];
  for await (const chunk of res as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > max) {
      res.destroy();
      throw new RangeError("answer too large");
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString("utf8");
}
