import { isAbsolute } from "node:path";
import { configError } from "./errors.js";

/** Where one coordinator answers, as written: its Unix socket, or an http(s) base URL. */
export type CoordinatorAddress = { kind: "socket"; path: string } | { kind: "http"; url: URL };

const HINT =
  "Give unix:/path/to/api.sock or http://127.0.0.1:PORT, or several separated by commas, e.g. --coordinator http://10.0.0.1:7420,http://10.0.0.2:7420";

/**
 * Reads one coordinator address: `unix:/path/api.sock`, an absolute socket path, or
 * `http(s)://host:port` (no credentials, query or fragment). `from` names where it was written
 * (`--coordinator`, `NIXPOOL_COORDINATOR`, `--coordinator entry 2`) for the error.
 */
export function parseCoordinatorAddress(text: string, from: string): CoordinatorAddress {
  const bad = (why: string) =>
    configError("COORDINATOR_URL_INVALID", `${from} "${text}" ${why}.`, { hint: HINT });
  const socket = text.startsWith("unix:") ? text.slice("unix:".length) : isAbsolute(text) ? text : undefined;
  if (socket !== undefined) {
    if (!isAbsolute(socket)) throw bad("names no absolute socket path");
    return { kind: "socket", path: socket };
  }
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw bad("is not a URL");
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") throw bad("is neither http(s):// nor unix:");
  if (url.username || url.password || url.search || url.hash) {
    throw bad("carries credentials, a query or a fragment (put the token in NIXPOOL_COORDINATOR_TOKEN)");
  }
  return { kind: "http", url };
}

/** How a coordinator address is shown: `unix:PATH`, or the URL without a trailing slash. */
export function describeAddress(a: CoordinatorAddress): string {
  return a.kind === "socket" ? `unix:${a.path}` : a.url.origin + a.url.pathname.replace(/\/$/, "");
}

/** Whether a host name is this machine (localhost, 127.0.0.0/8, ::1): plain http to it stays here. */
export function isLoopbackHost(hostname: string): boolean {
  const h = hostname.replace(/^\[|\]$/g, "").toLowerCase();
  return (
    h === "localhost" ||
    h.endsWith(".localhost") ||
    /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) ||
    h === "::1" ||
    /^::ffff:127\./.test(h) ||
    /^::ffff:7f[0-9a-f]{2}:/.test(h)
  );
}

/**
 * The one-line warning due when a client sends its token over plain http to another machine
 * (anyone on the way reads the token, and the export streams it imports carry no signature);
 * undefined when none is. Never contains the token.
 */
export function plainHttpTokenWarning(a: CoordinatorAddress, sendsToken: boolean): string | undefined {
  if (a.kind !== "http" || !sendsToken || a.url.protocol !== "http:" || isLoopbackHost(a.url.hostname))
    return undefined;
  return `nixpool: warning: the coordinator's token goes to ${describeAddress(a)} over plain http: anyone on the network path can read it; serve it behind TLS (https://, docs/coordinator.md "TLS").`;
}

/** More entries than this is a mistake (a pasted file?), not a pool of coordinators. */
export const MAX_COORDINATORS = 16;

/**
 * Reads `--coordinator` / NIXPOOL_COORDINATOR: one address, or several separated by commas
 * (`url1,url2,unix:/x.sock`), in the order a client tries them. Each entry is checked as one
 * address is; an empty entry, the same coordinator twice, or more than MAX_COORDINATORS are
 * refused, the error naming the entry (`--coordinator entry 2 "…"`). One entry reads as before.
 */
export function parseCoordinatorList(text: string, from: string): CoordinatorAddress[] {
  const entries = text.split(",").map((e) => e.trim());
  if (entries.length === 1) return [parseCoordinatorAddress(entries[0] ?? "", from)];
  if (entries.length > MAX_COORDINATORS) {
    throw configError(
      "COORDINATOR_URL_INVALID",
      `${from} names ${entries.length} coordinators; at most ${MAX_COORDINATORS} are taken.`,
      { hint: HINT },
    );
  }
  const seen = new Map<string, number>();
  return entries.map((entry, i) => {
    const where = `${from} entry ${i + 1}`;
    if (entry === "") {
      throw configError("COORDINATOR_URL_INVALID", `${where} of "${text}" is empty.`, { hint: HINT });
    }
    const address = parseCoordinatorAddress(entry, where);
    const name = describeAddress(address);
    const before = seen.get(name);
    if (before !== undefined) {
      throw configError(
        "COORDINATOR_URL_INVALID",
        `${where} "${entry}" names the same coordinator as entry ${before + 1}.`,
        { hint: HINT },
      );
    }
    seen.set(name, i);
    return address;
  });
}

/**
 * The order a client asks `count` coordinators after it lost the one at `lost`: the next one
 * first, then round the list, the lost one last (it may be back).
 */
export function failoverOrder(count: number, lost: number): number[] {
  return Array.from({ length: count }, (_, k) => (lost + 1 + k) % count);
}

/** The order a submission tries `count` coordinators from `start`: it, then round the list. */
export function submitOrder(count: number, start: number): number[] {
  return Array.from({ length: count }, (_, k) => (start + k) % count);
}
