import { chmod, mkdir, rm } from "node:fs/promises";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import { createAdaptorServer, type HttpBindings } from "@hono/node-server";
import type { Hono } from "hono";
import { unixSocketAnswers } from "../../adapters/unix-socket.js";
import { NixpoolError } from "../../core/errors.js";
import { listenUrl, type ListenAddress } from "../../core/listen-address.js";
import type { CacheStatsView } from "../cache/cache-stats.js";
import type { CoordinatorApi } from "../coordinator-types.js";
import type { PoolStore } from "../pool-store.js";
import type { ApiEnv, Transport } from "./api-env.js";
import { createApiApp } from "./app.js";
import {
  applyHttpLimits,
  DEFAULT_HTTP_LIMITS,
  serverOptionsFor,
  urlTooLong,
  whileAnswering,
  type HttpLimits,
} from "./http-limits.js";

export interface ApiServerOptions {
  coordinator: CoordinatorApi;
  socketPath: string;
  /** The TCP listener; none when undefined (socket only). */
  listen: ListenAddress | undefined;
  /** The bearer token of TCP clients; undefined only with `--no-token` on loopback. */
  token: string | undefined;
  /** Clients' own tokens (src/serve/client-tokens.ts). */
  clientOf?: (token: string) => string | undefined;
  log: (line: string) => void;
  mountDashboard?: (
    app: Hono<ApiEnv>,
    coordinator: CoordinatorApi,
    extras: { cacheStats?: () => CacheStatsView },
  ) => void;
  heartbeatMs?: number;
  /** The pool's stores as one, for the gateway (/api/pool/*). */
  pool?: PoolStore;
  /** Timeouts and sizes of every connection (default DEFAULT_HTTP_LIMITS; `serve --header-timeout`, `--idle-timeout`). */
  limits?: HttpLimits;
  /** The binary cache: its app answers every path under /cache, the API's /api/cache/stats its numbers. */
  cache?: {
    app: Hono<ApiEnv>;
    stats: () => CacheStatsView;
    watch?: (fn: (view: CacheStatsView) => void) => () => void;
  };
}

/** Whether a request's (normalised) path is the binary cache's. */
function isCachePath(url: string): boolean {
  const path = new URL(url).pathname;
  return path === "/cache" || path.startsWith("/cache/");
}

export interface RunningApi {
  socketPath: string;
  /** http://HOST:PORT of the TCP listener (its real port when 0 was asked). */
  url: string | undefined;
  /** From now on POST /api/builds answers 503: the service drains. */
  startDraining(): void;
  /** Ends every event stream, closes both listeners and removes the socket. */
  close(): Promise<void>;
}

/** A socket path must fit sockaddr_un's 108 bytes, its terminating NUL included. */
const MAX_SOCKET_PATH = 107;

function listen(server: Server, target: string | ListenAddress, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException) =>
      reject(
        new NixpoolError("COORDINATOR_LISTEN_FAILED", `Cannot listen on ${what}: ${e.code ?? e.message}.`, {
          hint:
            e.code === "EADDRINUSE"
              ? "Another service uses that address: choose another with --listen HOST:PORT."
              : "Check the address (--listen HOST:PORT) or the socket's directory (--socket PATH).",
          cause: e,
        }),
      );
    server.once("error", onError);
    const ready = () => {
      server.off("error", onError);
      resolve();
    };
    if (typeof target === "string") server.listen(target, ready);
    else server.listen(target.port, target.host, ready);
  });
}

/** Serves the coordinator's app on its Unix socket (peer credentials) and, optionally, on TCP (token). */
export async function startApiServer(o: ApiServerOptions): Promise<RunningApi> {
  let draining = false;
  const limits = o.limits ?? DEFAULT_HTTP_LIMITS;
  const cookiePort = o.listen?.port ?? 0;
  const { app, streams } = createApiApp({
    coordinator: o.coordinator,
    auth: {
      token: o.token,
      cookieName: `nixpool-${cookiePort}`,
      ...(o.clientOf ? { clientOf: o.clientOf } : {}),
    },
    log: o.log,
    draining: () => draining,
    ...(o.mountDashboard ? { mountDashboard: o.mountDashboard } : {}),
    // Event streams write at least three times per idle timeout, so an idle cut never ends a reader's stream.
    heartbeatMs: o.heartbeatMs ?? Math.min(15_000, Math.floor(limits.idleMs / 3)),
    ...(o.cache ? { cacheStats: o.cache.stats } : {}),
    ...(o.pool ? { pool: o.pool } : {}),
    ...(o.cache?.watch ? { cacheWatch: o.cache.watch } : {}),
  });
  const cacheApp = o.cache?.app;
  const serverFor = (transport: Transport) => {
    const server = createAdaptorServer({
      serverOptions: serverOptionsFor(limits),
      fetch: (req, env) => {
        const bindings = env as HttpBindings;
        if (urlTooLong(bindings.incoming, limits)) {
          const message = `The URL is longer than ${limits.maxUrlBytes} bytes.`;
          return Response.json(
            { code: "API_BAD_REQUEST", message },
            { status: 414, headers: { Connection: "close" } },
          );
        }
        const target = cacheApp && isCachePath(req.url) ? cacheApp : app;
        return whileAnswering(bindings.incoming, limits, async () =>
          target.fetch(req, { ...bindings, transport }),
        );
      },
    }) as Server;
    applyHttpLimits(server, limits);
    return server;
  };

  if (Buffer.byteLength(o.socketPath) > MAX_SOCKET_PATH) {
    throw new NixpoolError(
      "COORDINATOR_LISTEN_FAILED",
      `The socket path ${o.socketPath} is longer than 107 bytes.`,
      {
        hint: "Give a shorter one: nixpool serve --socket /run/nixpool/api.sock",
      },
    );
  }
  await mkdir(dirname(o.socketPath), { recursive: true });
  if (await unixSocketAnswers(o.socketPath)) {
    throw new NixpoolError("COORDINATOR_LISTEN_FAILED", `A coordinator already answers on ${o.socketPath}.`, {
      hint: "Stop it first, or give this one its own state directory (--state-dir) or --socket PATH.",
    });
  }
  await rm(o.socketPath, { force: true });
  const unix = serverFor("socket");
  await listen(unix, o.socketPath, o.socketPath);
  // Anyone may connect: the kernel tells who they are (SO_PEERCRED), and the routes decide what they may do.
  await chmod(o.socketPath, 0o666);

  let tcp: Server | undefined;
  let url: string | undefined;
  if (o.listen) {
    tcp = serverFor("tcp");
    try {
      await listen(tcp, o.listen, listenUrl(o.listen));
    } catch (e) {
      unix.close();
      await rm(o.socketPath, { force: true });
      throw e;
    }
    url = listenUrl({ host: o.listen.host, port: (tcp.address() as AddressInfo).port });
  }

  const closeServer = (s: Server) =>
    new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });
  let closed: Promise<void> | undefined;
  return {
    socketPath: o.socketPath,
    url,
    startDraining: () => void (draining = true),
    close: () =>
      (closed ??= (async () => {
        await streams.closeAll();
        await Promise.all([closeServer(unix), ...(tcp ? [closeServer(tcp)] : [])]);
        await rm(o.socketPath, { force: true });
      })()),
  };
}
