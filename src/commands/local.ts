import type { RegisterCommands } from "../cli/commands.js";
import { renderTable } from "../cli/output.js";
import { ExitCode } from "../core/errors.js";
import { parseNumberFlag } from "../core/number-flag.js";
import { poolDown, poolHealth, poolUp } from "../providers/local/pool.js";
import { readPool } from "../providers/local/records.js";
import { findOrphanHosts, requireRoot, stopHost } from "../providers/local/host.js";

/** nixpool local up|status|down: real builder hosts on this machine. */
export const registerLocal: RegisterCommands = (program, context) => {
  const local = program.command("local").description("a pool of real builder hosts on this machine (root)");

  local
    .command("up")
    .description("start N builder hosts, each with its own store, sshd, host key and address")
    .option("--builders <n>", "number of builder hosts", "2")
    .option("--jobs <j>", "build slots (max-jobs) per host", "2")
    .option("--json", "print JSON")
    .action(async (opts: { builders: string; jobs: string; json?: boolean }) => {
      const ctx = context();
      const pool = await poolUp(ctx.stateDir, {
        builders: parseNumberFlag("--builders", opts.builders, {
          integer: true,
          min: 1,
          max: 64,
          example: "nixpool local up --builders 2",
        }),
        jobs: parseNumberFlag("--jobs", opts.jobs, {
          integer: true,
          min: 1,
          max: 256,
          example: "nixpool local up --jobs 2",
        }),
      });
      if (opts.json) return ctx.output.json({ pool });
      ctx.output.out(
        `Local pool up: ${pool.hosts.length} builders × ${pool.jobs} jobs (state: ${ctx.stateDir}).\n` +
          renderTable(
            ["NAME", "ADDRESS", "HOST KEY"],
            pool.hosts.map((h) => [h.name, `${h.address}:22`, h.hostKeyPub]),
          ) +
          "\nNext: nixpool build examples/graph.nix",
      );
    });

  local
    .command("status")
    .description("show the pool's hosts and whether each sshd runs")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const ctx = context();
      const pool = await readPool(ctx.stateDir);
      if (!pool) {
        if (opts.json) return ctx.output.json({ up: false, hosts: [] });
        ctx.output.out(`No local pool is up in ${ctx.stateDir}. Start one with: nixpool local up`);
        return;
      }
      const health = poolHealth(pool);
      if (opts.json) {
        return ctx.output.json({
          up: true,
          jobs: pool.jobs,
          createdAt: pool.createdAt,
          hosts: pool.hosts.map((h, i) => ({
            name: h.name,
            address: h.address,
            netns: h.netns,
            sshdPid: h.sshdPid,
            running: health[i]?.running ?? false,
            hostKey: h.hostKeyPub,
          })),
        });
      }
      ctx.output.out(
        renderTable(
          ["NAME", "ADDRESS", "NETNS", "SSHD PID", "STATE"],
          pool.hosts.map((h, i) => [
            h.name,
            `${h.address}:22`,
            h.netns,
            String(h.sshdPid),
            health[i]?.running ? "running" : "STOPPED",
          ]),
        ),
      );
      if (health.some((h) => !h.running)) {
        process.exitCode = ExitCode.partial;
        ctx.output.err(
          "Some builder hosts are not running; restart the pool: nixpool local down && nixpool local up",
        );
      }
    });

  local
    .command("gc")
    .description("stop builder hosts whose state directory is gone (deleted by hand, or a crashed start)")
    .option("--dry-run", "only list them")
    .option("--json", "print JSON")
    .action(async (opts: { dryRun?: boolean; json?: boolean }) => {
      const ctx = context();
      requireRoot();
      const orphans = await findOrphanHosts();
      if (!opts.dryRun) {
        for (const o of orphans) await stopHost({ netns: o.netns, slot: o.slot, dir: "", sshdPid: 0 });
      }
      if (opts.json) return ctx.output.json({ dryRun: Boolean(opts.dryRun), orphans });
      if (orphans.length === 0) return ctx.output.out("No orphaned builder hosts.");
      ctx.output.out(
        renderTable(
          ["NETNS", "PIDS", "STATE DIRECTORY (gone)"],
          orphans.map((o) => [o.netns, o.pids.join(",") || "-", o.dir ?? "-"]),
        ) +
          (opts.dryRun
            ? "\nRemove them with: nixpool local gc"
            : `\nStopped ${orphans.length} orphaned builder hosts.`),
      );
    });

  local
    .command("down")
    .description("stop the pool's processes and remove its namespaces and state")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const ctx = context();
      const { stopped } = await poolDown(ctx.stateDir);
      if (opts.json) return ctx.output.json({ stopped });
      ctx.output.out(stopped ? `Stopped ${stopped} builder hosts.` : "No local pool was up.");
    });
};
