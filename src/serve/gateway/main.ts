#!/usr/bin/env node
// sshd's forced command for a gateway client (docs/gateway.md):
//   main.js --state-dir DIR --client NAME [--coordinator unix:PATH] [--stall SECONDS] [--greeted]
// Nix's main loop waits for every hook's connection, greeting included, one after the other: this
// entry writes the server's greeting before loading anything else (node's start is most of a
// session's cost), then loads the gateway. `nixpool gateway` is the same session from the full CLI.
import { encodeServerHello } from "../../core/nix-serve/handshake.js";
import { ExitCode } from "../../core/errors.js";

// The client may hang up at any time (sshd closes our pipes): a write then fails with EPIPE, which
// must not end the process before the session is logged and its build cancelled.
process.stdout.on("error", () => undefined);
process.stderr.on("error", () => undefined);
const argv = process.argv.slice(2);
// `--greeted`: greet.sh (the forced command sshd runs) has written the greeting already.
if (!argv.includes("--greeted")) process.stdout.write(encodeServerHello());

function flag(argv: readonly string[], name: string): string | undefined {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
}

const stateDir = flag(argv, "--state-dir");
const client = flag(argv, "--client");
const stall = flag(argv, "--stall");
if (stateDir === undefined || client === undefined || (stall !== undefined && !(Number(stall) > 0))) {
  process.stderr.write(
    "nixpool gateway: give --state-dir DIR --client NAME [--coordinator URL] [--stall SECONDS]\n",
  );
  process.exitCode = ExitCode.usage;
} else {
  const { runGateway } = await import("./run-gateway.js");
  try {
    process.exitCode = await runGateway({
      stateDir,
      client,
      coordinator: flag(argv, "--coordinator"),
      stallS: stall === undefined ? undefined : Number(stall),
      greeted: true,
    });
  } catch (e) {
    process.stderr.write(`nixpool gateway: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = ExitCode.failed;
  }
}
