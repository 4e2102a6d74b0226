import { hostname } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import type { RegisterCommands } from "../cli/commands.js";
import { parseNumberFlag } from "../cli/flags.js";
import { trapSignals } from "../cli/signals.js";
import type { Context } from "../cli/context.js";
import { renderTable } from "../cli/output.js";
import { writeFileAtomic } from "../adapters/fs.js";
import { runInteractive } from "../adapters/runner.js";
import { sshAlias, storeUri, type Builder } from "../core/builder.js";
import { formatCostShort, formatWorkerCost, type WorkerCost } from "../core/cost.js";
import { configError, ExitCode, isNixpoolError, NixpoolError } from "../core/errors.js";
import { LABELS, MANAGED_SELECTOR, parseDuration, type LeaseHolder } from "../core/lease.js";
import { renderMachinesLine } from "../core/machines.js";
import { redactForTerminal } from "../core/redact.js";
import type { RetryEvent } from "../providers/hetzner/client.js";
import {
  createLease,
  destroyWorker,
  findRecord,
  openSession,
  provisionWorker,
  readRecords,
  reapQuietly,
  reapWorkers,
  recordCost,
  saveRecord,
  startLeaseRenewal,
  workerBuilder,
  writeWorkerSshFiles,
  type HetznerSession,
  type Log,
  type WorkerRecord,
  type WorkerRequest,
} from "../providers/hetzner/workers.js";

interface RentFlags {
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
}

const DEFAULTS = { location: "fsn1", image: "debian-12", minCores: 2, minMemory: 2 };

function positive(flag: string, v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  return parseNumberFlag(flag, v, { positive: true, example: `nixpool worker up ${flag} 4` });
}

/** Turns flags (and NIXPOOL_HCLOUD_LOCATION/IMAGE) into a worker request. */
export function parseWorkerRequest(
  f: RentFlags,
  env: Record<string, string | undefined>,
  holder: LeaseHolder,
  defaultTtl: string,
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
        hint: "Use either --type cx22, or --min-cores 4 --min-memory 8 (which implies --type auto).",
      },
    );
  }
  return {
    type,
    requirements: {
      minCores: positive("--min-cores", f.minCores, DEFAULTS.minCores),
      minMemory: positive("--min-memory", f.minMemory, DEFAULTS.minMemory),
    },
    location: f.location ?? env["NIXPOOL_HCLOUD_LOCATION"] ?? DEFAULTS.location,
    image: f.image ?? env["NIXPOOL_HCLOUD_IMAGE"] ?? DEFAULTS.image,
    ttlMs: parseDuration(f.ttl ?? env["NIXPOOL_HCLOUD_TTL"] ?? defaultTtl),
    holder,
    bootTimeoutMs: parseDuration(
      f.bootTimeout ?? env["NIXPOOL_HCLOUD_BOOT_TIMEOUT"] ?? "10m",
      "--boot-timeout",
    ),
  };
}

/** Adds the options that say what to rent. */
function rentOptions(cmd: Command, ttl: string): Command {
  return cmd
    .option("--provider <provider>", "where to rent (hetzner)", "hetzner")
    .option("--type <type>", "server type, or auto: the cheapest that fits (default auto)")
    .option("--min-cores <n>", `with --type auto: at least N cores (default ${DEFAULTS.minCores})`)
    .option("--min-memory <gb>", `with --type auto: at least G GB memory (default ${DEFAULTS.minMemory})`)
    .option("--location <loc>", `location (default $NIXPOOL_HCLOUD_LOCATION or ${DEFAULTS.location})`)
    .option("--image <image>", `image (default $NIXPOOL_HCLOUD_IMAGE or ${DEFAULTS.image})`)
    .option(
      "--ttl <duration>",
      `lease: the reaper deletes the server after this (default $NIXPOOL_HCLOUD_TTL or ${ttl}; renewed while a build or shell runs)`,
    )
    .option(
      "--boot-timeout <duration>",
      "time allowed for create, boot, SSH and Nix (default $NIXPOOL_HCLOUD_BOOT_TIMEOUT or 10m)",
    )
    .option("--token-file <file>", "file holding the Hetzner Cloud API token (default $HCLOUD_TOKEN)");
}

/** Progress and warnings go to stderr, redacted (they may quote API errors). */
function logFor(ctx: Context): Log {
  return (line) => ctx.output.err(redactForTerminal(line));
}

/** True while `worker shell` runs its interactive shell. */
let shellInForeground = false;

/**
 * Keeps the process alive through signals so the worker is always deleted: the first of
 * `signals` aborts `controller`, later ones are ignored.
 */
function trapWorkerSignals(
  controller: AbortController,
  log: Log,
  signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM"],
): () => void {
  return trapSignals(controller, {
    signals,
    // Ctrl-C at the prompt of `worker shell` belongs to the shell.
    ignore: (sig) => sig === "SIGINT" && shellInForeground,
    onFirst: (sig) =>
      log(`${sig}: stopping; the worker is being deleted (nixpool worker gc cleans up if this is killed)`),
  });
}

/** A session whose retries are shown as progress lines. */
function openLoggedSession(ctx: Context, f: { tokenFile?: string }, log: Log, signal?: AbortSignal) {
  return openSession({
    stateDir: ctx.stateDir,
    env: process.env,
    tokenFile: f.tokenFile,
    ...(signal ? { signal } : {}),
    onRetry: (e: RetryEvent) =>
      log(`hetzner: ${e.request} → ${e.reason}; retry ${e.attempt} in ${(e.delayMs / 1000).toFixed(1)} s`),
  });
}

/** Two sessions: one that an interruption aborts, and one for teardown that it must not. */
async function openSessions(ctx: Context, f: RentFlags, signal: AbortSignal, log: Log) {
  const live = await openLoggedSession(ctx, f, log, signal);
  const teardown = await openLoggedSession(ctx, f, log);
  return { live, teardown };
}

function summarise(rec: WorkerRecord, now = Date.now()) {
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
  worker: ReturnType<typeof summarise>;
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
  ctx: Context,
  f: RentFlags,
  defaultTtl: string,
  controller: AbortController,
  log: Log,
) {
  const holder: LeaseHolder = { kind: "process", pid: process.pid, host: hostname() };
  const req = parseWorkerRequest(f, process.env, holder, defaultTtl);
  const { live, teardown } = await openSessions(ctx, f, controller.signal, log);
  await reapQuietly(live, log);
  const rec = await createLease(live, req, log);
  try {
    await provisionWorker(
      live,
      rec,
      { ...(req.bootTimeoutMs ? { bootTimeoutMs: req.bootTimeoutMs } : {}), signal: controller.signal },
      log,
    );
  } catch (e) {
    await deleteWorker(teardown, rec, log, e);
    throw interruptedOr(e, controller.signal);
  }
  return { rec, req, live, teardown };
}

/**
 * Rents one worker, runs `fn` with it as the only builder, and deletes it — on success,
 * failure, SIGINT and SIGTERM — then prints the cost line. With `keep`, a worker that was not
 * interrupted stays until its lease expires (debugging a failed build, say).
 */
export async function withRentedWorker<T>(
  ctx: Context,
  f: RentFlags,
  fn: (builders: Builder[], signal: AbortSignal, rec: WorkerRecord) => Promise<T>,
  o: { defaultTtl: string; trap?: NodeJS.Signals[] },
): Promise<RentedRun<T>> {
  const log = logFor(ctx);
  const controller = new AbortController();
  const untrap = trapWorkerSignals(controller, log, o.trap);
  try {
    const { rec, req, live, teardown } = await rentWorker(ctx, f, o.defaultTtl, controller, log);
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
      await keepWorker(ctx.stateDir, rec, log);
      cost = recordCost(rec, Date.now());
    } else {
      cost = await deleteWorker(teardown, rec, log, outcome.ok ? undefined : outcome.error);
    }
    if (!outcome.ok) throw interruptedOr(outcome.error, controller.signal);
    return { result: outcome.value, worker: summarise(rec), cost };
  } finally {
    untrap();
  }
}

/** Parses `--on hetzner[:TYPE]` for nixpool build. */
export function parseOn(on: string): RentFlags {
  const m = /^hetzner(?::([a-z0-9-]+))?$/.exec(on);
  if (!m) {
    throw configError("BUILD_ON_INVALID", `--on "${on}" is not a place to build.`, {
      hint: "Use --on hetzner (cheapest fitting type) or --on hetzner:cx32.",
    });
  }
  return m[1] ? { type: m[1] } : {};
}

/** For nixpool build --on hetzner[:TYPE]: rent, build with `exec`, copy back, delete, print the cost. */
export function buildOnWorker<T>(
  ctx: Context,
  on: string,
  exec: (builders: Builder[], signal: AbortSignal) => Promise<T>,
): Promise<RentedRun<T>> {
  return withRentedWorker(ctx, parseOn(on), (builders, signal) => exec(builders, signal), {
    defaultTtl: "6h",
  });
}

async function withSession<T>(
  ctx: Context,
  f: { tokenFile?: string },
  fn: (s: HetznerSession, log: Log) => Promise<T>,
) {
  const log = logFor(ctx);
  return fn(await openLoggedSession(ctx, f, log), log);
}

/** nixpool worker up/list/down/gc/shell: temporary cloud builders that never leak. */
export const registerWorker: RegisterCommands = (program, context) => {
  const worker = program.command("worker").description("rent temporary cloud builders (Hetzner Cloud)");

  rentOptions(worker.command("up").description("rent a worker and add it to the pool's builders"), "2h")
    .option("--keep", "the default for worker up: it stays until worker down or its lease expires")
    .option("--json", "print JSON")
    .action(async (f: RentFlags) => {
      const ctx = context();
      const log = logFor(ctx);
      const controller = new AbortController();
      const untrap = trapWorkerSignals(controller, log);
      try {
        // Held by this process while it provisions (a kill -9 here is reaped), then by the user.
        const { rec } = await rentWorker(ctx, f, "2h", controller, log);
        await keepWorker(ctx.stateDir, rec, log);
        if (f.json) return ctx.output.json({ worker: summarise(rec) });
        ctx.output.out(rec.lease.name);
      } finally {
        untrap();
      }
    });

  worker
    .command("list")
    .description("list workers with status, lease expiry and cost so far")
    .option("--all", "list every nixpool server of the project (any owner), from the API")
    .option("--token-file <file>", "file holding the Hetzner Cloud API token")
    .option("--json", "print JSON")
    .action(async (f: { all?: boolean; tokenFile?: string; json?: boolean }) => {
      const ctx = context();
      const log = logFor(ctx);
      // Without a token the local records are still worth showing; the reaper needs the API.
      const session = await openLoggedSession(ctx, f, log).catch((e: unknown) => {
        if (f.all || !(isNixpoolError(e) && e.code === "HCLOUD_TOKEN_MISSING")) throw e;
        log("warning: no Hetzner Cloud token; showing local records only, without gc.");
        return undefined;
      });
      if (session) await reapQuietly(session, log);
      if (f.all && session) {
        const servers = (await session.client.listServers({ labelSelector: MANAGED_SELECTOR })).map((x) => ({
          name: x.name,
          id: x.id,
          status: x.status,
          type: x.server_type.name,
          location: x.location.name,
          address: x.public_net.ipv4?.ip ?? null,
          owner:
            x.labels[LABELS.owner] === session.owner ? "this state dir" : (x.labels[LABELS.owner] ?? "?"),
          expiresAt: Number.isFinite(Number(x.labels[LABELS.expires]))
            ? new Date(Number(x.labels[LABELS.expires]) * 1000).toISOString()
            : null,
        }));
        if (f.json) return ctx.output.json({ servers });
        if (servers.length === 0) return ctx.output.out("No nixpool servers in this project.");
        return ctx.output.out(
          renderTable(
            ["SERVER", "ID", "STATUS", "TYPE", "LOCATION", "ADDRESS", "OWNER", "EXPIRES"],
            servers.map((x) => [
              x.name,
              String(x.id),
              x.status,
              x.type,
              x.location,
              x.address ?? "-",
              x.owner,
              x.expiresAt ?? "-",
            ]),
          ),
        );
      }
      const now = Date.now();
      const records = await readRecords(ctx.stateDir, log);
      if (f.json) return ctx.output.json({ workers: records.map((r) => summarise(r, now)) });
      if (records.length === 0) return ctx.output.out("No workers. Rent one with: nixpool worker up");
      ctx.output.out(
        renderTable(
          ["NAME", "STATUS", "TYPE", "LOCATION", "ADDRESS", "EXPIRES", "COST SO FAR"],
          records.map((r) => [
            r.lease.name,
            r.status,
            r.type,
            r.location,
            r.ipv4 ?? "-",
            r.lease.expiresAt,
            formatCostShort(recordCost(r, now)),
          ]),
        ),
      );
    });

  worker
    .command("down")
    .description("delete a worker and print what it cost")
    .argument("<name>", "worker name (hz-…), server name or lease id")
    .option("--token-file <file>", "file holding the Hetzner Cloud API token")
    .option("--json", "print JSON")
    .action(async (name: string, f: { tokenFile?: string; json?: boolean }) => {
      const ctx = context();
      await withSession(ctx, f, async (s, log) => {
        const rec = findRecord(await readRecords(ctx.stateDir, log), name);
        if (!rec) {
          await reapQuietly(s, log);
          throw configError("WORKER_UNKNOWN", `No worker is named "${name}".`, {
            hint: "List them with: nixpool worker list",
          });
        }
        const cost = await destroyWorker(s, rec, log);
        await reapQuietly(s, log);
        const line = `worker ${rec.lease.name} deleted; ${formatWorkerCost(cost, rec.type, rec.location)}`;
        if (f.json) return ctx.output.json({ deleted: rec.lease.name, cost });
        ctx.output.out(line);
      });
    });

  worker
    .command("gc")
    .description("delete servers whose lease expired or whose owner record or process is gone")
    .option("--token-file <file>", "file holding the Hetzner Cloud API token")
    .option("--json", "print JSON")
    .action(async (f: { tokenFile?: string; json?: boolean }) => {
      const ctx = context();
      await withSession(ctx, f, async (s, log) => {
        const r = await reapWorkers(s, log);
        if (f.json) return ctx.output.json(r);
        ctx.output.out(
          r.deleted.length === 0 && r.droppedLeases.length === 0
            ? "Nothing to collect."
            : `Deleted ${r.deleted.length} server(s), dropped ${r.droppedLeases.length} stale record(s), ${r.deletedSshKeys} temporary SSH key(s).`,
        );
      });
    });

  rentOptions(
    worker
      .command("shell")
      .description("rent a worker and open a shell set up to build on it; leaving the shell deletes it"),
    "2h",
  )
    .option(
      "--keep",
      "keep the worker after the shell exits, until its lease expires (not after SIGTERM/SIGHUP)",
    )
    .option("-c, --command <command>", "run this bash command instead of an interactive shell")
    .action(async (f: RentFlags & { command?: string }) => {
      const ctx = context();
      // Ctrl-C aborts the rental until the interactive shell starts, then belongs to the shell;
      // SIGTERM and SIGHUP end both.
      const { result } = await withRentedWorker(
        ctx,
        f,
        async (builders, signal, rec) => {
          const b = builders[0] as Builder;
          const files = await writeWorkerSshFiles(ctx.stateDir, rec);
          const rc = join(ctx.stateDir, "hetzner", "workers", rec.lease.id, "shellrc");
          await writeFileAtomic(rc, renderShellRc());
          const env = {
            NIXPOOL_WORKER: b.name,
            NIXPOOL_WORKER_ADDRESS: b.host,
            NIXPOOL_WORKER_SSH: `ssh -F ${files.sshConfig} ${sshAlias(b)}`,
            NIXPOOL_WORKER_STORE: storeUri(b),
            NIXPOOL_WORKER_MACHINES: renderMachinesLine(b),
            NIX_SSHOPTS: `-F ${files.sshConfig}`,
            BASH_ENV: rc,
          };
          const argv = f.command !== undefined ? ["bash", "-c", f.command] : ["bash", "--rcfile", rc, "-i"];
          shellInForeground = f.command === undefined;
          try {
            return await runInteractive(argv, { env, signal });
          } finally {
            shellInForeground = false;
          }
        },
        { defaultTtl: "2h", trap: ["SIGINT", "SIGTERM", "SIGHUP"] },
      );
      if (result !== 0) process.exitCode = result;
    });
};

/** The shell's rc: the user's own bashrc, a prompt marker and nix_on_worker. */
export function renderShellRc(): string {
  return [
    "# Generated by nixpool worker shell.",
    '[ -n "$PS1" ] && [ -f "$HOME/.bashrc" ] && . "$HOME/.bashrc"',
    "# Build with the worker as the only builder: nix_on_worker FILE.nix [nix-build options]",
    'nix_on_worker() { nix-build --max-jobs 0 --builders "$NIXPOOL_WORKER_MACHINES" --option substituters "" "$@"; }',
    '[ -n "$PS1" ] && PS1="[nixpool $NIXPOOL_WORKER] $PS1"',
    '[ -n "$PS1" ] && echo "Worker $NIXPOOL_WORKER at $NIXPOOL_WORKER_ADDRESS: \\$NIXPOOL_WORKER_SSH, \\$NIXPOOL_WORKER_STORE, nix_on_worker FILE.nix. Exit to delete it."',
    "",
  ].join("\n");
}
