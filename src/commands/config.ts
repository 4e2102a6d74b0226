import type { Command } from "commander";
import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { renderTable } from "../cli/output.js";
import {
  applySystemConfig,
  type AppliedFile,
  type ApplyOptions,
  type ApplyReport,
} from "../adapters/system-config.js";
import { renderMachinesFile } from "../core/machines.js";
import { renderKnownHosts, renderSshConfig } from "../core/ssh-config.js";
import { renderNixosModule } from "../core/nixos.js";
import { renderNixConfFragment, SYSTEM_PATHS } from "../core/nix-conf.js";

function printApplyReport(ctx: Context, report: ApplyReport, json: boolean): void {
  if (json) {
    ctx.output.json(report);
    return;
  }
  const verb = (s: AppliedFile["status"]) => (report.dryRun && s !== "unchanged" ? `would be ${s}` : s);
  ctx.output.out(
    renderTable(
      ["FILE", "STATUS", "BACKUP"],
      report.files.map((f) => [f.written, verb(f.status), f.backup ?? "-"]),
    ),
  );
  for (const w of report.warnings) ctx.output.err(`warning: ${w}`);
}

/** nixpool config machines|ssh|known-hosts|nix-conf|nixos|apply */
export const registerConfig: RegisterCommands = (program, context) => {
  const config: Command = program
    .command("config")
    .description("render the pool as Nix and OpenSSH configuration, or apply it to this system");

  config
    .command("machines")
    .description("print the machines file (8 fields per builder, '-' for defaults)")
    .option("--direct", "name builders on port 22 by user@host instead of their ssh_config alias")
    .action(async (opts: { direct?: boolean }) => {
      const ctx = context();
      const builders = await ctx.builders();
      if (opts.direct) {
        ctx.output.out(renderMachinesFile(builders, { uriStyle: "direct" }));
        return;
      }
      // Through the aliases ssh checks the pinned keys only: an unpinned builder is unusable.
      for (const b of builders.filter((x) => !x.hostKey)) {
        ctx.output.err(
          `warning: builder ${b.name} has no pinned host key and is left out (ssh would refuse it); pin it with hostKey, or use --direct to rely on your own known_hosts.`,
        );
      }
      ctx.output.out(renderMachinesFile(builders.filter((b) => b.hostKey)));
    });

  config
    .command("ssh")
    .description("print the ssh_config: one Host alias per builder, with port, user, key and pinned host key")
    .option(
      "--known-hosts-file <path>",
      "known_hosts file the aliases check against",
      SYSTEM_PATHS.knownHosts,
    )
    .action(async (opts: { knownHostsFile: string }) => {
      const ctx = context();
      const builders = await ctx.builders();
      ctx.output.out(renderSshConfig(builders, { knownHostsFile: opts.knownHostsFile }));
    });

  config
    .command("known-hosts")
    .description("print the known_hosts lines pinning each builder's host key")
    .action(async () => {
      const ctx = context();
      ctx.output.out(renderKnownHosts(await ctx.builders()));
    });

  config
    .command("nix-conf")
    .description("print the nix.conf fragment (builders = @machines file, builders-use-substitutes)")
    .option("--machines-file <path>", "machines file path for builders = @PATH", SYSTEM_PATHS.machines)
    .action((opts: { machinesFile: string }) => {
      context().output.out(renderNixConfFragment({ machinesFile: opts.machinesFile }));
    });

  config
    .command("nixos")
    .description("print a NixOS module: nix.buildMachines, programs.ssh.knownHosts and ssh aliases")
    .action(async () => {
      const ctx = context();
      ctx.output.out(renderNixosModule(await ctx.builders()));
    });

  config
    .command("apply")
    .description(
      "write the machines file, ssh_config, known_hosts and nix.conf where Nix and the daemon read them",
    )
    .option("--root <dir>", "write under this directory instead of / (paths inside stay the system's)")
    .option("--dry-run", "report what would change; write nothing")
    .option("--force", "replace a machines file nixpool did not write (a backup is kept)")
    .option("--json", "print JSON")
    .action(async (opts: ApplyOptions) => {
      const ctx = context();
      const report = await applySystemConfig(await ctx.builders(), opts);
      printApplyReport(ctx, report, opts.json ?? false);
    });
};
