import type { RegisterCommands } from "../cli/commands.js";
import { renderTable } from "../cli/output.js";

/** nixpool builders [--json]: every builder of the pool (inventory, local pool, workers). */
export const registerBuilders: RegisterCommands = (program, context) => {
  program
    .command("builders")
    .description("list every builder: the inventory's, the local pool's and rented workers'")
    .option("--json", "print JSON")
    .action(async (opts: { json?: boolean }) => {
      const ctx = context();
      const builders = await ctx.builders();
      if (opts.json) {
        ctx.output.json({ builders: builders.map((b) => ({ ...b, hostKey: b.hostKey ?? null })) });
        return;
      }
      if (builders.length === 0) {
        ctx.output.out("No builders. Start a local pool with: nixpool local up");
        return;
      }
      ctx.output.out(
        renderTable(
          ["NAME", "SOURCE", "ADDRESS", "PROTOCOL", "SYSTEMS", "JOBS", "SPEED", "FEATURES", "TRUST", "KEY"],
          builders.map((b) => [
            b.name,
            b.source,
            `${b.user ? `${b.user}@` : ""}${b.host}:${b.port}`,
            b.protocol,
            b.systems.join(","),
            String(b.maxJobs),
            String(b.speedFactor),
            b.supportedFeatures.join(",") || "-",
            b.trust,
            b.hostKey ? "pinned" : "NOT PINNED",
          ]),
        ),
      );
    });
};
