import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { forcedCommandOf } from "../core/access/authorized-keys.js";

/**
 * The forced command of gateway keys: the lean entry (dist/serve/gateway/main.js, which greets
 * before loading the rest) beside the running CLI, else the CLI's `gateway` command; words with
 * a space are quoted for the shell sshd runs it with (KEYS_COMMAND_UNSAFE for what cannot be).
 */
export function gatewayCommandFor(stateDir: string): string {
  const cli = resolve(process.argv[1] ?? "nixpool");
  const lean = resolve(dirname(cli), "../serve/gateway/main.js");
  const program = existsSync(lean) ? [lean] : [cli, "gateway"];
  const [entry, ...rest] = program;
  return forcedCommandOf([process.execPath, entry as string, "--state-dir", resolve(stateDir), ...rest]);
}
