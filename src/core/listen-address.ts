import { configError } from "./errors.js";

/** A TCP address to listen on. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Whether a listen address is on the loopback interface (only this machine can connect). */
export function isLoopbackHost(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/**
 * Reads `HOST:PORT` (`[::1]:PORT` for IPv6, or a bare `PORT` on 127.0.0.1); PORT 0 means any free
 * port. `flag` and `example` name the flag in the error.
 */
export function parseListenAddress(text: string, flag: string, example: string): ListenAddress {
  const bad = () =>
    configError("COORDINATOR_LISTEN_INVALID", `${flag} "${text}" is not HOST:PORT.`, {
      hint: `For example: ${example}`,
    });
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text.trim()) ?? undefined;
  const bare = /^\d{1,5}$/.test(text.trim());
  const host = bare ? "127.0.0.1" : (m?.[1] ?? m?.[2]);
  const port = Number(bare ? text.trim() : m?.[3]);
  if (host === undefined || !Number.isInteger(port) || port > 65535) throw bad();
  return { host, port };
}

/** The URL of a listen address, e.g. http://127.0.0.1:8080 or http://[::1]:8080. */
export function listenUrl(a: ListenAddress): string {
  return `http://${a.host.includes(":") ? `[${a.host}]` : a.host}:${a.port}`;
}

/**
 * A coordinator without a token (`--no-token`) lets anyone who reaches its TCP address submit and
 * cancel builds: allowed on loopback only (as Jupyter allows a token-less server on localhost).
 */
export function refuseOpenWithoutToken(listen: ListenAddress, token: boolean): void {
  if (token || isLoopbackHost(listen.host)) return;
  throw configError(
    "COORDINATOR_OPEN_TO_NETWORK",
    `nixpool serve would take builds from anyone who reaches ${listen.host}:${listen.port}, without a token.`,
    {
      hint: `Keep the token (drop --no-token; clients send what nixpool serve token prints), or listen on loopback: --listen 127.0.0.1:${listen.port}`,
    },
  );
}

/**
 * A binary cache without a token (`--cache-open`) hands the pool's trusted results to anyone who
 * reaches it: allowed on loopback only, like `--no-token`; on a network address only when the
 * operator says so with `--cache-public` (checked by the command, never reaching this).
 */
export function refuseOpenCache(listen: ListenAddress): void {
  if (isLoopbackHost(listen.host)) return;
  throw configError(
    "CACHE_OPEN_TO_NETWORK",
    `nixpool serve would give the binary cache to anyone who reaches ${listen.host}:${listen.port}, without a token.`,
    {
      hint: "Drop --cache-open (clients put nixpool cache token in their netrc-file), listen on loopback, or make the cache readable by anyone who reaches it on purpose: --cache-public",
    },
  );
}
