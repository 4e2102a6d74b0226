import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Command } from "commander";
import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { renderTable } from "../cli/output.js";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { configError, NixpoolError } from "../core/errors.js";
import { renderMachinesFile } from "../core/machines.js";
import { renderKnownHosts, renderSshConfig } from "../core/ssh-config.js";
import { renderNixosModule } from "../core/nixos.js";
import {
  findOverriddenSettings,
  isForeignMachinesFile,
  planSystemConfig,
  renderNixConfFragment,
  sshConfigIncludesDropIns,
  SYSTEM_PATHS,
} from "../core/nix-conf.js";

export interface ApplyOptions {
  root?: string;
  dryRun?: boolean;
  json?: boolean;
  force?: boolean;
}

export interface AppliedFile {
  role: string;
  /** The path on the target system. */
  path: string;
  /** Where it was written (root + path). */
  written: string;
  status: "created" | "changed" | "unchanged";
  /** The previous content's copy (PATH.nixpool-backup), when this run replaced a file. */
  backup: string | null;
}

export interface ApplyReport {
  root: string;
  dryRun: boolean;
  files: AppliedFile[];
  warnings: string[];
}

/** Writes the system configuration under root: validates first, then writes only what changed. */
export async function applySystemConfig(ctx: Context, options: ApplyOptions): Promise<ApplyReport> {
  const root = resolve(options.root ?? "/");
  // Loading the builders validates the inventory: nothing is written when it is wrong.
  const builders = await ctx.builders();
  const under = (p: string) => join(root, p);
  const warnings: string[] = [];

  const machinesNow = await readFileIfExists(under(SYSTEM_PATHS.machines));
  if (machinesNow !== undefined && isForeignMachinesFile(machinesNow) && !options.force) {
    throw configError(
      "MACHINES_FILE_FOREIGN",
      `${under(SYSTEM_PATHS.machines)} holds builders nixpool did not write; applying would replace them.`,
      {
        hint: `Import them first: nixpool import ${under(SYSTEM_PATHS.machines)} --merge, then run nixpool config apply --force (a backup is kept).`,
      },
    );
  }
  const nixConf = await readFileIfExists(under(SYSTEM_PATHS.nixConf));
  const plan = planSystemConfig({ builders, nixConf });

  const files: AppliedFile[] = [];
  for (const f of plan) {
    const target = under(f.path);
    const old = f.path === SYSTEM_PATHS.nixConf ? nixConf : await readFileIfExists(target);
    const status = old === undefined ? "created" : old === f.content ? "unchanged" : "changed";
    let backup: string | null = null;
    if (!options.dryRun && status !== "unchanged") {
      // Keep the mode of an existing nix.conf (some installs make it 0600 or group-readable).
      const mode = old !== undefined ? (await stat(target)).mode & 0o777 : f.mode;
      try {
        backup = (await writeFileAtomic(target, f.content, { mode, backup: true })).backup ?? null;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        throw new NixpoolError("CONFIG_WRITE_FAILED", `Cannot write ${target}: ${code ?? String(e)}.`, {
          cause: e,
          ...(code === "EACCES" || code === "EPERM" || code === "EROFS"
            ? { hint: "Run as root (the Nix daemon reads these files), or write elsewhere with --root DIR." }
            : {}),
          details: { written: files.filter((x) => x.status !== "unchanged").map((x) => x.written) },
        });
      }
    }
    files.push({ role: f.role, path: f.path, written: target, status, backup });
  }

  const finalConf = plan.find((f) => f.role === "nix-conf")?.content ?? "";
  for (const name of findOverriddenSettings(finalConf)) {
    warnings.push(
      `${under(SYSTEM_PATHS.nixConf)} sets ${name} after nixpool's block, which overrides nixpool's value; remove that line.`,
    );
  }
  const sshMain = await readFileIfExists(under(SYSTEM_PATHS.sshMainConfig));
  if (sshMain === undefined || !sshConfigIncludesDropIns(sshMain)) {
    warnings.push(
      `${under(SYSTEM_PATHS.sshMainConfig)} does not include /etc/ssh/ssh_config.d/*.conf, so ssh (and the Nix daemon) will not see the builder aliases; add "Include /etc/ssh/ssh_config.d/*.conf" at its top.`,
    );
  }
  for (const b of builders.filter((x) => !x.hostKey)) {
    warnings.push(
      `builder ${b.name} has no pinned host key and is left out of the machines file (ssh would refuse it); set hostKey in the inventory (ssh-keyscan ${b.host} shows a candidate to verify out of band).`,
    );
  }
  const confChanged = files.some(
    (f) => (f.role === "nix-conf" || f.role === "nix-conf-fragment") && f.status !== "unchanged",
  );
  if (confChanged && root === "/" && existsSync("/nix/var/nix/daemon-socket/socket")) {
    warnings.push(
      "nix.conf changed and a Nix daemon is running: restart it (systemctl restart nix-daemon) so it reads builders-use-substitutes; the machines file itself is read afresh by every build.",
    );
  }
  return { root, dryRun: options.dryRun ?? false, files, warnings };
}

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
      const report = await applySystemConfig(ctx, opts);
      printApplyReport(ctx, report, opts.json ?? false);
    });
};
