import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { Builder } from "../core/builder.js";
import { configError, NixpoolError } from "../core/errors.js";
import {
  findOverriddenSettings,
  isForeignMachinesFile,
  planSystemConfig,
  sshConfigIncludesDropIns,
  SYSTEM_PATHS,
} from "../core/nix-conf.js";
import { readFileIfExists, writeFileAtomic } from "./fs.js";

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

/**
 * Writes the system configuration for `builders` under root (`nixpool config apply`): checks
 * first, then writes only what changed, keeping backups. The caller loads the builders, which
 * validates the inventory: nothing is written when it is wrong.
 */
export async function applySystemConfig(builders: Builder[], options: ApplyOptions): Promise<ApplyReport> {
  const root = resolve(options.root ?? "/");
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
