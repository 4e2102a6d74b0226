import { leaseLabels } from "../../core/lease.js";
import { saveRecord, type Log, type WorkerRecord } from "./records.js";
import type { HetznerSession } from "./session.js";

/**
 * Extends a lease to now + ttlMs: the server's expiry label first (what every reaper goes by), then
 * the local record; when the label cannot be written, the record keeps the expiry that holds.
 */
export async function renewLease(s: HetznerSession, rec: WorkerRecord, ttlMs: number): Promise<void> {
  const lease = { ...rec.lease, expiresAt: new Date(Date.now() + ttlMs).toISOString() };
  if (rec.serverId !== null) await s.client.updateServerLabels(rec.serverId, leaseLabels(lease));
  rec.lease.expiresAt = lease.expiresAt;
  await saveRecord(s.stateDir, rec);
}

/**
 * Keeps a held lease alive while its holder works (a build may outlast the TTL): renews every
 * third of the TTL (at most every 30 min). stop() waits for a renewal in flight.
 */
export function startLeaseRenewal(
  s: HetznerSession,
  rec: WorkerRecord,
  ttlMs: number,
  log: Log,
): { stop: () => Promise<void> } {
  let inFlight: Promise<void> = Promise.resolve();
  const every = Math.min(Math.max(ttlMs / 3, 1000), 1_800_000);
  const timer = setInterval(() => {
    inFlight = inFlight
      .then(() => renewLease(s, rec, ttlMs))
      .catch((e: unknown) =>
        log(
          `warning: could not renew the lease of ${rec.lease.name} (${e instanceof Error ? e.message : String(e)}); it expires at ${rec.lease.expiresAt}`,
        ),
      );
  }, every);
  return {
    stop: async () => {
      clearInterval(timer);
      await inFlight;
    },
  };
}
