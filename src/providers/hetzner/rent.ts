import { hostname } from "node:os";
import { trapSignals } from "../../adapters/signals.js";
import type { Builder } from "../../core/builder.js";
import { formatWorkerCost, type WorkerCost } from "../../core/cost.js";
import { configError, ExitCode, isNixpoolError, NixpoolError } from "../../core/errors.js";
import { readDurationFlag } from "../../core/duration.js";
import type { LeaseHolder } from "../../core/lease.js";
import { parseNumberFlag } from "../../core/number-flag.js";
import { redactForTerminal } from "../../core/redact.js";
import type { RetryEvent } from "./client.js";
import { createLease, provisionWorker, type WorkerRequest } from "./provision.js";
import { reapQuietly } from "./reaper.js";
import { recordCost, saveRecord, workerBuilder, type Log, type WorkerRecord } from "./records.js";
import { renewLease, startLeaseRenewal } from "./renewal.js";
import { openSession, type HetznerSession } from "./session.js";
import { resolveSnapshot, snapshotRequest } from "./snapshots.js";
import { destroyWorker } from "./teardown.js";

/** What to rent, as given on the command line (every field a flag of `worker up`). */
export interface RentFlags {
  provider?: string;
  type?: string;
  minCores?: string;
  minMemory?: string;
  location?: string;
  image?: string;
  ttl?: string;
  bootTimeout?: string;
  keep?: boolean;
  tokenFile?: string;
  json?: boolean;
  /** Wake from a snapshot: its id, or "latest" (true: the flag without a value). */
  fromSnapshot?: string | true;
}

/** Where a rental runs: the state directory, and where progress lines go (a CLI Context fits). */
export interface RentContext {
  stateDir: string;
  output: { err(line: string): void };
  env?: Record<string, string | undefined>;
}

export const RENT_DEFAULTS = { location: "fsn1", image: "debian-12", minCores: 2, minMemory: 2 };

function positive(flag: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  return parseNumberFlag(flag, v, { positive: true, example: `nixpool worker up ${flag} 4` });
}

/**
 * A lease duration (--ttl, --boot-timeout and their variables): a bare number is still read as
 * minutes, as it always was, with a deprecation note passed to warn (core/duration.ts).
 */
function leaseDuration(flag: string, text: string, warn: (line: string) => void): number {
  const d = readDurationFlag(text, {
    flag,
    bare: { legacyUnit: "m" },
    minMs: 1000,
    example: `nixpool worker up ${flag.startsWith("--") ? flag : "--ttl"} 2h`,
  });
  if (d.warning) warn(d.warning);
  return d.ms;
}

/** Turns flags (and NIXPOOL_HCLOUD_LOCATION/IMAGE/TTL/BOOT_TIMEOUT) into a worker request; deprecation notes go to warn. */
export function parseWorkerRequest(
  f: RentFlags,
  env: Record<string, string | undefined>,
  holder: LeaseHolder,
  defaultTtl: string,
  warn: (line: string) => void = () => undefined,
): WorkerRequest {
  if (f.provider !== undefined && f.provider !== "hetzner") {
    throw configError("PROVIDER_UNKNOWN", `There is no worker provider "${f.provider}".`, {
      hint: "The provider is hetzner: nixpool worker up --provider hetzner",
    });
  }
  const type = f.type ?? "auto";
  if (type !== "auto" && (f.minCores !== undefined || f.minMemory !== undefined)) {
    throw configError(
      "FLAG_CONFLICT",
      "--type names a server type; --min-cores and --min-memory go with --type auto.",
      {
        hint: "Use either --type cx23, or --min-cores 4 --min-memory 8 (which implies --type auto).",
      },
    );
  }
  return {
    type,
    requirements: {
      minCores: positive("--min-cores", f.minCores, RENT_DEFAULTS.minCores),
      minMemory: positive("--min-memory", f.minMemory, RENT_DEFAULTS.minMemory),
    },
    location: f.location ?? env["NIXPOOL_HCLOUD_LOCATION"] ?? RENT_DEFAULTS.location,
    image: f.image ?? env["NIXPOOL_HCLOUD_IMAGE"] ?? RENT_DEFAULTS.image,
    ttlMs: leaseDuration(
      f.ttl !== undefined
        ? "--ttl"
        : env["NIXPOOL_HCLOUD_TTL"] !== undefined
          ? "NIXPOOL_HCLOUD_TTL"
          : "--ttl",
      f.ttl ?? env["NIXPOOL_HCLOUD_TTL"] ?? defaultTtl,
      warn,
    ),
    holder,
    bootTimeoutMs: leaseDuration(
      f.bootTimeout !== undefined || env["NIXPOOL_HCLOUD_BOOT_TIMEOUT"] === undefined
        ? "--boot-timeout"
        : "NIXPOOL_HCLOUD_BOOT_TIMEOUT",
      f.bootTimeout ?? env["NIXPOOL_HCLOUD_BOOT_TIMEOUT"] ?? "10m",
      warn,
    ),
  };
}

/** Parses `--on hetzner[:TYPE]` for nixpool build. */
export function parseOn(on: string): RentFlags {
  const m = /^hetzner(?::([a-z0-9-]+))?$/.exec(on);
  if (!m) {
    throw configError("BUILD_ON_INVALID", `--on "${on}" is not a place to build.`, {
      hint: "Use --on hetzner (cheapest fitting type) or --on hetzner:cx33.",
    });
  }
  return m[1] ? { type: m[1] } : {};
}

/** Progress and warnings go to stderr, redacted (they may quote API errors). */
export function logFor(rc: RentContext): Log {
  return (line) => rc.output.err(redactForTerminal(line));
}

/**
 * Keeps the process alive through signals so the worker is always deleted: the first of
 * `signals` aborts `controller`, later ones and those `ignore` accepts are left alone.
 */
function trapWorkerSignals(
  controller: AbortController,
  log: Log,
  signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM"],
  ignore?: (sig: NodeJS.Signals) => boolean,
): () => void {
  return trapSignals(controller, {
    signals,
    ...(ignore ? { ignore } : {}),
    onFirst: (sig) =>
      log(`${sig}: stopping; the worker is being deleted (nixpool worker gc cleans up if this is killed)`),
  });
}

/** A session whose retries are shown as progress lines. */
export function openLoggedSession(
  rc: RentContext,
  f: { tokenFile?: string },
  log: Log,
  signal?: AbortSignal,
) {
  return openSession({
    stateDir: rc.stateDir,
    env: rc.env ?? process.env,
    tokenFile: f.tokenFile,
    ...(signal ? { signal } : {}),
    onRetry: (e: RetryEvent) =>
      log(`hetzner: ${e.request} → ${e.reason}; retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s`),
  });
}

/** Two sessions: one that an interruption aborts, and one for teardown that it must not. */
async function openSessions(rc: RentContext, f: RentFlags, signal: AbortSignal, log: Log) {
  const live = await openLoggedSession(rc, f, log, signal);
  const teardown = await openLoggedSession(rc, f, log);
  return { live, teardown };
}

/** A worker as `worker list --json` and `build --json` show it. */
export function summariseWorker(rec: WorkerRecord, now = Date.now()) {
  const cost = recordCost(rec, now);
  return {
    name: rec.lease.name,
    server: rec.lease.serverName,
    serverId: rec.serverId,
    status: rec.status,
    type: rec.type,
    location: rec.location,
    address: rec.ipv4,
    cores: rec.cores,
    expiresAt: rec.lease.expiresAt,
    holder: rec.lease.holder.kind,
    cost: { ...cost.total, currency: cost.currency, hours: cost.hours, source: cost.source, date: cost.date },
  };
}

export interface RentedRun<T> {
  result: T;
  worker: ReturnType<typeof summariseWorker>;
  cost: WorkerCost;
}

/** An error that a signal caused becomes INTERRUPTED (exit 130), keeping it as the cause. */
function interruptedOr(error: unknown, signal: AbortSignal): unknown {
  if (!signal.aborted || (isNixpoolError(error) && error.code === "INTERRUPTED")) return error;
  return new NixpoolError("INTERRUPTED", "Interrupted; the worker was deleted.", {
    exitCode: ExitCode.interrupted,
    cause: error,
  });
}

/**
 * Deletes a worker and logs its cost line. When the deletion itself fails it throws
 * WORKER_LEAKED, after logging `failure` (the error that made the caller give up), if any.
 */
async function deleteWorker(teardown: HetznerSession, rec: WorkerRecord, log: Log, failure?: unknown) {
  let cost: WorkerCost;
  try {
    cost = await destroyWorker(teardown, rec, log);
  } catch (e) {
    if (failure instanceof Error) log(`error: ${failure.message}`);
    throw new NixpoolError(
      "WORKER_LEAKED",
      `Worker ${rec.lease.name} (server ${rec.lease.serverName}) could not be deleted.`,
      {
        hint: `Delete it now: nixpool worker gc (or hcloud server delete ${rec.lease.serverName})`,
        cause: e,
      },
    );
  }
  log(`worker ${rec.lease.name} deleted; ${formatWorkerCost(cost, rec.type, rec.location)}`);
  return cost;
}

/** Hands a worker to the user: it stays until `worker down` or its lease expires, and says so loudly. */
async function keepWorker(stateDir: string, rec: WorkerRecord, log: Log): Promise<void> {
  rec.lease.holder = { kind: "user" };
  await saveRecord(stateDir, rec);
  log(
    `KEEPING worker ${rec.lease.name} (${rec.ipv4 ?? "?"}) until its lease expires at ${rec.lease.expiresAt};` +
      ` it costs money until then. Delete it sooner with: nixpool worker down ${rec.lease.name}`,
  );
}

/**
 * Rents one worker held by this process: gc in passing, the lease, then provisioning. A
 * provisioning failure deletes the worker before it is rethrown.
 */
async function rentWorker(
  rc: RentContext,
  f: RentFlags,
  defaultTtl: string,
  controller: AbortController,
  log: Log,
) {
  const holder: LeaseHolder = { kind: "process", pid: process.pid, host: hostname() };
  let req = parseWorkerRequest(f, rc.env ?? process.env, holder, defaultTtl, (l) => rc.output.err(l));
  const { live, teardown } = await openSessions(rc, f, controller.signal, log);
  await reapQuietly(live, log);
  if (f.fromSnapshot !== undefined) {
    const ref = f.fromSnapshot === true ? "latest" : f.fromSnapshot;
    const image = await resolveSnapshot(live, ref, req.requirements.architecture);
    log(
      `waking from snapshot ${image.id} of ${image.created} (${image.image_size ?? "?"} GB, ${image.architecture})`,
    );
    req = snapshotRequest(req, image);
  }
  const rec = await createLease(live, req, log);
  try {
    await provisionWorker(
      live,
      rec,
      { ...(req.bootTimeoutMs ? { bootTimeoutMs: req.bootTimeoutMs } : {}), signal: controller.signal },
      log,
    );
    // The lease ran while the server booted and was set up: it starts afresh now that the worker
    // is handed over, so a short TTL cannot lapse before the holder's first renewal. Only an
    // interruption (the worker is then deleted) makes a failed renewal more than a warning.
    await renewLease(live, rec, req.ttlMs).catch((e: unknown) => {
      if (controller.signal.aborted) throw e;
      log(
        `warning: could not renew the lease of ${rec.lease.name} (${e instanceof Error ? e.message : String(e)}); it expires at ${rec.lease.expiresAt}`,
      );
    });
  } catch (e) {
    await deleteWorker(teardown, rec, log, e);
    throw interruptedOr(e, controller.signal);
  }
  return { rec, req, live, teardown };
}

/**
 * `worker up`: rents a worker, held by this process while it provisions (a kill -9 then is
 * reaped), then hands it to the user until `worker down` or its lease expires.
 */
export async function rentKeptWorker(
  rc: RentContext,
  f: RentFlags,
  defaultTtl: string,
): Promise<WorkerRecord> {
  const log = logFor(rc);
  const controller = new AbortController();
  const untrap = trapWorkerSignals(controller, log);
  try {
    const { rec } = await rentWorker(rc, f, defaultTtl, controller, log);
    await keepWorker(rc.stateDir, rec, log);
    return rec;
  } finally {
    untrap();
  }
}

/**
 * Rents one worker, runs `fn` with it as the only builder, and deletes it — on success,
 * failure, SIGINT and SIGTERM — then prints the cost line. With `keep`, a worker that was not
 * interrupted stays until its lease expires (debugging a failed build, say).
 */
export async function withRentedWorker<T>(
  rc: RentContext,
  f: RentFlags,
  fn: (builders: Builder[], signal: AbortSignal, rec: WorkerRecord) => Promise<T>,
  o: {
    defaultTtl: string;
    trap?: NodeJS.Signals[];
    /** Signals for which this returns true do not abort (Ctrl-C meant for an interactive shell). */
    ignoreSignal?: (sig: NodeJS.Signals) => boolean;
  },
): Promise<RentedRun<T>> {
  const log = logFor(rc);
  const controller = new AbortController();
  const untrap = trapWorkerSignals(controller, log, o.trap, o.ignoreSignal);
  try {
    const { rec, req, live, teardown } = await rentWorker(rc, f, o.defaultTtl, controller, log);
    let outcome: { ok: true; value: T } | { ok: false; error: unknown };
    const renewal = startLeaseRenewal(live, rec, req.ttlMs, log);
    try {
      outcome = { ok: true, value: await fn([workerBuilder(rec)], controller.signal, rec) };
    } catch (e) {
      outcome = { ok: false, error: e };
    } finally {
      await renewal.stop();
    }
    let cost: WorkerCost;
    if (f.keep && !controller.signal.aborted) {
      await keepWorker(rc.stateDir, rec, log);
      cost = recordCost(rec, Date.now());
    } else {
      cost = await deleteWorker(teardown, rec, log, outcome.ok ? undefined : outcome.error);
    }
    if (!outcome.ok) throw interruptedOr(outcome.error, controller.signal);
    return { result: outcome.value, worker: summariseWorker(rec), cost };
  } finally {
    untrap();
  }
}

/** For nixpool build --on hetzner[:TYPE]: rent, build with `exec`, copy back, delete, print the cost. */
export function buildOnWorker<T>(
  rc: RentContext,
  on: string,
  exec: (builders: Builder[], signal: AbortSignal) => Promise<T>,
): Promise<RentedRun<T>> {
  return withRentedWorker(rc, parseOn(on), (builders, signal) => exec(builders, signal), {
    defaultTtl: "6h",
  });
}
