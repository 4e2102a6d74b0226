import type { Command } from "commander";
import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { renderTable } from "../cli/output.js";
import { writeFileAtomic } from "../adapters/fs.js";
import { runInteractive } from "../adapters/runner.js";
import { sshAlias, storeUri, type Builder } from "../core/builder.js";
import { formatCostShort, formatMoney, formatWorkerCost } from "../core/cost.js";
import { readDurationFlag } from "../core/duration.js";
import { configError, isNixpoolError } from "../core/errors.js";
import { LABELS, MANAGED_SELECTOR } from "../core/lease.js";
import { renderMachinesLine } from "../core/machines.js";
import { writeWorkerSshFiles } from "../providers/hetzner/provision.js";
import { reapQuietly, reapWorkers } from "../providers/hetzner/reaper.js";
import { describeSnapshot } from "../providers/hetzner/snapshots.js";
import { listPoolSnapshots, type PoolSnapshot } from "../providers/hetzner/snapshot-costs.js";
import { suspendWorker } from "../providers/hetzner/suspend.js";
import { findRecord, readRecords, recordCost, type Log } from "../providers/hetzner/records.js";
import type { HetznerSession } from "../providers/hetzner/session.js";
import { destroyWorker } from "../providers/hetzner/teardown.js";
import {
  logFor,
  openLoggedSession,
  rentKeptWorker,
  RENT_DEFAULTS,
  summariseWorker,
  withRentedWorker,
  type RentFlags,
} from "../providers/hetzner/rent.js";
import { statePaths } from "../config/state-paths.js";

/** Adds the options that say what to rent. */
function rentOptions(cmd: Command, ttl: string): Command {
  return cmd
    .option("--provider <provider>", "where to rent (hetzner)", "hetzner")
    .option("--type <type>", "server type, or auto: the cheapest that fits (default auto)")
    .option("--min-cores <n>", `with --type auto: at least N cores (default ${RENT_DEFAULTS.minCores})`)
    .option(
      "--min-memory <gb>",
      `with --type auto: at least G GB memory (default ${RENT_DEFAULTS.minMemory})`,
    )
    .option("--location <loc>", `location (default $NIXPOOL_HCLOUD_LOCATION or ${RENT_DEFAULTS.location})`)
    .option("--image <image>", `image (default $NIXPOOL_HCLOUD_IMAGE or ${RENT_DEFAULTS.image})`)
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

/** True while `worker shell` runs its interactive shell: Ctrl-C then belongs to the shell. */
let shellInForeground = false;

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
    .option(
      "--from-snapshot [id]",
      "wake it from a snapshot of a suspended worker: its id, or latest (the default)",
    )
    .option("--json", "print JSON")
    .action(async (f: RentFlags) => {
      const ctx = context();
      const rec = await rentKeptWorker(ctx, f, "2h");
      if (f.json) return ctx.output.json({ worker: summariseWorker(rec) });
      ctx.output.out(rec.lease.name);
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
      const snapshots = session ? await listPoolSnapshots(session, log, now) : [];
      if (f.json) {
        return ctx.output.json({
          workers: records.map((r) => summariseWorker(r, now)),
          ...(session ? { snapshots } : {}),
        });
      }
      if (snapshots.length > 0) ctx.output.out(renderSnapshotTable(snapshots));
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
    .description(
      "finish killed suspends; delete servers whose lease expired or whose owner record or process is gone, and snapshots past retention, expired or orphaned",
    )
    .option("--token-file <file>", "file holding the Hetzner Cloud API token")
    .option("--json", "print JSON")
    .action(async (f: { tokenFile?: string; json?: boolean }) => {
      const ctx = context();
      const { hetzner } = await ctx.loadInventory();
      await withSession(ctx, f, async (s, log) => {
        const r = await reapWorkers(s, log, hetzner);
        if (f.json) return ctx.output.json(r);
        ctx.output.out(
          r.deleted.length === 0 &&
            r.droppedLeases.length === 0 &&
            r.deletedSnapshots.length === 0 &&
            r.finishedSuspends.length === 0
            ? "Nothing to collect."
            : `Deleted ${r.deleted.length} server(s), dropped ${r.droppedLeases.length} stale record(s), ${r.deletedSshKeys} temporary SSH key(s), ${r.deletedSnapshots.length} snapshot(s); finished ${r.finishedSuspends.length} suspend(s).`,
        );
      });
    });

  worker
    .command("suspend")
    .description(
      "keep what a worker built in a snapshot and delete its server (wake it with worker up --from-snapshot)",
    )
    .argument("<name>", "worker name (hz-…), server name or lease id")
    .option("--image-timeout <duration>", "time allowed for the snapshot to become available (default 30m)")
    .option("--token-file <file>", "file holding the Hetzner Cloud API token")
    .option("--json", "print JSON")
    .action(async (name: string, f: { tokenFile?: string; json?: boolean; imageTimeout?: string }) => {
      const ctx = context();
      const { hetzner } = await ctx.loadInventory();
      const imageTimeoutMs =
        f.imageTimeout === undefined
          ? undefined
          : readDurationFlag(f.imageTimeout, {
              flag: "--image-timeout",
              bare: "refuse",
              minMs: 1000,
              example: "nixpool worker suspend NAME --image-timeout 1h",
            }).ms;
      await withSession(ctx, f, async (s, log) => {
        const rec = findRecord(await readRecords(ctx.stateDir, log), name);
        if (!rec) {
          throw configError("WORKER_UNKNOWN", `No worker is named "${name}".`, {
            hint: "List them with: nixpool worker list",
          });
        }
        const { image, cost } = await suspendWorker(
          s,
          rec,
          { snapshotTtlMs: hetzner.snapshotTtlMs, ...(imageTimeoutMs ? { imageTimeoutMs } : {}) },
          log,
        );
        await reapQuietly(s, log, hetzner);
        if (f.json)
          return ctx.output.json({ suspended: rec.lease.name, snapshot: describeSnapshot(image), cost });
        ctx.output.out(
          `worker ${rec.lease.name} suspended into snapshot ${image.id} (${image.image_size ?? "?"} GB); server deleted; ${formatWorkerCost(cost, rec.type, rec.location)}`,
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
          const rc = statePaths(ctx.stateDir).hetzner.worker(rec.lease.id).shellRc;
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
        {
          defaultTtl: "2h",
          trap: ["SIGINT", "SIGTERM", "SIGHUP"],
          ignoreSignal: (sig) => sig === "SIGINT" && shellInForeground,
        },
      );
      if (result !== 0) process.exitCode = result;
    });
};

/** The snapshots table of `worker list`: what each holds and what its storage costs (net). */
function renderSnapshotTable(snapshots: readonly PoolSnapshot[]): string {
  return renderTable(
    ["SNAPSHOT", "STATUS", "CREATED", "ARCH", "FROM TYPE", "SIZE", "PER MONTH", "COST SO FAR"],
    snapshots.map((x) => [
      String(x.id),
      x.status,
      x.created,
      x.architecture,
      x.type ?? "-",
      x.imageSizeGb === null ? "-" : `${x.imageSizeGb} GB`,
      `${formatMoney(x.cost.monthly, x.cost.currency)} net`,
      `${formatMoney(x.cost.soFar, x.cost.currency)} net`,
    ]),
  );
}

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
