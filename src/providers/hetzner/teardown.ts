import type { WorkerCost } from "../../core/cost.js";
import { LABELS } from "../../core/lease.js";
import { dropRecord, recordCost, saveRecord, type Log, type WorkerRecord } from "./records.js";
import { findLeaseServer, type HetznerSession } from "./session.js";

/**
 * Deletes a worker's server (looked up by its derived name if the id was never recorded) and
 * temporary SSH key, waits for the deletion, drops the record; returns the cost.
 */
export async function destroyWorker(s: HetznerSession, rec: WorkerRecord, log: Log): Promise<WorkerCost> {
  rec.status = "deleting";
  await saveRecord(s.stateDir, rec);
  let serverId = rec.serverId;
  if (serverId === null) serverId = (await findLeaseServer(s, rec.lease).catch(() => undefined))?.id ?? null;
  if (serverId !== null) {
    log(`worker ${rec.lease.name}: deleting server ${rec.lease.serverName} (${serverId})`);
    const action = await s.client.deleteServer(serverId);
    if (action) await s.client.waitForAction(action, { timeoutMs: 300_000 });
  }
  const keyId =
    rec.sshKeyId ??
    (await s.client.listSshKeys({ name: rec.lease.serverName }).catch(() => [])).find(
      (k) => k.labels[LABELS.lease] === rec.lease.id,
    )?.id;
  if (keyId !== undefined) await s.client.deleteSshKey(keyId);
  const cost = recordCost(rec, Date.now());
  await dropRecord(s.stateDir, rec.lease.id);
  return cost;
}
