import { appendFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { statePaths } from "../../config/state-paths.js";

/** One gateway session as the operator's log keeps it (no keys, no tokens: names and counts). */
export interface GatewayLogEntry {
  at: string;
  client: string;
  coordinator: string;
  ms: number;
  clientVersion: string;
  requests: Record<string, number>;
  requestMs: Record<string, number>;
  /** From the process's start to the client's greeting read (node start, store session, connect). */
  startMs: number;
  uploadedPaths: number;
  uploadedBytes: number;
  downloadedBytes: number;
  builds: number;
  /** The gateway process's peak resident memory, in bytes (a client cannot make it grow unbounded). */
  maxRssBytes: number;
  error?: { code: string; message: string };
}

/** The gateway's log: one JSON line per session, STATE/serve/gateway.log. */
export function gatewayLogPath(stateDir: string): string {
  return join(statePaths(stateDir).serve.dir, "gateway.log");
}

/** Appends a session's line (a single write: concurrent sessions do not interleave). */
export async function appendGatewayLog(stateDir: string, e: GatewayLogEntry): Promise<void> {
  await mkdir(statePaths(stateDir).serve.dir, { recursive: true });
  await appendFile(gatewayLogPath(stateDir), `${JSON.stringify(e)}\n`, { mode: 0o600 });
}
