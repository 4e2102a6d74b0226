import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { forcedCommandOf } from "../core/access/authorized-keys.js";

/**
 * The forced command of gateway keys: greet.sh (a shell that writes the protocol's greeting at
 * once) running the lean entry (dist/serve/gateway/main.js) beside the running CLI; the lean entry
 * alone (it greets before loading the rest) without greet.sh; else the CLI's `gateway` command.
 * Words with a space are quoted for the shell sshd runs it with (KEYS_COMMAND_UNSAFE for what
 * cannot be).
 */
export function gatewayCommandFor(stateDir: string): string {
  const cli = resolve(process.argv[1] ?? "nixpool");
  const lean = resolve(dirname(cli), "../serve/gateway/main.js");
  const greet = resolve(dirname(lean), "greet.sh");
  const state = ["--state-dir", resolve(stateDir)];
  if (!existsSync(lean)) return forcedCommandOf([process.execPath, cli, ...state, "gateway"]);
  const node = [process.execPath, lean, ...state];
  return forcedCommandOf(existsSync(greet) ? [greet, ...node] : node);
}
