import { USER_NAME_PATTERN } from "../../core/access/names.js";
import { ExitCode, NixpoolError, configError } from "../../core/errors.js";
import { redactForTerminal } from "../../core/redact.js";
import { ServeSession } from "../../adapters/nix-serve-session.js";
import { CoordinatorClient } from "../client/coordinator-client.js";
import { describeTarget, findCoordinators } from "../client/coordinator-target.js";
import { CoordinatorBuilds } from "./gateway-build.js";
import { CoordinatorPool } from "./gateway-pool.js";
import { runGatewaySession } from "./gateway-session.js";
import { appendGatewayLog } from "./gateway-log.js";

export interface GatewayRunOptions {
  stateDir: string;
  client: string;
  coordinator?: string | undefined;
  /** Seconds a client may stall mid-message or stop reading. */
  stallS?: number | undefined;
  /** The server's greeting was written already (the lean entry, main.ts, greets at once). */
  greeted?: boolean;
}

/**
 * One client's session of Nix's builder protocol on stdin/stdout, as `nix-store --serve --write`
 * would speak it; sshd starts it for the client's key (`restrict,command="nixpool gateway --client NAME"`).
 */
export async function runGateway(opts: GatewayRunOptions): Promise<ExitCode> {
  if (!USER_NAME_PATTERN.test(opts.client)) {
    throw configError("GATEWAY_CLIENT_INVALID", `"${opts.client}" is not a client name.`, {
      hint: "The forced command of a client's key names it: nixpool gateway --client NAME (a member name, see docs/gateway.md).",
    });
  }
  // A client that hung up makes our writes fail (EPIPE): the session ends as it would, logged, and
  // the process is not killed by an unhandled error event.
  for (const out of [process.stdout, process.stderr])
    if (out.listenerCount("error") === 0) out.on("error", () => undefined);
  const stallMs = (opts.stallS ?? 60) * 1000;
  // stderr is the client's build log: one line at a time, never a token.
  const log = (line: string) => process.stderr.write(`${redactForTerminal(line)}\n`);
  // The greeting goes out first (Nix's main loop waits for every hook's connection); the store
  // session and the coordinator are found meanwhile.
  const store = ServeSession.open({
    argv: ["nix-store", "--serve", "--write"],
    name: "the coordinator's store",
    onStderrLine: (line) => log(`nixpool gateway: the coordinator's store: ${line}`),
  });
  // Several (NIXPOOL_COORDINATOR=unix:/a.sock,unix:/b.sock, from sshd's SetEnv): coordinators
  // sharing this machine's store; a build is followed on the next when one is lost.
  const targets = findCoordinators(opts.coordinator, opts.stateDir, process.env).then((t) => {
    if (!t || t.length === 0) {
      throw new NixpoolError(
        "COORDINATOR_UNREACHABLE",
        "No coordinator runs on this machine's state directory.",
        {
          hint: "Start it (systemctl start nixpool-serve) or give --coordinator unix:/var/lib/nixpool/serve/api.sock.",
        },
      );
    }
    return t;
  });
  const startMs = Date.now();
  try {
    const result = await runGatewaySession({
      input: process.stdin,
      output: process.stdout,
      log,
      store,
      builds: targets.then((ts) => {
        const [c, ...cs] = ts.map((t) => new CoordinatorClient(t));
        return new CoordinatorBuilds(c as CoordinatorClient, opts.client, Date.now, cs);
      }),
      pool: targets.then((ts) => {
        const [c, ...cs] = ts.map((t) => new CoordinatorClient(t));
        return new CoordinatorPool(c as CoordinatorClient, cs);
      }),
      ...(Number.isFinite(stallMs) && stallMs > 0 ? { stallMs } : {}),
      ...(opts.greeted ? { greeted: true } : {}),
    });
    await appendGatewayLog(opts.stateDir, {
      at: new Date(startMs).toISOString(),
      client: opts.client,
      coordinator: await targets.then(
        (ts) => ts.map(describeTarget).join(","),
        () => "none",
      ),
      ms: Date.now() - startMs,
      clientVersion: `0x${result.clientVersion.toString(16)}`,
      requests: result.requests,
      requestMs: result.requestMs,
      startMs: Math.round(startMs - performance.timeOrigin) + result.greetingMs,
      uploadedPaths: result.uploadedPaths,
      uploadedBytes: result.uploadedBytes,
      downloadedBytes: result.downloadedBytes,
      builds: result.builds,
      maxRssBytes: process.resourceUsage().maxRSS * 1024,
      ...(result.error ? { error: { code: result.error.code, message: result.error.message } } : {}),
    }).catch(() => undefined);
    return result.error ? ExitCode.failed : ExitCode.ok;
  } finally {
    // The session is over, also when it ended early while the client still writes or waits for
    // an answer (a failed upload): stop reading, so the process ends and the client sees EOF
    // instead of waiting for ever.
    process.stdin.destroy();
    await store.then((s) => s.close()).catch(() => undefined);
  }
}
