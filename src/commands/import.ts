import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { renderTable } from "../cli/output.js";
import { readFileIfExists, writeFileAtomic } from "../adapters/fs.js";
import { readMachinesInclude } from "../adapters/machines-file.js";
import { localSystem } from "../config/load.js";
import { formatZodIssues, parseInventory } from "../config/inventory-parse.js";
import { builderSchema } from "../config/schema.js";
import { configError, ExitCode } from "../core/errors.js";
import { renderBuilderTable, renderInventoryToml } from "../core/inventory-render.js";
import { planImport, type ImportedBuilder, type SkippedMachine } from "../core/machines-import-plan.js";
import {
  formatMachinesDiagnostic,
  parseMachinesFile,
  type MachinesDiagnostic,
} from "../core/machines-parse.js";

export interface ImportOptions {
  force?: boolean;
  merge?: boolean;
  print?: boolean;
  json?: boolean;
}

export interface ImportReport {
  source: string;
  inventory: string;
  written: boolean;
  merged: boolean;
  builders: { name: string; host: string; file: string; line: number }[];
  skipped: { uri: string; file: string; line: number; reason: string }[];
  diagnostics: MachinesDiagnostic[];
  /** The inventory text (also what --print prints). */
  toml: string;
}

const sameMachine = (
  a: { host: string; user?: string | undefined; protocol?: string | undefined; port?: number | undefined },
  b: typeof a,
) =>
  a.host === b.host &&
  a.user === b.user &&
  (a.protocol ?? "ssh-ng") === (b.protocol ?? "ssh-ng") &&
  (a.port ?? 22) === (b.port ?? 22);

/**
 * Imports a machines file into the inventory: parses it as Nix 2.8 does, refuses it when
 * Nix would, and writes (or merges) the equivalent nixpool.toml after validating it.
 */
export async function importMachines(
  ctx: Context,
  file: string,
  options: ImportOptions,
): Promise<ImportReport> {
  const source = resolve(file);
  const text = await readFile(source, "utf8").catch((e: NodeJS.ErrnoException) => {
    throw configError(
      "MACHINES_FILE_UNREADABLE",
      `Cannot read machines file ${source}: ${e.code ?? e.message}.`,
      {
        hint: "Give the path of an existing machines file, e.g. nixpool import /etc/nix/machines",
      },
    );
  });
  const parsed = await parseMachinesFile(source, text, { read: readMachinesInclude });
  const errors = parsed.diagnostics.filter((d) => d.severity === "error");
  if (errors.length) {
    const lines = errors.map(formatMachinesDiagnostic);
    throw configError(
      "MACHINES_FILE_INVALID",
      `${source}: Nix 2.8 would refuse this machines file (${errors.length} problem${errors.length > 1 ? "s" : ""}):\n  ${lines.join("\n  ")}`,
      {
        hint: `Fix the lines above in ${source}, then run the import again.`,
        details: { problems: errors },
      },
    );
  }

  const loc = ctx.inventoryLocation();
  if (loc.exists && !options.force && !options.merge && !options.print) {
    throw configError("INVENTORY_EXISTS", `Inventory ${loc.path} already exists.`, {
      hint: `Add the imported builders to it with --merge, replace it with --force (a backup is kept), or see the result first with --print.`,
    });
  }
  const merging = loc.exists && options.merge === true;
  const existingText = merging ? ((await readFileIfExists(loc.path)) ?? "") : "";
  const existing = merging ? parseInventory(existingText, loc.path) : undefined;

  // Names of the local pool's and workers' builders are taken too (a clash would stop every command).
  const otherSources = await ctx.sourceBuilders();
  const plan = planImport(parsed, {
    takenNames: [...Object.keys(existing?.builders ?? {}), ...otherSources.map((b) => b.name)],
    // "-" means this machine's system to Nix; an inventory default system would change that.
    ...(existing?.defaults?.system ? { defaultSystems: [localSystem()] } : {}),
  });

  const accepted: ImportedBuilder[] = [];
  const skipped: SkippedMachine[] = [...plan.skipped];
  for (const b of plan.builders) {
    const dup = Object.entries(existing?.builders ?? {}).find(([, e]) => sameMachine(e, b.entry));
    if (dup) {
      skipped.push({ at: b.at, uri: b.entry.host, reason: `already in ${loc.path} as builder ${dup[0]}` });
      continue;
    }
    const check = builderSchema.safeParse(b.entry);
    if (!check.success) {
      skipped.push({ at: b.at, uri: b.entry.host, reason: formatZodIssues(check.error).join("; ") });
      continue;
    }
    accepted.push(b);
  }
  skipped.sort((a, b) => (a.at.file === b.at.file ? a.at.line - b.at.line : 0));

  const header = [`Imported by nixpool from ${source}; see docs/configuration.md for every field.`];
  const toml = merging
    ? `${existingText}${existingText.endsWith("\n") || existingText === "" ? "" : "\n"}${accepted.length ? "\n" : ""}${accepted.map(renderBuilderTable).join("\n")}`
    : renderInventoryToml(accepted, header);
  // Never write what the loader would refuse.
  parseInventory(toml, loc.path);

  let written = false;
  if (!options.print && (!merging || accepted.length > 0)) {
    await writeFileAtomic(loc.path, toml, { backup: true });
    written = true;
  }
  return {
    source,
    inventory: loc.path,
    written,
    merged: merging,
    builders: accepted.map((b) => ({ name: b.name, host: b.entry.host, file: b.at.file, line: b.at.line })),
    skipped: skipped.map((s) => ({ uri: s.uri, file: s.at.file, line: s.at.line, reason: s.reason })),
    diagnostics: [...parsed.diagnostics, ...plan.diagnostics],
    toml,
  };
}

/** nixpool import FILE [--merge|--force] [--print] [--json] */
export const registerImport: RegisterCommands = (program, context) => {
  program
    .command("import")
    .description("import a Nix machines file (e.g. /etc/nix/machines) into the inventory")
    .argument("<file>", "machines file to read")
    .option("--merge", "add the builders to an existing inventory (keeps its text and comments)")
    .option("--force", "replace an existing inventory (a backup is kept)")
    .option("--print", "print the inventory instead of writing it")
    .option("--json", "print JSON")
    .action(async (file: string, opts: ImportOptions) => {
      const ctx = context();
      const report = await importMachines(ctx, file, opts);
      if (opts.json) {
        const { toml: _toml, ...rest } = report;
        ctx.output.json(opts.print ? report : rest);
      } else {
        for (const d of report.diagnostics) ctx.output.err(formatMachinesDiagnostic(d));
        for (const s of report.skipped)
          ctx.output.err(`${s.file}:${s.line}: unsupported: ${s.uri}: ${s.reason}; not imported`);
        if (opts.print) ctx.output.out(report.toml);
        else {
          if (report.builders.length) {
            ctx.output.out(
              renderTable(
                ["BUILDER", "HOST", "FROM"],
                report.builders.map((b) => [b.name, b.host, `${b.file}:${b.line}`]),
              ),
            );
          }
          ctx.output.out(
            report.written
              ? `${report.merged ? "Added" : "Wrote"} ${report.builders.length} builder${report.builders.length === 1 ? "" : "s"} ${report.merged ? "to" : "in"} ${report.inventory}. Next: nixpool builders`
              : `Nothing imported; ${report.inventory} is unchanged.`,
          );
        }
      }
      if (report.skipped.length) process.exitCode = ExitCode.partial;
    });
};
