import { mkdir, rm } from "node:fs/promises";
import { statePaths } from "../../config/state-paths.js";
import { readDirIfExists, readFileIfExists, writeFileAtomic } from "../../adapters/fs.js";
import type { Builder } from "../../core/builder.js";
import { WORKER_FEATURES } from "../../core/autoscale/config.js";
import { workerCost, type PriceTable, type WorkerCost } from "../../core/cost.js";
import type { WorkerRecord } from "./worker-record-schema.js";

// A worker's local record (STATE/hetzner/workers/LEASE/worker.json): read by every command that
// lists builders, so this module stays light (no API client; zod only once a record is found).

export type { WorkerRecord };

/** Progress and warnings for the user (stderr). */
export type Log = (line: string) => void;

export const hetznerDir = (stateDir: string) => statePaths(stateDir).hetzner.dir;
const workersDir = (stateDir: string) => statePaths(stateDir).hetzner.workersDir;
/** The directory of one worker: its record, login key, ssh_config and known_hosts. */
export const workerDir = (stateDir: string, leaseId: string) =>
  statePaths(stateDir).hetzner.worker(leaseId).dir;
const recordPath = (stateDir: string, leaseId: string) => statePaths(stateDir).hetzner.worker(leaseId).record;

/** Saves a worker record atomically (0600: it names the login key). */
export async function saveRecord(stateDir: string, rec: WorkerRecord): Promise<void> {
  await mkdir(workerDir(stateDir, rec.lease.id), { recursive: true, mode: 0o700 });
  await writeFileAtomic(recordPath(stateDir, rec.lease.id), `${JSON.stringify(rec, null, 2)}\n`, {
    mode: 0o600,
  });
}

/** Every worker record in the state directory; unreadable ones are reported, not fatal. */
export async function readRecords(stateDir: string, log?: Log): Promise<WorkerRecord[]> {
  const ids = (await readDirIfExists(workersDir(stateDir))) ?? [];
  const out: WorkerRecord[] = [];
  for (const id of ids.sort()) {
    const path = recordPath(stateDir, id);
    const text = await readFileIfExists(path);
    if (text === undefined) continue;
    const { workerRecordSchema } = await import("./worker-record-schema.js");
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const r = workerRecordSchema.safeParse(json);
    if (r.success) out.push(r.data);
    else
      log?.(
        `warning: ignoring the unreadable worker record ${path}; nixpool worker gc deletes its server by label.`,
      );
  }
  return out;
}

/** Removes a worker's local record and keys. */
export async function dropRecord(stateDir: string, leaseId: string): Promise<void> {
  await rm(workerDir(stateDir, leaseId), { recursive: true, force: true });
}

/** The nix system a server architecture builds for. */
export function systemFor(architecture: string): string {
  return architecture === "arm" ? "aarch64-linux" : "x86_64-linux";
}

/** A ready worker as a builder of the pool: ssh-ng as root, pinned host key, maxJobs = cores. */
export function workerBuilder(rec: WorkerRecord): Builder {
  return {
    name: rec.lease.name,
    host: rec.ipv4 ?? "",
    port: 22,
    user: "root",
    protocol: "ssh-ng",
    systems: [rec.system],
    maxJobs: rec.cores,
    speedFactor: 1,
    supportedFeatures: [...WORKER_FEATURES],
    mandatoryFeatures: [],
    hostKey: rec.hostKeyPub,
    identityFile: rec.loginKeyPath,
    tags: ["hetzner", rec.type, rec.location],
    trust: "trusted",
    source: "hetzner",
  };
}

/** Builders of the ready workers in a state directory. */
export async function readWorkerBuilders(stateDir: string): Promise<Builder[]> {
  return (await readRecords(stateDir)).filter((r) => r.status === "ready" && r.ipv4).map(workerBuilder);
}

/** A worker's cost from its creation until `endMs` (now, for a running one). */
export function recordCost(rec: WorkerRecord, endMs: number): WorkerCost {
  const table: PriceTable = {
    source: rec.prices.source,
    date: rec.prices.date,
    currency: rec.prices.currency,
    vatPercent: 0,
    serverTypes: { [rec.type]: { [rec.location]: rec.prices.server } },
    primaryIpv4: rec.prices.ipv4 ? { [rec.location]: rec.prices.ipv4 } : {},
  };
  const start = Date.parse(rec.serverCreatedAt ?? rec.lease.createdAt);
  return workerCost(table, rec.type, rec.location, start, Math.max(start, endMs));
}

/** Finds a worker record by worker name, server name or lease id. */
export function findRecord(records: readonly WorkerRecord[], name: string): WorkerRecord | undefined {
  return records.find((r) => r.lease.name === name || r.lease.serverName === name || r.lease.id === name);
}
