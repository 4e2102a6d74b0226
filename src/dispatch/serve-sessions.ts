import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writeClientFiles } from "../adapters/nix-build.js";
import { sshAlias, type Builder } from "../core/builder.js";
import type { SshFailure } from "../core/ssh-errors.js";
import { ServeSession, transferPaths, type ServeCloseReason } from "../adapters/nix-serve-session.js";
import type { DispatchSession, OpenSessionOptions, TransferPaths } from "./store-session.js";

/**
 * ssh options the dispatcher adds to nixpool's ssh_config: a dead or cut-off builder sends
 * nothing, so ssh probes it every 5 s and gives up after 3 unanswered probes (≤ 20 s).
 */
export const DISPATCH_SSH_OPTIONS = ["-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-T"];

/** argv of ssh to a builder through nixpool's ssh_config alias, with extra ssh options, running `remote`. */
export function builderSshArgv(
  b: Pick<Builder, "name">,
  sshConfig: string,
  extraOptions: readonly string[],
  remote: readonly string[],
): string[] {
  return ["ssh", "-F", sshConfig, ...DISPATCH_SSH_OPTIONS, ...extraOptions, sshAlias(b), ...remote];
}

/** argv of a builder's `nix-store --serve --write` session, through nixpool's ssh_config alias. */
export function builderServeArgv(
  b: Pick<Builder, "name">,
  sshConfig: string,
  mux?: { controlPath: string; master: boolean },
): string[] {
  const share = mux
    ? ["-o", `ControlMaster=${mux.master ? "yes" : "no"}`, "-o", `ControlPath=${mux.controlPath}`]
    : [];
  return builderSshArgv(b, sshConfig, share, ["nix-store", "--serve", "--write"]);
}

/**
 * Slot sessions share the transfer session's ssh connection (one key exchange and login per
 * builder, not one per slot), up to 8 of them: sshd's default MaxSessions is 10 per connection.
 */
const MAX_SHARED_SLOTS = 8;

/** argv of this machine's store session. */
export const LOCAL_SERVE_ARGV = ["nix-store", "--serve", "--write"];

interface WrappedSession extends DispatchSession {
  readonly serve: ServeSession;
}

function wrap(s: ServeSession): WrappedSession {
  return {
    serve: s,
    queryValidPaths: (paths, o) =>
      s.queryValidPaths([...paths], { lock: false, substitute: o?.substitute ?? false }),
    queryClosure: (paths) => s.queryClosure([...paths], false),
    buildDerivation: (drvPath, drv) => s.buildDerivation(drvPath, drv),
    queryPathInfos: (paths) => s.queryPathInfos([...paths]),
    dumpStorePath: async (path, sink) => {
      await s.dumpStorePath(path, sink);
    },
    close: async () => {
      await s.close();
    },
    kill: () => s.kill(),
    get isClosed() {
      return s.isClosed;
    },
  };
}

function unwrap(s: DispatchSession): ServeSession {
  const serve = (s as Partial<WrappedSession>).serve;
  if (!serve) throw new Error("not a nix-store --serve session");
  return serve;
}

/** The session factories the dispatcher runs on: builders over ssh, this machine directly. */
export function serveSessions(sshConfig: string, signal?: AbortSignal, muxDir?: string) {
  // Each transfer session (a builder's first, or a reconnect's) is a new master on a socket of its
  // own: a master killed with its builder may leave its socket behind.
  const generation = new Map<string, number>();
  const openBuilder = async (o: OpenSessionOptions): Promise<DispatchSession> => {
    if (o.role.kind === "transfer") generation.set(o.builder.name, (generation.get(o.builder.name) ?? 0) + 1);
    const controlPath = muxDir
      ? join(muxDir, `${o.builder.name}.${generation.get(o.builder.name) ?? 1}`)
      : undefined;
    const mux =
      controlPath === undefined
        ? undefined
        : o.role.kind === "transfer"
          ? { controlPath, master: true }
          : o.role.slot < MAX_SHARED_SLOTS
            ? { controlPath, master: false }
            : undefined;
    const session = await ServeSession.open({
      argv: builderServeArgv(o.builder, sshConfig, mux),
      name: `builder ${o.builder.name}`,
      onStderrLine: (line) => o.onStderrLine(line),
      onClose: (why) => {
        if (why.kind === "closed" || why.kind === "killed") return;
        o.onClose(
          describeLoss(why),
          why.sshFailure ? { failure: why.sshFailure, stderr: why.stderrTail.join("\n") } : undefined,
        );
      },
      signal: signal ? AbortSignal.any([signal, o.signal]) : o.signal,
    }).catch((e: unknown) => {
      // A session that never opened: report why in ssh's terms, as a lost one would be.
      const d = (e as { details?: { sshFailure?: SshFailure; stderr?: string[] } }).details;
      if (d?.sshFailure) {
        const why = { sshFailure: d.sshFailure, stderrTail: d.stderr ?? [] };
        o.onClose(describeLoss({ ...why, message: (e as Error).message }), {
          failure: d.sshFailure,
          stderr: why.stderrTail.join("\n"),
        });
      }
      throw e;
    });
    return wrap(session);
  };
  const openLocal = async (): Promise<DispatchSession> =>
    wrap(
      await ServeSession.open({
        argv: LOCAL_SERVE_ARGV,
        name: "this machine's store",
        ...(signal ? { signal } : {}),
      }),
    );
  const transfer: TransferPaths = async (from, to, paths) => {
    let bytes = 0;
    await transferPaths(unwrap(from), unwrap(to), [...paths], { onBytes: (n) => (bytes += n) });
    return bytes;
  };
  /**
   * A read-only session of the binary cache (queries and NARs), apart from the dispatcher's: on the
   * transfer session's ssh connection while sshd's MaxSessions leaves room beside the slots.
   */
  const openReader = (b: Builder, name: string): Promise<ServeSession> => {
    const shared = 1 + Math.min(b.maxJobs, MAX_SHARED_SLOTS);
    const controlPath = muxDir ? join(muxDir, `${b.name}.${generation.get(b.name) ?? 1}`) : undefined;
    const mux =
      controlPath !== undefined && shared + MAX_READERS_SHARED <= SSHD_MAX_SESSIONS
        ? { controlPath, master: false }
        : undefined;
    return ServeSession.open({
      argv: builderServeArgv(b, sshConfig, mux),
      name,
      ...(signal ? { signal } : {}),
    });
  };
  return { openBuilder, openLocal, transfer, openReader };
}

/** sshd's default MaxSessions (channels on one connection), and the cache's readers per builder that share it. */
const SSHD_MAX_SESSIONS = 10;
const MAX_READERS_SHARED = 2;

const SSH_REASONS: Partial<Record<SshFailure, string>> = {
  "host-key-mismatch": "its host key does not match the pinned key",
  "host-key-unknown": "no pinned host key that ssh accepts",
  "auth-denied": "the login key was refused",
  "identity-unreadable": "the identity file cannot be used",
  refused: "connection refused",
  timeout: "no answer (timed out)",
  unreachable: "unreachable",
  dns: "its host name does not resolve",
};

/** Why a builder's session ended, in ssh's terms where ssh said why (host key, login, silence). */
export function describeLoss(why: Pick<ServeCloseReason, "sshFailure" | "stderrTail" | "message">): string {
  const said = why.sshFailure ? SSH_REASONS[why.sshFailure] : undefined;
  if (said) return said;
  if (why.stderrTail.some((l) => /Timeout, server .* not responding/i.test(l)))
    return "it went silent (no answer to keepalives)";
  return why.message;
}

/**
 * A long-lived service's sessions (nixpool serve): nixpool's ssh files for `builders` in the state
 * directory, and ssh's control sockets in a private (0700) directory with a short path (see
 * dispatch-build.ts), which the caller removes when it stops.
 */
export async function serviceSessions(stateDir: string, builders: readonly Builder[]) {
  const files = await writeClientFiles(stateDir, [...builders]);
  const muxDir = await mkdtemp(join(tmpdir(), "nixpool-serve-"));
  return { ...serveSessions(files.sshConfig, undefined, muxDir), muxDir };
}
