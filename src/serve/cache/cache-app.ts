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
  /**
   * A store that, once a session is free for the request, sends no byte for this long before the
   * first byte of the response (a resume's skipped bytes count) is passed over (default 20 s).
   * Waiting for a busy store's session is not bounded by it.
   */
  firstByteMs?: number;
}

/** At most this many NARs stream (or wait for a store's session) at once; more are 503 (Nix retries). */
const MAX_STREAMS = 64;

const notFound = (message: string) => new ApiError(404, "API_NOT_FOUND", message);
const unavailable = (path: string) =>
  new ApiError(
    503,
    "CACHE_UNAVAILABLE",
    `No store that holds ${path} can send it now.`,
    "Its builders are down or no longer hold it; Nix asks again, or try later.",
  );
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
    // HEAD answers as GET would, without the body: 503 when no store that holds the NAR is up.
    const holders = holdersUp(o, r);
    if (holders.length === 0) throw unavailable(r.info.storePath);
    if (c.req.method === "HEAD") return c.body(null, status, headers);
    if (streaming >= MAX_STREAMS) {
      throw new ApiError(503, "CACHE_BUSY", `This cache streams ${MAX_STREAMS} NARs already.`);
    }
    streaming++;
    let body: ReadableStream;
    try {
      body = await streamFromHolders(c, o, r, holders, { start, end }, () => streaming--);
    } catch (e) {
      streaming--;
      throw e;
    }
    return c.body(body, status, headers);
  });
  return app;
}

/** The stores that hold `r` and may answer now (this machine's, and builders that are up). */
function holdersUp(o: CacheAppOptions, r: ResolvedPath): string[] {
  const up = new Set(
    o.stores.sources
      .builders()
      .filter((b) => b.up)
      .map((b) => b.name),
  );
  return r.holders.filter((h) => h === LOCAL_HOLDER || up.has(h));
}

const asError = (e: unknown) => (e instanceof Error ? e : new Error(String(e)));

/**
 * Streams the NAR from the first holder that starts sending it, stores with a free session first.
 * A store whose sessions are all busy makes the request wait its turn (other downloads end, or are
 * cut after idleMs). From its turn, a store that fails before the response's first byte (down, the
 * path gone, nothing read for firstByteMs) is passed over; one that fails later cuts the response,
 * and Nix asks again from where it got to (Range), which the next holder answers.
 */
async function streamFromHolders(
  c: Context<ApiEnv>,
  o: CacheAppOptions,
  r: ResolvedPath,
  holders: string[],
  window: { start: number; end: number },
  onEnd: () => void,
): Promise<ReadableStream> {
  const free = new Set(holders.filter((h) => o.stores.hasFreeNarSession(h)));
  const order = [...holders.filter((h) => free.has(h)), ...holders.filter((h) => !free.has(h))];
  const socket = c.env.incoming.socket;
  const idleMs = o.idleMs ?? 60_000;
  const stallMs = o.firstByteMs ?? 20_000;
  const path = r.info.storePath;
  // Aborts when the client goes away before the response is finished (@hono/node-server).
  const left = c.req.raw.signal;
  // Waiting for a store's first byte is the cache's wait, bounded by firstByteMs: no idle cut meanwhile.
  socket.setTimeout(0);
  for (const holder of order) {
    let firstByte!: () => void;
    const started = new Promise<"started">((resolve) => (firstByte = () => resolve("started")));
    let stall!: (e: Error) => void;
    const stalled = new Promise<Error>((resolve) => (stall = resolve));
    let timer: NodeJS.Timeout | undefined;
    let waiting = true;
    // A download counts for its path from its first byte (a store passed over sent none).
    let count: ((bytes: number) => void) | undefined;
    let rangeDone = false;
    const stop = new AbortController();
    const win = new NarWindow(
      window.start,
      window.end,
      (n) => {
        firstByte();
        count ??= o.stats.narStarted(path);
        count(n);
      },
      {
        // Any byte read, sent or skipped before a resume's first, shows the store is sending.
        onRead: () => {
          if (waiting) timer?.refresh();
        },
        // A range that ends before the NAR: the rest is not read; the session, mid-answer, is killed.
        onFull: () => {
          if (window.end < r.info.narSize - 1) {
            rangeDone = true;
            stop.abort();
          }
        },
      },
    );
    const abort = () => stop.abort();
    win.once("close", abort);
    left.addEventListener("abort", abort, { once: true });
    win.once("close", () => left.removeEventListener("abort", abort));
    // The clock starts when a session is free for this request, not while others use the store's.
    const turn = () => {
      timer = setTimeout(() => stall(new Error(`sent no byte for ${stallMs} ms`)), stallMs);
    };
    const dump = o.stores.dumpNar(holder, path, win, stop.signal, turn);
    const first = await Promise.race([
      started,
      dump.then(
        (how) => (how === "aborted" ? new Error("the client went away") : ("started" as const)),
        asError,
      ),
      stalled,
    ]);
    waiting = false;
    clearTimeout(timer);
    if (first !== "started") {
      stop.abort();
      win.destroy();
      // The client left: no store failed, nothing to forget or try next.
      if (left.aborted) break;
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
        if (rangeDone) {
          // Killed on purpose once the range was sent.
          o.stats.narServed();
          win.end();
          return;
        }
        o.stats.narCut();
        o.log(`cache: sending ${path} from ${holder} was cut: ${asError(e).message}`);
        win.destroy(asError(e));
      },
    );
    return Readable.toWeb(win) as ReadableStream;
  }
  socket.setTimeout(idleMs);
  throw unavailable(path);
}
