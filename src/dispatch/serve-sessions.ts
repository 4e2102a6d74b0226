import { sshAlias, type Builder } from "../core/builder.js";
import { classifySshFailure } from "../core/ssh-errors.js";
import { openServeSession, transferPaths, type ServeSession } from "../adapters/nix-serve-session.js";
import type { DispatchSession, OpenSessionOptions, TransferPaths } from "./store-session.js";

/**
 * ssh options the dispatcher adds to nixpool's ssh_config: a dead or cut-off builder sends
 * nothing, so ssh probes it every 5 s and gives up after 3 unanswered probes (≤ 20 s).
 */
export const DISPATCH_SSH_OPTIONS = ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-T"];

/** argv of a builder's `nix-store --serve --write` session, through nixpool's ssh_config alias. */
export function builderServeArgv(b: Pick<Builder, "name">, sshConfig: string): string[] {
  return ["ssh", "-F", sshConfig, ...DISPATCH_SSH_OPTIONS, sshAlias(b), "nix-store", "--serve", "--write"];
}

/** argv of this machine's store session. */
export const LOCAL_SERVE_ARGV = ["nix-store", "--serve", "--write"];

function wrap(s: ServeSession): DispatchSession {
  return {
    queryValidPaths: (paths) => s.queryValidPaths([...paths], { lock: false, substitute: false }),
    queryClosure: (paths) => s.queryClosure([...paths], false),
    buildDerivation: (drvPath, drv) => s.buildDerivation(drvPath, drv),
    close: () => s.close(),
    kill: () => s.kill(),
    // The adapter's own session travels along for transfers.
    ...({ serve: s } as object),
  } as DispatchSession;
}

function unwrap(s: DispatchSession): ServeSession {
  return (s as unknown as { serve: ServeSession }).serve;
}

/** The session factories the dispatcher runs on: builders over ssh, this machine directly. */
export function serveSessions(sshConfig: string, signal?: AbortSignal) {
  const openBuilder = async (o: OpenSessionOptions): Promise<DispatchSession> => {
    const stderrTail: string[] = [];
    const session = await openServeSession({
      argv: builderServeArgv(o.builder, sshConfig),
      label: `builder ${o.builder.name}`,
      onStderrLine: (line) => {
        stderrTail.push(line);
        if (stderrTail.length > 20) stderrTail.shift();
        o.onStderrLine(line);
      },
      onClose: (why) => o.onClose(describeLoss(why, stderrTail)),
      ...(signal ? { signal } : {}),
    }).catch((e: unknown) => {
      throw new Error(describeLoss(e instanceof Error ? e.message : String(e), stderrTail));
    });
    return wrap(session);
  };
  const openLocal = async (): Promise<DispatchSession> =>
    wrap(
      await openServeSession({
        argv: LOCAL_SERVE_ARGV,
        label: "this machine's store",
        onStderrLine: () => undefined,
        ...(signal ? { signal } : {}),
      }),
    );
  const transfer: TransferPaths = (from, to, paths) => transferPaths(unwrap(from), unwrap(to), [...paths]);
  return { openBuilder, openLocal, transfer };
}

/** Names why a builder's session ended in ssh's terms where ssh said why (host key, auth, timeout). */
function describeLoss(why: string, stderrTail: readonly string[]): string {
  const text = stderrTail.join("\n");
  const cause = classifySshFailure(text);
  const reasons: Record<string, string> = {
    "host-key-mismatch": "host key does not match the pinned key",
    "host-key-unknown": "no pinned host key that ssh accepts",
    "auth-denied": "login key refused",
    "identity-unreadable": "identity file unusable",
    refused: "connection refused",
    timeout: "no answer (timed out)",
    unreachable: "unreachable",
    dns: "host name does not resolve",
  };
  const said = reasons[cause];
  if (said) return said;
  if (/Timeout, server .* not responding/i.test(text)) return "went silent (no answer to keepalives)";
  return why;
}
