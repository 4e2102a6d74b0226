import { ExitCode, NixpoolError } from "../../core/errors.js";
import { LABELS } from "../../core/lease.js";
import { pickLatestSnapshot, SNAPSHOT_LABELS, snapshotSelector } from "../../core/snapshots.js";
import type { HcloudClient } from "./client.js";
import type { WorkerRequest } from "./provision.js";
import type { HetznerSession } from "./session.js";
import type { Image } from "./types.js";

// Snapshots of suspended workers, as the API has them: finding the one to wake from, and
// turning a worker request into one that boots it.

/**
 * The newest available snapshot of this owner (the pool: one state directory), optionally of one
 * architecture ("x86" for x86_64-linux, "arm" for aarch64-linux); undefined when there is none.
 */
export async function findLatestSnapshot(
  client: HcloudClient,
  o: { owner: string; architecture?: "x86" | "arm" },
): Promise<Image | undefined> {
  const images = await client.listImages({
    type: "snapshot",
    status: "available",
    labelSelector: snapshotSelector(o.owner, o.architecture),
  });
  return pickLatestSnapshot(images, o);
}

/**
 * The snapshot an autoscaled rental of `type` wakes from: the newest of this owner and
 * architecture ("latest") or the one named, if it fits the type's disk; undefined (the plain image)
 * when there is none or it does not fit.
 */
export async function wakeImage(
  s: HetznerSession,
  req: { architecture: "x86" | "arm"; type: string; snapshot: "latest" | number },
): Promise<Image | undefined> {
  const image =
    req.snapshot === "latest"
      ? await findLatestSnapshot(s.client, { owner: s.owner, architecture: req.architecture })
      : await resolveSnapshot(s, String(req.snapshot), req.architecture);
  if (!image) return undefined;
  const type = (await s.client.listServerTypes()).find((t) => t.name === req.type);
  return type && image.disk_size > type.disk ? undefined : image;
}

/**
 * The snapshot `--from-snapshot REF` names: `latest` (the newest of this owner, of the
 * architecture when given), or an image id that must be an available nixpool snapshot of this
 * owner (another pool's is refused: its store would be trusted as this pool's).
 */
export async function resolveSnapshot(
  s: HetznerSession,
  ref: string,
  architecture?: "x86" | "arm",
): Promise<Image> {
  if (ref === "latest") {
    const latest = await findLatestSnapshot(s.client, {
      owner: s.owner,
      ...(architecture ? { architecture } : {}),
    });
    if (latest) return latest;
    throw new NixpoolError(
      "SNAPSHOT_NOT_FOUND",
      `There is no snapshot of this pool${architecture ? ` for ${architecture}` : ""} to wake a worker from.`,
      {
        hint: "Suspend a worker first (nixpool worker suspend NAME), or rent a fresh one: nixpool worker up",
        exitCode: ExitCode.usage,
      },
    );
  }
  const id = /^[1-9]\d{0,15}$/.test(ref) ? Number(ref) : undefined;
  const image = id === undefined ? undefined : await s.client.getImage(id);
  if (!image || image.type !== "snapshot" || image.labels[LABELS.managed] !== "1") {
    throw new NixpoolError("SNAPSHOT_NOT_FOUND", `No nixpool snapshot has the id "${ref}".`, {
      hint: "List the pool's snapshots with: nixpool worker list (or --from-snapshot latest)",
      exitCode: ExitCode.usage,
    });
  }
  if (!isPoolSnapshot(image, s.owner)) {
    // Its outputs would be trusted as this pool's cache: only this pool's own snapshots wake.
    throw new NixpoolError(
      "SNAPSHOT_NOT_FOUND",
      `Snapshot ${image.id} was taken by another nixpool pool (another state directory), not this one.`,
      {
        hint: "Wake one of this pool's snapshots (nixpool worker list shows them), or use --from-snapshot latest.",
        exitCode: ExitCode.usage,
      },
    );
  }
  if (image.status !== "available") {
    throw new NixpoolError("SNAPSHOT_NOT_FOUND", `Snapshot ${image.id} is ${image.status}, not available.`, {
      hint: "Wait until it is available (nixpool worker list), or use --from-snapshot latest.",
      exitCode: ExitCode.usage,
    });
  }
  return image;
}

/**
 * The request that boots `image`: its id as the image, its architecture, and a type with at
 * least its disk. A named type whose disk is too small is refused here, before anything is rented.
 */
export function snapshotRequest(req: WorkerRequest, image: Pick<Image, "id" | "architecture" | "disk_size">) {
  const out: WorkerRequest = {
    ...req,
    image: String(image.id),
    requirements: { ...req.requirements, architecture: image.architecture, minDisk: image.disk_size },
    snapshot: { id: image.id, diskSize: image.disk_size },
  };
  return out;
}

/** Whether a snapshot image was taken by nixpool for this owner (what `worker list` shows and gc keeps). */
export function isPoolSnapshot(i: Pick<Image, "labels">, owner: string): boolean {
  return i.labels[LABELS.managed] === "1" && i.labels[LABELS.owner] === owner;
}

/** A snapshot's row for `worker list`: what it holds and what it costs per month. */
export function describeSnapshot(i: Image) {
  return {
    id: i.id,
    status: i.status,
    created: i.created,
    architecture: i.architecture,
    type: i.labels[SNAPSHOT_LABELS.type] ?? null,
    system: i.labels[SNAPSHOT_LABELS.system] ?? null,
    version: i.labels[SNAPSHOT_LABELS.version] ?? null,
    imageSizeGb: i.image_size,
    diskSizeGb: i.disk_size,
  };
}
