import type { RegisterCommands } from "../cli/commands.js";
import { readDurationFlag } from "../core/duration.js";
import { trapSignals } from "../adapters/signals.js";
import { renderDoctorReport, toDoctorJson } from "../core/doctor/render.js";
import { runDoctor } from "../doctor/run-doctor.js";

/** --timeout in ms: a duration (20s, 2m); a bare number is seconds, as it always was. */
const parseTimeout = (v: string): number =>
  readDurationFlag(v, {
    flag: "--timeout",
    bare: "seconds",
    minMs: 100,
    maxMs: 3_600_000,
    example: "nixpool doctor --timeout 20s",
  }).ms;

/** nixpool doctor [BUILDER…] [--json] [--timeout DURATION] [--no-local]: every check, its cause and its fix. */
export const registerDoctor: RegisterCommands = (program, context) => {
  program
    .command("doctor")
    .description("check this machine and every builder: pass/warn/fail, the cause, and the exact fix")
    .argument("[builders...]", "builders to check (default: all)")
    .option("--json", "print JSON")
    .option(
      "--timeout <duration>",
      "time budget of each builder's probes, e.g. 20s or 2m (a bare number is seconds; default 60s)",
      parseTimeout,
      60_000,
    )
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
          timeoutMs: opts.timeout,
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
