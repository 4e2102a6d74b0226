import type { RegisterCommands } from "../cli/commands.js";
import type { Context } from "../cli/context.js";
import { USER_NAME_PATTERN } from "../core/access/names.js";
import { ExitCode, NixpoolError, configError } from "../core/errors.js";
import { redactForTerminal } from "../core/redact.js";
import { ServeSession } from "../adapters/nix-serve-session.js";
import { CoordinatorClient } from "../serve/client/coordinator-client.js";
import { describeTarget, findCoordinator } from "../serve/client/coordinator-target.js";
import { CoordinatorBuilds } from "../serve/gateway/gateway-build.js";
import { runGatewaySession } from "../serve/gateway/gateway-session.js";
import { appendGatewayLog } from "../serve/gateway/gateway-log.js";

interface GatewayFlags {
  client: string;
  coordinator?: string;
  stall: string;
}

/**
 * One client's session of Nix's builder protocol on stdin/stdout, as `nix-store --serve --write`
 * would speak it; sshd starts it for the client's key (`restrict,command="nixpool gateway --client NAME"`).
 */
async function runGateway(ctx: Context, opts: GatewayFlags): Promise<void> {
  if (!USER_NAME_PATTERN.test(opts.client)) {
    throw configError("GATEWAY_CLIENT_INVALID", `"${opts.client}" is not a client name.`, {
      hint: "The forced command of a client's key names it: nixpool gateway --client NAME (a member name, see docs/gateway.md).",
    });
  }
  const stallMs = Number(opts.stall) * 1000;
  // stderr is the client's build log: one line at a time, never a token.
  const log = (line: string) => process.stderr.write(`${redactForTerminal(line)}\n`);
  const target = await findCoordinator(opts.coordinator, ctx.stateDir, process.env);
  if (!target) {
    throw new NixpoolError(
      "COORDINATOR_UNREACHABLE",
      "No coordinator runs on this machine's state directory.",
      {
        hint: "Start it (systemctl start nixpool-serve) or give --coordinator unix:/var/lib/nixpool/serve/api.sock.",
      },
    );
  }
  const store = await ServeSession.open({
    argv: ["nix-store", "--serve", "--write"],
    name: "the coordinator's store",
    onStderrLine: (line) => log(`nixpool gateway: the coordinator's store: ${line}`),
  });
  const startMs = Date.now();
  try {
    const result = await runGatewaySession({
      input: process.stdin,
      output: process.stdout,
      log,
      store,
      builds: new CoordinatorBuilds(new CoordinatorClient(target), opts.client),
      ...(Number.isFinite(stallMs) && stallMs > 0 ? { stallMs } : {}),
    });
    await appendGatewayLog(ctx.stateDir, {
      at: new Date(startMs).toISOString(),
      client: opts.client,
      coordinator: describeTarget(target),
      ms: Date.now() - startMs,
      clientVersion: `0x${result.clientVersion.toString(16)}`,
      requests: result.requests,
      uploadedPaths: result.uploadedPaths,
      uploadedBytes: result.uploadedBytes,
      downloadedBytes: result.downloadedBytes,
      builds: result.builds,
      ...(result.error ? { error: { code: result.error.code, message: result.error.message } } : {}),
    }).catch(() => undefined);
    if (result.error) process.exitCode = ExitCode.failed;
  } finally {
    await store.close();
  }
}

/** nixpool gateway: the pool as one builder of Nix's `ssh://` protocol (docs/gateway.md). */
export const registerGateway: RegisterCommands = (program, context) => {
  program
    .command("gateway")
    .description("serve Nix's builder protocol on stdin/stdout for one client (sshd's forced command)")
    .requiredOption("--client <name>", "the client its key belongs to (fair share, history, dashboard)")
    .option("--coordinator <url>", "the coordinator's socket (default: the one of this state directory)")
    .option("--stall <seconds>", "end the session when the client stalls mid-message this long", "60")
    .action(async (opts: GatewayFlags) => runGateway(context(), opts));
};
