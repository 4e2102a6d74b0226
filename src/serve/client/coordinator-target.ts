import { unixSocketAnswers } from "../../adapters/unix-socket.js";
import { statePaths } from "../../config/state-paths.js";
import { describeAddress, parseCoordinatorList, plainHttpTokenWarning } from "../../core/coordinator-list.js";
import { readServeToken } from "../serve-token.js";

/** Where a coordinator answers: its Unix socket, or an http(s) base URL with the token to send. */
export type CoordinatorTarget =
  { kind: "socket"; path: string } | { kind: "http"; url: URL; token: string | undefined };

/** How errors name a target: the socket path or the URL, never the token. */
export function describeTarget(t: CoordinatorTarget): string {
  return describeAddress(t);
}

/**
 * Reads `--coordinator` / NIXPOOL_COORDINATOR: one coordinator or several separated by commas,
 * each `unix:/path/api.sock`, an absolute socket path, or `http(s)://host:port`
 * (src/core/coordinator-list.ts). The token of an http target comes from
 * NIXPOOL_COORDINATOR_TOKEN, else the state directory's token file (the one `nixpool serve token`
 * prints): never from argv. Every http target gets the same token. A token bound for another
 * machine over plain http gets one line on `warn` (stderr), never the token.
 */
export async function parseCoordinatorTargets(
  text: string,
  from: string,
  stateDir: string,
  env: NodeJS.ProcessEnv,
  warn: (line: string) => void = warnOnStderr,
): Promise<CoordinatorTarget[]> {
  const addresses = parseCoordinatorList(text, from);
  if (addresses.every((a) => a.kind === "socket")) return addresses;
  const fromEnv = env["NIXPOOL_COORDINATOR_TOKEN"]?.trim();
  const token = fromEnv ? fromEnv : await readServeToken(stateDir).catch(() => undefined);
  for (const a of addresses) {
    const line = plainHttpTokenWarning(a, token !== undefined);
    if (line) warn(line);
  }
  return addresses.map((a) => (a.kind === "socket" ? a : { ...a, token }));
}

function warnOnStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * The coordinators a build goes to, in the order tried: `--coordinator`, else
 * NIXPOOL_COORDINATOR, else the socket of a `nixpool serve` running on this state directory;
 * undefined (build here) when there is none.
 */
export async function findCoordinators(
  flag: string | undefined,
  stateDir: string,
  env: NodeJS.ProcessEnv,
  warn: (line: string) => void = warnOnStderr,
): Promise<CoordinatorTarget[] | undefined> {
  if (flag) return parseCoordinatorTargets(flag, "--coordinator", stateDir, env, warn);
  const fromEnv = env["NIXPOOL_COORDINATOR"]?.trim();
  if (fromEnv) return parseCoordinatorTargets(fromEnv, "NIXPOOL_COORDINATOR", stateDir, env, warn);
  const socket = statePaths(stateDir).serve.socket;
  return (await unixSocketAnswers(socket)) ? [{ kind: "socket", path: socket }] : undefined;
}
