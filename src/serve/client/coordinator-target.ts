import { isAbsolute } from "node:path";
import { unixSocketAnswers } from "../../adapters/unix-socket.js";
import { statePaths } from "../../config/state-paths.js";
import { configError } from "../../core/errors.js";
import { readServeToken } from "../serve-token.js";

/** Where a coordinator answers: its Unix socket, or an http(s) base URL with the token to send. */
export type CoordinatorTarget =
  { kind: "socket"; path: string } | { kind: "http"; url: URL; token: string | undefined };

/** How errors name a target: the socket path or the URL, never the token. */
export function describeTarget(t: CoordinatorTarget): string {
  return t.kind === "socket" ? `unix:${t.path}` : t.url.origin + t.url.pathname.replace(/\/$/, "");
}

/**
 * Reads `--coordinator` / NIXPOOL_COORDINATOR: `unix:/path/api.sock`, an absolute socket path, or
 * `http(s)://host:port`. The token of an http target comes from NIXPOOL_COORDINATOR_TOKEN, else
 * the state directory's token file (the one `nixpool serve token` prints): never from argv.
 */
export async function parseCoordinatorTarget(
  text: string,
  from: string,
  stateDir: string,
  env: NodeJS.ProcessEnv,
): Promise<CoordinatorTarget> {
  const bad = (why: string) =>
    configError("COORDINATOR_URL_INVALID", `${from} "${text}" ${why}.`, {
      hint: "Give unix:/path/to/api.sock or http://127.0.0.1:PORT, e.g. --coordinator http://127.0.0.1:7420",
    });
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
  const fromEnv = env["NIXPOOL_COORDINATOR_TOKEN"]?.trim();
  const token = fromEnv ? fromEnv : await readServeToken(stateDir).catch(() => undefined);
  return { kind: "http", url, token };
}

/**
 * The coordinator a build goes to: `--coordinator`, else NIXPOOL_COORDINATOR, else the socket of a
 * `nixpool serve` running on this state directory; undefined (build here) when there is none.
 */
export async function findCoordinator(
  flag: string | undefined,
  stateDir: string,
  env: NodeJS.ProcessEnv,
): Promise<CoordinatorTarget | undefined> {
  if (flag) return parseCoordinatorTarget(flag, "--coordinator", stateDir, env);
  const fromEnv = env["NIXPOOL_COORDINATOR"]?.trim();
  if (fromEnv) return parseCoordinatorTarget(fromEnv, "NIXPOOL_COORDINATOR", stateDir, env);
  const socket = statePaths(stateDir).serve.socket;
  return (await unixSocketAnswers(socket)) ? { kind: "socket", path: socket } : undefined;
}
