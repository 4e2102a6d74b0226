import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * The forced command of gateway keys: the lean entry (dist/serve/gateway/main.js, which greets
 * before loading the rest) beside the running CLI, else the CLI's `gateway` command.
 */
export function gatewayCommandFor(stateDir: string): string {
  const cli = resolve(process.argv[1] ?? "nixpool");
  const lean = resolve(dirname(cli), "../serve/gateway/main.js");
  const program = existsSync(lean) ? [lean] : [cli, "gateway"];
  const [entry, ...rest] = program;
  return [process.execPath, entry, "--state-dir", resolve(stateDir), ...rest].join(" ");
}
