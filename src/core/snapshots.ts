import { LABELS } from "./lease.js";

/**
 * Snapshots of suspended workers (warm workers): their labels, which one a wake uses, and which
 * ones `worker gc` deletes. Pure: the API's images in, decisions out.
 */

/** Label keys a snapshot carries besides the lease labels (nixpool, owner, lease, expires). */
export const SNAPSHOT_LABELS = {
  architecture: "nixpool-arch",
  /** The worker's system: the store path's base name (HASH-nixpool-worker-system). */
  system: "nixpool-system",
  version: "nixpool-version",
  /** The server type it was taken from (its disk is the snapshot's disk_size). */
  type: "nixpool-type",
} as const;

/** A snapshot as these rules see it (a subset of the API's image). */
export interface SnapshotImage {
  id: number;
  status: string;
  created: string;
  architecture: string;
  disk_size: number;
  image_size: number | null;
  labels: Record<string, string>;
}

/** Label values: at most 63 characters of [A-Za-z0-9._-], starting and ending alphanumeric. */
export function labelValue(v: string): string {
  const cleaned = v
    .replace(/[^A-Za-z0-9._-]/g, "_")
    .slice(0, 63)
    .replace(/^[^A-Za-z0-9]+|[^A-Za-z0-9]+$/g, "");
  return cleaned;
}

/** The labels of a suspended worker's snapshot: the lease's, the owner's retention expiry, and what it holds. */
export function snapshotLabels(o: {
  owner: string;
  leaseId: string;
  expiresMs: number;
  architecture: string;
  systemPath: string | null;
  version: string;
  type: string;
}): Record<string, string> {
  return {
    [LABELS.managed]: "1",
    [LABELS.owner]: o.owner,
    [LABELS.lease]: o.leaseId,
    [LABELS.expires]: String(Math.floor(o.expiresMs / 1000)),
    [SNAPSHOT_LABELS.architecture]: o.architecture,
    [SNAPSHOT_LABELS.system]: labelValue(o.systemPath?.replace(/^\/nix\/store\//, "") ?? "none"),
    [SNAPSHOT_LABELS.version]: labelValue(o.version),
    [SNAPSHOT_LABELS.type]: labelValue(o.type),
  };
}

/** The label selector for one owner's snapshots (of one architecture). */
export function snapshotSelector(owner: string, architecture?: string): string {
  return [
    `${LABELS.managed}=1`,
    `${LABELS.owner}=${owner}`,
    ...(architecture ? [`${SNAPSHOT_LABELS.architecture}=${architecture}`] : []),
  ].join(",");
}

/** Newest first (by creation time, then id). */
export function newestFirst<T extends Pick<SnapshotImage, "created" | "id">>(images: readonly T[]): T[] {
  return [...images].sort((a, b) => Date.parse(b.created) - Date.parse(a.created) || b.id - a.id);
}

/** The snapshot a wake uses: this owner's newest available one of the architecture. */
export function pickLatestSnapshot<T extends SnapshotImage>(
  images: readonly T[],
  o: { owner: string; architecture?: string },
): T | undefined {
  return newestFirst(
    images.filter(
      (i) =>
        i.status === "available" &&
        i.labels[LABELS.managed] === "1" &&
        i.labels[LABELS.owner] === o.owner &&
        (o.architecture === undefined || i.architecture === o.architecture),
    ),
  )[0];
}

export type SnapshotGcReason =
  "expired" | "no expiry label" | "past retention" | "orphaned: its suspend was abandoned";

export interface SnapshotGcInput {
  images: readonly SnapshotImage[];
  owner: string;
  nowMs: number;
  /** How many of this owner's newest snapshots to keep, per architecture. */
  keep: number;
  /** Snapshots a suspend of this owner is still taking (their leases have a suspend record). */
  suspending: ReadonlySet<string>;
}

/**
 * What `worker gc` deletes: any nixpool snapshot past its expiry label (whoever owns it: an
 * owner that no longer exists leaves only such); this owner's without an expiry, those past
 * the newest `keep` per architecture, and unfinished ones no suspend is taking any more. A
 * snapshot a live suspend is taking is never touched.
 */
export function planSnapshotGc(input: SnapshotGcInput): { image: SnapshotImage; reason: SnapshotGcReason }[] {
  const out: { image: SnapshotImage; reason: SnapshotGcReason }[] = [];
  const kept = new Map<string, number>();
  for (const i of newestFirst(input.images)) {
    if (i.labels[LABELS.managed] !== "1") continue;
    const mine = i.labels[LABELS.owner] === input.owner;
    const lease = i.labels[LABELS.lease] ?? "";
    if (mine && input.suspending.has(lease)) continue;
    const expires = Number(i.labels[LABELS.expires]);
    if (!Number.isFinite(expires) || i.labels[LABELS.expires] === undefined) {
      if (mine) out.push({ image: i, reason: "no expiry label" });
      continue;
    }
    if (expires * 1000 <= input.nowMs) {
      out.push({ image: i, reason: "expired" });
      continue;
    }
    if (!mine) continue;
    if (i.status !== "available") {
      out.push({ image: i, reason: "orphaned: its suspend was abandoned" });
      continue;
    }
    const n = kept.get(i.architecture) ?? 0;
    if (n >= input.keep) out.push({ image: i, reason: "past retention" });
    else kept.set(i.architecture, n + 1);
  }
  return out;
}

/** GB-months: what a snapshot is billed for (image_size, else its disk while it is being created). */
export function snapshotGb(i: Pick<SnapshotImage, "image_size" | "disk_size">): number {
  return i.image_size ?? i.disk_size;
}
