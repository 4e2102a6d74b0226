import { Readable } from "node:stream";
import { Hono, type Context } from "hono";
import { parseNarInfoName, parseNarName, parseRange } from "../../core/binary-cache/cache-request.js";
import { renderCacheInfo, renderNarInfo } from "../../core/binary-cache/narinfo.js";
import { storeHashOf } from "../../core/binary-cache/servable.js";
import { answerError, ApiError } from "../http/api-error.js";
import type { ApiEnv } from "../http/api-env.js";
import { authenticateCache, type CacheAuthOptions } from "./cache-auth.js";
import type { CacheIndex, ResolvedPath } from "./cache-index.js";
import type { CacheStats } from "./cache-stats.js";
import { LOCAL_HOLDER, type CacheStores } from "./cache-stores.js";
import { NarWindow } from "./nar-window.js";

/** Where the cache is on the coordinator's listeners. */
export const CACHE_PREFIX = "/cache";

export interface CacheAppOptions {
  index: CacheIndex;
  stores: CacheStores;
  stats: CacheStats;
  auth: CacheAuthOptions;
  /** nix-cache-info's Priority (lower wins; cache.nixos.org is 40). */
  priority: number;
  log: (line: string) => void;
  /**
   * A NAR download that neither side moves for this long is cut (default 60 s): the connection's
   * idle timeout (http-limits.ts), suspended while a store is asked for the NAR's first byte.
   */
  idleMs?: number;
  /** A store that sends no byte of a NAR for this long is passed over (default 20 s). */
  firstByteMs?: number;
}

/** At most this many NARs stream at once; more wait as 503 (Nix retries). */
const MAX_STREAMS = 64;

const notFound = (message: string) => new ApiError(404, "API_NOT_FOUND", message);
const badName = (name: string) =>
  new ApiError(400, "API_BAD_REQUEST", `"${name.slice(0, 80)}" is not a narinfo or NAR name of this cache.`);

/**
 * The pool's binary cache, in the layout Nix's `http://` substituter reads: /cache/nix-cache-info,
 * /cache/HASH.narinfo (signed), /cache/nar/HASH-NARHASH.nar (streamed from a store that holds it,
 * HEAD and one byte range as Nix uses them).
 */
export function createCacheApp(o: CacheAppOptions): Hono<ApiEnv> {
  const app = new Hono<ApiEnv>();
  app.onError((e, c) => {
    const answer = answerError(c, e, o.log);
    // Nix's curl answers a Basic challenge from its netrc-file; the API's own is Bearer.
    if (answer.status === 401) answer.headers.set("WWW-Authenticate", 'Basic realm="nixpool cache"');
    return answer;
  });
  app.notFound((c) =>
    c.json({ code: "API_NOT_FOUND", message: `No such file in this cache: ${c.req.path}.` }, 404),
  );
  // Only GET and HEAD, and no request body: the cache reads nothing a client sends but its name.
  app.use("*", async (c, next) => {
    if (c.req.method !== "GET" && c.req.method !== "HEAD") {
      return c.json(
        { code: "API_BAD_REQUEST", message: `The cache answers GET and HEAD, not ${c.req.method}.` },
        405,
        {
          Allow: "GET, HEAD",
          Connection: "close",
        },
      );
    }
    const length = c.req.header("content-length");
    if ((length !== undefined && length.trim() !== "0") || c.req.header("transfer-encoding") !== undefined) {
      return c.json({ code: "API_BAD_REQUEST", message: "A cache request carries no body." }, 413, {
        Connection: "close",
      });
    }
    return next();
  });
  app.use("*", authenticateCache(o.auth));
  const text = (c: Context<ApiEnv>, body: string, type: string) =>
    c.body(body, 200, { "Content-Type": type, "Cache-Control": "no-cache" });

  app.get(`${CACHE_PREFIX}/nix-cache-info`, (c) =>
    text(c, renderCacheInfo(o.priority), "text/x-nix-cache-info"),
  );
  app.get(`${CACHE_PREFIX}/:name`, async (c) => {
    const name = c.req.param("name");
    const hash = parseNarInfoName(name);
    if (hash === undefined) throw badName(name);
    const r = await o.index.resolve(hash);
    o.stats.narinfo(r !== undefined);
    if (!r) throw notFound(`This cache does not offer ${hash}.`);
    return text(c, renderNarInfo(r.info), "text/x-nix-narinfo");
  });
  let streaming = 0;
  app.get(`${CACHE_PREFIX}/nar/:name`, async (c) => {
    const name = c.req.param("name");
    const asked = parseNarName(name);
    if (!asked) throw badName(name);
    const r = await o.index.resolve(asked.hash);
    if (!r || r.info.narHash !== asked.narHash) throw notFound(`This cache does not offer the NAR ${name}.`);
    const size = r.info.narSize;
    const range = parseRange(c.req.header("range"), size);
    if (range === "unsatisfiable") {
      return c.body(null, 416, { "Content-Range": `bytes */${size}` });
    }
    const { start, end } = range ?? { start: 0, end: size - 1 };
    if (range) o.stats.rangeRequest();
    const headers: Record<string, string> = {
      "Content-Type": "application/x-nix-nar",
      "Content-Length": String(end - start + 1),
      "Accept-Ranges": "bytes",
      ...(range ? { "Content-Range": `bytes ${start}-${end}/${size}` } : {}),
    };
    const status = range ? 206 : 200;
    if (c.req.method === "HEAD") return c.body(null, status, headers);
    if (streaming >= MAX_STREAMS) {
      throw new ApiError(503, "CACHE_BUSY", `This cache streams ${MAX_STREAMS} NARs already.`);
    }
    streaming++;
    let body: ReadableStream;
    try {
      body = await streamFromHolders(c, o, r, { start, end }, () => streaming--);
    } catch (e) {
      streaming--;
      throw e;
    }
    return c.body(body, status, headers);
  });
  return app;
}

/**
 * Streams the NAR from the first holder that starts sending it. One that fails before its first
 * byte (down, or the path gone) is passed over; one that fails later cuts the response, and Nix
 * asks again from where it got to (Range), which the next holder answers.
 */
async function streamFromHolders(
  c: Context<ApiEnv>,
  o: CacheAppOptions,
  r: ResolvedPath,
  window: { start: number; end: number },
  onEnd: () => void,
): Promise<ReadableStream> {
  const up = new Set(
    o.stores.sources
      .builders()
      .filter((b) => b.up)
      .map((b) => b.name),
  );
  const holders = r.holders.filter((h) => h === LOCAL_HOLDER || up.has(h));
  const socket = c.env.incoming.socket;
  const idleMs = o.idleMs ?? 60_000;
  const path = r.info.storePath;
  // Waiting for a store's first byte is the cache's wait, bounded by firstByteMs: no idle cut meanwhile.
  socket.setTimeout(0);
  for (const holder of holders) {
    let firstByte!: () => void;
    const started = new Promise<"started">((resolve) => (firstByte = () => resolve("started")));
    // A download counts for its path from its first byte (a store passed over sent none).
    let count: ((bytes: number) => void) | undefined;
    const win = new NarWindow(window.start, window.end, (n) => {
      firstByte();
      count ??= o.stats.narStarted(path);
      count(n);
    });
    const stop = new AbortController();
    win.once("close", () => stop.abort());
    const dump = o.stores.dumpNar(holder, path, win, stop.signal);
    let timer: NodeJS.Timeout | undefined;
    const first = await Promise.race([
      started,
      dump.then(
        () => "started" as const,
        (e: unknown) => (e instanceof Error ? e : new Error(String(e))),
      ),
      new Promise<Error>((resolve) => {
        const ms = o.firstByteMs ?? 20_000;
        timer = setTimeout(() => resolve(new Error(`no byte within ${ms} ms`)), ms);
      }),
    ]);
    clearTimeout(timer);
    if (first !== "started") {
      stop.abort();
      win.destroy();
      o.index.forget(storeHashOf(path));
      o.log(`cache: ${holder} could not send ${path}: ${first.message}`);
      continue;
    }
    // A client that stops reading (or a store that stops sending) holds a session: the server cuts
    // the connection after idleMs (http-limits.ts), the response's stream closes, the session is killed.
    socket.setTimeout(idleMs);
    win.once("close", onEnd);
    dump.then(
      () => {
        o.stats.narServed();
        win.end();
      },
      (e: unknown) => {
        o.stats.narCut();
        o.log(`cache: sending ${path} from ${holder} was cut: ${e instanceof Error ? e.message : String(e)}`);
        win.destroy(e instanceof Error ? e : new Error(String(e)));
      },
    );
    return Readable.toWeb(win) as ReadableStream;
  }
  socket.setTimeout(idleMs);
  throw new ApiError(
    503,
    "CACHE_UNAVAILABLE",
    `No store that holds ${path} can send it now.`,
    "Its builders are down or no longer hold it; Nix asks again, or try later.",
  );
}
