import { hostname } from "node:os";
import { isProcessAlive } from "../../adapters/process-alive.js";
import { waitFor } from "../../adapters/wait-for.js";
import type { WorkerCost } from "../../core/cost.js";
import { ExitCode, NixpoolError } from "../../core/errors.js";
import { LABELS } from "../../core/lease.js";
import { snapshotLabels } from "../../core/snapshots.js";
import { builtOutputs, parsePathInfoJson } from "../../core/path-info.js";
import { readRecords, saveRecord, type Log, type WorkerRecord } from "./records.js";
import { renewLease, startLeaseRenewal } from "./renewal.js";
import type { HetznerSession } from "./session.js";
import { destroyWorker } from "./teardown.js";
import type { Image } from "./types.js";
import { SUSPEND_STEPS, type SuspendStep } from "./worker-record-schema.js";
import { nixpoolVersion, onWorker } from "./worker-system.js";

// `worker suspend`: keep what the worker built, collect the rest, shut down, snapshot (labelled
// from the start), wait for the snapshot, delete the server. Each step is recorded in the
// worker's record before it runs, so a rerun (`worker suspend` again, or `worker gc` once the
// suspending process is gone) resumes at that step: nothing is left half done or unlabelled.

/** The lease a suspend keeps on its server at least (renewed while it runs). */
const SUSPEND_LEASE_MS = 2 * 3_600_000;

/** Where the suspend keeps its GC roots on the worker (a directory of symlinks: direct roots). */
const ROOTS_DIR = "/nix/var/nix/gcroots/nixpool-suspend";

export interface SuspendOptions {
  /** The snapshot's expiry label: now + this (other owners' gc deletes it after). */
  snapshotTtlMs: number;
  /** Time allowed for the snapshot to become available; default 30 min (Hetzner: 1–5 min). */
  imageTimeoutMs?: number;
  signal?: AbortSignal;
}

export interface SuspendResult {
  image: Image;
  cost: WorkerCost;
}

function failed(rec: WorkerRecord, step: SuspendStep, why: string): NixpoolError {
  return new NixpoolError(
    "WORKER_SUSPEND_FAILED",
    `Suspending worker ${rec.lease.name} failed at its ${step} step: ${why}.`,
    {
      hint: `Run it again, it resumes there: nixpool worker suspend ${rec.lease.name} (or nixpool worker down ${rec.lease.name} to drop it)`,
    },
  );
}

/** Keeps every output of a build held by the worker (paths with a deriver), replacing earlier roots. */
async function pinOutputs(s: HetznerSession, rec: WorkerRecord, log: Log, signal?: AbortSignal) {
  const info = await onWorker(
    s.stateDir,
    rec,
    ["nix", "--extra-experimental-features", "nix-command", "path-info", "--all", "--json"],
    { timeoutMs: 300_000, ...(signal ? { signal } : {}) },
  );
  const parsed = parsePathInfoJson(info.stdout);
  if (info.exitCode !== 0 || !parsed) {
    throw failed(
      rec,
      "roots",
      info.stderr.trim().split("\n").slice(-1)[0] || "its store could not be listed",
    );
  }
  const outputs = builtOutputs(parsed);
  const script = [
    "set -eu",
    `rm -rf ${ROOTS_DIR}`,
    `mkdir -p ${ROOTS_DIR}`,
    "i=0",
    `while read -r p; do i=$((i+1)); ln -s "$p" ${ROOTS_DIR}/$i; done`,
  ].join("\n");
  const r = await onWorker(s.stateDir, rec, ["sh", "-c", script], {
    input: outputs.map((p) => `${p}\n`).join(""),
    ...(signal ? { signal } : {}),
  });
  if (r.exitCode !== 0) throw failed(rec, "roots", r.stderr.trim() || `exit ${r.exitCode}`);
  log(`worker ${rec.lease.name}: kept ${outputs.length} built output(s) and the system as GC roots`);
}

async function collectGarbage(s: HetznerSession, rec: WorkerRecord, log: Log, signal?: AbortSignal) {
  const r = await onWorker(s.stateDir, rec, ["nix-store", "--gc"], {
    timeoutMs: 1_800_000,
    ...(signal ? { signal } : {}),
  });
  if (r.exitCode !== 0) throw failed(rec, "gc", r.stderr.trim().split("\n").slice(-1)[0] ?? "");
  const freed = /(\d+ store paths deleted, [\d.]+ \w+ freed)/.exec(r.stdout + r.stderr)?.[1];
  log(`worker ${rec.lease.name}: garbage collected${freed ? ` (${freed})` : ""}`);
}

async function shutDown(s: HetznerSession, rec: WorkerRecord, log: Log) {
  const id = rec.serverId;
  const server = id === null ? undefined : await s.client.getServer(id);
  if (!server) throw failed(rec, "shutdown", "its server is gone");
  if (server.status !== "off") {
    log(`worker ${rec.lease.name}: shutting down server ${server.name} for a consistent snapshot`);
    await s.client.waitForAction(await s.client.shutdownServer(server.id), { timeoutMs: 300_000 });
    // The shutdown action ends when the signal is sent; the server is off a little later.
    const off = await waitFor(async () => (await s.client.getServer(server.id))?.status === "off", {
      timeoutMs: 300_000,
      intervalMs: 1000,
    });
    if (!off) log(`warning: server ${server.name} is not off after 5 min; snapshotting it anyway`);
  }
}

/** Finds (after a crash between asking and recording) or creates the snapshot; records its id. */
async function takeSnapshot(
  s: HetznerSession,
  rec: WorkerRecord,
  o: SuspendOptions,
  log: Log,
): Promise<number> {
  const state = rec.suspend;
  if (!state) throw new Error("takeSnapshot without a suspend record");
  if (state.imageId !== null) return state.imageId;
  const [earlier] = await s.client.listImages({
    type: "snapshot",
    labelSelector: `${LABELS.managed}=1,${LABELS.lease}=${rec.lease.id}`,
  });
  if (earlier) {
    state.imageId = earlier.id;
  } else {
    if (rec.serverId === null) throw failed(rec, "image", "its server is gone");
    const labels = snapshotLabels({
      owner: rec.lease.owner,
      leaseId: rec.lease.id,
      expiresMs: Date.now() + o.snapshotTtlMs,
      architecture: rec.system.startsWith("aarch64") ? "arm" : "x86",
      systemPath: rec.systemPath ?? null,
      version: nixpoolVersion(),
      type: rec.type,
    });
    const { image } = await s.client.createImage(rec.serverId, {
      description: `nixpool ${rec.lease.name} (${rec.type}, ${rec.system})`,
      labels,
    });
    if (!image) throw failed(rec, "image", "the API's answer to create_image had no image");
    state.imageId = image.id;
    log(`worker ${rec.lease.name}: snapshot ${image.id} is being created`);
  }
  await saveRecord(s.stateDir, rec);
  return state.imageId;
}

async function waitForSnapshot(s: HetznerSession, rec: WorkerRecord, id: number, o: SuspendOptions) {
  const timeoutMs = o.imageTimeoutMs ?? 1_800_000;
  let last: Image | undefined;
  const done = await waitFor(
    async () => {
      last = await s.client.getImage(id);
      return last === undefined || last.status !== "creating";
    },
    { timeoutMs, intervalMs: 1000, ...(o.signal ? { signal: o.signal } : {}) },
  );
  if (!done) {
    throw new NixpoolError(
      "SNAPSHOT_TIMEOUT",
      `Snapshot ${id} of worker ${rec.lease.name} was not available within ${Math.round(timeoutMs / 60_000)} min.`,
      { hint: `Run it again, it waits on: nixpool worker suspend ${rec.lease.name}` },
    );
  }
  if (!last || last.status !== "available") {
    // Gone or broken: the next run takes a new one (the server is still there, off).
    if (rec.suspend) rec.suspend.imageId = null;
    await saveRecord(s.stateDir, rec);
    throw failed(rec, "image", `snapshot ${id} is ${last ? last.status : "gone"}`);
  }
  return last;
}

/** Records the step about to run (the resume point). */
async function enter(s: HetznerSession, rec: WorkerRecord, step: SuspendStep) {
  if (rec.suspend) rec.suspend.step = step;
  await saveRecord(s.stateDir, rec);
}

/** For tests: `NIXPOOL_TEST_SUSPEND_CRASH=STEP` kills this process right after STEP's work (kill -9). */
function crashHook(step: SuspendStep) {
  if (process.env["NIXPOOL_TEST_SUSPEND_CRASH"] === step) process.kill(process.pid, "SIGKILL");
}

/**
 * Suspends a worker, or resumes its suspend at the recorded step: GC roots for the outputs it
 * holds (its system profile is a root already), garbage collection, shutdown, a snapshot
 * labelled with the lease, owner, expiry, architecture, system and nixpool version, the wait
 * for it, and the server's deletion. Returns the snapshot and what the worker cost.
 */
export async function suspendWorker(
  s: HetznerSession,
  rec: WorkerRecord,
  o: SuspendOptions,
  log: Log,
): Promise<SuspendResult> {
  const h = rec.lease.holder;
  if (h.kind === "process" && h.pid !== process.pid && h.host === hostname() && isProcessAlive(h.pid)) {
    throw new NixpoolError(
      "WORKER_SUSPEND_FAILED",
      `Worker ${rec.lease.name} is held by process ${h.pid} (${rec.suspend ? "suspending it" : "a build or shell"}).`,
      {
        hint: "Wait for it to finish (nixpool worker list), or stop that process and run this again.",
        exitCode: ExitCode.usage,
      },
    );
  }
  if (!rec.suspend) {
    if (rec.status !== "ready") {
      throw new NixpoolError(
        "WORKER_SUSPEND_FAILED",
        `Worker ${rec.lease.name} is ${rec.status}; only a ready worker can be suspended.`,
        {
          hint:
            "Wait until nixpool worker list shows it ready, or delete it: nixpool worker down " +
            rec.lease.name,
        },
      );
    }
    rec.suspend = { step: "roots", imageId: null, startedAt: new Date().toISOString() };
  } else {
    log(`worker ${rec.lease.name}: resuming its suspend at the ${rec.suspend.step} step`);
  }
  rec.status = "suspending";
  rec.lease.holder = { kind: "process", pid: process.pid, host: hostname() };
  // The lease (the server's expiry label) outlasts the suspend: any owner's gc deletes a server
  // whose lease expired, and a suspend may take an hour (gc, shutdown, the snapshot).
  const ttlMs = Math.max(SUSPEND_LEASE_MS, Date.parse(rec.lease.expiresAt) - Date.now());
  await renewLease(s, rec, ttlMs).catch((e: unknown) =>
    log(
      `warning: could not extend the lease of ${rec.lease.name} for its suspend (${e instanceof Error ? e.message : String(e)}); it expires at ${rec.lease.expiresAt}`,
    ),
  );
  const renewal = startLeaseRenewal(s, rec, ttlMs, log);
  try {
    return await runSteps(s, rec, o, log);
  } finally {
    await renewal.stop();
  }
}

async function runSteps(
  s: HetznerSession,
  rec: WorkerRecord,
  o: SuspendOptions,
  log: Log,
): Promise<SuspendResult> {
  if (!rec.suspend) throw new Error("runSteps without a suspend record");
  const from = SUSPEND_STEPS.indexOf(rec.suspend.step);
  let image: Image | undefined;
  for (const step of SUSPEND_STEPS.slice(from)) {
    await enter(s, rec, step);
    switch (step) {
      case "roots":
        await pinOutputs(s, rec, log, o.signal);
        break;
      case "gc":
        await collectGarbage(s, rec, log, o.signal);
        break;
      case "shutdown":
        await shutDown(s, rec, log);
        break;
      case "image": {
        const id = await takeSnapshot(s, rec, o, log);
        crashHook("image");
        image = await waitForSnapshot(s, rec, id, o);
        log(`worker ${rec.lease.name}: snapshot ${image.id} available (${image.image_size ?? "?"} GB)`);
        break;
      }
      case "delete": {
        const id = rec.suspend?.imageId ?? null;
        image ??= id === null ? undefined : await s.client.getImage(id);
        if (!image) throw failed(rec, "delete", "its snapshot is gone");
        const cost = await destroyWorker(s, rec, log);
        return { image, cost };
      }
    }
    crashHook(step);
  }
  throw new Error("unreachable: the delete step returns");
}

/**
 * Finishes the suspends whose process is gone (killed mid-way): what `worker gc` does first.
 * Returns the workers it finished and the failures (which gc reports; nothing is deleted early).
 */
export async function resumeSuspends(
  s: HetznerSession,
  o: SuspendOptions,
  log: Log,
): Promise<{ finished: string[]; failed: unknown[] }> {
  const out = { finished: [] as string[], failed: [] as unknown[] };
  for (const rec of await readRecords(s.stateDir, log)) {
    if (!rec.suspend) continue;
    const h = rec.lease.holder;
    if (h.kind === "process" && (h.host !== hostname() || isProcessAlive(h.pid))) continue;
    log(`gc: finishing the suspend of ${rec.lease.name} (its process is gone)`);
    try {
      await suspendWorker(s, rec, o, log);
      out.finished.push(rec.lease.name);
    } catch (e) {
      out.failed.push(e);
    }
  }
  return out;
}
