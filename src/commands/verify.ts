import type { RegisterCommands } from "../cli/commands.js";
import { trapSignals } from "../adapters/signals.js";
import { renderTable } from "../cli/output.js";
import { progressPrinter } from "../cli/dispatch-output.js";
import { buildTrustPolicy } from "../cli/trust-options.js";
import { verifyOutputs } from "../dispatch/verify-outputs.js";

function collectName(value: string, acc: string[]): string[] {
  return [...acc, value];
}

/** nixpool verify PATH…: builds existing outputs again on another builder and compares NAR hashes. */
export const registerVerify: RegisterCommands = (program, context) => {
  program
    .command("verify")
    .description("build existing outputs again on another builder and compare them (docs/trust.md)")
    .argument("<paths...>", "output paths, or links to them such as ./result")
    .option("--builder <name>", "build again only on this builder (repeatable)", collectName, [])
    .option("--json", "print JSON")
    .option("--quiet", "no progress lines")
    .action(async (paths: string[], opts: { builder: string[]; json?: boolean; quiet?: boolean }) => {
      const ctx = context();
      const trust = buildTrustPolicy((await ctx.loadInventory()).policy, {});
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      const showProgress = !opts.json && !opts.quiet;
      const progress = showProgress ? progressPrinter(ctx, false, true) : undefined;
      try {
        const checked = await verifyOutputs({
          paths,
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
