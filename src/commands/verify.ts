import type { RegisterCommands } from "../cli/commands.js";
import { trapSignals } from "../adapters/signals.js";
import { renderTable } from "../cli/output.js";
import { progressPrinter } from "../cli/dispatch-output.js";
import { buildTrustPolicy } from "../cli/trust-options.js";
import { verifyOutputs } from "../dispatch/verify-outputs.js";
import { realpath } from "node:fs/promises";
import type { Context } from "../cli/context.js";
import {
  addInstallableOptions,
  fileOptionsOf,
  flakeOptionsOf,
  type InstallableFlags,
} from "../cli/nix-args.js";
import { STORE_DIR } from "../core/store-path.js";
import { evaluateDerivations, rootOutputPath } from "../dispatch/evaluate.js";
import { readInstallables } from "../dispatch/installables.js";

interface VerifyFlags extends InstallableFlags {
  builder: string[];
  json?: boolean;
  quiet?: boolean;
}

/**
 * The output paths to verify: store paths and links to them as given; every other word is an
 * installable (`.#hello`, FILE.nix -A x), evaluated here to the outputs it names.
 */
async function outputsToVerify(
  ctx: Context,
  words: readonly string[],
  opts: VerifyFlags,
  signal: AbortSignal,
) {
  const isPath = await Promise.all(
    words.map(async (w) => (await realpath(w).catch(() => w)).startsWith(`${STORE_DIR}/`)),
  );
  const others = words.filter((_, i) => !isPath[i]);
  if (others.length === 0) return [...words];
  const flake = flakeOptionsOf(opts);
  const installables = await readInstallables(others, fileOptionsOf(opts), flake);
  const roots = await evaluateDerivations({
    installables,
    flake,
    signal,
    ...(opts.quiet || opts.json ? {} : { onWarning: (m: string) => ctx.output.err(m) }),
  });
  const evaluated = await Promise.all(roots.map(rootOutputPath));
  return [...words.filter((_, i) => isPath[i]), ...evaluated];
}

function collectName(value: string, acc: string[]): string[] {
  return [...acc, value];
}

/** nixpool verify PATH…: builds existing outputs again on another builder and compares NAR hashes. */
export const registerVerify: RegisterCommands = (program, context) => {
  const cmd = program
    .command("verify")
    .description("build existing outputs again on another builder and compare them (docs/trust.md)")
    .argument("<paths...>", "output paths, links to them such as ./result, or installables such as .#hello");
  addInstallableOptions(cmd, "--system aarch64-linux")
    .option("--builder <name>", "build again only on this builder (repeatable)", collectName, [])
    .option("--json", "print JSON")
    .option("--quiet", "no progress lines")
    .action(async (words: string[], opts: VerifyFlags) => {
      const ctx = context();
      const trust = buildTrustPolicy((await ctx.loadInventory()).policy, {});
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      const showProgress = !opts.json && !opts.quiet;
      const progress = showProgress ? progressPrinter(ctx, false, true) : undefined;
      try {
        const checked = await verifyOutputs({
          paths: await outputsToVerify(ctx, words, opts, controller.signal),
          builders: await ctx.selectBuilders(opts.builder),
          stateDir: ctx.stateDir,
          trust,
          signal: controller.signal,
          ...(progress ? { onEvent: progress.onEvent } : {}),
        });
        progress?.close();
        if (opts.json) return ctx.output.json({ verified: checked });
        ctx.output.out(
          renderTable(
            ["OUTPUT", "BUILT BY", "REBUILT ON", "NAR HASH", "RESULT"],
            checked.map((c) => [c.path, c.builtBy, `${c.rebuiltOn} (${c.rebuiltTrust})`, c.narHash, "same"]),
          ),
        );
      } finally {
        progress?.close();
        untrap();
      }
    });
};
