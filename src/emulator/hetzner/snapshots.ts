import {
  finishAction,
  newAction,
  type ActionRecord,
  type Emulator,
  type ImageRecord,
  type ServerRecord,
} from "./state.js";

// Snapshots: create_image copies the server's disk (through the booter) and the image turns
// `available` once both the copy and the configured creation time are done.

const GB = 1e9;

/** Starts a snapshot of a server: the image (`creating`) and its create_image action. */
export function createSnapshot(
  emu: Emulator,
  s: ServerRecord,
  o: { type: "snapshot" | "backup"; description: string | undefined; labels: Record<string, string> },
): { image: ImageRecord; action: ActionRecord } {
  const image: ImageRecord = {
    id: emu.newId(),
    type: o.type,
    status: "creating",
    name: null,
    description: o.description ?? `${s.name}-${new Date(emu.now()).toISOString().replace(/\.\d+Z$/, "")}`,
    imageSize: null,
    diskSize: s.type.disk,
    created: emu.now(),
    createdFrom: { id: s.id, name: s.name },
    architecture: s.type.architecture,
    osFlavor: s.image.osFlavor,
    osVersion: s.image.osVersion,
    labels: o.labels,
    protectDelete: false,
    disk: undefined,
    timers: [],
  };
  emu.state.images.set(image.id, image);
  const action = newAction(
    emu,
    "create_image",
    [
      { id: s.id, type: "server" },
      { id: image.id, type: "image" },
    ],
    emu.timing.imageMs,
  );
  const host = s.host;
  const copied = host?.snapshot ? host.snapshot(image.id) : Promise.resolve(undefined);
  const waited = new Promise<void>((r) => image.timers.push(setTimeout(r, emu.timing.imageMs)));
  emu.track(
    Promise.all([copied, waited]).then(
      ([disk]) => {
        image.timers = [];
        if (!emu.state.images.has(image.id)) {
          void disk?.remove();
          return;
        }
        image.disk = disk;
        // Without a booter's copy, a small Debian disk's worth (what a fresh worker's snapshot takes).
        image.imageSize = disk ? Math.max(0.01, Math.round((disk.bytes / GB) * 1000) / 1000) : 1.2;
        image.status = "available";
        finishAction(emu, action);
      },
      (e: unknown) => {
        image.status = "unavailable";
        finishAction(emu, action, { code: "server_error", message: `copying the disk failed: ${String(e)}` });
      },
    ),
  );
  return { image, action };
}

/** Deletes an image and the booter's copy of its disk. */
export async function deleteImage(emu: Emulator, i: ImageRecord): Promise<void> {
  for (const t of i.timers) clearTimeout(t);
  emu.state.images.delete(i.id);
  const disk = i.disk;
  i.disk = undefined;
  await disk?.remove();
}

/** Whether a create_image action on this server still runs (the server is locked until it ends). */
export function isSnapshotting(emu: Emulator, s: ServerRecord): boolean {
  return [...emu.state.actions.values()].some(
    (a) =>
      a.command === "create_image" &&
      a.status === "running" &&
      a.resources.some((r) => r.type === "server" && r.id === s.id),
  );
}
