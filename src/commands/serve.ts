import type { RegisterCommands } from "../cli/commands.js";
import { statePaths } from "../config/state-paths.js";
import { ensureServeToken } from "../serve/serve-token.js";

interface TokenFlags {
  new?: boolean;
}

/** nixpool serve: the coordinator (one queue, warm builders, history, HTTP API and dashboard). */
export const registerServe: RegisterCommands = (program, context) => {
  const serve = program
    .command("serve")
    .description("run the coordinator: one queue for every client of the pool, its API and dashboard");
  serve
    .command("token")
    .description("print the API token TCP clients send (made on first use; 0600 in the state directory)")
    .option("--new", "replace it with a new one (clients and browsers must use the new one)")
    .action(async (opts: TokenFlags) => {
      const ctx = context();
      const token = await ensureServeToken(ctx.stateDir, opts.new === true);
      // The one place the token is printed on purpose: straight to stdout, not through redaction.
      process.stdout.write(`${token}\n`);
      if (process.stderr.isTTY) {
        ctx.output.err(
          `(from ${statePaths(ctx.stateDir).serve.tokenFile}; a browser opens the dashboard once with /?token=…)`,
        );
      }
    });
};
