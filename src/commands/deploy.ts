import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import {
  addInstallableOptions,
  fileOptionsOf,
  flakeOptionsOf,
  type InstallableFlags,
} from "../cli/nix-args.js";
import { formatSeconds, renderTable } from "../cli/output.js";
import { buildTrustPolicy } from "../cli/trust-options.js";
import { trapSignals } from "../adapters/signals.js";
import { writeClientFiles } from "../adapters/nix-build.js";
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
import { buildSystems } from "../deploy/system-build.js";
import { deploySystem, linkTargets, listGenerations, rollbackTargets } from "../deploy/run-deploy.js";
import { isHostFragment, planDeploySystems } from "../core/deploy/deploy-systems.js";
import { checkInstallFlags, parseInstallRoot } from "../core/deploy/install.js";
import { checkInstallTargets, installSystem } from "../deploy/install.js";
import { readInstallables } from "../dispatch/installables.js";
import { flakeAttrNames } from "../dispatch/evaluate.js";
import type { TargetOutcome as Outcome } from "../core/deploy/deploy-outcome.js";
import type { Installable } from "../core/installable.js";

interface DeployFlags extends InstallableFlags {
  target: string[];
  buildHost?: string;
  action?: string;
  activate?: string;
  confirmTimeout?: string;
  parallel?: string;
  rollback?: boolean;
  generations?: boolean;
  install?: boolean;
  root?: string;
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
  for (const o of outcomes) if (o.next) ctx.output.out(`Next for ${o.target}: ${o.next}.`);
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

/** A system's installable as the user would name it. */
function systemName(i: Installable): string {
  return i.kind === "flake" ? i.shown : `${i.shown}${i.attrs.map((a) => ` -A ${a}`).join("")}`;
}

/**
 * nixpool deploy .#HOST | FILE.nix --target NAME…: build on the pool, copy, activate, never
 * half-activated; with --install, copy to a new host's installer and run nixos-install there.
 */
export const registerDeploy: RegisterCommands = (program, context) => {
  const cmd = program
    .command("deploy")
    .description("build a system on the pool and activate it on targets, rolling back on failure")
    .argument(
      "[installable]",
      "a flake's NixOS configuration (.#host; . gives each --target its own), or a Nix file whose result (or -A attribute) is the system",
    );
  addInstallableOptions(cmd, "--system aarch64-linux")
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
    .option(
      "--install",
      "a new host booted from a NixOS installer: copy the system there and run nixos-install (no activation)",
    )
    .option("--root <dir>", "with --install: where the new system's file systems are mounted (default /mnt)")
    .option("--json", "print JSON")
    .option("--quiet", "no progress lines")
    .action(async (file: string | undefined, opts: DeployFlags) => {
      const ctx = context();
      checkInstallFlags(opts);
      if (opts.target.length === 0 && file === undefined)
        throw usage(
          "nixpool deploy needs at least one --target.",
          "For example: nixpool deploy .#web, or: nixpool deploy system.nix --target web",
        );
      const modes = [file !== undefined, opts.rollback === true, opts.generations === true].filter(
        Boolean,
      ).length;
      if (modes !== 1)
        throw usage(
          "nixpool deploy takes a system to build (.#host or a Nix file), or --rollback, or --generations (exactly one).",
          "For example: nixpool deploy system.nix --target web, or: nixpool deploy --rollback --target web",
        );
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      try {
        if (file === undefined) {
          const targets = await ctx.selectTargets([...new Set(opts.target)]);
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
        }
        const root = opts.install ? parseInstallRoot(opts.root) : undefined;
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
          const targets = await ctx.selectTargets([...new Set(opts.target)]);
          printOutcomes(ctx, await rollbackTargets(targets, options), opts.json === true);
          return;
        }
        const flake = flakeOptionsOf(opts);
        const [installable] = await readInstallables([file as string], fileOptionsOf(opts), flake);
        if (!installable)
          throw usage("nixpool deploy needs a system to build.", "For example: nixpool deploy .#web");
        // The configurations' names, only when one is chosen by name (.#HOST, or . with targets).
        const byName =
          installable.kind === "flake" &&
          (installable.fragment === "" || isHostFragment(installable.fragment));
        const names = byName
          ? await flakeAttrNames(installable, "nixosConfigurations", flake, controller.signal)
          : undefined;
        const plan = planDeploySystems(installable, [...new Set(opts.target)], names);
        const targets = await ctx.selectTargets([...new Set(plan.flatMap((a) => a.targets))]);
        // A new host that cannot install is found before a long build, not after it.
        if (root !== undefined) await checkInstallTargets(targets, { ...options, root });
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
        const where =
          buildHost.kind === "builder"
            ? ` on ${buildHost.name}`
            : buildHost.kind === "local"
              ? " on this machine"
              : " on the pool";
        for (const a of plan) options.onProgress?.("*", `building ${systemName(a.system)}${where}`);
        const systems = await buildSystems({
          buildHost,
          builders,
          stateDir: ctx.stateDir,
          systems: plan.map((a) => a.system),
          flake,
          signal: controller.signal,
          // Trusted-only derivations and untrusted results as for nixpool build (no --verify here).
          trust: buildTrustPolicy((await ctx.loadInventory()).policy, {}),
        });
        const outcomes: Outcome[] = [];
        for (const [i, a] of plan.entries()) {
          const system = systems[i];
          if (!system) continue;
          options.onProgress?.(
            "*",
            `built ${system.path} ${system.place.kind === "local" ? "(in this machine's store)" : `(on ${system.place.builder.name})`} in ${formatSeconds(system.buildMs)}`,
          );
          const mine = targets.filter((t) => a.targets.includes(t.name));
          const o = { ...options, builderSshConfig: sshConfig };
          outcomes.push(
            ...(root === undefined
              ? await deploySystem(system, mine, o)
              : await installSystem(system, mine, { ...o, root })),
          );
        }
        printOutcomes(ctx, outcomes, opts.json === true);
      } finally {
        untrap();
      }
    });
};
