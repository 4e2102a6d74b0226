import type { IncomingMessage, Server, ServerOptions } from "node:http";
import type { Duplex } from "node:stream";
import type { Socket } from "node:net";

/**
 * What one HTTP connection to the coordinator may hold, on both listeners (API, dashboard and
 * /cache): a slow or stalled client is cut after a bounded time and never holds a NAR's session,
 * a request too large gets its 4xx before anything is read into memory.
 */
export interface HttpLimits {
  /** The request line and headers must arrive within this (a client dribbling them is answered 408). */
  headersMs: number;
  /**
   * A connection on which no byte moves either way for this long is closed: a request body that
   * stops arriving, a client that stops reading a response (a NAR: its store session is freed).
   */
  idleMs: number;
  /** An idle keep-alive connection between two requests is closed after this. */
  keepAliveMs: number;
  /** Request line and headers at most this many bytes (431; 414 when the request line is over maxUrlBytes). */
  maxHeaderBytes: number;
  /** A URL longer than this is 414, whether Node or the app refuses it (the cache's longest is about 100 bytes). */
  maxUrlBytes: number;
}

export const DEFAULT_HTTP_LIMITS: HttpLimits = {
  headersMs: 30_000,
  idleMs: 60_000,
  keepAliveMs: 5_000,
  maxHeaderBytes: 16 * 1024,
  maxUrlBytes: 8 * 1024,
};

/** Node's options for a server with these limits (its own checks: headers, header size, keep-alive). */
export function serverOptionsFor(l: HttpLimits): ServerOptions {
  return {
    maxHeaderSize: l.maxHeaderBytes,
    headersTimeout: l.headersMs,
    // A request's whole body has no deadline (a store import may take an hour); one that stops
    // arriving is cut by the idle timeout instead.
    requestTimeout: 0,
    keepAliveTimeout: l.keepAliveMs,
    // How often Node looks for requests whose headers are late (its default, 30 s, would let a
    // 2 s limit run to 30 s).
    connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(l.headersMs / 4))),
  };
}

/** How much of a connection's first request line had arrived before the chunk being parsed. */
const FIRST_LINE = Symbol("nixpool.firstRequestLine");
type Watched = Socket & { [FIRST_LINE]?: { before: number; done: boolean } };

/**
 * Follows the first request line of each connection, so that a request head Node refuses as too
 * large is told apart: a URL too long (414) or headers too large (431). Node's parser sees each
 * chunk before this listener does.
 */
function watchRequestLine(socket: Watched): void {
  const state = { before: 0, done: false };
  socket[FIRST_LINE] = state;
  const onData = (chunk: Buffer) => {
    if (chunk.includes(0x0a)) {
      state.done = true;
      socket.off("data", onData);
    } else state.before += chunk.length;
  };
  socket.on("data", onData);
}

/** Whether the head Node refused (its chunk `raw`) has a first request line over `max` bytes. */
function requestLineOver(socket: Watched, raw: Buffer | undefined, max: number): boolean {
  const state = socket[FIRST_LINE];
  if (!state || state.done || !raw) return false;
  const eol = raw.indexOf(0x0a);
  return state.before + (eol >= 0 ? eol : raw.length) > max;
}

const answer = (status: number, text: string) =>
  `HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`;

/**
 * Applies the limits Node does not take as options: the idle timeout (a stalled reader's socket is
 * reset, so its unsent bytes do not linger in the kernel), and the 4xx of a request Node refuses
 * before the app sees it (408 headers too slow, 414 URL too long, 431 headers too large, 400 not HTTP).
 */
export function applyHttpLimits(server: Server, l: HttpLimits): void {
  server.timeout = l.idleMs;
  server.on("timeout", (socket: Socket) => {
    if (socket.writableLength > 0) socket.resetAndDestroy();
    else socket.destroy();
  });
  server.on("connection", (socket: Socket) => watchRequestLine(socket));
  server.on("clientError", (e: NodeJS.ErrnoException & { rawPacket?: Buffer }, socket: Duplex) => {
    // Node's own rule: a reply only when no response on this connection has begun.
    const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
    if (!socket.writable || inFlight?.headersSent === true) {
      socket.destroy();
      return;
    }
    const reply =
      e.code === "ERR_HTTP_REQUEST_TIMEOUT"
        ? answer(408, "Request Timeout")
        : e.code === "HPE_HEADER_OVERFLOW"
          ? requestLineOver(socket as Watched, e.rawPacket, l.maxUrlBytes)
            ? answer(414, "URI Too Long")
            : answer(431, "Request Header Fields Too Large")
          : answer(400, "Bad Request");
    socket.end(reply, () => socket.destroy());
  });
}

/** Whether a request's URL is over the limit (answered 414 before routing). */
export function urlTooLong(req: IncomingMessage, l: HttpLimits): boolean {
  return Buffer.byteLength(req.url ?? "") > l.maxUrlBytes;
}

/**
 * Runs the app on a request with the idle timeout paused while the app works on a request it
 * has whole (no body, or its body read): the client waits for the answer, it is not idle. The
 * timeout runs again once the answer is ready to go out (a stalled reader of it is cut).
 */
export async function whileAnswering<T>(
  incoming: IncomingMessage,
  l: HttpLimits,
  answer: () => Promise<T>,
): Promise<T> {
  const socket = incoming.socket;
  const pause = () => socket.setTimeout(0);
  const bodyless =
    incoming.headers["transfer-encoding"] === undefined &&
    (incoming.headers["content-length"] === undefined || incoming.headers["content-length"] === "0");
  if (bodyless || incoming.complete) pause();
  else incoming.once("end", pause);
  try {
    return await answer();
  } finally {
    incoming.off("end", pause);
    if (!socket.destroyed) socket.setTimeout(l.idleMs);
  }
}
