import { existsSync } from "node:fs";
import { dirname, resolve } from "node:path";

/**
 * The forced command of gateway keys: greet.sh (a shell that writes the protocol's greeting at
 * once) running the lean entry (dist/serve/gateway/main.js) beside the running CLI; the lean entry
 * alone (it greets before loading the rest) without greet.sh; else the CLI's `gateway` command.
 */
export function gatewayCommandFor(stateDir: string): string {
  const cli = resolve(process.argv[1] ?? "nixpool");
  const lean = resolve(dirname(cli), "../serve/gateway/main.js");
  const greet = resolve(dirname(lean), "greet.sh");
  const state = ["--state-dir", resolve(stateDir)];
  if (!existsSync(lean)) return [process.execPath, cli, ...state, "gateway"].join(" ");
  const node = [process.execPath, lean, ...state];
  return (existsSync(greet) ? [greet, ...node] : node).join(" ");
}
