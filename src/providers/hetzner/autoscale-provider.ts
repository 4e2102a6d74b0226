import { hostname } from "node:os";
import type { Builder } from "../../core/builder.js";
import { architectureFor, type AutoscaleConfig } from "../../core/autoscale/config.js";
import type { WakeSnapshot } from "../../core/autoscale/plan.js";
import { pickLatestSnapshot } from "../../core/snapshots.js";
import { pricesFromApi, type PriceTable, type TypeOffer } from "../../core/cost.js";
import type { LeaseHolder } from "../../core/lease.js";
import { createLease, provisionWorker, type WorkerRequest } from "./provision.js";
import { ExitCode, NixpoolError } from "../../core/errors.js";
import { RentalLeftBehind } from "../../core/autoscale/rental-left-behind.js";
import { DEFAULT_SNAPSHOT_TTL_MS, pruneSnapshots, reapQuietly } from "./reaper.js";
import type { RetryPolicy } from "./retry.js";
import { findRecord, readRecords, workerBuilder, type Log, type WorkerRecord } from "./records.js";
import { renewLease, startLeaseRenewal } from "./renewal.js";
import { openSession, type HetznerSession } from "./session.js";
import { isPoolSnapshot, snapshotRequest, wakeImage } from "./snapshots.js";
import { suspendWorker } from "./suspend.js";
import { destroyWorker } from "./teardown.js";
import type { Image } from "./types.js";

// Cloud workers for the coordinator's autoscaler (src/serve/autoscale/): the catalogue and prices
// from the API, rentals held by the coordinator's process (so `worker gc` reaps them after a
// crash, as it reaps any rental), and their deletion.

/** One rental the autoscaler asks for. */
export interface AutoscaleRentRequest {
  type: string;
  system: string;
  /** Aborts the rental (the coordinator closes); whatever was created is deleted. */
  signal: AbortSignal;
  /** Called once the lease is written (the worker's name is known). */
  onLeased?: (name: string) => void;
  /**
   * Rent from a snapshot instead of the plain image ("latest": the newest of this owner and
   * architecture, when one exists and fits the type's disk; else the plain image).
   */
  fromSnapshot?: "latest" | number;
}

/** A rented worker that answers on SSH and Nix. */
export interface AutoscaleRented {
  name: string;
  type: string;
  builder: Builder;
}

/** What the autoscaler needs of a cloud provider. */
export interface AutoscaleProvider {
  /** Server types and their current prices, from the API only (no bundled table: budgets are caps). */
  catalog(): Promise<{ offers: TypeOffer[]; prices: PriceTable }>;
  /** Rejects with RentalLeftBehind when the rental failed and its server could not be deleted. */
  rent(req: AutoscaleRentRequest): Promise<AutoscaleRented>;
  /**
   * This pool's available snapshots: how many, their GB, and the newest per architecture (what a
   * rental wakes from).
   */
  snapshots?(): Promise<{ count: number; gb: number; newest: WakeSnapshot[] }>;
  /**
   * Deletes a worker (server, temporary key, record). When that fails its lease stays renewed
   * (until close) for the retry.
   */
  release(name: string): Promise<void>;
  /**
   * Suspends a worker (`worker suspend`'s resumable steps: GC roots, GC, shutdown, labelled
   * snapshot, deletion), then deletes the pool's snapshots past retention. `signal` stops it
   * between steps; `worker gc` resumes it once this process is gone.
   */
  suspend?(
    name: string,
    signal: AbortSignal,
  ): Promise<{ imageId: number; imageSizeGb: number | null; deletedSnapshots: number }>;
  /** Reaps what a crashed coordinator left (worker gc, quietly). */
  reap(): Promise<void>;
  /** The workers with a record in the state directory (rented by a coordinator that holds them, or not yet reaped). */
  held?(): Promise<Set<string>>;
  /** Stops renewing leases. */
  close(): Promise<void>;
}

export interface HetznerAutoscaleOptions {
  stateDir: string;
  env: Record<string, string | undefined>;
  config: AutoscaleConfig;
  log: Log;
  /** Lease time, renewed every third of it while the coordinator runs (default 2 h). */
  ttlMs?: number;
  /** The API client's retry policy (tests shorten it); default: the client's. */
  retry?: Partial<RetryPolicy>;
  /**
   * `[hetzner] keepSnapshots` and `snapshotTtl`: the retention a suspend applies once its
   * snapshot is taken, and the snapshot's expiry (defaults: keep all, 30 days).
   */
  snapshots?: { keep: number; ttlMs: number };
  /**
   * The snapshot a `fromSnapshot` rental wakes from, or undefined for the plain image (default:
   * wakeImage, the newest of this owner and architecture that fits the type's disk).
   */
  snapshotImage?: (
    s: HetznerSession,
    req: { architecture: "x86" | "arm"; type: string; snapshot: "latest" | number },
  ) => Promise<Image | undefined>;
}

/** The server types and prices, read from the API (the autoscaler's one place that reads prices). */
export async function readAutoscaleCatalog(
  s: HetznerSession,
  nowMs = Date.now(),
): Promise<{ offers: TypeOffer[]; prices: PriceTable }> {
  const [types, pricing] = await Promise.all([
    s.client.listServerTypes(),
    s.client.getPricing({ attempts: 3 }),
  ]);
  return { offers: types, prices: pricesFromApi(pricing, new Date(nowMs).toISOString().slice(0, 10)) };
}

/** The autoscaler's provider on Hetzner Cloud. */
export function hetznerAutoscaleProvider(o: HetznerAutoscaleOptions): AutoscaleProvider {
  const ttlMs = o.ttlMs ?? 2 * 3_600_000;
  const holder: LeaseHolder = { kind: "process", pid: process.pid, host: hostname() };
  const renewals = new Map<string, { stop: () => Promise<void> }>();
  let session: Promise<HetznerSession> | undefined;
  let closed = false;
  const open = () => {
    session ??= openSession({
      stateDir: o.stateDir,
      env: o.env,
      ...(o.retry ? { retry: o.retry } : {}),
      onRetry: (e) =>
        o.log(
          `autoscale: hetzner: ${e.request} → ${e.reason}; retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s`,
        ),
    }).catch((e: unknown) => {
      session = undefined;
      throw e;
    });
    return session;
  };
  return {
    catalog: async () => readAutoscaleCatalog(await open()),
    snapshots: async () => {
      const s = await open();
      const images = (await s.client.listImages({ type: "snapshot", status: "available" })).filter((i) =>
        isPoolSnapshot(i, s.owner),
      );
      const newest = (["x86", "arm"] as const).flatMap((architecture) => {
        const i = pickLatestSnapshot(images, { owner: s.owner, architecture });
        return i ? [{ id: i.id, architecture, diskSize: i.disk_size }] : [];
      });
      return { count: images.length, gb: images.reduce((n, i) => n + (i.image_size ?? 0), 0), newest };
    },
    rent: async (req) => {
      const s = await open();
      const architecture = architectureFor(req.system) ?? "x86";
      let request: WorkerRequest = {
        type: req.type,
        requirements: { minCores: 1, minMemory: 0, architecture },
        location: o.config.location,
        image: o.config.image,
        ttlMs,
        holder,
        bootTimeoutMs: o.config.bootTimeoutMs,
      };
      const snapshot =
        req.fromSnapshot !== undefined
          ? await (o.snapshotImage ?? wakeImage)(s, {
              architecture,
              type: req.type,
              snapshot: req.fromSnapshot,
            })
          : undefined;
      if (snapshot) {
        o.log(`autoscale: waking ${req.type} from snapshot ${snapshot.id} of ${snapshot.created}`);
        request = snapshotRequest(request, snapshot);
      }
      const rec = await createLease(s, request, o.log);
      req.onLeased?.(rec.lease.name);
      try {
        await provisionWorker(s, rec, { bootTimeoutMs: o.config.bootTimeoutMs, signal: req.signal }, o.log);
      } catch (e) {
        try {
          await destroy(s, rec);
        } catch (d) {
          // Still there: kept renewed while the autoscaler retries its deletion (as a failed release).
          if (!closed) {
            await renewLease(s, rec, ttlMs).catch(() => undefined);
            renewals.set(rec.lease.name, startLeaseRenewal(s, rec, ttlMs, o.log));
          }
          throw new RentalLeftBehind(rec.lease.name, e, d);
        }
        throw e;
      }
      renewals.set(rec.lease.name, startLeaseRenewal(s, rec, ttlMs, o.log));
      return { name: rec.lease.name, type: rec.type, builder: workerBuilder(rec) };
    },
    release: async (name) => {
      const s = await open();
      await renewals.get(name)?.stop();
      renewals.delete(name);
      const rec = findRecord(await readRecords(o.stateDir, o.log), name);
      if (!rec) return;
      try {
        await destroy(s, rec);
      } catch (e) {
        // Still there: its lease is renewed now and kept renewed while the autoscaler retries (no
        // gc reaps it meanwhile, and none is stuck with an expired lease after a run of failures).
        if (!closed) {
          await renewLease(s, rec, ttlMs).catch(() => undefined);
          renewals.set(name, startLeaseRenewal(s, rec, ttlMs, o.log));
        }
        throw e;
      }
    },
    suspend: async (name, signal) => {
      const s = await open();
      // No renewal writes the record while the suspend does (it would undo the suspend's steps).
      await renewals.get(name)?.stop();
      renewals.delete(name);
      const rec = findRecord(await readRecords(o.stateDir, o.log), name);
      if (!rec) {
        throw new NixpoolError("WORKER_UNKNOWN", `No worker is named "${name}" in this state directory.`, {
          hint: "List them with: nixpool worker list (nixpool worker gc deletes what has no record)",
          exitCode: ExitCode.usage,
        });
      }
      // One fresh lease for the whole suspend (minutes; Hetzner's snapshots take 1–5 min).
      await renewLease(s, rec, ttlMs);
      const { image } = await suspendWorker(
        s,
        rec,
        { snapshotTtlMs: o.snapshots?.ttlMs ?? DEFAULT_SNAPSHOT_TTL_MS, signal },
        o.log,
      );
      const pruned = await pruneSnapshots(s, o.log, o.snapshots?.keep ?? Infinity);
      for (const e of pruned.failed)
        o.log(
          `autoscale: deleting a snapshot past retention failed (${e instanceof Error ? e.message : String(e)}); nixpool worker gc retries`,
        );
      return { imageId: image.id, imageSizeGb: image.image_size, deletedSnapshots: pruned.deleted.length };
    },
    held: async () => new Set((await readRecords(o.stateDir, o.log)).map((r) => r.lease.name)),
    reap: async () => {
      await reapQuietly(
        await open(),
        o.log,
        o.snapshots ? { keepSnapshots: o.snapshots.keep, snapshotTtlMs: o.snapshots.ttlMs } : {},
      );
    },
    close: async () => {
      closed = true;
      await Promise.all([...renewals.values()].map((r) => r.stop()));
      renewals.clear();
    },
  };
}

async function destroy(s: HetznerSession, rec: WorkerRecord): Promise<void> {
  await destroyWorker(s, rec, () => undefined);
}
