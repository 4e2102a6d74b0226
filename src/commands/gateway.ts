import type { RegisterCommands } from "../cli/commands.js";
import { configError } from "../core/errors.js";
import { runGateway } from "../serve/gateway/run-gateway.js";

interface GatewayFlags {
  client: string;
  coordinator?: string;
  stall: string;
}

/** nixpool gateway: the pool as one builder of Nix's `ssh://` protocol (docs/gateway.md). */
export const registerGateway: RegisterCommands = (program, context) => {
  program
    .command("gateway")
    .description("serve Nix's builder protocol on stdin/stdout for one client (sshd's forced command)")
    .requiredOption("--client <name>", "the client its key belongs to (fair share, history, dashboard)")
    .option("--coordinator <url>", "the coordinator's socket (default: the one of this state directory)")
    .option("--stall <seconds>", "end the session when the client stalls mid-message this long", "60")
    .action(async (opts: GatewayFlags) => {
      const stallS = Number(opts.stall);
      if (!Number.isFinite(stallS) || stallS <= 0) {
        throw configError("FLAG_INVALID", `--stall "${opts.stall}" is not a number of seconds.`, {
          hint: "e.g. --stall 60",
        });
      }
      process.exitCode = await runGateway({
        stateDir: context().stateDir,
        client: opts.client,
        coordinator: opts.coordinator,
        stallS,
      });
    });
};
