import type { RegisterCommands } from "../cli/commands.js";
import { parseNumberFlag } from "../core/number-flag.js";
import { trapSignals } from "../adapters/signals.js";
import { renderDoctorReport, toDoctorJson } from "../core/doctor/render.js";
import { runDoctor } from "../doctor/run-doctor.js";

const parseTimeout = (v: string): number =>
  parseNumberFlag("--timeout", v, { min: 0.1, max: 3600, example: "nixpool doctor --timeout 20" });

/** nixpool doctor [BUILDER…] [--json] [--timeout S] [--no-local]: every check, its cause and its fix. */
export const registerDoctor: RegisterCommands = (program, context) => {
  program
    .command("doctor")
    .description("check this machine and every builder: pass/warn/fail, the cause, and the exact fix")
    .argument("[builders...]", "builders to check (default: all)")
    .option("--json", "print JSON")
    .option("--timeout <seconds>", "time budget of each builder's probes", parseTimeout, 60)
    .option("--no-local", "skip the checks of this machine")
    .action(async (names: string[], opts: { json?: boolean; timeout: number; local: boolean }) => {
      const ctx = context();
      const builders = await ctx.selectBuilders(names);
      const inv = ctx.inventoryLocation();
      const controller = new AbortController();
      const untrap = trapSignals(controller);
      try {
        const report = await runDoctor({
          builders,
          timeoutMs: opts.timeout * 1000,
          local: opts.local,
          stateDir: ctx.stateDir,
          signal: controller.signal,
          ...(inv.exists ? { inventoryPath: inv.path } : {}),
        });
        if (opts.json) ctx.output.json(toDoctorJson(report));
        else {
          if (builders.length === 0)
            ctx.output.err("No builders to check. Start a local pool with: nixpool local up");
          ctx.output.out(renderDoctorReport(report));
        }
        process.exitCode = report.exitCode;
      } finally {
        untrap();
      }
    });
};
