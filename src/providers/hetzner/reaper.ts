import { hostname } from "node:os";
import { isProcessAlive } from "../../adapters/process-alive.js";
import { formatCostShort } from "../../core/cost.js";
import { isNixpoolError, NixpoolError } from "../../core/errors.js";
import { LABELS, MANAGED_SELECTOR, planReap, type LeaseHolder } from "../../core/lease.js";
import { planSnapshotGc } from "../../core/snapshots.js";
import { dropRecord, readRecords, recordCost, type Log } from "./records.js";
import { resumeSuspends } from "./suspend.js";
import type { HetznerSession } from "./session.js";

const thisHost = hostname();

/** Whether the process holding a lease still runs (only processes on this host can be checked). */
function isHolderAlive(h: Extract<LeaseHolder, { kind: "process" }>): boolean {
  return h.host !== thisHost || isProcessAlive(h.pid);
}

export interface ReapResult {
  deleted: { name: string; id: number; reason: string }[];
  droppedLeases: string[];
  deletedSshKeys: number;
  /** Suspends whose process was gone, finished. */
  finishedSuspends: string[];
  deletedSnapshots: { id: number; reason: string }[];
}

export interface ReapOptions {
  /** Keep this many of the owner's newest snapshots per architecture (`[hetzner] keepSnapshots`); all when absent. */
  keepSnapshots?: number;
  /** The expiry label of a snapshot that a finished suspend takes (`[hetzner] snapshotTtl`). */
  snapshotTtlMs?: number;
}

/** Snapshots expire after 30 days unless the inventory says otherwise (`[hetzner] snapshotTtl`). */
export const DEFAULT_SNAPSHOT_TTL_MS = 30 * 24 * 3_600_000;

/**
 * The reaper: deletes nixpool servers whose lease expired (anyone's), and this owner's
 * servers with no record or whose holding process is gone; drops stale records and
 * temporary SSH keys. Runs in passing before every provider command.
 */
export async function reapWorkers(s: HetznerSession, log: Log, o: ReapOptions = {}): Promise<ReapResult> {
  const snapshotTtlMs = o.snapshotTtlMs ?? DEFAULT_SNAPSHOT_TTL_MS;
  // Suspends first: a killed suspend's server is finished into a snapshot, not reaped as abandoned.
  const resumed = await resumeSuspends(s, { snapshotTtlMs }, log);
  // A server already being deleted needs nothing more.
  const servers = (await s.client.listServers({ labelSelector: MANAGED_SELECTOR })).filter(
    (x) => x.status !== "deleting",
  );
  const records = await readRecords(s.stateDir, log);
  const plan = planReap({
    servers: servers.map((x) => ({ id: x.id, name: x.name, labels: x.labels })),
    leases: records.map((r) => r.lease),
    owner: s.owner,
    nowMs: Date.now(),
    isHolderAlive,
  });
  const result: ReapResult = {
    deleted: [],
    droppedLeases: [],
    deletedSshKeys: 0,
    finishedSuspends: resumed.finished,
    deletedSnapshots: [],
  };
  const outcomes = await Promise.allSettled(
    plan.deleteServers.map(async ({ server, reason }) => {
      log(`gc: deleting server ${server.name} (${server.id}): ${reason}`);
      const action = await s.client.deleteServer(server.id);
      if (action) await s.client.waitForAction(action, { timeoutMs: 300_000 });
      result.deleted.push({ name: server.name, id: server.id, reason });
      const leaseId = server.labels[LABELS.lease];
      const rec = records.find((r) => r.lease.id === leaseId);
      if (rec) {
        log(`gc: ${rec.lease.name} cost ${formatCostShort(recordCost(rec, Date.now()))}`);
        await dropRecord(s.stateDir, rec.lease.id);
      }
    }),
  );
  const failures = [
    ...resumed.failed,
    ...outcomes.flatMap((x) => (x.status === "rejected" ? [x.reason as unknown] : [])),
  ];
  for (const { lease, reason } of plan.dropLeases) {
    log(`gc: dropping the record of ${lease.name}: ${reason}`);
    await dropRecord(s.stateDir, lease.id);
    result.droppedLeases.push(lease.name);
  }
  // Temporary API SSH keys: delete those whose server is gone or being deleted.
  const live = new Set(
    servers.filter((x) => !result.deleted.some((d) => d.id === x.id)).map((x) => x.labels[LABELS.lease]),
  );
  const liveRecords = new Set((await readRecords(s.stateDir)).map((r) => r.lease.id));
  for (const key of await s.client.listSshKeys({ labelSelector: MANAGED_SELECTOR })) {
    const leaseId = key.labels[LABELS.lease];
    const expired = Number(key.labels[LABELS.expires]) * 1000 <= Date.now();
    const mine = key.labels[LABELS.owner] === s.owner;
    if (expired || (mine && !live.has(leaseId) && !liveRecords.has(leaseId ?? ""))) {
      if (await s.client.deleteSshKey(key.id)) result.deletedSshKeys++;
    }
  }
  failures.push(...(await reapSnapshots(s, log, o.keepSnapshots ?? Infinity, result)));
  if (failures.length > 0) {
    const first = failures[0];
    throw new NixpoolError(
      "WORKER_GC_INCOMPLETE",
      `Worker gc left ${failures.length} thing(s) undone (deleted ${result.deleted.length} of ${plan.deleteServers.length} server(s)); the first failure: ${first instanceof Error ? first.message : String(first)}`,
      { hint: "Run nixpool worker gc again; check with: nixpool worker list --all", cause: first },
    );
  }
  return result;
}

/** Deletes the snapshots planSnapshotGc names (expired, orphaned, past retention); returns the failures. */
async function reapSnapshots(
  s: HetznerSession,
  log: Log,
  keep: number,
  result: ReapResult,
): Promise<unknown[]> {
  const images = await s.client.listImages({ type: "snapshot", labelSelector: MANAGED_SELECTOR });
  const suspending = new Set((await readRecords(s.stateDir)).filter((r) => r.suspend).map((r) => r.lease.id));
  const plan = planSnapshotGc({ images, owner: s.owner, nowMs: Date.now(), keep, suspending });
  const outcomes = await Promise.allSettled(
    plan.map(async ({ image, reason }) => {
      log(`gc: deleting snapshot ${image.id}: ${reason}`);
      await s.client.deleteImage(image.id);
      result.deletedSnapshots.push({ id: image.id, reason });
    }),
  );
  return outcomes.flatMap((x) => (x.status === "rejected" ? [x.reason as unknown] : []));
}

/**
 * Retention alone (what a finished suspend runs): deletes this pool's snapshots past `keep` per
 * architecture, and any expired or orphaned one; returns those deleted and the failures.
 */
export async function pruneSnapshots(
  s: HetznerSession,
  log: Log,
  keep: number,
): Promise<{ deleted: ReapResult["deletedSnapshots"]; failed: unknown[] }> {
  const result: ReapResult = {
    deleted: [],
    droppedLeases: [],
    deletedSshKeys: 0,
    finishedSuspends: [],
    deletedSnapshots: [],
  };
  const failed = await reapSnapshots(s, log, keep, result);
  return { deleted: result.deletedSnapshots, failed };
}

/** Runs the reaper, turning its failure into a warning (it runs in passing). */
export async function reapQuietly(
  s: HetznerSession,
  log: Log,
  o: ReapOptions = {},
): Promise<ReapResult | undefined> {
  try {
    return await reapWorkers(s, log, o);
  } catch (e) {
    if (isNixpoolError(e) && e.code === "INTERRUPTED") throw e;
    log(`warning: gc of leftover workers failed: ${e instanceof Error ? e.message : String(e)}`);
    return undefined;
  }
}
