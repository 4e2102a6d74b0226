import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { collectArg } from "../cli/nix-args.js";
import { formatSeconds, renderTable } from "../cli/output.js";
import { buildTrustPolicy } from "../cli/trust-options.js";
import { trapSignals } from "../adapters/signals.js";
import { writeClientFiles } from "../adapters/nix-build.js";
import type { NixArg } from "../adapters/nix-build.js";
import {
  parseAction,
  parseActivateProgram,
  parseBuildHost,
  parseConfirmTimeout,
  parseParallel,
} from "../core/deploy/deploy-options.js";
import { deployExitCode, summaryRows, type TargetOutcome } from "../core/deploy/deploy-outcome.js";
import type { Generation } from "../core/deploy/generations.js";
import { ExitCode, NixpoolError } from "../core/errors.js";
import { buildSystem } from "../deploy/system-build.js";
import { deploySystem, linkTargets, listGenerations, rollbackTargets } from "../deploy/run-deploy.js";

interface DeployFlags {
  attr?: string;
  arg?: NixArg[];
  argstr?: NixArg[];
  target: string[];
  buildHost?: string;
  action?: string;
  activate?: string;
  confirmTimeout?: string;
  parallel?: string;
  rollback?: boolean;
  generations?: boolean;
  json?: boolean;
  quiet?: boolean;
}

const usage = (message: string, hint: string) =>
  new NixpoolError("USAGE", message, { hint, exitCode: ExitCode.usage });

function collectName(value: string, acc: string[]): string[] {
  return [...acc, value];
}

/** The summary: a table on stdout, then each failed target's error and hint on stderr. */
function printOutcomes(ctx: Context, outcomes: readonly TargetOutcome[], json: boolean): void {
  const exitCode = deployExitCode(outcomes);
  process.exitCode = exitCode;
  if (json) {
    ctx.output.json({ targets: outcomes, exitCode });
    return;
  }
  ctx.output.out(
    renderTable(["TARGET", "RESULT", "GENERATION", "TIME", "DETAIL"], summaryRows(outcomes, formatSeconds)),
  );
  for (const o of outcomes) {
    if (!o.error) continue;
    ctx.output.err(`error: ${o.error.message}`);
    if (o.error.hint) ctx.output.err(`hint: ${o.error.hint}`);
  }
}

function renderGenerations(name: string, gens: readonly Generation[]): string {
  if (gens.length === 0) return `Target ${name}: the profile has no generations yet.`;
  const rows = gens.map((g) => [
    String(g.number),
    new Date(g.createdAt * 1000).toISOString().replace("T", " ").slice(0, 19),
    g.current ? "current" : "",
    g.path,
  ]);
  return `${name}:\n${renderTable(["GENERATION", "DATE (UTC)", "", "SYSTEM"], rows)}`;
}

/** nixpool deploy FILE.nix --target NAME…: build on the pool, copy, activate, never half-activated. */
export const registerDeploy: RegisterCommands = (program, context) => {
  program
    .command("deploy")
    .description("build a system on the pool and activate it on targets, rolling back on failure")
    .argument("[file]", "Nix file whose result (or -A attribute) is the system to deploy")
    .option("-A, --attr <attr>", "attribute to build")
    .option("--arg <name=expr>", "pass a Nix expression argument (also: --arg NAME EXPR)", collectArg("arg"))
    .option(
      "--argstr <name=value>",
      "pass a string argument (also: --argstr NAME VALUE)",
      collectArg("argstr"),
    )
    .option("--target <name>", "deploy to this target or builder (repeatable)", collectName, [])
    .option("--build-host <host>", "where to build: a builder's name, auto (the pool; default) or local")
    .option("--action <action>", "switch (default), boot, test or dry-activate")
    .option(
      "--activate <program>",
      "run this program (inside the system, or absolute) instead of bin/switch-to-configuration",
    )
    .option(
      "--confirm-timeout <duration>",
      "reach the target again within this long after activation, else it rolls back (default 30s)",
    )
    .option("--parallel <n>", "targets deployed at once (default 4)")
    .option("--rollback", "activate the generation before the current one")
    .option("--generations", "list the targets' generations")
    .option("--json", "print JSON")
    .option("--quiet", "no progress lines")
    .action(async (file: string | undefined, opts: DeployFlags) => {
      const ctx = context();
      if (opts.target.length === 0)
        throw usage(
          "nixpool deploy needs at least one --target.",
          "For example: nixpool deploy system.nix --target web",
        );
      const modes = [file !== undefined, opts.rollback === true, opts.generations === true].filter(
        Boolean,
      ).length;
      if (modes !== 1)
        throw usage(
          "nixpool deploy takes a Nix file, or --rollback, or --generations (exactly one).",
          "For example: nixpool deploy system.nix --target web, or: nixpool deploy --rollback --target web",
        );
      const targets = await ctx.selectTargets([...new Set(opts.target)]);
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      try {
        if (opts.generations) {
          const links = await linkTargets(ctx.stateDir, targets);
          const all = await Promise.all(
            targets.map(async (t, i) => ({
              target: t.name,
              profile: t.profile,
              generations: await listGenerations(
                links[i] as (typeof links)[number],
                t.profile,
                controller.signal,
              ),
            })),
          );
          if (opts.json) ctx.output.json({ targets: all });
          else ctx.output.out(all.map((x) => renderGenerations(x.target, x.generations)).join("\n\n"));
          return;
        }
        const options = {
          stateDir: ctx.stateDir,
          action: parseAction(opts.action),
          program: parseActivateProgram(opts.activate),
          confirmMs: parseConfirmTimeout(opts.confirmTimeout),
          parallel: parseParallel(opts.parallel),
          signal: controller.signal,
          ...(opts.quiet || opts.json
            ? {}
            : { onProgress: (t: string, step: string) => ctx.output.err(`${t}: ${step}`) }),
        };
        if (opts.rollback) {
          printOutcomes(ctx, await rollbackTargets(targets, options), opts.json === true);
          return;
        }
        const buildHost = parseBuildHost(opts.buildHost);
        const builders =
          buildHost.kind === "builder"
            ? await ctx.selectBuilders([buildHost.name])
            : buildHost.kind === "auto"
              ? await ctx.builders()
              : [];
        const pinned = builders.filter((b) => b.hostKey);
        const sshConfig = pinned.length
          ? (await writeClientFiles(ctx.stateDir, pinned)).sshConfig
          : undefined;
        options.onProgress?.(
          "*",
          `building ${file ?? ""}${opts.attr ? ` -A ${opts.attr}` : ""}${buildHost.kind === "builder" ? ` on ${buildHost.name}` : buildHost.kind === "local" ? " on this machine" : " on the pool"}`,
        );
        const system = await buildSystem({
          buildHost,
          builders,
          stateDir: ctx.stateDir,
          file: file as string,
          attr: opts.attr,
          args: [...(opts.arg ?? []), ...(opts.argstr ?? [])],
          signal: controller.signal,
          // Trusted-only derivations and untrusted results as for nixpool build (no --verify here).
          trust: buildTrustPolicy((await ctx.loadInventory()).policy, {}),
        });
        options.onProgress?.(
          "*",
          `built ${system.path} ${system.place.kind === "local" ? "(in this machine's store)" : `(on ${system.place.builder.name})`} in ${formatSeconds(system.buildMs)}`,
        );
        printOutcomes(
          ctx,
          await deploySystem(system, targets, { ...options, builderSshConfig: sshConfig }),
          opts.json === true,
        );
      } finally {
        untrap();
      }
    });
};
