import { snapshotCost } from "../../core/cost.js";
import { snapshotGb, snapshotSelector } from "../../core/snapshots.js";
import { loadPrices } from "./provision.js";
import type { Log } from "./records.js";
import type { HetznerSession } from "./session.js";
import { describeSnapshot } from "./snapshots.js";

/** A snapshot of the pool with what it costs: per month, and since it was taken. */
export type PoolSnapshot = ReturnType<typeof describeSnapshot> & {
  cost: { monthly: number; soFar: number; currency: string; source: "api" | "fallback"; date: string };
};

/**
 * This owner's snapshots, newest first, each with its storage cost (image_size GB × the API's
 * price per GB-month, prorated per started hour).
 */
export async function listPoolSnapshots(s: HetznerSession, log: Log, nowMs: number): Promise<PoolSnapshot[]> {
  const images = await s.client.listImages({
    type: "snapshot",
    labelSelector: snapshotSelector(s.owner),
    sort: "created:desc",
  });
  if (images.length === 0) return [];
  const prices = await loadPrices(s.client, log);
  const perGb = prices.imagePerGbMonth ?? { net: 0, gross: 0 };
  return images.map((i) => {
    const c = snapshotCost(perGb, snapshotGb(i), Date.parse(i.created), nowMs);
    return {
      ...describeSnapshot(i),
      cost: {
        monthly: c.monthly.net,
        soFar: c.net,
        currency: prices.currency,
        source: prices.source,
        date: prices.date,
      },
    };
  });
}
