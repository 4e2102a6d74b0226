import { randomBytes } from "node:crypto";
import { mkdir } from "node:fs/promises";
import { readFileIfExists, writeFileAtomic } from "../../adapters/fs.js";
import { NixpoolError } from "../../core/errors.js";
import { LABELS, type Lease } from "../../core/lease.js";
import { HcloudClient, type RetryEvent } from "./client.js";
import type { RetryPolicy } from "./retry.js";
import { statePaths } from "../../config/state-paths.js";
import { hetznerDir } from "./records.js";
import { resolveEndpoint, resolveToken } from "./token.js";
import type { Server } from "./types.js";

export interface HetznerSession {
  stateDir: string;
  client: HcloudClient;
  owner: string;
  endpoint: string;
}

export interface SessionOptions {
  stateDir: string;
  env: Record<string, string | undefined>;
  tokenFile?: string | undefined;
  signal?: AbortSignal;
  onRetry?: (e: RetryEvent) => void;
  /** The client's retry policy (tests shorten it); default: the client's. */
  retry?: Partial<RetryPolicy>;
}

/** This state directory's owner id (random, created once), put on every server as a label. */
export async function ensureOwner(stateDir: string): Promise<string> {
  const path = statePaths(stateDir).hetzner.ownerFile;
  const existing = ((await readFileIfExists(path)) ?? "").trim();
  if (/^[0-9a-f]{12}$/.test(existing)) return existing;
  const owner = randomBytes(6).toString("hex");
  await mkdir(hetznerDir(stateDir), { recursive: true, mode: 0o700 });
  await writeFileAtomic(path, `${owner}\n`, { mode: 0o600 });
  return owner;
}

/** Opens a session: token (never printed), endpoint (HCLOUD_ENDPOINT), owner id. */
export async function openSession(o: SessionOptions): Promise<HetznerSession> {
  const { token } = await resolveToken({ tokenFile: o.tokenFile, env: o.env });
  const endpoint = resolveEndpoint(o.env);
  const client = new HcloudClient({
    token,
    endpoint,
    ...(o.signal ? { signal: o.signal } : {}),
    ...(o.onRetry ? { onRetry: o.onRetry } : {}),
    ...(o.retry ? { retry: o.retry } : {}),
  });
  return { stateDir: o.stateDir, client, owner: await ensureOwner(o.stateDir), endpoint };
}

/** Finds the server of a lease by its derived name, checking the lease label. */
export async function findLeaseServer(s: HetznerSession, lease: Lease): Promise<Server | undefined> {
  const [server] = await s.client.listServers({ name: lease.serverName });
  if (server && server.labels[LABELS.lease] !== lease.id) {
    throw new NixpoolError(
      "HCLOUD_NAME_TAKEN",
      `A server named ${lease.serverName} exists but does not carry lease ${lease.id}.`,
      { hint: "Rename or delete that server (hcloud server describe " + lease.serverName + "), then retry." },
    );
  }
  return server;
}
